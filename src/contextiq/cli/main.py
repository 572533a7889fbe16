"""The `contextiq` command."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import typer

from contextiq.cli.common import console, emit, err_console, load_settings, resolve_org, run_with_runtime
from contextiq.core.db import migrate
from contextiq.memories.cli import app as memories_app
from contextiq.platform.models import ApiKeyCreate, OrganizationCreate
from contextiq.runtime import Runtime
from contextiq.sessions.models import SessionFilter

app = typer.Typer(help="ContextIQ: memory and context server for AI agents.", no_args_is_help=True)
db_app = typer.Typer(help="Schema migrations.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organizations (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
sessions_app = typer.Typer(help="Sessions and their events.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
jobs_app = typer.Typer(help="Background jobs (memory generation).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(orgs_app, name="orgs")
app.add_typer(keys_app, name="keys")
app.add_typer(sessions_app, name="sessions")
app.add_typer(config_app, name="config")
app.add_typer(memories_app, name="memories")
app.add_typer(jobs_app, name="jobs")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="Server processes (PostgreSQL only for more than 1).")] = 1,
) -> None:
    """Run the HTTP server (and an in-process worker)."""
    import logging

    import uvicorn

    from contextiq.api import create_app
    from contextiq.core.shutdown import exit_despite_stray_threads

    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(f"ContextIQ on http://{host}:{port}  database: {settings.masked()['database_url']}")
    if workers > 1:
        uvicorn.run("contextiq.api.app:app_from_env", host=host, port=port, workers=workers, factory=True,
                    log_level=settings.log_level, loop=settings.serve_loop(workers))
    else:
        uvicorn.run(
            create_app(settings), host=host, port=port, log_level=settings.log_level, loop=settings.serve_loop(1)
        )
    exit_despite_stray_threads()  # the in-process worker's connections, as in `contextiq worker`


@app.command()
def worker() -> None:
    """Run a job worker (memory generation) until SIGTERM or SIGINT; start as many as you need."""
    from contextiq.worker import run_worker

    run_worker(load_settings())


# -- config ---------------------------------------------------------------------------------------


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration, secrets masked."""
    typer.echo(json.dumps(load_settings().masked(), indent=2, default=str))


# -- db -------------------------------------------------------------------------------------------

SqlOpt = Annotated[bool, typer.Option("--sql", help="Print the SQL instead of running it (dry run).")]


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head", sql: SqlOpt = False) -> None:
    """Upgrade the schema (PostgreSQL: concurrent runs are serialized by an advisory lock)."""
    out = migrate.upgrade(load_settings().effective_database_url, revision, sql=sql)
    typer.echo(out, nl=False)
    if not sql:
        console.print(f"schema at {asyncio.run(migrate.current_revision(load_settings().effective_database_url))}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()] = "-1", sql: SqlOpt = False) -> None:
    """Downgrade the schema (default: one revision back)."""
    typer.echo(migrate.downgrade(load_settings().effective_database_url, revision, sql=sql), nl=False)


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the database and the one the code needs."""
    url = load_settings().effective_database_url
    current = asyncio.run(migrate.current_revision(url))
    head = migrate.head_revision()
    console.print(f"database: {current or 'empty'}  code: {head}  {'up to date' if current == head else 'OUT OF DATE'}")


@db_app.command("history")
def db_history() -> None:
    """List the revisions."""
    typer.echo(migrate.history(load_settings().effective_database_url), nl=False)


@db_app.command("check")
def db_check() -> None:
    """Validate that the database matches the code's tables; exit 1 when it does not."""
    url = load_settings().effective_database_url
    current = asyncio.run(migrate.current_revision(url))
    head = migrate.head_revision()
    if current != head:
        err_console.print(f"[red]schema at {current or 'empty'}, code needs {head}[/red]: run `contextiq db upgrade`")
        raise typer.Exit(1)
    diff = asyncio.run(migrate.schema_diff(url))
    if diff:
        for item in diff:
            err_console.print(f"[red]drift:[/red] {item}")
        raise typer.Exit(1)
    console.print(f"ok: schema at {head} and matching the code")


# -- orgs and keys --------------------------------------------------------------------------------


@orgs_app.command("create")
def orgs_create(
    name: str, slug: Annotated[str | None, typer.Option(help="URL-safe id; derived from the name.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an organization."""
    org = run_with_runtime(lambda rt: rt.platform.create_org(OrganizationCreate(name=name, slug=slug)))
    emit(org, as_json=as_json, columns=["id", "name", "slug", "created_at"])


@orgs_app.command("list")
def orgs_list(as_json: JsonOpt = False) -> None:
    """List organizations."""
    orgs = run_with_runtime(lambda rt: rt.platform.list_orgs())
    emit(orgs, as_json=as_json, columns=["id", "name", "slug", "created_at"])


@keys_app.command("create")
def keys_create(
    org: Annotated[str, typer.Option("--org", help="Organization name or slug (created if missing).")] = "default",
    scope: Annotated[list[str] | None, typer.Option("--scope", help="Repeatable; default admin.")] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
    rate_limit: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    expires_at: Annotated[datetime | None, typer.Option(help="ISO time after which the key stops working.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; the key is printed once and cannot be shown again."""
    scopes: list[Any] = list(scope or ["admin"])

    async def work(rt: Runtime) -> Any:
        organization = await resolve_org(rt, org, create=True)
        data = ApiKeyCreate(name=name, scopes=scopes, rate_limit=rate_limit, expires_at=expires_at)
        return await rt.platform.create_key(org_id=organization.id, data=data)

    try:
        created = run_with_runtime(work)
    except ValueError as exc:  # pydantic: an unknown scope
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps({"key": created.key, "id": str(created.id), "prefix": created.prefix,
                               "organization_id": str(created.organization_id), "scopes": created.scopes}))
    else:
        console.print(f"key (shown once): [bold]{created.key}[/bold]\nid: {created.id}  scopes: {created.scopes}")


@keys_app.command("list")
def keys_list(org: Annotated[str, typer.Option("--org")] = "default", as_json: JsonOpt = False) -> None:
    """List an organization's keys (never the secrets)."""

    async def work(rt: Runtime) -> Any:
        return await rt.platform.list_keys(org_id=(await resolve_org(rt, org)).id)

    emit(run_with_runtime(work), as_json=as_json,
         columns=["id", "name", "prefix", "scopes", "rate_limit", "expires_at", "revoked_at", "last_used_at"])


@keys_app.command("revoke")
def keys_revoke(key_id: UUID, org: Annotated[str, typer.Option("--org")] = "default", as_json: JsonOpt = False) -> None:
    """Revoke a key; requests with it get 401 from now on."""

    async def work(rt: Runtime) -> Any:
        return await rt.platform.revoke_key(org_id=(await resolve_org(rt, org)).id, key_id=key_id)

    emit(run_with_runtime(work), as_json=as_json, columns=["id", "name", "prefix", "revoked_at"])


# -- sessions -------------------------------------------------------------------------------------


@sessions_app.command("list")
def sessions_list(
    org: Annotated[str, typer.Option("--org")] = "default",
    user_id: Annotated[str | None, typer.Option("--user")] = None,
    agent_id: Annotated[str | None, typer.Option("--agent")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List sessions, newest first."""

    async def work(rt: Runtime) -> Any:
        tenant = (await resolve_org(rt, org)).id
        filters = SessionFilter(user_id=user_id, agent_id=agent_id, is_active=active)
        return (await rt.sessions.list_sessions(tenant_id=tenant, filters=filters, limit=limit)).items

    emit(run_with_runtime(work), as_json=as_json,
         columns=["id", "user_id", "agent_id", "is_active", "event_count", "created_at"])


@sessions_app.command("show")
def sessions_show(
    session_id: UUID,
    org: Annotated[str, typer.Option("--org")] = "default",
    events: Annotated[int, typer.Option("--events", min=0, max=1000, help="Newest events to include.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Show a session, its merged state and its newest events."""

    async def work(rt: Runtime) -> Any:
        tenant = (await resolve_org(rt, org)).id
        return await rt.sessions.get_session(tenant_id=tenant, session_id=session_id, num_recent_events=events)

    session = run_with_runtime(work)
    if as_json:
        typer.echo(session.model_dump_json(indent=2))
        return
    emit(session, as_json=False, columns=["id", "user_id", "agent_id", "is_active", "event_count", "state"])
    emit(session.events or [], as_json=False, columns=["sequence", "author", "invocation_id", "timestamp", "content"])


# -- jobs -----------------------------------------------------------------------------------------

JOB_COLUMNS = ["id", "status", "stage", "progress", "source_type", "scope", "created_at", "error_message"]


@jobs_app.command("list")
def jobs_list(
    org: Annotated[str, typer.Option("--org")] = "default",
    status: Annotated[str | None, typer.Option(help="pending, processing, completed, failed or cancelled")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List generation jobs, newest first."""

    async def work(rt: Runtime) -> Any:
        tenant = (await resolve_org(rt, org)).id
        return (await rt.generation.list_jobs(tenant_id=tenant, status=status, limit=limit)).items

    emit(run_with_runtime(work), as_json=as_json, columns=JOB_COLUMNS)


@jobs_app.command("show")
def jobs_show(job_id: UUID, org: Annotated[str, typer.Option("--org")] = "default", as_json: JsonOpt = False) -> None:
    """Show a job and what it made of each source event."""

    async def work(rt: Runtime) -> Any:
        tenant = (await resolve_org(rt, org)).id
        job = await rt.generation.get_job(tenant_id=tenant, job_id=job_id)
        events = await rt.generation.list_job_events(tenant_id=tenant, job_id=job_id, limit=1000)
        return job, events.items

    job, events = run_with_runtime(work)
    if as_json:
        typer.echo(json.dumps({"job": job.model_dump(mode="json"),
                               "events": [e.model_dump(mode="json") for e in events]}, indent=2))
        return
    emit(job, as_json=False, columns=JOB_COLUMNS)
    emit(events, as_json=False, columns=["event_id", "author", "status", "reason", "memory_ids"])


@jobs_app.command("cancel")
def jobs_cancel(job_id: UUID, org: Annotated[str, typer.Option("--org")] = "default", as_json: JsonOpt = False) -> None:
    """Cancel a pending or running job."""

    async def work(rt: Runtime) -> Any:
        return await rt.generation.cancel_job(tenant_id=(await resolve_org(rt, org)).id, job_id=job_id)

    emit(run_with_runtime(work), as_json=as_json, columns=JOB_COLUMNS)


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
