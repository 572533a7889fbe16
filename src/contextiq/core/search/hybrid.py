"""Hybrid ranking: reciprocal rank fusion of several rankings, with optional recency and confidence boosts.

RRF (Cormack et al., SIGIR 2009): an item's fused score is the sum over rankings of
`1 / (k + rank)`, rank counted from 1; `k` (default 60) damps the weight of the very top ranks. It
needs no score calibration between signals (cosine and BM25 live on different scales). Boosts are
multiplicative, so they reorder close items without swamping relevance:

    score = rrf × (1 + recency_weight × 0.5^(age / half_life))
                × (1 − confidence_weight + confidence_weight × confidence)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

__all__ = ["DEFAULT_RRF_K", "Fused", "fuse", "recency_decay", "reciprocal_rank_fusion"]

K = TypeVar("K", bound=Hashable)
DEFAULT_RRF_K = 60


@dataclass(frozen=True, slots=True)
class Fused(Generic[K]):
    """One fused result: the final score and its parts."""

    id: K
    score: float
    rrf: float


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[K]], *, k: int = DEFAULT_RRF_K, weights: Mapping[str, float] | None = None
) -> dict[K, float]:
    """Return each item's RRF score over `rankings` (each best first), optionally weighted per ranking."""
    if k < 1:
        raise ValueError(f"the RRF constant k must be >= 1, got {k}")
    scores: dict[K, float] = {}
    for name, ranking in rankings.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores


def recency_decay(when: datetime, *, now: datetime, half_life: timedelta) -> float:
    """Return 0.5^(age / half_life): 1 for now, 0.5 one half-life ago; the future counts as now."""
    age = max((now - when).total_seconds(), 0.0)
    return float(0.5 ** (age / max(half_life.total_seconds(), 1.0)))


def fuse(
    rankings: Mapping[str, Sequence[K]],
    *,
    k: int = DEFAULT_RRF_K,
    now: datetime | None = None,
    times: Mapping[K, datetime] | None = None,
    recency_weight: float = 0.0,
    half_life: timedelta = timedelta(days=30),
    confidences: Mapping[K, float] | None = None,
    confidence_weight: float = 0.0,
) -> list[Fused[K]]:
    """Fuse `rankings` with RRF, apply the boosts; return the items best first (ties: first seen first)."""
    rrf = reciprocal_rank_fusion(rankings, k=k)
    results: list[Fused[K]] = []
    for item, base in rrf.items():
        score = base
        if recency_weight and times is not None and now is not None and item in times:
            score *= 1 + recency_weight * recency_decay(times[item], now=now, half_life=half_life)
        if confidence_weight and confidences is not None and item in confidences:
            score *= 1 - confidence_weight + confidence_weight * confidences[item]
        results.append(Fused(id=item, score=score, rrf=base))
    order = {item: i for i, item in enumerate(rrf)}
    return sorted(results, key=lambda f: (-f.score, order[f.id]))
