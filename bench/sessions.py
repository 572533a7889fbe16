"""Benchmark sessions and events: ContextIQ against Google ADK's DatabaseSessionService, in one run.

Run from the repository root (one command; the first run builds ADK's own virtualenv)::

    python bench/sessions.py --setup && python bench/sessions.py

What it measures, on each backend, with the same realistic events (user/agent text of ~200
characters, a state_delta of 1-2 keys, every 5th event also writes a `user:` key):

1. single-writer `append_event` latency (p50/p95/mean) and events/s, N events into one session;
2. concurrent append throughput: W writers, each on its own session (and user), same W for both;
3. get-session latency on the session of (1): ContextIQ `num_recent_events=N` against ADK's full
   `get_session` (which returns every event), and the state-only read of each;
4. ContextIQ over HTTP: a live uvicorn server (subprocess, 127.0.0.1, free port) driven with httpx.

Backends: `sqlite` and `postgres` (ContextIQ in-process, migrated with `migrate.upgrade`),
`adk-postgres` and `adk-sqlite` (ADK in its own virtualenv, `bench/.venv-adk`, as a subprocess that
runs this file with `--adk-worker` and answers JSON), `http` (ContextIQ server on each ContextIQ
backend that is selected). PostgreSQL is the server on 127.0.0.1:5432 (user postgres, trust auth):
every system gets a fresh database, dropped at the end. SQLite files live in a temporary directory.

Targets (issue 2 §7, PostgreSQL, in-process): append throughput >= 10x ADK's at the same
concurrency, single-writer append latency <= 1/3 of ADK's, get-session with 1000 events >= 10x
faster. The table prints each as PASS or FAIL.

This file is also the ADK worker and the HTTP server entry point, so it imports ContextIQ and ADK
only inside the functions that use them: the ADK worker runs without ContextIQ's dependencies, and
the ContextIQ side never imports ADK.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
ADK_VENV = ROOT / "bench" / ".venv-adk"
ADK_REQUIREMENTS = ROOT / "bench" / "requirements-adk.txt"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
ALL_BACKENDS = ("postgres", "adk-postgres", "sqlite", "adk-sqlite", "http")
APP_NAME = "bench"
AGENT = "bench_agent"

# What was measured here before (one writer, quiet machine): printed beside this run's ADK numbers.
REFERENCE_ADK = {
    "postgres": {"append_mean_ms": 1.76, "append_eps": 553.0, "get_1000_p50_ms": 35.0},
    "sqlite": {"append_mean_ms": 3.5},
}

if (SRC / "contextiq").is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))  # measure this working tree, not an installed copy


# ---------------------------------------------------------------------------------------------
# The workload: the same events for every system
# ---------------------------------------------------------------------------------------------

_WORDS = (
    "the customer asked about a refund for the order placed last week and wants to know when the "
    "package will arrive because the tracking page has not changed since Monday please check the "
    "warehouse status and reply with an estimate plus the options for express shipping or a voucher "
    "I found two orders under this account one was delivered and the other is still processing"
).split()
_TOPICS = ("refund", "shipping", "voucher", "tracking", "warehouse", "account", "invoice", "returns")


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event, independent of the system it is written to."""

    author: str  # "user" or "agent"
    invocation_id: str
    text: str
    state_delta: dict[str, Any]


def event_specs(count: int, *, seed: int, start: int = 0) -> list[EventSpec]:
    """Events alternating user/agent: ~200 characters of text, 1-2 state keys, `user:` every 5th."""
    rng = random.Random(seed)
    specs = []
    for i in range(start, start + count):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < 195:
            words.append(rng.choice(_WORDS))
        text = " ".join(words)[:200]
        delta: dict[str, Any] = {"turn": i}
        if i % 5 == 0:
            delta["user:last_active_turn"] = i
        elif i % 2 == 1:
            delta["topic"] = rng.choice(_TOPICS)
        specs.append(
            EventSpec(
                author="user" if i % 2 == 0 else "agent",
                invocation_id=f"inv-{i // 2}",
                text=text,
                state_delta=delta,
            )
        )
    return specs


def summarize(latencies_ns: list[int]) -> dict[str, float]:
    """p50/p95/mean/max of latencies given in nanoseconds, in milliseconds."""
    if not latencies_ns:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "mean_ms": float("nan"), "max_ms": float("nan")}
    ms = sorted(x / 1e6 for x in latencies_ns)

    def pct(p: float) -> float:
        k = (len(ms) - 1) * p
        lo, hi = int(k), min(int(k) + 1, len(ms) - 1)
        return ms[lo] + (ms[hi] - ms[lo]) * (k - lo)

    return {"p50_ms": pct(0.50), "p95_ms": pct(0.95), "mean_ms": statistics.fmean(ms), "max_ms": ms[-1]}


@dataclass(slots=True)
class Sizes:
    events: int
    writers: int
    concurrent_events: int
    get_repeats: int
    http_events: int
    warmup: int

    @property
    def get_limit(self) -> int:
        return min(self.events, 1000)


async def run_workloads(
    *,
    new_session: Callable[[str], Awaitable[Any]],
    append: Callable[[Any, EventSpec], Awaitable[None]],
    get_full: Callable[[Any], Awaitable[int]],
    get_state: Callable[[Any], Awaitable[int]],
    sizes: Sizes,
) -> dict[str, Any]:
    """Run workloads 1-3 through four callables; the same driver for every system."""
    out: dict[str, Any] = {}
    # Warm-up: connections, prepared statements, first-use imports; not timed.
    warm = await new_session("warmup")
    for spec in event_specs(sizes.warmup, seed=99):
        await append(warm, spec)
    await get_full(warm)

    # (1) one writer, one session
    session = await new_session("u-single")
    latencies: list[int] = []
    specs = event_specs(sizes.events, seed=1)
    c0, t0 = time.process_time(), time.perf_counter_ns()
    for spec in specs:
        s = time.perf_counter_ns()
        await append(session, spec)
        latencies.append(time.perf_counter_ns() - s)
    wall = (time.perf_counter_ns() - t0) / 1e9
    cpu = time.process_time() - c0
    out["single"] = {
        "n": len(specs),
        **summarize(latencies),
        "events_per_s": len(specs) / wall,
        "cpu_ms": 1000 * cpu / len(specs),  # this process's CPU per append (client side only)
    }

    # (2) W writers, one session (and one user) each
    writers = sizes.writers
    per = max(1, sizes.concurrent_events // writers)
    sessions = [await new_session(f"u-writer-{w}") for w in range(writers)]
    warm_specs = event_specs(3, seed=98)
    await asyncio.gather(*(_append_all(append, s, warm_specs, [], []) for s in sessions))  # open W connections
    all_lat: list[int] = []
    errors: list[str] = []
    t0 = time.perf_counter_ns()
    await asyncio.gather(
        *(
            _append_all(append, s, event_specs(per, seed=100 + w, start=3), all_lat, errors)
            for w, s in enumerate(sessions)
        )
    )
    wall = (time.perf_counter_ns() - t0) / 1e9
    ok = len(all_lat)
    out["concurrent"] = {
        "writers": writers,
        "n": writers * per,
        "ok": ok,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "events_per_s": ok / wall,
        **summarize(all_lat),
    }

    # (3) get-session on the session of (1)
    for label, fn in (("get_full", get_full), ("get_state", get_state)):
        await fn(session)
        lat, returned = [], 0
        c0 = time.process_time()
        for _ in range(sizes.get_repeats):
            s = time.perf_counter_ns()
            returned = await fn(session)
            lat.append(time.perf_counter_ns() - s)
        cpu = time.process_time() - c0
        out[label] = {
            "n": sizes.get_repeats,
            "events_returned": returned,
            **summarize(lat),
            "cpu_ms": 1000 * cpu / max(1, sizes.get_repeats),
        }
    return out


async def _append_all(
    append: Callable[[Any, EventSpec], Awaitable[None]],
    session: Any,
    specs: list[EventSpec],
    latencies: list[int],
    errors: list[str],
) -> None:
    for spec in specs:
        s = time.perf_counter_ns()
        try:
            await append(session, spec)
        except Exception as exc:  # counted and reported (e.g. "database is locked" on SQLite)
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
            continue
        latencies.append(time.perf_counter_ns() - s)


# ---------------------------------------------------------------------------------------------
# ContextIQ, in-process
# ---------------------------------------------------------------------------------------------


def contextiq_settings(url: str, data_dir: Path, sizes: Sizes) -> Any:
    from contextiq.core.config import Settings

    return Settings(
        database_url=url,
        data_dir=data_dir,
        redis_url=None,  # in-process cache: the embedded default
        worker_enabled=False,
        auto_migrate=False,
        db_pool_size=max(10, sizes.writers),
        db_max_overflow=10,
        rate_limit_per_minute=1_000_000,
    )


def ciq_event(spec: EventSpec) -> Any:
    from contextiq.sessions.models import EventActions, EventCreate

    return EventCreate(
        author=spec.author,
        invocation_id=spec.invocation_id,
        content={"role": "user" if spec.author == "user" else "model", "parts": [{"text": spec.text}]},
        actions=EventActions(state_delta=spec.state_delta),
    )


async def bench_contextiq(url: str, data_dir: Path, sizes: Sizes, profile: Path | None = None) -> dict[str, Any]:
    from contextiq import __version__
    from contextiq.platform.models import OrganizationCreate
    from contextiq.runtime import Runtime
    from contextiq.sessions.models import SessionCreate

    rt = Runtime(contextiq_settings(url, data_dir, sizes))
    try:
        org = await rt.platform.create_org(OrganizationCreate(name=f"bench-{uuid.uuid4().hex[:8]}"))
        tenant = org.id
        svc = rt.sessions

        async def new_session(user_id: str) -> Any:
            s = await svc.create_session(
                tenant_id=tenant, data=SessionCreate(user_id=user_id, agent_id=AGENT, state={"plan": "free"})
            )
            return s.id

        async def append(session_id: Any, spec: EventSpec) -> None:
            await svc.append_event(tenant_id=tenant, session_id=session_id, data=ciq_event(spec))

        async def get_full(session_id: Any) -> int:
            s = await svc.get_session(tenant_id=tenant, session_id=session_id, num_recent_events=sizes.get_limit)
            return len(s.events or [])

        async def get_state(session_id: Any) -> int:
            s = await svc.get_session(tenant_id=tenant, session_id=session_id)
            return len(s.events or [])

        if profile is not None:
            return await _profiled(profile, new_session, append, get_full, sizes)
        result = await run_workloads(
            new_session=new_session, append=append, get_full=get_full, get_state=get_state, sizes=sizes
        )
        result["version"] = f"contextiq {__version__}"
        result["server_version"] = await _server_version(rt.db.engine)
        return result
    finally:
        await rt.aclose()


async def _profiled(
    out_dir: Path,
    new_session: Callable[[str], Awaitable[Any]],
    append: Callable[[Any, EventSpec], Awaitable[None]],
    get_full: Callable[[Any], Awaitable[int]],
    sizes: Sizes,
) -> dict[str, Any]:
    """cProfile the single-writer append loop and the full get; write .prof files and top lists."""
    import cProfile
    import io
    import pstats

    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before anything is timed)
    warm = await new_session("warmup")
    for spec in event_specs(sizes.warmup, seed=99):
        await append(warm, spec)
    session = await new_session("u-profile")
    specs = event_specs(sizes.events, seed=1)
    report: dict[str, Any] = {}
    jobs: tuple[tuple[str, Callable[[], Awaitable[None]]], ...] = (
        ("append", lambda: _append_all(append, session, specs, [], [])),
        ("get_full", lambda: _repeat(get_full, session, sizes.get_repeats)),
    )
    for name, coro_factory in jobs:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        await coro_factory()
        prof.disable()
        report[name] = {"wall_s": time.perf_counter() - t0}
        path = out_dir / f"{name}.prof"
        prof.dump_stats(str(path))
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(45)
        (out_dir / f"{name}.cumulative.txt").write_text(buf.getvalue())
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(45)
        (out_dir / f"{name}.tottime.txt").write_text(buf.getvalue())
        report[name]["files"] = [str(path)]
    return report


async def _repeat(fn: Callable[[Any], Awaitable[int]], arg: Any, times: int) -> None:
    for _ in range(times):
        await fn(arg)


async def _server_version(engine: Any) -> str:
    from sqlalchemy import text

    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return str((await conn.execute(text("SHOW server_version"))).scalar()).split()[0]
        return "SQLite " + str((await conn.execute(text("select sqlite_version()"))).scalar())


# ---------------------------------------------------------------------------------------------
# Google ADK, in its own virtualenv (this function runs there)
# ---------------------------------------------------------------------------------------------


async def bench_adk(url: str, sizes: Sizes) -> dict[str, Any]:
    from google.adk import __version__ as adk_version
    from google.adk.events import Event, EventActions
    from google.adk.sessions import DatabaseSessionService
    from google.adk.sessions.base_session_service import GetSessionConfig
    from google.genai import types

    kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        # ADK's default pool (5 + 10 overflow) is smaller than 16 writers: give it as many as ContextIQ.
        kwargs = {"pool_size": max(10, sizes.writers), "max_overflow": 10}
    service = DatabaseSessionService(db_url=url, **kwargs)
    full_config = GetSessionConfig(num_recent_events=sizes.get_limit) if sizes.events > 1000 else None
    state_config = GetSessionConfig(num_recent_events=0)
    try:

        async def new_session(user_id: str) -> Any:
            return await service.create_session(app_name=APP_NAME, user_id=user_id, state={"plan": "free"})

        async def append(session: Any, spec: EventSpec) -> None:
            event = Event(
                author="user" if spec.author == "user" else AGENT,
                invocation_id=spec.invocation_id,
                content=types.Content(
                    role="user" if spec.author == "user" else "model", parts=[types.Part(text=spec.text)]
                ),
                actions=EventActions(state_delta=dict(spec.state_delta)),
            )
            await service.append_event(session, event)

        async def get_full(session: Any) -> int:
            s = await service.get_session(
                app_name=APP_NAME, user_id=session.user_id, session_id=session.id, config=full_config
            )
            return len(s.events)

        async def get_state(session: Any) -> int:
            s = await service.get_session(
                app_name=APP_NAME, user_id=session.user_id, session_id=session.id, config=state_config
            )
            return len(s.events)

        result = await run_workloads(
            new_session=new_session, append=append, get_full=get_full, get_state=get_state, sizes=sizes
        )
        result["version"] = f"google-adk {adk_version}"
        result["server_version"] = await _server_version(service.db_engine)
        return result
    finally:
        await service.close()


def adk_python() -> Path:
    return ADK_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def setup_adk_venv() -> None:
    """Create bench/.venv-adk and install ADK (and, as asked, this project) into it."""
    if not adk_python().exists():
        print(f"creating {ADK_VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(ADK_VENV)], check=True)
    pip = [str(adk_python()), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", str(ADK_REQUIREMENTS)], check=True)
    subprocess.run([*pip, "-e", str(ROOT)], check=True)
    out = subprocess.run(
        [str(adk_python()), "-c", "import google.adk; print(google.adk.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    )
    print(f"{ADK_VENV}: google-adk {out.stdout.strip()}", file=sys.stderr)


def run_adk_worker(url: str, sizes: Sizes) -> dict[str, Any]:
    """Run `bench_adk` in ADK's virtualenv and return its JSON result."""
    if not adk_python().exists():
        raise SystemExit(f"{ADK_VENV} is missing: run `python bench/sessions.py --setup` first")
    cmd = [
        str(adk_python()),
        str(Path(__file__).resolve()),
        "--adk-worker",
        "--db",
        url,
        "--json",
        "--events",
        str(sizes.events),
        "--writers",
        str(sizes.writers),
        "--concurrent-events",
        str(sizes.concurrent_events),
        "--get-repeats",
        str(sizes.get_repeats),
        "--warmup",
        str(sizes.warmup),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"ADK worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------------------------
# ContextIQ over HTTP
# ---------------------------------------------------------------------------------------------


def serve(url: str, data_dir: Path, port: int, writers: int) -> None:
    """The server subprocess: ContextIQ's app under uvicorn on 127.0.0.1:port."""
    import uvicorn

    from contextiq.api.app import create_app

    sizes = Sizes(events=0, writers=writers, concurrent_events=0, get_repeats=0, http_events=0, warmup=0)
    app = create_app(contextiq_settings(url, data_dir, sizes), bootstrap=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _make_key(url: str, data_dir: Path, sizes: Sizes) -> str:
    from contextiq.platform.models import ApiKeyCreate, OrganizationCreate
    from contextiq.runtime import Runtime

    rt = Runtime(contextiq_settings(url, data_dir, sizes))
    try:
        org = await rt.platform.create_org(OrganizationCreate(name=f"bench-http-{uuid.uuid4().hex[:8]}"))
        key = await rt.platform.create_key(
            org_id=org.id, data=ApiKeyCreate(name="bench", scopes=["admin"], rate_limit=1_000_000)
        )
        return key.key
    finally:
        await rt.aclose()


@contextlib.contextmanager
def live_server(url: str, data_dir: Path, writers: int) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            "--db",
            url,
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--writers",
            str(writers),
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def bench_http(base: str, key: str, sizes: Sizes) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=sizes.writers + 2, max_keepalive_connections=sizes.writers + 2)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=60
    ) as client:

        async def new_session(user_id: str) -> str:
            r = await client.post(
                "/v1/sessions", json={"user_id": user_id, "agent_id": AGENT, "state": {"plan": "free"}}
            )
            r.raise_for_status()
            return str(r.json()["id"])

        async def append(session_id: str, spec: EventSpec) -> None:
            body = {
                "author": spec.author,
                "invocation_id": spec.invocation_id,
                "content": {"role": "user" if spec.author == "user" else "model", "parts": [{"text": spec.text}]},
                "actions": {"state_delta": spec.state_delta},
            }
            r = await client.post(f"/v1/sessions/{session_id}/events", json=body)
            r.raise_for_status()

        async def get_full(session_id: str) -> int:
            r = await client.get(f"/v1/sessions/{session_id}", params={"num_recent_events": sizes.get_limit})
            r.raise_for_status()
            return len(r.json()["events"])

        async def get_state(session_id: str) -> int:
            r = await client.get(f"/v1/sessions/{session_id}")
            r.raise_for_status()
            return 0

        http_sizes = Sizes(
            events=sizes.http_events,
            writers=sizes.writers,
            concurrent_events=sizes.http_events,
            get_repeats=sizes.get_repeats,
            http_events=sizes.http_events,
            warmup=sizes.warmup,
        )
        return await run_workloads(
            new_session=new_session, append=append, get_full=get_full, get_state=get_state, sizes=http_sizes
        )


# ---------------------------------------------------------------------------------------------
# PostgreSQL databases of the run
# ---------------------------------------------------------------------------------------------


class PgDatabases:
    """Fresh databases on one PostgreSQL server, dropped when the run ends."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def _dsn(self) -> str:
        return self.admin_url.replace("postgresql+asyncpg://", "postgresql://")

    def url_for(self, name: str, driver: str = "postgresql+asyncpg") -> str:
        base = self._dsn().rsplit("/", 1)[0]
        return f"{driver}://{base.split('://', 1)[1]}/{name}"

    def create(self, label: str, *, async_commit: bool = False) -> str:
        name = f"bench_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        asyncio.run(self._exec(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        if async_commit:  # only this run's own database: no fsync wait at commit, for every system alike
            asyncio.run(self._exec(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        return name

    def commit_floor(self, name: str, count: int = 200) -> dict[str, float]:
        """Latency of the cheapest durable write: a one-row INSERT in its own transaction."""

        async def measure() -> dict[str, float]:
            import asyncpg

            conn = await asyncpg.connect(self.url_for(name, driver="postgresql"))
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS bench_commit_floor (id bigserial PRIMARY KEY, v text)")
                for _ in range(20):
                    await conn.execute("INSERT INTO bench_commit_floor (v) VALUES ('x')")
                lat = []
                for _ in range(count):
                    s = time.perf_counter_ns()
                    await conn.execute("INSERT INTO bench_commit_floor (v) VALUES ('x')")
                    lat.append(time.perf_counter_ns() - s)
                await conn.execute("DROP TABLE bench_commit_floor")
                return summarize(lat)
            finally:
                await conn.close()

        return asyncio.run(measure())

    def drop_all(self) -> None:
        for name in self.created:
            try:
                asyncio.run(self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)
        self.created.clear()

    async def _exec(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def reachable(self) -> str | None:
        try:
            asyncio.run(self._exec("SELECT 1"))
            return None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------
# Orchestration and the table
# ---------------------------------------------------------------------------------------------


def run_all(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    from contextiq.core.db import migrate

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(ALL_BACKENDS)
    if unknown:
        raise SystemExit(f"unknown backend(s): {', '.join(sorted(unknown))}; choose from {', '.join(ALL_BACKENDS)}")
    in_process = [b for b in ALL_BACKENDS if b in backends and b != "http"]
    results: dict[str, Any] = {
        "sizes": asdict(sizes)
        | {"get_limit": sizes.get_limit, "rounds": args.rounds, "async_commit": args.async_commit},
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": _loadavg(),
        },
        "rounds": [],
        "runs": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="ciq-bench-"))
    pg = PgDatabases(args.pg_url)
    needs_pg = any(b in backends for b in ("postgres", "adk-postgres"))
    if needs_pg and (err := pg.reachable()):
        raise SystemExit(f"PostgreSQL at {args.pg_url} is not reachable ({err}); leave out the postgres backends")
    try:
        # One database per system for the whole run, migrated once.
        urls: dict[str, str] = {}
        for backend in in_process:
            if backend == "postgres":
                urls[backend] = pg.url_for(pg.create("ciq", async_commit=args.async_commit))
            elif backend == "sqlite":
                urls[backend] = f"sqlite+aiosqlite:///{(tmp / 'contextiq.db').as_posix()}"
            elif backend == "adk-postgres":
                urls[backend] = pg.url_for(pg.create("adk", async_commit=args.async_commit))
            elif backend == "adk-sqlite":
                urls[backend] = f"sqlite+aiosqlite:///{(tmp / 'adk.db').as_posix()}"
            if backend in ("postgres", "sqlite"):
                migrate.upgrade(urls[backend])

        # Rounds, each in a rotated order, so that a noisy minute hits every system alike.
        for r in range(args.rounds):
            order = in_process[r % len(in_process) :] + in_process[: r % len(in_process)] if in_process else []
            this_round: dict[str, Any] = {}
            if pg.created:
                # The disk's share of every append: a commit of one tiny row on the same server.
                this_round["pg-commit"] = {"commit": pg.commit_floor(pg.created[0])}
            for backend in order:
                started = time.perf_counter()
                _log(f"round {r + 1}/{args.rounds}: {backend} ...")
                if backend in ("postgres", "sqlite"):
                    this_round[backend] = asyncio.run(bench_contextiq(urls[backend], tmp / backend, sizes))
                else:
                    this_round[backend] = run_adk_worker(urls[backend], sizes)
                _log(f"round {r + 1}/{args.rounds}: {backend} done in {time.perf_counter() - started:.1f} s")
            results["rounds"].append(this_round)

        if "http" in backends:
            for dialect in ("postgres", "sqlite"):
                if dialect not in backends:
                    continue
                _log(f"http on {dialect} ...")
                key = asyncio.run(_make_key(urls[dialect], tmp / dialect, sizes))
                with live_server(urls[dialect], tmp / dialect, sizes.writers) as base:
                    results["rounds"].append({f"http-{dialect}": asyncio.run(bench_http(base, key, sizes))})
        results["runs"] = aggregate(results["rounds"])
        results["machine"]["loadavg_end"] = _loadavg()

        if args.profile:
            for dialect in ("postgres", "sqlite"):
                if dialect in urls:
                    out = Path(args.profile) / dialect
                    _log(f"profiling ContextIQ on {dialect} into {out} ...")
                    results.setdefault("profile", {})[dialect] = asyncio.run(
                        bench_contextiq(urls[dialect], tmp / dialect, sizes, profile=out)
                    )
    finally:
        pg.drop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per backend, the median of each number over the rounds (errors are summed)."""
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for rnd in rounds:
        for backend, result in rnd.items():
            by_backend.setdefault(backend, []).append(result)
    out: dict[str, Any] = {}
    for backend, results in by_backend.items():
        merged: dict[str, Any] = {"rounds": len(results)}
        for key, value in results[0].items():
            if not isinstance(value, dict):
                merged[key] = value
                continue
            section: dict[str, Any] = {}
            for field, v in value.items():
                values = [r[key][field] for r in results if r.get(key, {}).get(field) is not None]
                if field == "errors":
                    section[field] = sum(values)  # over all rounds
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    section[field] = statistics.median(values) if values else None
                    if field in ("p50_ms", "mean_ms", "events_per_s") and len(values) > 1:
                        section[f"{field}_all"] = values
                else:
                    section[field] = next((x for x in values if x), v)
            merged[key] = section
        out[backend] = merged
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _fmt(value: float | None, unit: str) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    if unit == "ms":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return f"{value:,.0f}"


def _ratio(ciq: float | None, adk: float | None, higher_is_better: bool) -> float | None:
    if not ciq or not adk or ciq != ciq or adk != adk:
        return None
    return ciq / adk if higher_is_better else adk / ciq


ROWS = (
    # label, workload, field, unit, higher is better
    ("append, 1 writer: p50", "single", "p50_ms", "ms", False),
    ("append, 1 writer: p95", "single", "p95_ms", "ms", False),
    ("append, 1 writer: mean", "single", "mean_ms", "ms", False),
    ("append, 1 writer: events/s", "single", "events_per_s", "ev/s", True),
    ("append, 1 writer: client CPU", "single", "cpu_ms", "ms", False),
    ("append, {W} writers: events/s", "concurrent", "events_per_s", "ev/s", True),
    ("append, {W} writers: p50", "concurrent", "p50_ms", "ms", False),
    ("append, {W} writers: p95", "concurrent", "p95_ms", "ms", False),
    ("get, {G} events: p50", "get_full", "p50_ms", "ms", False),
    ("get, {G} events: p95", "get_full", "p95_ms", "ms", False),
    ("get, {G} events: client CPU", "get_full", "cpu_ms", "ms", False),
    ("get, state only: p50", "get_state", "p50_ms", "ms", False),
    ("get, state only: p95", "get_state", "p95_ms", "ms", False),
)


def _val(runs: dict[str, Any], backend: str, workload: str, field: str) -> float | None:
    run = runs.get(backend)
    if not run or workload not in run:
        return None
    v = run[workload].get(field)
    return float(v) if v is not None else None


def render(results: dict[str, Any]) -> str:
    runs = results["runs"]
    sz = results["sizes"]
    lines: list[str] = []
    w, g = sz["writers"], sz["get_limit"]
    lines.append(
        f"Sessions benchmark — {sz['events']} events single-writer, {w} writers x "
        f"{max(1, sz['concurrent_events'] // w)} events, get x{sz['get_repeats']}; "
        f"{results['machine']['cpus']} CPUs, Python {results['machine']['python']}"
    )
    lines.append(
        f"Medians of {sz.get('rounds', 1)} round(s) in rotated order; load average at start "
        f"{results['machine'].get('loadavg_start')}, at end {results['machine'].get('loadavg_end')}"
    )
    if "pg-commit" in runs:
        c = runs["pg-commit"]["commit"]
        lines.append(
            f"PostgreSQL commit floor (1-row INSERT, own transaction; median of rounds): p50 {c['p50_ms']:.3f} ms, "
            f"p95 {c['p95_ms']:.3f} ms" + ("  [synchronous_commit=off]" if sz.get("async_commit") else "")
        )
    for b in ("postgres", "adk-postgres", "sqlite", "adk-sqlite"):
        if b in runs:
            lines.append(f"  {b:<13} {runs[b].get('version', '')} on {runs[b].get('server_version', '')}")
    lines.append("")
    header = (
        f"{'in-process (ms, or events/s)':<30} | {'CIQ PG':>9} {'ADK PG':>9} {'x':>7} | "
        f"{'CIQ SQLite':>10} {'ADK SQLite':>10} {'x':>7}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for label, workload, field, unit, hib in ROWS:
        cells = []
        for ciq_b, adk_b, width in (("postgres", "adk-postgres", 9), ("sqlite", "adk-sqlite", 10)):
            c, a = _val(runs, ciq_b, workload, field), _val(runs, adk_b, workload, field)
            r = _ratio(c, a, hib)
            cells.append(f"{_fmt(c, unit):>{width}} {_fmt(a, unit):>{width}} {(f'{r:.1f}x' if r else '—'):>7}")
        lines.append(f"{label.format(W=w, G=g):<30} | {cells[0]} | {cells[1]}")
    lines.append("x = how many times better ContextIQ is (ADK/CIQ for latency, CIQ/ADK for throughput).")
    lines.append(
        "client CPU = CPU time of the benchmarking process per call (ORM, driver, models); "
        "the database server's CPU is not in it."
    )
    lines.append(
        f"get, {g} events: ContextIQ num_recent_events={g}; ADK get_session (all events). "
        "State only: ContextIQ without events; ADK num_recent_events=0."
    )
    errs = [
        f"{b}: {runs[b]['concurrent']['errors']} failed appends ({runs[b]['concurrent']['first_error']})"
        for b in runs
        if runs[b].get("concurrent", {}).get("errors")
    ]
    lines.extend(f"NOTE {e}" for e in errs)

    http = [b for b in ("http-postgres", "http-sqlite") if b in runs]
    if http:
        lines.append("")
        h = f"{'ContextIQ over HTTP (ms)':<30} | " + " ".join(f"{b:>14}" for b in http)
        lines.append(h)
        lines.append("-" * len(h))
        for label, workload, field, unit, _h in ROWS:
            if field == "cpu_ms":
                continue
            vals = " ".join(f"{_fmt(_val(runs, b, workload, field), unit):>14}" for b in http)
            lines.append(f"{label.format(W=w, G=g):<30} | {vals}")
        lines.append(
            f"(HTTP: {sz['http_events']} appends single-writer and {sz['http_events']} across {w} clients; "
            "uvicorn subprocess, httpx client, same machine)"
        )

    lines.append("")
    lines.append("Targets (issue 2 §7)")
    for dialect, official in (("postgres", True), ("sqlite", False)):
        ciq_b, adk_b = dialect, f"adk-{dialect}"
        if ciq_b not in runs or adk_b not in runs:
            continue
        tag = "" if official else "  (SQLite, for information)"
        checks = (
            (f"append throughput, {w} writers >= 10x ADK", "concurrent", "events_per_s", True, 10.0),
            ("single-writer append mean <= 1/3 of ADK", "single", "mean_ms", False, 3.0),
            (f"get-session with {g} events p50 >= 10x faster", "get_full", "p50_ms", False, 10.0),
        )
        for text, workload, field, hib, need in checks:
            r = _ratio(_val(runs, ciq_b, workload, field), _val(runs, adk_b, workload, field), hib)
            per_round = [
                _ratio(_val(rnd, ciq_b, workload, field), _val(rnd, adk_b, workload, field), hib)
                for rnd in results.get("rounds", [])
                if ciq_b in rnd and adk_b in rnd
            ]
            spread = ", ".join(f"{x:.2f}" for x in per_round if x is not None)
            verdict = "PASS" if r is not None and r >= need else "FAIL"
            lines.append(
                f"  [{verdict}] {dialect:<8} {text:<46} {r:.2f}x, need {need:g}x (rounds: {spread}){tag}"
                if r is not None
                else f"  [FAIL] {dialect:<8} {text:<46} not measured{tag}"
            )
    if "adk-postgres" in runs and g == 1000:
        ref = REFERENCE_ADK["postgres"]
        a = runs["adk-postgres"]
        lines.append(
            f"  ADK PG this run vs the reference: append mean {a['single']['mean_ms']:.2f} ms "
            f"(ref {ref['append_mean_ms']}), "
            f"{a['single']['events_per_s']:.0f} ev/s (ref {ref['append_eps']:.0f}), "
            f"get {g} p50 {a['get_full']['p50_ms']:.1f} ms (ref {ref['get_1000_p50_ms']:.0f})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1000, help="single-writer events, and events in the get session")
    p.add_argument("--writers", type=int, default=16, help="concurrent writers (one session each), both systems")
    p.add_argument(
        "--concurrent-events", type=int, default=None, help="events across all writers (default 2x --events)"
    )
    p.add_argument("--get-repeats", type=int, default=50, help="timed get_session calls per kind")
    p.add_argument("--http-events", type=int, default=None, help="appends over HTTP (default --events)")
    p.add_argument("--warmup", type=int, default=50, help="untimed appends before measuring")
    p.add_argument("--backends", default=",".join(ALL_BACKENDS), help=f"comma list from {','.join(ALL_BACKENDS)}")
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds of every in-process backend, in rotated order; the table shows medians (default 3, --quick 1)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--setup", action="store_true", help="create bench/.venv-adk with ADK and exit")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", DEFAULT_PG),
        help="PostgreSQL admin URL; databases are created on its server and dropped at the end",
    )
    p.add_argument(
        "--async-commit",
        action="store_true",
        help="diagnostic: synchronous_commit=off on this run's PostgreSQL databases (both systems), "
        "to compare without the disk's fsync wait",
    )
    p.add_argument(
        "--json", nargs="?", const="-", default=None, help="write the results as JSON to a file (- = stdout)"
    )
    p.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="after the run, cProfile ContextIQ's append loop and full get; write DIR/<dialect>/*.prof",
    )
    # Internal entry points (subprocesses of a run).
    p.add_argument("--adk-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.quick:
        args.events = min(args.events, 100)
        args.writers = min(args.writers, 4)
        args.get_repeats = min(args.get_repeats, 10)
        args.warmup = min(args.warmup, 10)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    sizes = Sizes(
        events=args.events,
        writers=args.writers,
        concurrent_events=args.concurrent_events or 2 * args.events,
        get_repeats=args.get_repeats,
        http_events=args.http_events or args.events,
        warmup=args.warmup,
    )

    if args.setup:
        setup_adk_venv()
        return 0
    if args.adk_worker:
        print(json.dumps(asyncio.run(bench_adk(args.db, sizes))))
        return 0
    if args.serve:
        serve(args.db, Path(args.data_dir), args.port, args.writers)
        return 0

    results = run_all(args, sizes)
    if args.json == "-":
        print(json.dumps(results, indent=2))
        return 0
    print(render(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
