"""Plain data passed between the memory-generation steps.

Everything here is storage-free: the caller turns stored events into
:class:`SourceEvent`, looks up :class:`Existing` neighbours itself and applies
the :class:`Action` list to its own store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = [
    "EXPLICIT_INSTRUCTIONS",
    "KEY_CONVERSATION_DETAILS",
    "MANAGED_TOPICS",
    "USER_PERSONAL_INFO",
    "USER_PREFERENCES",
    "Action",
    "ActionKind",
    "Candidate",
    "EventOutcome",
    "Existing",
    "ExtractionResult",
    "OutcomeStatus",
    "SourceEvent",
    "Topic",
    "managed_topics",
]

USER_PERSONAL_INFO = "USER_PERSONAL_INFO"
USER_PREFERENCES = "USER_PREFERENCES"
KEY_CONVERSATION_DETAILS = "KEY_CONVERSATION_DETAILS"
EXPLICIT_INSTRUCTIONS = "EXPLICIT_INSTRUCTIONS"

#: The managed topics and their built-in descriptions (the wording follows Vertex AI Memory Bank's).
MANAGED_TOPICS: dict[str, str] = {
    USER_PERSONAL_INFO: (
        "Significant personal information about the user: names, relationships, family, "
        "work, location, hobbies, health, important dates."
    ),
    USER_PREFERENCES: "Stated or implied likes, dislikes, preferred styles, habits or patterns of the user.",
    KEY_CONVERSATION_DETAILS: (
        "Important milestones, plans, appointments, decisions or conclusions within the dialogue."
    ),
    EXPLICIT_INSTRUCTIONS: (
        "Information the user explicitly asks to remember or forget, and standing instructions "
        "on how the assistant should behave."
    ),
}

OutcomeStatus = Literal["extracted", "skipped", "failed"]
ActionKind = Literal["CREATE", "UPDATE", "DELETE", "SKIP"]


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """One conversation event to learn from.

    ``author`` is ``"user"``, ``"agent"``, ``"tool"`` or ``"system"``; a
    speaker's display name, if any, stays in the caller's metadata.
    """

    id: str
    author: str
    text: str
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class Topic:
    """A memory topic: a managed label or a custom one with the user's description."""

    label: str
    description: str

    @property
    def is_managed(self) -> bool:
        """Tell whether the label is one of :data:`MANAGED_TOPICS`."""
        return self.label in MANAGED_TOPICS


def managed_topics() -> list[Topic]:
    """Return the four managed topics with their built-in descriptions."""
    return [Topic(label, description) for label, description in MANAGED_TOPICS.items()]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A fact proposed for memory, not yet reconciled with what is stored.

    ``subject`` is a normalised slot (``"personal:location"``,
    ``"preference:ui mode"``, ``"instruction:response language"`` ...): two
    facts with the same subject describe the same thing, so a newer one
    replaces an older one. ``is_retraction`` marks a request to forget
    ``fact`` rather than to remember it.
    """

    fact: str
    topic: str
    confidence: float
    source_event_ids: tuple[str, ...]
    event_time: datetime | None = None
    subject: str | None = None
    is_retraction: bool = False


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """What happened to one source event during extraction."""

    event_id: str
    status: OutcomeStatus
    reason: str | None
    candidate_count: int = 0


@dataclass(frozen=True, slots=True)
class ExtractionResult:
    """Candidates from one extraction run, one outcome per event, and model token usage."""

    candidates: list[Candidate] = field(default_factory=list)
    outcomes: list[EventOutcome] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Existing:
    """A stored memory in the candidate's scope with its cosine similarity to the candidate."""

    id: str
    fact: str
    topic: str
    subject: str | None
    similarity: float


@dataclass(frozen=True, slots=True)
class Action:
    """The decision for one candidate.

    ``CREATE`` stores ``fact`` (the candidate's fact); ``UPDATE`` rewrites
    ``target_id`` to ``fact``; ``DELETE`` removes ``target_id``; ``SKIP``
    stores nothing. ``reason`` is short and meant for people.
    """

    kind: ActionKind
    candidate: Candidate | None
    target_id: str | None
    fact: str | None
    reason: str
