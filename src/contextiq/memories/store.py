"""Queries over memory banks, memories and revisions. Takes an AsyncSession; returns rows or None.

Dialect differences (vector ranking, full text) are in `core/search`; this module only composes
conditions. A memory is *live* at `now` when it is not deleted and not expired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import numpy as np
from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from contextiq.core.db.helpers import insert_ignore
from contextiq.core.db.plain import PlainStatement, driver_connection
from contextiq.core.search.base import Hit, SqlVectorIndex, VectorFilter
from contextiq.core.search.keyword import (
    BM25_B,
    BM25_K1,
    BM25_MATCH_CAP,
    MEMORY_TS_CONFIG,
    TextCollection,
    keyword_search,
    memory_tsvector_sql,
    tsquery_text,
)
from contextiq.core.search.rerank import from_micros
from contextiq.core.types import JSON
from contextiq.memories.tables import FTS_TABLE, MemoryBankRow, MemoryRevisionRow, MemoryRow


@dataclass(frozen=True, slots=True)
class ScanFilters:
    """The optional filters of a scope scan (all None: every live memory)."""

    topics: Sequence[str] | None = None
    min_confidence: float | None = None
    event_time_after: datetime | None = None
    event_time_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScopeRead:
    """What a plain retrieval statement reads (`PgRetrieval`): the memories of one scope live at
    `now` that pass `filters`."""

    tenant_id: UUID
    bank_id: UUID
    scope_key: str
    now: datetime
    filters: ScanFilters = ScanFilters()

    def params(self) -> dict[str, Any]:
        """The parameters of `_SCOPE_FILTERS`."""
        f = self.filters
        return {
            "tenant_id": self.tenant_id, "bank_id": self.bank_id, "scope_key": self.scope_key, "now": self.now,
            "topics": list(f.topics) if f.topics else None, "min_confidence": f.min_confidence,
            "after": f.event_time_after, "before": f.event_time_before,
        }


class ScopeText(NamedTuple):
    """One memory of a SQLite scope read: what hybrid ranking needs, the text only when asked."""

    id: UUID
    time: datetime
    embedding: np.ndarray | None
    embedding_model: str | None
    fact: str | None


@dataclass(frozen=True, slots=True)
class ScopeScan:
    """A scope read whole for a hybrid query (`PgRetrieval.scope_scan`): per memory, in time order,
    its id, time (`micros`: integer microseconds since the epoch), BM25 score (`keyword`; NaN: no
    match) and either its vector of the query's model in pgvector's binary form (`vectors`; None:
    none of that model) or, when the scan was given the query's vector, its cosine to it computed
    by PostgreSQL (`cosines`; NaN: nothing to compare)."""

    ids: list[UUID]
    micros: np.ndarray  # int64
    vectors: list[bytes | None] | None
    keyword: np.ndarray  # float64
    has_words: bool  # False: the query has only stop words or symbols
    cosines: np.ndarray | None = None

    @property
    def times(self) -> list[datetime]:
        """Each memory's time, aware in UTC."""
        return [from_micros(us) for us in self.micros.tolist()]

    def similarity(self, vector: np.ndarray) -> np.ndarray:
        """Each memory's cosine similarity to `vector` (float64), as pgvector's `1 - (a <=> b)`
        computes it (NaN: no vector of the model, another dimension, or a zero vector); the
        cosines PostgreSQL computed when the scan was given `vector`."""
        if self.cosines is not None:
            return self.cosines
        assert self.vectors is not None, "a scan without the query's vector reads the vectors"
        return cosines(self.vectors, vector)


def cosines(blobs: Sequence[bytes | None], vector: np.ndarray) -> np.ndarray:
    """The cosine similarity (float64) of `vector` with each vector of `blobs`, pgvector's binary
    form (`vector_send`: int16 dimension, int16 unused, then big-endian float4s); NaN where a blob is
    missing, of another dimension or a zero vector, and everywhere for a zero `vector`."""
    query = np.asarray(vector, dtype=np.float64).ravel()
    size = 4 + 4 * len(query)
    usable = [i for i, b in enumerate(blobs) if b is not None and len(b) == size]
    out = np.full(len(blobs), np.nan)
    query_norm = float(np.linalg.norm(query))
    if not usable or query_norm == 0.0:
        return out
    # The 4-byte header is one float4 slot: every row is (header, values...).
    rows = np.frombuffer(b"".join([blobs[i] for i in usable]), dtype=">f4")  # type: ignore[misc]
    matrix = rows.reshape(len(usable), len(query) + 1)[:, 1:].astype(np.float64)
    norms = np.linalg.norm(matrix, axis=1)
    dots = matrix @ query
    with np.errstate(divide="ignore", invalid="ignore"):
        out[usable] = np.where(norms > 0.0, dots / (norms * query_norm), np.nan)
    return out


# The scope and the retrieve filters, as the plain statements below take them (`ScopeRead.params`).
_SCOPE_FILTERS = """m.tenant_id = :tenant_id AND m.bank_id = :bank_id AND m.scope_key = :scope_key
      AND NOT m.is_deleted AND (m.expires_at IS NULL OR m.expires_at > :now)
      AND (CAST(:topics AS text[]) IS NULL OR m.topic = ANY(CAST(:topics AS text[])))
      AND (CAST(:min_confidence AS float8) IS NULL OR m.confidence >= CAST(:min_confidence AS float8))
      AND (CAST(:after AS timestamptz) IS NULL OR m.event_time >= CAST(:after AS timestamptz))
      AND (CAST(:before AS timestamptz) IS NULL OR m.event_time < CAST(:before AS timestamptz))"""

# The query's lexemes as memories' `fact_fts` holds them (migration 0008): our stop words dropped,
# the rest stemmed by `MEMORY_TS_CONFIG`.
_QUERY_LEXEMES = f"tsvector_to_array({memory_tsvector_sql(':query_text')})"

# Okapi BM25 over the rows of a `matched` CTE (id, doc tsvector), given a `q` CTE (query, lexemes),
# the corpus size `{n}` and the CTE whose documents give the average length `{corpus}`: the same
# formula as core/search/keyword.py. Yields `kw` (id, score).
_BM25_CTES = """
postings AS (
    SELECT mt.id, u.lexeme, cardinality(u.positions)::float8 AS tf, length(mt.doc)::float8 AS dl
    FROM matched mt CROSS JOIN q, unnest(mt.doc) u
    WHERE u.lexeme = ANY(q.lexemes)
),
df AS (SELECT lexeme, count(*)::float8 AS df FROM postings GROUP BY lexeme),
stats AS (SELECT ({n})::float8 AS n, GREATEST((SELECT avg(length(doc)) FROM {corpus}), 1)::float8 AS avgdl,
                  CAST(:k1 AS float8) AS k1, CAST(:b AS float8) AS b),
kw AS (
    SELECT p.id,
           sum(ln(1 + (GREATEST(st.n, d.df) - d.df + 0.5) / (d.df + 0.5))
               * p.tf * (st.k1 + 1) / (p.tf + st.k1 * (1 - st.b + st.b * p.dl / st.avgdl))) AS score
    FROM postings p JOIN df d USING (lexeme) CROSS JOIN stats st
    GROUP BY p.id
)"""



def _scope_scan_sql(vector_column: str) -> str:
    """The scope scan with `vector_column` as its third output column (`vec`). Times leave as
    integer microseconds and a missing score as NaN, which the client turns into arrays at once."""
    return f"""
WITH scope AS MATERIALIZED (
    SELECT m.id, COALESCE(m.event_time, m.created_at) AS t, m.created_at AS c, m.fact_fts AS doc,
           {vector_column} AS vec
    FROM memories m
    WHERE {_SCOPE_FILTERS}
    ORDER BY t, c, m.id
    LIMIT :cap
),
q AS MATERIALIZED (  -- the query, parsed once (not once per row)
    SELECT CASE WHEN :has_words THEN to_tsquery('{MEMORY_TS_CONFIG}', :tsquery) END AS query,
           {_QUERY_LEXEMES} AS lexemes
),
matched AS (
    SELECT s.id, s.doc FROM scope s, q WHERE s.doc @@ q.query
),{_BM25_CTES.format(n="SELECT count(*) FROM scope", corpus="scope")}
SELECT s.id, (extract(epoch FROM s.t) * 1000000)::int8 AS us, s.vec,
       COALESCE(kw.score, 'NaN'::float8) AS score, COALESCE(numnode(q.query), 0) AS nodes
FROM scope s CROSS JOIN q LEFT JOIN kw ON kw.id = s.id ORDER BY s.t, s.c, s.id
"""


# One round trip for a hybrid query on a small scope: the scope's live memories in time order (the
# timeline), each with its Okapi BM25 score (statistics over the scope; the same formula as
# core/search/keyword.py) and its vector of the query's model (pgvector's binary form). This form
# does not need the query's vector, so it runs while the query is being embedded; the cosines are
# then computed in numpy (`ScopeScan.similarity`). Run on the driver connection (core/db/plain.py),
# so asyncpg reuses its prepared statement and no query is built per call.
PG_SCOPE_SCAN = PlainStatement(
    _scope_scan_sql("CASE WHEN m.embedding_model = :model THEN vector_send(m.embedding) END")
)

# The same scan given the query's vector: PostgreSQL computes each cosine (NaN: a zero vector), so
# that 8 bytes per memory travel instead of its vector. It costs less CPU on both sides (the server
# sends no vectors, the client decodes none) but waits for the embedding: `MemoryService` uses it
# while other retrievals keep the CPUs busy, the form above when a query is alone.
PG_SCOPE_SCAN_COSINE = PlainStatement(
    _scope_scan_sql(
        "COALESCE(CASE WHEN m.embedding_model = :model AND vector_dims(m.embedding) = :dims"
        " THEN 1 - (m.embedding <=> CAST(CAST(:vector AS real[]) AS vector)) END, 'NaN'::float8)"
    )
)

_MEMORY_COLUMNS = (
    "id", "bank_id", "scope", "fact", "topic", "confidence", "source_session_id", "source_type",
    "metadata", "event_time", "created_at", "updated_at", "expires_at", "revision_count", "revision",
    "is_deleted", "embedding_model", "valid_from", "valid_to",
)

_MEMORY_SELECT = ", ".join("m." + c for c in _MEMORY_COLUMNS)

# A retrieval's memories by id (PostgreSQL).
PG_BY_IDS = PlainStatement(
    f"SELECT {_MEMORY_SELECT} FROM memories m "
    "WHERE m.tenant_id = :tenant_id AND m.id = ANY(CAST(:ids AS uuid[]))"
)

# The `similarity` mode on PostgreSQL in one round trip: the scope's nearest memories, whole.
PG_SIMILAR = PlainStatement(
    f"""
SELECT {_MEMORY_SELECT}, 1 - (m.embedding <=> CAST(CAST(:vector AS real[]) AS vector)) AS score
FROM memories m
WHERE {_SCOPE_FILTERS}
  AND m.embedding IS NOT NULL AND m.embedding_model = :model AND vector_dims(m.embedding) = :dims
ORDER BY m.embedding <=> CAST(CAST(:vector AS real[]) AS vector), m.id
LIMIT :limit
"""
)

# The `keyword` mode on PostgreSQL in one round trip: BM25 over the scope (as core/search/keyword.py
# computes it), the best memories whole. The scope-led GIN index finds the matching rows.
PG_KEYWORD = PlainStatement(
    f"""
WITH q AS MATERIALIZED (
    SELECT to_tsquery('{MEMORY_TS_CONFIG}', :tsquery) AS query,
           {_QUERY_LEXEMES} AS lexemes
),
matched AS MATERIALIZED (
    SELECT m.id, m.fact_fts AS doc FROM memories m, q
    WHERE {_SCOPE_FILTERS} AND m.fact_fts @@ q.query
    ORDER BY ts_rank_cd(m.fact_fts, q.query) DESC
    LIMIT :cap
),{_BM25_CTES.format(n="SELECT count(*) FROM memories m WHERE " + _SCOPE_FILTERS, corpus="matched")},
best AS (SELECT id, score FROM kw ORDER BY score DESC, id LIMIT :limit)
SELECT {_MEMORY_SELECT}, best.score
FROM best JOIN memories m ON m.id = best.id
ORDER BY best.score DESC, m.id
"""
)

class PgRetrieval:
    """The retrieval reads of PostgreSQL as plain statements on the asyncpg connection `conn`
    (core/db/plain.py): no SQLAlchemy execution on the hottest path. Rows are asyncpg records."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def scope_scan(
        self, scope: ScopeRead, *, model: str, query: str, cap: int, vector: np.ndarray | None = None
    ) -> ScopeScan | None:
        """Read a whole scope for a hybrid query in one statement (PostgreSQL): `PG_SCOPE_SCAN`, or
        `PG_SCOPE_SCAN_COSINE` given the query's `vector`.

        Returns every memory `scope` reads, in time order, with its BM25 score for `query` (None
        when it matches no word) and its vector of `model` (None without one) or, given `vector`,
        its cosine to it, and whether the query has a lexeme (False: only stop words or symbols);
        None when more than `cap` memories match.
        """
        text_query = tsquery_text(query, stop_words=MEMORY_TEXT.query_stopwords)
        params = {
            **scope.params(),
            "model": model,
            "tsquery": text_query or "",
            "has_words": text_query is not None,
            "query_text": query,
            "cap": cap + 1,
            "k1": BM25_K1,
            "b": BM25_B,
        }
        if vector is None:
            rows = await PG_SCOPE_SCAN.fetch(self._conn, params)
        else:
            query_vector = np.asarray(vector, dtype=np.float32).ravel()
            params.update(dims=len(query_vector), vector=query_vector.tolist())
            rows = await PG_SCOPE_SCAN_COSINE.fetch(self._conn, params)
        if len(rows) > cap:
            return None
        column = [r[2] for r in rows]
        return ScopeScan(
            ids=[r[0] for r in rows],
            micros=np.array([r[1] for r in rows], dtype=np.int64),
            vectors=column if vector is None else None,
            keyword=np.array([r[3] for r in rows], dtype=np.float64),
            has_words=bool(rows and rows[0][4]),
            cosines=None if vector is None else np.array(column, dtype=np.float64),
        )

    async def similar_rows(self, scope: ScopeRead, *, vector: np.ndarray, model: str, limit: int) -> list[Any]:
        """Return the `limit` memories of `scope` nearest to `vector` with their cosine `score`
        (PostgreSQL, one statement: `PG_SIMILAR`); rows have the memory's column names."""
        params = {
            **scope.params(),
            "model": model, "dims": len(vector), "vector": np.asarray(vector, dtype=np.float32).tolist(),
            "limit": limit,
        }
        return await PG_SIMILAR.fetch(self._conn, params)

    async def keyword_rows(self, scope: ScopeRead, *, query: str, limit: int) -> list[Any] | None:
        """Return the `limit` memories of `scope` best matching `query` by BM25, whole, with their
        `score` (PostgreSQL, one statement: `PG_KEYWORD`); None when the query has no word at all."""
        text_query = tsquery_text(query, stop_words=MEMORY_TEXT.query_stopwords)
        if text_query is None:
            return None
        params = {
            **scope.params(),
            "tsquery": text_query, "query_text": query, "cap": BM25_MATCH_CAP, "k1": BM25_K1, "b": BM25_B,
            "limit": limit,
        }
        return await PG_KEYWORD.fetch(self._conn, params)

    async def columns_by_ids(self, *, tenant_id: UUID, ids: Sequence[UUID]) -> list[Any]:
        """Return the tenant's memories among `ids` as plain column rows (PostgreSQL: `PG_BY_IDS`)."""
        if not ids:
            return []
        return await PG_BY_IDS.fetch(self._conn, {"tenant_id": tenant_id, "ids": list(ids)})


MEMORY_TEXT = TextCollection(
    table=MemoryRow.__table__,  # type: ignore[arg-type]
    id_column="id",
    text_column="fact",
    fts_table=FTS_TABLE,
    tsvector_column="fact_fts",  # migrations 0006, 0008
    fts_partition=("tenant_id", "bank_id", "scope_key"),  # migration 0007
    ts_config=MEMORY_TS_CONFIG,  # migration 0008
    drops_stopwords=True,  # memory_tsvector_sql
)
VECTOR_COLLECTION = "memories"


def live(now: datetime) -> ColumnElement[bool]:
    """Return the condition of memories that are neither deleted nor expired at `now`."""
    return and_(MemoryRow.is_deleted.is_(False), or_(MemoryRow.expires_at.is_(None), MemoryRow.expires_at > now))


def in_scope(*, tenant_id: UUID, bank_id: UUID, scope_key: str) -> list[ColumnElement[bool]]:
    """Return the exact-scope conditions (served by the (tenant_id, bank_id, scope_key) index)."""
    return [MemoryRow.tenant_id == tenant_id, MemoryRow.bank_id == bank_id, MemoryRow.scope_key == scope_key]


class MemoryStore:
    """Reads and writes banks, memories and revisions inside the caller's transaction."""

    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def flush(self) -> None:
        """Send pending changes so that constraint errors surface inside the transaction."""
        await self._db.flush()

    # -- banks ----------------------------------------------------------------------------------

    async def add_bank(self, row: MemoryBankRow) -> MemoryBankRow:
        self._db.add(row)
        await self._db.flush()
        return row

    async def get_bank(self, *, tenant_id: UUID, bank_id: UUID) -> MemoryBankRow | None:
        stmt = select(MemoryBankRow).where(MemoryBankRow.tenant_id == tenant_id, MemoryBankRow.id == bank_id)
        return await self._db.scalar(stmt)

    async def find_bank(self, *, tenant_id: UUID, name: str) -> MemoryBankRow | None:
        stmt = select(MemoryBankRow).where(MemoryBankRow.tenant_id == tenant_id, MemoryBankRow.name == name)
        return await self._db.scalar(stmt)

    async def ensure_bank(self, *, tenant_id: UUID, name: str, values: Mapping[str, Any]) -> MemoryBankRow:
        """Return the bank `name`, inserting it with `values` if missing (safe under concurrency)."""
        await self._db.execute(
            insert_ignore(
                self._db,
                MemoryBankRow.__table__,  # type: ignore[arg-type]
                {"tenant_id": tenant_id, "name": name, **values},
                keys=("tenant_id", "name"),
            )
        )
        row = await self.find_bank(tenant_id=tenant_id, name=name)
        assert row is not None
        return row

    async def list_banks(self, *, tenant_id: UUID) -> Sequence[MemoryBankRow]:
        stmt = (
            select(MemoryBankRow)
            .where(MemoryBankRow.tenant_id == tenant_id)
            .order_by(MemoryBankRow.created_at, MemoryBankRow.id)
        )
        return (await self._db.scalars(stmt)).all()

    async def delete_bank(self, *, tenant_id: UUID, bank_id: UUID) -> bool:
        result: Any = await self._db.execute(
            delete(MemoryBankRow).where(MemoryBankRow.tenant_id == tenant_id, MemoryBankRow.id == bank_id)
        )
        return bool(result.rowcount)

    async def bank_memory_keys(self, *, tenant_id: UUID, bank_id: UUID) -> list[tuple[UUID, dict[str, str]]]:
        """Return (id, scope) of every memory of a bank, deleted ones included."""
        stmt = select(MemoryRow.id, MemoryRow.scope).where(
            MemoryRow.tenant_id == tenant_id, MemoryRow.bank_id == bank_id
        )
        return [(r[0], r[1]) for r in (await self._db.execute(stmt)).all()]

    # -- memories -------------------------------------------------------------------------------

    async def add(self, row: MemoryRow) -> MemoryRow:
        self._db.add(row)
        await self._db.flush()
        return row

    async def get(self, *, tenant_id: UUID, memory_id: UUID, lock: bool = False) -> MemoryRow | None:
        stmt = select(MemoryRow).where(MemoryRow.tenant_id == tenant_id, MemoryRow.id == memory_id)
        if lock:
            # Serializes writers of one memory on PostgreSQL (revision numbers); SQLite has one writer.
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return await self._db.scalar(stmt)

    async def plain(self) -> PgRetrieval:
        """The plain-SQL retrieval reads on this transaction's connection (PostgreSQL)."""
        return PgRetrieval(await driver_connection(self._db))

    async def scope_rows(
        self, *, where: Sequence[ColumnElement[bool]], cap: int, with_text: bool
    ) -> list[ScopeText] | None:
        """Return every memory matching `where` in time order (event time, else creation), with its
        vector and, if `with_text`, its fact; None when more than `cap` match (SQLite's scope scan)."""
        when = func.coalesce(MemoryRow.event_time, MemoryRow.created_at)
        fact = MemoryRow.fact if with_text else literal_column("NULL")
        stmt = (
            select(MemoryRow.id, when, MemoryRow.embedding, MemoryRow.embedding_model, fact)
            .where(*where)
            .order_by(when, MemoryRow.created_at, MemoryRow.id)
            .limit(cap + 1)
        )
        rows = (await self._db.execute(stmt)).all()
        if len(rows) > cap:
            return None
        return [ScopeText(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def get_many(self, *, tenant_id: UUID, ids: Sequence[UUID], embedding: bool = True) -> list[MemoryRow]:
        """Return the tenant's memories among `ids` (any order); `embedding=False` leaves the vector unloaded."""
        rows: list[MemoryRow] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            stmt = select(MemoryRow).where(MemoryRow.tenant_id == tenant_id, MemoryRow.id.in_(chunk))
            if not embedding:
                stmt = stmt.options(defer(MemoryRow.embedding))
            rows.extend((await self._db.scalars(stmt)).all())
        return rows

    async def list_rows(
        self,
        *,
        tenant_id: UUID,
        bank_id: UUID | None,
        where: Sequence[ColumnElement[bool]],
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> Sequence[MemoryRow]:
        """Return memories newest first (created_at, id), after the keyset `after`."""
        stmt = select(MemoryRow).where(MemoryRow.tenant_id == tenant_id, *where)
        if bank_id is not None:
            stmt = stmt.where(MemoryRow.bank_id == bank_id)
        if after is not None:
            created, ident = after
            stmt = stmt.where(
                or_(MemoryRow.created_at < created, and_(MemoryRow.created_at == created, MemoryRow.id < ident))
            )
        stmt = stmt.order_by(MemoryRow.created_at.desc(), MemoryRow.id.desc()).limit(limit)
        return (await self._db.scalars(stmt)).all()

    async def newest_ids(self, *, tenant_id: UUID, where: Sequence[ColumnElement[bool]], limit: int) -> list[UUID]:
        """Return the ids of the newest memories matching `where` (created_at, id descending)."""
        stmt = (
            select(MemoryRow.id)
            .where(MemoryRow.tenant_id == tenant_id, *where)
            .order_by(MemoryRow.created_at.desc(), MemoryRow.id.desc())
            .limit(limit)
        )
        return list((await self._db.scalars(stmt)).all())

    async def as_of(
        self,
        *,
        tenant_id: UUID,
        bank_id: UUID | None,
        when: datetime,
        where: Sequence[ColumnElement[bool]],
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[tuple[MemoryRow, MemoryRevisionRow]]:
        """Return memories as they were at `when`, with the revision in force then, newest first.

        A revision is in force from its `valid_from` until its `valid_to`; a DELETED revision in force
        means the memory did not exist then, and the newest revision stops at the memory's expiry.
        """
        r = MemoryRevisionRow
        stmt = (
            select(MemoryRow, r)
            .join(r, r.memory_id == MemoryRow.id)
            .where(
                MemoryRow.tenant_id == tenant_id,
                r.valid_from <= when,
                or_(r.valid_to.is_(None), r.valid_to > when),
                r.action != "DELETED",
                or_(r.valid_to.is_not(None), MemoryRow.expires_at.is_(None), MemoryRow.expires_at > when),
                *where,
            )
        )
        if bank_id is not None:
            stmt = stmt.where(MemoryRow.bank_id == bank_id)
        if after is not None:
            created, ident = after
            stmt = stmt.where(
                or_(MemoryRow.created_at < created, and_(MemoryRow.created_at == created, MemoryRow.id < ident))
            )
        stmt = stmt.order_by(MemoryRow.created_at.desc(), MemoryRow.id.desc()).limit(limit)
        return [(row[0], row[1]) for row in (await self._db.execute(stmt)).all()]

    async def purge(self, *, tenant_id: UUID, memory_id: UUID) -> MemoryRow | None:
        """Delete a memory and its revisions for good; return the row it was, or None."""
        row = await self.get(tenant_id=tenant_id, memory_id=memory_id, lock=True)
        if row is None:
            return None
        await self._db.execute(
            delete(MemoryRow).where(MemoryRow.tenant_id == tenant_id, MemoryRow.id == memory_id)
        )
        return row

    async def expired(self, *, now: datetime, limit: int) -> list[tuple[UUID, UUID]]:
        """Return (tenant_id, id) of live-flagged memories past their expiry, locked (skipping locked ones)."""
        stmt = (
            select(MemoryRow.tenant_id, MemoryRow.id)
            .where(MemoryRow.is_deleted.is_(False), MemoryRow.expires_at <= now)
            .order_by(MemoryRow.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [(r[0], r[1]) for r in (await self._db.execute(stmt)).all()]

    async def set_embeddings(self, *, tenant_id: UUID, vectors: Mapping[UUID, Any], model: str) -> None:
        """Replace the embeddings of memories (a re-embed; not a change of the fact: no revision)."""
        for memory_id, vector in vectors.items():
            await self._db.execute(
                update(MemoryRow)
                .where(MemoryRow.tenant_id == tenant_id, MemoryRow.id == memory_id)
                .values(embedding=vector, embedding_model=model, revision=MemoryRow.revision + 1)
            )

    async def bank_page(
        self, *, tenant_id: UUID, bank_id: UUID, after: UUID | None, limit: int
    ) -> list[tuple[UUID, str]]:
        """Return (id, fact) of a bank's memories in id order, after `after` (for re-embedding)."""
        stmt = select(MemoryRow.id, MemoryRow.fact).where(
            MemoryRow.tenant_id == tenant_id, MemoryRow.bank_id == bank_id
        )
        if after is not None:
            stmt = stmt.where(MemoryRow.id > after)
        stmt = stmt.order_by(MemoryRow.id).limit(limit)
        return [(r[0], r[1]) for r in (await self._db.execute(stmt)).all()]

    async def count(self, *, tenant_id: UUID, bank_id: UUID, live_at: datetime | None = None) -> int:
        stmt = select(func.count()).select_from(MemoryRow).where(
            MemoryRow.tenant_id == tenant_id, MemoryRow.bank_id == bank_id
        )
        if live_at is not None:
            stmt = stmt.where(live(live_at))
        return int(await self._db.scalar(stmt) or 0)

    # -- search ---------------------------------------------------------------------------------

    async def vector_search(
        self,
        index: SqlVectorIndex,
        *,
        partition: Mapping[str, str],
        vector: Any,
        limit: int,
        filter: VectorFilter,
    ) -> list[Hit]:
        """Rank one scope's memories by cosine similarity to `vector` (pgvector or numpy)."""
        return await index.search_in(
            self._db, collection=VECTOR_COLLECTION, partition=partition, vector=vector, limit=limit, filter=filter
        )

    async def keyword_search(
        self,
        *,
        query: str,
        where: Sequence[ColumnElement[bool]],
        limit: int,
        scope: tuple[UUID, UUID, str] | None = None,
    ) -> list[tuple[UUID, float]]:
        """Rank memories matching `where` by full-text relevance to `query` (tsvector or FTS5).

        `scope` (tenant, bank, scope key), which `where` must also require, confines FTS5 to it.
        """
        partition = None
        if scope is not None:
            partition = {"tenant_id": scope[0], "bank_id": scope[1], "scope_key": scope[2]}
        return await keyword_search(
            self._db, collection=MEMORY_TEXT, query=query, where=where, limit=limit, partition=partition
        )

    # -- revisions ------------------------------------------------------------------------------

    async def add_revision(self, row: MemoryRevisionRow) -> MemoryRevisionRow:
        self._db.add(row)
        await self._db.flush()
        return row

    async def close_revisions(self, *, memory_id: UUID, at: datetime) -> None:
        """End the validity of the memory's revision in force (the one without `valid_to`)."""
        await self._db.execute(
            update(MemoryRevisionRow)
            .where(MemoryRevisionRow.memory_id == memory_id, MemoryRevisionRow.valid_to.is_(None))
            .values(valid_to=at)
        )

    async def revisions(
        self, *, tenant_id: UUID, memory_id: UUID, after: int | None, limit: int
    ) -> Sequence[MemoryRevisionRow]:
        stmt = select(MemoryRevisionRow).where(
            MemoryRevisionRow.tenant_id == tenant_id, MemoryRevisionRow.memory_id == memory_id
        )
        if after is not None:
            stmt = stmt.where(MemoryRevisionRow.revision_number > after)
        stmt = stmt.order_by(MemoryRevisionRow.revision_number).limit(limit)
        return (await self._db.scalars(stmt)).all()

    async def revision(self, *, tenant_id: UUID, memory_id: UUID, number: int) -> MemoryRevisionRow | None:
        stmt = select(MemoryRevisionRow).where(
            MemoryRevisionRow.tenant_id == tenant_id,
            MemoryRevisionRow.memory_id == memory_id,
            MemoryRevisionRow.revision_number == number,
        )
        return await self._db.scalar(stmt)


def merge_patch(target: JSON, patch: Mapping[str, Any]) -> JSON:
    """Return `target` with `patch` applied (RFC 7396 at the top level: null deletes a key)."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
