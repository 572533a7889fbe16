"""`:retrieve` latency and throughput at scale: many memories in many scopes, PostgreSQL or SQLite, beside mem0.

Run from the repository root (one command each; see docs/benchmarks.md, "Retrieval")::

    python bench/retrieve_scale.py --backend postgres --memories 1000000 --scopes 10000 --http
    python bench/retrieve_scale.py --backend sqlite --memories 100000 --scopes 1000
    python bench/retrieve_scale.py --backend postgres --memories 100000 --scopes 1000 --mem0 100000
    python bench/retrieve_scale.py --memories 1000000 --scopes 10000 --http --keep-db ciq_scale_1m \
        --concurrency 8 --server-workers 2

1. data: `--memories` synthetic memories spread evenly over `--scopes` scopes of one tenant and bank.
   Texts are sentences drawn from a small vocabulary (made up here; no dataset); vectors are real
   MiniLM embeddings of `--pool` distinct sentences (the product's provider) with a little noise,
   L2-normalised, so that neighbours are not all ties.
2. load: PostgreSQL gets the rows by binary COPY (asyncpg, pgvector's binary codec) with the
   secondary indexes of `memories` dropped first and rebuilt after, as a bulk import would; SQLite
   by executemany through SQLAlchemy (its FTS5 triggers index the text). Revisions are not written
   (retrieval never reads them). Load time and rows/s are printed.
   `--keep-db NAME` (PostgreSQL): use the database NAME and keep it afterwards. Once a load has
   finished, the table `bench_scale_meta` in it records --memories/--scopes/--pool, the org and bank
   ids, the API key and the load's timings; a later run with the same three sizes skips creating the
   org and loading (the schema is still upgraded, so new migrations apply), any other run drops and
   recreates NAME and loads. Without it, a fresh database is made and dropped at the end.
3. retrieve, one client: `--queries` distinct queries (so that the embedding cache never answers) on
   random scopes, per mode (similarity, keyword, hybrid), top_k 10: in-process through the service,
   and with `--http` through a uvicorn server on 127.0.0.1 (a subprocess) over one keep-alive
   connection; p50/p95/mean and queries/s (one client at a time). The query embedding is included.
   The HTTP client is `LeanHttp`, a few lines over asyncio streams: the machine's 2 cores are shared
   by the client and the server, and httpx spends ~3 ms of CPU per request here against ~0.2 ms.
4. `--mem0 N`: mem0 OSS (bench/.venv-mem0) with N memories in local qdrant or (`--mem0-store
   pgvector`) pgvector in a fresh database (inserted straight into its vector store: `add` embeds one
   text at a time, ~50/s), then `search` on the same queries one at a time; printed as ratios to
   ContextIQ's similarity and hybrid modes. The mem0 process stays up for the rounds below.
5. throughput, in `--rounds R` interleaved rounds: N (`--concurrency`) asyncio tasks calling the
   service of one Runtime in process (as mem0's N threads call one `Memory`), with `--http` N
   keep-alive connections to the same server, and with `--mem0` N threads calling `search` on the
   one `Memory`; each round sends fresh distinct queries, each caller its share; q/s is queries
   over wall time, with p50/p95 under that load. The ratios to mem0 are taken within a round (the
   machine's speed drifts between minutes) and their median is printed. `--server-workers W` > 1
   then also starts a server of W uvicorn worker processes (`contextiq.api.app:app_from_env`,
   settings in CONTEXTIQ_* variables) and measures the same there, once.

Targets (issue 4 §4): retrieve p95 <= 10 ms over HTTP at 1M memories (query embedding included);
>= 5x mem0's search throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
MEM0_PYTHON = ROOT / "bench" / ".venv-mem0" / "bin" / "python"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MODES = ("similarity", "keyword", "hybrid")

if (SRC / "contextiq").is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from locomo_mem0 import ROUND_DONE, ROUND_READY  # noqa: E402 (bench/, stdlib only at import)

_SUBJECTS = "I my sister my manager our team the landlord my partner the doctor my son the neighbour we".split()
_VERBS = (
    "likes prefers booked cancelled visited bought moved started finished planned forgot asked about "
    "recommended complained about paid for painted adopted"
).split()
_OBJECTS = (
    "a trip to Lisbon|the piano lessons|a vegetarian dinner|the car insurance|a new apartment|the dentist "
    "appointment|a marathon in spring|the pottery class|a golden retriever|the quarterly report|a camping weekend|"
    "the jazz concert|a standing desk|the garden shed|a birthday party|the flight to Tokyo|a yoga retreat|"
    "the library card|a sourdough starter|the chess club"
).split("|")
_WHEN = "on Monday|last week|in May|yesterday|every Sunday|next month|after work|in the morning|twice a year|".split(
    "|"
)


def sentence(rng: random.Random) -> str:
    when = rng.choice(_WHEN)
    return f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {when}".strip()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    return {
        "p50": at(50),
        "p95": at(95),
        "mean": sum(ordered) / len(ordered),
        "qps": 1000 * len(ordered) / sum(ordered),
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def pool_texts(size: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return list(dict.fromkeys(sentence(rng) for _ in range(size * 3)))[:size]


def model_name() -> str:
    """The name the product's default embedding provider gives its vectors: memories stored under
    another name are not compared with its query vectors (so they would never be found)."""
    from contextiq.core.llm.embeddings import make_embedding_provider

    return str(make_embedding_provider(threads=1, cache_size=0).model)


async def embed_pool(texts: list[str]) -> Any:
    from contextiq.core.llm.embeddings import make_embedding_provider

    provider = make_embedding_provider(threads=2, cache_size=0)
    return await provider.embed(texts)


def rows(
    n: int, scopes: int, texts: list[str], vectors: Any, *, tenant: uuid.UUID, bank: uuid.UUID, seed: int, model: str
) -> Iterator[dict[str, Any]]:
    import numpy as np

    from contextiq.core.ids import new_id
    from contextiq.core.scope import scope_key

    rng = np.random.default_rng(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(n):
        j = int(rng.integers(len(texts)))
        vector = vectors[j] + rng.normal(0, 0.02, vectors.shape[1]).astype(np.float32)
        vector /= np.linalg.norm(vector)
        scope = {"user_id": f"user-{i % scopes}"}
        when = start + timedelta(minutes=i // scopes)
        yield {
            "id": new_id(),
            "tenant_id": tenant,
            "bank_id": bank,
            "scope": scope,
            "scope_key": scope_key(scope),
            "fact": texts[j],
            "topic": "USER_PREFERENCES",
            "confidence": 1.0,
            "source_type": "imported",
            "metadata": {},
            "created_at": when,
            "updated_at": when,
            "revision_count": 0,
            "is_deleted": False,
            "revision": 1,
            "embedding": vector,
            "embedding_model": model,
            "event_time": when,
            "valid_from": when,
        }


# ---------------------------------------------------------------------------------------------
# ContextIQ
# ---------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(backend: str, pg_admin: str) -> Any:
    """Yield a SQLAlchemy URL of a fresh database (dropped or deleted at the end)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ciq-scale-") as tmp:
            yield f"sqlite+aiosqlite:///{tmp}/scale.db", Path(tmp)
        return
    import asyncpg

    name = f"ciq_scale_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(pg_admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        with tempfile.TemporaryDirectory(prefix="ciq-scale-") as tmp:
            yield pg_url(pg_admin, name), Path(tmp)
    finally:
        conn = await asyncpg.connect(pg_admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


META_TABLE = "bench_scale_meta"


def pg_url(pg_admin: str, name: str) -> str:
    head = pg_admin.rsplit("/", 1)[0].split("://", 1)[1]
    return f"postgresql+asyncpg://{head}/{name}"


async def read_meta(url: str) -> dict[str, Any] | None:
    """The completed load recorded in `bench_scale_meta` of that database, or None."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        row = await conn.fetchrow(
            f"SELECT memories, scopes, pool, model, org_id, bank_id, api_key, load::text AS load, "
            f"loaded_at FROM {META_TABLE} WHERE id = 1"
        )
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):  # none, or from before `model`
        return None
    finally:
        await conn.close()
    if row is None:
        return None
    meta = dict(row)
    meta["load"] = json.loads(meta["load"])
    return meta


async def write_meta(url: str, meta: dict[str, Any]) -> None:
    """Record a finished load (written last, so that a cut-short load is never taken for one)."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {META_TABLE} (id int PRIMARY KEY CHECK (id = 1), memories bigint NOT NULL, "
            "scopes bigint NOT NULL, pool int NOT NULL, model text NOT NULL, org_id uuid NOT NULL, "
            "bank_id uuid NOT NULL, api_key text NOT NULL, load jsonb NOT NULL, "
            "loaded_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(
            f"INSERT INTO {META_TABLE} (id, memories, scopes, pool, model, org_id, bank_id, api_key, load) "
            "VALUES (1, $1, $2, $3, $8, $4, $5, $6, $7::jsonb) ON CONFLICT (id) DO UPDATE SET memories = $1, "
            "scopes = $2, pool = $3, model = $8, org_id = $4, bank_id = $5, api_key = $6, load = $7::jsonb, "
            "loaded_at = now()",
            meta["memories"],
            meta["scopes"],
            meta["pool"],
            meta["org_id"],
            meta["bank_id"],
            meta["api_key"],
            json.dumps(meta["load"]),
            meta["model"],
        )
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def kept_database(pg_admin: str, name: str, want: dict[str, int]) -> Any:
    """Yield (URL, data dir, meta) of the PostgreSQL database `name`, kept at the end.

    `meta` is its recorded load when that matches `want` (memories, scopes, pool, model); otherwise the
    database is dropped and created empty, and `meta` is None.
    """
    import asyncpg

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise SystemExit(f"--keep-db {name!r}: use a plain lower-case identifier (letters, digits, _)")
    if name == pg_admin.rsplit("/", 1)[1].split("?", 1)[0] or name in ("postgres", "template0", "template1"):
        raise SystemExit(f"--keep-db {name!r}: not the admin or a template database")
    url = pg_url(pg_admin, name)
    conn = await asyncpg.connect(pg_admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await conn.close()
    meta = await read_meta(url) if exists else None
    if meta is not None and any(meta[k] != v for k, v in want.items()):
        log(f"database {name} holds {', '.join(f'{k}={meta[k]}' for k in want)}: reloading")
        meta = None
    if meta is None:
        conn = await asyncpg.connect(pg_admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    with tempfile.TemporaryDirectory(prefix="ciq-scale-") as tmp:
        yield url, Path(tmp), meta


def settings_for(url: str, data_dir: Path) -> Any:
    from contextiq.core.config import Settings

    return Settings(
        database_url=url,
        data_dir=data_dir,
        redis_url=None,
        worker_enabled=False,
        rate_limit_per_minute=1_000_000,
        auto_migrate=True,
    )


async def load_postgres(url: str, data: Iterator[dict[str, Any]], n: int) -> dict[str, float]:
    import asyncpg
    from pgvector.asyncpg import register_vector

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    await register_vector(conn)
    await conn.set_type_codec(  # COPY is binary: jsonb's binary form is a version byte, then the text
        "jsonb",
        encoder=lambda v: b"\x01" + json.dumps(v).encode(),
        decoder=lambda b: json.loads(b[1:]),
        schema="pg_catalog",
        format="binary",
    )
    indexes = await conn.fetch(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'memories' AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
    )
    start = time.perf_counter()
    for ix in indexes:
        await conn.execute(f'DROP INDEX "{ix["indexname"]}"')
    columns = None
    batch: list[tuple[Any, ...]] = []
    copied = 0
    for row in data:
        if columns is None:
            columns = list(row)
        batch.append(tuple(row.values()))
        if len(batch) == 50_000:
            await conn.copy_records_to_table("memories", records=batch, columns=columns)
            copied += len(batch)
            batch = []
            log(f"copied {copied}/{n} ({copied / (time.perf_counter() - start):.0f} rows/s)")
    if batch:
        await conn.copy_records_to_table("memories", records=batch, columns=columns)
    copied_at = time.perf_counter()
    for ix in indexes:
        await conn.execute(ix["indexdef"])
    await conn.execute("VACUUM (ANALYZE) memories")  # statistics and the visibility map, as autovacuum would
    done = time.perf_counter()
    await conn.close()
    return {
        "copy_s": copied_at - start,
        "index_s": done - copied_at,
        "load_s": done - start,
        "rows_per_s": n / (copied_at - start),
    }


async def load_sqlite(runtime: Any, data: Iterator[dict[str, Any]], n: int) -> dict[str, float]:
    from sqlalchemy import insert, text

    from contextiq.memories.tables import MemoryRow

    table = MemoryRow.__table__
    start = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for row in data:
        row["metadata_"] = row.pop("metadata")
        batch.append(row)
        if len(batch) == 10_000:
            async with runtime.db.write() as db:
                await db.execute(
                    insert(table),
                    [{table.c[k if k != "metadata_" else "metadata"].key: v for k, v in r.items()} for r in batch],
                )
            batch = []
    if batch:
        async with runtime.db.write() as db:
            await db.execute(
                insert(table),
                [{table.c[k if k != "metadata_" else "metadata"].key: v for k, v in r.items()} for r in batch],
            )
    async with runtime.db.write() as db:  # as after any bulk load: statistics, WAL folded in
        await db.execute(text("ANALYZE"))
    async with runtime.db.engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    done = time.perf_counter()
    return {"load_s": done - start, "rows_per_s": n / (done - start)}


def queries(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < count:
        out[f"what about {rng.choice(_OBJECTS)} {rng.choice(_WHEN)} {rng.randint(0, 10**6)}".strip()] = None
    return list(out)


async def measure_inprocess(
    runtime: Any, tenant: uuid.UUID, qs: list[str], scopes: int, *, warmup: int
) -> dict[str, dict[str, float]]:
    from contextiq.memories.models import RetrieveRequest

    rng = random.Random(7)
    out = {}
    for mode in MODES:
        times = []
        for k, q in enumerate(qs):
            request = RetrieveRequest(
                scope={"user_id": f"user-{rng.randrange(scopes)}"}, query=f"{mode} {q}", top_k=10, mode=mode
            )
            start = time.perf_counter()
            await runtime.memories.retrieve_memories(tenant_id=tenant, request=request)
            if k >= warmup:
                times.append((time.perf_counter() - start) * 1000)
        out[mode] = percentiles(times)
    return out


async def check_found(runtime: Any, tenant: uuid.UUID, scopes: int) -> None:
    """Every mode must bring back memories from the loaded data, or the timings measure nothing."""
    from contextiq.memories.models import RetrieveRequest

    for mode in MODES:
        for user in (0, scopes // 2, scopes - 1):
            request = RetrieveRequest(scope={"user_id": f"user-{user}"}, query=f"what about {_OBJECTS[0]}", mode=mode)
            found = await runtime.memories.retrieve_memories(tenant_id=tenant, request=request)
            if not found.memories:
                raise SystemExit(f"{mode} found no memory of user-{user}: the loaded data is not searchable")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(url: str, data_dir: Path) -> dict[str, str]:
    """The server's settings as CONTEXTIQ_* variables (what every uvicorn worker process reads).

    The schema is already at head (this script's own Runtime migrated it), so the workers only check it.
    Of the caller's CONTEXTIQ_* variables only the embedding settings (which reach the in-process
    Runtime too) and CONTEXTIQ_SERVER_LOOP pass.
    """
    kept = ("CONTEXTIQ_EMBEDDINGS_", "CONTEXTIQ_SERVER_LOOP")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTEXTIQ_") or k.startswith(kept)}
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p),
        CONTEXTIQ_DATABASE_URL=url,
        CONTEXTIQ_DATA_DIR=str(data_dir),
        CONTEXTIQ_WORKER_ENABLED="false",
        CONTEXTIQ_RATE_LIMIT_PER_MINUTE="1000000",
        CONTEXTIQ_AUTO_MIGRATE="false",
    )
    return env


def serve(port: int, workers: int) -> None:
    """The server subprocess: settings from the environment (see `server_env`)."""
    import uvicorn

    from contextiq.core.config import Settings

    settings = Settings()
    if workers > 1:  # uvicorn's workers need an import string: the factory reads CONTEXTIQ_* itself
        uvicorn.run(
            "contextiq.api.app:app_from_env",
            factory=True,
            loop=settings.serve_loop(workers),  # as `contextiq serve`
            workers=workers,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
        return
    from contextiq.api.app import create_app

    app = create_app(settings, bootstrap=False, background=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop=settings.serve_loop(1))


@contextlib.contextmanager
def live_server(url: str, data_dir: Path, workers: int = 1) -> Iterator[str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", "--port", str(port), "--workers", str(workers)],
        env=server_env(url, data_dir),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /healthz within 120 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LeanHttp:
    """One keep-alive HTTP/1.1 connection that POSTs JSON to `:retrieve`: the load generator.

    A load generator must cost little next to the server it measures, and this one shares 2 cores
    with it: httpx spends ~3 ms of CPU per request here, this client ~0.2 ms (both measured under
    load), which would otherwise be taken from the server. It speaks just what uvicorn answers
    (Content-Length or chunked bodies) and raises on any status but 200.
    """

    def __init__(self, base: str, key: str) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port or 80)
        self.head = (
            f"POST /v1/memories:retrieve HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> LeanHttp:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()

    async def post(self, body: dict[str, Any]) -> bytes:
        assert self.reader is not None and self.writer is not None
        data = json.dumps(body).encode()
        self.writer.write(self.head + str(len(data)).encode() + b"\r\n\r\n" + data)
        status = await self.reader.readuntil(b"\r\n")
        length, chunked = 0, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size + 2))
            await self.reader.readuntil(b"\r\n")
            payload = b"".join(p[:-2] for p in parts)
        else:
            payload = await self.reader.readexactly(length)
        if status.split()[1] != b"200":
            raise RuntimeError(f"{status.decode().strip()}: {payload[:500]!r}")
        return payload


async def measure_http(base: str, key: str, qs: list[str], scopes: int, *, warmup: int) -> dict[str, dict[str, float]]:
    rng = random.Random(7)
    out = {}
    async with LeanHttp(base, key) as client:
        for mode in MODES:
            times = []
            for k, q in enumerate(qs):
                body = {
                    "scope": {"user_id": f"user-{rng.randrange(scopes)}"},
                    "query": f"http {mode} {q}",
                    "top_k": 10,
                    "mode": mode,
                }
                start = time.perf_counter()
                await client.post(body)
                if k >= warmup:
                    times.append((time.perf_counter() - start) * 1000)
            out[mode] = percentiles(times)
    return out


async def burst(workers: list[Any], bodies: list[Any], times: list[float] | None, call: Any) -> float:
    """Send `bodies` from `len(workers)` concurrent callers (each its share, one after another)
    through `call(worker, body)`; return the wall time, appending each call's latency to `times`."""

    async def share(worker: Any, items: list[Any]) -> None:
        for body in items:
            start = time.perf_counter()
            await call(worker, body)
            if times is not None:
                times.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(share(w, bodies[i :: len(workers)]) for i, w in enumerate(workers)))
    return time.perf_counter() - start


def load_stats(times: list[float], wall: float) -> dict[str, float]:
    stats = percentiles(times)
    stats.update(qps=len(times) / wall, wall_s=wall, queries=len(times))
    return stats


async def measure_http_concurrent(
    base: str, key: str, qs: list[str], scopes: int, *, concurrency: int, warmup: int, tag: str
) -> dict[str, dict[str, float]]:
    """Per mode: `concurrency` connections share the queries; q/s from the wall time."""
    rng = random.Random(11)
    out = {}
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(LeanHttp(base, key)) for _ in range(concurrency)]

        async def call(client: LeanHttp, body: dict[str, Any]) -> None:
            await client.post(body)

        for mode in MODES:
            bodies = [
                {
                    "scope": {"user_id": f"user-{rng.randrange(scopes)}"},
                    "query": f"{tag} {mode} {q}",
                    "top_k": 10,
                    "mode": mode,
                }
                for q in qs
            ]
            await burst(clients, bodies[:warmup], None, call)  # loads each worker's model
            times: list[float] = []
            out[mode] = load_stats(times, await burst(clients, bodies[warmup:], times, call))
    return out


async def measure_inprocess_concurrent(
    runtime: Any, tenant: uuid.UUID, qs: list[str], scopes: int, *, concurrency: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Per mode: `concurrency` asyncio tasks call the service of one Runtime (as mem0's threads
    call one `Memory`): the library's own throughput, without HTTP."""
    from contextiq.memories.models import RetrieveRequest

    rng = random.Random(13)
    out = {}

    async def call(_: int, request: Any) -> None:
        await runtime.memories.retrieve_memories(tenant_id=tenant, request=request)

    for mode in MODES:
        requests = [
            RetrieveRequest(
                scope={"user_id": f"user-{rng.randrange(scopes)}"}, query=f"tasks {mode} {q}", top_k=10, mode=mode
            )
            for q in qs
        ]
        workers = list(range(concurrency))
        await burst(workers, requests[:warmup], None, call)
        times: list[float] = []
        out[mode] = load_stats(times, await burst(workers, requests[warmup:], times, call))
    return out


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from contextiq.platform.models import ApiKeyCreate, OrganizationCreate
    from contextiq.runtime import Runtime

    results: dict[str, Any] = {
        "backend": args.backend,
        "memories": args.memories,
        "scopes": args.scopes,
        "pool": args.pool,
        "queries": args.queries,
        "concurrency": args.concurrency,
        "rounds": [],
    }
    texts = pool_texts(args.pool, seed=1)
    qs = queries(args.queries + args.warmup, seed=2)
    async with contextlib.AsyncExitStack() as stack:
        runtime: Any = None
        base = key = None
        tenant: Any = None
        if not args.no_contextiq:
            want: dict[str, Any] = {
                "memories": args.memories, "scopes": args.scopes, "pool": args.pool, "model": model_name()
            }
            db = kept_database(args.pg, args.keep_db, want) if args.keep_db else _fresh(args.backend, args.pg)
            url, data_dir, meta = await stack.enter_async_context(db)
            runtime = Runtime(settings_for(url, data_dir))
            stack.push_async_callback(runtime.aclose)
            await runtime.prepare_schema()  # on a kept database: applies the migrations added since
            if meta is not None:
                log(f"database {args.keep_db}: reusing its load of {meta['loaded_at']:%Y-%m-%d %H:%M}")
                tenant, key = meta["org_id"], meta["api_key"]
                results["load"] = meta["load"]
                results["db"] = {"name": args.keep_db, "kept": True, "reused": True}
            else:
                log(f"embedding a pool of {args.pool} sentences")
                vectors = await embed_pool(texts)
                org = await runtime.platform.create_org(OrganizationCreate(name="scale"))
                created = await runtime.platform.create_key(
                    org_id=org.id, data=ApiKeyCreate(name="scale", scopes=["admin"], rate_limit=1_000_000)
                )
                tenant, key = org.id, created.key
                bank = await runtime.memories.get_bank(tenant_id=org.id, bank_id=None)
                data = rows(
                    args.memories, args.scopes, texts, vectors, tenant=org.id, bank=bank.id, seed=3,
                    model=want["model"],
                )
                log(f"loading {args.memories} memories into {args.scopes} scopes ({args.backend})")
                if args.backend == "postgres":
                    results["load"] = await load_postgres(url, data, args.memories)
                else:
                    results["load"] = await load_sqlite(runtime, data, args.memories)
                log(f"loaded: {results['load']}")
                if args.keep_db:
                    await write_meta(
                        url, {**want, "org_id": org.id, "bank_id": bank.id, "api_key": key, "load": results["load"]}
                    )
                    results["db"] = {"name": args.keep_db, "kept": True, "reused": False}
            await check_found(runtime, tenant, args.scopes)
            log("retrieve in-process")
            results["inprocess"] = await measure_inprocess(runtime, tenant, qs, args.scopes, warmup=args.warmup)
            if args.http:
                log("retrieve over HTTP (uvicorn subprocess)")
                base = stack.enter_context(live_server(url, data_dir))
                results["http"] = await measure_http(base, key, qs, args.scopes, warmup=args.warmup)
        warmup = 2 * args.concurrency
        mem0: Mem0Run | None = None
        if args.mem0:
            log(f"mem0 with {args.mem0} memories ({args.mem0_store})")
            pg = None
            if args.mem0_store == "pgvector":
                mem0_url, _ = await stack.enter_async_context(database("postgres", args.pg))
                pg = mem0_url.replace("postgresql+asyncpg://", "postgresql://")
            mem0 = stack.enter_context(
                Mem0Run(
                    args.mem0, args.scopes * args.mem0 // args.memories or 1, texts, qs,
                    warmup=args.warmup, concurrency=args.concurrency, load_warmup=warmup,
                    rounds=[queries(args.queries + warmup, seed=100 + r) for r in range(args.rounds)], pg=pg,
                )
            )
        if mem0 is not None:
            # mem0's insert (embedding 100k texts) would otherwise run beside ContextIQ's first round.
            log("waiting for mem0's insert and one-client search to finish")
            await asyncio.to_thread(mem0.wait_ready)
        if args.concurrency > 1 or mem0 is not None:
            for number in range(args.rounds):
                # Interleaved: each round measures every side within a minute or two of the others.
                this: dict[str, Any] = {}
                if runtime is not None and args.concurrency > 1:
                    log(f"round {number + 1}/{args.rounds}: retrieve in-process, {args.concurrency} concurrent tasks")
                    this["inprocess"] = await measure_inprocess_concurrent(
                        runtime, tenant, queries(args.queries + warmup, seed=200 + number), args.scopes,
                        concurrency=args.concurrency, warmup=warmup,
                    )
                if base is not None and args.concurrency > 1:
                    log(f"round {number + 1}/{args.rounds}: retrieve over HTTP at concurrency {args.concurrency}")
                    this["http"] = await measure_http_concurrent(
                        base, key, queries(args.queries + warmup, seed=300 + number), args.scopes,
                        concurrency=args.concurrency, warmup=warmup, tag=f"round{number}",
                    )
                if mem0 is not None:
                    log(f"round {number + 1}/{args.rounds}: mem0 search from {args.concurrency} threads")
                    this["mem0"] = await asyncio.to_thread(mem0.round)
                results["rounds"].append(this)
        if mem0 is not None:
            results["mem0"] = await asyncio.to_thread(mem0.finish)
        if base is not None and args.server_workers > 1:
            log(f"retrieve over HTTP, {args.server_workers} uvicorn workers (once, after the rounds)")
            with live_server(url, data_dir, workers=args.server_workers) as many:
                more = max(args.warmup, 2 * args.concurrency * args.server_workers)  # reaches every worker
                results["workers"] = {
                    "server_workers": args.server_workers,
                    "modes": await measure_http_concurrent(
                        many, key, queries(args.queries + more, seed=400), args.scopes,
                        concurrency=args.concurrency, warmup=more, tag=f"load{args.server_workers}",
                    ),
                }
    return results


@contextlib.asynccontextmanager
async def _fresh(backend: str, pg_admin: str) -> Any:
    async with database(backend, pg_admin) as (url, data_dir):
        yield url, data_dir, None


class Mem0Run:
    """mem0 OSS in its own virtualenv (`bench/locomo_mem0.py --scale`), alive for the whole run:
    it inserts, measures one client at a time, then runs one throughput burst per `round()` call,
    so that the parent interleaves mem0's bursts with ContextIQ's on the same noisy machine."""

    def __init__(
        self,
        n: int,
        scopes: int,
        texts: list[str],
        qs: list[str],
        *,
        warmup: int,
        concurrency: int,
        load_warmup: int,
        rounds: list[list[str]],
        pg: str | None,
    ) -> None:
        if not MEM0_PYTHON.exists():
            raise SystemExit("no bench/.venv-mem0: run `python bench/locomo.py --setup-mem0` first")
        self._work = {
            "memories": n, "scopes": scopes, "texts": texts, "queries": qs, "warmup": warmup, "pg": pg,
            "concurrency": concurrency, "rounds": rounds, "load_warmup": load_warmup,
        }
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._ready = False

    def __enter__(self) -> Mem0Run:
        self._tmp = tempfile.TemporaryDirectory(prefix="ciq-scale-mem0-")
        tmp = Path(self._tmp.name)
        (tmp / "work.json").write_text(json.dumps(self._work))
        env = dict(os.environ, MEM0_TELEMETRY="False", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        self._proc = subprocess.Popen(
            [
                str(MEM0_PYTHON), str(ROOT / "bench" / "locomo_mem0.py"),
                "--scale", str(tmp / "work.json"), "--out", str(tmp / "out.json"), "--dir", str(tmp),
            ],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        return self

    def _line(self, marker: str) -> str:
        """The rest of the child's next line that starts with `marker` (others are passed on)."""
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith(marker):
                return line[len(marker) :].strip()
            sys.stderr.write(line)
        raise RuntimeError(f"mem0 exited with {self._proc.wait()} before {marker}")

    def wait_ready(self) -> None:
        """Block until the child has inserted, vacuumed and measured its one-client search and waits
        for its first round: until then it loads the machine (call it in a thread)."""
        if not self._ready:
            self._line(ROUND_READY)
            self._ready = True

    def round(self) -> dict[str, Any]:
        """Run one throughput burst (blocking: call it in a thread) and return its numbers."""
        assert self._proc is not None and self._proc.stdin is not None
        self.wait_ready()
        self._ready = False  # the next round waits for the child's next ROUND_READY
        self._proc.stdin.write("go\n")
        self._proc.stdin.flush()
        return dict(json.loads(self._line(ROUND_DONE)))

    def finish(self) -> dict[str, Any]:
        """Wait for the child to write its results (blocking) and return them."""
        assert self._proc is not None and self._tmp is not None
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        code = self._proc.wait()
        if code != 0:
            raise RuntimeError(f"mem0 exited with {code}")
        return dict(json.loads((Path(self._tmp.name) / "out.json").read_text()))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()


def render(r: dict[str, Any]) -> str:
    lines = [f"== :retrieve at scale: {r['memories']:,} memories in {r['scopes']:,} scopes on {r['backend']}"]
    if "load" in r:
        load = json.dumps({k: round(v, 1) for k, v in r["load"].items()})
        db = r.get("db")
        if db and db["reused"]:
            lines.append(f"load: skipped, database {db['name']} reused (its load: {load})")
        else:
            lines.append(f"load: {load}" + (f" (kept in database {db['name']})" if db else ""))
    for where in ("inprocess", "http"):
        if where not in r:
            continue
        for mode, p in r[where].items():
            lines.append(
                f"{where:<10}{mode:<12} p50 {p['p50']:7.2f} ms   p95 {p['p95']:7.2f} ms   "
                f"mean {p['mean']:7.2f} ms   {p['qps']:7.1f} q/s (one client)"
            )
    m = r.get("mem0")
    if m:
        s = m["search"]
        lines.append(
            f"mem0 ({m['version']}, {m.get('store', 'qdrant local')}, {m['memories']:,} memories, "
            f"insert {m['insert_s']:.0f} s): search p50 {s['p50']:.2f} ms p95 {s['p95']:.2f} ms, {s['qps']:.1f} q/s"
        )
        for where in ("inprocess", "http"):
            for mode in ("similarity", "hybrid"):
                if where in r:
                    lines.append(
                        f"  throughput ContextIQ {where} {mode} / mem0 = {r[where][mode]['qps'] / s['qps']:.1f}x"
                    )
    rounds = r.get("rounds") or []
    if rounds:
        n = r["concurrency"]
        lines.append(
            f"-- throughput at concurrency {n}, {len(rounds)} interleaved round(s) (q/s = queries / wall time; "
            "each cell: round 1 · round 2 · ...; × mem0 in the same round, median last)"
        )
        mem0_qps = [x["mem0"]["qps"] for x in rounds if "mem0" in x]
        for side, label in (("inprocess", f"ContextIQ in process ({n} tasks)"), ("http", "ContextIQ HTTP, 1 worker")):
            if not all(side in x for x in rounds):
                continue
            for mode in MODES:
                qps = [x[side][mode]["qps"] for x in rounds]
                line = f"{label:<32}{mode:<12} " + " · ".join(f"{q:6.1f}" for q in qps) + " q/s"
                if len(mem0_qps) == len(qps):
                    ratios = [q / m0 for q, m0 in zip(qps, mem0_qps, strict=True)]
                    line += "   " + " · ".join(f"{x:4.1f}x" for x in ratios) + f"   median {median(ratios):4.1f}x mem0"
                lines.append(line)
        if mem0_qps:
            label = f"mem0 ({(m or {}).get('store', 'qdrant local')})"
            threads = rounds[0]["mem0"].get("threads", n)
            lines.append(
                f"{label:<32}{'search':<12} " + " · ".join(f"{q:6.1f}" for q in mem0_qps)
                + f" q/s   ({threads} threads, one Memory)"
            )
    workers = r.get("workers")
    if workers:
        mem0_median = median([x["mem0"]["qps"] for x in rounds if "mem0" in x]) if rounds else None
        for mode, p in workers["modes"].items():
            line = (
                f"ContextIQ HTTP, {workers['server_workers']} workers  {mode:<12} {p['qps']:7.1f} q/s   "
                f"p50 {p['p50']:7.2f} ms   p95 {p['p95']:7.2f} ms"
            )
            if mem0_median:
                line += f"   {p['qps'] / mem0_median:4.1f}x mem0's median"
            lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    p.add_argument("--memories", type=int, default=100_000)
    p.add_argument("--scopes", type=int, default=1_000)
    p.add_argument("--pool", type=int, default=2_000, help="distinct sentences (and embeddings)")
    p.add_argument("--queries", type=int, default=300, help="measured queries per mode")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--http", action="store_true", help="also over HTTP (uvicorn on 127.0.0.1)")
    p.add_argument("--mem0", type=int, default=0, metavar="N", help="also mem0 with N memories")
    p.add_argument(
        "--mem0-store",
        choices=("qdrant", "pgvector"),
        default="qdrant",
        help="mem0's vector store: local qdrant, or pgvector in a fresh database of --pg",
    )
    p.add_argument("--no-contextiq", action="store_true", help="only mem0 (with --mem0)")
    p.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL admin DSN (a fresh database is made)")
    p.add_argument(
        "--keep-db",
        metavar="NAME",
        help="PostgreSQL: use and keep the database NAME; a finished load of the same "
        "--memories/--scopes/--pool in it is reused (no reload), else it is dropped, recreated and loaded",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=8,
        metavar="N",
        help="concurrent clients for the throughput runs (ContextIQ over HTTP, mem0's search)",
    )
    p.add_argument(
        "--server-workers",
        type=int,
        default=1,
        metavar="W",
        help="with --http and W > 1: also measure throughput on a server of W uvicorn worker processes",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        metavar="R",
        help="throughput rounds; each measures ContextIQ (in process, over HTTP) and mem0 one after another",
    )
    p.add_argument("--json-out", type=Path)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.port, args.workers)
        return 0
    if args.keep_db and args.backend != "postgres":
        p.error("--keep-db needs --backend postgres")
    if args.concurrency < 1 or args.server_workers < 1 or args.rounds < 1:
        p.error("--concurrency, --server-workers and --rounds must be >= 1")
    if args.server_workers > 1 and not args.http:
        p.error("--server-workers needs --http")
    results = asyncio.run(run(args))
    print(render(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
