"""The wire contract of memory generation (seed 000 §2.5): the request, the job, per-event outcomes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, StringConstraints

from contextiq.core.models import ApiModel, ResponseModel, ScopeField
from contextiq.core.types import JSON

GENERATE_KIND = "memories.generate"
MAX_EVENTS = 1000
MAX_FACTS = 1000
MAX_FACT_LENGTH = 2000
MAX_EVENT_TEXT = 20_000

SourceType = Literal["session", "events", "facts"]
GenerationStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
EventStatus = Literal["extracted", "skipped", "failed"]
ActionKind = Literal["CREATE", "UPDATE", "DELETE", "SKIP"]
Author = Literal["user", "agent", "tool", "system"]
Fact = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FACT_LENGTH)]


class GenerationConfig(ApiModel):
    wait_for_completion: bool = Field(False, description="Answer when the job has finished (or after a deadline)")
    disable_consolidation: bool = Field(
        False, description="Store every extracted fact as a new memory, without comparing with stored ones"
    )
    topics: list[str] | None = Field(
        None, max_length=50, description="Extract only these topics (labels of the bank's topics)"
    )
    extraction_model: str | None = Field(
        None, min_length=1, max_length=255,
        description='LLM model for extraction and consolidation; "offline" forces the built-in extractor',
    )
    embedding_model: str | None = Field(
        None, min_length=1, max_length=255, description="Must name the deployment's embedding model if given"
    )


class InputEvent(ApiModel):
    """One conversation event given inline (`source_type: events`)."""

    id: str | None = Field(None, min_length=1, max_length=255, description="Unique in the request; generated if absent")
    author: Author
    text: str | None = Field(None, max_length=MAX_EVENT_TEXT)
    content: JSON | None = Field(None, description='ADK-style content, e.g. {"parts": [{"text": "..."}]}')
    timestamp: datetime | None = None
    metadata: JSON = Field(default_factory=dict)


class GenerateRequest(ApiModel):
    bank_id: UUID | None = Field(None, description="Defaults to the tenant's default bank")
    scope: ScopeField
    source_type: SourceType
    source_reference: str | None = Field(
        None, min_length=1, max_length=1000, description="The session id for source_type session"
    )
    events: list[InputEvent] | None = Field(None, min_length=1, max_length=MAX_EVENTS)
    facts: list[Fact] | None = Field(None, min_length=1, max_length=MAX_FACTS)
    config: GenerationConfig = Field(default_factory=GenerationConfig)


class GenerationAction(ResponseModel):
    """One consolidation decision and the memory it touched."""

    action: ActionKind
    memory_id: UUID | None = None
    fact: str | None = None
    topic: str | None = None
    reason: str
    source_event_ids: list[str] = Field(default_factory=list)


class GenerationResult(ResponseModel):
    memories_created: int = 0
    memories_updated: int = 0
    memories_deleted: int = 0
    memories_skipped: int = 0
    extracted_count: int = 0
    events_total: int = 0
    events_extracted: int = 0
    events_skipped: int = 0
    events_failed: int = 0
    errors: list[str] = Field(default_factory=list)
    actions: list[GenerationAction] = Field(default_factory=list)


class ExtractedMemory(ResponseModel):
    """A raw candidate fact, as extracted and before consolidation."""

    fact: str
    topic: str
    confidence: float
    source_event_ids: list[str]
    subject: str | None = None
    is_retraction: bool = False


class TokenUsage(ResponseModel):
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class MemoryGenerationJob(ResponseModel):
    id: UUID
    kind: Literal["memories.generate"] = "memories.generate"
    bank_id: UUID
    status: GenerationStatus
    stage: str = Field(description="The last step finished: queued, loaded, extracted, consolidated, applied")
    progress: float = Field(ge=0.0, le=1.0)
    source_type: SourceType
    source_reference: str
    scope: dict[str, str]
    config: GenerationConfig
    result: GenerationResult | None = None
    error_message: str | None = None
    attempts: int = 0
    max_attempts: int = 1
    extractor: str | None = Field(None, description='"offline" or "llm:<model>" once extraction ran')
    usage: TokenUsage = Field(default_factory=TokenUsage)
    extracted_memories: list[ExtractedMemory] | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    applied_at: datetime | None = None

    @property
    def is_finished(self) -> bool:
        """Whether the job has reached a final status."""
        return self.status in ("completed", "failed", "cancelled")


class MemoryGenerationJobPage(ResponseModel):
    items: list[MemoryGenerationJob]
    next_cursor: str | None


class JobEvent(ResponseModel):
    """What a job made of one source event, and why."""

    position: int
    event_id: str
    author: str | None
    status: EventStatus
    reason: str | None
    candidate_count: int
    memory_ids: list[UUID]
    excerpt: str | None
    event_time: datetime | None


class JobEventPage(ResponseModel):
    items: list[JobEvent]
    next_cursor: str | None
