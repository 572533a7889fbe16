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
`hword`, `numhword`; their parts are still indexed). `fact_fts` becomes that tsvector with the
stems of our stop words deleted (`ts_delete`), and its scope-led GIN index is rebuilt. Queries are
parsed the same way (`memories/store.py`, `tsquery_text(stop_words=...)`).

Measured on LoCoMo's dev file (`bench/locomo.py`, hybrid, PostgreSQL), recall@10 on categories 1-4:
0.769 before (tune 0.795, held-out 0.743), 0.772 after (0.790, 0.754); SQLite: 0.774 (0.790, 0.758).
Dropping only the compounds changed nothing (0.768).

`STOP_STEMS` below is frozen with this revision; `tests/core/search/test_memory_text_config.py`
fails if `STOPWORDS` changes without a migration that follows it.

Re-adding a stored generated column rewrites `memories` under an exclusive lock: on a large table,
run the upgrade in a maintenance window (about 35 s for a million memories on the 2-core bench machine).
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CONFIG = "contextiq_english"
DICTIONARY = "contextiq_stem"
STOP_STEMS = (
    "a", "about", "am", "an", "and", "ani", "are", "as", "at", "be", "been", "but", "by", "can",
    "could", "did", "do", "doe", "for", "from", "had", "has", "have", "he", "her", "him", "his",
    "how", "i", "if", "in", "into", "is", "it", "itself", "just", "me", "my", "myself", "no", "nor",
    "not", "of", "on", "or", "our", "she", "so", "some", "such", "than", "that", "the", "their",
    "them", "then", "there", "these", "they", "this", "those", "to", "too", "up", "veri", "was",
    "we", "were", "what", "when", "where", "whi", "which", "while", "who", "whom", "will", "with",
    "would", "you", "your",
)


def _regenerate(expression: str) -> None:
    op.execute("DROP INDEX IF EXISTS idx_memories_scope_fts")
    op.execute("ALTER TABLE memories DROP COLUMN IF EXISTS fact_fts")
    op.execute(f"ALTER TABLE memories ADD COLUMN fact_fts tsvector GENERATED ALWAYS AS ({expression}) STORED")
    op.execute("CREATE INDEX idx_memories_scope_fts ON memories USING GIN (scope_key, fact_fts)")


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {CONFIG}")
    op.execute(f"DROP TEXT SEARCH DICTIONARY IF EXISTS {DICTIONARY}")
    op.execute(f"CREATE TEXT SEARCH DICTIONARY {DICTIONARY} (TEMPLATE = snowball, Language = english)")
    op.execute(f"CREATE TEXT SEARCH CONFIGURATION {CONFIG} (COPY = pg_catalog.english)")
    op.execute(f"ALTER TEXT SEARCH CONFIGURATION {CONFIG} DROP MAPPING FOR asciihword, hword, numhword")
    op.execute(
        f"ALTER TEXT SEARCH CONFIGURATION {CONFIG} "
        f"ALTER MAPPING FOR asciiword, word, hword_asciipart, hword_part WITH {DICTIONARY}"
    )
    stems = ",".join(f"'{s}'" for s in STOP_STEMS)  # no quote in a stem
    _regenerate(f"ts_delete(to_tsvector('{CONFIG}', fact), ARRAY[{stems}]::text[])")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    _regenerate("to_tsvector('english', fact)")
    op.execute(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {CONFIG}")
    op.execute(f"DROP TEXT SEARCH DICTIONARY IF EXISTS {DICTIONARY}")
