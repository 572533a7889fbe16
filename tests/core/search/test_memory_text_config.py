"""PostgreSQL analyses memories as SQLite's scoped index does (migration 0008, `contextiq_english`):
our stop list, Snowball stems, hyphenated compounds as their parts."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from contextiq.core.search.keyword import (
    STOP_PLACEHOLDER,
    STOPWORD_PATTERN,
    STOPWORDS,
    WORD,
    memory_tsvector_sql,
    tsquery_text,
    word_regex,
)
from contextiq.core.search.terms import analyse
from contextiq.runtime import Runtime
from tests.conftest import Tenant, make_settings, new_tenant

MIGRATION = Path(__file__).parents[3] / "src/contextiq/migrations/versions/0008_memory_text_config.py"

TEXTS = [
    "A dairy-free cake, all of it's over there.",
    "Caroline went to the LGBTQ support group yesterday and felt really welcomed.",
    "Melanie: I'm swamped with the kids & work. What's up with you? Anything new?",
    "We painted a sunrise over the lake last summer; the kids loved it.",
    "Out here, nobody cares about the well-known 3-day rule.",
    "I canned tuna with John Doe and Ani; they were willing, so we upped the dose. Why? CAN do!",
]


def _migration() -> Any:
    spec = importlib.util.spec_from_file_location("migration_0008", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migration_removes_todays_stop_words() -> None:
    # A changed STOPWORDS needs a new migration that regenerates `fact_fts` with the new list.
    migration: Any = _migration()
    words = tuple(sorted(w for w in STOPWORDS if WORD.fullmatch(w)))
    assert migration.STOP_WORDS == words
    assert migration.PATTERN == STOPWORD_PATTERN == r"\m" + word_regex(words) + r"\M"
    assert migration.PLACEHOLDER == STOP_PLACEHOLDER
    assert ":" not in STOPWORD_PATTERN  # it sits inside plain statements, where `:name` is a parameter


def test_the_stop_word_pattern_matches_the_stop_words_and_nothing_else() -> None:
    body = STOPWORD_PATTERN[2:-2]  # without PostgreSQL's word boundaries \m, \M
    words = {w for w in STOPWORDS if WORD.fullmatch(w)}
    assert all(re.fullmatch(body, w) for w in words)
    near = {w[:k] for w in words for k in range(1, len(w))} | {w + x for w in words for x in "sdn1_"}
    assert not [w for w in near - words if re.fullmatch(body, w)]
    assert word_regex(["a", "an", "and"]) == "a(nd?)?"
    assert word_regex(["ab", "ac", "a"]) == "a(b|c)?"


def test_tsquery_text_drops_stop_words_and_keeps_their_places_in_phrases() -> None:
    assert tsquery_text("what about the dog", stop_words=STOPWORDS) == "'dog'"
    assert tsquery_text("what about the dog") == "'what' | 'about' | 'the' | 'dog'"
    assert tsquery_text('"bread and butter" cake', stop_words=STOPWORDS) == "('bread' <2> 'butter') | 'cake'"
    assert tsquery_text('"the cat" -"the" -dog', stop_words=STOPWORDS) == "('cat') & !('dog')"
    assert tsquery_text("to be or not", stop_words=STOPWORDS) is None


@pytest.mark.postgres
async def test_postgres_fact_tsvectors_hold_the_terms_of_sqlites_analysis(postgres_url: str, tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path, postgres_url))
    try:
        async with runtime.db.read() as db:
            conn = await db.connection()
            for text in TEXTS:
                sql = f"SELECT tsvector_to_array({memory_tsvector_sql('CAST($1 AS text)')})"
                lexemes = (await conn.exec_driver_sql(sql, (text,))).scalar_one()
                assert set(lexemes) == set(analyse(text)), text
            assert (await conn.exec_driver_sql(
                "SELECT ts_lexize('contextiq_stem', $1)", (STOP_PLACEHOLDER,)
            )).scalar_one() == [STOP_PLACEHOLDER]
    finally:
        await runtime.aclose()


@pytest.mark.postgres
async def test_postgres_keyword_retrieval_reads_compounds_phrases_and_stop_words(
    postgres_url: str, tmp_path: Path
) -> None:
    from contextiq.memories.models import MemoryCreate, RetrieveRequest

    runtime = Runtime(make_settings(tmp_path, postgres_url))
    try:
        tenant: Tenant = await new_tenant(runtime)
        scope = {"user_id": "u-text"}
        made = {}
        for text in ("I bake a dairy-free cake every Sunday.", "I love bread and butter.", "Butter and bread, never.",
                     "I canned tuna with John Doe."):
            memory = await runtime.memories.create_memory(
                tenant_id=tenant.id, data=MemoryCreate(scope=scope, fact=text, topic="USER_PREFERENCES")
            )
            made[text] = memory.id

        async def keyword(query: str) -> list[str]:
            found = await runtime.memories.retrieve_memories(
                tenant_id=tenant.id, request=RetrieveRequest(scope=scope, query=query, mode="keyword", top_k=5)
            )
            return [r.memory.fact for r in found.memories]

        assert await keyword("dairy free") == ["I bake a dairy-free cake every Sunday."]
        assert await keyword("dairy-free") == ["I bake a dairy-free cake every Sunday."]
        assert await keyword('"bread and butter"') == ["I love bread and butter."]
        assert set(await keyword("bread butter")) == {"I love bread and butter.", "Butter and bread, never."}
        # Words that only stem like a stop word stay (`canned` -> `can`, `Doe` -> `doe`).
        assert await keyword("canned") == ["I canned tuna with John Doe."]
        assert await keyword('"john doe"') == ["I canned tuna with John Doe."]
        # Only stop words: no lexeme, the trigram fallback still answers.
        assert set(await keyword("and the")) == {"I love bread and butter.", "Butter and bread, never."}
        for mode in ("keyword", "hybrid"):
            found = await runtime.memories.retrieve_memories(
                tenant_id=tenant.id, request=RetrieveRequest(scope=scope, query="Sunday cake", mode=mode, top_k=1)
            )
            assert [r.memory.id for r in found.memories] == [made["I bake a dairy-free cake every Sunday."]], mode
    finally:
        await runtime.aclose()
