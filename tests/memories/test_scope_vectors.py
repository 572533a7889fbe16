"""`cosines`: the hybrid scope scan's similarities from pgvector's binary vectors (`vector_send`)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from contextiq.memories.store import cosines


def _blob(values: list[float]) -> bytes:
    """A vector as pgvector's `vector_send` writes it: int16 dimension, int16 unused, big-endian float4s."""
    return struct.pack(f">hh{len(values)}f", len(values), 0, *values)


def test_cosines_match_the_definition_and_skip_what_cannot_be_compared() -> None:
    rng = np.random.default_rng(3)
    query = rng.normal(size=8).astype(np.float32)
    rows = [rng.normal(size=8).astype(np.float32) for _ in range(5)]
    blobs: list[bytes | None] = [_blob(r.tolist()) for r in rows]
    blobs.insert(2, None)  # no vector of the query's model
    blobs.insert(4, _blob([1.0, 2.0, 3.0]))  # another dimension
    blobs.append(_blob([0.0] * 8))  # a zero vector: no direction

    got = cosines(blobs, query)

    want = [float(r @ query / (np.linalg.norm(r) * np.linalg.norm(query))) for r in rows]
    assert got.dtype == np.float64
    assert np.isnan(got[[2, 4, len(got) - 1]]).all()
    assert [g for k, g in enumerate(got.tolist()) if k not in (2, 4, len(got) - 1)] == pytest.approx(want, abs=1e-6)


def test_cosines_of_a_zero_query_or_no_vectors_are_nan() -> None:
    assert np.isnan(cosines([_blob([1.0, 0.0])], np.zeros(2, dtype=np.float32))).tolist() == [True]
    assert np.isnan(cosines([None, None], np.ones(2, dtype=np.float32))).tolist() == [True, True]
    assert len(cosines([], np.ones(2, dtype=np.float32))) == 0
