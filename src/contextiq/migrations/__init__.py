"""Alembic revisions for every ContextIQ table; they run on SQLite and PostgreSQL alike."""
