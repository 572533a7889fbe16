"""Vectors in Qdrant (seed 000 §5): one collection per kind (`memories`, `workflows`, `skills`), cosine.

Optional: `pip install 'contextiq[qdrant]'`; the driver is imported when an index is built. Partition
fields and the filter's fields are payload fields; datetimes are stored and compared as POSIX seconds
(floats), since Qdrant's range conditions are numeric. `QdrantVectorIndex(location=":memory:")` runs
qdrant-client's local mode (no server), which the conformance suite uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from typing_extensions import override

from contextiq.core.llm.embeddings.base import Vector
from contextiq.core.search.base import Hit, VectorFilter, VectorIndex, VectorItem

__all__ = ["QdrantVectorIndex"]


def _plain(value: Any) -> Any:
    return value.timestamp() if isinstance(value, datetime) else value


class QdrantVectorIndex(VectorIndex):
    """An external vector index in Qdrant (a server by `url`, or local mode by `location`)."""

    name = "qdrant"
    row_backed = False

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        client: Any = None,
    ) -> None:
        try:
            from qdrant_client import AsyncQdrantClient, models
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "the Qdrant vector index needs qdrant-client: pip install 'contextiq[qdrant]'"
            ) from exc
        self._m: Any = models
        if client is None:
            client = (
                AsyncQdrantClient(url=url, api_key=api_key)
                if url
                else AsyncQdrantClient(location=location or ":memory:")
            )
        self._client: Any = client
        self._dimensions: dict[str, int] = {}

    async def _dimension(self, collection: str) -> int | None:
        if collection not in self._dimensions:
            if not await self._client.collection_exists(collection):
                return None
            info = await self._client.get_collection(collection)
            self._dimensions[collection] = int(info.config.params.vectors.size)
        return self._dimensions[collection]

    @override
    async def ensure_collection(self, *, collection: str, dimension: int) -> None:
        existing = await self._dimension(collection)
        if existing is None:
            await self._client.create_collection(
                collection_name=collection,
                vectors_config=self._m.VectorParams(size=dimension, distance=self._m.Distance.COSINE),
            )
            self._dimensions[collection] = dimension
        elif existing != dimension:
            raise ValueError(
                f"Qdrant collection {collection!r} holds {existing}-d vectors, not {dimension}-d; "
                "re-embed into a new collection"
            )

    @override
    async def upsert(self, *, collection: str, items: Sequence[VectorItem]) -> None:
        if not items:
            return
        await self.ensure_collection(collection=collection, dimension=len(items[0].vector))
        points = [
            self._m.PointStruct(
                id=item.id,
                vector=np.asarray(item.vector, dtype=np.float32).tolist(),
                payload={**{k: _plain(v) for k, v in item.payload.items()}, **dict(item.partition)},
            )
            for item in items
        ]
        await self._client.upsert(collection_name=collection, points=points, wait=True)

    @override
    async def delete(self, *, collection: str, ids: Sequence[str]) -> None:
        if not ids or await self._dimension(collection) is None:
            return
        await self._client.delete(
            collection_name=collection, points_selector=self._m.PointIdsList(points=list(ids)), wait=True
        )

    @override
    async def search(
        self,
        *,
        collection: str,
        partition: Mapping[str, str],
        vector: Vector,
        limit: int,
        filter: VectorFilter | None = None,
    ) -> list[Hit]:
        if limit <= 0 or await self._dimension(collection) != len(vector):
            return []
        response = await self._client.query_points(
            collection_name=collection,
            query=np.asarray(vector, dtype=np.float32).tolist(),
            query_filter=self._filter(partition, filter),
            limit=limit,
            with_payload=True,
        )
        hits = [
            Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {}))
            for p in response.points
        ]
        return sorted(hits, key=lambda h: (-h.score, h.id))

    @override
    async def count(self, *, collection: str, partition: Mapping[str, str]) -> int:
        if await self._dimension(collection) is None:
            return 0
        result = await self._client.count(
            collection_name=collection, count_filter=self._filter(partition, None), exact=True
        )
        return int(result.count)

    @override
    async def aclose(self) -> None:
        await self._client.close()

    def _filter(self, partition: Mapping[str, str], flt: VectorFilter | None) -> Any:
        m = self._m
        must: list[Any] = [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in partition.items()]
        if flt is not None:
            for k, v in flt.equals.items():
                if isinstance(v, float | datetime):
                    must.append(m.FieldCondition(key=k, range=m.Range(gte=_plain(v), lte=_plain(v))))
                else:
                    must.append(m.FieldCondition(key=k, match=m.MatchValue(value=v)))
            must += [m.FieldCondition(key=k, match=m.MatchAny(any=list(v))) for k, v in flt.any_of.items()]
            must += [m.FieldCondition(key=k, range=m.Range(gte=_plain(v))) for k, v in flt.at_least.items()]
            must += [m.FieldCondition(key=k, range=m.Range(lt=_plain(v))) for k, v in flt.before.items()]
            for k, v in flt.unset_or_after.items():
                must.append(
                    m.Filter(
                        should=[
                            m.IsNullCondition(is_null=m.PayloadField(key=k)),
                            m.IsEmptyCondition(is_empty=m.PayloadField(key=k)),
                            m.FieldCondition(key=k, range=m.Range(gt=_plain(v))),
                        ]
                    )
                )
        return m.Filter(must=must)
