"""Second-stage ranking: score fusion, neighbour and session context, time windows, the timeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from contextiq.core.search.query import TimeWindow
from contextiq.core.search.rerank import DEFAULT_RERANK, RerankConfig, Timeline, TimelineCache, rerank, scope_timeline

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
PLAIN = RerankConfig(neighbour_weight=0.0, session_weight=0.0, time_weight=0.0)


def conversation(*sessions: int) -> Timeline[str]:
    """Sessions of the given lengths, a day apart; ids `s<session>t<turn>`, all turns of a session at one time."""
    items = [(f"s{s}t{t}", T0 + timedelta(days=s)) for s, n in enumerate(sessions) for t in range(n)]
    return Timeline.build(items, session_gap=timedelta(hours=1))


def test_timeline_cuts_sessions_at_gaps_and_keeps_given_order() -> None:
    tl = conversation(3, 2)
    assert tl.order == ["s0t0", "s0t1", "s0t2", "s1t0", "s1t1"]
    assert [tl.session[i] for i in tl.order] == [0, 0, 0, 1, 1]
    assert tl.neighbours("s0t2", 2) == [("s0t1", 1), ("s0t0", 2)]  # s1t0 is in another session
    assert tl.neighbours("unknown", 2) == []
    assert tl.around(["s1t1", "s0t0"], 1) == ["s1t1", "s0t0", "s1t0", "s0t1"]


def test_timeline_reads_naive_times_as_utc() -> None:
    tl = Timeline.build(
        [("a", datetime(2024, 1, 1)), ("b", datetime(2024, 1, 1, 0, 30, tzinfo=UTC))], session_gap=timedelta(hours=1)
    )
    assert tl.session == {"a": 0, "b": 0}


def test_score_fusion_keeps_margins_that_rank_fusion_loses() -> None:
    # "a" is a far better keyword match than anything, with a middling cosine; "b" is second on both.
    sim = {"a": 0.30, "b": 0.50, "c": 0.52, "d": 0.10}
    kw = {"a": 12.0, "b": 2.1, "c": 0.5}
    ranked = rerank(["a", "b", "c", "d"], similarity=sim, keyword=kw, config=PLAIN)
    # Reciprocal rank fusion (k=60) would tie "a" with "c" and put "b" third.
    assert [r.id for r in ranked] == ["a", "b", "c", "d"]


def test_keyword_weight_moves_between_the_signals() -> None:
    sim = {"a": 0.9, "b": 0.1}
    kw = {"b": 5.0}
    assert rerank(["a", "b"], similarity=sim, keyword=kw, config=replace(PLAIN, keyword_weight=0.0))[0].id == "a"
    assert rerank(["a", "b"], similarity=sim, keyword=kw, config=replace(PLAIN, keyword_weight=1.0))[0].id == "b"


def test_a_reply_gains_from_the_question_before_it() -> None:
    # s0t1 ("yes, last Tuesday") matches nothing itself; the turn before it matches the query well.
    tl = conversation(4, 4)
    sim = {i: 0.2 for i in tl.order} | {"s0t0": 0.8, "s1t3": 0.35}
    kw: dict[str, float] = {"s0t0": 6.0}
    config = RerankConfig(session_weight=0.0, time_weight=0.0, neighbour_weight=0.5, neighbour_decay=(1.0,))
    without = [r.id for r in rerank(tl.order, similarity=sim, keyword=kw, config=config)]
    with_context = [r.id for r in rerank(tl.order, similarity=sim, keyword=kw, timeline=tl, config=config)]
    assert without.index("s0t1") > without.index("s1t3")
    assert with_context.index("s0t1") < with_context.index("s1t3")
    assert with_context[0] == "s0t0"


def test_neighbours_do_not_cross_sessions() -> None:
    tl = conversation(2, 2)
    sim = {i: 0.1 for i in tl.order} | {"s0t1": 0.9}
    config = RerankConfig(session_weight=0.0, time_weight=0.0, neighbour_decay=(1.0,))
    ranked = {r.id: r for r in rerank(tl.order, similarity=sim, keyword={}, timeline=tl, config=config)}
    assert ranked["s0t0"].similarity > ranked["s1t0"].similarity == pytest.approx(0.1)


def test_session_context_lifts_the_session_that_matches() -> None:
    tl = conversation(3, 3)
    sim = {"s0t0": 0.8, "s0t1": 0.7, "s0t2": 0.3, "s1t0": 0.31, "s1t1": 0.1, "s1t2": 0.1}
    config = RerankConfig(neighbour_weight=0.0, time_weight=0.0, session_weight=1.0)
    ranked = rerank(tl.order, similarity=sim, keyword={}, timeline=tl, config=config)
    order = [r.id for r in ranked]
    assert order.index("s0t2") < order.index("s1t0")
    assert ranked[0].session > 0


def test_time_windows_boost_memories_inside_them() -> None:
    times = {"old": datetime(2021, 6, 14, 13, tzinfo=UTC), "new": datetime(2024, 2, 1, tzinfo=UTC)}
    window = TimeWindow(datetime(2021, 6, 14, tzinfo=UTC), datetime(2021, 6, 15, tzinfo=UTC), "14 June 2021")
    sim = {"old": 0.4, "new": 0.5}
    config = replace(PLAIN, time_weight=2.0)
    assert rerank(["old", "new"], similarity=sim, keyword={}, times=times, config=config)[0].id == "new"
    ranked = rerank(["old", "new"], similarity=sim, keyword={}, times=times, windows=[window], config=config)
    assert ranked[0].id == "old"
    assert ranked[0].time == 2.0


def test_missing_signals_and_edge_cases() -> None:
    assert rerank([], similarity={}, keyword={}) == []
    # No similarity known for "b": it counts as the lowest seen; repeated ids rank once.
    ranked = rerank(["a", "b", "a"], similarity={"a": 0.5}, keyword={}, config=PLAIN)
    assert [r.id for r in ranked] == ["a", "b"]
    assert ranked[1].similarity == 0.5
    # All equal: ties keep the candidates' order.
    assert [r.id for r in rerank(["x", "y"], similarity={"x": 0.3, "y": 0.3}, keyword={})] == ["x", "y"]
    assert DEFAULT_RERANK.radius == len(DEFAULT_RERANK.neighbour_decay)
    assert replace(DEFAULT_RERANK, neighbour_weight=0.0).radius == 0


@pytest.fixture
async def db() -> AsyncIterator[tuple[AsyncSession, Table]]:
    metadata = MetaData()
    table = Table(
        "notes",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("scope", String),
        Column("event_time", DateTime(timezone=True), nullable=True),
        Column("created_at", DateTime(timezone=True)),
    )
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        created = T0 + timedelta(days=10)
        await conn.execute(
            table.insert(),
            [
                {"id": 1, "scope": "a", "event_time": T0, "created_at": created + timedelta(seconds=2)},
                {"id": 2, "scope": "a", "event_time": T0, "created_at": created + timedelta(seconds=1)},
                {"id": 3, "scope": "a", "event_time": None, "created_at": T0 + timedelta(days=2)},
                {"id": 4, "scope": "a", "event_time": T0 + timedelta(days=1), "created_at": created},
                {"id": 5, "scope": "b", "event_time": T0, "created_at": created},
            ],
        )
    async with async_sessionmaker(engine)() as session:
        yield session, table
    await engine.dispose()


async def test_scope_timeline_orders_by_event_time_then_creation(db: tuple[AsyncSession, Table]) -> None:
    session, table = db
    tl = await scope_timeline(session, table=table, where=[table.c.scope == "a"], session_gap=timedelta(hours=1))
    assert tl.order == [2, 1, 4, 3]  # same event time: creation order; no event time: its creation time
    assert [tl.session[i] for i in tl.order] == [0, 0, 1, 2]


async def test_scope_timeline_keeps_the_newest_past_its_limit(db: tuple[AsyncSession, Table]) -> None:
    session, table = db
    tl = await scope_timeline(
        session, table=table, where=[table.c.scope == "a"], session_gap=timedelta(hours=1), limit=2
    )
    assert tl.order == [4, 3]


def test_timeline_cache_evicts_the_least_recently_used() -> None:
    cache: TimelineCache[Timeline[str]] = TimelineCache(max_entries=2)
    a, b, c = conversation(1), conversation(2), conversation(3)
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # now the most recent
    cache.put("c", c)
    assert cache.get("b") is None
    assert cache.get("a") is a and cache.get("c") is c
    assert len(cache) == 2


def test_limit_keeps_the_best() -> None:
    sim = {"a": 0.1, "b": 0.9, "c": 0.5}
    assert [r.id for r in rerank(["a", "b", "c"], similarity=sim, keyword={}, config=PLAIN, limit=2)] == ["b", "c"]


def test_timeline_cache_entries_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("contextiq.core.search.rerank.time.monotonic", lambda: clock[0])
    cache: TimelineCache[Timeline[str]] = TimelineCache(ttl=60)
    cache.put("a", conversation(1))
    clock[0] += 59
    assert cache.get("a") is not None
    clock[0] += 2
    assert cache.get("a") is None
    assert len(cache) == 0
