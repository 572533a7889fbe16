"""The resource namespaces of the async clients (`client.sessions`, `.memories`, `.jobs`, …).

They hold everything the two kinds of client share: the public signatures, argument conveniences
(`text=` for content, `EventActions` or a dict, an ETag or a version for `if_match`, a topic's name
for a managed topic, a path or rows for an import), request bodies in their wire form, filters, and
pagination. A `Backend` does the rest, over HTTP or in-process.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeAlias, TypedDict, TypeVar
from uuid import UUID

import anyio
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from typing_extensions import Unpack

from contextiq.core.errors import FieldError
from contextiq.core.types import JSON
from contextiq.memories.generation.models import (
    EventStatus,
    GenerationStatus,
    InputEvent,
    JobEvent,
    JobEventPage,
    MemoryGenerationJob,
    MemoryGenerationJobPage,
)
from contextiq.memories.generation.models import SourceType as GenerateSource
from contextiq.memories.models import (
    CustomMemoryTopic,
    GenerationConfig,
    ImportResult,
    ManagedTopicName,
    Memory,
    MemoryBank,
    MemoryBankList,
    MemoryFilter,
    MemoryPage,
    MemoryRevision,
    MemoryRevisionPage,
    MemoryTopic,
    RetrievalConfig,
    RetrieveMode,
    RetrieveResponse,
    SimilaritySearchConfig,
    TTLConfig,
)
from contextiq.platform.models import ApiKey, ApiKeyCreated, ApiKeyPage, Organization
from contextiq.platform.models import Scope as KeyScope
from contextiq.sdk.backends.base import Backend
from contextiq.sdk.errors import invalid, invalid_from_validation
from contextiq.sessions.models import (
    Author,
    Event,
    EventActions,
    EventFilter,
    EventPage,
    Session,
    SessionFilter,
    SessionPage,
)

F = TypeVar("F", bound=BaseModel)
DEFAULT_WAIT: Final = 300.0  # seconds `jobs.wait()` waits by default

Topic: TypeAlias = MemoryTopic | CustomMemoryTopic | ManagedTopicName | Mapping[str, object]
"""A bank's topic: a `MemoryTopic`, a `CustomMemoryTopic`, a managed topic's name, or the JSON of one."""
ImportRow: TypeAlias = str | Memory | Mapping[str, object]
"""One memory to import: a JSONL line, a `Memory` (as `export()` yields), or its JSON object."""


class SessionFields(TypedDict, total=False):
    """What `sessions.update()` may change; an omitted field stays as it is (a PATCH)."""

    agent_id: str | None
    scope: Mapping[str, str]
    state: Mapping[str, object]
    """Merged like a state delta: `None` deletes a key; `app:`/`user:` keys are shared, `temp:` dropped."""
    metadata: Mapping[str, object]
    expires_at: datetime | None
    is_active: bool


class MemoryBankFields(TypedDict, total=False):
    """What `memory_banks.update()` may change; an omitted field stays as it is (a PATCH)."""

    name: str
    memory_topics: Sequence[Topic]
    few_shot_examples: Sequence[Mapping[str, object]] | None
    ttl_config: TTLConfig | Mapping[str, object]
    similarity_search_config: SimilaritySearchConfig | Mapping[str, object]
    generation_config: GenerationConfig | Mapping[str, object]
    retrieval_config: RetrievalConfig | Mapping[str, object]
    """Replaces the bank's whole reranker settings: an omitted one goes back to its default."""
    enable_revisions: bool
    scope_keys: Sequence[str]
    metadata: Mapping[str, object]
    is_active: bool


class MemoryFields(TypedDict, total=False):
    """What `memories.update()` may change; an omitted field stays as it is (a PATCH, one new revision)."""

    fact: str
    topic: str
    confidence: float
    metadata: Mapping[str, object]
    """Merged into the memory's metadata: a `None` value deletes a key."""
    event_time: datetime | None
    expires_at: datetime | None
    """`None` removes the expiry."""
    ttl: str
    """A new expiry from now, e.g. `30d` (instead of `expires_at`)."""


def _json(value: object) -> Any:
    """Return `value` as JSON-ready data (datetimes and UUIDs as strings, mappings as dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    return to_jsonable_python(value)


def _body(**fields: object) -> JSON:
    """Return a request body of the fields that were given (None means "not given" here)."""
    return {name: _json(value) for name, value in fields.items() if value is not None}


def _uuid(value: UUID | str, *, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        error = FieldError(field, f"Input should be a valid UUID, got {value!r}")
        raise invalid([error], instance=None) from None


def _version(if_match: int | str | None) -> int | None:
    """Return the session version named by `if_match`: a version (`3`) or an ETag (`'"3"'`, `'W/"3"'`)."""
    if if_match is None:
        return None
    if isinstance(if_match, int) and not isinstance(if_match, bool):
        return if_match
    raw = str(if_match).strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise invalid(
            [FieldError("header.If-Match", f'expected an ETag like "3", got {if_match!r}')], instance=None
        )
    return int(raw)


def _filters(model: type[F], **values: object) -> F:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid_from_validation(exc, where="query", instance=None) from None


def _topic(topic: Topic) -> JSON:
    if isinstance(topic, str):
        return {"managed_memory_topic": {"managed_topic_enum": topic}}
    if isinstance(topic, CustomMemoryTopic):
        return {"custom_memory_topic": _json(topic)}
    result: JSON = _json(topic)
    return result


def _topics(topics: Sequence[Topic] | None) -> list[JSON] | None:
    return None if topics is None else [_topic(t) for t in topics]


def _import_line(row: ImportRow) -> str:
    if isinstance(row, str):
        return row.rstrip("\r\n")
    if isinstance(row, BaseModel):
        return row.model_dump_json()
    return json.dumps(_json(row), ensure_ascii=False)


def _content(content: Mapping[str, object] | None, text: str | None) -> JSON:
    if text is not None and content is None:
        return {"parts": [{"text": text}]}
    if content is not None and text is None:
        result: JSON = _json(content)
        return result
    raise TypeError("append_event() takes exactly one of content= (a JSON object) or text= (a string)")


class AsyncSessions:
    """Sessions and their events: `client.sessions`."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def create(
        self,
        user_id: str,
        *,
        agent_id: str | None = None,
        scope: Mapping[str, str] | None = None,
        state: Mapping[str, object] | None = None,
        metadata: Mapping[str, object] | None = None,
        expires_at: datetime | None = None,
        parent_session_id: UUID | str | None = None,
        idempotency_key: str | None = None,
    ) -> Session:
        """Create a session; `state` may carry `app:` and `user:` keys, shared with other sessions.

        Args:
            idempotency_key: makes retries safe: a repeated key returns the first session. Over
                HTTP one is generated when not given, so the SDK's own retries never create twice.
        """
        body = _body(
            user_id=user_id, agent_id=agent_id, scope=scope, state=state, metadata=metadata,
            expires_at=expires_at, parent_session_id=parent_session_id,
        )
        return await self._backend.create_session(body=body, idempotency_key=idempotency_key)

    async def get(self, session_id: UUID | str, *, num_recent_events: int | None = None) -> Session:
        """Return a session with its merged state and, if `num_recent_events` is given, its newest events."""
        return await self._backend.get_session(
            session_id=_uuid(session_id, field="path.session_id"), num_recent_events=num_recent_events
        )

    async def list(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        is_active: bool | None = None,
        parent_session_id: UUID | str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> SessionPage:
        """Return one page of sessions, newest first; pass `next_cursor` back as `cursor` for the next."""
        filters = _filters(
            SessionFilter, user_id=user_id, agent_id=agent_id, is_active=is_active,
            parent_session_id=parent_session_id, created_after=created_after, created_before=created_before,
        )
        return await self._backend.list_sessions(filters=filters, cursor=cursor, limit=limit)

    async def iter(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        is_active: bool | None = None,
        parent_session_id: UUID | str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[Session]:
        """Yield every matching session, newest first, fetching `page_size` at a time."""
        cursor: str | None = None
        while True:
            page = await self.list(
                user_id=user_id, agent_id=agent_id, is_active=is_active, parent_session_id=parent_session_id,
                created_after=created_after, created_before=created_before, cursor=cursor, limit=page_size,
            )
            for session in page.items:
                yield session
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def update(
        self, session_id: UUID | str, *, if_match: int | str | None = None, **fields: Unpack[SessionFields]
    ) -> Session:
        """Change the given fields; `state` is merged like a delta (None deletes a key).

        Args:
            if_match: the version (`session.version`) or ETag (`session.etag`) this update is based
                on; a stale one raises `PreconditionFailed` (412) instead of overwriting.
        """
        return await self._backend.update_session(
            session_id=_uuid(session_id, field="path.session_id"), body=_json(fields),
            if_match=_version(if_match),
        )

    async def delete(self, session_id: UUID | str) -> None:
        """Delete a session, its events and its child sessions."""
        await self._backend.delete_session(session_id=_uuid(session_id, field="path.session_id"))

    async def append_event(
        self,
        session_id: UUID | str,
        *,
        author: Author,
        invocation_id: str,
        content: Mapping[str, object] | None = None,
        text: str | None = None,
        actions: EventActions | Mapping[str, object] | None = None,
        metadata: Mapping[str, object] | None = None,
        timestamp: datetime | None = None,
        if_match: int | str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """Append an event; its `actions.state_delta` is applied to the session in the same transaction.

        Args:
            content: the event's content, a JSON object (ADK: `{"parts": [{"text": …}]}`).
            text: instead of `content`, a plain text: `{"parts": [{"text": text}]}`.
            actions: an `EventActions` or its dict (`{"state_delta": {"user:name": "Ada"}}`).
            if_match: a version or ETag; a stale one raises `PreconditionFailed` (412).
            idempotency_key: a repeated key returns the first event (generated over HTTP if not given).
        """
        body = _body(
            author=author, invocation_id=invocation_id, content=_content(content, text), actions=actions,
            metadata=metadata, timestamp=timestamp,
        )
        return await self._backend.append_event(
            session_id=_uuid(session_id, field="path.session_id"), body=body, if_match=_version(if_match),
            idempotency_key=idempotency_key,
        )

    async def list_events(
        self,
        session_id: UUID | str,
        *,
        after: datetime | None = None,
        before: datetime | None = None,
        author: Author | None = None,
        invocation_id: str | None = None,
        ascending: bool = True,
        cursor: str | None = None,
        limit: int = 100,
    ) -> EventPage:
        """Return one page of a session's events in sequence order (oldest first unless `ascending=False`)."""
        filters = _filters(
            EventFilter, after=after, before=before, author=author, invocation_id=invocation_id,
            ascending=ascending,
        )
        return await self._backend.list_events(
            session_id=_uuid(session_id, field="path.session_id"), filters=filters, cursor=cursor, limit=limit
        )

    async def iter_events(
        self,
        session_id: UUID | str,
        *,
        after: datetime | None = None,
        before: datetime | None = None,
        author: Author | None = None,
        invocation_id: str | None = None,
        ascending: bool = True,
        page_size: int = 100,
    ) -> AsyncIterator[Event]:
        """Yield every matching event of a session, fetching `page_size` at a time."""
        cursor: str | None = None
        while True:
            page = await self.list_events(
                session_id, after=after, before=before, author=author, invocation_id=invocation_id,
                ascending=ascending, cursor=cursor, limit=page_size,
            )
            for event in page.items:
                yield event
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


class AsyncApiKeys:
    """The tenant's API keys: `client.api_keys` (needs the `keys:read`/`keys:write` scopes)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def create(
        self,
        *,
        name: str = "default",
        scopes: Sequence[KeyScope] | None = None,
        rate_limit: int | None = None,
        expires_at: datetime | None = None,
    ) -> ApiKeyCreated:
        """Create an API key (default scopes: `admin`); `.key` holds the secret, shown this once only."""
        body = _body(
            name=name, scopes=builtins.list(scopes) if scopes is not None else None, rate_limit=rate_limit,
            expires_at=expires_at,
        )
        return await self._backend.create_api_key(body=body)

    async def list(self) -> ApiKeyPage:
        """Return the tenant's API keys, without their secrets."""
        return await self._backend.list_api_keys()

    async def revoke(self, key_id: UUID | str) -> ApiKey:
        """Revoke a key at once: requests made with it fail with `Unauthorized` from now on."""
        return await self._backend.revoke_api_key(key_id=_uuid(key_id, field="path.key_id"))


class AsyncOrganization:
    """The caller's organization, i.e. the tenant: `client.organization`."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def get(self) -> Organization:
        """Return the organization the API key (or embedded tenant) belongs to."""
        return await self._backend.get_organization()


class AsyncMemoryBanks:
    """Memory banks, the configuration memories live under: `client.memory_banks`."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def create(
        self,
        name: str,
        *,
        memory_topics: Sequence[Topic] | None = None,
        few_shot_examples: Sequence[Mapping[str, object]] | None = None,
        ttl_config: TTLConfig | Mapping[str, object] | None = None,
        similarity_search_config: SimilaritySearchConfig | Mapping[str, object] | None = None,
        generation_config: GenerationConfig | Mapping[str, object] | None = None,
        retrieval_config: RetrievalConfig | Mapping[str, object] | None = None,
        enable_revisions: bool | None = None,
        scope_keys: Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
        is_active: bool | None = None,
    ) -> MemoryBank:
        """Create a memory bank; its name is unique in the tenant (a taken one raises `Conflict`).

        Args:
            memory_topics: what the bank remembers: managed topics by name (`"USER_PREFERENCES"`),
                `CustomMemoryTopic(label=…, description=…)`, or `MemoryTopic`s. None: the four managed ones.
            ttl_config: durations such as `{"default_ttl": "365d", "create_ttl": "90d"}`.
            retrieval_config: how hybrid retrieval ranks the bank's memories, such as
                `{"keyword_weight": 0.7, "session_gap": "30m"}`; an omitted setting is the server's default.
            scope_keys: the keys every scope in the bank must have (default `["user_id"]`).
        """
        body = _body(
            name=name, memory_topics=_topics(memory_topics),
            few_shot_examples=builtins.list(few_shot_examples) if few_shot_examples is not None else None,
            ttl_config=ttl_config, similarity_search_config=similarity_search_config,
            generation_config=generation_config, retrieval_config=retrieval_config, enable_revisions=enable_revisions,
            scope_keys=builtins.list(scope_keys) if scope_keys is not None else None, metadata=metadata,
            is_active=is_active,
        )
        return await self._backend.create_memory_bank(body=body)

    async def get(self, bank_id: UUID | str) -> MemoryBank:
        """Return a memory bank."""
        return await self._backend.get_memory_bank(bank_id=_uuid(bank_id, field="path.bank_id"))

    async def list(self) -> MemoryBankList:
        """Return the tenant's memory banks, oldest first (`default` appears once it is first used)."""
        return await self._backend.list_memory_banks()

    async def update(self, bank_id: UUID | str, **fields: Unpack[MemoryBankFields]) -> MemoryBank:
        """Change the given fields (existing memories are not re-checked against new topics or keys)."""
        body: JSON = _json(fields)
        if "memory_topics" in fields:
            body["memory_topics"] = _topics(fields["memory_topics"])
        return await self._backend.update_memory_bank(bank_id=_uuid(bank_id, field="path.bank_id"), body=body)

    async def delete(self, bank_id: UUID | str, *, force: bool = False) -> None:
        """Delete a bank; one that holds memories raises `Conflict` unless `force`, which deletes them too."""
        await self._backend.delete_memory_bank(bank_id=_uuid(bank_id, field="path.bank_id"), force=force)


class AsyncMemories:
    """Memories, their revisions, retrieval, import/export and generation: `client.memories`."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def create(
        self,
        fact: str,
        *,
        scope: Mapping[str, str],
        topic: str,
        confidence: float | None = None,
        metadata: Mapping[str, object] | None = None,
        event_time: datetime | None = None,
        expires_at: datetime | None = None,
        ttl: str | None = None,
        source_session_id: UUID | str | None = None,
        bank_id: UUID | str | None = None,
        idempotency_key: str | None = None,
    ) -> Memory:
        """Remember a fact (first person, at most 2000 characters) in a scope; revision 1.

        Args:
            scope: at most 5 string pairs with every key of the bank's `scope_keys` (`{"user_id": "u1"}`).
            topic: one of the bank's topics (the default bank: the four managed ones).
            event_time: when the remembered thing was said or happened (default: unknown).
            expires_at, ttl: the memory's own expiry (a time, or a duration like `30d`) instead of the bank's.
            bank_id: the bank; default: the tenant's bank `default`, created on first use.
            idempotency_key: a repeated key returns the first memory (generated over HTTP if not given).
        """
        body = _body(
            bank_id=bank_id, scope=scope, fact=fact, topic=topic, confidence=confidence, metadata=metadata,
            event_time=event_time, expires_at=expires_at, ttl=ttl, source_session_id=source_session_id,
        )
        return await self._backend.create_memory(body=body, idempotency_key=idempotency_key)

    async def get(self, memory_id: UUID | str) -> Memory:
        """Return a live memory (a deleted or expired one raises `NotFound`)."""
        return await self._backend.get_memory(memory_id=_uuid(memory_id, field="path.memory_id"))

    async def list(
        self,
        *,
        scope: Mapping[str, str] | None = None,
        bank_id: UUID | str | None = None,
        topic: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        event_time_after: datetime | None = None,
        event_time_before: datetime | None = None,
        as_of: datetime | None = None,
        include_deleted: bool = False,
        cursor: str | None = None,
        limit: int = 50,
    ) -> MemoryPage:
        """Return one page of memories, newest first; pass `next_cursor` back as `cursor` for the next.

        Args:
            scope: exactly this scope (`{"user_id": "u1"}` does not match `{"user_id": "u1", "agent_id": …}`).
            as_of: each memory as it was then (its revision in force), leaving out what did not exist yet.
            include_deleted: also soft-deleted and expired memories (ignored with `as_of`).
        """
        filters = _filters(
            MemoryFilter, bank_id=bank_id, scope=dict(scope) if scope is not None else None, topic=topic,
            created_after=created_after, created_before=created_before, event_time_after=event_time_after,
            event_time_before=event_time_before, as_of=as_of, include_deleted=include_deleted,
        )
        return await self._backend.list_memories(filters=filters, cursor=cursor, limit=limit)

    async def iter(
        self,
        *,
        scope: Mapping[str, str] | None = None,
        bank_id: UUID | str | None = None,
        topic: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        event_time_after: datetime | None = None,
        event_time_before: datetime | None = None,
        as_of: datetime | None = None,
        include_deleted: bool = False,
        page_size: int = 50,
    ) -> AsyncIterator[Memory]:
        """Yield every matching memory, newest first, fetching `page_size` at a time."""
        cursor: str | None = None
        while True:
            page = await self.list(
                scope=scope, bank_id=bank_id, topic=topic, created_after=created_after,
                created_before=created_before, event_time_after=event_time_after,
                event_time_before=event_time_before, as_of=as_of, include_deleted=include_deleted,
                cursor=cursor, limit=page_size,
            )
            for memory in page.items:
                yield memory
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def update(self, memory_id: UUID | str, **fields: Unpack[MemoryFields]) -> Memory:
        """Change the given fields as one new revision; a changed fact is re-embedded, `metadata` merged."""
        return await self._backend.update_memory(
            memory_id=_uuid(memory_id, field="path.memory_id"), body=_json(fields)
        )

    async def delete(self, memory_id: UUID | str, *, hard: bool = False) -> None:
        """Delete a memory: softly, as a DELETED revision (history kept), or for good with `hard=True`."""
        await self._backend.delete_memory(memory_id=_uuid(memory_id, field="path.memory_id"), hard=hard)

    async def revisions(
        self, memory_id: UUID | str, *, cursor: str | None = None, limit: int = 100
    ) -> MemoryRevisionPage:
        """Return one page of a memory's revisions, oldest first (a deleted memory keeps its history)."""
        return await self._backend.list_memory_revisions(
            memory_id=_uuid(memory_id, field="path.memory_id"), cursor=cursor, limit=limit
        )

    async def iter_revisions(self, memory_id: UUID | str, *, page_size: int = 100) -> AsyncIterator[MemoryRevision]:
        """Yield every revision of a memory, oldest first, fetching `page_size` at a time."""
        cursor: str | None = None
        while True:
            page = await self.revisions(memory_id, cursor=cursor, limit=page_size)
            for revision in page.items:
                yield revision
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def rollback(self, memory_id: UUID | str, revision_number: int) -> Memory:
        """Restore a revision's fact, topic and confidence as a new revision (reviving a deleted memory)."""
        return await self._backend.rollback_memory(
            memory_id=_uuid(memory_id, field="path.memory_id"), body={"revision_number": revision_number}
        )

    async def retrieve(
        self,
        scope: Mapping[str, str],
        query: str | None = None,
        *,
        top_k: int = 10,
        mode: RetrieveMode | None = None,
        bank_id: UUID | str | None = None,
        topics: Sequence[str] | None = None,
        min_confidence: float | None = None,
        event_time_after: datetime | None = None,
        event_time_before: datetime | None = None,
        as_of: datetime | None = None,
        rrf_k: int | None = None,
        recency_weight: float | None = None,
        recency_half_life: str | None = None,
        confidence_weight: float | None = None,
    ) -> RetrieveResponse:
        """Return the scope's memories most relevant to `query`, best first (without one: the newest).

        Args:
            mode: `"similarity"` (embeddings), `"keyword"` (full text) or `"hybrid"` (both fused); default:
                the bank's `retrieval_config.default_mode`, `"hybrid"` unless set.
            topics, min_confidence, event_time_after, event_time_before: filters (`filters` in the API).
            as_of: rank what was true at that time (each memory's revision then in force).
            rrf_k, recency_weight, recency_half_life, confidence_weight: hybrid ranking knobs.
        """
        filters = _body(
            topics=builtins.list(topics) if topics is not None else None, min_confidence=min_confidence,
            event_time_after=event_time_after, event_time_before=event_time_before, as_of=as_of,
        )
        body = _body(
            bank_id=bank_id, scope=scope, query=query, top_k=top_k, mode=mode, filters=filters or None,
            rrf_k=rrf_k, recency_weight=recency_weight, recency_half_life=recency_half_life,
            confidence_weight=confidence_weight,
        )
        return await self._backend.retrieve_memories(body=body)

    async def import_jsonl(
        self,
        source: str | os.PathLike[str] | Iterable[ImportRow] | AsyncIterable[ImportRow],
        *,
        bank_id: UUID | str | None = None,
    ) -> ImportResult:
        """Import memories, all or nothing (`source_type` `imported`, new ids); errors name `line N: field`.

        Args:
            source: a JSONL file's path (`str` or `Path`), or rows: JSONL lines, `Memory` objects
                or their JSON objects. An open file works too (its lines), and so does `export()`.
            bank_id: the bank to import into; default: the tenant's bank `default`.
        """
        if isinstance(source, str | os.PathLike):
            jsonl = await anyio.Path(source).read_text(encoding="utf-8")
        elif isinstance(source, AsyncIterable):
            jsonl = "\n".join([_import_line(row) async for row in source])
        else:
            jsonl = "\n".join(_import_line(row) for row in source)
        bank = _uuid(bank_id, field="query.bank_id") if bank_id is not None else None
        return await self._backend.import_memories(jsonl=jsonl, bank_id=bank)

    async def export(
        self, *, scope: Mapping[str, str] | None = None, bank_id: UUID | str | None = None
    ) -> AsyncGenerator[Memory, None]:
        """Yield a bank's live memories (of one scope when given), newest first, as the server streams them.

        Over HTTP this holds a connection: iterate to the end, or `aclose()` the iterator to stop early.
        """
        bank = _uuid(bank_id, field="query.bank_id") if bank_id is not None else None
        stream = self._backend.export_memories(bank_id=bank, scope=dict(scope) if scope is not None else None)
        async with contextlib.aclosing(stream):  # closing this generator closes the stream at once
            async for memory in stream:
                yield memory

    async def generate(
        self,
        scope: Mapping[str, str],
        source_type: GenerateSource,
        *,
        source_reference: UUID | str | None = None,
        events: Sequence[InputEvent | Mapping[str, object]] | None = None,
        facts: Sequence[str] | None = None,
        wait_for_completion: bool = False,
        bank_id: UUID | str | None = None,
        disable_consolidation: bool = False,
        topics: Sequence[str] | None = None,
        extraction_model: str | None = None,
        idempotency_key: str | None = None,
    ) -> MemoryGenerationJob:
        """Start a generation job: extract facts, consolidate them with the scope's memories, apply.

        Args:
            source_type: `"session"` (a stored session: its id as `source_reference`), `"events"`
                (given in `events`: `{"author": "user", "text": …}` or `InputEvent`s) or `"facts"`
                (stored as given, from `facts`).
            wait_for_completion: return the job finished. The server runs it within the request for at
                most `CONTEXTIQ_GENERATION_WAIT_SECONDS`; past that the job comes back unfinished and
                `jobs.wait(job.id)` follows it. Embedded clients run it in the calling task.
            topics: extract only these topics (labels of the bank's topics).
            extraction_model: an LLM model, or `"offline"` for the built-in extractor.
            idempotency_key: a repeated key returns the first job (generated over HTTP if not given).
        """
        config = _body(
            wait_for_completion=wait_for_completion, disable_consolidation=disable_consolidation,
            topics=builtins.list(topics) if topics is not None else None, extraction_model=extraction_model,
        )
        body = _body(
            bank_id=bank_id, scope=scope, source_type=source_type,
            source_reference=str(source_reference) if source_reference is not None else None,
            events=[_json(e) for e in events] if events is not None else None,
            facts=builtins.list(facts) if facts is not None else None, config=config,
        )
        return await self._backend.generate_memories(body=body, idempotency_key=idempotency_key)


class AsyncJobs:
    """Generation jobs: `client.jobs`."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def get(self, job_id: UUID | str) -> MemoryGenerationJob:
        """Return a job with its status, progress and (once finished) result."""
        return await self._backend.get_job(job_id=_uuid(job_id, field="path.job_id"))

    async def list(
        self, *, status: GenerationStatus | None = None, cursor: str | None = None, limit: int = 50
    ) -> MemoryGenerationJobPage:
        """Return one page of the tenant's jobs, newest first; pass `next_cursor` back as `cursor` for the next."""
        return await self._backend.list_jobs(status=status, cursor=cursor, limit=limit)

    async def iter(
        self, *, status: GenerationStatus | None = None, page_size: int = 50
    ) -> AsyncIterator[MemoryGenerationJob]:
        """Yield every job (of one status when given), newest first, fetching `page_size` at a time."""
        cursor: str | None = None
        while True:
            page = await self.list(status=status, cursor=cursor, limit=page_size)
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: UUID | str) -> MemoryGenerationJob:
        """Cancel a pending or running job (again: harmless); a finished one raises `Conflict`."""
        return await self._backend.cancel_job(job_id=_uuid(job_id, field="path.job_id"))

    async def events(
        self,
        job_id: UUID | str,
        *,
        status: EventStatus | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> JobEventPage:
        """Return one page of what the job made of each source event (`extracted`, `skipped`, `failed`, why)."""
        return await self._backend.list_job_events(
            job_id=_uuid(job_id, field="path.job_id"), status=status, cursor=cursor, limit=limit
        )

    async def iter_events(
        self, job_id: UUID | str, *, status: EventStatus | None = None, page_size: int = 100
    ) -> AsyncIterator[JobEvent]:
        """Yield every per-event record of a job in event order, fetching `page_size` at a time."""
        cursor: str | None = None
        while True:
            page = await self.events(job_id, status=status, cursor=cursor, limit=page_size)
            for event in page.items:
                yield event
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def wait(
        self,
        job_id: UUID | str,
        *,
        # Not anyio.fail_after: running out returns the unfinished job, which is not an error.
        timeout: float = DEFAULT_WAIT,  # noqa: ASYNC109
    ) -> MemoryGenerationJob:
        """Return the job once it has finished (completed, failed or cancelled), or as it is after `timeout` s.

        Check `job.is_finished`: a timeout is not an error. Over HTTP this polls with backoff; an
        embedded client runs the job in this task when no worker has it (so it finishes without one).
        """
        if timeout < 0:
            raise ValueError("timeout must be 0 or more seconds")
        return await self._backend.wait_job(job_id=_uuid(job_id, field="path.job_id"), seconds=timeout)
