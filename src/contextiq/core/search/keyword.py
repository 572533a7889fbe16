"""Full-text (keyword) search over one text column, the same call on both dialects.

| dialect    | index                                                   | rank                                |
|------------|---------------------------------------------------------|-------------------------------------|
| PostgreSQL | GIN on `to_tsvector('english', col)`, pg_trgm GIN       | `ts_rank_cd`; trigram similarity    |
|            |                                                         | when the query has no lexeme        |
| SQLite     | FTS5 table `<table>_fts` (porter), synced by triggers   | `bm25()`                            |

Queries have OR semantics: a memory that shares some words with the query ranks, more shared (and
rarer) words rank higher. On PostgreSQL the query is parsed by `websearch_to_tsquery('english', q)`
(quoted phrases and `-word` work), then its ANDs are turned into ORs. The indexes are made by the
migrations from `sqlite_fts5_ddl` and `postgres_text_index_ddl`; `core/db/migrate.include_object`
leaves objects named `*_fts`, `*_fts_*` and `*_trgm` out of schema comparisons.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    bindparam,
    cast,
    column,
    func,
    literal_column,
    select,
    table,
)
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "STOPWORDS",
    "TextCollection",
    "bm25_scores",
    "keyword_search",
    "postgres_text_index_ddl",
    "query_terms",
    "sqlite_fts5_ddl",
    "sqlite_fts5_drop_ddl",
]

# Words too common to carry meaning in a memory query (a short English list; FTS5 has none).
STOPWORDS = frozenset(
    """a about am an and any are as at be been being but by can could did do does doing for from had has
    have having he her hers him his how i i'm if in into is it its itself just me my myself no nor not of
    on or our ours she so some such than that the their theirs them then there these they this those to
    too up very was we were what when where which while who whom why will with would you your yours""".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
TRIGRAM_THRESHOLD = 0.1


@dataclass(frozen=True, slots=True)
class TextCollection:
    """A table with a searchable text column: `fts_table` is its SQLite FTS5 companion (rowid-aligned)."""

    table: Table
    id_column: str
    text_column: str
    fts_table: str


def query_terms(query: str) -> list[str]:
    """Return the distinct lower-cased words of `query` that are not stop words, in order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        if word not in STOPWORDS:
            seen.setdefault(word, None)
    return list(seen)


async def keyword_search(
    session: AsyncSession,
    *,
    collection: TextCollection,
    query: str,
    where: Sequence[ColumnElement[bool]] = (),
    limit: int = 10,
) -> list[tuple[Any, float]]:
    """Return at most `limit` (id, score) pairs matching `query`, best first; higher scores are better."""
    if not query.strip() or limit <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return await _postgres(session, collection, query, where, limit)
    return await _sqlite(session, collection, query, where, limit)


async def _postgres(
    session: AsyncSession, c: TextCollection, query: str, where: Sequence[ColumnElement[bool]], limit: int
) -> list[tuple[Any, float]]:
    column = c.table.c[c.text_column]
    ident = c.table.c[c.id_column]
    english: ColumnElement[Any] = literal_column("'english'")
    # AND → OR; phrases (<->) and negations (!) of the websearch syntax are kept.
    parsed = func.websearch_to_tsquery(english, bindparam("keyword_query", query))
    tsquery = cast(func.replace(cast(parsed, Text), " & ", " | "), TSQUERY)
    if await session.scalar(select(func.numnode(parsed))):
        document = func.to_tsvector(english, column)
        rank = func.ts_rank_cd(document, tsquery)
        stmt = (
            select(ident, rank.label("score"))
            .where(document.op("@@")(tsquery), *where)
            .order_by(rank.desc(), ident)
            .limit(limit)
        )
    else:
        # Only stop words or symbols: fall back to trigram similarity (pg_trgm).
        similarity = func.similarity(column, bindparam("keyword_text", query))
        stmt = (
            select(ident, similarity.label("score"))
            .where(similarity > TRIGRAM_THRESHOLD, *where)
            .order_by(similarity.desc(), ident)
            .limit(limit)
        )
    return [(row[0], float(row[1])) for row in (await session.execute(stmt)).all()]


async def _sqlite(
    session: AsyncSession, c: TextCollection, query: str, where: Sequence[ColumnElement[bool]], limit: int
) -> list[tuple[Any, float]]:
    terms = query_terms(query) or _WORD.findall(query.lower())
    if not terms:
        return []
    match = " OR ".join('"' + term.replace('"', '""') + '"' for term in dict.fromkeys(terms))
    fts = table(c.fts_table, column("rowid"))
    ident = c.table.c[c.id_column]
    bm25: ColumnElement[float] = literal_column(f"bm25({c.fts_table})")  # lower is better; negated below
    stmt = (
        select(ident, (-bm25).label("score"))
        .select_from(c.table.join(fts, fts.c.rowid == literal_column(f"{c.table.name}.rowid")))
        .where(literal_column(c.fts_table).op("MATCH")(bindparam("keyword_match", match)), *where)
        .order_by(bm25, ident)
        .limit(limit)
    )
    return [(row[0], float(row[1])) for row in (await session.execute(stmt)).all()]


def bm25_scores(query: str, documents: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Return the Okapi BM25 score of each document for `query` (0 when no term matches).

    Used where no index applies: ranking a snapshot of the past (`as_of`) in memory.
    """
    terms = query_terms(query)
    if not terms or not documents:
        return [0.0] * len(documents)
    tokenized = [_WORD.findall(doc.lower()) for doc in documents]
    n = len(documents)
    average = sum(len(t) for t in tokenized) / n or 1.0
    frequency = Counter(term for tokens in tokenized for term in set(tokens))
    scores = []
    for tokens in tokenized:
        counts = Counter(tokens)
        score = 0.0
        for term in terms:
            tf = counts.get(term, 0)
            if not tf:
                continue
            idf = math.log(1 + (n - frequency[term] + 0.5) / (frequency[term] + 0.5))
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(tokens) / average))
        scores.append(score)
    return scores


def sqlite_fts5_ddl(*, table: str, column: str, fts_table: str) -> list[str]:
    """Return the statements that create an FTS5 index of `table.column`, kept in sync by triggers."""
    t, c, f = table, column, fts_table
    delete_old = f"INSERT INTO {f}({f}, rowid, {c}) VALUES ('delete', old.rowid, old.{c});"
    insert_new = f"INSERT INTO {f}(rowid, {c}) VALUES (new.rowid, new.{c});"
    return [
        f"CREATE VIRTUAL TABLE {f} USING fts5({c}, content='{t}', content_rowid='rowid', "
        "tokenize='porter unicode61')",
        f"CREATE TRIGGER {f}_ai AFTER INSERT ON {t} BEGIN {insert_new} END",
        f"CREATE TRIGGER {f}_ad AFTER DELETE ON {t} BEGIN {delete_old} END",
        f"CREATE TRIGGER {f}_au AFTER UPDATE OF {c} ON {t} BEGIN {delete_old} {insert_new} END",
        f"INSERT INTO {f}({f}) VALUES ('rebuild')",
    ]


def sqlite_fts5_drop_ddl(*, fts_table: str) -> list[str]:
    """Return the statements that drop what `sqlite_fts5_ddl` made."""
    return [f"DROP TRIGGER IF EXISTS {fts_table}_{suffix}" for suffix in ("ai", "ad", "au")] + [
        f"DROP TABLE IF EXISTS {fts_table}"
    ]


def postgres_text_index_ddl(*, table: str, column: str, name: str) -> list[str]:
    """Return the statements that create the full-text (`<name>_fts`) and trigram (`<name>_trgm`) indexes."""
    return [
        f"CREATE INDEX {name}_fts ON {table} USING GIN (to_tsvector('english', {column}))",
        f"CREATE INDEX {name}_trgm ON {table} USING GIN ({column} gin_trgm_ops)",
    ]
