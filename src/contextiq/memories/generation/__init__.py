"""Memory generation: jobs that turn sessions, events or facts into consolidated memories."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contextiq.memories.generation.models import (
    GENERATE_KIND,
    GenerateRequest,
    GenerationConfig,
    GenerationResult,
    JobEvent,
    JobEventPage,
    MemoryGenerationJob,
    MemoryGenerationJobPage,
)

if TYPE_CHECKING:
    from contextiq.memories.generation.service import GenerationHandler, GenerationService

__all__ = [
    "GENERATE_KIND",
    "GenerateRequest",
    "GenerationConfig",
    "GenerationHandler",
    "GenerationResult",
    "GenerationService",
    "JobEvent",
    "JobEventPage",
    "MemoryGenerationJob",
    "MemoryGenerationJobPage",
]


def __getattr__(name: str) -> Any:
    # The service (SQLAlchemy, numpy, models) loads on first use, so the SDK's imports of the wire
    # models stay light.
    if name in {'GenerationHandler', 'GenerationService'}:
        import importlib

        return getattr(importlib.import_module("contextiq.memories.generation.service"), name)
    raise AttributeError(name)
