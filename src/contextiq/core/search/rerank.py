"""Second-stage ranking of one scope's retrieval candidates: score fusion with context and time.

The first stage (vector and keyword search inside a scope) yields candidates with a cosine
similarity and a keyword score. `rerank` orders them with what every memory store knows, no model:

1. **Score fusion.** Each signal is z-normalised over the candidates and the two are mixed
   (`keyword_weight`). Unlike rank fusion it keeps the margins: a strong keyword match with a weak
   cosine beats two middling ranks (Bruch et al., "An analysis of fusion functions for hybrid
   retrieval", TOIS 2023, find convex score combinations at least as good as RRF).
2. **Neighbour context.** A memory is read in the context of the memories written just before and
   after it in the same session (a reply "yes, last Tuesday" answers the question before it), so
   each signal of a memory gains a share (`neighbour_weight`) of its best neighbour's signal,
   decaying with distance (`neighbour_decay`).
3. **Session context.** A memory from a session whose best memories match the query gains
   `session_weight` × the mean of that session's `session_top` fused scores (hierarchical retrieval:
   find the conversation, then the turn).
4. **Time windows.** A memory whose time falls in a window the query names (`query.time_windows`)
   gains `time_weight`.

A session is a run of the scope's memories, in time order, with no gap longer than `session_gap`
(`Timeline`). Scores are in standard-deviation units of the candidate set, so the weights mean the
same for every scope. The defaults were tuned on three conversations of a dev set and checked on two
held out; the ablation is in `docs/retrieval.md`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
from sqlalchemy import ColumnElement, FromClause, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.search.query import TimeWindow

__all__ = [
    "DEFAULT_RERANK",
    "RERANK_DEPTH",
    "SIMILARITY_DEPTH",
    "Ranked",
    "RerankConfig",
    "Timeline",
    "TimelineCache",
    "from_micros",
    "micros",
    "rerank",
    "rerank_scope",
    "scope_timeline",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
#: First-stage hits of each signal (cosine, keyword) that become candidates.
RERANK_DEPTH = 50
#: Cosine scores fetched for context: the candidates' neighbours mostly fall within them.
SIMILARITY_DEPTH = 200


@dataclass(frozen=True, slots=True)
class RerankConfig:
    """The weights of `rerank`; zero turns a step off.

    Attributes:
        keyword_weight: share of the keyword signal in the fused score (the rest is similarity).
        neighbour_weight: share of the best neighbour's signal a memory gains.
        neighbour_decay: weight of the neighbour at distance 1, 2, … (its length is the radius).
        session_weight: weight of the session's mean top fused score.
        session_top: how many of the session's best candidates make that mean.
        session_gap: a longer gap between two memories starts a new session.
        time_weight: boost of a memory inside a time window of the query.
    """

    keyword_weight: float = 0.5
    neighbour_weight: float = 0.4
    neighbour_decay: tuple[float, ...] = (1.0, 1.0)
    session_weight: float = 0.5
    session_top: int = 2
    session_gap: timedelta = timedelta(hours=1)
    time_weight: float = 2.0

    @property
    def radius(self) -> int:
        """How far (in memories) neighbour context reaches."""
        return len(self.neighbour_decay) if self.neighbour_weight else 0


DEFAULT_RERANK = RerankConfig()


class Ranked(NamedTuple, Generic[K]):
    """One reranked memory: the final score and its parts (the signals after neighbour context).
    (A named tuple: a frozen dataclass costs ~1.5 µs per instance, several times a tuple's.)"""

    id: K
    score: float
    similarity: float
    keyword: float
    session: float = 0.0
    time: float = 0.0


@dataclass(slots=True)
class Timeline(Generic[K]):
    """A scope's memories in time order, cut into sessions at gaps longer than `session_gap`."""

    order: list[K] = field(default_factory=list)
    position: dict[K, int] = field(default_factory=dict)
    session: dict[K, int] = field(default_factory=dict)
    time: dict[K, datetime] = field(default_factory=dict)

    @classmethod
    def build(cls, items: Iterable[tuple[K, datetime]], *, session_gap: timedelta) -> Timeline[K]:
        """Build from (id, time) pairs already in time order (ties in their given order)."""
        timeline: Timeline[K] = cls()
        previous: datetime | None = None
        number = 0
        for item, when in items:
            moment = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
            if previous is not None and moment - previous > session_gap:
                number += 1
            previous = moment
            timeline.position[item] = len(timeline.order)
            timeline.session[item] = number
            timeline.time[item] = moment
            timeline.order.append(item)
        return timeline

    def neighbours(self, item: K, radius: int) -> list[tuple[K, int]]:
        """Return the memories within `radius` of `item` in its session, with their distance."""
        at = self.position.get(item)
        if at is None:
            return []
        session = self.session[item]
        found: list[tuple[K, int]] = []
        for distance in range(1, radius + 1):
            for index in (at - distance, at + distance):
                if 0 <= index < len(self.order) and self.session[self.order[index]] == session:
                    found.append((self.order[index], distance))
        return found

    def around(self, items: Iterable[K], radius: int) -> list[K]:
        """Return `items` followed by their neighbours within `radius` (no repeats): the ids to score."""
        seen = dict.fromkeys(items)
        for item in list(seen):
            for other, _ in self.neighbours(item, radius):
                seen.setdefault(other, None)
        return list(seen)


class TimelineCache(Generic[V]):
    """A small in-process LRU of per-scope values (timelines, term indexes), keyed by whatever
    changes when the scope changes.

    Key it by the scope's write generation (the memories service bumps it on every write), so a
    cached timeline is not older than the last committed write. Entries also expire after `ttl`
    seconds, which bounds staleness should the generation counter itself be evicted. A stale
    timeline only weakens context (a memory it lacks gets none); it never returns a deleted memory.
    """

    def __init__(self, max_entries: int = 1024, *, ttl: float = 300.0) -> None:
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl

    def get(self, key: Hashable) -> V | None:
        """Return the value stored under `key`, if any and fresh (and mark it recently used)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self._ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Hashable, value: V) -> None:
        """Store `value` under `key`, dropping the least recently used entry when full."""
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


async def scope_timeline(
    session: AsyncSession,
    *,
    table: FromClause,
    where: Sequence[ColumnElement[bool]],
    session_gap: timedelta,
    id_column: str = "id",
    time_columns: Sequence[str] = ("event_time", "created_at"),
    limit: int = 20_000,
) -> Timeline[Any]:
    """Read the timeline of the rows matching `where`: ordered by the first non-null time column.

    Ties (memories of one event time) keep their creation order, then their (time-ordered) ids.
    Reads only ids and times; past `limit` rows it keeps the newest (a bound on huge scopes).
    """
    columns = [table.c[c] for c in time_columns]
    when = func.coalesce(*columns) if len(columns) > 1 else columns[0]
    ident = table.c[id_column]
    newest = (
        select(ident.label("id"), when.label("t"), columns[-1].label("c"))
        .where(*where)
        .order_by(when.desc(), columns[-1].desc(), ident.desc())
        .limit(limit)
        .subquery()
    )
    stmt = select(newest.c.id, newest.c.t).order_by(newest.c.t, newest.c.c, newest.c.id)
    rows = (await session.execute(stmt)).all()
    return Timeline.build(((r[0], r[1]) for r in rows), session_gap=session_gap)


def rerank(
    candidates: Sequence[K],
    *,
    similarity: Mapping[K, float],
    keyword: Mapping[K, float],
    timeline: Timeline[K] | None = None,
    times: Mapping[K, datetime | None] | None = None,
    windows: Sequence[TimeWindow] = (),
    config: RerankConfig = DEFAULT_RERANK,
    limit: int | None = None,
) -> list[Ranked[K]]:
    """Order `candidates` best first (see the module docstring); at most `limit` of them.

    Args:
        candidates: the ids to rank: the first stage's hits, best with their neighbours
            (`Timeline.around`), so that neighbour context sees their scores.
        similarity: cosine similarity to the query of each candidate (missing: the lowest seen).
        keyword: keyword score of each candidate that matched (missing: 0).
        timeline: the scope's timeline; without it no neighbour or session context applies.
        times: each candidate's time, for `windows` (default: its time in `timeline`).
        windows: the time windows the query names.
    """
    ids = list(dict.fromkeys(candidates))
    if not ids:
        return []
    n = len(ids)
    sim = np.fromiter((similarity.get(i, np.nan) for i in ids), dtype=np.float64, count=n)
    kw = np.fromiter((keyword.get(i, 0.0) for i in ids), dtype=np.float64, count=n)
    positions: np.ndarray | None = None
    sessions = np.arange(-1, -n - 1, -1, dtype=np.int64)  # no timeline: every memory its own session
    if timeline is not None:
        positions = np.fromiter((timeline.position.get(i, -1) for i in ids), dtype=np.int64, count=n)
        sessions = np.where(positions >= 0, [timeline.session.get(i, -1) for i in ids], sessions)
    time_part = np.zeros(n)
    if times is None and timeline is not None:
        times = timeline.time
    if windows and times is not None and config.time_weight:
        for k, item in enumerate(ids):
            when = times.get(item)
            if when is not None and any(when in w for w in windows):
                time_part[k] = config.time_weight
    scored = _score(sim, kw, positions, sessions, time_part, config)
    return scored.ranked(ids, limit)


def rerank_scope(
    times: np.ndarray,
    similarity: np.ndarray,
    keyword: np.ndarray,
    hits: np.ndarray,
    *,
    windows: Sequence[TimeWindow] = (),
    config: RerankConfig = DEFAULT_RERANK,
    first: int = RERANK_DEPTH,
    limit: int | None = None,
) -> list[Ranked[int]]:
    """`rerank` for a scope read whole, in arrays: the same ranking as `Timeline.build` over the
    scope, then `rerank` of `Timeline.around` of the first-stage hits, without a dict per memory.

    Every array is indexed by the memory's position in the scope's time order; the `Ranked.id` of
    the result is that position.

    Args:
        times: each memory's time in integer microseconds since the epoch (`micros`), ascending.
        similarity: cosine similarity to the query (NaN: the memory has no vector to compare).
        keyword: the keyword score of each memory among `hits` (0 elsewhere).
        hits: the keyword hits' positions, best first.
        first: how many of the most similar memories become candidates (the cosine's hits).
    """
    n = len(times)
    if n == 0:
        return []
    gap = config.session_gap // _MICROSECOND
    sessions = np.zeros(n, dtype=np.int64)
    sessions[1:] = np.cumsum(np.diff(times) > gap)
    with_vector = np.flatnonzero(~np.isnan(similarity))
    similar = with_vector[np.argsort(-similarity[with_vector], kind="stable")[:first]]
    seeds = _first_occurrences(np.concatenate([similar, np.asarray(hits, dtype=np.int64)]))
    candidates = seeds
    radius = config.radius
    if radius and len(seeds):
        # As `Timeline.around`: each seed's neighbours at distance 1 (before, after), 2, … in its session.
        steps = np.array([s for d in range(1, radius + 1) for s in (-d, d)], dtype=np.int64)
        near = seeds[:, None] + steps[None, :]
        inside = (near >= 0) & (near < n)
        inside &= sessions[np.clip(near, 0, n - 1)] == sessions[seeds][:, None]
        candidates = _first_occurrences(np.concatenate([seeds, near[inside]]))
    if not len(candidates):
        return []
    time_part = np.zeros(len(candidates))
    if windows and config.time_weight:
        at = times[candidates]
        inside_any = np.zeros(len(candidates), dtype=bool)
        for w in windows:
            inside_any |= (at >= micros(w.start)) & (at < micros(w.end))
        time_part[inside_any] = config.time_weight
    scored = _score(
        similarity[candidates], keyword[candidates], candidates, sessions[candidates], time_part, config,
        scope_sessions=sessions,
    )
    return scored.ranked(candidates.tolist(), limit)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(when: datetime) -> int:
    """`when` in whole microseconds since the epoch (naive: UTC), exactly (no float rounding)."""
    moment = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The aware UTC time `value` microseconds after the epoch (the inverse of `micros`)."""
    return _EPOCH + timedelta(microseconds=value)


def _first_occurrences(values: np.ndarray) -> np.ndarray:
    """`values` (integers) without repeats, each kept where it first occurs."""
    unique = dict.fromkeys(values.tolist())  # a dict keeps insertion order; faster than np.unique here
    return np.fromiter(unique, dtype=np.int64, count=len(unique))


@dataclass(frozen=True, slots=True)
class _Scored:
    total: np.ndarray
    similarity: np.ndarray
    keyword: np.ndarray
    session: np.ndarray
    time: np.ndarray

    def ranked(self, ids: Sequence[K], limit: int | None) -> list[Ranked[K]]:
        order = np.argsort(-self.total, kind="stable")[: limit if limit is not None else len(ids)]
        total, sim, kw = self.total.tolist(), self.similarity.tolist(), self.keyword.tolist()
        session, when = self.session.tolist(), self.time.tolist()
        return [
            Ranked(id=ids[k], score=total[k], similarity=sim[k], keyword=kw[k], session=session[k], time=when[k])
            for k in order.tolist()
        ]


def _score(
    sim: np.ndarray,
    kw: np.ndarray,
    positions: np.ndarray | None,
    sessions: np.ndarray,
    time_part: np.ndarray,
    config: RerankConfig,
    *,
    scope_sessions: np.ndarray | None = None,
) -> _Scored:
    """The reranker's scores of candidates given as arrays (`positions`: in the timeline, -1 where
    unknown, None without a timeline; `sessions`: negative where unknown). `scope_sessions`: the
    session of every memory of a scope read whole, whose positions are then all known."""
    n = len(sim)
    sim = sim.copy()
    missing = np.isnan(sim)
    sim[missing] = float(np.min(sim[~missing])) if not missing.all() else 0.0
    if positions is not None and scope_sessions is not None and config.radius:
        sim, kw = _scope_neighbours(np.stack([sim, kw]), positions, scope_sessions, config)
    elif positions is not None and config.radius and (positions >= 0).any():
        sim, kw = _with_neighbours(np.stack([sim, kw]), positions, sessions, config)
    fused = config.keyword_weight * _standardise(kw) + (1 - config.keyword_weight) * _standardise(sim)
    session_part = np.zeros(n)
    if positions is not None and config.session_weight:
        session_part = config.session_weight * _session_means(fused, sessions, max(config.session_top, 1))
        session_part[sessions < 0] = 0.0
    return _Scored(fused + session_part + time_part, sim, kw, session_part, time_part)


def _with_neighbours(
    values: np.ndarray, positions: np.ndarray, sessions: np.ndarray, config: RerankConfig
) -> np.ndarray:
    """Add to each value `neighbour_weight` × its best decayed neighbour's margin over the lowest value.

    `values` holds one signal per row (the candidates in columns). Neighbours are looked up by
    timeline position among the candidates; one that is not a candidate counts as the lowest value
    (no gain).
    """
    floor = values.min(axis=1, keepdims=True)
    known = positions >= 0
    at = positions[known] + config.radius
    own = sessions[known]
    size = int(positions.max()) + 1 + 2 * config.radius
    margin = np.zeros((len(values), size))
    session_at = np.full(size, np.iinfo(np.int64).min, dtype=np.int64)
    margin[:, at] = values[:, known] - floor
    session_at[at] = own
    best = np.zeros((len(values), len(at)))
    for distance, decay in enumerate(config.neighbour_decay, start=1):
        for step in (-distance, distance):
            gain = np.where(session_at[at + step] == own, decay * margin[:, at + step], 0.0)
            np.maximum(best, gain, out=best)
    out = values.copy()
    out[:, known] = values[:, known] + config.neighbour_weight * best
    return out


def _scope_neighbours(
    values: np.ndarray, positions: np.ndarray, scope_sessions: np.ndarray, config: RerankConfig
) -> np.ndarray:
    """`_with_neighbours` when every candidate's position in the scope is known (`positions`, all
    distinct) and `scope_sessions` holds the session of every memory of the scope: the margins
    are laid out over the whole scope and compared with shifted slices, not gathered per step.
    The same floating-point operations give the same results to the last bit."""
    radius = config.radius
    n = len(scope_sessions)
    floor = values.min(axis=1, keepdims=True)
    margin = np.zeros((len(values), n + 2 * radius))  # non-candidates and the edges: no gain
    margin[:, positions + radius] = values - floor
    best = np.zeros((len(values), n))
    for distance, decay in enumerate(config.neighbour_decay, start=1):
        if distance >= n:
            break
        same = scope_sessions[distance:] == scope_sessions[:-distance]  # k and k + distance share a session
        for step in (-distance, distance):
            shifted = margin[:, radius + step : radius + step + n]  # the margin of k + step, for each k
            gain = decay * shifted
            if step > 0:
                gain[:, n - distance :] = 0.0
                gain[:, : n - distance][:, ~same] = 0.0
            else:
                gain[:, :distance] = 0.0
                gain[:, distance:][:, ~same] = 0.0
            np.maximum(best, gain, out=best)
    out: np.ndarray = values + config.neighbour_weight * best[:, positions]
    return out


def _session_means(fused: np.ndarray, sessions: np.ndarray, top: int) -> np.ndarray:
    """Return, for each candidate, the mean of the `top` best fused scores of its session's candidates."""
    order = np.lexsort((-fused, sessions))  # by session, best first within each
    grouped = sessions[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = grouped[1:] != grouped[:-1]
    ranked_group = np.cumsum(new) - 1  # the session's number (in session order) of each sorted candidate
    keep = np.empty(len(fused), dtype=bool)
    keep[order] = np.arange(len(order)) - np.flatnonzero(new)[ranked_group] < top
    group = np.empty(len(fused), dtype=np.int64)
    group[order] = ranked_group
    # Summed in candidate order, so that a session's sum is the same to the last bit in any path.
    sums = np.bincount(group, weights=np.where(keep, fused, 0.0))
    counts = np.bincount(group, weights=keep.astype(np.float64))
    means: np.ndarray = (sums / np.maximum(counts, 1.0))[group]
    return means


def _standardise(values: np.ndarray) -> np.ndarray:
    """Return z-scores (0 everywhere when all values are equal)."""
    # values.mean() and .std(), without their wrappers' overhead (the same sums and divisions)
    deviations: np.ndarray = values - np.add.reduce(values) / len(values)
    spread = math.sqrt(float(np.add.reduce(deviations * deviations) / len(values)))
    if spread <= 1e-12:
        return np.zeros(len(values))
    scores: np.ndarray = deviations / spread
    return scores
