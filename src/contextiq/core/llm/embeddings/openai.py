"""Embeddings from any OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

Works with OpenAI itself and with the many servers that speak its protocol
(vLLM, Ollama, LM Studio, llama.cpp, LiteLLM, text-embeddings-inference, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import httpx
import numpy as np

from contextiq.core.llm.embeddings.base import (
    EmbeddingError,
    EmbeddingProvider,
    VectorBatch,
    check_texts,
    l2_normalize,
)
from contextiq.core.llm.http import RETRY_STATUSES, excerpt, retry_delay

__all__ = ["KNOWN_DIMENSIONS", "MAX_BATCH", "OpenAIEmbeddingProvider"]

#: Most inputs sent in one request.
MAX_BATCH = 256
#: Dimensions of well-known models, used when none is given.
KNOWN_DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbeddingProvider(EmbeddingProvider):
    """Embeddings over HTTP from an OpenAI-compatible endpoint.

    Sends ``{"model": model, "input": [...]}`` to ``POST {base_url}/embeddings``
    in batches of at most ``batch_size`` (<= 256) inputs, one batch after the
    other, and returns the vectors L2-normalised in input order (the
    response's ``index`` fields are honoured, whatever order the rows arrive
    in).

    Transient failures (HTTP 408, 429 and 5xx, connection errors and
    timeouts) are retried, ``max_tries`` attempts in all, waiting
    ``backoff * 2**(attempt - 1)`` seconds (with a little jitter) between
    attempts, or the server's ``Retry-After`` when it sends one (at most
    30 s). Any other status, or the last failed attempt, raises
    :class:`EmbeddingError` naming the status and quoting the start of the
    response body.

    Args:
        base_url: The API root, e.g. ``https://api.openai.com/v1`` or
            ``http://localhost:11434/v1``; ``/embeddings`` is appended.
        api_key: Sent as ``Authorization: Bearer ...``; ``None`` or empty sends
            no such header (local servers).
        model: The model name sent in each request.
        dimension: The expected vector length. If ``None`` it is taken from
            :data:`KNOWN_DIMENSIONS` or else learned from the first response
            (``dimension`` reads ``0`` until then). A response of another
            length raises :class:`EmbeddingError`.
        timeout: Seconds allowed for each HTTP request.
        max_tries: Attempts per batch, including the first.
        backoff: Base of the exponential wait between attempts, in seconds.
        batch_size: Inputs per request, 1 to 256.
        client: An ``httpx.AsyncClient`` to use instead of creating one; the
            caller keeps ownership (:meth:`aclose` does not close it).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        dimension: int | None = None,
        timeout: float = 30,
        *,
        max_tries: int = 3,
        backoff: float = 0.5,
        batch_size: int = MAX_BATCH,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if not model:
            raise ValueError("model is required")
        if dimension is not None and dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        if backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {backoff}")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}")
        self.model = model
        self.dimension = dimension if dimension is not None else KNOWN_DIMENSIONS.get(model, 0)
        self._dimension_fixed = dimension is not None
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self.timeout = timeout
        self.max_tries = max_tries
        self.backoff = backoff
        self.batch_size = batch_size
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._client = client
        self._owns_client = client is None

    def __repr__(self) -> str:
        return f"OpenAIEmbeddingProvider(url={self.url!r}, model={self.model!r}, dimension={self.dimension})"

    async def embed(self, texts: Sequence[str]) -> VectorBatch:
        """Embed ``texts``; see :meth:`EmbeddingProvider.embed`.

        Raises:
            EmbeddingError: The endpoint failed (after retries for transient
                failures), answered with a malformed body, or returned vectors
                of an unexpected length.
        """
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [
            await self._embed_batch(items[start : start + self.batch_size])
            for start in range(0, len(items), self.batch_size)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    async def aclose(self) -> None:
        """Close the HTTP client this provider created (not one passed in)."""
        client = self._client
        if client is not None and self._owns_client:
            self._client = None
            await client.aclose()

    # -- internals -----------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
            self._owns_client = True
        return self._client

    async def _embed_batch(self, batch: list[str]) -> VectorBatch:
        body = {"model": self.model, "input": batch}
        for attempt in range(1, self.max_tries + 1):
            last = attempt == self.max_tries
            try:
                response = await self._http().post(self.url, json=body, headers=self._headers, timeout=self.timeout)
            except httpx.TransportError as exc:
                if last:
                    raise EmbeddingError(
                        f"embeddings request to {self.url} failed after {attempt} attempt(s): "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                await anyio.sleep(retry_delay(attempt, None, backoff=self.backoff))
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as exc:  # not transient: redirects, decoding, URL
                raise EmbeddingError(f"embeddings request to {self.url} failed: {type(exc).__name__}: {exc}") from exc
            if response.status_code == 200:
                return self._parse(response, len(batch))
            if response.status_code in RETRY_STATUSES and not last:
                await anyio.sleep(retry_delay(attempt, response.headers.get("retry-after"), backoff=self.backoff))
                continue
            raise EmbeddingError(
                f"embeddings request to {self.url} failed with HTTP {response.status_code} "
                f"{response.reason_phrase} after {attempt} attempt(s): {excerpt(response)}"
            )
        raise AssertionError("unreachable")  # pragma: no cover


    def _parse(self, response: httpx.Response, expected: int) -> VectorBatch:
        try:
            payload: Any = response.json()
        except ValueError as exc:
            raise EmbeddingError(f"embeddings response from {self.url} is not JSON: {excerpt(response)}") from exc
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or len(data) != expected:
            got = len(data) if isinstance(data, list) else "no 'data' list"
            raise EmbeddingError(
                f"embeddings response from {self.url} has {got} rows for {expected} inputs: {excerpt(response)}"
            )
        rows: list[Any] = [None] * expected
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            embedding = item.get("embedding") if isinstance(item, dict) else None
            if (
                not isinstance(index, int)
                or isinstance(index, bool)
                or not 0 <= index < expected
                or rows[index] is not None
                or not isinstance(embedding, list)
            ):
                raise EmbeddingError(f"embeddings response from {self.url} has a malformed row {position}")
            rows[index] = embedding
        try:
            matrix = np.array(rows, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise EmbeddingError(f"embeddings response from {self.url} holds non-numeric or ragged vectors") from exc
        if matrix.ndim != 2 or matrix.shape[1] == 0:
            raise EmbeddingError(f"embeddings response from {self.url} holds vectors of shape {matrix.shape}")
        if not np.isfinite(matrix).all():
            raise EmbeddingError(f"embeddings response from {self.url} holds non-finite values")
        width = int(matrix.shape[1])
        if self._dimension_fixed and width != self.dimension:
            raise EmbeddingError(
                f"model {self.model!r} at {self.url} returned {width}-d vectors, expected {self.dimension}"
            )
        if not self._dimension_fixed:
            # Learned from the first response (it overrides a KNOWN_DIMENSIONS guess).
            self.dimension = width
            self._dimension_fixed = True
        return l2_normalize(matrix)

