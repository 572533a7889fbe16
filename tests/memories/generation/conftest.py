"""Fixtures of the generation tests: one embedding model for the whole run, a runtime per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from contextiq.core.llm.embeddings import EmbeddingProvider, make_embedding_provider
from contextiq.runtime import Runtime
from tests.conftest import make_settings


@pytest.fixture(scope="session")
def embedder() -> Iterator[EmbeddingProvider]:
    # Loading the ONNX model once keeps these tests fast; the provider is safe to share.
    yield make_embedding_provider(provider="local")


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path, embedder: EmbeddingProvider) -> AsyncIterator[Runtime]:
    rt = Runtime(make_settings(tmp_path, database_url), embeddings=embedder)
    try:
        yield rt
    finally:
        await rt.aclose()
