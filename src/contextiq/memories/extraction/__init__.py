"""Memory extraction and consolidation: plain types, the two step interfaces, offline and LLM steps.

The LLM classes are imported lazily: importing this package never loads ``llm.py`` (nor its HTTP
client) unless one of its names is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import Consolidator, Extractor
from .offline import OfflineConsolidator, OfflineExtractor, Statement, parse_statements
from .types import (
    EXPLICIT_INSTRUCTIONS,
    KEY_CONVERSATION_DETAILS,
    MANAGED_TOPICS,
    USER_PERSONAL_INFO,
    USER_PREFERENCES,
    Action,
    ActionKind,
    Candidate,
    EventOutcome,
    Existing,
    ExtractionResult,
    OutcomeStatus,
    SourceEvent,
    Topic,
    managed_topics,
)

if TYPE_CHECKING:
    from .llm import ChatClient, LLMConsolidator, LLMError, LLMExtractor

__all__ = [
    "EXPLICIT_INSTRUCTIONS",
    "KEY_CONVERSATION_DETAILS",
    "MANAGED_TOPICS",
    "USER_PERSONAL_INFO",
    "USER_PREFERENCES",
    "Action",
    "ActionKind",
    "Candidate",
    "ChatClient",
    "Consolidator",
    "EventOutcome",
    "Existing",
    "ExtractionResult",
    "Extractor",
    "LLMConsolidator",
    "LLMError",
    "LLMExtractor",
    "OfflineConsolidator",
    "OfflineExtractor",
    "OutcomeStatus",
    "SourceEvent",
    "Statement",
    "Topic",
    "managed_topics",
    "parse_statements",
]

_LAZY = frozenset({"ChatClient", "LLMConsolidator", "LLMError", "LLMExtractor"})


def __getattr__(name: str) -> Any:
    """Load the LLM classes from ``.llm`` on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.llm"), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
