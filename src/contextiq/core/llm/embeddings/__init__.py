"""Embedding providers: texts in, L2-normalised ``float32`` vectors out.

``make_embedding_provider(provider=...)`` builds the configured one:
``"local"`` (bundled all-MiniLM-L6-v2, int8 ONNX, offline), ``"openai"`` (any
OpenAI-compatible ``/embeddings`` endpoint) or ``"sentence-transformers"``
(optional extra), behind an in-process LRU cache.
"""

from __future__ import annotations

from contextiq.core.llm.embeddings.base import EmbeddingError, EmbeddingProvider
from contextiq.core.llm.embeddings.cache import CachedEmbeddingProvider
from contextiq.core.llm.embeddings.factory import make_embedding_provider
from contextiq.core.llm.embeddings.local import LocalMiniLMProvider
from contextiq.core.llm.embeddings.openai import OpenAIEmbeddingProvider
from contextiq.core.llm.embeddings.sentence_transformers import SentenceTransformersProvider

__all__ = [
    "CachedEmbeddingProvider",
    "EmbeddingError",
    "EmbeddingProvider",
    "LocalMiniLMProvider",
    "OpenAIEmbeddingProvider",
    "SentenceTransformersProvider",
    "make_embedding_provider",
]
