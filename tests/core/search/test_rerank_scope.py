"""`rerank_scope` (a scope read whole, in arrays) ranks exactly as the dict path does: `Timeline.build`
over the scope, `Timeline.around` of the first-stage hits, then `rerank`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from contextiq.core.search.query import TimeWindow
from contextiq.core.search.rerank import (
    DEFAULT_RERANK,
    RERANK_DEPTH,
    Ranked,
    RerankConfig,
    Timeline,
    from_micros,
    micros,
    rerank,
    rerank_scope,
)

T0 = datetime(2024, 3, 1, 9, tzinfo=UTC)


def _scope(rng: np.random.Generator, n: int, gap: timedelta) -> list[datetime]:
    """`n` times in ascending order: ties, gaps just under, at and over `gap`, and long breaks."""
    steps = rng.choice(
        [timedelta(0), timedelta(minutes=1), gap, gap + timedelta(microseconds=1), timedelta(days=2)],
        size=n, p=[0.2, 0.5, 0.1, 0.1, 0.1],
    )
    times, now = [], T0
    for step in steps:
        now = now + step
        times.append(now)
    return times


def _dict_path(
    ids: list[str], times: list[datetime], similarity: np.ndarray, keyword: np.ndarray, hits: np.ndarray,
    windows: list[TimeWindow], config: RerankConfig, limit: int | None,
) -> list[Ranked[str]]:
    timeline = Timeline.build(zip(ids, times, strict=True), session_gap=config.session_gap)
    pairs = [(i, s) for i, s in zip(ids, similarity.tolist(), strict=True) if s == s]
    similar = sorted(pairs, key=lambda p: -p[1])
    matched = [(ids[k], float(keyword[k])) for k in hits.tolist()]
    first = [i for i, _ in similar[:RERANK_DEPTH]] + [i for i, _ in matched]
    return rerank(
        timeline.around(first, config.radius), similarity=dict(similar), keyword=dict(matched), timeline=timeline,
        windows=windows, config=config, limit=limit,
    )


CONFIGS = [
    DEFAULT_RERANK,
    RerankConfig(neighbour_decay=(1.0, 0.5, 0.25), session_top=3, session_gap=timedelta(minutes=30)),
    RerankConfig(neighbour_weight=0.0, session_weight=0.0),
    RerankConfig(keyword_weight=0.0, time_weight=0.0),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("seed", range(12))
def test_rerank_scope_ranks_as_the_timeline_path(config: RerankConfig, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 160))
    times = _scope(rng, n, config.session_gap)
    ids = [f"m{k}" for k in range(n)]
    # Repeated texts give equal similarities; some memories have no vector of the query's model.
    similarity = np.round(rng.uniform(-0.2, 0.9, size=n), 2)
    similarity[rng.random(n) < 0.1] = np.nan
    scores = np.round(rng.uniform(0.5, 9.0, size=n), 1)
    matched = np.flatnonzero(rng.random(n) < 0.3)
    depth = int(rng.integers(10, 60))
    hits = matched[np.argsort(-scores[matched], kind="stable")[:depth]]
    keyword = np.zeros(n)
    keyword[hits] = scores[hits]
    windows = []
    if seed % 2:
        start = times[int(rng.integers(0, n))]
        windows.append(TimeWindow(start, start + timedelta(days=1), "that day"))
    limit = None if seed % 3 == 0 else 10

    want = _dict_path(ids, times, similarity, keyword, hits, windows, config, limit)
    got = rerank_scope(
        np.array([micros(t) for t in times], dtype=np.int64), similarity, keyword, hits,
        windows=windows, config=config, limit=limit,
    )

    assert [ids[r.id] for r in got] == [r.id for r in want]
    for g, w in zip(got, want, strict=True):
        assert (g.score, g.similarity, g.keyword, g.session, g.time) == pytest.approx(
            (w.score, w.similarity, w.keyword, w.session, w.time), abs=1e-12
        )


def test_rerank_scope_of_nothing_is_empty() -> None:
    empty = np.zeros(0)
    assert rerank_scope(np.zeros(0, dtype=np.int64), empty, empty, np.zeros(0, dtype=np.int64)) == []


def test_rerank_scope_without_vectors_or_hits_ranks_nothing() -> None:
    times = np.array([micros(T0), micros(T0) + 1], dtype=np.int64)
    assert rerank_scope(times, np.full(2, np.nan), np.zeros(2), np.zeros(0, dtype=np.int64)) == []


def test_micros_is_exact_and_reads_naive_times_as_utc() -> None:
    late = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)
    assert micros(late) == (late - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert micros(datetime(2024, 1, 1)) == micros(datetime(2024, 1, 1, tzinfo=UTC))
    assert micros(T0 + timedelta(microseconds=1)) - micros(T0) == 1
    for when in (late, T0 + timedelta(microseconds=7), datetime(1900, 2, 3, 4, 5, 6, 7, tzinfo=UTC)):
        assert from_micros(micros(when)) == when and from_micros(micros(when)).tzinfo is not None


def test_rerank_scope_breaks_ties_in_the_timeline_paths_candidate_order() -> None:
    """All scores equal: the order is the candidates' (hits first, then each one's neighbours at
    distance 1 before and after, then 2), as `Timeline.around` gives it."""
    n = 20
    times = [T0 + timedelta(minutes=k) for k in range(n)]
    similarity = np.full(n, np.nan)
    similarity[[12, 5]] = 0.5
    empty = np.zeros(0, dtype=np.int64)
    want = _dict_path(
        [str(k) for k in range(n)], times, similarity, np.zeros(n), empty, [], DEFAULT_RERANK, None
    )
    got = rerank_scope(np.array([micros(t) for t in times], dtype=np.int64), similarity, np.zeros(n), empty)
    assert [r.id for r in got] == [int(r.id) for r in want] == [5, 12, 4, 6, 3, 7, 11, 13, 10, 14]
