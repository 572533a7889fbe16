"""The two steps of memory generation: extraction and consolidation."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

from .types import Action, Candidate, Existing, ExtractionResult, SourceEvent, Topic

__all__ = ["Consolidator", "Extractor"]


class Extractor(abc.ABC):
    """Turns conversation events into candidate facts."""

    @abc.abstractmethod
    async def extract(
        self,
        *,
        events: Sequence[SourceEvent],
        topics: Sequence[Topic],
        examples: Sequence[Mapping[str, object]] = (),
    ) -> ExtractionResult:
        """Extract candidate facts for ``topics`` and report one outcome per event."""


class Consolidator(abc.ABC):
    """Reconciles candidate facts with the memories already stored.

    ``neighbours`` maps a candidate's index to its nearest stored memories in
    the same scope, best first; a candidate without an entry has none.
    """

    @abc.abstractmethod
    async def consolidate(
        self,
        *,
        candidates: Sequence[Candidate],
        neighbours: Mapping[int, Sequence[Existing]],
    ) -> list[Action]:
        """Return exactly one action per candidate, in candidate order."""
