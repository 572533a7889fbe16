"""Time-aware query expansion: the windows a query names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contextiq.core.search.query import TimeWindow, time_windows

NOW = datetime(2024, 3, 14, 15, 30, tzinfo=UTC)  # a Thursday


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "start", "end"),
    [
        ("what did we eat on 26 February, 2019?", day(2019, 2, 26), day(2019, 2, 27)),
        ("what happened on 9 July 2020", day(2020, 7, 9), day(2020, 7, 10)),
        ("the call of the 3rd of March 2021", day(2021, 3, 3), day(2021, 3, 4)),
        ("notes from November 17, 2018", day(2018, 11, 17), day(2018, 11, 18)),
        ("what about Sept 30th 2020", day(2020, 9, 30), day(2020, 10, 1)),
        ("the 2021-06-14 meeting", day(2021, 6, 14), day(2021, 6, 15)),
        ("what did I buy in October 2020", day(2020, 10, 1), day(2020, 11, 1)),
        ("plans for December, 2019", day(2019, 12, 1), day(2020, 1, 1)),
        ("trips in 2021", day(2021, 1, 1), day(2022, 1, 1)),
    ],
)
def test_explicit_dates_become_windows(query: str, start: datetime, end: datetime) -> None:
    windows = time_windows(query, now=NOW)
    assert [(w.start, w.end) for w in windows] == [(start, end)]


def test_a_precise_date_hides_the_year_inside_it() -> None:
    windows = time_windows("on 14 June 2021 and later in 2024", now=NOW)
    assert [(w.start, w.end) for w in windows] == [
        (day(2021, 6, 14), day(2021, 6, 15)),
        (day(2024, 1, 1), day(2025, 1, 1)),
    ]
    assert windows[0].text == "14 June 2021"


@pytest.mark.parametrize(
    "query",
    ["what may I eat", "how do I reset my password", "room 3030", "I march on", "the 1850s"],
)
def test_queries_without_a_time_have_no_window(query: str) -> None:
    assert time_windows(query, now=NOW) == []


@pytest.mark.parametrize(
    ("query", "start", "end"),
    [
        ("what did I say yesterday", day(2024, 3, 13), day(2024, 3, 14)),
        ("anything today?", day(2024, 3, 14), day(2024, 3, 15)),
        ("what did we plan last week", day(2024, 3, 4), day(2024, 3, 11)),
        ("this week", day(2024, 3, 11), day(2024, 3, 18)),
        ("last weekend", day(2024, 3, 9), day(2024, 3, 11)),
        ("the bill from last month", day(2024, 2, 1), day(2024, 3, 1)),
        ("goals for this year", day(2024, 1, 1), day(2025, 1, 1)),
        ("holidays last year", day(2023, 1, 1), day(2024, 1, 1)),
    ],
)
def test_relative_expressions_resolve_against_now(query: str, start: datetime, end: datetime) -> None:
    assert [(w.start, w.end) for w in time_windows(query, now=NOW)] == [(start, end)]


def test_ago_centres_a_window_on_the_distance() -> None:
    (window,) = time_windows("the restaurant from two weeks ago", now=NOW)
    assert window.start < NOW.replace(day=1) < window.end
    (days,) = time_windows("what I said 3 days ago", now=NOW)
    assert days.start <= datetime(2024, 3, 11, 15, 30, tzinfo=UTC) < days.end


def test_an_impossible_day_still_names_its_month() -> None:
    assert [(w.start, w.end) for w in time_windows("31 February 2023", now=NOW)] == [(day(2023, 2, 1), day(2023, 3, 1))]


def test_a_naive_now_is_read_as_utc_and_windows_test_membership() -> None:
    (window,) = time_windows("in June 2021", now=datetime(2024, 1, 1))
    assert datetime(2021, 6, 20, tzinfo=UTC) in window
    assert datetime(2021, 6, 20) in window  # naive: UTC
    assert datetime(2021, 7, 1, tzinfo=UTC) not in window
    assert "2021-06-20" not in window
    assert isinstance(window, TimeWindow)
