"""Full-text (keyword) search over one text column, the same call on both dialects.

| dialect    | index                                                   | rank                                |
|------------|---------------------------------------------------------|-------------------------------------|
| PostgreSQL | GIN on `to_tsvector('english', col)`, pg_trgm GIN       | Okapi BM25 over the scope (SQL);    |
|            |                                                         | trigram similarity without a lexeme |
| SQLite     | FTS5 table `<table>_fts` (porter), synced by triggers   | `bm25()`                            |

Queries have OR semantics: a memory that shares some words with the query ranks, more shared (and
rarer) words rank higher (Okapi BM25 on both). Both dialects read web-search syntax
(`parse_web_query`): `"quoted words"` must appear as a phrase and `-word` excludes; the query
becomes `to_tsquery('english', …)` input on PostgreSQL (`tsquery_text`) and an FTS5 MATCH
expression on SQLite (`fts5_match`). The indexes are made by the
migrations from `sqlite_fts5_ddl` and `postgres_text_index_ddl`; `core/db/migrate.include_object`
leaves objects named `*_fts`, `*_fts_*` and `*_trgm` out of schema comparisons.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Float,
    Table,
    bindparam,
    cast,
    column,
    func,
    literal_column,
    select,
    table,
    true,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "MEMORY_TS_CONFIG",
    "STOPWORDS",
    "STOPWORD_PATTERN",
    "STOP_PLACEHOLDER",
    "TextCollection",
    "fts5_match",
    "keyword_search",
    "memory_tsvector_sql",
    "parse_web_query",
    "postgres_text_index_ddl",
    "query_terms",
    "sqlite_fts5_ddl",
    "sqlite_fts5_drop_ddl",
    "sqlite_fts5_partitioned_ddl",
    "tsquery_text",
    "word_regex",
]

# Words too common to carry meaning in a memory query (a short English list; FTS5 has none).
STOPWORDS = frozenset(
    """a about am an and any are as at be been being but by can could did do does doing for from had has
    have having he her hers him his how i i'm if in into is it its itself just me my myself no nor not of
    on or our ours she so some such than that the their theirs them then there these they this those to
    too up very was we were what when where which while who whom why will with would you your yours""".split()
)
WORD = re.compile(r"\w+", re.UNICODE)  # a word, for every analysis of text in core/search
TRIGRAM_THRESHOLD = 0.1
#: Okapi BM25 parameters (the usual ones, and FTS5's).
BM25_K1 = 1.2
BM25_B = 0.75
#: Matching rows that BM25 scores on PostgreSQL (the best by `ts_rank_cd` when more match).
BM25_MATCH_CAP = 2000
#: PostgreSQL's text search configuration for memories (migration 0008): `english`'s parser and
#: Snowball stems without `english`'s stop list and without whole hyphenated compounds (their parts
#: are indexed), so that with `STOP_STEMS` deleted it analyses text as `core/search/terms.py` does.
MEMORY_TS_CONFIG = "contextiq_english"
#: What `STOPWORDS` become in memories' text before PostgreSQL parses it (`memory_tsvector_sql`):
#: one word that no text holds and the Snowball stemmer leaves as it is.
STOP_PLACEHOLDER = "ciqstopword"


_Trie = dict[str, "_Trie"]


def word_regex(words: Sequence[str]) -> str:
    """A regular expression matching exactly `words`, as a trie (`a(nd?)?`, not `a|an|and`):
    PostgreSQL's regex engine runs it ~3x faster than the flat alternation (15 against 48 µs per
    short fact). Words are word characters only; plain groups only (a `(?:` would read as a `:name` parameter)."""
    tree: _Trie = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def pattern(node: _Trie) -> str:
        branches = [char + pattern(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = "(" + "|".join(branches) + ")" if len(branches) > 1 else branches[0]
        if "" in node:  # what follows is optional
            body = (body if len(body) == 1 or len(branches) > 1 else "(" + body + ")") + "?"
        return body

    return pattern(tree)


#: `STOPWORDS` (those that are one `\w+` word: the parsers split `i'm`) as a PostgreSQL regular
#: expression of whole words. Migration 0008 holds a copy in `fact_fts`'s expression: a change here
#: needs a migration (a test compares them).
STOPWORD_PATTERN = r"\m" + word_regex(sorted(w for w in STOPWORDS if WORD.fullmatch(w))) + r"\M"


def memory_tsvector_sql(text: str) -> str:
    """SQL of the tsvector that memories' `fact_fts` holds (migration 0008), for the SQL text
    expression `text`: our stop words, matched as whole words in any case, are replaced by
    `STOP_PLACEHOLDER` before parsing, so they keep their positions (phrases) and a word that only
    stems like one (`canned`, `Doe`) stays, then the placeholder is deleted. This is the analysis of
    `core/search/terms.py` (stop words dropped before Snowball stemming)."""
    return (
        f"ts_delete(to_tsvector('{MEMORY_TS_CONFIG}', regexp_replace({text}, '{STOPWORD_PATTERN}', "
        f"'{STOP_PLACEHOLDER}', 'gi')), '{STOP_PLACEHOLDER}'::text)"
    )




@dataclass(frozen=True, slots=True)
class TextCollection:
    """A table with a searchable text column.

    `fts_table` is its SQLite FTS5 companion (rowid-aligned); `tsvector_column` a stored
    `to_tsvector(ts_config, text)` column on PostgreSQL, made by a migration and not in the table's
    metadata (None: the tsvector is computed at query time). `drops_stopwords`: the stored tsvector
    is `memory_tsvector_sql`'s, without `STOPWORDS` although `ts_config` keeps them; queries drop
    them too.
    """

    table: Table
    id_column: str
    text_column: str
    fts_table: str
    tsvector_column: str | None = None
    fts_partition: tuple[str, ...] = ()
    ts_config: str = "english"
    drops_stopwords: bool = False

    @property
    def query_stopwords(self) -> frozenset[str]:
        """The words `tsquery_text` must drop from a query for this collection."""
        return STOPWORDS if self.drops_stopwords else frozenset()

    def partition_token(self, values: Mapping[str, Any]) -> str:
        """The single FTS5 token that stands for a partition (`sqlite_fts5_partitioned_ddl`).

        `s` + the hex of the partition columns' text, concatenated: what the triggers write with
        SQLite's `hex()` (upper case; the tokenizer folds case). UUIDs are their 32-digit hex text.
        """
        text = "".join(v.hex if isinstance(v, UUID) else str(v) for v in (values[k] for k in self.fts_partition))
        return "s" + text.encode("utf-8").hex()

    def tsvector(self) -> ColumnElement[Any]:
        """The rows' tsvector on PostgreSQL: the stored column, or the expression it stores."""
        if self.tsvector_column is not None:
            return literal_column(f"{self.table.name}.{self.tsvector_column}", type_=TSVECTOR)
        if self.drops_stopwords:
            column = f"{self.table.name}.{self.text_column}"
            return literal_column(memory_tsvector_sql(column), type_=TSVECTOR)
        return func.to_tsvector(literal_column(f"'{self.ts_config}'"), self.table.c[self.text_column])

    def query_lexemes(self, query: ColumnElement[Any]) -> ColumnElement[Any]:
        """The lexemes of `query` (a text expression) as the stored tsvectors hold them: a text array."""
        config: ColumnElement[Any] = literal_column(f"'{self.ts_config}'")
        if not self.drops_stopwords:
            return func.tsvector_to_array(func.to_tsvector(config, query))
        text = func.regexp_replace(query, literal_column(f"'{STOPWORD_PATTERN}'"), STOP_PLACEHOLDER, "gi")
        return func.tsvector_to_array(func.ts_delete(func.to_tsvector(config, text), STOP_PLACEHOLDER))


def query_terms(query: str) -> list[str]:
    """Return the distinct lower-cased words of `query` that are not stop words, in order."""
    seen: dict[str, None] = {}
    for word in WORD.findall(query.lower()):
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
    partition: Mapping[str, Any] | None = None,
) -> list[tuple[Any, float]]:
    """Return at most `limit` (id, score) pairs matching `query`, best first; higher scores are better.

    `partition` (the values of `collection.fts_partition`, which `where` must also require) lets
    SQLite's FTS5 look only at that partition's rows instead of every matching row of the table.
    """
    if not query.strip() or limit <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return await _postgres(session, collection, query, where, limit)
    return await _sqlite(session, collection, query, where, limit, partition)


async def _postgres(
    session: AsyncSession, c: TextCollection, query: str, where: Sequence[ColumnElement[bool]], limit: int
) -> list[tuple[Any, float]]:
    column = c.table.c[c.text_column]
    ident = c.table.c[c.id_column]
    config: ColumnElement[Any] = literal_column(f"'{c.ts_config}'")
    text = tsquery_text(query, stop_words=c.query_stopwords)
    if text is None and not (c.drops_stopwords and parse_web_query(query)[0]):
        return []  # no word at all (a query of only stop words falls back to trigrams below)
    if text is not None:
        # A scalar subquery: parsed once per statement, not once per row.
        tsquery = select(func.to_tsquery(config, bindparam("keyword_query", text))).scalar_subquery()
        found = await _postgres_bm25(session, c, query, tsquery, where, limit)
        if found or await session.scalar(select(func.numnode(tsquery))):
            return found
    # Only stop words or symbols (the query has no lexeme): trigram similarity (pg_trgm).
    similarity = func.similarity(column, bindparam("keyword_text", query))
    stmt = (
        select(ident, similarity.label("score"))
        .where(similarity > TRIGRAM_THRESHOLD, *where)
        .order_by(similarity.desc(), ident)
        .limit(limit)
    )
    return [(row[0], float(row[1])) for row in (await session.execute(stmt)).all()]


async def _postgres_bm25(
    session: AsyncSession,
    c: TextCollection,
    query: str,
    tsquery: ColumnElement[Any],
    where: Sequence[ColumnElement[bool]],
    limit: int,
) -> list[tuple[Any, float]]:
    """Okapi BM25 in one statement, the statistics taken from the rows that `where` selects.

    `ts_rank_cd` knows no document frequencies, so a common word counts as much as a rare one. Here
    the matching rows (at most `BM25_MATCH_CAP`, best `ts_rank_cd` first) are unnested into postings
    (lexeme, term frequency, document length in lexemes); a term's document frequency is its number
    of postings (with OR semantics every row holding a query term matches), N is the number of rows
    `where` selects and the average length is taken over the matching rows.
    """
    ident = c.table.c[c.id_column]
    document = c.tsvector()
    matched = (
        select(ident.label("id"), document.label("doc"))
        .where(document.op("@@")(tsquery), *where)
        .order_by(func.ts_rank_cd(document, tsquery).desc())
        .limit(BM25_MATCH_CAP)
        .cte("matched")
    )
    unnested = func.unnest(matched.c.doc).table_valued("lexeme", "positions", "weights").lateral("u")
    lexemes = select(func.unnest(c.query_lexemes(bindparam("keyword_text", query))))
    postings = (
        select(
            matched.c.id,
            unnested.c.lexeme,
            cast(func.cardinality(unnested.c.positions), Float).label("tf"),
            cast(func.length(matched.c.doc), Float).label("dl"),
        )
        .select_from(matched.join(unnested, true()))
        .where(unnested.c.lexeme.in_(lexemes))
        .cte("postings")
    )
    frequency = (
        select(postings.c.lexeme, cast(func.count(), Float).label("df")).group_by(postings.c.lexeme).cte("df")
    )
    total = select(cast(func.count(), Float)).select_from(c.table).where(*where).scalar_subquery()
    average = select(func.greatest(func.avg(cast(func.length(matched.c.doc), Float)), 1.0)).scalar_subquery()
    idf = func.ln(1 + (func.greatest(total, frequency.c.df) - frequency.c.df + 0.5) / (frequency.c.df + 0.5))
    tf = postings.c.tf
    saturation = tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * postings.c.dl / average))
    score = func.sum(idf * saturation)
    stmt = (
        select(postings.c.id, score.label("score"))
        .select_from(postings.join(frequency, frequency.c.lexeme == postings.c.lexeme))
        .group_by(postings.c.id)
        .order_by(score.desc(), postings.c.id)
        .limit(limit)
    )
    return [(row[0], float(row[1])) for row in (await session.execute(stmt)).all()]


async def _sqlite(
    session: AsyncSession,
    c: TextCollection,
    query: str,
    where: Sequence[ColumnElement[bool]],
    limit: int,
    partition: Mapping[str, Any] | None,
) -> list[tuple[Any, float]]:
    match = fts5_match(query)
    if match is None:
        return []
    fts = table(c.fts_table, column("rowid"))
    ident = c.table.c[c.id_column]
    bm25: ColumnElement[float] = literal_column(f"bm25({c.fts_table})")  # lower is better; negated below
    if c.fts_partition:
        # The words count in the text column only; the partition column is a filter.
        bm25 = literal_column(f"bm25({c.fts_table}, 1.0, 0.0)")
        match = f"{c.text_column} : ({match})"
        if partition is not None:
            match = f'part : "{c.partition_token(partition)}" AND {match}'

    stmt = (
        select(ident, (-bm25).label("score"))
        .select_from(c.table.join(fts, fts.c.rowid == literal_column(f"{c.table.name}.rowid")))
        .where(literal_column(c.fts_table).op("MATCH")(bindparam("keyword_match", match)), *where)
        .order_by(bm25, ident)
        .limit(limit)
    )
    return [(row[0], float(row[1])) for row in (await session.execute(stmt)).all()]


_QUERY_PART = re.compile(r'(-?)"([^"]*)"|(-?)([^\s"]+)')


def parse_web_query(query: str) -> tuple[list[list[str]], list[list[str]]]:
    """Split a web-search style query into wanted and unwanted word groups (lower-cased `\\w+` words).

    Words are groups of one (`user's` is two); `"quoted words"` one group (a phrase); a leading `-`
    makes a word or phrase unwanted (`-user's`: both words). An unclosed quote is ignored.
    """
    wanted: list[list[str]] = []
    unwanted: list[list[str]] = []
    for match in _QUERY_PART.finditer(query):
        negated = bool(match.group(1) or match.group(3))
        text = match.group(2) if match.group(2) is not None else match.group(4)
        words = WORD.findall(text.lower())
        groups = [words] if match.group(2) is not None else [[w] for w in words]
        (unwanted if negated else wanted).extend(g for g in groups if g)
    return wanted, unwanted


def fts5_match(query: str) -> str | None:
    """Translate a web-search style query into an FTS5 MATCH expression (None: nothing to match).

    Wanted words and phrases are ORed, unwanted ones excluded (`parse_web_query`). Stop words are
    dropped unless the query has nothing else.
    """
    wanted, unwanted = parse_web_query(query)
    phrases = [w for w in wanted if len(w) > 1]
    singles = [w[0] for w in wanted if len(w) == 1]
    useful = [w for w in singles if w not in STOPWORDS] or ([] if phrases else singles)
    terms = [[w] for w in dict.fromkeys(useful)] + phrases
    if not terms:
        return None

    def quoted(words: list[str]) -> str:
        return '"' + " ".join(words) + '"'  # \\w+ words hold no double quote

    expression = " OR ".join(quoted(t) for t in terms)
    if unwanted:
        expression = f"({expression}) NOT ({' OR '.join(quoted(t) for t in unwanted)})"
    return expression


def tsquery_text(query: str, *, stop_words: frozenset[str] = frozenset()) -> str | None:
    """Translate a web-search style query into `to_tsquery` input (None: nothing to match).

    Wanted words and phrases (`<->`) are ORed, unwanted ones ANDed out: `(a | b | c <-> d) & !(e)`.
    `to_tsquery` stems the words (and drops its configuration's stop words). Words of `stop_words`
    are dropped here, for a configuration that keeps them: a phrase keeps their places
    (`'bread' <2> 'butter'`), and a group of only stop words goes.
    """
    wanted, unwanted = parse_web_query(query)

    def group(words: list[str]) -> str | None:
        parts: list[str] = []
        distance = 0
        for word in words:
            distance += 1
            if word in stop_words:
                continue
            if parts:
                parts.append("<->" if distance == 1 else f"<{distance}>")
            parts.append(f"'{word}'")
            distance = 0
        if not parts:
            return None
        return f"({' '.join(parts)})" if len(parts) > 1 else parts[0]

    wanted_text = [g for g in map(group, wanted) if g is not None]
    if not wanted_text:
        return None
    text = " | ".join(wanted_text)
    unwanted_text = [g for g in map(group, unwanted) if g is not None]
    if unwanted_text:
        text = f"({text}) & !({' | '.join(unwanted_text)})"
    return text


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


def sqlite_fts5_partitioned_ddl(*, table: str, column: str, fts_table: str, partition: Sequence[str]) -> list[str]:
    """Return the statements that create a contentless FTS5 index of `table.column` with a partition token.

    The second FTS5 column, `part`, holds one token per row: `s` + `hex()` of the `partition`
    columns' text (`TextCollection.partition_token`), so `part : "s…" AND …` finds the words in one
    partition without visiting the others' rows. Contentless (`content=''`): the triggers hand FTS5
    the values, including on delete. Existing rows are indexed at the end.
    """
    t, c, f = table, column, fts_table

    def token(row: str) -> str:
        return "'s' || hex(" + " || ".join(f"{row}.{p}" for p in partition) + ")"

    delete_old = f"INSERT INTO {f}({f}, rowid, {c}, part) VALUES ('delete', old.rowid, old.{c}, {token('old')});"
    insert_new = f"INSERT INTO {f}(rowid, {c}, part) VALUES (new.rowid, new.{c}, {token('new')});"
    watched = ", ".join([c, *partition])
    return [
        f"CREATE VIRTUAL TABLE {f} USING fts5({c}, part, content='', tokenize='porter unicode61')",
        f"CREATE TRIGGER {f}_ai AFTER INSERT ON {t} BEGIN {insert_new} END",
        f"CREATE TRIGGER {f}_ad AFTER DELETE ON {t} BEGIN {delete_old} END",
        f"CREATE TRIGGER {f}_au AFTER UPDATE OF {watched} ON {t} BEGIN {delete_old} {insert_new} END",
        f"INSERT INTO {f}(rowid, {c}, part) SELECT rowid, {c}, {token(t)} FROM {t}",
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
