"""Embeddings from the ``sentence-transformers`` library (optional, pulls in PyTorch).

Only for deployments that want a model other than the bundled int8 MiniLM or
fp32 vectors: install the extra with ``pip install 'contextiq[sentence-transformers]'``.
sentence-transformers loads models from a local directory or downloads them
from the Hugging Face Hub on first use (to its own cache); ContextIQ itself
downloads nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Sequence
from typing import Any

import anyio.to_thread
import numpy as np

from contextiq.core.llm.embeddings.base import (
    EmbeddingError,
    EmbeddingProvider,
    VectorBatch,
    check_texts,
    l2_normalize,
)

__all__ = ["DEFAULT_MODEL", "SentenceTransformersProvider"]

#: The model used when none is named.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_KNOWN_DIMENSIONS = {
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "all-MiniLM-L6-v2": 384,
    "sentence-transformers/all-MiniLM-L12-v2": 384,
    "all-MiniLM-L12-v2": 384,
    "sentence-transformers/all-mpnet-base-v2": 768,
    "all-mpnet-base-v2": 768,
}
_MISSING = (
    "the 'sentence-transformers' embedding provider needs the sentence-transformers package, "
    "which is not installed; install it with: pip install 'contextiq[sentence-transformers]' "
    "(or use provider='local', which needs no PyTorch)"
)


class SentenceTransformersProvider(EmbeddingProvider):
    """A ``sentence_transformers.SentenceTransformer`` model, run in worker threads.

    The library is imported and the model loaded on first use (or by
    :meth:`load`); constructing the provider only checks that the library is
    installed.

    Args:
        model: A model name or local path, as ``SentenceTransformer`` takes it.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` lets the library choose.
        batch_size: Texts per forward pass.

    Raises:
        EmbeddingError: sentence-transformers is not installed (the message
            names the ``contextiq[sentence-transformers]`` extra).
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str | None = None, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if importlib.util.find_spec("sentence_transformers") is None:
            raise EmbeddingError(_MISSING)
        self.model = model
        self.dimension = _KNOWN_DIMENSIONS.get(model, 0)
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    async def embed(self, texts: Sequence[str]) -> VectorBatch:
        """Embed ``texts``; see :meth:`EmbeddingProvider.embed`.

        Raises:
            EmbeddingError: The library or the model could not be loaded, or encoding failed.
        """
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return await anyio.to_thread.run_sync(self._embed_sync, items)

    async def load(self) -> None:
        """Import the library and load the model now, in a worker thread."""
        await anyio.to_thread.run_sync(self._ensure_loaded)

    async def aclose(self) -> None:
        """Drop the loaded model; a later :meth:`embed` loads it again."""
        self._model = None

    def _ensure_loaded(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                try:
                    library = importlib.import_module("sentence_transformers")
                except ImportError as exc:
                    raise EmbeddingError(_MISSING) from exc
                try:
                    loaded = library.SentenceTransformer(self.model, device=self.device)
                except Exception as exc:
                    raise EmbeddingError(
                        f"sentence-transformers could not load the model {self.model!r}: {exc}"
                    ) from exc
                dimension = loaded.get_sentence_embedding_dimension()
                if dimension:
                    self.dimension = int(dimension)
                self._model = loaded
            return self._model

    def _embed_sync(self, texts: list[str]) -> VectorBatch:
        model = self._ensure_loaded()
        try:
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        except Exception as exc:
            raise EmbeddingError(f"sentence-transformers failed to embed {len(texts)} texts: {exc}") from exc
        matrix = l2_normalize(np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1))
        self.dimension = int(matrix.shape[1])
        return matrix
