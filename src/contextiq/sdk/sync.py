"""Synchronous twins of the async clients: the same coroutines, run on a private event-loop thread.

Why a loop thread rather than a second (httpx.Client) implementation: the embedded client runs
SQLAlchemy's async engine, which needs an event loop anyway, so one mechanism serves both twins
and every behaviour (retries, errors, idempotency, pagination) is written once. It also works where
the caller already runs a loop (a notebook), since the client's loop is its own.

Why `blocking(AsyncSessions.create)` rather than a hand-written method per call: `blocking` is typed
with `ParamSpec`, so `Client().sessions.create` keeps the async method's exact parameters and turns
its `Coroutine[..., Session]` into `Session` for mypy and IDEs, and `functools.wraps` keeps the
docstring and `inspect.signature` for `help()`. Only the async classes are written by hand, but for
`Memories.import_jsonl` (it reads its rows in the caller's thread; see there).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar
from uuid import UUID

from contextiq.memories.models import ImportResult
from contextiq.sdk.base import AsyncClientBase
from contextiq.sdk.resources import (
    AsyncApiKeys,
    AsyncJobs,
    AsyncMemories,
    AsyncMemoryBanks,
    AsyncOrganization,
    AsyncSessions,
    ImportRow,
)

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A")
P = ParamSpec("P")
C = TypeVar("C", bound=AsyncClientBase)

STOP_TIMEOUT = 10.0


class LoopThread:
    """An asyncio event loop on a daemon thread; `run()` runs a coroutine there and waits for it."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._stopped = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    @property
    def stopped(self) -> bool:
        """Whether `stop()` was called."""
        return self._stopped

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop thread and return its result (or raise its error) here."""
        if self._stopped:
            coro.close()
            raise RuntimeError("this client is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a synchronous client cannot be called from its own event loop")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # KeyboardInterrupt while waiting: do not leave the call running
            raise

    def stop(self) -> None:
        """Stop the loop (cancelling what still runs) and wait for its thread; harmless twice."""
        if self._stopped:
            return
        self._stopped = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(STOP_TIMEOUT)


class SyncResource(Generic[A]):
    """A synchronous view of one async resource, run on a client's loop thread."""

    def __init__(self, runner: LoopThread, resource: A) -> None:
        self._runner = runner
        self._async = resource


def blocking(
    method: Callable[Concatenate[A, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncResource[A], P], R]:
    """Return a synchronous method that runs the async `method` of the wrapped resource."""

    @functools.wraps(method)
    def call(self: SyncResource[A], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._runner.run(method(self._async, *args, **kwargs))

    return call


def blocking_iter(
    method: Callable[Concatenate[A, P], AsyncIterator[R]],
) -> Callable[Concatenate[SyncResource[A], P], Generator[R, None, None]]:
    """Return a synchronous method that iterates the async iterator `method` returns (`close()` stops it)."""

    @functools.wraps(method)
    def call(self: SyncResource[A], /, *args: P.args, **kwargs: P.kwargs) -> Generator[R, None, None]:
        return _drain(self._runner, method(self._async, *args, **kwargs))

    return call


async def _next(iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return True, await anext(iterator)
    except StopAsyncIteration:
        return False, None


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def _drain(runner: LoopThread, iterator: AsyncIterator[T]) -> Generator[T, None, None]:
    try:
        while True:
            more, item = runner.run(_next(iterator))
            if not more:
                return
            yield item  # type: ignore[misc]  # `more` is True, so item is a T
    finally:
        if not runner.stopped:
            runner.run(_aclose(iterator))


class Sessions(SyncResource[AsyncSessions]):
    """Sessions and their events: `client.sessions` (the methods of `AsyncSessions`, blocking)."""

    create = blocking(AsyncSessions.create)
    get = blocking(AsyncSessions.get)
    list = blocking(AsyncSessions.list)
    iter = blocking_iter(AsyncSessions.iter)
    update = blocking(AsyncSessions.update)
    delete = blocking(AsyncSessions.delete)
    append_event = blocking(AsyncSessions.append_event)
    list_events = blocking(AsyncSessions.list_events)
    iter_events = blocking_iter(AsyncSessions.iter_events)


class MemoryBanks(SyncResource[AsyncMemoryBanks]):
    """Memory banks: `client.memory_banks` (the methods of `AsyncMemoryBanks`, blocking)."""

    create = blocking(AsyncMemoryBanks.create)
    get = blocking(AsyncMemoryBanks.get)
    list = blocking(AsyncMemoryBanks.list)
    update = blocking(AsyncMemoryBanks.update)
    delete = blocking(AsyncMemoryBanks.delete)


class Memories(SyncResource[AsyncMemories]):
    """Memories: `client.memories` (the methods of `AsyncMemories`, blocking; iterators are plain ones)."""

    create = blocking(AsyncMemories.create)
    get = blocking(AsyncMemories.get)
    list = blocking(AsyncMemories.list)
    iter = blocking_iter(AsyncMemories.iter)
    update = blocking(AsyncMemories.update)
    delete = blocking(AsyncMemories.delete)
    revisions = blocking(AsyncMemories.revisions)
    iter_revisions = blocking_iter(AsyncMemories.iter_revisions)
    rollback = blocking(AsyncMemories.rollback)
    retrieve = blocking(AsyncMemories.retrieve)
    export = blocking_iter(AsyncMemories.export)
    generate = blocking(AsyncMemories.generate)


    def import_jsonl(
        self, source: str | os.PathLike[str] | Iterable[ImportRow], *, bank_id: UUID | str | None = None
    ) -> ImportResult:
        """Import memories, all or nothing (`source_type` `imported`, new ids); errors name `line N: field`.

        Args:
            source: a JSONL file's path (`str` or `Path`), or rows: JSONL lines, `Memory` objects
                or their JSON objects. An open file works too (its lines), and so does `export()`.
            bank_id: the bank to import into; default: the tenant's bank `default`.
        """
        # Written out rather than blocking(): the rows are read here, in the caller's thread, since
        # they may come from this client's own iterator (`export()`), which runs on its loop thread.
        rows = source if isinstance(source, str | os.PathLike) else list(source)
        return self._runner.run(self._async.import_jsonl(rows, bank_id=bank_id))


class Jobs(SyncResource[AsyncJobs]):
    """Generation jobs: `client.jobs` (the methods of `AsyncJobs`, blocking)."""

    get = blocking(AsyncJobs.get)
    list = blocking(AsyncJobs.list)
    iter = blocking_iter(AsyncJobs.iter)
    cancel = blocking(AsyncJobs.cancel)
    events = blocking(AsyncJobs.events)
    iter_events = blocking_iter(AsyncJobs.iter_events)
    wait = blocking(AsyncJobs.wait)


class ApiKeys(SyncResource[AsyncApiKeys]):
    """The tenant's API keys: `client.api_keys` (the methods of `AsyncApiKeys`, blocking)."""

    create = blocking(AsyncApiKeys.create)
    list = blocking(AsyncApiKeys.list)
    revoke = blocking(AsyncApiKeys.revoke)


class Organization(SyncResource[AsyncOrganization]):
    """The caller's organization: `client.organization` (the methods of `AsyncOrganization`, blocking)."""

    get = blocking(AsyncOrganization.get)


def _shutdown(runner: LoopThread, client: AsyncClientBase) -> None:
    if runner.stopped:
        return
    try:
        runner.run(client.aclose())
    finally:
        runner.stop()


class SyncClientBase(Generic[C]):
    """What both synchronous clients share: resources, `health()`, `close()` and `with`."""

    def __init__(self, runner: LoopThread, client: C) -> None:
        self._runner = runner
        self._async = client
        self.sessions = Sessions(runner, client.sessions)
        self.memory_banks = MemoryBanks(runner, client.memory_banks)
        self.memories = Memories(runner, client.memories)
        self.jobs = Jobs(runner, client.jobs)
        self.api_keys = ApiKeys(runner, client.api_keys)
        self.organization = Organization(runner, client.organization)
        # A client dropped without close() still releases its connections and thread.
        self._finalizer = weakref.finalize(self, _shutdown, runner, client)

    def health(self) -> dict[str, str]:
        """Return `{"status": "ok", "version": …}` when ContextIQ is alive."""
        return self._runner.run(self._async.health())

    def close(self) -> None:
        """Close connections and stop the client's thread; calling it twice is harmless."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
