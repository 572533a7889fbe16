"""memories: keyword analysis as SQLite's (`contextiq_english`, our stop words, no whole compounds)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22

PostgreSQL's `english` configuration analysed memories differently from SQLite's scoped index
(`core/search/terms.py`), so the same memories ranked differently on the two databases:

* its stop list is longer than ours (`core/search/keyword.py: STOPWORDS`): it also drops `all`,
  `out`, `over`, `here`, ... and the `s` and `t` of contractions, which SQLite keeps;
* it indexes a hyphenated word whole as well as its parts (`dairy-free` -> `dairy-fre`, `dairi`,
  `free`); the whole form lengthens the document, and BM25 normalises by length.

`contextiq_english` has `english`'s parser and Snowball stemmer (`contextiq_stem`: the Snowball
English template without a stop list) and no mapping for the compound token types (`asciihword`,
`hword`, `numhword`; their parts are still indexed). `fact_fts` becomes that tsvector of the fact
in which our stop words (whole words, any case) were replaced by a placeholder, which is then
deleted (`ts_delete`): stop words go before stemming, as in SQLite's index, so `canned` (stem
`can`) and `Doe` stay, and they keep their positions for phrase queries. Its scope-led GIN index is
rebuilt. Queries are analysed the same way (`core/search/keyword.py: memory_tsvector_sql`,
`tsquery_text(stop_words=...)`).

Measured on LoCoMo's dev file (`bench/locomo.py`, hybrid, PostgreSQL), recall@10 on categories 1-4:
0.769 before (tune 0.795, held-out 0.743), 0.772 after (0.790, 0.754); SQLite: 0.774 (0.790, 0.758).
Dropping only the compounds changed nothing (0.768).

`STOP_WORDS` and `PLACEHOLDER` below are frozen with this revision;
`tests/core/search/test_memory_text_config.py` fails if `STOPWORDS` changes without a migration
that follows it.

Re-adding a stored generated column rewrites `memories` under an exclusive lock: on a large table,
run the upgrade in a maintenance window (about 40 s for a million memories on the 2-core bench machine).
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CONFIG = "contextiq_english"
DICTIONARY = "contextiq_stem"
STOP_WORDS = (
    "a", "about", "am", "an", "and", "any", "are", "as", "at", "be", "been", "being", "but", "by",
    "can", "could", "did", "do", "does", "doing", "for", "from", "had", "has", "have", "having",
    "he", "her", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself",
    "just", "me", "my", "myself", "no", "nor", "not", "of", "on", "or", "our", "ours", "she", "so",
    "some", "such", "than", "that", "the", "their", "theirs", "them", "then", "there", "these",
    "they", "this", "those", "to", "too", "up", "very", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours",
)
PATTERN = (  # the words above as one regular expression of whole words (a trie: fast in PostgreSQL)
    r"\m(a(bout|m|n(d|y)?|re|s|t)?|b(e(en|ing)?|ut|y)|c(an|ould)|d(id|o(es|ing)?)|f(or|rom)|h(a("
    r"d|s|v(e|ing))|e(rs?)?|i(m|s)|ow)|i(f|n(to)?|s|t(s(elf)?)?)?|just|m(e|y(self)?)|no(r|t)?|o("
    r"f|n|r|urs?)|s(he|o(me)?|uch)|t(h(a(n|t)|e(irs?|m|n|re|se|y)?|is|ose)|oo?)|up|very|w(as|e(r"
    r"e)?|h(at|e(n|re)|i(ch|le)|om?|y)|i(ll|th)|ould)|you(rs?)?)\M"
)
PLACEHOLDER = "ciqstopword"


def _drop_fact_fts() -> None:
    op.execute("DROP INDEX IF EXISTS idx_memories_scope_fts")
    op.execute("ALTER TABLE memories DROP COLUMN IF EXISTS fact_fts")


def _add_fact_fts(expression: str) -> None:
    op.execute(f"ALTER TABLE memories ADD COLUMN fact_fts tsvector GENERATED ALWAYS AS ({expression}) STORED")
    op.execute("CREATE INDEX idx_memories_scope_fts ON memories USING GIN (scope_key, fact_fts)")


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    _drop_fact_fts()  # first: the column depends on the configuration it is made with
    op.execute(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {CONFIG}")
    op.execute(f"DROP TEXT SEARCH DICTIONARY IF EXISTS {DICTIONARY}")
    op.execute(f"CREATE TEXT SEARCH DICTIONARY {DICTIONARY} (TEMPLATE = snowball, Language = english)")
    op.execute(f"CREATE TEXT SEARCH CONFIGURATION {CONFIG} (COPY = pg_catalog.english)")
    op.execute(f"ALTER TEXT SEARCH CONFIGURATION {CONFIG} DROP MAPPING FOR asciihword, hword, numhword")
    op.execute(
        f"ALTER TEXT SEARCH CONFIGURATION {CONFIG} "
        f"ALTER MAPPING FOR asciiword, word, hword_asciipart, hword_part WITH {DICTIONARY}"
    )
    # Stop words become a placeholder before parsing (they keep their positions, and a word that
    # only stems like one stays), then the placeholder is deleted.
    text = f"regexp_replace(fact, '{PATTERN}', '{PLACEHOLDER}', 'gi')"
    _add_fact_fts(f"ts_delete(to_tsvector('{CONFIG}', {text}), '{PLACEHOLDER}'::text)")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    _drop_fact_fts()
    _add_fact_fts("to_tsvector('english', fact)")
    op.execute(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {CONFIG}")
    op.execute(f"DROP TEXT SEARCH DICTIONARY IF EXISTS {DICTIONARY}")
