"""Group commit for appends on PostgreSQL: appends that arrive while a batch is in flight go together.

Each append is the one-statement CTE of `store.PG_APPEND_EVENT`; a batch sends all of them in one
pipelined round trip that PostgreSQL runs as one transaction, so concurrent writers share one commit
(one WAL flush) instead of queueing for one each. A lone writer is sent at once: batching adds no
latency. If a batch fails (an Idempotency-Key already used, say), its appends are retried one by
one, so one bad append never fails the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from contextiq.core.db.engine import Database
from contextiq.sessions.store import PG_APPEND_EVENT

MAX_BATCH = 64


class AppendBatcher:
    """Collects one-statement appends and sends them in pipelined batches."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._max = max_batch
        self._pending: list[tuple[Sequence[Any], asyncio.Future[Any]]] = []
        self._draining = False

    async def append(self, args: Sequence[Any]) -> Any:
        """Run one append (the statement's parameters without the batch index); return its record or None."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((args, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                await self._send(batch)
        finally:
            self._draining = False
            if self._pending:  # arrived between the last check and the flag reset
                self._draining = True
                asyncio.get_running_loop().create_task(self._drain())

    async def _send(self, batch: list[tuple[Sequence[Any], asyncio.Future[Any]]]) -> None:
        try:
            async with self._db.driver_connection() as conn:
                if len(batch) == 1:
                    rows = [await conn.fetchrow(PG_APPEND_EVENT, *batch[0][0], 0)]
                else:
                    rows = await conn.fetchmany(PG_APPEND_EVENT, [(*args, i) for i, (args, _f) in enumerate(batch)])
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            for item in batch:  # isolate the failing append
                await self._send([item])
            return
        by_index = {row["batch_index"]: row for row in rows if row is not None}
        for i, (_args, future) in enumerate(batch):
            if not future.done():
                future.set_result(by_index.get(i))
