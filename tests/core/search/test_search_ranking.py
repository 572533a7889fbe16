"""Pure ranking helpers: reciprocal rank fusion, boosts, BM25 over a snapshot, query terms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contextiq.core.search import bm25_scores, fuse, query_terms, recency_decay, reciprocal_rank_fusion


def test_rrf_sums_reciprocal_ranks_across_rankings() -> None:
    scores = reciprocal_rank_fusion({"a": ["x", "y", "z"], "b": ["y", "x"]}, k=60)
    assert scores["x"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["z"] == pytest.approx(1 / 63)
    with pytest.raises(ValueError, match="k must be >= 1"):
        reciprocal_rank_fusion({"a": ["x"]}, k=0)


def test_items_in_both_rankings_beat_items_in_one() -> None:
    fused = fuse({"similarity": ["a", "b", "c"], "keyword": ["c", "d"]})
    assert [f.id for f in fused][:1] == ["c"]
    assert all(f.score == f.rrf for f in fused)  # no boosts asked


def test_boosts_reorder_close_items() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rankings = {"similarity": ["old", "new"]}
    times = {"old": now - timedelta(days=365), "new": now}
    assert [f.id for f in fuse(rankings, now=now, times=times)] == ["old", "new"]
    boosted = fuse(rankings, now=now, times=times, recency_weight=1.0, half_life=timedelta(days=30))
    assert [f.id for f in boosted] == ["new", "old"]
    confident = fuse({"similarity": ["unsure", "sure"]}, confidences={"unsure": 0.1, "sure": 1.0},
                     confidence_weight=1.0)
    assert [f.id for f in confident] == ["sure", "unsure"]


def test_recency_decay_halves_every_half_life() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert recency_decay(now, now=now, half_life=timedelta(days=10)) == 1.0
    assert recency_decay(now - timedelta(days=10), now=now, half_life=timedelta(days=10)) == pytest.approx(0.5)
    assert recency_decay(now + timedelta(days=1), now=now, half_life=timedelta(days=10)) == 1.0


def test_bm25_prefers_documents_with_rarer_shared_terms() -> None:
    docs = ["I prefer dark mode interfaces.", "I prefer tea.", "My dog is named Biscuit."]
    scores = bm25_scores("dark mode", docs)
    assert scores[0] > 0 and scores[1] == scores[2] == 0
    assert bm25_scores("the of and", docs) == [0.0, 0.0, 0.0]
    assert bm25_scores("anything", []) == []


def test_query_terms_drop_stop_words_and_repeats() -> None:
    assert query_terms("What is the user's favourite BAND? band!") == ["user", "s", "favourite", "band"]


def test_fts5_match_reads_web_search_syntax() -> None:
    from contextiq.core.search.keyword import fts5_match

    assert fts5_match("Where did the user go?") == '"user" OR "go"'
    assert fts5_match('"dark mode" setting') == '"setting" OR "dark mode"'
    assert fts5_match("dark -bike") == '("dark") NOT ("bike")'
    assert fts5_match('coffee -"iced coffee"') == '("coffee") NOT ("iced coffee")'
    assert fts5_match("to be or not") == '"to" OR "be" OR "or" OR "not"'  # only stop words: keep them
    assert fts5_match('say "hi" "') == '"say" OR "hi"'
    assert fts5_match("?! -") is None
    assert fts5_match('ab"c') == '"ab" OR "c"'


def test_tsquery_text_ors_wanted_terms_and_ands_out_unwanted_ones() -> None:
    from contextiq.core.search.keyword import tsquery_text

    assert tsquery_text("Where did the user go?") == "'where' | 'did' | 'the' | 'user' | 'go'"
    assert tsquery_text('"dark mode" setting') == "('dark' <-> 'mode') | 'setting'"
    assert tsquery_text("dark -bike") == "('dark') & !('bike')"
    assert tsquery_text("-bike") is None
    assert tsquery_text("it's O'Brien") == "'it' | 's' | 'o' | 'brien'"
