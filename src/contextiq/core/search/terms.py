"""An in-process inverted index of one small collection (a scope's memories), ranked by Okapi BM25.

SQLite's FTS5 `bm25()` takes its statistics (document frequencies, average length) from the whole
table, every tenant's and scope's rows together. A memory scope is its own small corpus: a word
common in one user's memories is rare in the table, and ranking with the table's statistics lets
it crowd the rare words out. `TermIndex` ranks one scope with that scope's statistics, with an
analysis close to PostgreSQL's `english` text search configuration (Snowball English stems, stop
words dropped, a document's length = its distinct terms) and the same BM25 formula as the SQL of
`core/search/keyword.py`, so both databases rank nearly alike. Not exactly: PostgreSQL's stop list
is longer (it drops `all`, `out`, `here`, ... and the `s`/`t` of contractions, which are kept
here), and its parser also indexes hyphenated compounds whole. It is built from the scope's texts
and cached by the caller per write generation.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import Stemmer

from contextiq.core.search.keyword import BM25_B, BM25_K1, STOPWORDS, WORD

__all__ = ["TermIndex", "analyse", "bm25_scores"]

K = TypeVar("K", bound=Hashable)
_STEMMER = Stemmer.Stemmer("english")


def analyse(text: str) -> list[str]:
    """Return the stems of `text`'s words that are not stop words, in order (repeats kept)."""
    words = [w for w in WORD.findall(text.lower()) if w not in STOPWORDS]
    return list(_STEMMER.stemWords(words)) if words else []


@dataclass(frozen=True, slots=True)
class TermIndex(Generic[K]):
    """Postings of each stem: (document position, term frequency); one document per id."""

    ids: tuple[K, ...]
    postings: dict[str, list[tuple[int, int]]]
    lengths: tuple[int, ...]
    average: float

    @classmethod
    def build(cls, documents: Sequence[tuple[K, str]]) -> TermIndex[K]:
        """Index (id, text) pairs."""
        postings: dict[str, list[tuple[int, int]]] = {}
        lengths: list[int] = []
        for position, (_, text) in enumerate(documents):
            counts = Counter(analyse(text))
            lengths.append(len(counts))
            for stem, tf in counts.items():
                postings.setdefault(stem, []).append((position, tf))
        average = max(sum(lengths) / len(lengths), 1.0) if lengths else 1.0
        return cls(tuple(i for i, _ in documents), postings, tuple(lengths), average)

    def score(self, query: str) -> dict[K, float]:
        """Return the BM25 score of every document that holds a word of `query` (OR semantics)."""
        n = len(self.ids)
        scores: dict[int, float] = {}
        for stem in dict.fromkeys(analyse(query)):
            hits = self.postings.get(stem)
            if not hits:
                continue
            df = len(hits)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            for position, tf in hits:
                norm = BM25_K1 * (1 - BM25_B + BM25_B * self.lengths[position] / self.average)
                scores[position] = scores.get(position, 0.0) + idf * tf * (BM25_K1 + 1) / (tf + norm)
        return {self.ids[p]: s for p, s in scores.items()}


def bm25_scores(query: str, documents: Sequence[str]) -> list[float]:
    """Return each document's BM25 score for `query` (0 when no word matches), `TermIndex`'s way.

    Used where no index applies: ranking a snapshot of the past (`as_of`) in memory.
    """
    scores = TermIndex.build(list(enumerate(documents))).score(query)
    return [scores.get(i, 0.0) for i in range(len(documents))]
