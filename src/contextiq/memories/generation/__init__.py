"""Memory generation: jobs that turn sessions, events or facts into consolidated memories."""

from __future__ import annotations

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
