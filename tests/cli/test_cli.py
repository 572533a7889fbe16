"""The `contextiq` command, run as a real process against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(args: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "contextiq.cli.main", *args],
        env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def test_keys_create_json_creates_org_and_prints_key_once(database_url: str, tmp_path: Path) -> None:
    env = {"CONTEXTIQ_DATABASE_URL": database_url, "CONTEXTIQ_DATA_DIR": str(tmp_path)}
    org = f"cli-{tmp_path.name[-8:]}".lower().replace("_", "-")
    out = run(["keys", "create", "--org", org, "--scope", "admin", "--json"], env, tmp_path)
    created = json.loads(out.stdout)
    assert set(created) >= {"key", "id", "prefix"}
    assert created["key"].startswith(created["prefix"] + "_")
    listed = run(["keys", "list", "--org", org, "--json"], env, tmp_path)
    assert created["key"] not in listed.stdout
    assert json.loads(listed.stdout)[0]["id"] == created["id"]
    orgs = json.loads(run(["orgs", "list", "--json"], env, tmp_path).stdout)
    assert org in [o["slug"] for o in orgs]
    revoked = json.loads(run(["keys", "revoke", created["id"], "--org", org, "--json"], env, tmp_path).stdout)
    assert revoked["revoked_at"]
    sessions = run(["sessions", "list", "--org", org, "--json"], env, tmp_path)
    assert json.loads(sessions.stdout) == []


def test_unknown_org_and_bad_scope_fail_clearly(sqlite_url: str, tmp_path: Path) -> None:
    env = {"CONTEXTIQ_DATABASE_URL": sqlite_url, "CONTEXTIQ_DATA_DIR": str(tmp_path)}
    missing = run(["keys", "list", "--org", "no-such-org"], env, tmp_path, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = run(["keys", "create", "--scope", "everything"], env, tmp_path, check=False)
    assert bad.returncode != 0 and "scopes" in (bad.stderr + bad.stdout)


def test_db_commands_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    env = {"CONTEXTIQ_DATA_DIR": str(tmp_path)}
    dry = run(["db", "upgrade", "--sql"], env, tmp_path)
    assert "CREATE TABLE sessions" in dry.stdout
    assert "empty" in run(["db", "current"], env, tmp_path).stdout
    assert run(["db", "check"], env, tmp_path, check=False).returncode == 1
    run(["db", "upgrade"], env, tmp_path)
    assert "up to date" in run(["db", "current"], env, tmp_path).stdout
    assert "ok" in run(["db", "check"], env, tmp_path).stdout
    assert "0001" in run(["db", "history"], env, tmp_path).stdout


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = {
        "CONTEXTIQ_DATABASE_URL": "postgresql://app:hunter2@db.internal:5432/ciq",
        "CONTEXTIQ_LLM_API_KEY": "sk-secret",
    }
    shown = run(["config", "show"], env, tmp_path).stdout
    assert "hunter2" not in shown and "sk-secret" not in shown
    data = json.loads(shown)
    assert data["database_url"] == "postgresql+asyncpg://app:****@db.internal:5432/ciq"
    assert data["llm_api_key"] == "****"


def test_a_bad_setting_is_named_without_a_traceback(tmp_path: Path) -> None:
    env = {"CONTEXTIQ_DATA_DIR": str(tmp_path), "CONTEXTIQ_SERVER_LOOP": "trio", "CONTEXTIQ_DB_POOL_SIZE": "0"}
    for command in (["serve"], ["config", "show"], ["db", "current"]):
        failed = run(command, env, tmp_path, check=False)
        assert failed.returncode == 2, command
        errors = " ".join(failed.stderr.split())  # rich wraps long lines
        assert "CONTEXTIQ_SERVER_LOOP: Input should be 'auto', 'asyncio' or 'uvloop' (got 'trio')" in errors
        assert "CONTEXTIQ_DB_POOL_SIZE" in errors and "Traceback" not in failed.stderr


@pytest.mark.postgres
def test_serve_refuses_an_out_of_date_postgres_schema(tmp_path: Path) -> None:
    from tests.conftest import empty_postgres

    with empty_postgres("ciq_cli") as database:
        url = database.replace("postgresql+asyncpg://", "postgresql://", 1)  # as users write it
        env = {"CONTEXTIQ_DATABASE_URL": url, "CONTEXTIQ_DATA_DIR": str(tmp_path)}
        result = run(["keys", "list"], env, tmp_path, check=False)
        assert result.returncode == 1
        assert "contextiq db upgrade" in result.stderr and "CONTEXTIQ_AUTO_MIGRATE" in result.stderr


def test_memories_generate_and_jobs_commands(sqlite_url: str, tmp_path: Path) -> None:
    env = {"CONTEXTIQ_DATABASE_URL": sqlite_url, "CONTEXTIQ_DATA_DIR": str(tmp_path)}
    org = f"gen-{tmp_path.name[-8:]}".lower().replace("_", "-")
    run(["orgs", "create", org], env, tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"author": "user", "text": "I prefer dark mode interfaces. I live in Lisbon."}\n'
        '{"author": "agent", "text": "Noted!"}\n'
    )
    made = json.loads(run(["memories", "generate", "--org", org, "--scope", "user_id=u1", "--events", str(events),
                           "--json"], env, tmp_path).stdout)
    assert made["job"]["status"] == "completed"
    assert made["job"]["result"]["memories_created"] == 2
    assert [e["status"] for e in made["events"]] == ["extracted", "skipped"]
    changed = json.loads(run(["memories", "generate", "--org", org, "--scope", "user_id=u1", "--fact",
                              "I now prefer light mode interfaces.", "--json"], env, tmp_path).stdout)
    assert changed["job"]["result"]["memories_updated"] == 1
    jobs = json.loads(run(["jobs", "list", "--org", org, "--json"], env, tmp_path).stdout)
    assert len(jobs) == 2
    shown = json.loads(run(["jobs", "show", jobs[0]["id"], "--org", org, "--json"], env, tmp_path).stdout)
    assert shown["job"]["id"] == jobs[0]["id"]
    both = run(["memories", "generate", "--org", org, "--fact", "x", "--events", str(events)], env, tmp_path,
               check=False)
    assert both.returncode != 0 and "exactly one" in (both.stderr + both.stdout)
