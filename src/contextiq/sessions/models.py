"""The wire contract of sessions and events (seed 000 §2.1–2.2, ADK semantics)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from contextiq.core.models import ApiModel, ResponseModel, ScopeField
from contextiq.core.types import JSON

Author = Literal["user", "agent", "tool", "system"]


class ToolCall(ApiModel):
    tool_name: str = Field(..., min_length=1, max_length=255)
    arguments: JSON = Field(default_factory=dict)
    call_id: str = Field(..., min_length=1, max_length=255)


class ToolOutput(ApiModel):
    call_id: str = Field(..., min_length=1, max_length=255)
    output: Any = None
    error: str | None = None


class EventActions(ApiModel):
    """What an event did besides speaking: state changes, tool calls and their outputs."""

    state_delta: JSON | None = Field(
        None, description="Keys to set; null deletes. Prefixes: app:, user:, temp: (never stored)"
    )
    tool_calls: list[ToolCall] | None = None
    tool_outputs: list[ToolOutput] | None = None


class SessionCreate(ApiModel):
    user_id: str = Field(..., min_length=1, max_length=255)
    agent_id: str | None = Field(None, min_length=1, max_length=255)
    scope: ScopeField = Field(default_factory=dict)
    state: JSON = Field(default_factory=dict, description="Initial state; prefixes as in state_delta")
    metadata: JSON = Field(default_factory=dict)
    expires_at: datetime | None = None
    parent_session_id: UUID | None = None


class SessionUpdate(ApiModel):
    """A PATCH: omitted fields stay; `state` is merged like a state_delta (null deletes a key)."""

    agent_id: str | None = Field(None, min_length=1, max_length=255)
    scope: ScopeField | None = None
    state: JSON | None = None
    metadata: JSON | None = None
    expires_at: datetime | None = None
    is_active: bool | None = None


class Event(ResponseModel):
    id: UUID
    session_id: UUID
    sequence: int
    author: Author
    invocation_id: str
    timestamp: datetime
    content: JSON
    actions: EventActions | None = None
    metadata: JSON = Field(default_factory=dict)
    created_at: datetime


class EventCreate(ApiModel):
    author: Author
    invocation_id: str = Field(..., min_length=1, max_length=255)
    content: JSON
    actions: EventActions | None = None
    metadata: JSON = Field(default_factory=dict)
    timestamp: datetime | None = Field(None, description="Defaults to now; a past time is kept (imports)")


class Session(ResponseModel):
    id: UUID
    user_id: str
    agent_id: str | None
    scope: dict[str, str]
    state: JSON = Field(description="Merged: session keys, then app: and user: keys with their prefix")
    metadata: JSON
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    is_active: bool
    parent_session_id: UUID | None
    version: int
    event_count: int
    events: list[Event] | None = Field(None, description="The newest events when num_recent_events is given")

    @property
    def etag(self) -> str:
        """The strong ETag of this version of the session."""
        return f'"{self.version}"'


class SessionPage(ResponseModel):
    items: list[Session]
    next_cursor: str | None


class EventPage(ResponseModel):
    items: list[Event]
    next_cursor: str | None


class SessionFilter(ApiModel):
    user_id: str | None = None
    agent_id: str | None = None
    is_active: bool | None = None
    parent_session_id: UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class EventFilter(ApiModel):
    after: datetime | None = None
    before: datetime | None = None
    author: Author | None = None
    invocation_id: str | None = None
    ascending: bool = True
