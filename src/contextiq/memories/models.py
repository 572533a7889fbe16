"""The wire contract of memory banks, memories, revisions and retrieval (seed 000 §2.3–2.4, §4.1)."""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from contextiq.core.errors import Invalid
from contextiq.core.models import ApiModel, ResponseModel, ScopeField
from contextiq.core.search.rerank import DEFAULT_RERANK, RerankConfig
from contextiq.core.types import JSON

MANAGED_TOPICS = (
    "USER_PERSONAL_INFO",
    "USER_PREFERENCES",
    "KEY_CONVERSATION_DETAILS",
    "EXPLICIT_INSTRUCTIONS",
)
ManagedTopicName = Literal[
    "USER_PERSONAL_INFO", "USER_PREFERENCES", "KEY_CONVERSATION_DETAILS", "EXPLICIT_INSTRUCTIONS"
]
SourceType = Literal["generated", "direct", "imported"]
RevisionAction = Literal["CREATED", "UPDATED", "DELETED"]
RetrieveMode = Literal["similarity", "keyword", "hybrid"]
TtlKind = Literal["create", "generate_created", "generate_updated", "none"]

MAX_FACT = 2000
MAX_TOPIC = 255
_DURATION = re.compile(r"^([1-9][0-9]{0,8})([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=365 * 100)


@functools.lru_cache(maxsize=256)
def parse_duration(value: str) -> timedelta:
    """Parse a duration like `365d`, `12h`, `30m`, `90s` or `2w` (one positive integer and one unit)."""
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"expected a duration like 365d, 12h, 30m, 90s or 2w, got {value!r}")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{value!r} is longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Return `value` as a duration string in its largest whole unit (`1h`, `90m`, `2w`)."""
    seconds = int(value.total_seconds())
    if seconds <= 0 or seconds != value.total_seconds():
        raise ValueError(f"expected a positive whole number of seconds, got {value}")
    unit = next(u for u in "wdhms" if seconds % _UNIT_SECONDS[u] == 0)
    return f"{seconds // _UNIT_SECONDS[unit]}{unit}"


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A duration string (`365d`, `12h`, `30m`), validated strictly."""

Fact = Annotated[str, Field(min_length=1, max_length=MAX_FACT, description="The fact, in the first person")]
TopicName = Annotated[str, Field(min_length=1, max_length=MAX_TOPIC)]


# -- memory banks (seed 000 §4.1) ------------------------------------------------------------------


class ManagedMemoryTopic(ApiModel):
    """A predefined topic."""

    managed_topic_enum: ManagedTopicName


class CustomMemoryTopic(ApiModel):
    """A topic defined by the user: its label and what belongs in it."""

    label: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_ .:-]*$")
    description: str = Field(..., min_length=1, max_length=2000)


class MemoryTopic(ApiModel):
    """Exactly one of a managed or a custom topic."""

    managed_memory_topic: ManagedMemoryTopic | None = None
    custom_memory_topic: CustomMemoryTopic | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MemoryTopic:
        if (self.managed_memory_topic is None) == (self.custom_memory_topic is None):
            raise ValueError("give exactly one of managed_memory_topic and custom_memory_topic")
        return self

    @property
    def label(self) -> str:
        """The topic's name, as memories carry it in `topic`."""
        if self.managed_memory_topic is not None:
            return self.managed_memory_topic.managed_topic_enum
        assert self.custom_memory_topic is not None
        return self.custom_memory_topic.label


class TTLConfig(ApiModel):
    """Time to live of memories by how they were written; a missing kind falls back to `default_ttl`."""

    default_ttl: Duration | None = Field(None, description="e.g. 365d")
    create_ttl: Duration | None = Field(None, description="Memories created directly (POST /v1/memories)")
    generate_created_ttl: Duration | None = Field(None, description="Memories created by generation")
    generate_updated_ttl: Duration | None = Field(None, description="Memories updated by generation")


class SimilaritySearchConfig(ApiModel):
    """The embedding space of a bank; defaults to the server's embedding model."""

    embedding_model: str | None = Field(None, max_length=255)
    vector_size: int | None = Field(None, ge=1, le=16000)
    distance_metric: Literal["cosine", "euclidean", "dot"] = Field(
        "cosine", description="Vectors are L2-normalised, so the three metrics rank alike"
    )


class GenerationConfig(ApiModel):
    """The model used to extract and consolidate memories (None: the server's configured model)."""

    model: str | None = Field(None, max_length=255)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(4000, ge=1, le=1_000_000)


class RetrievalConfig(ApiModel):
    """How hybrid retrieval ranks this bank's memories (core/search/rerank.py); zero turns a step off.

    An omitted setting is the server's default (`DEFAULT_RERANK`), so a bank that sets none follows
    the defaults as they are retuned.
    """

    default_mode: RetrieveMode = Field(
        "hybrid", description="The mode of a retrieve request that does not give one"
    )
    keyword_weight: float = Field(
        DEFAULT_RERANK.keyword_weight, ge=0.0, le=1.0,
        description="Share of the keyword signal in the fused score (the rest is similarity)",
    )
    neighbour_weight: float = Field(
        DEFAULT_RERANK.neighbour_weight, ge=0.0, le=1.0,
        description="Share of the best neighbouring memory's signal a memory gains",
    )
    neighbour_decay: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=lambda: list(DEFAULT_RERANK.neighbour_decay), max_length=5,
        description="Weight of the neighbour at distance 1, 2, …; its length is how far context reaches",
    )
    session_weight: float = Field(
        DEFAULT_RERANK.session_weight, ge=0.0, le=10.0,
        description="Weight of the mean top score of a memory's session",
    )
    session_top: int = Field(
        DEFAULT_RERANK.session_top, ge=1, le=20, description="How many of a session's best memories make that mean"
    )
    session_gap: Duration = Field(
        format_duration(DEFAULT_RERANK.session_gap),
        description="A longer gap between two memories starts a new session, e.g. 1h",
    )
    time_weight: float = Field(
        DEFAULT_RERANK.time_weight, ge=0.0, le=10.0,
        description="Boost of a memory inside a time window the query names",
    )

    def rerank_config(self) -> RerankConfig:
        """Return the reranker's weights these settings make."""
        return _rerank_config(
            self.keyword_weight, self.neighbour_weight, tuple(self.neighbour_decay), self.session_weight,
            self.session_top, self.session_gap, self.time_weight,
        )


@functools.lru_cache(maxsize=256)
def _rerank_config(
    keyword_weight: float, neighbour_weight: float, neighbour_decay: tuple[float, ...], session_weight: float,
    session_top: int, session_gap: str, time_weight: float,
) -> RerankConfig:
    """`RetrievalConfig.rerank_config`, made once per distinct setting (it is read on every query)."""
    return RerankConfig(
        keyword_weight=keyword_weight, neighbour_weight=neighbour_weight, neighbour_decay=neighbour_decay,
        session_weight=session_weight, session_top=session_top, session_gap=parse_duration(session_gap),
        time_weight=time_weight,
    )


ScopeKeys = Annotated[list[Annotated[str, Field(min_length=1, max_length=255)]], Field(max_length=5)]


def _unique(values: list[str] | None) -> list[str] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("scope_keys must not repeat a key")
    return values


def _distinct_labels(topics: list[MemoryTopic] | None) -> list[MemoryTopic] | None:
    if topics is not None:
        labels = [t.label for t in topics]
        if len(set(labels)) != len(labels):
            raise ValueError("topic labels must be distinct")
    return topics


class MemoryBankCreate(ApiModel):
    name: str = Field(..., min_length=1, max_length=255)
    memory_topics: list[MemoryTopic] = Field(
        default_factory=list, description="Empty: the four managed topics"
    )
    few_shot_examples: list[JSON] | None = Field(
        None, description="Examples for extraction: [{conversation: ..., memories: [...]}]"
    )
    ttl_config: TTLConfig = Field(default_factory=TTLConfig)
    similarity_search_config: SimilaritySearchConfig = Field(default_factory=SimilaritySearchConfig)
    generation_config: GenerationConfig = Field(default_factory=GenerationConfig)
    retrieval_config: RetrievalConfig = Field(default_factory=RetrievalConfig)
    enable_revisions: bool = True
    scope_keys: ScopeKeys = Field(default_factory=lambda: ["user_id"], description="Keys every scope must have")
    metadata: JSON = Field(default_factory=dict)
    is_active: bool = True

    _check_keys = field_validator("scope_keys")(_unique)
    _check_topics = field_validator("memory_topics")(_distinct_labels)


class MemoryBankUpdate(ApiModel):
    """A PATCH: omitted fields stay."""

    name: str | None = Field(None, min_length=1, max_length=255)
    memory_topics: list[MemoryTopic] | None = None
    few_shot_examples: list[JSON] | None = None
    ttl_config: TTLConfig | None = None
    similarity_search_config: SimilaritySearchConfig | None = None
    generation_config: GenerationConfig | None = None
    retrieval_config: RetrievalConfig | None = Field(
        None, description="Replaces the whole object: an omitted setting goes back to its default"
    )
    enable_revisions: bool | None = None
    scope_keys: ScopeKeys | None = None
    metadata: JSON | None = None
    is_active: bool | None = None

    _check_keys = field_validator("scope_keys")(_unique)
    _check_topics = field_validator("memory_topics")(_distinct_labels)


class MemoryBank(ResponseModel):
    id: UUID
    name: str
    memory_topics: list[MemoryTopic]
    few_shot_examples: list[JSON] | None
    ttl_config: TTLConfig
    similarity_search_config: SimilaritySearchConfig
    generation_config: GenerationConfig
    retrieval_config: RetrievalConfig
    enable_revisions: bool
    scope_keys: list[str]
    metadata: JSON
    created_at: datetime
    updated_at: datetime
    is_active: bool

    def topic_labels(self) -> list[str]:
        """Return the labels memories of this bank may carry (the managed ones when none are listed)."""
        return [t.label for t in self.memory_topics] or list(MANAGED_TOPICS)

    def allows_topic(self, label: str) -> bool:
        """Tell whether a memory of this bank may carry topic `label`."""
        return label in self.topic_labels()

    def ttl(self, kind: TtlKind) -> timedelta | None:
        """Return the time to live for memories written as `kind` (`none`: no TTL applies)."""
        if kind == "none":
            return None
        specific = {
            "create": self.ttl_config.create_ttl,
            "generate_created": self.ttl_config.generate_created_ttl,
            "generate_updated": self.ttl_config.generate_updated_ttl,
        }[kind]
        value = specific or self.ttl_config.default_ttl
        return parse_duration(value) if value else None


class MemoryBankList(BaseModel):
    items: list[MemoryBank]


# -- memories (seed 000 §2.3) ----------------------------------------------------------------------


class Memory(ResponseModel):
    id: UUID
    bank_id: UUID
    scope: dict[str, str]
    fact: str
    topic: str
    confidence: float
    source_session_id: UUID | None
    source_type: SourceType
    metadata: JSON
    event_time: datetime | None = Field(None, description="When the remembered thing was said or happened")
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    revision_count: int = Field(description="Number of times the memory was changed after its creation")
    revision: int = Field(description="The newest revision number")
    is_deleted: bool
    embedding_model: str | None
    valid_from: datetime = Field(description="Since when the current fact holds")
    valid_to: datetime | None = Field(None, description="Until when it held (deleted memories)")


class MemoryCreate(ApiModel):
    bank_id: UUID | None = Field(None, description="Default: the tenant's bank named `default`")
    scope: ScopeField
    fact: Fact
    topic: TopicName
    confidence: float = Field(1.0, ge=0.0, le=1.0)
    source_session_id: UUID | None = None
    event_time: datetime | None = None
    metadata: JSON = Field(default_factory=dict)
    expires_at: datetime | None = Field(None, description="Overrides the bank's TTL")
    ttl: Duration | None = Field(None, description="Overrides the bank's TTL, e.g. 30d")

    @model_validator(mode="after")
    def _one_expiry(self) -> MemoryCreate:
        if self.expires_at is not None and self.ttl is not None:
            raise ValueError("give expires_at or ttl, not both")
        return self


class MemoryUpdate(ApiModel):
    """A PATCH: omitted fields stay; `metadata` is merged (a null value deletes a key)."""

    fact: Fact | None = None
    topic: TopicName | None = None
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    metadata: JSON | None = None
    event_time: datetime | None = None
    expires_at: datetime | None = Field(None, description="null removes the expiry")
    ttl: Duration | None = None


class MemoryPage(BaseModel):
    items: list[Memory]
    next_cursor: str | None


class MemoryFilter(ApiModel):
    bank_id: UUID | None = None
    scope: dict[str, str] | None = None
    topic: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    event_time_after: datetime | None = None
    event_time_before: datetime | None = None
    as_of: datetime | None = None
    include_deleted: bool = False


class MemoryRevision(ResponseModel):
    id: UUID
    memory_id: UUID
    revision_number: int
    fact: str
    topic: str
    action: RevisionAction
    source_session_id: UUID | None
    extracted_memories: list[str] | None
    confidence: float
    metadata: JSON
    created_at: datetime
    valid_from: datetime
    valid_to: datetime | None


class MemoryRevisionPage(BaseModel):
    items: list[MemoryRevision]
    next_cursor: str | None


class RollbackRequest(ApiModel):
    revision_number: int = Field(..., ge=1)


# -- retrieval -------------------------------------------------------------------------------------


class RetrieveFilters(ApiModel):
    topics: list[TopicName] | None = None
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    event_time_after: datetime | None = None
    event_time_before: datetime | None = None
    as_of: datetime | None = Field(None, description="Rank what was true at this time")


class RetrieveRequest(ApiModel):
    bank_id: UUID | None = None
    scope: ScopeField
    query: str | None = Field(None, max_length=10000, description="None: newest first")
    top_k: int = Field(10, ge=1, le=100)
    mode: RetrieveMode = "hybrid"
    filters: RetrieveFilters = Field(default_factory=RetrieveFilters)
    rrf_k: int = Field(60, ge=1, le=1000, description="Reciprocal rank fusion constant (hybrid)")
    recency_weight: float = Field(0.0, ge=0.0, le=10.0, description="Boost of recent memories (hybrid)")
    recency_half_life: Duration = "30d"
    confidence_weight: float = Field(0.0, ge=0.0, le=1.0, description="Boost of confident memories (hybrid)")


class RetrievedMemory(BaseModel):
    memory: Memory
    score: float
    scores: dict[str, float] = Field(default_factory=dict, description="Per signal: similarity, keyword, rrf")


class RetrieveResponse(BaseModel):
    memories: list[RetrievedMemory]


# -- import / export -------------------------------------------------------------------------------


class ImportLine(ApiModel):
    """One JSONL line of an import: a memory as exported (ids, revisions and times of origin are not kept)."""

    scope: ScopeField
    fact: Fact
    topic: TopicName
    confidence: float = Field(1.0, ge=0.0, le=1.0)
    metadata: JSON = Field(default_factory=dict)
    event_time: datetime | None = None
    expires_at: datetime | None = None
    # Exported fields accepted and not kept (the importing bank allocates its own):
    id: UUID | None = None
    bank_id: UUID | None = None
    source_session_id: UUID | None = None
    source_type: SourceType | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    revision_count: int | None = None
    revision: int | None = None
    is_deleted: Literal[False] | None = None
    embedding_model: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


class ImportResult(BaseModel):
    imported: int
    ids: list[UUID]


MAX_IMPORT_BYTES = 32 * 1024 * 1024
"""The largest JSONL body one import takes (the HTTP route and the embedded SDK apply the same rule)."""


def check_import_size(size: int) -> None:
    """Raise Invalid naming `body` when an import of `size` bytes is over the limit."""
    if size > MAX_IMPORT_BYTES:
        raise Invalid("body", f"at most {MAX_IMPORT_BYTES // (1024 * 1024)} MiB per import")
