"""An in-process LRU cache in front of any embedding provider."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from contextiq.core.llm.embeddings.base import (
    EmbeddingError,
    EmbeddingProvider,
    Vector,
    VectorBatch,
    check_texts,
)

__all__ = ["CachedEmbeddingProvider"]

_CacheKey = tuple[str, bytes]


class CachedEmbeddingProvider(EmbeddingProvider):
    """Wraps a provider with a least-recently-used cache of embeddings.

    Entries are keyed by ``(model, sha256(text))``, so texts are not kept in
    memory and vectors of different models never mix. :meth:`embed` looks
    every text up, sends only the misses (each distinct text once) to the
    inner provider in one call, and returns all rows in input order. At most
    ``max_entries`` vectors are kept; the least recently used go first.

    ``model`` and ``dimension`` mirror the inner provider's (a remote
    provider may learn its dimension on its first call). :meth:`aclose`
    closes the inner provider. The cache lives in this process only and is
    not shared between event loops or processes; two concurrent calls that
    miss on the same text both send it to the inner provider.

    Args:
        inner: The provider to cache.
        max_entries: Most vectors kept, >= 1.
    """

    def __init__(self, inner: EmbeddingProvider, max_entries: int = 10000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.inner = inner
        self.max_entries = max_entries
        self.model = inner.model
        self.dimension = inner.dimension
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[_CacheKey, Vector] = OrderedDict()

    def __repr__(self) -> str:
        return f"CachedEmbeddingProvider({self.inner!r}, max_entries={self.max_entries})"

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every cached vector (the hit and miss counters stay)."""
        self._entries.clear()

    async def embed(self, texts: Sequence[str]) -> VectorBatch:
        """Embed ``texts``, from the cache where possible; see :meth:`EmbeddingProvider.embed`.

        Raises:
            EmbeddingError: The inner provider failed, or returned a result of
                the wrong shape.
        """
        items = check_texts(texts)
        model = self.inner.model
        keys = [(model, hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()) for text in items]
        found: dict[_CacheKey, Vector] = {}
        missing: dict[_CacheKey, str] = {}
        for key, text in zip(keys, items, strict=True):
            if key in found or key in missing:
                continue
            vector = self._entries.get(key)
            if vector is None:
                missing[key] = text
            else:
                self._entries.move_to_end(key)
                found[key] = vector
        self.hits += len(items) - len(missing)
        self.misses += len(missing)

        if missing:
            fresh = await self.inner.embed(list(missing.values()))
            if fresh.ndim != 2 or fresh.shape[0] != len(missing):
                raise EmbeddingError(
                    f"{type(self.inner).__name__} returned shape {fresh.shape} for {len(missing)} texts"
                )
            for key, row in zip(missing, fresh, strict=True):
                vector = np.array(row, dtype=np.float32)  # a copy the caller cannot reach
                vector.flags.writeable = False
                found[key] = vector
                self._store(key, vector)
        self.dimension = self.inner.dimension

        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)

    async def aclose(self) -> None:
        """Close the inner provider."""
        await self.inner.aclose()

    def _store(self, key: _CacheKey, vector: Vector) -> None:
        self._entries[key] = vector
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
