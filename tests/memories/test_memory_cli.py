"""`contextiq memories …` end to end on an embedded SQLite database (no server)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

import contextiq.runtime
from contextiq.core.llm.embeddings import EmbeddingProvider, make_embedding_provider
from contextiq.core.llm.embeddings.base import VectorBatch
from contextiq.memories.cli import app, parse_scope


class _Shared(EmbeddingProvider):
    """The module's one loaded model, lent to every command's runtime (which would close its own)."""

    def __init__(self, inner: EmbeddingProvider) -> None:
        self.inner, self.model, self.dimension = inner, inner.model, inner.dimension

    async def embed(self, texts: Sequence[str]) -> VectorBatch:
        return await self.inner.embed(texts)


@pytest.fixture(scope="module")
def embedder() -> EmbeddingProvider:
    return make_embedding_provider()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: EmbeddingProvider) -> Iterator[CliRunner]:
    monkeypatch.setenv("CONTEXTIQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CONTEXTIQ_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("CONTEXTIQ_ENV", "test")
    monkeypatch.delenv("CONTEXTIQ_REDIS_URL", raising=False)
    monkeypatch.setattr(contextiq.runtime, "make_embedding_provider", lambda **_: _Shared(embedder))
    yield CliRunner()


def _ok(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.sqlite
def test_add_list_get_search_history_export_import_reembed(cli: CliRunner, tmp_path: Path) -> None:
    added = json.loads(_ok(cli, "add", "I prefer dark mode interfaces.", "--scope", "user_id=u1", "--json"))
    _ok(cli, "add", "I am allergic to peanuts.", "--topic", "USER_PERSONAL_INFO", "--scope", "user_id=u1")
    listed = json.loads(_ok(cli, "list", "--scope", "user_id=u1", "--json"))
    assert [m["fact"] for m in listed] == ["I am allergic to peanuts.", "I prefer dark mode interfaces."]
    assert json.loads(_ok(cli, "get", added["id"], "--json"))["fact"] == "I prefer dark mode interfaces."
    assert "id" in _ok(cli, "get", added["id"])  # a table
    found = json.loads(_ok(cli, "search", "food allergy", "--scope", "user_id=u1", "--json"))
    assert found["memories"][0]["memory"]["fact"] == "I am allergic to peanuts."
    assert "score" in _ok(cli, "search", "dark theme", "--scope", "user_id=u1")  # a table
    keyword = json.loads(_ok(cli, "search", "peanuts", "--scope", "user_id=u1", "--mode", "keyword", "--json"))
    assert [r["memory"]["fact"] for r in keyword["memories"]] == ["I am allergic to peanuts."]
    assert set(keyword["memories"][0]["scores"]) == {"keyword"}  # not the bank's default (hybrid)
    bad_mode = cli.invoke(app, ["search", "x", "--scope", "user_id=u1", "--mode", "fuzzy"])
    assert bad_mode.exit_code != 0 and "--mode" in bad_mode.output
    history = json.loads(_ok(cli, "history", added["id"], "--json"))
    assert [r["action"] for r in history] == ["CREATED"]

    exported = tmp_path / "memories.jsonl"
    assert "exported 2 memories" in _ok(cli, "export", "--output", str(exported))
    assert "imported 2 memories" in _ok(cli, "import", str(exported), "--org", "default")
    assert len(json.loads(_ok(cli, "list", "--json"))) == 4
    assert "re-embedded 4 memories" in _ok(cli, "reembed", "--batch-size", "3")

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"scope": {"user_id": "u1"}, "fact": "x", "topic": "NOPE"}\n')
    result = cli.invoke(app, ["import", str(bad)])
    assert result.exit_code == 1 and "line 1: topic" in result.output
    missing = cli.invoke(app, ["list", "--org", "nobody"])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_scope_pairs_parse_strictly() -> None:
    assert parse_scope(["user_id=u1", "agent_id=a=b"]) == {"user_id": "u1", "agent_id": "a=b"}
    with pytest.raises(Exception, match="key=value"):
        parse_scope(["user_id"])
