"""Settings: environment variables `CONTEXTIQ_*`, optionally a TOML file; built once and passed down."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """The whole configuration of a ContextIQ process (server, worker, CLI or embedded client)."""

    model_config = SettingsConfigDict(env_prefix="CONTEXTIQ_", extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"
    data_dir: Path = Path(".contextiq")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is a SQLite file in the data dir"
    )
    redis_url: str | None = None
    auto_migrate: bool | None = Field(
        None, description="Migrate on start; default true on SQLite, false on PostgreSQL"
    )
    db_pool_size: int = Field(10, ge=1, le=500)
    db_max_overflow: int = Field(10, ge=0, le=500)
    db_echo: bool = False

    rate_limit_per_minute: int = Field(600, ge=1, description="Default for new API keys")
    session_cache_ttl_seconds: int = Field(3600, ge=1)
    auth_cache_ttl_seconds: int = Field(30, ge=0)

    embeddings_provider: Literal["local", "openai", "sentence-transformers"] = "local"
    embeddings_base_url: str | None = None
    embeddings_api_key: SecretStr | None = None
    embeddings_model: str | None = None
    embeddings_threads: int = Field(1, ge=1, le=64)
    embeddings_query_workers: int = Field(
        1, ge=1, le=2, description="Threads of the local model that batch concurrent queries together"
    )
    embeddings_query_batch: int = Field(
        4, ge=1, le=64, description="Queries the local model embeds together in one inference at most"
    )
    embeddings_preload: bool = Field(
        True, description="Load the local model when the server starts, not on the first request"
    )

    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None

    worker_enabled: bool = True
    worker_concurrency: int = Field(2, ge=1, le=64, description="Jobs one worker runs at once")
    worker_lease_seconds: float = Field(
        30.0, ge=1.0, le=3600.0, description="A job whose worker stops heartbeating is retried after this"
    )
    worker_poll_interval_seconds: float = Field(1.0, gt=0, le=60.0)
    worker_max_attempts: int = Field(3, ge=1, le=20, description="Attempts per job before it fails")
    generation_wait_seconds: float = Field(
        120.0, gt=0, le=3600.0, description="How long wait_for_completion waits before answering 202"
    )
    test_pause_after: str | None = Field(
        None, description="Test hook: block jobs after the named step (crash tests); refused in production"
    )
    sweep_interval_seconds: float = Field(60.0, gt=0)
    log_level: str = "info"
    server_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto",
        description="The event loop of `contextiq serve`; auto: asyncio for one process (faster with the local "
        "embedding model's threads: docs/benchmarks.md), uvloop for several (see `Settings.serve_loop`)",
    )

    config_file: Path | None = Field(None, description="Optional TOML file with the same keys")

    def serve_loop(self, workers: int) -> Literal["asyncio", "uvloop"]:
        """The event loop of a server of `workers` processes (`server_loop`, "auto" resolved).

        Several processes share a listening socket that uvicorn creates without naming its protocol;
        asyncio then does not set TCP_NODELAY on the connections it accepts from it (uvloop always
        does), and Nagle's algorithm against the client's delayed ACKs stalls each response ~40 ms.
        """
        if self.server_loop != "auto":
            return self.server_loop
        if workers == 1 or importlib.util.find_spec("uvloop") is None:  # no uvloop on Windows or PyPy
            return "asyncio"
        return "uvloop"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        import os

        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get("CONTEXTIQ_CONFIG_FILE")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        for plain in ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://"):
            if value.startswith(plain):
                return "postgresql+asyncpg://" + value[len(plain) :]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value[len("sqlite:///") :]
        if not (value.startswith("postgresql+asyncpg://") or value.startswith("sqlite+aiosqlite://")):
            raise ValueError(
                "CONTEXTIQ_DATABASE_URL must be a postgresql:// or sqlite:/// URL, got "
                + value.split("://", 1)[0]
                + "://…"
            )
        return value

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.env == "production" and self.embeddings_provider == "openai" and not self.embeddings_base_url:
            raise ValueError("CONTEXTIQ_EMBEDDINGS_BASE_URL is required when the provider is openai")
        if self.env == "production" and self.test_pause_after:
            raise ValueError("CONTEXTIQ_TEST_PAUSE_AFTER is a test hook and is refused when CONTEXTIQ_ENV=production")
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL in use: the configured one or the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'contextiq.db').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is the embedded SQLite file."""
        return self.effective_database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        """Whether `serve` migrates the schema on start."""
        if self.auto_migrate is not None:
            return self.auto_migrate
        return self.is_sqlite

    def masked(self) -> dict[str, Any]:
        """Return the effective configuration with secrets and URL passwords masked."""
        data = self.model_dump(mode="json")
        data["database_url"] = mask_url(self.effective_database_url)
        if self.redis_url:
            data["redis_url"] = mask_url(self.redis_url)
        for key in ("embeddings_api_key", "llm_api_key"):
            if data.get(key):
                data[key] = "****"
        return data


def mask_url(url: str) -> str:
    """Hide the password of a URL (`postgresql://u:****@h/db`)."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:****@{host}"
    return url
