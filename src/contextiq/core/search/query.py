"""Query understanding for retrieval: the time windows a query names (time-aware query expansion).

A question like "what did we eat on 14 June, 2021?" or "what happened in October 2020?" names
a time; memories whose `event_time` falls in it are likelier answers (LongMemEval, Wu et al. 2024,
§5.4: time-aware query expansion, +7-11% recall on temporal questions). `time_windows` finds explicit
dates (day, month and year precision, in the usual English and ISO forms) and a few relative
expressions ("yesterday", "last week", "3 days ago"), resolved against `now`. A bare month name is
not read as a time ("may" is also a verb); a bare year only in 1900-2099.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["TimeWindow", "time_windows"]

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<{}>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<{}>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<{}>(?:19|20)\d\d)"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("iso", re.compile(r"\b(?P<y>(?:19|20)\d\d)-(?P<m>[01]\d)-(?P<d>[0-3]\d)\b")),
    # 14 June 2021, 14 June, 2021, 14th of June 2021
    (
        "dmy",
        re.compile(
            r"\b" + _DAY.format("d") + r"\s+(?:of\s+)?" + _MONTH.format("m") + r",?\s+" + _YEAR.format("y") + r"\b",
            re.I,
        ),
    ),
    # June 14, 2021, June 14th 2021
    (
        "mdy",
        re.compile(r"\b" + _MONTH.format("m") + r"\s+" + _DAY.format("d") + r",?\s+" + _YEAR.format("y") + r"\b", re.I),
    ),
    # June 2021, June, 2021
    ("my", re.compile(r"\b" + _MONTH.format("m") + r",?\s+" + _YEAR.format("y") + r"\b", re.I)),
    ("y", re.compile(r"\b" + _YEAR.format("y") + r"\b")),
)
_UNITS = {"day": 1, "week": 7, "month": 30, "year": 365}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "ten": 10}
_AGO = re.compile(r"\b(?P<n>\d{1,3}|a|an|one|two|three|four|five|six|ten)\s+(?P<u>day|week|month|year)s?\s+ago\b", re.I)
_RELATIVE = re.compile(r"\b(?P<w>yesterday|today|tonight|(?:last|this|past)\s+(?:week|month|year|weekend))\b", re.I)
# What every pattern above needs (a year's digits, "ago", or a relative word): most queries have none.
_MAY_NAME_A_TIME = re.compile(r"\d|ago|yesterday|today|tonight|week|month|year", re.I)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A span of time a query names: `start` inclusive, `end` exclusive, both aware UTC."""

    start: datetime
    end: datetime
    text: str

    def __contains__(self, when: object) -> bool:
        if not isinstance(when, datetime):
            return False
        moment = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        return self.start <= moment < self.end


def time_windows(query: str, *, now: datetime) -> list[TimeWindow]:
    """Return the time windows that `query` names, in order of appearance (none for most queries).

    A more precise match hides the less precise ones inside it ("14 June 2021" is one day, not also
    the year 2021). Relative expressions are resolved against `now` (calendar weeks start on Monday).
    """
    if _MAY_NAME_A_TIME.search(query) is None:
        return []
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    found: list[tuple[int, TimeWindow]] = []
    taken: list[tuple[int, int]] = []

    def free(match: re.Match[str]) -> bool:
        return all(match.end() <= a or match.start() >= b for a, b in taken)

    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(query):
            if not free(match):
                continue
            window = _absolute(kind, match)
            if window is not None:
                taken.append(match.span())
                found.append((match.start(), window))
    for match in _AGO.finditer(query):
        raw = match.group("n").lower()
        count = int(raw) if raw.isdigit() else _NUMBERS[raw]
        days = _UNITS[match.group("u").lower()]
        centre = now - timedelta(days=count * days)
        half = timedelta(days=max(days / 2, 1))
        found.append((match.start(), TimeWindow(centre - half, centre + half, match.group(0))))
    for match in _RELATIVE.finditer(query):
        found.append((match.start(), _relative(match.group("w").lower(), match.group(0), now)))
    return [w for _, w in sorted(found, key=lambda p: p[0])]


def _absolute(kind: str, match: re.Match[str]) -> TimeWindow | None:
    year = int(match.group("y"))
    text = match.group(0)
    try:
        if kind == "y":
            return TimeWindow(datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC), text)
        month_text = match.group("m")
        month = int(month_text) if month_text.isdigit() else _MONTHS[month_text.lower().rstrip(".")]
        if kind == "my":
            start = datetime(year, month, 1, tzinfo=UTC)
            return TimeWindow(start, _next_month(start), text)
        start = datetime(year, month, int(match.group("d")), tzinfo=UTC)
        return TimeWindow(start, start + timedelta(days=1), text)
    except ValueError:  # 31 February, month 13
        return None


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def _relative(words: str, text: str, now: datetime) -> TimeWindow:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    words = " ".join(words.split())
    if words == "yesterday":
        return TimeWindow(today - timedelta(days=1), today, text)
    if words in ("today", "tonight"):
        return TimeWindow(today, today + timedelta(days=1), text)
    which, unit = words.split(" ")
    if unit in ("week", "weekend"):
        monday = today - timedelta(days=today.weekday())
        if which == "past":
            return TimeWindow(today - timedelta(days=7), now, text)
        start = monday - timedelta(days=7) if which == "last" else monday
        if unit == "weekend":
            return TimeWindow(start + timedelta(days=5), start + timedelta(days=7), text)
        return TimeWindow(start, start + timedelta(days=7), text)
    if unit == "month":
        first = today.replace(day=1)
        if which == "past":
            return TimeWindow(today - timedelta(days=30), now, text)
        if which == "last":
            previous = (first - timedelta(days=1)).replace(day=1)
            return TimeWindow(previous, first, text)
        return TimeWindow(first, _next_month(first), text)
    jan = today.replace(month=1, day=1)
    if which == "past":
        return TimeWindow(today - timedelta(days=365), now, text)
    if which == "last":
        return TimeWindow(jan.replace(year=jan.year - 1), jan, text)
    return TimeWindow(jan, jan.replace(year=jan.year + 1), text)
