"""The embedding provider contract shared by every backend.

An :class:`EmbeddingProvider` turns texts into dense vectors. Every provider
returns ``float32`` rows that are L2-normalised, so the dot product of two
rows *is* their cosine similarity; callers (vector stores, rankers) rely on
that and never normalise again.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

__all__ = ["EmbeddingError", "EmbeddingProvider", "Vector", "VectorBatch", "check_texts", "l2_normalize"]

#: One embedding: a 1-D ``float32`` array of length ``dimension``.
Vector = npt.NDArray[np.float32]
#: Several embeddings: a 2-D ``float32`` array of shape ``(n, dimension)``.
VectorBatch = npt.NDArray[np.float32]

_EPSILON = 1e-12


class EmbeddingError(Exception):
    """An embedding could not be computed.

    Raised for every failure a caller can meet at run time: a model file that
    is missing or fails its checksum, a remote endpoint that answers with an
    error status or a malformed body, a vector of the wrong dimension, an
    optional dependency that is not installed. The message says what failed
    and, where there is one, what to do about it.
    """


class EmbeddingProvider(abc.ABC):
    """Turns texts into L2-normalised ``float32`` vectors.

    Attributes:
        model: The name of the embedding model. Vectors from different models
            live in different spaces and must never be compared; stores and
            caches key on this name.
        dimension: The length of every vector this provider returns. A remote
            provider that was not told its dimension sets it to ``0`` until
            its first successful response, and to the learned value after.

    Providers are used from asyncio code: :meth:`embed` never blocks the event
    loop (CPU-bound work runs in a worker thread, I/O is asynchronous), and a
    provider may be called concurrently from several tasks. Call
    :meth:`aclose` (or use ``async with``) when done with it.
    """

    model: str
    dimension: int

    @abc.abstractmethod
    async def embed(self, texts: Sequence[str]) -> VectorBatch:
        """Embed several texts.

        Args:
            texts: The texts, in any number (an empty sequence is fine). A bare
                ``str`` is rejected with :class:`TypeError`, since it is a
                sequence of characters and almost certainly a mistake.

        Returns:
            A ``float32`` array of shape ``(len(texts), dimension)`` whose row
            ``i`` is the embedding of ``texts[i]``, each row with L2 norm 1
            (so ``a @ b`` is the cosine similarity of two rows). For an empty
            input the shape is ``(0, dimension)``.

        Raises:
            EmbeddingError: The embeddings could not be computed.
        """

    async def embed_one(self, text: str) -> Vector:
        """Embed one text.

        Returns:
            A 1-D ``float32`` array of length ``dimension`` with L2 norm 1: the
            same vector as row 0 of ``await embed([text])``.

        Raises:
            EmbeddingError: The embedding could not be computed.
        """
        if not isinstance(text, str):
            raise TypeError(f"embed_one() expects a str, not {type(text).__name__}")
        batch = await self.embed([text])
        vector: Vector = batch[0]
        return vector

    async def aclose(self) -> None:
        """Release what the provider holds (HTTP connections, sessions).

        Idempotent. The base implementation does nothing.
        """
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, dimension={self.dimension})"


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate the ``texts`` argument of :meth:`EmbeddingProvider.embed`.

    Returns:
        The texts as a list.

    Raises:
        TypeError: ``texts`` is a bare ``str``/``bytes`` or holds a non-``str``.
    """
    if isinstance(texts, str | bytes):
        raise TypeError("embed() expects a sequence of str, not a single string; use embed_one()")
    items = list(texts)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"embed() expects str items; item {i} is {type(item).__name__}")
    return items


def l2_normalize(vectors: npt.ArrayLike) -> VectorBatch:
    """Return ``vectors`` (shape ``(n, d)``) as ``float32`` rows of L2 norm 1.

    An all-zero row stays all-zero instead of becoming NaN.
    """
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.maximum(norms, _EPSILON, out=norms)
    result: VectorBatch = (matrix / norms).astype(np.float32, copy=False)
    return result
