"""Memory behaviour: banks, memories with revisions and TTLs, retrieval, import/export, caches.

Writes go through four transaction-scoped primitives, which the public methods and memory generation
share (generation applies a whole job in ONE transaction):

    bank = await memories.get_bank(tenant_id=t, bank_id=None)        # before the transaction
    async with db.write() as tx:
        near = await memories.neighbours(tx, tenant_id=t, bank_id=bank.id, scope=s, vectors=v)
        row = await memories.write_create(tx, tenant_id=t, bank=bank, scope=s, fact=..., ...)
        await memories.write_update(tx, tenant_id=t, memory_id=..., fact=..., bank=bank)
        await memories.write_delete(tx, tenant_id=t, memory_id=...)
    await memories.invalidate(tenant_id=t, memory_ids=[...], scope=s)   # after commit

Revisions: every write takes the memory's row lock (`SELECT … FOR UPDATE` on PostgreSQL; SQLite has
one writer), then the next revision number, so concurrent writers get 1, 2, 3… with no gap. Each
revision is valid from its write until the next one (`valid_from`/`valid_to`): `as_of` reads them.

Cache (seed 000 §6.2–6.3): `memory:{id}` holds the memory (30 min), written after each commit with
the memory's revision as its version, so a slow reader never puts back an older value (a purged
memory leaves a tombstone). `scope_memories:{tenant}:{bank}:{md5(scope)}:{generation}` holds the ids
of a scope's newest memories; every write bumps the scope's generation, so no reader sees a list from
before a committed write. The tenant is in the keys (seed 000's key is the scope alone, which two
tenants share).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import numpy as np
from pydantic import ValidationError
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.cache.base import Cache
from contextiq.core.clock import as_utc, utcnow
from contextiq.core.db.engine import Database
from contextiq.core.errors import Conflict, FieldError, Invalid, NotFound, db_errors
from contextiq.core.idempotency import run_idempotent
from contextiq.core.ids import new_id
from contextiq.core.llm.embeddings.base import EmbeddingProvider
from contextiq.core.pagination import decode_cursor, decode_int_cursor, encode_cursor
from contextiq.core.scope import describe_scope, scope_key, scope_problem
from contextiq.core.search.base import SqlCollection, SqlVectorIndex, VectorFilter, VectorIndex, VectorItem
from contextiq.core.search.factory import make_vector_index
from contextiq.core.search.hybrid import fuse, recency_decay
from contextiq.core.search.keyword import parse_web_query
from contextiq.core.search.query import time_windows
from contextiq.core.search.rerank import (
    RERANK_DEPTH,
    SIMILARITY_DEPTH,
    Timeline,
    TimelineCache,
    from_micros,
    micros,
    rerank,
    rerank_scope,
    scope_timeline,
)
from contextiq.core.search.terms import TermIndex, analyse, bm25_scores
from contextiq.core.types import JSON
from contextiq.memories.models import (
    ImportLine,
    ImportResult,
    Memory,
    MemoryBank,
    MemoryBankCreate,
    MemoryBankList,
    MemoryBankUpdate,
    MemoryCreate,
    MemoryFilter,
    MemoryPage,
    MemoryRevision,
    MemoryRevisionPage,
    MemoryUpdate,
    RetrievedMemory,
    RetrieveFilters,
    RetrieveRequest,
    RetrieveResponse,
    SimilaritySearchConfig,
    TtlKind,
    parse_duration,
)
from contextiq.memories.store import (
    VECTOR_COLLECTION,
    MemoryStore,
    PgRetrieval,
    ScanFilters,
    ScopeRead,
    ScopeScan,
    in_scope,
    live,
    merge_patch,
)
from contextiq.memories.tables import MemoryBankRow, MemoryRevisionRow, MemoryRow

log = logging.getLogger(__name__)

DEFAULT_BANK = "default"
MEMORY_CACHE_TTL = 1800  # seed 000 §6.2
SCOPE_CACHE_TTL = 1800  # seed 000 §6.3
SCOPE_GENERATION_TTL = 7 * 86400
SCOPE_CACHE_SIZE = 1000  # newest ids kept per scope
BANK_CACHE_TTL = 300  # bank snapshots; every bank write replaces or tombstones its entry
PARSED_BANKS = 1024  # banks whose cached snapshot stays parsed in the process (JSON + validation: ~50 µs)
SCOPE_SCAN_CAP = 2000  # scopes up to this size are read whole by a hybrid query (PostgreSQL)
BIG_SCOPE_TTL = 600.0  # seconds a scope found larger than that is searched the indexed way
DEFAULT_BANK_CACHE_TTL = 60  # the id of a tenant's bank named `default` (a rename drops it)
TOMBSTONE_VERSION = 2**52  # above any revision: a purged memory is never cached again
MAX_SCOPE_KEY_BYTES = 2400  # B-tree entries are limited to ~2.7 kB on PostgreSQL
MAX_IMPORT_LINES = 10_000
EMBED_BATCH = 128


class _Keep:
    """The "leave as is" value of optional write arguments (None means "clear")."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()

MEMORY_VECTORS = SqlCollection(
    name=VECTOR_COLLECTION,
    table=MemoryRow.__table__,  # type: ignore[arg-type]
    id_column="id",
    vector_column="embedding",
    partition_columns=("tenant_id", "bank_id", "scope_key"),
)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A memory as of some time: the row, with the fact/topic/confidence of the revision then in force."""

    row: MemoryRow
    revision: MemoryRevisionRow | None = None


def scope_hash(scope: Mapping[str, str]) -> str:
    """Return md5 of the scope's sorted-keys JSON (seed 000 §6.3)."""
    return hashlib.md5(json.dumps(dict(scope), sort_keys=True).encode()).hexdigest()


def _memory_key(memory_id: UUID) -> str:
    return f"memory:{memory_id}"


def _bank_key(tenant_id: UUID, bank_id: UUID) -> str:
    return f"bank:{tenant_id}:{bank_id}"


def _default_bank_key(tenant_id: UUID) -> str:
    return f"bank_default:{tenant_id}"


def _bank_version(bank: MemoryBank) -> int:
    """A bank snapshot's cache version: its `updated_at` in microseconds (a later write wins)."""
    return int(bank.updated_at.timestamp() * 1_000_000)


def _scope_generation_key(tenant_id: UUID, scope: Mapping[str, str]) -> str:
    return f"scope_memories_gen:{tenant_id}:{scope_hash(scope)}"


def _scope_list_key(tenant_id: UUID, bank_id: UUID, scope: Mapping[str, str], generation: str) -> str:
    return f"scope_memories:{tenant_id}:{bank_id}:{scope_hash(scope)}:{generation}"


def memory_model(row: MemoryRow, revision: MemoryRevisionRow | None = None) -> Memory:
    """Return the API model of a memory row (as of `revision` when given)."""
    return Memory(
        id=row.id,
        bank_id=row.bank_id,
        scope=dict(row.scope),
        fact=revision.fact if revision else row.fact,
        topic=revision.topic if revision else row.topic,
        confidence=_confidence(revision.confidence if revision else row.confidence),
        source_session_id=row.source_session_id,
        source_type=row.source_type,
        metadata=dict(row.metadata_ or {}),
        event_time=row.event_time,
        created_at=row.created_at,
        updated_at=revision.created_at if revision else row.updated_at,
        expires_at=row.expires_at,
        revision_count=(revision.revision_number - 1) if revision else row.revision_count,
        revision=revision.revision_number if revision else row.revision,
        is_deleted=False if revision else row.is_deleted,
        embedding_model=row.embedding_model,
        valid_from=revision.valid_from if revision else row.valid_from,
        valid_to=revision.valid_to if revision else row.valid_to,
    )


def revision_model(row: MemoryRevisionRow) -> MemoryRevision:
    """Return the API model of a revision row."""
    return MemoryRevision(
        id=row.id,
        memory_id=row.memory_id,
        revision_number=row.revision_number,
        fact=row.fact,
        topic=row.topic,
        action=row.action,
        source_session_id=row.source_session_id,
        extracted_memories=row.extracted_memories,
        confidence=_confidence(row.confidence),
        metadata=dict(row.metadata_ or {}),
        created_at=row.created_at,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
    )


def bank_model(row: MemoryBankRow) -> MemoryBank:
    """Return the API model of a bank row."""
    return MemoryBank.model_validate(
        {
            "id": row.id,
            "name": row.name,
            "memory_topics": row.memory_topics,
            "few_shot_examples": row.few_shot_examples,
            "ttl_config": row.ttl_config,
            "similarity_search_config": row.similarity_search_config,
            "generation_config": row.generation_config,
            "retrieval_config": row.retrieval_config or {},
            "enable_revisions": row.enable_revisions,
            "scope_keys": list(row.scope_keys),
            "metadata": row.metadata_,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "is_active": row.is_active,
        }
    )


def _confidence(value: float) -> float:
    # REAL (float32) on PostgreSQL, as in the seed: 0.9 reads back as 0.8999999762; float32 holds ~7 digits.
    return round(float(value), 6)


def _is_live(memory: Memory, now: datetime) -> bool:
    return not memory.is_deleted and (memory.expires_at is None or memory.expires_at > now)


def _scope_filter_param(scope: str) -> dict[str, str]:
    """Parse the `scope=` query parameter (URL-encoded JSON object of strings)."""
    try:
        value = json.loads(scope)
    except ValueError as exc:
        raise Invalid("query.scope", f"not JSON: {exc}") from exc
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Invalid("query.scope", 'expected a JSON object of strings, like {"user_id":"u1"}')
    problem = scope_problem(value)
    if problem:
        raise Invalid("query.scope", problem)
    return value


class MemoryService:
    """Memory banks and memories for one deployment; every method is scoped to a tenant."""

    def __init__(
        self,
        *,
        db: Database,
        cache: Cache,
        embeddings: Callable[[], EmbeddingProvider],
        vector_index: VectorIndex | None = None,
        session_exists: Callable[[UUID, UUID], Awaitable[object]] | None = None,
        cache_ttl: int = MEMORY_CACHE_TTL,
    ) -> None:
        """Build the service.

        Args:
            embeddings: Returns the embedding provider (built lazily by the runtime).
            vector_index: An external index (Qdrant) that mirrors the memories' vectors and serves
                similarity retrieval; by default the database's own (pgvector or SQLite).
            session_exists: `await session_exists(tenant_id, session_id)` raises NotFound for a
                `source_session_id` that is not the tenant's (the sessions context's check).
        """
        self._db = db
        self._timelines: TimelineCache[Timeline[UUID]] = TimelineCache()
        self._term_indexes: TimelineCache[TermIndex[UUID]] = TimelineCache(256)
        self._cache = cache
        self._embeddings = embeddings
        self._ttl = cache_ttl
        self._session_exists = session_exists
        sql_index = make_vector_index(db)
        assert isinstance(sql_index, SqlVectorIndex)
        sql_index.register(MEMORY_VECTORS)
        self._sql_index = sql_index
        self._external = vector_index if vector_index is not None and not vector_index.row_backed else None
        # Row-backed vectors: a hybrid query reads a small scope whole (`_scan_scope`, one statement
        # on PostgreSQL; `_scan_scope_sqlite`, ranked in process with the scope's own statistics).
        self._scans_scope = self._external is None and sql_index.name in ("pgvector", "sqlite")
        self._pg_hybrids_in_flight = 0  # `_hybrid_pg` calls running in this process
        self._big_scopes: dict[tuple[UUID, UUID, str], float] = {}
        # The last snapshot parsed from each `bank:` cache entry, by key: (its raw text, the bank).
        self._parsed_banks: OrderedDict[str, tuple[str | bytes, MemoryBank]] = OrderedDict()

    @property
    def embeddings(self) -> EmbeddingProvider:
        """The embedding provider memories are embedded with."""
        return self._embeddings()

    # == banks ===================================================================================

    async def create_bank(self, *, tenant_id: UUID, data: MemoryBankCreate) -> MemoryBank:
        """Create a memory bank; its name is unique in the tenant."""
        similarity = self._check_similarity(data.similarity_search_config, "body.similarity_search_config")
        now = utcnow()
        row = MemoryBankRow(
            tenant_id=tenant_id,
            name=data.name,
            memory_topics=[t.model_dump(mode="json", exclude_none=True) for t in data.memory_topics],
            few_shot_examples=data.few_shot_examples,
            ttl_config=data.ttl_config.model_dump(mode="json"),
            similarity_search_config=similarity.model_dump(mode="json"),
            generation_config=data.generation_config.model_dump(mode="json"),
            # Only the settings given: the others follow the server's defaults as they are retuned.
            retrieval_config=data.retrieval_config.model_dump(mode="json", exclude_unset=True),
            enable_revisions=data.enable_revisions,
            scope_keys=list(data.scope_keys),
            metadata_=dict(data.metadata),
            created_at=now,
            updated_at=now,
            is_active=data.is_active,
        )
        async with self._db.write() as db:
            if await MemoryStore(db).find_bank(tenant_id=tenant_id, name=data.name) is not None:
                raise Conflict(f"a memory bank named {data.name!r} exists already")
            with db_errors(f"a memory bank named {data.name!r} exists already"):
                await MemoryStore(db).add_bank(row)
            return bank_model(row)

    async def list_banks(self, *, tenant_id: UUID) -> MemoryBankList:
        """Return the tenant's memory banks, oldest first."""
        async with self._db.read() as db:
            rows = await MemoryStore(db).list_banks(tenant_id=tenant_id)
        return MemoryBankList(items=[bank_model(r) for r in rows])

    async def get_bank(self, *, tenant_id: UUID, bank_id: UUID | None) -> MemoryBank:
        """Return a bank; `None` is the tenant's default bank (named `default`), created on first use.

        The caller's own copy: changing it changes nothing else. Opens its own transaction: call it
        before opening a write transaction, not inside one.
        """
        return (await self._shared_bank(tenant_id, bank_id)).model_copy(deep=True)

    async def _shared_bank(self, tenant_id: UUID, bank_id: UUID | None) -> MemoryBank:
        """`get_bank`, without the copy: the snapshot shared by this process's reads (never change it)."""
        if bank_id is not None:
            bank = await self._cached_bank(tenant_id, bank_id)
            if bank is None:
                raise NotFound("memory bank", bank_id)
            return bank
        found = await self._read_bank(tenant_id, None)
        if found is not None:
            return found
        async with self._db.write() as db:
            row = await MemoryStore(db).ensure_bank(
                tenant_id=tenant_id, name=DEFAULT_BANK, values=self._default_bank_values()
            )
        return bank_model(row)

    async def _cached_bank(self, tenant_id: UUID, bank_id: UUID) -> MemoryBank | None:
        """Return the tenant's bank `bank_id` (None if there is none), through the `bank:` cache.

        The bank parsed from a cache entry is kept and returned again while the entry is unchanged:
        it is shared by every read of this process and must not be changed (`get_bank` copies it).

        Every bank write stores its new snapshot at a higher version (`_bank_version`) or a
        tombstone, so a reader that read the row before the write cannot put the old one back.
        """
        key = _bank_key(tenant_id, bank_id)
        raw = await self._cache.get(key)
        if raw is not None:
            parsed = self._parsed_banks.get(key)
            if parsed is not None and parsed[0] == raw:  # the snapshot parsed last time
                self._parsed_banks.move_to_end(key)
                return parsed[1]
            value = json.loads(raw)
            if value.get("tombstone"):
                self._parsed_banks.pop(key, None)
                return None
            bank = MemoryBank.model_validate(value)
            self._parsed_banks[key] = (raw, bank)
            if len(self._parsed_banks) > PARSED_BANKS:
                self._parsed_banks.popitem(last=False)
            return bank
        async with self._db.read() as db:
            row = await MemoryStore(db).get_bank(tenant_id=tenant_id, bank_id=bank_id)
        if row is None:
            return None
        bank = bank_model(row)
        await self._cache.set(key, bank.model_dump_json(), ttl=BANK_CACHE_TTL, version=_bank_version(bank))
        return bank

    async def _bank_written(self, tenant_id: UUID, bank: MemoryBank, *, renamed: bool = False) -> None:
        """After a committed bank write: cache the new snapshot; a rename also forgets the default's id."""
        await self._cache.set(
            _bank_key(tenant_id, bank.id), bank.model_dump_json(), ttl=BANK_CACHE_TTL, version=_bank_version(bank)
        )
        if renamed:
            await self._cache.delete(_default_bank_key(tenant_id))

    async def update_bank(self, *, tenant_id: UUID, bank_id: UUID, data: MemoryBankUpdate) -> MemoryBank:
        """Apply a partial update to a bank (existing memories are not re-checked)."""
        fields = data.model_dump(exclude_unset=True)
        for name in list(fields):
            if fields[name] is None and name != "few_shot_examples":
                raise Invalid(f"body.{name}", "may be omitted but not null")
        async with self._db.write() as db:
            store = MemoryStore(db)
            row = await store.get_bank(tenant_id=tenant_id, bank_id=bank_id)
            if row is None:
                raise NotFound("memory bank", bank_id)
            renamed = data.name is not None and data.name != row.name
            if data.name is not None and data.name != row.name:
                if await store.find_bank(tenant_id=tenant_id, name=data.name) is not None:
                    raise Conflict(f"a memory bank named {data.name!r} exists already")
                row.name = data.name
            if data.memory_topics is not None:
                row.memory_topics = [t.model_dump(mode="json", exclude_none=True) for t in data.memory_topics]
            if "few_shot_examples" in fields:
                row.few_shot_examples = data.few_shot_examples
            if data.ttl_config is not None:
                row.ttl_config = data.ttl_config.model_dump(mode="json")
            if data.similarity_search_config is not None:
                checked = self._check_similarity(data.similarity_search_config, "body.similarity_search_config")
                row.similarity_search_config = checked.model_dump(mode="json")
            if data.generation_config is not None:
                row.generation_config = data.generation_config.model_dump(mode="json")
            if data.retrieval_config is not None:
                row.retrieval_config = data.retrieval_config.model_dump(mode="json", exclude_unset=True)
            if data.enable_revisions is not None:
                row.enable_revisions = data.enable_revisions
            if data.scope_keys is not None:
                row.scope_keys = list(data.scope_keys)
            if data.metadata is not None:
                row.metadata_ = dict(data.metadata)
            if data.is_active is not None:
                row.is_active = data.is_active
            row.updated_at = utcnow()
            with db_errors(f"a memory bank named {row.name!r} exists already"):
                await store.flush()
            bank = bank_model(row)
        await self._bank_written(tenant_id, bank, renamed=renamed)
        return bank

    async def delete_bank(self, *, tenant_id: UUID, bank_id: UUID, force: bool = False) -> None:
        """Delete a bank; one that holds memories only with `force`, which deletes them too."""
        async with self._db.write() as db:
            store = MemoryStore(db)
            if await store.get_bank(tenant_id=tenant_id, bank_id=bank_id) is None:
                raise NotFound("memory bank", bank_id)
            keys = await store.bank_memory_keys(tenant_id=tenant_id, bank_id=bank_id)
            if keys and not force:
                raise Conflict(
                    f"memory bank {bank_id} holds {len(keys)} memories; delete with force=true to delete them too"
                )
            await store.delete_bank(tenant_id=tenant_id, bank_id=bank_id)
        tombstone = json.dumps({"tombstone": True})
        await self._cache.set(_bank_key(tenant_id, bank_id), tombstone, ttl=BANK_CACHE_TTL, version=TOMBSTONE_VERSION)
        await self._cache.delete(_default_bank_key(tenant_id))
        by_scope: dict[str, tuple[dict[str, str], list[UUID]]] = {}
        for memory_id, scope in keys:
            by_scope.setdefault(scope_key(scope), (scope, []))[1].append(memory_id)
        for scope, ids in by_scope.values():
            await self.invalidate(tenant_id=tenant_id, memory_ids=ids, scope=scope)

    def _default_bank_values(self) -> dict[str, Any]:
        provider = self.embeddings
        return {
            "memory_topics": [],
            "few_shot_examples": None,
            "ttl_config": {},
            "similarity_search_config": SimilaritySearchConfig(
                embedding_model=provider.model, vector_size=provider.dimension or None
            ).model_dump(mode="json"),
            "generation_config": {},
            "retrieval_config": {},
            "enable_revisions": True,
            "scope_keys": ["user_id"],
            "metadata": {},
            "created_at": utcnow(),
            "updated_at": utcnow(),
            "is_active": True,
        }

    def _check_similarity(self, config: SimilaritySearchConfig, field: str) -> SimilaritySearchConfig:
        provider = self.embeddings
        if config.embedding_model is not None and config.embedding_model != provider.model:
            raise Invalid(
                f"{field}.embedding_model",
                f"this server embeds with {provider.model!r}; set CONTEXTIQ_EMBEDDINGS_* to use another model",
            )
        if config.vector_size is not None and provider.dimension and config.vector_size != provider.dimension:
            raise Invalid(f"{field}.vector_size", f"{provider.model!r} makes {provider.dimension}-d vectors")
        return config.model_copy(
            update={"embedding_model": provider.model, "vector_size": provider.dimension or config.vector_size}
        )

    # == the transaction-scoped primitives (shared with memory generation) ==========================

    async def neighbours(
        self,
        db: AsyncSession,
        *,
        tenant_id: UUID,
        bank_id: UUID,
        scope: dict[str, str],
        vectors: np.ndarray,
        limit: int = 5,
    ) -> list[list[tuple[MemoryRow, float]]]:
        """Return, for each row of `vectors`, the live memories of exactly `scope` nearest to it.

        Best first, with cosine similarity; only memories embedded with the current model are
        compared. Runs in the caller's transaction, so it sees that transaction's own writes.
        """
        matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        now = utcnow()
        store = MemoryStore(db)
        partition = {"tenant_id": str(tenant_id), "bank_id": str(bank_id), "scope_key": scope_key(scope)}
        flt = self._live_filter(now, RetrieveFilters())
        found: list[list[tuple[str, float]]] = []
        for vector in matrix:
            hits = await store.vector_search(
                self._sql_index, partition=partition, vector=vector, limit=limit, filter=flt
            )
            found.append([(h.id, h.score) for h in hits])
        ids = sorted({UUID(i) for hits in found for i, _ in hits})
        rows = {str(r.id): r for r in await store.get_many(tenant_id=tenant_id, ids=ids)}
        return [[(rows[i], score) for i, score in hits if i in rows] for hits in found]

    async def write_create(
        self,
        db: AsyncSession,
        *,
        tenant_id: UUID,
        bank: MemoryBank,
        scope: Mapping[str, str],
        fact: str,
        topic: str,
        confidence: float,
        embedding: np.ndarray | None,
        source_type: str = "generated",
        source_session_id: UUID | None = None,
        event_time: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        extracted_memories: Sequence[str] | None = None,
        ttl_kind: TtlKind = "generate_created",
        expires_at: datetime | None = None,
    ) -> MemoryRow:
        """Insert a memory and its CREATED revision in the caller's transaction; return the row.

        The TTL comes from the bank's `ttl_config` for `ttl_kind` unless `expires_at` is given. A
        missing `embedding` is computed here (better: embed before the transaction, in a batch).

        Raises:
            Invalid: a scope, topic, fact or confidence the bank does not accept (named `body.*`).
            Conflict: the bank is inactive.
        """
        vector = embedding if embedding is not None else await self.embeddings.embed_one(fact)
        row, revision = self._new_memory(
            tenant_id=tenant_id, bank=bank, scope=scope, fact=fact, topic=topic, confidence=confidence,
            embedding=vector, source_type=source_type, source_session_id=source_session_id, event_time=event_time,
            metadata=metadata, extracted_memories=extracted_memories, ttl_kind=ttl_kind, expires_at=expires_at,
        )
        with db_errors("memory"):
            db.add(row)
            await db.flush()  # the memory first: its revision refers to it
            if revision is not None:
                db.add(revision)
                await db.flush()
        return row

    def _new_memory(
        self,
        *,
        tenant_id: UUID,
        bank: MemoryBank,
        scope: Mapping[str, str],
        fact: str,
        topic: str,
        confidence: float,
        embedding: np.ndarray,
        source_type: str,
        source_session_id: UUID | None,
        event_time: datetime | None,
        metadata: Mapping[str, Any] | None,
        extracted_memories: Sequence[str] | None,
        ttl_kind: TtlKind,
        expires_at: datetime | None,
    ) -> tuple[MemoryRow, MemoryRevisionRow | None]:
        """Check and build (not add) a new memory row and its CREATED revision."""
        self._check_write(bank, scope, topic, fact=fact, confidence=confidence)
        provider = self.embeddings
        vector = embedding
        now = utcnow()
        if expires_at is None:
            ttl = bank.ttl(ttl_kind)
            expires_at = now + ttl if ttl else None
        valid_from = min(as_utc(event_time), now) if event_time is not None else now
        row = MemoryRow(
            id=new_id(),
            tenant_id=tenant_id,
            bank_id=bank.id,
            scope=dict(scope),
            scope_key=scope_key(scope),
            fact=fact,
            topic=topic,
            confidence=confidence,
            source_session_id=source_session_id,
            source_type=source_type,
            metadata_=dict(metadata or {}),
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
            revision_count=0,
            is_deleted=False,
            revision=1,
            embedding=np.asarray(vector, dtype=np.float32),
            embedding_model=provider.model,
            event_time=event_time,
            valid_from=valid_from,
            valid_to=None,
        )
        revision = (
            self._revision(row, "CREATED", now, source_session_id, extracted_memories, {}, valid_from)
            if bank.enable_revisions
            else None
        )
        return row, revision

    async def write_update(
        self,
        db: AsyncSession,
        *,
        tenant_id: UUID,
        memory_id: UUID,
        fact: str | None,
        confidence: float | None = None,
        topic: str | None = None,
        embedding: np.ndarray | None = None,
        source_session_id: UUID | None = None,
        metadata_patch: Mapping[str, Any] | None = None,
        extracted_memories: Sequence[str] | None = None,
        ttl_kind: TtlKind = "generate_updated",
        bank: MemoryBank,
        event_time: datetime | _Keep | None = KEEP,
        expires_at: datetime | _Keep | None = KEEP,
        revision_metadata: Mapping[str, Any] | None = None,
        undelete: bool = False,
    ) -> MemoryRow:
        """Change a live memory under its row lock and write an UPDATED revision; return the row.

        `fact`, `confidence`, `topic` left None keep their value; a changed fact is re-embedded (from
        `embedding` when given). `metadata_patch` is merged into the memory's metadata (null deletes
        a key). The TTL is renewed from the bank's `ttl_config` for `ttl_kind` (`none`: kept) unless
        `expires_at` is given. `undelete` also revives a soft-deleted memory (rollback).

        Raises:
            NotFound: no such live memory in this tenant.
            Invalid: a topic, fact or confidence the bank does not accept.
        """
        store = MemoryStore(db)
        row = await store.get(tenant_id=tenant_id, memory_id=memory_id, lock=True)
        now = utcnow()
        if row is None or (row.is_deleted and not undelete) or (not row.is_deleted and _expired(row, now)):
            raise NotFound("memory", memory_id)
        if row.bank_id != bank.id:
            raise Invalid("bank_id", f"memory {memory_id} belongs to bank {row.bank_id}, not {bank.id}")
        new_fact = row.fact if fact is None else fact
        new_topic = row.topic if topic is None else topic
        new_confidence = row.confidence if confidence is None else confidence
        self._check_write(bank, row.scope, new_topic, fact=new_fact, confidence=new_confidence, scope_checked=True)
        if new_fact != row.fact or row.embedding is None or row.embedding_model != self.embeddings.model:
            vector = embedding if embedding is not None else await self.embeddings.embed_one(new_fact)
            row.embedding = np.asarray(vector, dtype=np.float32)
            row.embedding_model = self.embeddings.model
        await store.close_revisions(memory_id=memory_id, at=now)
        row.fact, row.topic, row.confidence = new_fact, new_topic, new_confidence
        if metadata_patch:
            row.metadata_ = merge_patch(row.metadata_ or {}, metadata_patch)
        if not isinstance(event_time, _Keep):
            row.event_time = event_time
        if not isinstance(expires_at, _Keep):
            row.expires_at = expires_at
        else:
            ttl = bank.ttl(ttl_kind)
            if ttl:
                row.expires_at = now + ttl
        if undelete:
            row.is_deleted = False
        row.revision += 1
        row.revision_count += 1
        row.updated_at = now
        row.valid_from = now
        row.valid_to = None
        if source_session_id is not None:
            row.source_session_id = source_session_id
        with db_errors(f"memory {memory_id}"):
            await store.flush()
            if bank.enable_revisions:
                await store.add_revision(
                    self._revision(
                        row, "UPDATED", now, source_session_id, extracted_memories, dict(revision_metadata or {}), now
                    )
                )
        return row

    async def write_delete(
        self,
        db: AsyncSession,
        *,
        tenant_id: UUID,
        memory_id: UUID,
        source_session_id: UUID | None = None,
        extracted_memories: Sequence[str] | None = None,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> MemoryRow:
        """Soft-delete a memory under its row lock and write a DELETED revision; return the row.

        `reason` is kept in the revision's metadata (`ttl` for the expiry sweep); `at` is when the
        memory stopped being true (default now; the sweep passes the expiry time).

        Raises:
            NotFound: no such memory, or it is deleted already.
        """
        store = MemoryStore(db)
        row = await store.get(tenant_id=tenant_id, memory_id=memory_id, lock=True)
        if row is None or row.is_deleted:
            raise NotFound("memory", memory_id)
        bank = await store.get_bank(tenant_id=tenant_id, bank_id=row.bank_id)
        now = utcnow()
        when = min(as_utc(at), now) if at is not None else now
        when = max(when, row.valid_from)  # never before the revision it ends
        await store.close_revisions(memory_id=memory_id, at=when)
        row.is_deleted = True
        row.valid_to = when
        row.revision += 1
        row.revision_count += 1
        row.updated_at = now
        await store.flush()
        if bank is None or bank.enable_revisions:
            meta = {"reason": reason} if reason else {}
            await store.add_revision(
                self._revision(row, "DELETED", now, source_session_id, extracted_memories, meta, when)
            )
        return row

    async def invalidate(self, *, tenant_id: UUID, memory_ids: Sequence[UUID], scope: Mapping[str, str]) -> None:
        """Refresh the caches (and an external vector index) after a committed write of these memories."""
        ids = list(dict.fromkeys(memory_ids))
        async with self._db.read() as db:
            rows = {r.id: r for r in await MemoryStore(db).get_many(tenant_id=tenant_id, ids=ids)}
        for memory_id in ids:
            row = rows.get(memory_id)
            if row is None:
                await self._cache.set(
                    _memory_key(memory_id), json.dumps({"tombstone": True}), ttl=self._ttl, version=TOMBSTONE_VERSION
                )
            else:
                await self._cache.set(_memory_key(memory_id), self._snapshot(row), ttl=self._ttl, version=row.revision)
        await self._cache.incr(_scope_generation_key(tenant_id, scope), ttl=SCOPE_GENERATION_TTL)
        if self._external is not None:
            await self._sync_external(ids, rows)

    async def _sync_external(self, ids: Sequence[UUID], rows: Mapping[UUID, MemoryRow]) -> None:
        assert self._external is not None
        keep = [r for r in rows.values() if not r.is_deleted and r.embedding is not None]
        drop = [str(i) for i in ids if i not in rows or rows[i].is_deleted or rows[i].embedding is None]
        if keep:
            await self._external.upsert(collection=VECTOR_COLLECTION, items=[_vector_item(r) for r in keep])
        if drop:
            await self._external.delete(collection=VECTOR_COLLECTION, ids=drop)

    # == memories ===============================================================================

    async def create_memory(
        self, *, tenant_id: UUID, data: MemoryCreate, idempotency_key: str | None = None
    ) -> Memory:
        """Create a memory directly (source_type `direct`), embedded, with the bank's create TTL."""
        bank = await self._shared_bank(tenant_id, data.bank_id)
        self._check_write(bank, data.scope, data.topic, fact=data.fact, confidence=data.confidence)
        expires_at = self._explicit_expiry(data.expires_at, data.ttl)
        if data.source_session_id is not None and self._session_exists is not None:
            try:
                await self._session_exists(tenant_id, data.source_session_id)
            except NotFound as exc:
                raise Invalid("body.source_session_id", f"session {data.source_session_id} not found") from exc
        vector = await self.embeddings.embed_one(data.fact)

        async def work(db: AsyncSession) -> Memory:
            row = await self.write_create(
                db,
                tenant_id=tenant_id,
                bank=bank,
                scope=data.scope,
                fact=data.fact,
                topic=data.topic,
                confidence=data.confidence,
                embedding=vector,
                source_type="direct",
                source_session_id=data.source_session_id,
                event_time=data.event_time,
                metadata=data.metadata,
                ttl_kind="create",
                expires_at=expires_at,
            )
            return memory_model(row)

        memory, replayed = await run_idempotent(
            self._db,
            tenant_id=tenant_id,
            key=idempotency_key,
            operation="memories.create",
            payload=data.model_dump(mode="json"),
            model=Memory,
            work=work,
        )
        if not replayed:
            await self.invalidate(tenant_id=tenant_id, memory_ids=[memory.id], scope=memory.scope)
        return memory

    async def get_memory(self, *, tenant_id: UUID, memory_id: UUID) -> Memory:
        """Return a live memory (a deleted or expired one is not found)."""
        memory = await self._cached(tenant_id, memory_id)
        if memory is None or not _is_live(memory, utcnow()):
            raise NotFound("memory", memory_id)
        return memory

    async def list_memories(
        self, *, tenant_id: UUID, filters: MemoryFilter, cursor: str | None = None, limit: int = 50
    ) -> MemoryPage:
        """Return one page of memories, newest first (as of `filters.as_of` when given)."""
        after = _decode_time_cursor(cursor)
        bank_id = await self._read_bank_id(tenant_id, filters.bank_id)
        if bank_id is None:
            return MemoryPage(items=[], next_cursor=None)
        where: list[ColumnElement[bool]] = []
        if filters.scope is not None:
            where.append(MemoryRow.scope_key == scope_key(filters.scope))
        if filters.topic is not None:
            where.append(MemoryRow.topic == filters.topic)
        if filters.created_after is not None:
            where.append(MemoryRow.created_at >= filters.created_after)
        if filters.created_before is not None:
            where.append(MemoryRow.created_at < filters.created_before)
        if filters.event_time_after is not None:
            where.append(MemoryRow.event_time >= filters.event_time_after)
        if filters.event_time_before is not None:
            where.append(MemoryRow.event_time < filters.event_time_before)
        async with self._db.read() as db:
            store = MemoryStore(db)
            if filters.as_of is not None:
                pairs = await store.as_of(
                    tenant_id=tenant_id, bank_id=bank_id, when=as_utc(filters.as_of), where=where,
                    after=after, limit=limit + 1,
                )
                snapshots = [_Snapshot(m, r) for m, r in pairs]
            else:
                if not filters.include_deleted:
                    where.append(live(utcnow()))
                rows = await store.list_rows(
                    tenant_id=tenant_id, bank_id=bank_id, where=where, after=after, limit=limit + 1
                )
                snapshots = [_Snapshot(r) for r in rows]
        items = [memory_model(s.row, s.revision) for s in snapshots[:limit]]
        next_cursor = None
        if len(snapshots) > limit:
            last = snapshots[limit - 1].row
            next_cursor = encode_cursor(last.created_at.isoformat(), str(last.id))
        return MemoryPage(items=items, next_cursor=next_cursor)

    async def update_memory(self, *, tenant_id: UUID, memory_id: UUID, data: MemoryUpdate) -> Memory:
        """Apply a partial update; writes an UPDATED revision and re-embeds a changed fact."""
        fields = data.model_dump(exclude_unset=True)
        for name in ("fact", "topic", "confidence", "metadata", "ttl"):
            if name in fields and fields[name] is None:
                raise Invalid(f"body.{name}", "may be omitted but not null")
        if "expires_at" in fields and "ttl" in fields:
            raise Invalid("body.ttl", "give expires_at or ttl, not both")
        current = await self._read_row(tenant_id, memory_id)
        bank = await self._shared_bank(tenant_id, current.bank_id)
        if data.topic is not None and not bank.allows_topic(data.topic):
            raise self._unknown_topic(bank, data.topic, "body.topic")
        expires_at: datetime | _Keep | None = KEEP
        if "expires_at" in fields:
            expires_at = self._explicit_expiry(data.expires_at, None)
        elif data.ttl is not None:
            expires_at = utcnow() + parse_duration(data.ttl)
        vector = await self.embeddings.embed_one(data.fact) if data.fact is not None else None
        async with self._db.write() as db:
            row = await self.write_update(
                db,
                tenant_id=tenant_id,
                memory_id=memory_id,
                fact=data.fact,
                confidence=data.confidence,
                topic=data.topic,
                embedding=vector,
                metadata_patch=data.metadata,
                ttl_kind="none",
                bank=bank,
                event_time=data.event_time if "event_time" in fields else KEEP,
                expires_at=expires_at,
            )
            memory = memory_model(row)
        await self.invalidate(tenant_id=tenant_id, memory_ids=[memory_id], scope=memory.scope)
        return memory

    async def delete_memory(self, *, tenant_id: UUID, memory_id: UUID, hard: bool = False) -> None:
        """Delete a memory: softly with a DELETED revision, or for good (`hard`) with its history."""
        async with self._db.write() as db:
            if hard:
                row = await MemoryStore(db).purge(tenant_id=tenant_id, memory_id=memory_id)
                if row is None:
                    raise NotFound("memory", memory_id)
            else:
                row = await self.write_delete(db, tenant_id=tenant_id, memory_id=memory_id)
            scope = dict(row.scope)
        await self.invalidate(tenant_id=tenant_id, memory_ids=[memory_id], scope=scope)

    async def list_revisions(
        self, *, tenant_id: UUID, memory_id: UUID, cursor: str | None = None, limit: int = 100
    ) -> MemoryRevisionPage:
        """Return a memory's revisions, oldest first (deleted memories keep their history)."""
        after = decode_int_cursor(cursor)
        async with self._db.read() as db:
            store = MemoryStore(db)
            if await store.get(tenant_id=tenant_id, memory_id=memory_id) is None:
                raise NotFound("memory", memory_id)
            rows = await store.revisions(tenant_id=tenant_id, memory_id=memory_id, after=after, limit=limit + 1)
        next_cursor = encode_cursor(rows[limit - 1].revision_number) if len(rows) > limit else None
        return MemoryRevisionPage(items=[revision_model(r) for r in rows[:limit]], next_cursor=next_cursor)

    async def rollback_memory(self, *, tenant_id: UUID, memory_id: UUID, revision_number: int) -> Memory:
        """Restore a revision's fact, topic and confidence as a new UPDATED revision (reviving a deleted memory)."""
        async with self._db.read() as db:
            store = MemoryStore(db)
            row = await store.get(tenant_id=tenant_id, memory_id=memory_id)
            if row is None:
                raise NotFound("memory", memory_id)
            target = await store.revision(tenant_id=tenant_id, memory_id=memory_id, number=revision_number)
        if target is None:
            raise Invalid("body.revision_number", f"memory {memory_id} has no revision {revision_number}")
        if target.action == "DELETED":
            raise Invalid("body.revision_number", f"revision {revision_number} is a deletion; pick one with a fact")
        bank = await self._shared_bank(tenant_id, row.bank_id)
        if not bank.allows_topic(target.topic):
            raise self._unknown_topic(bank, target.topic, "body.revision_number")
        vector = await self.embeddings.embed_one(target.fact)
        async with self._db.write() as db:
            updated = await self.write_update(
                db,
                tenant_id=tenant_id,
                memory_id=memory_id,
                fact=target.fact,
                confidence=target.confidence,
                topic=target.topic,
                embedding=vector,
                ttl_kind="none",
                bank=bank,
                revision_metadata={"rollback_to": revision_number},
                undelete=True,
            )
            memory = memory_model(updated)
        await self.invalidate(tenant_id=tenant_id, memory_ids=[memory_id], scope=memory.scope)
        return memory

    # == retrieval ==============================================================================

    async def retrieve_memories(self, *, tenant_id: UUID, request: RetrieveRequest) -> RetrieveResponse:
        """Return the scope's memories most relevant to `request.query` (newest first without one)."""
        bank = await self._read_bank(tenant_id, request.bank_id)
        if bank is None:
            return RetrieveResponse(memories=[])
        self._check_scope(bank, request.scope, "body.scope")
        if "mode" not in request.model_fields_set:  # the bank's default mode
            request = request.model_copy(update={"mode": bank.retrieval_config.default_mode})
        for topic in request.filters.topics or []:
            if not bank.allows_topic(topic):
                raise self._unknown_topic(bank, topic, "body.filters.topics")
        now = utcnow()
        query = (request.query or "").strip()
        if request.filters.as_of is not None:
            return await self._retrieve_as_of(tenant_id, bank, request, query, now)
        if not query:
            return await self._newest(tenant_id, bank, request, now)
        # PostgreSQL answers the single-signal modes in one statement each.
        if request.mode == "similarity" and self._scans_scope and self._db.is_postgres:
            return await self._similar(tenant_id, bank, request, query, now)
        if request.mode == "keyword" and self._db.is_postgres:
            answered = await self._keyword(tenant_id, bank, request, query, now)
            if answered is not None:
                return answered
        # An explicit `rrf_k` asks for the rank fusion of before (kept for clients that tuned it).
        hybrid = request.mode == "hybrid" and "rrf_k" not in request.model_fields_set
        depth = request.top_k if request.mode != "hybrid" else max(request.top_k * 3, 30)
        if hybrid:
            depth = max(request.top_k, RERANK_DEPTH)
        built: list[ColumnElement[bool]] = []

        def where() -> list[ColumnElement[bool]]:
            """The scope and filter conditions, built on first use (a scope scan needs none)."""
            if not built:
                built.extend(in_scope(tenant_id=tenant_id, bank_id=bank.id, scope_key=scope_key(request.scope)))
                built.extend(self._filter_clauses(request.filters, now))
            return built

        # The query is embedded (in a worker thread) while the keyword search runs.
        embedding = asyncio.ensure_future(self.embeddings.embed_one(query)) if request.mode != "keyword" else None
        if hybrid and embedding is not None:
            try:
                if self._db.is_postgres:
                    answered = await self._hybrid_pg(tenant_id, bank, request, query, now, depth, embedding)
                else:
                    answered = await self._hybrid_sqlite(tenant_id, bank, request, query, now, depth, embedding, where)
            except BaseException:
                embedding.cancel()
                raise
            if answered is not None:
                return answered
        vector: np.ndarray | None = None
        similar: list[tuple[UUID, float]] = []
        keyword: list[tuple[UUID, float]] = []
        async with self._db.read() as db:
            store = MemoryStore(db)
            timeline: Timeline[UUID] | None = None
            timeline_key: Hashable = ()
            scanned = False
            try:
                if hybrid:
                    timeline, timeline_key = await self._cached_timeline(tenant_id, bank, request)
                    if embedding is not None and self._scans_scope and not self._is_big_scope(tenant_id, bank, request):
                        if self._db.is_postgres:
                            reads = await store.plain()
                            read = await self._read_scope(reads, tenant_id, bank, request, query, now)
                            vector = await embedding
                            scan = None if read is None else self._scan_parts(bank, read, vector, depth, timeline)
                        else:
                            scan = await self._scan_scope_sqlite(
                                store, tenant_id, bank, request, query, embedding, depth, where, timeline_key
                            )
                        if scan is not None:
                            scanned, vector = True, None  # the similarities are known
                            found, similar, matched = scan
                            if timeline is None:
                                timeline = found
                                self._timelines.put(timeline_key, timeline)
                            # None: only stop words in the query, the trigram fallback ranks.
                            keyword = matched if matched is not None else await store.keyword_search(
                                query=query, where=where(), limit=depth,
                                scope=(tenant_id, bank.id, scope_key(request.scope)),
                            )
                if not scanned and request.mode != "similarity":
                    keyword = await store.keyword_search(
                        query=query, where=where(), limit=depth, scope=(tenant_id, bank.id, scope_key(request.scope))
                    )
                if not scanned and embedding is not None:
                    vector = await embedding
            finally:
                if embedding is not None and not embedding.done():
                    embedding.cancel()
            if vector is not None:
                partition = {
                    "tenant_id": str(tenant_id), "bank_id": str(bank.id), "scope_key": scope_key(request.scope)
                }
                flt = self._live_filter(now, request.filters)
                if self._external is not None:
                    hits = await self._external.search(
                        collection=VECTOR_COLLECTION, partition=partition, vector=vector,
                        limit=max(depth, SIMILARITY_DEPTH) if hybrid else depth, filter=flt
                    )
                else:
                    hits = await store.vector_search(
                        self._sql_index, partition=partition, vector=vector,
                        limit=max(depth, SIMILARITY_DEPTH) if hybrid else depth, filter=flt
                    )
                similar = [(UUID(h.id), h.score) for h in hits]
            ranked: list[tuple[UUID, float, dict[str, float]]] = []
            if hybrid:
                ranked = await self._rerank(
                    db, tenant_id, bank, request, query, where, similar, keyword, now, timeline, timeline_key
                )
                ids = [i for i, _, _ in ranked[: request.top_k]]
            else:
                ids = list(dict.fromkeys([i for i, _ in similar] + [i for i, _ in keyword]))
            if hybrid and self._db.is_postgres:
                picked = await (await store.plain()).columns_by_ids(tenant_id=tenant_id, ids=ids)
            else:
                # Only rank fusion (`rrf_k`) scores rows by their stored vector; the rest skip loading it.
                fused = request.mode == "hybrid" and not hybrid
                rows = {r.id: r for r in await store.get_many(tenant_id=tenant_id, ids=ids, embedding=fused)}
        if hybrid and self._db.is_postgres:
            return _ranked_response(ranked[: request.top_k], picked, now)
        if hybrid:
            rows = {i: r for i, r in rows.items() if not r.is_deleted and not _expired(r, now)}
            return RetrieveResponse(memories=[
                RetrievedMemory(memory=memory_model(rows[i]), score=score, scores=scores)
                for i, score, scores in ranked[: request.top_k] if i in rows
            ])
        rows = {i: r for i, r in rows.items() if not r.is_deleted and not _expired(r, now)}
        similar = [(i, s) for i, s in similar if i in rows]
        keyword = [(i, s) for i, s in keyword if i in rows]
        return self._rank(request, rows, similar, keyword, vector, now)

    async def _rerank(
        self,
        db: AsyncSession | None,
        tenant_id: UUID,
        bank: MemoryBank,
        request: RetrieveRequest,
        query: str,
        where: Callable[[], Sequence[ColumnElement[bool]]],
        similar: list[tuple[UUID, float]],
        keyword: list[tuple[UUID, float]],
        now: datetime,
        timeline: Timeline[UUID] | None,
        timeline_key: Hashable,
    ) -> list[tuple[UUID, float, dict[str, float]]]:
        """Hybrid: fuse the signals with neighbour, session and time context (core/search/rerank.py)."""
        config = bank.retrieval_config.rerank_config()
        if timeline is None:
            assert db is not None, "a rerank without a timeline reads it"
            timeline = await scope_timeline(
                db, table=MemoryRow.__table__, where=where(), session_gap=config.session_gap
            )
            self._timelines.put(timeline_key, timeline)
        first = [i for i, _ in similar[:RERANK_DEPTH]] + [i for i, _ in keyword]
        candidates = timeline.around(first, config.radius)
        boosted = bool(request.recency_weight or request.confidence_weight)
        sim, kw = dict(similar), dict(keyword)
        reranked = rerank(
            candidates, similarity=sim, keyword=kw, timeline=timeline,
            windows=time_windows(query, now=now), config=config, limit=None if boosted else request.top_k,
        )
        confidence: dict[UUID, float] = {}
        if request.confidence_weight:
            assert db is not None, "a confidence boost reads the candidates' confidence"
            rows = await MemoryStore(db).get_many(tenant_id=tenant_id, ids=[r.id for r in reranked])
            confidence = {row.id: row.confidence for row in rows}
        half_life = parse_duration(request.recency_half_life)
        out = []
        for r in reranked:
            score = r.score  # in standard deviations of the candidates' scores: boosts add
            if request.recency_weight:
                score += request.recency_weight * recency_decay(timeline.time[r.id], now=now, half_life=half_life)
            if request.confidence_weight:
                score -= request.confidence_weight * (1 - confidence.get(r.id, 1.0))
            scores = {"similarity": sim.get(r.id, 0.0), "keyword": kw.get(r.id, 0.0), "session": r.session,
                      "time": r.time}
            out.append((r.id, score, scores))
        out.sort(key=lambda t: -t[1])
        return out

    async def _hybrid_pg(
        self,
        tenant_id: UUID,
        bank: MemoryBank,
        request: RetrieveRequest,
        query: str,
        now: datetime,
        depth: int,
        embedding: asyncio.Future[np.ndarray],
    ) -> RetrieveResponse | None:
        """`hybrid` on PostgreSQL for a scope of at most `SCOPE_SCAN_CAP` memories, on one pooled
        connection and no ORM session: one statement reads the scope (timeline, BM25, and vectors or
        cosines), the reranker orders it, a second reads the winners whole.

        A query alone in this process reads the scope while it is embedded (in a worker thread) and
        computes the cosines from the vectors read: the shortest latency. While other hybrid
        queries are in flight, the CPUs are the limit: the query is embedded first and PostgreSQL
        computes the cosines, which spares sending, decoding and comparing every vector (about
        0.5 ms of CPU per query, 12% more queries per second with 8 callers; docs/benchmarks.md).

        None: the general path answers (a big scope, a query of stop words only, which the trigram
        fallback ranks, a confidence boost, which reads every candidate, an external vector index).
        """
        if not self._scans_scope or request.confidence_weight or self._is_big_scope(tenant_id, bank, request):
            return None
        alone = self._pg_hybrids_in_flight == 0
        self._pg_hybrids_in_flight += 1
        try:
            # Busy: embed before taking a connection, so that none is held while waiting.
            vector = None if alone else await embedding
            async with self._db.driver_connection() as conn:
                reads = PgRetrieval(conn)
                scan = await self._read_scope(reads, tenant_id, bank, request, query, now, vector=vector)
                if scan is None:
                    return None
                ranked = _rank_scan(
                    bank, request, query, now, scan, await embedding if vector is None else vector, depth
                )
                if ranked is None:
                    return None
                picked = await reads.columns_by_ids(tenant_id=tenant_id, ids=[i for i, _, _ in ranked])
        finally:
            self._pg_hybrids_in_flight -= 1
        return _ranked_response(ranked, picked, now)

    async def _hybrid_sqlite(
        self,
        tenant_id: UUID,
        bank: MemoryBank,
        request: RetrieveRequest,
        query: str,
        now: datetime,
        depth: int,
        embedding: asyncio.Future[np.ndarray],
        where: Callable[[], Sequence[ColumnElement[bool]]],
    ) -> RetrieveResponse | None:
        """`hybrid` on SQLite for a scope of at most `SCOPE_SCAN_CAP` memories: one read of the scope
        (time order, vectors, and the texts when its `TermIndex` is not cached) while the query is
        embedded, BM25 from the scope's `TermIndex`, ranked in arrays (`_rank_scope`), then the
        winners read whole.

        None: the general path answers (a big scope; a query that the term index does not answer,
        which FTS5 ranks: phrases, `-word`, only stop words; a confidence boost).
        """
        if not self._scans_scope or request.confidence_weight or self._is_big_scope(tenant_id, bank, request):
            return None
        wanted, unwanted = parse_web_query(query)
        if unwanted or any(len(group) > 1 for group in wanted) or not analyse(query):
            return None
        _, key = await self._cached_timeline(tenant_id, bank, request)  # the key of the scope's generation
        async with self._db.read() as db:
            store = MemoryStore(db)
            index = self._term_indexes.get(key)
            rows = await store.scope_rows(where=where(), cap=SCOPE_SCAN_CAP, with_text=index is None)
            if rows is None:
                self._mark_big_scope(tenant_id, bank, request)
                return None
            if index is None:
                index = TermIndex.build([(r.id, r.fact or "") for r in rows])
                self._term_indexes.put(key, index)
            vector = np.asarray(await embedding)
            model = self.embeddings.model
            similarity = np.full(len(rows), np.nan)
            usable = [k for k, r in enumerate(rows) if r.embedding is not None and r.embedding_model == model
                      and len(r.embedding) == len(vector)]
            if usable:
                similarity[usable] = np.stack([rows[k].embedding for k in usable]) @ vector  # type: ignore[misc]
            position = {r.id: k for k, r in enumerate(rows)}
            matched = sorted(
                ((position[i], score) for i, score in index.score(query).items() if i in position),
                key=lambda p: -p[1],
            )[:depth]
            ranked = _rank_scope(
                bank, request, query, now, ids=[r.id for r in rows],
                micros=np.array([micros(r.time) for r in rows], dtype=np.int64),
                similarity=similarity, hits=np.array([k for k, _ in matched], dtype=np.int64),
                hit_scores=np.array([v for _, v in matched], dtype=np.float64),
            )
            found = await store.get_many(tenant_id=tenant_id, ids=[i for i, _, _ in ranked], embedding=False)
        live = {r.id: r for r in found if not r.is_deleted and not _expired(r, now)}
        return RetrieveResponse(memories=[
            RetrievedMemory(memory=memory_model(live[i]), score=score, scores=scores)
            for i, score, scores in ranked if i in live
        ])

    async def _read_scope(
        self,
        reads: PgRetrieval,
        tenant_id: UUID,
        bank: MemoryBank,
        request: RetrieveRequest,
        query: str,
        now: datetime,
        *,
        vector: np.ndarray | None = None,
    ) -> ScopeScan | None:
        """Read a small scope whole in one statement (PostgreSQL), with the cosines to `vector` if
        given (else the vectors); None for a big one (remembered)."""
        scan = await reads.scope_scan(
            _scope_read(tenant_id, bank, request, now), model=self.embeddings.model, query=query,
            cap=SCOPE_SCAN_CAP, vector=vector,
        )
        if scan is None:
            self._mark_big_scope(tenant_id, bank, request)
        return scan

    @staticmethod
    def _scan_parts(
        bank: MemoryBank, scan: ScopeScan, vector: np.ndarray, depth: int, timeline: Timeline[UUID] | None
    ) -> tuple[Timeline[UUID], list[tuple[UUID, float]], list[tuple[UUID, float]] | None]:
        """A scope scan as the reranker takes it: the timeline (`timeline` if cached), every
        memory's similarity to the query's `vector` and the best `depth` keyword hits, best first
        (None when the query has no lexeme: the trigram fallback ranks)."""
        if timeline is None:
            gap = bank.retrieval_config.rerank_config().session_gap
            timeline = Timeline.build(zip(scan.ids, scan.times, strict=True), session_gap=gap)
        similarities = zip(scan.ids, scan.similarity(vector).tolist(), strict=True)
        similar = sorted(((i, s) for i, s in similarities if s == s), key=lambda p: -p[1])  # s != s: NaN
        keyword = sorted(
            ((i, k) for i, k in zip(scan.ids, scan.keyword.tolist(), strict=True) if k == k), key=lambda p: -p[1]
        )[:depth]  # k != k: NaN, no match
        return timeline, similar, keyword if keyword or scan.has_words else None

    async def _similar(
        self, tenant_id: UUID, bank: MemoryBank, request: RetrieveRequest, query: str, now: datetime
    ) -> RetrieveResponse:
        """`similarity` on PostgreSQL: the nearest memories, whole, in one statement (`PG_SIMILAR`)."""
        vector = await self.embeddings.embed_one(query)
        async with self._db.driver_connection() as conn:
            rows = await PgRetrieval(conn).similar_rows(
                _scope_read(tenant_id, bank, request, now), vector=vector, model=self.embeddings.model,
                limit=request.top_k,
            )
        return RetrieveResponse(memories=[
            RetrievedMemory(memory=_memory_from_columns(r), score=r["score"], scores={"similarity": r["score"]})
            for r in rows
        ])

    async def _keyword(
        self, tenant_id: UUID, bank: MemoryBank, request: RetrieveRequest, query: str, now: datetime
    ) -> RetrieveResponse | None:
        """`keyword` on PostgreSQL in one statement (`PG_KEYWORD`); None when nothing matches, so that
        the indexed path can try its trigram fallback (a query of only stop words)."""
        async with self._db.driver_connection() as conn:
            rows = await PgRetrieval(conn).keyword_rows(
                _scope_read(tenant_id, bank, request, now), query=query, limit=request.top_k
            )
        if not rows:
            return None
        return RetrieveResponse(memories=[
            RetrievedMemory(memory=_memory_from_columns(r), score=r["score"], scores={"keyword": r["score"]})
            for r in rows
        ])

    async def _scan_scope_sqlite(
        self,
        store: MemoryStore,
        tenant_id: UUID,
        bank: MemoryBank,
        request: RetrieveRequest,
        query: str,
        embedding: Awaitable[np.ndarray],
        depth: int,
        where: Callable[[], Sequence[ColumnElement[bool]]],
        key: Hashable,
    ) -> tuple[Timeline[UUID], list[tuple[UUID, float]], list[tuple[UUID, float]] | None] | None:
        """SQLite's scope scan: the scope's rows in one read (while the query is embedded), cosine with
        numpy, keywords by BM25 over the scope's own statistics (`TermIndex`, cached per write
        generation like the timeline).

        The keyword hits are None for what the index does not answer (phrases, `-word`, a query of
        only stop words): FTS5 ranks those.
        """
        index = self._term_indexes.get(key)
        rows = await store.scope_rows(where=where(), cap=SCOPE_SCAN_CAP, with_text=index is None)
        if rows is None:
            self._mark_big_scope(tenant_id, bank, request)
            return None
        if index is None:
            index = TermIndex.build([(r.id, r.fact or "") for r in rows])
            self._term_indexes.put(key, index)
        gap = bank.retrieval_config.rerank_config().session_gap
        timeline = Timeline.build(((r.id, r.time) for r in rows), session_gap=gap)
        vector = await embedding
        model = self.embeddings.model
        usable = [r for r in rows if r.embedding is not None and r.embedding_model == model
                  and len(r.embedding) == len(vector)]
        similar: list[tuple[UUID, float]] = []
        if usable:
            scores = np.stack([r.embedding for r in usable if r.embedding is not None]) @ np.asarray(vector)
            similar = sorted(((r.id, float(x)) for r, x in zip(usable, scores, strict=True)), key=lambda p: -p[1])
        wanted, unwanted = parse_web_query(query)
        if unwanted or any(len(group) > 1 for group in wanted) or not analyse(query):
            return timeline, similar, None
        present = set(timeline.position)
        hits = [(i, s) for i, s in index.score(query).items() if i in present]
        return timeline, similar, sorted(hits, key=lambda p: -p[1])[:depth]

    def _is_big_scope(self, tenant_id: UUID, bank: MemoryBank, request: RetrieveRequest) -> bool:
        """Whether a recent scope scan found more than `SCOPE_SCAN_CAP` memories here (then: no scan)."""
        key = (tenant_id, bank.id, scope_key(request.scope))
        seen = self._big_scopes.get(key)
        if seen is None:
            return False
        if time.monotonic() - seen > BIG_SCOPE_TTL:
            del self._big_scopes[key]
            return False
        return True

    def _mark_big_scope(self, tenant_id: UUID, bank: MemoryBank, request: RetrieveRequest) -> None:
        """Remember that this scope holds more than `SCOPE_SCAN_CAP` memories (at most 10,000 scopes)."""
        self._big_scopes[(tenant_id, bank.id, scope_key(request.scope))] = time.monotonic()
        while len(self._big_scopes) > 10_000:
            self._big_scopes.pop(next(iter(self._big_scopes)))

    async def _cached_timeline(
        self, tenant_id: UUID, bank: MemoryBank, request: RetrieveRequest
    ) -> tuple[Timeline[UUID] | None, Hashable]:
        """Return the scope's cached timeline (None if not cached) and the key to cache it under.

        The scope's generation moves on every write: a cached timeline is never stale. The bank's
        session gap cuts the timeline, so a changed gap makes a new one.
        """
        gap = bank.retrieval_config.rerank_config().session_gap
        generation = await self._cache.get(_scope_generation_key(tenant_id, request.scope)) or "0"
        key = (tenant_id, bank.id, scope_key(request.scope), generation, request.filters.model_dump_json(), gap)
        return self._timelines.get(key), key

    def _rank(
        self,
        request: RetrieveRequest,
        rows: Mapping[UUID, MemoryRow],
        similar: list[tuple[UUID, float]],
        keyword: list[tuple[UUID, float]],
        vector: np.ndarray | None,
        now: datetime,
        revisions: Mapping[UUID, MemoryRevisionRow] | None = None,
    ) -> RetrieveResponse:
        sim, kw = dict(similar), dict(keyword)
        results: list[RetrievedMemory] = []

        def model(i: UUID) -> Memory:
            return memory_model(rows[i], (revisions or {}).get(i))

        if request.mode == "similarity":
            for i, score in similar[: request.top_k]:
                results.append(RetrievedMemory(memory=model(i), score=score, scores={"similarity": score}))
        elif request.mode == "keyword":
            for i, score in keyword[: request.top_k]:
                results.append(RetrievedMemory(memory=model(i), score=score, scores={"keyword": score}))
        else:
            fused = fuse(
                {"similarity": [i for i, _ in similar], "keyword": [i for i, _ in keyword]},
                k=request.rrf_k,
                now=now,
                times={i: r.created_at for i, r in rows.items()},
                recency_weight=request.recency_weight,
                half_life=parse_duration(request.recency_half_life),
                confidences={i: r.confidence for i, r in rows.items()},
                confidence_weight=request.confidence_weight,
            )
            for f in fused[: request.top_k]:
                similarity = sim.get(f.id)
                if similarity is None and vector is not None and rows[f.id].embedding is not None:
                    similarity = float(np.dot(np.asarray(rows[f.id].embedding), vector))
                scores = {"similarity": similarity or 0.0, "keyword": kw.get(f.id, 0.0), "rrf": f.rrf}
                results.append(RetrievedMemory(memory=model(f.id), score=f.score, scores=scores))
        return RetrieveResponse(memories=results)

    async def _newest(
        self, tenant_id: UUID, bank: MemoryBank, request: RetrieveRequest, now: datetime
    ) -> RetrieveResponse:
        """No query: the scope's newest memories (Memory Bank semantics), through the scope cache."""
        f = request.filters
        plain = not (f.topics or f.min_confidence is not None or f.event_time_after or f.event_time_before)
        memories: list[Memory] = []
        if plain:
            memories = await self._scope_newest(tenant_id, bank.id, request.scope, now, request.top_k)
        else:
            where = [*in_scope(tenant_id=tenant_id, bank_id=bank.id, scope_key=scope_key(request.scope))]
            where += self._filter_clauses(f, now)
            async with self._db.read() as db:
                rows = await MemoryStore(db).list_rows(
                    tenant_id=tenant_id, bank_id=bank.id, where=where, after=None, limit=request.top_k
                )
            memories = [memory_model(r) for r in rows]
        return RetrieveResponse(
            memories=[RetrievedMemory(memory=m, score=0.0, scores={}) for m in memories[: request.top_k]]
        )

    async def _scope_newest(
        self, tenant_id: UUID, bank_id: UUID, scope: Mapping[str, str], now: datetime, limit: int
    ) -> list[Memory]:
        """Return the scope's `limit` newest live memories: ids from `scope_memories:…`, bodies from `memory:{id}`."""
        generation = await self._cache.get(_scope_generation_key(tenant_id, scope)) or "0"
        key = _scope_list_key(tenant_id, bank_id, scope, generation)
        raw = await self._cache.get(key)
        if raw is not None:
            ids = [UUID(i) for i in json.loads(raw)]
        else:
            where = [*in_scope(tenant_id=tenant_id, bank_id=bank_id, scope_key=scope_key(scope)), live(now)]
            async with self._db.read() as db:
                ids = await MemoryStore(db).newest_ids(tenant_id=tenant_id, where=where, limit=SCOPE_CACHE_SIZE)
            await self._cache.set(key, json.dumps([str(i) for i in ids]), ttl=SCOPE_CACHE_TTL, version=0)
        result: list[Memory] = []
        step = max(2 * limit, 20)
        for start in range(0, len(ids), step):
            batch = ids[start : start + step]
            found: dict[UUID, Memory] = {}
            values = await self._cache.get_many([_memory_key(i) for i in batch])
            for memory_id, value in zip(batch, values, strict=True):
                memory = _parse_snapshot(value, tenant_id) if value is not None else None
                if memory is not None:
                    found[memory_id] = memory
            missing = [i for i in batch if i not in found]
            if missing:
                async with self._db.read() as db:
                    rows = await MemoryStore(db).get_many(tenant_id=tenant_id, ids=missing)
                for row in rows:
                    found[row.id] = memory_model(row)
                    await self._cache.set(_memory_key(row.id), self._snapshot(row), ttl=self._ttl, version=row.revision)
            for memory_id in batch:
                memory = found.get(memory_id)
                if memory is not None and _is_live(memory, now):
                    result.append(memory)
                    if len(result) == limit:
                        return result
        return result

    async def _retrieve_as_of(
        self, tenant_id: UUID, bank: MemoryBank, request: RetrieveRequest, query: str, now: datetime
    ) -> RetrieveResponse:
        """Rank what was true at `as_of`: the revisions then in force, scored in memory."""
        assert request.filters.as_of is not None
        when = as_utc(request.filters.as_of)
        f = request.filters
        where: list[ColumnElement[bool]] = [MemoryRow.scope_key == scope_key(request.scope)]
        if f.topics:
            where.append(MemoryRevisionRow.topic.in_(f.topics))
        if f.min_confidence is not None:
            where.append(MemoryRevisionRow.confidence >= _confidence_floor(f.min_confidence))
        if f.event_time_after is not None:
            where.append(MemoryRow.event_time >= f.event_time_after)
        if f.event_time_before is not None:
            where.append(MemoryRow.event_time < f.event_time_before)
        async with self._db.read() as db:
            pairs = await MemoryStore(db).as_of(
                tenant_id=tenant_id, bank_id=bank.id, when=when, where=where, after=None, limit=SCOPE_CACHE_SIZE
            )
        rows = {m.id: m for m, _ in pairs}
        revisions = {m.id: r for m, r in pairs}
        if not query:
            memories = [
                RetrievedMemory(memory=memory_model(m, r), score=0.0, scores={}) for m, r in pairs[: request.top_k]
            ]
            return RetrieveResponse(memories=memories)
        ids = list(rows)
        facts = [revisions[i].fact for i in ids]
        vector = None
        similar: list[tuple[UUID, float]] = []
        keyword: list[tuple[UUID, float]] = []
        if request.mode != "keyword" and ids:
            vector = await self.embeddings.embed_one(query)
            matrix = await self.embeddings.embed(facts)
            scores = matrix @ vector
            similar = sorted(zip(ids, (float(s) for s in scores), strict=True), key=lambda p: (-p[1], str(p[0])))
        if request.mode != "similarity" and ids:
            bm25 = bm25_scores(query, facts)
            keyword = sorted(
                ((i, s) for i, s in zip(ids, bm25, strict=True) if s > 0), key=lambda p: (-p[1], str(p[0]))
            )
        return self._rank(request, rows, similar, keyword, vector, now, revisions)

    # == import / export / re-embed / TTL =======================================================

    async def import_memories(
        self,
        *,
        tenant_id: UUID,
        lines: Sequence[str],
        bank_id: UUID | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ImportResult:
        """Import JSONL memories (source_type `imported`), all or nothing; errors name `line N: field`."""
        bank = await self._shared_bank(tenant_id, bank_id)
        if not bank.is_active:
            raise Conflict(f"memory bank {bank.id} is inactive; it accepts no new memories")
        parsed, errors = self._parse_import(bank, lines)
        if errors:
            error = Invalid("body", f"{len(errors)} problems; nothing was imported")
            error.errors = errors
            error.detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5]) + (
                f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
            ) + "; nothing was imported"
            raise error
        total = len(parsed)
        vectors: list[np.ndarray] = []
        for start in range(0, total, EMBED_BATCH):
            batch = await self.embeddings.embed([item.fact for item in parsed[start : start + EMBED_BATCH]])
            vectors.extend(batch)
            if progress is not None:
                progress(min(start + EMBED_BATCH, total), total)
        ids: list[UUID] = []
        scopes: dict[str, tuple[dict[str, str], list[UUID]]] = {}
        rows: list[MemoryRow] = []
        revisions: list[MemoryRevisionRow] = []
        for item, vector in zip(parsed, vectors, strict=True):
            row, revision = self._new_memory(
                tenant_id=tenant_id, bank=bank, scope=item.scope, fact=item.fact, topic=item.topic,
                confidence=item.confidence, embedding=vector, source_type="imported", source_session_id=None,
                event_time=item.event_time or item.created_at, metadata=item.metadata, extracted_memories=None,
                ttl_kind="create", expires_at=item.expires_at,
            )
            rows.append(row)
            if revision is not None:
                revisions.append(revision)
            ids.append(row.id)
            scopes.setdefault(row.scope_key, (dict(item.scope), []))[1].append(row.id)
        async with self._db.write() as db:
            with db_errors("import"):
                db.add_all(rows)  # one multi-row INSERT per table, memories first
                await db.flush()
                db.add_all(revisions)
                await db.flush()
        for scope, scope_ids in scopes.values():
            await self.invalidate(tenant_id=tenant_id, memory_ids=scope_ids, scope=scope)
        return ImportResult(imported=len(ids), ids=ids)

    def _parse_import(self, bank: MemoryBank, lines: Sequence[str]) -> tuple[list[ImportLine], list[FieldError]]:
        parsed: list[ImportLine] = []
        errors: list[FieldError] = []
        now = utcnow()
        numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
        if len(numbered) > MAX_IMPORT_LINES:
            raise Invalid("body", f"at most {MAX_IMPORT_LINES} memories per import, got {len(numbered)}")
        if not numbered:
            raise Invalid("body", "no memories: send one JSON object per line")
        for n, line in numbered:
            try:
                item = ImportLine.model_validate_json(line)
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err.get("loc", ())) or "line"
                    message = str(err.get("msg", "invalid"))
                    if err.get("type") == "json_invalid":
                        loc, message = "line", "malformed JSON"
                    errors.append(FieldError(f"line {n}: {loc}", message))
                continue
            try:
                self._check_write(bank, item.scope, item.topic, fact=item.fact, confidence=item.confidence, prefix="")
                if item.expires_at is not None and as_utc(item.expires_at) <= now:
                    raise Invalid("expires_at", "is in the past")
            except Invalid as exc:
                errors.extend(FieldError(f"line {n}: {e.field}", e.message) for e in exc.errors)
                continue
            parsed.append(item)
        return parsed, errors

    async def export_memories(
        self, *, tenant_id: UUID, bank_id: UUID | None = None, scope: Mapping[str, str] | None = None
    ) -> AsyncIterator[Memory]:
        """Yield the live memories of a bank (of one scope when given), newest first."""
        resolved = await self._read_bank_id(tenant_id, bank_id)
        if resolved is None:
            return
        after: tuple[datetime, UUID] | None = None
        while True:
            where = [live(utcnow())]
            if scope is not None:
                where.append(MemoryRow.scope_key == scope_key(scope))
            async with self._db.read() as db:
                rows = await MemoryStore(db).list_rows(
                    tenant_id=tenant_id, bank_id=resolved, where=where, after=after, limit=500
                )
            for row in rows:
                yield memory_model(row)
            if len(rows) < 500:
                return
            after = (rows[-1].created_at, rows[-1].id)

    async def reembed_bank(
        self,
        *,
        tenant_id: UUID,
        bank_id: UUID | None = None,
        batch_size: int = EMBED_BATCH,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Re-embed every memory of a bank with the current model (after a model change); return how many."""
        bank = await self._shared_bank(tenant_id, bank_id)
        provider = self.embeddings
        async with self._db.read() as db:
            total = await MemoryStore(db).count(tenant_id=tenant_id, bank_id=bank.id)
        done = 0
        after: UUID | None = None
        while True:
            async with self._db.read() as db:
                page = await MemoryStore(db).bank_page(
                    tenant_id=tenant_id, bank_id=bank.id, after=after, limit=batch_size
                )
            if not page:
                break
            vectors = await provider.embed([fact for _, fact in page])
            async with self._db.write() as db:
                fresh = dict(zip([i for i, _ in page], vectors, strict=True))
                await MemoryStore(db).set_embeddings(tenant_id=tenant_id, vectors=fresh, model=provider.model)
            done += len(page)
            after = page[-1][0]
            if progress is not None:
                progress(done, total)
        async with self._db.write() as db:
            row = await MemoryStore(db).get_bank(tenant_id=tenant_id, bank_id=bank.id)
            if row is not None:
                row.similarity_search_config = {
                    **row.similarity_search_config,
                    "embedding_model": provider.model,
                    "vector_size": provider.dimension or None,
                }
                row.updated_at = utcnow()
                await db.flush()
                written: MemoryBank | None = bank_model(row)
            else:
                written = None
            keys = await MemoryStore(db).bank_memory_keys(tenant_id=tenant_id, bank_id=bank.id)
        if written is not None:
            await self._bank_written(tenant_id, written)
        by_scope: dict[str, tuple[dict[str, str], list[UUID]]] = {}
        for memory_id, scope in keys:
            by_scope.setdefault(scope_key(scope), (scope, []))[1].append(memory_id)
        for scope, ids in by_scope.values():
            await self.invalidate(tenant_id=tenant_id, memory_ids=ids, scope=scope)
        return done

    async def expire_memories(self, *, now: datetime | None = None, batch: int = 500) -> int:
        """Soft-delete every memory past its `expires_at`, each with a DELETED revision (reason `ttl`)."""
        total = 0
        while True:
            at = now or utcnow()
            done: list[tuple[UUID, UUID, dict[str, str]]] = []
            async with self._db.write() as db:
                for tenant_id, memory_id in await MemoryStore(db).expired(now=at, limit=batch):
                    row = await MemoryStore(db).get(tenant_id=tenant_id, memory_id=memory_id)
                    assert row is not None
                    row = await self.write_delete(
                        db, tenant_id=tenant_id, memory_id=memory_id, reason="ttl", at=row.expires_at
                    )
                    done.append((tenant_id, memory_id, dict(row.scope)))
            for tenant_id, memory_id, scope in done:
                await self.invalidate(tenant_id=tenant_id, memory_ids=[memory_id], scope=scope)
            total += len(done)
            if len(done) < batch:
                return total

    # == helpers ================================================================================

    def _check_scope(self, bank: MemoryBank, scope: Mapping[str, str], field: str) -> None:
        problem = scope_problem(scope)
        if problem:
            raise Invalid(field, problem)
        missing = [k for k in bank.scope_keys if k not in scope]
        if missing:
            raise Invalid(
                field,
                f"memory bank {bank.name!r} requires the scope keys {bank.scope_keys}; "
                f"{describe_scope(scope)} lacks {missing}",
            )
        if len(scope_key(scope).encode()) > MAX_SCOPE_KEY_BYTES:
            raise Invalid(field, f"the scope is longer than {MAX_SCOPE_KEY_BYTES} bytes as JSON")

    def _check_write(
        self,
        bank: MemoryBank,
        scope: Mapping[str, str],
        topic: str,
        *,
        fact: str,
        confidence: float,
        prefix: str = "body.",
        scope_checked: bool = False,
    ) -> None:
        if not bank.is_active:
            raise Conflict(f"memory bank {bank.id} is inactive; it accepts no new memories")
        if not scope_checked:
            self._check_scope(bank, scope, f"{prefix}scope")
        if not fact or len(fact) > 2000:
            raise Invalid(f"{prefix}fact", "must be 1 to 2000 characters")
        if not 0.0 <= confidence <= 1.0:
            raise Invalid(f"{prefix}confidence", "must be between 0 and 1")
        if not bank.allows_topic(topic):
            raise self._unknown_topic(bank, topic, f"{prefix}topic")

    @staticmethod
    def _unknown_topic(bank: MemoryBank, topic: str, field: str) -> Invalid:
        return Invalid(field, f"unknown topic {topic!r}; memory bank {bank.name!r} has {bank.topic_labels()}")

    @staticmethod
    def _explicit_expiry(expires_at: datetime | None, ttl: str | None) -> datetime | None:
        if expires_at is not None:
            if as_utc(expires_at) <= utcnow():
                raise Invalid("body.expires_at", "must be in the future")
            return as_utc(expires_at)
        if ttl is not None:
            return utcnow() + parse_duration(ttl)
        return None

    def _live_filter(self, now: datetime, f: RetrieveFilters) -> VectorFilter:
        at_least: dict[str, float | datetime] = {}
        before: dict[str, float | datetime] = {}
        if f.min_confidence is not None:
            at_least["confidence"] = _confidence_floor(f.min_confidence)
        if f.event_time_after is not None:
            at_least["event_time"] = as_utc(f.event_time_after)
        if f.event_time_before is not None:
            before["event_time"] = as_utc(f.event_time_before)
        return VectorFilter(
            equals={"is_deleted": False, "embedding_model": self.embeddings.model},
            any_of={"topic": list(f.topics)} if f.topics else {},
            at_least=at_least,
            before=before,
            unset_or_after={"expires_at": now},
        )

    @staticmethod
    def _filter_clauses(f: RetrieveFilters, now: datetime) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = [live(now)]
        if f.topics:
            where.append(MemoryRow.topic.in_(f.topics))
        if f.min_confidence is not None:
            where.append(MemoryRow.confidence >= _confidence_floor(f.min_confidence))
        if f.event_time_after is not None:
            where.append(MemoryRow.event_time >= f.event_time_after)
        if f.event_time_before is not None:
            where.append(MemoryRow.event_time < f.event_time_before)
        return where

    @staticmethod
    def _revision(
        row: MemoryRow,
        action: str,
        now: datetime,
        source_session_id: UUID | None,
        extracted: Sequence[str] | None,
        metadata: JSON,
        valid_from: datetime,
    ) -> MemoryRevisionRow:
        return MemoryRevisionRow(
            tenant_id=row.tenant_id,
            memory_id=row.id,
            revision_number=row.revision,
            fact=row.fact,
            topic=row.topic,
            action=action,
            source_session_id=source_session_id,
            extracted_memories=list(extracted) if extracted is not None else None,
            confidence=row.confidence,
            metadata_=metadata,
            created_at=now,
            valid_from=valid_from,
            valid_to=None,
        )

    @staticmethod
    def _snapshot(row: MemoryRow) -> str:
        return json.dumps({"tenant_id": str(row.tenant_id), "memory": memory_model(row).model_dump(mode="json")})

    async def _cached(self, tenant_id: UUID, memory_id: UUID) -> Memory | None:
        raw = await self._cache.get(_memory_key(memory_id))
        if raw is not None:
            value = json.loads(raw)
            if value.get("tombstone"):
                return None
            return _parse_snapshot(raw, tenant_id)
        async with self._db.read() as db:
            row = await MemoryStore(db).get(tenant_id=tenant_id, memory_id=memory_id)
        if row is None:
            return None
        await self._cache.set(_memory_key(memory_id), self._snapshot(row), ttl=self._ttl, version=row.revision)
        return memory_model(row)

    async def _read_row(self, tenant_id: UUID, memory_id: UUID) -> MemoryRow:
        async with self._db.read() as db:
            row = await MemoryStore(db).get(tenant_id=tenant_id, memory_id=memory_id)
        if row is None or row.is_deleted or _expired(row, utcnow()):
            raise NotFound("memory", memory_id)
        return row

    async def _read_bank(self, tenant_id: UUID, bank_id: UUID | None) -> MemoryBank | None:
        """Return a bank for a read: a given one (404 if not the tenant's), or the default one if it exists."""
        if bank_id is not None:
            return await self._shared_bank(tenant_id, bank_id)
        pointer = _default_bank_key(tenant_id)
        known = await self._cache.get(pointer)
        if known is not None:
            bank = await self._cached_bank(tenant_id, UUID(known))
            if bank is not None and bank.name == DEFAULT_BANK:
                return bank
        async with self._db.read() as db:
            row = await MemoryStore(db).find_bank(tenant_id=tenant_id, name=DEFAULT_BANK)
        if row is None:
            return None
        await self._cache.set(pointer, str(row.id), ttl=DEFAULT_BANK_CACHE_TTL, version=0)
        return bank_model(row)

    async def _read_bank_id(self, tenant_id: UUID, bank_id: UUID | None) -> UUID | None:
        bank = await self._read_bank(tenant_id, bank_id)
        return bank.id if bank is not None else None


def _scope_read(tenant_id: UUID, bank: MemoryBank, request: RetrieveRequest, now: datetime) -> ScopeRead:
    """The memories a retrieval reads, as the plain statements take them (times in UTC)."""
    f = request.filters
    return ScopeRead(
        tenant_id, bank.id, scope_key(request.scope), now,
        ScanFilters(
            f.topics,
            None if f.min_confidence is None else _confidence_floor(f.min_confidence),
            None if f.event_time_after is None else as_utc(f.event_time_after),
            None if f.event_time_before is None else as_utc(f.event_time_before),
        ),
    )


def _memory_from_columns(r: Any) -> Memory:
    """The API model of a memory read as plain columns (a record of `PG_SIMILAR` and the other plain
    statements: core/db/plain.py), as `memory_model` does."""
    return Memory(
        id=r["id"], bank_id=r["bank_id"], scope=_json_object(r["scope"]), fact=r["fact"], topic=r["topic"],
        confidence=_confidence(r["confidence"]), source_session_id=r["source_session_id"],
        source_type=r["source_type"], metadata=_json_object(r["metadata"]), event_time=r["event_time"],
        created_at=r["created_at"], updated_at=r["updated_at"], expires_at=r["expires_at"],
        revision_count=r["revision_count"], revision=r["revision"], is_deleted=r["is_deleted"],
        embedding_model=r["embedding_model"], valid_from=r["valid_from"], valid_to=r["valid_to"],
    )


def _rank_scan(
    bank: MemoryBank,
    request: RetrieveRequest,
    query: str,
    now: datetime,
    scan: ScopeScan,
    vector: np.ndarray,
    depth: int,
) -> list[tuple[UUID, float, dict[str, float]]] | None:
    """`hybrid` over a PostgreSQL scope scan (`_hybrid_pg`): `_rank_scope` of its BM25 scores and
    cosines; None when the query has no lexeme (only stop words: the trigram fallback ranks)."""
    keyword = scan.keyword
    matched = np.flatnonzero(~np.isnan(keyword))
    if not len(matched) and not scan.has_words:
        return None
    hits = matched[np.argsort(-keyword[matched], kind="stable")[:depth]]
    return _rank_scope(
        bank, request, query, now, ids=scan.ids, micros=scan.micros, similarity=scan.similarity(vector),
        hits=hits, hit_scores=keyword[hits],
    )


def _rank_scope(
    bank: MemoryBank,
    request: RetrieveRequest,
    query: str,
    now: datetime,
    *,
    ids: Sequence[UUID],
    micros: np.ndarray,
    similarity: np.ndarray,
    hits: np.ndarray,
    hit_scores: np.ndarray,
) -> list[tuple[UUID, float, dict[str, float]]]:
    """`hybrid` over a scope read whole, in time order: the best `request.top_k` memories with their
    score and its parts, as `MemoryService._rerank` ranks them, in arrays (`rerank_scope`).

    `micros`: each memory's time in microseconds since the epoch; `similarity`: its cosine to the
    query (NaN: no vector to compare); `hits`: the positions of the best keyword matches, best
    first (at most the candidate depth), with their `hit_scores`.
    """
    signal = np.zeros(len(ids))  # the reranker sees the best keyword hits only, as `_scan_parts` gives them
    signal[hits] = hit_scores
    ranked = rerank_scope(
        micros, similarity, signal, hits,
        windows=time_windows(query, now=now), config=bank.retrieval_config.rerank_config(),
        limit=None if request.recency_weight else request.top_k,
    )
    raw_similarity = similarity.tolist()
    raw_keyword = signal.tolist()
    half_life = parse_duration(request.recency_half_life) if request.recency_weight else None
    out = []
    for r in ranked:
        score = r.score
        if half_life is not None:
            when = from_micros(int(micros[r.id]))
            score += request.recency_weight * recency_decay(when, now=now, half_life=half_life)
        cosine = raw_similarity[r.id]
        scores = {"similarity": 0.0 if cosine != cosine else cosine, "keyword": raw_keyword[r.id],  # NaN: none
                  "session": r.session, "time": r.time}
        out.append((ids[r.id], score, scores))
    if half_life is not None:
        out.sort(key=lambda t: -t[1])
    return out[: request.top_k]


def _ranked_response(
    ranked: Sequence[tuple[UUID, float, dict[str, float]]], picked: Sequence[Any], now: datetime
) -> RetrieveResponse:
    """The reranked memories, whole, from their plain-column rows (`picked`), best first; a memory
    deleted or expired since the scope was read is left out."""
    live = {r["id"]: r for r in picked if not r["is_deleted"] and (r["expires_at"] is None or r["expires_at"] > now)}
    return RetrieveResponse(memories=[
        RetrievedMemory(memory=_memory_from_columns(live[i]), score=score, scores=scores)
        for i, score, scores in ranked if i in live
    ])


def _json_object(value: Any) -> dict[str, Any]:
    """A JSONB column as the driver returned it: decoded (SQLAlchemy's asyncpg codec) or as text."""
    if value is None:
        return {}
    return dict(json.loads(value) if isinstance(value, str) else value)


def _confidence_floor(minimum: float) -> float:
    """The bound that `confidence >= minimum` compares with: a hair lower, because PostgreSQL stores
    confidence as a 4-byte REAL (0.7 is kept as 0.69999999) and compares it with the 8-byte 0.7."""
    return minimum - 1e-6


def _expired(row: MemoryRow, now: datetime) -> bool:
    return row.expires_at is not None and row.expires_at <= now


def _parse_snapshot(raw: str, tenant_id: UUID) -> Memory | None:
    value = json.loads(raw)
    if value.get("tombstone") or value.get("tenant_id") != str(tenant_id):
        return None
    return Memory.model_validate(value["memory"])


def _vector_item(row: MemoryRow) -> VectorItem:
    """The Qdrant point of a memory: seed 000 §5.1's payload plus the partition and filter fields."""
    assert row.embedding is not None
    return VectorItem(
        id=str(row.id),
        vector=np.asarray(row.embedding, dtype=np.float32),
        partition={"tenant_id": str(row.tenant_id), "bank_id": str(row.bank_id), "scope_key": row.scope_key},
        payload={
            "memory_id": str(row.id),
            "scope": dict(row.scope),
            "topic": row.topic,
            "confidence": row.confidence,
            "created_at": row.created_at.isoformat(),
            "fact": row.fact[:500],
            "is_deleted": row.is_deleted,
            "embedding_model": row.embedding_model,
            "expires_at": row.expires_at,
            "event_time": row.event_time,
        },
    )


def _decode_time_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    if not cursor:
        return None
    created, ident = decode_cursor(cursor, 2)
    try:
        return as_utc(datetime.fromisoformat(created)), UUID(ident)
    except (ValueError, TypeError) as exc:
        raise Invalid("query.cursor", "not a cursor returned by this API") from exc


def parse_scope_param(scope: str | None) -> dict[str, str] | None:
    """Parse the `scope=` query parameter: URL-encoded JSON (`{"user_id":"u1"}`), or None."""
    return _scope_filter_param(scope) if scope is not None else None


__all__ = ["DEFAULT_BANK", "KEEP", "MemoryService", "bank_model", "memory_model", "revision_model", "scope_hash"]
