"""The server loads its local embedding model at start, so the first request does not pay for it."""

from __future__ import annotations

from pathlib import Path

import pytest

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


async def test_runtime_shortens_the_thread_switch_interval_and_never_lengthens_it(
    database_url: str, tmp_path: Path
) -> None:
    import sys

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        rt = Runtime(make_settings(tmp_path, database_url, switch_interval_ms=0.2))
        await rt.aclose()
        assert sys.getswitchinterval() == pytest.approx(0.0002)
        await Runtime(make_settings(tmp_path, database_url, switch_interval_ms=1.0)).aclose()  # never longer
        assert sys.getswitchinterval() == pytest.approx(0.0002)
        sys.setswitchinterval(0.005)
        await Runtime(make_settings(tmp_path, database_url, switch_interval_ms=0)).aclose()  # 0: left as is
        assert sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        sys.setswitchinterval(before)
