"""LoCoMo evidence retrieval through ContextIQ's public API, beside plain baselines and mem0.

Run from the repository root (one command each; see docs/benchmarks.md, "Retrieval")::

    python bench/locomo.py --data ../shared/bench/data/locomo-dev.json                  # the product default
    python bench/locomo.py --data FILE --mode keyword --rankings-out ranks.jsonl
    python bench/locomo.py --data FILE --baselines --ablation --mem0                     # everything, one run
    python bench/locomo.py --data FILE --ingest generate                                 # offline extractor

What it does, for any file in LoCoMo's format (a list of samples with `conversation` and `qa`):

1. ingest, through the SDK (`contextiq.sdk.AsyncClient`, in-process over the app's ASGI transport
   unless `--url` names a server): each conversation is its own scope
   (`{"user_id": "locomo-<sample_id>"}`); with `--ingest raw` each turn becomes one memory
   (`memories.create` = `POST /v1/memories`, or `memories.import_jsonl` = `:import` with `--bulk`):
   the fact is "<speaker>: <text>" plus "[image: <blip_caption>]" when the turn shared a photo,
   `event_time` is its session's date, `metadata` has `dia_id`, `speaker` and `session`. With
   `--ingest generate` each session goes to `memories.generate` (`POST /v1/memories:generate`,
   source_type events, the offline extractor, wait_for_completion) and memories map back to
   dia_ids through the job's actions (`source_event_ids`, the event ids being the dia_ids).
2. retrieve: one `POST /v1/memories:retrieve` per QA item (`--mode`, default: the product default),
   ranked dia_ids written to `--rankings-out` (`{"sample_id", "qa_index", "ranked"}` per line).
3. score: per category (1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop; 5 adversarial apart)
   recall@5/10/20 (the share of a QA item's evidence dia_ids in the top k), hit@5/10/20, nDCG@10;
   ingest throughput and retrieve p50/p95. Evidence ids are normalised (`D8:6; D9:17` is two ids,
   `D:11:26` is `D11:26`); ids naming no turn are dropped and QA items left with none are skipped,
   with counts.

`--baselines` ranks the same questions with no server: Okapi BM25, dense MiniLM (the product's
embedding provider) and their reciprocal rank fusion. `--ablation` measures each step of the
second-stage ranking (`contextiq.core.search.rerank`) on the same signals, on the tuning
conversations (the first `--tune` samples), the held-out ones and all. `--client-rerank` runs that
ranking on the public API's own signals (`:retrieve` similarity and keyword, the scope's timeline
from `GET /v1/memories`), which is what `:retrieve` returns once the reranker is wired in.
`--mem0` runs mem0 OSS in its own virtualenv (`bench/.venv-mem0`, made by `--setup-mem0`) on the
same turn texts and questions (`bench/locomo_mem0.py`) and prints its table beside ours.

The data (CC BY-NC 4.0) is read where it lies; nothing of it is written into the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
MEM0_VENV = ROOT / "bench" / ".venv-mem0"
MEM0_REQUIREMENTS = ROOT / "bench" / "requirements-mem0.txt"
MEM0_WORKER = ROOT / "bench" / "locomo_mem0.py"
DEFAULT_DATA = ROOT.parent / "shared" / "bench" / "data" / "locomo-dev.json"

if (SRC / "contextiq").is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))  # measure this working tree, not an installed copy

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
MAIN_CATEGORIES = (1, 2, 3, 4)
KS = (5, 10, 20)
RANKED_MIN = 20
TOPIC = "KEY_CONVERSATION_DETAILS"
# Measured here on the dev file (issue 4): cats 1-4 recall@10, printed beside this run's numbers.
REFERENCE = {"bm25": 0.589, "dense": 0.545, "rrf": 0.633, "mem0": 0.541}

# ---------------------------------------------------------------------------------------------
# The data: LoCoMo's format
# ---------------------------------------------------------------------------------------------

_SESSION = re.compile(r"session_(\d+)")
_EVIDENCE = re.compile(r"D:?(\d+):(\d+)")


@dataclass(frozen=True, slots=True)
class Turn:
    """One dialogue turn: its id (`D<session>:<n>`), speaker, text, photo caption and session date."""

    dia_id: str
    speaker: str
    text: str
    caption: str | None
    session: int
    time: datetime


@dataclass(frozen=True, slots=True)
class Question:
    """One QA item: its position in the sample's `qa` list, category and normalised evidence."""

    index: int
    question: str
    category: int
    evidence: tuple[str, ...]


@dataclass(slots=True)
class Conversation:
    """One sample: its turns in order and its scorable questions."""

    sample_id: str
    turns: list[Turn]
    questions: list[Question]
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def scope(self) -> dict[str, str]:
        return {"user_id": f"locomo-{self.sample_id}"}


def parse_session_time(text: str) -> datetime:
    """Parse LoCoMo's session date ("1:56 pm on 8 May, 2023") as an aware UTC datetime."""
    cleaned = " ".join(text.replace(",", " ").split())
    for fmt in ("%I:%M %p on %d %B %Y", "%I:%M %p on %B %d %Y", "%I:%M%p on %d %B %Y"):
        try:
            return datetime.strptime(cleaned, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"unrecognised session date {text!r}")


def normalise_evidence(raw: Iterable[object], valid: set[str]) -> tuple[list[str], int, int]:
    """Return (the evidence dia_ids that name a turn, in order, no repeats; how many were repaired; dropped).

    Malformed ids are repaired: several ids in one string (`D8:6; D9:17`), a stray colon (`D:11:26`),
    spaces or leading zeros. Ids that still name no turn of the conversation are dropped.
    """
    kept: dict[str, None] = {}
    repaired = dropped = 0
    for item in raw:
        parts = [p for p in re.split(r"[;,\s]+", str(item)) if p]
        if len(parts) != 1:
            repaired += 1
        for part in parts or [""]:
            match = _EVIDENCE.fullmatch(part)
            if match is None:
                dropped += 1
                continue
            dia_id = f"D{int(match.group(1))}:{int(match.group(2))}"
            if dia_id != part:
                repaired += 1
            if dia_id in valid:
                kept.setdefault(dia_id, None)
            else:
                dropped += 1
    return list(kept), repaired, dropped


def load_conversations(path: Path) -> list[Conversation]:
    """Read a LoCoMo-format file: sessions in order, evidence normalised, unscorable QA items counted."""
    samples = json.loads(path.read_text(encoding="utf-8"))
    conversations = []
    for sample in samples:
        c = sample["conversation"]
        numbers = sorted(int(m.group(1)) for k in c if (m := _SESSION.fullmatch(k)))
        turns = []
        for n in numbers:
            when = parse_session_time(c[f"session_{n}_date_time"])
            for t in c[f"session_{n}"]:
                caption = t.get("blip_caption")
                turns.append(Turn(t["dia_id"], t["speaker"], t["text"], caption or None, n, when))
        valid = {t.dia_id for t in turns}
        conv = Conversation(str(sample["sample_id"]), turns, [])
        for index, qa in enumerate(sample.get("qa", [])):
            evidence, repaired, dropped = normalise_evidence(qa.get("evidence", []), valid)
            conv.skipped["evidence ids repaired"] += repaired
            conv.skipped["evidence ids dropped"] += dropped
            if not evidence:
                conv.skipped["QA items without valid evidence (skipped)"] += 1
                continue
            conv.questions.append(Question(index, str(qa["question"]), int(qa["category"]), tuple(evidence)))
        conversations.append(conv)
    return conversations


def turn_text(turn: Turn, *, date: bool = False) -> str:
    """The memory text of a turn: "<speaker>: <text>", the photo caption as the data gives it."""
    text = f"{turn.speaker}: {turn.text}"
    if turn.caption:
        text += f" [image: {turn.caption}]"
    if date:
        text = f"({turn.time:%-d %B %Y}) {text}"
    return text


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def dedupe(ranked: Iterable[str]) -> list[str]:
    """Keep the first occurrence of each id (a memory made of several turns ranks them together)."""
    return list(dict.fromkeys(ranked))


def recall_at(ranked: Sequence[str], evidence: Sequence[str], k: int) -> float:
    """Share of the evidence ids found in the top k."""
    return len(set(evidence) & set(ranked[:k])) / len(evidence) if evidence else 0.0


def hit_at(ranked: Sequence[str], evidence: Sequence[str], k: int) -> float:
    """1 when any evidence id is in the top k."""
    return 1.0 if set(evidence) & set(ranked[:k]) else 0.0


def ndcg_at(ranked: Sequence[str], evidence: Sequence[str], k: int) -> float:
    """Binary-relevance nDCG@k (ideal: every evidence id first)."""
    relevant = set(evidence)
    dcg = sum(1 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def question_metrics(ranked: Sequence[str], evidence: Sequence[str]) -> dict[str, float]:
    ranked = dedupe(ranked)
    out = {f"recall@{k}": recall_at(ranked, evidence, k) for k in KS}
    out |= {f"hit@{k}": hit_at(ranked, evidence, k) for k in KS}
    out["ndcg@10"] = ndcg_at(ranked, evidence, 10)
    return out


Rankings = dict[tuple[str, int], list[str]]  # (sample_id, qa_index) -> ranked dia_ids


def category_table(conversations: Sequence[Conversation], rankings: Rankings) -> dict[str, dict[str, float]]:
    """Mean metrics per category, plus "1-4" (categories 1 to 4 together) and "n" per row."""
    rows: dict[str, list[dict[str, float]]] = {}
    for conv in conversations:
        for q in conv.questions:
            ranked = rankings.get((conv.sample_id, q.index))
            if ranked is None:
                continue
            m = question_metrics(ranked, q.evidence)
            rows.setdefault(str(q.category), []).append(m)
            if q.category in MAIN_CATEGORIES:
                rows.setdefault("1-4", []).append(m)
    table = {}
    for key, items in rows.items():
        table[key] = {name: statistics.fmean(m[name] for m in items) for name in items[0]} | {"n": len(items)}
    return table


def recall10(conversations: Sequence[Conversation], rankings: Rankings) -> float:
    row = category_table(conversations, rankings).get("1-4")
    return row["recall@10"] if row else float("nan")


def render_table(title: str, table: Mapping[str, Mapping[str, float]], extra: str = "") -> str:
    names = [f"recall@{k}" for k in KS] + [f"hit@{k}" for k in KS] + ["ndcg@10"]
    head = f"{'category':<16}{'n':>5}" + "".join(f"{n:>10}" for n in names)
    lines = [f"== {title}" + (f"  ({extra})" if extra else ""), head]
    for key, label in [
        *((str(c), f"{c} {CATEGORIES[c]}") for c in MAIN_CATEGORIES),
        ("1-4", "1-4 all"),
        ("5", "5 adversarial"),
    ]:
        row = table.get(key)
        if row is None:
            continue
        if key == "5":
            lines.append("-" * len(head))
        lines.append(f"{label:<16}{int(row['n']):>5}" + "".join(f"{row[n]:>10.3f}" for n in names))
    return "\n".join(lines)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


def write_rankings(path: Path, conversations: Sequence[Conversation], rankings: Rankings) -> None:
    """One line per QA item: {"sample_id", "qa_index", "ranked"} (ranked dia_ids, best first)."""
    with path.open("w", encoding="utf-8") as f:
        for conv in conversations:
            for q in conv.questions:
                ranked = rankings.get((conv.sample_id, q.index))
                if ranked is not None:
                    line = {"sample_id": conv.sample_id, "qa_index": q.index, "ranked": dedupe(ranked)}
                    f.write(json.dumps(line) + "\n")


# ---------------------------------------------------------------------------------------------
# ContextIQ through its public API
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RunStats:
    turns: int = 0
    ingest_seconds: float = 0.0
    memories: int = 0
    retrieve_ms: list[float] = field(default_factory=list)

    def line(self) -> str:
        rate = self.turns / self.ingest_seconds if self.ingest_seconds else float("nan")
        return (
            f"ingest {self.turns} turns -> {self.memories} memories in {self.ingest_seconds:.1f} s "
            f"({rate:.0f} turns/s); retrieve p50 {percentile(self.retrieve_ms, 50):.1f} ms, "
            f"p95 {percentile(self.retrieve_ms, 95):.1f} ms ({len(self.retrieve_ms)} calls)"
        )


class Api:
    """ContextIQ's public API through the SDK's `AsyncClient`: in-process by default (the app over
    httpx's ASGI transport: the same routes, validation and serialisation as a server, no socket), or
    a server at `url`. Its database is made here (a temporary SQLite file, or a fresh PostgreSQL
    database), with an organization and an admin key of its own."""

    def __init__(self, *, url: str | None, api_key: str | None, database_url: str | None) -> None:
        self.url, self.api_key, self.database_url = url, api_key, database_url
        self.client: Any = None
        self.runtime: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._pg_database: str | None = None

    async def __aenter__(self) -> Api:
        import httpx

        from contextiq.sdk import AsyncClient

        if self.url is not None:
            self.client = AsyncClient(self.url, self.api_key, timeout=600, max_retries=0)
            return self
        from contextiq.api.app import create_app
        from contextiq.core.config import Settings
        from contextiq.platform.models import ApiKeyCreate, OrganizationCreate
        from contextiq.runtime import Runtime

        self._tmp = tempfile.TemporaryDirectory(prefix="locomo-")
        data_dir = Path(self._tmp.name)
        url = self.database_url or f"sqlite+aiosqlite:///{data_dir / 'contextiq.db'}"
        if url.startswith("postgresql"):
            url = await self._fresh_pg_database(url)
        settings = Settings(
            database_url=url,
            data_dir=data_dir,
            redis_url=None,
            worker_enabled=False,
            rate_limit_per_minute=1_000_000,
            auto_migrate=True,
        )
        self.runtime = Runtime(settings)
        await self.runtime.prepare_schema()
        org = await self.runtime.platform.create_org(OrganizationCreate(name=f"locomo-{uuid.uuid4().hex[:8]}"))
        key = await self.runtime.platform.create_key(
            org_id=org.id, data=ApiKeyCreate(name="locomo", scopes=["admin"], rate_limit=1_000_000)
        )
        app = create_app(runtime=self.runtime, background=False)
        self.client = AsyncClient(
            "http://contextiq", key.key, timeout=600, max_retries=0, transport=httpx.ASGITransport(app=app)
        )
        return self

    async def _fresh_pg_database(self, url: str) -> str:
        import asyncpg

        base = url.replace("postgresql+asyncpg://", "postgresql://")
        self._pg_admin = base
        self._pg_database = f"locomo_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'CREATE DATABASE "{self._pg_database}"')
        finally:
            await conn.close()
        head, _, _ = base.rpartition("/")
        return f"postgresql+asyncpg://{head.split('://', 1)[1]}/{self._pg_database}"

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.runtime is not None:
            await self.runtime.aclose()
        if self._pg_database is not None:
            import asyncpg

            conn = await asyncpg.connect(self._pg_admin)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self._pg_database}" WITH (FORCE)')
            finally:
                await conn.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def list_memories(self, scope: Mapping[str, str]) -> list[dict[str, Any]]:
        return [m.model_dump(mode="json") async for m in self.client.memories.iter(scope=scope, page_size=1000)]


def _memory_body(conv: Conversation, turn: Turn) -> dict[str, Any]:
    return {
        "scope": conv.scope,
        "fact": turn_text(turn)[:2000],
        "topic": TOPIC,
        "event_time": turn.time,
        "metadata": {"dia_id": turn.dia_id, "speaker": turn.speaker, "session": turn.session},
    }


class Provenance:
    """Which dia_ids each memory came from (raw: its own turn; generated: the job's source events)."""

    def __init__(self) -> None:
        self.by_memory: dict[str, list[str]] = {}
        self.timelines: dict[str, list[dict[str, Any]]] = {}

    def add(self, memory_id: str, dia_ids: Iterable[str]) -> None:
        known = self.by_memory.setdefault(str(memory_id), [])
        known += [d for d in dia_ids if d not in known]

    def expand(self, memory_ids: Iterable[str]) -> list[str]:
        return dedupe(d for m in memory_ids for d in self.by_memory.get(str(m), []))


async def ingest(
    api: Api, conversations: Sequence[Conversation], *, mode: str, bulk: bool, stats: RunStats
) -> Provenance:
    prov = Provenance()
    start = time.perf_counter()
    for conv in conversations:
        stats.turns += len(conv.turns)
        if mode == "raw" and bulk:
            result = await api.client.memories.import_jsonl([_memory_body(conv, t) for t in conv.turns])
            for memory_id, turn in zip(result.ids, conv.turns, strict=True):
                prov.add(str(memory_id), [turn.dia_id])
        elif mode == "raw":
            for turn in conv.turns:
                body = _memory_body(conv, turn)
                memory = await api.client.memories.create(body.pop("fact"), **body)
                prov.add(str(memory.id), [turn.dia_id])
        else:
            for session in sorted({t.session for t in conv.turns}):
                events = [
                    {
                        "id": t.dia_id,
                        "author": "user",
                        "text": t.text + (f" [image: {t.caption}]" if t.caption else ""),
                        "timestamp": t.time.isoformat(),
                        "metadata": {"dia_id": t.dia_id, "speaker": t.speaker},
                    }
                    for t in conv.turns
                    if t.session == session
                ]
                job = await api.client.memories.generate(
                    conv.scope, "events", events=events, wait_for_completion=True, extraction_model="offline"
                )
                if job.status != "completed":
                    raise RuntimeError(
                        f"generation of {conv.sample_id} session {session}: {job.status} {job.error_message}"
                    )
                for action in job.result.actions if job.result else []:
                    if action.memory_id and action.action in ("CREATE", "UPDATE"):
                        prov.add(str(action.memory_id), action.source_event_ids)
    stats.ingest_seconds = time.perf_counter() - start
    for conv in conversations:
        memories = await api.list_memories(conv.scope)
        stats.memories += len(memories)
        for m in memories:  # provenance kept on the memory itself, when the pipeline records it
            meta = m.get("metadata") or {}
            ids = meta.get("source_event_ids") or ([meta["dia_id"]] if "dia_id" in meta else [])
            prov.add(m["id"], [str(i) for i in ids])
        prov.timelines[conv.sample_id] = memories
    return prov


async def retrieve_all(
    api: Api, conversations: Sequence[Conversation], prov: Provenance, *, mode: str, top_k: int, stats: RunStats
) -> Rankings:
    rankings: Rankings = {}
    for conv in conversations:
        for q in conv.questions:
            start = time.perf_counter()
            result = await api.client.memories.retrieve(conv.scope, q.question, top_k=top_k, mode=mode)
            stats.retrieve_ms.append((time.perf_counter() - start) * 1000)
            rankings[(conv.sample_id, q.index)] = prov.expand(str(r.memory.id) for r in result.memories)
    return rankings


async def client_rerank_all(
    api: Api,
    conversations: Sequence[Conversation],
    prov: Provenance,
    *,
    depth: int,
    stats: RunStats,
    config: Any = None,
) -> Rankings:
    """The proposed default computed from the public API's signals (see the module docstring)."""
    from contextiq.core.search.query import time_windows
    from contextiq.core.search.rerank import DEFAULT_RERANK, Timeline, rerank

    config = config or DEFAULT_RERANK
    rankings: Rankings = {}
    now = datetime.now(UTC)
    for conv in conversations:
        memories = prov.timelines[conv.sample_id]

        def when(m: Mapping[str, Any]) -> datetime:
            return datetime.fromisoformat(m.get("event_time") or m["created_at"])

        ordered = sorted(memories, key=lambda m: (when(m), m["created_at"], m["id"]))
        timeline = Timeline.build(((m["id"], when(m)) for m in ordered), session_gap=config.session_gap)
        times = {m["id"]: when(m) for m in memories}
        for q in conv.questions:
            start = time.perf_counter()
            signals = {}
            for mode in ("similarity", "keyword"):
                result = await api.client.memories.retrieve(conv.scope, q.question, top_k=depth, mode=mode)
                signals[mode] = {str(r.memory.id): float(r.score) for r in result.memories}
            candidates = timeline.around([*signals["similarity"], *signals["keyword"]], config.radius)
            ranked = rerank(
                candidates,
                similarity=signals["similarity"],
                keyword=signals["keyword"],
                timeline=timeline,
                times=times,
                windows=time_windows(q.question, now=now),
                config=config,
            )
            stats.retrieve_ms.append((time.perf_counter() - start) * 1000)
            rankings[(conv.sample_id, q.index)] = prov.expand(r.id for r in ranked)
    return rankings


# ---------------------------------------------------------------------------------------------
# Direct rankings (no server): baselines and the ablation
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


class Okapi:
    """Okapi BM25 (k1=1.2, b=0.75) over lower-cased words, the product's stop words left out."""

    def __init__(self, docs: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        from contextiq.core.search.keyword import STOPWORDS

        self.stop = STOPWORDS
        self.docs = [Counter(self.tokens(d)) for d in docs]
        self.lengths = [sum(c.values()) for c in self.docs]
        self.average = (sum(self.lengths) / len(docs)) if docs else 1.0
        self.df = Counter(w for c in self.docs for w in c)
        self.k1, self.b, self.n = k1, b, len(docs)

    def tokens(self, text: str) -> list[str]:
        return [w for w in _WORD.findall(text.lower()) if w not in self.stop]

    def scores(self, query: str) -> list[float]:
        terms = list(dict.fromkeys(self.tokens(query)))
        out = []
        for counts, length in zip(self.docs, self.lengths, strict=True):
            s = 0.0
            for t in terms:
                tf = counts.get(t, 0)
                if tf:
                    idf = math.log(1 + (self.n - self.df[t] + 0.5) / (self.df[t] + 0.5))
                    s += idf * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * length / self.average))
            out.append(s)
        return out


class Fts5:
    """The product's SQLite keyword path: one FTS5 table (porter, unicode61) over every scope's memories,
    OR of the query terms, bm25() (so term statistics are the whole table's, as in the product)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE t USING fts5(x, scope UNINDEXED, tokenize='porter unicode61')")
        self.offsets: dict[str, int] = {}

    def add(self, scope: str, docs: Sequence[str]) -> None:
        base = self.offsets[scope] = sum(1 for _ in self.db.execute("SELECT rowid FROM t"))
        self.db.executemany(
            "INSERT INTO t(rowid, x, scope) VALUES (?, ?, ?)", [(base + i, d, scope) for i, d in enumerate(docs)]
        )

    def scores(self, scope: str, query: str, n: int) -> dict[int, float]:
        from contextiq.core.search.keyword import query_terms

        terms = query_terms(query) or _WORD.findall(query.lower())
        if not terms:
            return {}
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        rows = self.db.execute(
            "SELECT rowid, -bm25(t) FROM t WHERE t MATCH ? AND scope = ? ORDER BY bm25(t) LIMIT ?", (match, scope, n)
        )
        base = self.offsets[scope]
        return {int(r) - base: float(s) for r, s in rows}


def order_by(scores: Sequence[float], *, positive: bool = False) -> list[int]:
    idx = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [i for i in idx if scores[i] > 0] if positive else idx


def rrf(rankings: Sequence[Sequence[int]], k: int = 60) -> list[int]:
    from contextiq.core.search.hybrid import reciprocal_rank_fusion

    fused = reciprocal_rank_fusion({str(n): list(r) for n, r in enumerate(rankings)}, k=k)
    return sorted(fused, key=lambda i: -fused[i])


@dataclass(slots=True)
class Direct:
    """One conversation's turns indexed in memory: embeddings, Okapi BM25, FTS5."""

    conv: Conversation
    texts: list[str]
    vectors: Any
    okapi: Okapi
    fts: Fts5
    query_vectors: dict[str, Any] = field(default_factory=dict)


async def build_direct(conversations: Sequence[Conversation], *, date_text: bool = False) -> list[Direct]:
    import numpy as np

    from contextiq.core.llm.embeddings import make_embedding_provider

    provider = make_embedding_provider(threads=2)
    fts = Fts5()
    out = []
    for conv in conversations:
        texts = [turn_text(t, date=date_text) for t in conv.turns]
        vectors = await provider.embed(texts)
        fts.add(conv.sample_id, texts)
        d = Direct(conv, texts, np.asarray(vectors), Okapi(texts), fts)
        questions = [q.question for q in conv.questions]
        d.query_vectors = dict(zip(questions, await provider.embed(questions), strict=True))
        out.append(d)
    return out


RankFn = Callable[[Direct, Question], list[int]]


def direct_rankings(directs: Sequence[Direct], fn: RankFn) -> Rankings:
    rankings: Rankings = {}
    for d in directs:
        dia = [t.dia_id for t in d.conv.turns]
        for q in d.conv.questions:
            rankings[(d.conv.sample_id, q.index)] = [dia[i] for i in fn(d, q)]
    return rankings


def bm25_fn(d: Direct, q: Question) -> list[int]:
    return order_by(d.okapi.scores(q.question))


def dense_fn(d: Direct, q: Question) -> list[int]:
    return order_by(list(d.vectors @ d.query_vectors[q.question]))


def rrf_fn(k: int = 60, depth: int = 100) -> RankFn:
    def fn(d: Direct, q: Question) -> list[int]:
        bm = order_by(d.okapi.scores(q.question), positive=True)[:depth]
        return rrf([dense_fn(d, q)[:depth], bm], k=k)

    return fn


def product_hybrid_fn(k: int = 60, depth: int = 30) -> RankFn:
    """Today's `:retrieve` hybrid on SQLite: FTS5 and cosine, `max(top_k*3, 30)` deep, RRF k=60."""

    def fn(d: Direct, q: Question) -> list[int]:
        kw = list(d.fts.scores(d.conv.sample_id, q.question, depth))
        return rrf([dense_fn(d, q)[:depth], kw], k=k)

    return fn


def rerank_fn(
    config: Any, *, depth: int = 50, windows: bool = True, timeline: bool = True, scope_bm25: bool = True
) -> RankFn:
    """The second stage on keyword + cosine candidates (`depth` of each, with neighbours).

    Keywords by BM25 over the conversation's own statistics (`TermIndex`, what the product does),
    or with `scope_bm25=False` by FTS5 over every conversation (the whole table's statistics).
    As in the service: cosine scores are known for the best `SIMILARITY_DEPTH` memories only.
    """
    from contextiq.core.search.query import time_windows
    from contextiq.core.search.rerank import SIMILARITY_DEPTH, Timeline, rerank
    from contextiq.core.search.terms import TermIndex

    timelines: dict[str, Any] = {}
    indexes: dict[str, Any] = {}
    now = datetime.now(UTC)

    def keywords(d: Direct, q: Question) -> dict[int, float]:
        if not scope_bm25:
            return d.fts.scores(d.conv.sample_id, q.question, depth)
        if d.conv.sample_id not in indexes:
            indexes[d.conv.sample_id] = TermIndex.build(list(enumerate(d.texts)))
        scores = indexes[d.conv.sample_id].score(q.question)
        return dict(sorted(scores.items(), key=lambda p: (-p[1], p[0]))[:depth])

    def fn(d: Direct, q: Question) -> list[int]:
        key = d.conv.sample_id
        if key not in timelines:
            timelines[key] = Timeline.build(
                ((i, t.time) for i, t in enumerate(d.conv.turns)), session_gap=config.session_gap
            )
        tl = timelines[key] if timeline else None
        cosine = d.vectors @ d.query_vectors[q.question]
        kw = keywords(d, q)
        by_cosine = order_by(list(cosine))
        first = by_cosine[:depth] + list(kw)
        candidates = tl.around(first, config.radius) if tl is not None else first
        similarity = {i: float(cosine[i]) for i in by_cosine[: max(depth, SIMILARITY_DEPTH)]}
        times = {i: d.conv.turns[i].time for i in candidates}
        found = time_windows(q.question, now=now) if windows else []
        ranked = [
            r.id
            for r in rerank(
                candidates, similarity=similarity, keyword=kw, timeline=tl, times=times, windows=found, config=config
            )
        ]
        seen = set(ranked)
        return ranked + [i for i in order_by(list(cosine)) if i not in seen]

    return fn


def ablation_rows() -> list[tuple[str, Any]]:
    """(label, ranking factory or config) of each ablation row, cumulative down to the default."""
    from contextiq.core.search.rerank import DEFAULT_RERANK, RerankConfig

    off = replace(DEFAULT_RERANK, neighbour_weight=0.0, session_weight=0.0, time_weight=0.0)
    prior = RerankConfig(
        keyword_weight=0.5,
        neighbour_weight=0.5,
        neighbour_decay=(1.0, 0.5),
        session_weight=0.5,
        session_top=3,
        time_weight=1.0,
    )
    return [
        ("Okapi BM25 (baseline)", bm25_fn),
        ("dense MiniLM (baseline)", dense_fn),
        ("BM25 + dense, RRF k=60 (baseline)", rrf_fn()),
        ("today's hybrid: FTS5 + cosine, RRF k=60, depth 30", product_hybrid_fn()),
        ("  same, RRF k=10 (small corpora)", product_hybrid_fn(k=10)),
        ("z-score fusion (FTS5 + cosine)", rerank_fn(off, timeline=False, windows=False, scope_bm25=False)),
        ("  + neighbour context", rerank_fn(
            replace(off, neighbour_weight=DEFAULT_RERANK.neighbour_weight), scope_bm25=False)),
        ("  + session context", rerank_fn(replace(DEFAULT_RERANK, time_weight=0.0), windows=False, scope_bm25=False)),
        ("  + time windows", rerank_fn(DEFAULT_RERANK, scope_bm25=False)),
        ("  + keywords by BM25 over the scope = the default", rerank_fn(DEFAULT_RERANK)),
        ("the default, untuned priors", rerank_fn(prior)),
        ("the default without neighbours", rerank_fn(replace(DEFAULT_RERANK, neighbour_weight=0.0))),
        ("the default without sessions", rerank_fn(replace(DEFAULT_RERANK, session_weight=0.0))),
        ("the default, 100 deep", rerank_fn(DEFAULT_RERANK, depth=100)),
    ]


# ---------------------------------------------------------------------------------------------
# mem0, in its own virtualenv
# ---------------------------------------------------------------------------------------------


def mem0_python() -> Path:
    return MEM0_VENV / "bin" / "python"


def setup_mem0() -> None:
    if not mem0_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(MEM0_VENV)], check=True)
    pip = [str(mem0_python()), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # the local CPU build (see requirements-mem0.txt)
    subprocess.run([*pip, "-r", str(MEM0_REQUIREMENTS)], check=True)


def run_mem0(conversations: Sequence[Conversation], *, top_k: int) -> tuple[Rankings, dict[str, Any]]:
    if not mem0_python().exists():
        raise SystemExit(f"no {MEM0_VENV}: run `python bench/locomo.py --setup-mem0` first")
    work = {
        "top_k": top_k,
        "conversations": [
            {
                "sample_id": c.sample_id,
                "scope": c.scope["user_id"],
                "turns": [{"dia_id": t.dia_id, "text": turn_text(t), "time": t.time.isoformat()} for t in c.turns],
                "questions": [{"qa_index": q.index, "question": q.question} for q in c.questions],
            }
            for c in conversations
        ],
    }
    with tempfile.TemporaryDirectory(prefix="locomo-mem0-") as tmp:
        src, dst = Path(tmp) / "work.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(work))
        env = dict(
            os.environ,
            MEM0_TELEMETRY="False",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            MEM0_DIR=str(Path(tmp) / "mem0"),
        )
        subprocess.run(
            [str(mem0_python()), str(MEM0_WORKER), "--work", str(src), "--out", str(dst), "--dir", tmp],
            check=True,
            env=env,
        )
        out = json.loads(dst.read_text())
    rankings = {(r["sample_id"], r["qa_index"]): r["ranked"] for r in out.pop("rankings")}
    return rankings, out


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def split(conversations: Sequence[Conversation], tune: int) -> dict[str, list[Conversation]]:
    return {"tune": list(conversations[:tune]), "held-out": list(conversations[tune:]), "all": list(conversations)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    conversations = load_conversations(args.data)
    if args.samples:
        wanted = set(args.samples.split(","))
        conversations = [c for c in conversations if c.sample_id in wanted]
    skipped: Counter[str] = Counter()
    for c in conversations:
        skipped += c.skipped
    n_q = sum(len(c.questions) for c in conversations)
    log(
        f"{len(conversations)} conversations, {sum(len(c.turns) for c in conversations)} turns, {n_q} QA items "
        f"scored; " + ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
    )
    parts = split(conversations, args.tune)
    results: dict[str, Any] = {"skipped": dict(skipped), "tables": {}, "stats": {}, "recall10": {}}
    out: list[str] = []

    def report(name: str, rankings: Rankings, extra: str = "") -> None:
        table = category_table(conversations, rankings)
        results["tables"][name] = table
        results["recall10"][name] = {p: recall10(cs, rankings) for p, cs in parts.items()}
        out.append(render_table(name, table, extra))

    if not args.no_api:
        from contextiq.core.search.rerank import DEFAULT_RERANK

        async with Api(url=args.url, api_key=args.api_key, database_url=args.database_url) as api:
            stats = RunStats()
            log(f"ingest ({args.ingest}{', bulk' if args.bulk else ''}) through the API")
            prov = await ingest(api, conversations, mode=args.ingest, bulk=args.bulk, stats=stats)
            log(f"retrieve ({args.mode}) through the API")
            rankings = await retrieve_all(api, conversations, prov, mode=args.mode, top_k=args.top_k, stats=stats)
            name = f"ContextIQ :retrieve mode={args.mode}, ingest={args.ingest}"
            covered = {d for ids in prov.by_memory.values() for d in ids}
            ceiling = statistics.fmean(
                len(set(q.evidence) & covered) / len(q.evidence)
                for c in conversations
                for q in c.questions
                if q.category in MAIN_CATEGORIES
            )
            report(name, rankings, stats.line() + f"; memories cover {ceiling:.3f} of the evidence (1-4)")
            results["stats"][name] = {
                "ingest_turns_per_s": stats.turns / stats.ingest_seconds,
                "retrieve_p50_ms": percentile(stats.retrieve_ms, 50),
                "retrieve_p95_ms": percentile(stats.retrieve_ms, 95),
            }
            results["main"] = name
            if args.rankings_out:
                write_rankings(args.rankings_out, conversations, rankings)
                log(f"rankings written to {args.rankings_out}")
            for mode in args.also_modes:
                s = RunStats(turns=stats.turns, ingest_seconds=stats.ingest_seconds, memories=stats.memories)
                r = await retrieve_all(api, conversations, prov, mode=mode, top_k=args.top_k, stats=s)
                n = f"ContextIQ :retrieve mode={mode}, ingest={args.ingest}"
                report(n, r, s.line())
                results["stats"][n] = {
                    "retrieve_p50_ms": percentile(s.retrieve_ms, 50),
                    "retrieve_p95_ms": percentile(s.retrieve_ms, 95),
                }
            if args.client_rerank:
                s = RunStats(turns=stats.turns, ingest_seconds=stats.ingest_seconds, memories=stats.memories)
                r = await client_rerank_all(api, conversations, prov, depth=50, stats=s, config=DEFAULT_RERANK)
                n = f"proposed default on the API's signals (client-side), ingest={args.ingest}"
                report(n, r, s.line().split("; ", 1)[1] + " - two :retrieve calls + rerank")
    if args.mem0:
        log("mem0 (its own virtualenv)")
        rankings, info = run_mem0(conversations, top_k=args.top_k)
        add_rate = info["turns"] / info["add_seconds"]
        extra = (
            f"{info['version']}; add {add_rate:.0f} turns/s; search p50 {percentile(info['search_ms'], 50):.1f} "
            f"ms, p95 {percentile(info['search_ms'], 95):.1f} ms"
        )
        report("mem0 OSS add(infer=False) + search", rankings, extra)
        results["stats"]["mem0"] = {
            "add_turns_per_s": add_rate,
            "search_p50_ms": percentile(info["search_ms"], 50),
            "search_p95_ms": percentile(info["search_ms"], 95),
            "version": info["version"],
        }
    if args.baselines or args.ablation:
        log("direct rankings: embeddings, BM25, FTS5")
        directs = await build_direct(conversations)
        if args.baselines:
            report("baseline: Okapi BM25 (no server)", direct_rankings(directs, bm25_fn))
            report("baseline: dense MiniLM (no server)", direct_rankings(directs, dense_fn))
            report("baseline: BM25 + dense RRF k=60 (no server)", direct_rankings(directs, rrf_fn()))
        if args.ablation:
            rows = []
            for label, fn in ablation_rows():
                r = direct_rankings(directs, fn)
                rows.append((label, {p: recall10(cs, r) for p, cs in parts.items()}, category_table(conversations, r)))
            dated = await build_direct(conversations, date_text=True)
            from contextiq.core.search.rerank import DEFAULT_RERANK

            r = direct_rankings(dated, rerank_fn(DEFAULT_RERANK))
            rows.append(
                (
                    "the default, dates written into the text",
                    {p: recall10(cs, r) for p, cs in parts.items()},
                    category_table(conversations, r),
                )
            )
            results["ablation"] = [{"label": lb, "recall10": rc, "table": t} for lb, rc, t in rows]
            tune_ids = ",".join(c.sample_id for c in parts["tune"])
            head = f"{'ablation: cats 1-4 recall@10':<52}{'tune':>8}{'held-out':>10}{'all':>8}" + "".join(
                f"{'c' + str(c):>7}" for c in MAIN_CATEGORIES
            )
            lines = [f"== ablation (tune = {tune_ids}; held-out = the rest)", head]
            for label, rc, t in rows:
                cats = "".join(f"{t.get(str(c), {}).get('recall@10', float('nan')):>7.3f}" for c in MAIN_CATEGORIES)
                lines.append(f"{label:<52}{rc['tune']:>8.3f}{rc['held-out']:>10.3f}{rc['all']:>8.3f}{cats}")
            out.append("\n".join(lines))
    summary = [
        f"== cats 1-4 recall@10 (reference, measured before: BM25 {REFERENCE['bm25']}, dense "
        f"{REFERENCE['dense']}, RRF {REFERENCE['rrf']}, mem0 {REFERENCE['mem0']})"
    ]
    for name, rc in results["recall10"].items():
        summary.append(f"{name:<80}{rc['all']:.3f}  (tune {rc['tune']:.3f}, held-out {rc['held-out']:.3f})")
    main, m0 = results.get("main"), results["stats"].get("mem0")
    if main and m0:
        ours = results["stats"][main]
        summary.append(
            f"latency: mem0 search p50 / ContextIQ retrieve p50 = "
            f"{m0['search_p50_ms'] / ours['retrieve_p50_ms']:.1f}x; p95 "
            f"{m0['search_p95_ms'] / ours['retrieve_p95_ms']:.1f}x; ingest ContextIQ "
            f"{ours['ingest_turns_per_s']:.0f} vs mem0 {m0['add_turns_per_s']:.0f} turns/s"
        )
    out.append("\n".join(summary))
    print("\n\n".join(out))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a file in LoCoMo's format")
    p.add_argument("--samples", help="only these sample ids, comma-separated")
    p.add_argument("--ingest", choices=("raw", "generate"), default="raw")
    p.add_argument("--bulk", action="store_true", help="raw ingest through :import (one call per conversation)")
    p.add_argument(
        "--mode",
        choices=("similarity", "keyword", "hybrid"),
        default=None,
        help="default: the product default (RetrieveRequest.mode)",
    )
    p.add_argument(
        "--also-modes",
        nargs="*",
        default=[],
        choices=("similarity", "keyword", "hybrid"),
        help="retrieve again in these modes on the same ingest",
    )
    p.add_argument("--top-k", type=int, default=RANKED_MIN)
    p.add_argument("--rankings-out", type=Path)
    p.add_argument("--client-rerank", action="store_true", help="also: the proposed default on the API's signals")
    p.add_argument("--baselines", action="store_true", help="also: BM25, dense and RRF with no server")
    p.add_argument("--ablation", action="store_true", help="also: each step of the proposed ranking")
    p.add_argument("--tune", type=int, default=3, help="the first N conversations are the tuning split")
    p.add_argument("--mem0", action="store_true", help="also: mem0 OSS in bench/.venv-mem0")
    p.add_argument("--setup-mem0", action="store_true", help="create bench/.venv-mem0 and exit")
    p.add_argument("--no-api", action="store_true", help="skip ContextIQ's API (baselines/ablation/mem0 only)")
    p.add_argument("--url", help="a running server instead of the in-process app (with --api-key)")
    p.add_argument("--api-key", default=os.environ.get("CONTEXTIQ_API_KEY"))
    p.add_argument(
        "--database-url",
        help="in-process database (default: a temporary SQLite file); "
        "postgresql://... gets a fresh database, dropped at the end",
    )
    p.add_argument("--json-out", type=Path, help="write every number as JSON here")
    args = p.parse_args(argv)
    if args.setup_mem0:
        setup_mem0()
        return 0
    if args.mode is None:
        from contextiq.memories.models import RetrieveRequest

        args.mode = RetrieveRequest.model_fields["mode"].default
    if args.top_k < RANKED_MIN:
        p.error(f"--top-k must be at least {RANKED_MIN} (rankings hold at least {RANKED_MIN} ids)")
    results = asyncio.run(run(args))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
