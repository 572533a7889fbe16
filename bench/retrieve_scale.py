"""`:retrieve` latency at scale: many memories in many scopes, PostgreSQL or SQLite, beside mem0.

Run from the repository root (one command each; see docs/benchmarks.md, "Retrieval")::

    python bench/retrieve_scale.py --backend postgres --memories 1000000 --scopes 10000 --http
    python bench/retrieve_scale.py --backend sqlite --memories 100000 --scopes 1000
    python bench/retrieve_scale.py --backend postgres --memories 100000 --scopes 1000 --mem0

1. data: `--memories` synthetic memories spread evenly over `--scopes` scopes of one tenant and bank.
   Texts are sentences drawn from a small vocabulary (made up here; no dataset); vectors are real
   MiniLM embeddings of `--pool` distinct sentences (the product's provider) with a little noise,
   L2-normalised, so that neighbours are not all ties.
2. load: PostgreSQL gets the rows by binary COPY (asyncpg, pgvector's binary codec) with the
   secondary indexes of `memories` dropped first and rebuilt after, as a bulk import would; SQLite
   by executemany through SQLAlchemy (its FTS5 triggers index the text). Revisions are not written
   (retrieval never reads them). Load time and rows/s are printed.
3. retrieve: `--queries` distinct queries (so that the embedding cache never answers) on random
   scopes, per mode (similarity, keyword, hybrid), top_k 10: in-process through the service, and
   with `--http` through a uvicorn server on 127.0.0.1 (a subprocess) with httpx; p50/p95/mean and
   queries/s (one client at a time). The query embedding is included.
4. `--mem0`: mem0 OSS (bench/.venv-mem0) with a local qdrant store holding the same number of
   memories (inserted straight into its vector store: `add` embeds one text at a time, ~50/s), then
   `search` on the same queries; printed as a ratio to ContextIQ's similarity and hybrid modes.

Targets (issue 4 §4): retrieve p95 <= 10 ms over HTTP at 1M memories; >= 5x mem0's search throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
MEM0_PYTHON = ROOT / "bench" / ".venv-mem0" / "bin" / "python"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MODES = ("similarity", "keyword", "hybrid")

if (SRC / "contextiq").is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

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


async def make_pool(size: int, seed: int) -> tuple[list[str], Any]:
    from contextiq.core.llm.embeddings import make_embedding_provider

    rng = random.Random(seed)
    texts = list(dict.fromkeys(sentence(rng) for _ in range(size * 3)))[:size]
    provider = make_embedding_provider(threads=2, cache_size=0)
    vectors = await provider.embed(texts)
    return texts, vectors


def rows(
    n: int, scopes: int, texts: list[str], vectors: Any, *, tenant: uuid.UUID, bank: uuid.UUID, seed: int
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
            "embedding_model": "all-MiniLM-L6-v2",
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
    head = pg_admin.rsplit("/", 1)[0].split("://", 1)[1]
    try:
        with tempfile.TemporaryDirectory(prefix="ciq-scale-") as tmp:
            yield f"postgresql+asyncpg://{head}/{name}", Path(tmp)
    finally:
        conn = await asyncpg.connect(pg_admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


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
    await conn.execute("ANALYZE memories")
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(url: str, data_dir: Path, port: int) -> None:
    import uvicorn

    from contextiq.api.app import create_app

    app = create_app(settings_for(url, data_dir), bootstrap=False, background=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def live_server(url: str, data_dir: Path) -> Iterator[str]:
    import httpx

    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            "--db-url",
            url,
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        env=env,
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


async def measure_http(base: str, key: str, qs: list[str], scopes: int, *, warmup: int) -> dict[str, dict[str, float]]:
    import httpx

    rng = random.Random(7)
    out = {}
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
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
                response = await client.post("/v1/memories:retrieve", json=body)
                elapsed = (time.perf_counter() - start) * 1000
                response.raise_for_status()
                if k >= warmup:
                    times.append(elapsed)
            out[mode] = percentiles(times)
    return out


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from contextiq.platform.models import ApiKeyCreate, OrganizationCreate
    from contextiq.runtime import Runtime

    results: dict[str, Any] = {"backend": args.backend, "memories": args.memories, "scopes": args.scopes}
    log(f"embedding a pool of {args.pool} sentences")
    texts, vectors = await make_pool(args.pool, seed=1)
    qs = queries(args.queries + args.warmup, seed=2)
    if not args.no_contextiq:
        async with database(args.backend, args.pg) as (url, data_dir):
            runtime = Runtime(settings_for(url, data_dir))
            try:
                await runtime.prepare_schema()
                org = await runtime.platform.create_org(OrganizationCreate(name="scale"))
                key = await runtime.platform.create_key(
                    org_id=org.id, data=ApiKeyCreate(name="scale", scopes=["admin"], rate_limit=1_000_000)
                )
                bank = await runtime.memories.get_bank(tenant_id=org.id, bank_id=None)
                data = rows(args.memories, args.scopes, texts, vectors, tenant=org.id, bank=bank.id, seed=3)
                log(f"loading {args.memories} memories into {args.scopes} scopes ({args.backend})")
                if args.backend == "postgres":
                    results["load"] = await load_postgres(url, data, args.memories)
                else:
                    results["load"] = await load_sqlite(runtime, data, args.memories)
                log(f"loaded: {results['load']}")
                log("retrieve in-process")
                results["inprocess"] = await measure_inprocess(runtime, org.id, qs, args.scopes, warmup=args.warmup)
            finally:
                await runtime.aclose()
            if args.http:
                log("retrieve over HTTP (uvicorn subprocess)")
                with live_server(url, data_dir) as base:
                    results["http"] = await measure_http(base, key.key, qs, args.scopes, warmup=args.warmup)
    if args.mem0:
        log(f"mem0 with {args.mem0} memories ({args.mem0_store})")
        scopes = args.scopes * args.mem0 // args.memories or 1
        if args.mem0_store == "pgvector":
            async with database("postgres", args.pg) as (url, _):
                dsn = url.replace("postgresql+asyncpg://", "postgresql://")
                results["mem0"] = run_mem0(args.mem0, scopes, texts, qs, warmup=args.warmup, pg=dsn)
        else:
            results["mem0"] = run_mem0(args.mem0, scopes, texts, qs, warmup=args.warmup)
    return results


def run_mem0(
    n: int, scopes: int, texts: list[str], qs: list[str], *, warmup: int, pg: str | None = None
) -> dict[str, Any]:
    if not MEM0_PYTHON.exists():
        raise SystemExit("no bench/.venv-mem0: run `python bench/locomo.py --setup-mem0` first")
    with tempfile.TemporaryDirectory(prefix="ciq-scale-mem0-") as tmp:
        work = Path(tmp) / "work.json"
        out = Path(tmp) / "out.json"
        work.write_text(
            json.dumps({"memories": n, "scopes": scopes, "texts": texts, "queries": qs, "warmup": warmup, "pg": pg})
        )
        env = dict(os.environ, MEM0_TELEMETRY="False", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        subprocess.run(
            [
                str(MEM0_PYTHON),
                str(ROOT / "bench" / "locomo_mem0.py"),
                "--scale",
                str(work),
                "--out",
                str(out),
                "--dir",
                tmp,
            ],
            check=True,
            env=env,
        )
        return dict(json.loads(out.read_text()))


def render(r: dict[str, Any]) -> str:
    lines = [f"== :retrieve at scale: {r['memories']:,} memories in {r['scopes']:,} scopes on {r['backend']}"]
    if "load" in r:
        lines.append(f"load: {json.dumps({k: round(v, 1) for k, v in r['load'].items()})}")
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
    p.add_argument("--json-out", type=Path)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db-url", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.db_url, args.data_dir, args.port)
        return 0
    results = asyncio.run(run(args))
    print(render(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
