"""The in-process BM25 index of one scope (SQLite's hybrid ranking): analysis and scores."""

from __future__ import annotations

from contextiq.core.search.terms import TermIndex, analyse


def test_analysis_stems_and_drops_stop_words_as_postgresql_english_does() -> None:
    # PostgreSQL: to_tsvector('english', ...) gives 'carolin' 'class' 'potteri' 'run' 'went'.
    assert analyse("Caroline was running to the pottery classes; she went.") == [
        "carolin", "run", "potteri", "class", "went"
    ]
    assert analyse("to be or not to be") == []


def test_rare_words_outweigh_common_ones_and_only_matching_documents_score() -> None:
    index = TermIndex.build([
        (1, "Coffee with Ana after work."),
        (2, "Coffee, more coffee, then coffee again."),
        (3, "Coffee before we went kayaking on the river."),
        (4, "A quiet evening at home."),
    ])
    scores = index.score("coffee and kayaks")
    assert set(scores) == {1, 2, 3}  # OR semantics: 4 shares no word
    assert max(scores, key=scores.__getitem__) == 3  # "kayak" is in one memory, "coffee" in three
    assert scores[2] > scores[1]  # more of a word, more weight (saturating)
    assert index.score("the of and") == {} and index.score("") == {}


def test_an_empty_index_scores_nothing() -> None:
    assert TermIndex.build([]).score("anything") == {}
