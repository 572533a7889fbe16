"""The server loads its local embedding model at start, so the first request does not pay for it."""

from __future__ import annotations

from pathlib import Path

from contextiq.core.llm.embeddings.local import LocalMiniLMProvider
from contextiq.runtime import Runtime
from tests.conftest import make_settings


def _local(rt: Runtime) -> LocalMiniLMProvider:
    inner = getattr(rt.embeddings, "inner", rt.embeddings)
    assert isinstance(inner, LocalMiniLMProvider)
    return inner


async def test_preload_loads_the_local_model_and_caches_nothing(database_url: str, tmp_path: Path) -> None:
    rt = Runtime(make_settings(tmp_path, database_url, embeddings_preload=True))
    try:
        assert _local(rt)._loaded is None
        await rt.preload_embeddings()
        assert _local(rt)._loaded is not None
        assert getattr(rt.embeddings, "misses", 0) == 0  # the warm-up went past the query cache
    finally:
        await rt.aclose()


async def test_preload_can_be_turned_off(database_url: str, tmp_path: Path) -> None:
    rt = Runtime(make_settings(tmp_path, database_url, embeddings_preload=False))
    try:
        await rt.preload_embeddings()
        assert _local(rt)._loaded is None
    finally:
        await rt.aclose()

