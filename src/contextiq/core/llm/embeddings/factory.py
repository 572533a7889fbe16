"""Build the configured embedding provider."""

from __future__ import annotations

from contextiq.core.llm.embeddings.base import EmbeddingProvider
from contextiq.core.llm.embeddings.cache import CachedEmbeddingProvider

__all__ = ["DEFAULT_OPENAI_MODEL", "PROVIDERS", "make_embedding_provider"]

#: The accepted values of ``provider`` (``CONTEXTIQ_EMBEDDINGS_PROVIDER``).
PROVIDERS = ("local", "openai", "sentence-transformers")
#: The model asked of an OpenAI-compatible endpoint when none is named.
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"
# Names under which the bundled model may be asked for.
_LOCAL_ALIASES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2-onnx-int8"})


def make_embedding_provider(
    *,
    provider: str = "local",
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    threads: int = 1,
    query_workers: int = 1,
    query_batch: int = 4,
    cache_size: int = 10000,
    dimension: int | None = None,
) -> EmbeddingProvider:
    """Build an embedding provider from configuration (the ``CONTEXTIQ_EMBEDDINGS_*`` settings).

    Args:
        provider: ``"local"`` (the bundled int8 all-MiniLM-L6-v2 on
            onnxruntime, offline), ``"openai"`` (any OpenAI-compatible
            ``/embeddings`` endpoint) or ``"sentence-transformers"`` (needs the
            ``contextiq[sentence-transformers]`` extra).
        base_url: API root for ``"openai"`` (required there, ignored otherwise).
        api_key: Bearer token for ``"openai"``; may be ``None`` for local servers.
        model: Model name; ``None`` picks the provider's default. ``"local"``
            only accepts its own model (``all-MiniLM-L6-v2``).
        threads: onnxruntime intra-op threads for ``"local"``.
        query_workers: threads that coalesce concurrent queries into shared
            inferences for ``"local"`` (1 or 2).
        query_batch: texts those threads embed in one inference at most
            (``"local"``).
        cache_size: Entries of the in-process LRU cache put in front of the
            provider; ``0`` for no cache.
        dimension: Expected vector length for ``"openai"``; ``None`` learns it.

    Returns:
        The provider, wrapped in a :class:`CachedEmbeddingProvider` when
        ``cache_size > 0``. Nothing is loaded or connected yet.

    Raises:
        ValueError: Unknown provider, a missing ``base_url`` for ``"openai"``
            (naming ``CONTEXTIQ_EMBEDDINGS_BASE_URL``), a model ``"local"``
            cannot serve, or a negative ``cache_size``.
        EmbeddingError: ``"sentence-transformers"`` without the library installed.
    """
    if cache_size < 0:
        raise ValueError(f"cache_size must be >= 0, got {cache_size}")
    inner: EmbeddingProvider
    if provider == "local":
        if model is not None and model not in _LOCAL_ALIASES:
            raise ValueError(
                f"the local embedding provider serves only all-MiniLM-L6-v2, not {model!r}; "
                "unset CONTEXTIQ_EMBEDDINGS_MODEL or choose another CONTEXTIQ_EMBEDDINGS_PROVIDER"
            )
        from contextiq.core.llm.embeddings.local import LocalMiniLMProvider

        inner = LocalMiniLMProvider(threads=threads, query_workers=query_workers, query_batch=query_batch)
    elif provider == "openai":
        if not base_url:
            raise ValueError(
                "the openai embedding provider needs a base URL: set CONTEXTIQ_EMBEDDINGS_BASE_URL "
                "(e.g. https://api.openai.com/v1)"
            )
        from contextiq.core.llm.embeddings.openai import OpenAIEmbeddingProvider

        inner = OpenAIEmbeddingProvider(base_url, api_key, model or DEFAULT_OPENAI_MODEL, dimension=dimension)
    elif provider == "sentence-transformers":
        from contextiq.core.llm.embeddings.sentence_transformers import (
            DEFAULT_MODEL,
            SentenceTransformersProvider,
        )

        inner = SentenceTransformersProvider(model or DEFAULT_MODEL)
    else:
        raise ValueError(
            f"unknown embedding provider {provider!r} (CONTEXTIQ_EMBEDDINGS_PROVIDER); "
            f"expected one of {', '.join(PROVIDERS)}"
        )
    if cache_size > 0:
        return CachedEmbeddingProvider(inner, max_entries=cache_size)
    return inner
