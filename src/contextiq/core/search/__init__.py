"""Search: vector indexes (pgvector, SQLite/numpy, Qdrant), full text (tsvector, FTS5) and hybrid fusion."""

from __future__ import annotations

from contextiq.core.search.base import (
    Hit,
    SqlCollection,
    SqlVectorIndex,
    VectorFilter,
    VectorIndex,
    VectorItem,
)
from contextiq.core.search.factory import make_vector_index
from contextiq.core.search.hybrid import DEFAULT_RRF_K, Fused, fuse, recency_decay, reciprocal_rank_fusion
from contextiq.core.search.keyword import TextCollection, keyword_search, query_terms
from contextiq.core.search.terms import bm25_scores

__all__ = [
    "DEFAULT_RRF_K",
    "Fused",
    "Hit",
    "SqlCollection",
    "SqlVectorIndex",
    "TextCollection",
    "VectorFilter",
    "VectorIndex",
    "VectorItem",
    "bm25_scores",
    "fuse",
    "keyword_search",
    "make_vector_index",
    "query_terms",
    "recency_decay",
    "reciprocal_rank_fusion",
]
