"""`contextiq memories …`: add, list, get, search, history, import, export and reembed memories.

The commands talk to the service layer through a Runtime built from `Settings()` (no HTTP server
needed): the organization is `--org NAME` (default `default`, created on first use), the scope is
`--scope user_id=u1 --scope agent_id=a1`, and output is a table or `--json`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from contextiq.cli.common import console, emit, resolve_org, run_with_runtime
from contextiq.memories.models import MemoryCreate, MemoryFilter, RetrieveFilters, RetrieveMode, RetrieveRequest
from contextiq.runtime import Runtime

app = typer.Typer(help="Long-term memories: add, list, search, history, import/export, re-embed.",
                  no_args_is_help=True)

OrgOpt = Annotated[str, typer.Option("--org", help="Organization (tenant) name or slug.")]
ScopeOpt = Annotated[list[str] | None, typer.Option("--scope", help="A scope pair key=value; repeatable.")]
BankOpt = Annotated[UUID | None, typer.Option("--bank", help="Memory bank id (default: the `default` bank).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
COLUMNS = ["id", "fact", "topic", "confidence", "revision", "created_at"]


def parse_scope(pairs: Sequence[str] | None) -> dict[str, str]:
    """Turn `["user_id=u1", "agent_id=a1"]` into a scope dict."""
    scope: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--scope")
        scope[key] = value
    return scope


async def _tenant(rt: Runtime, org: str) -> UUID:
    found = await resolve_org(rt, org, create=org == "default")
    tenant: UUID = found.id
    return tenant


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )


@app.command("add")
def add(
    fact: Annotated[str, typer.Argument(help="The fact, in the first person.")],
    topic: Annotated[str, typer.Option("--topic", help="Topic label.")] = "USER_PREFERENCES",
    scope: ScopeOpt = None,
    bank: BankOpt = None,
    confidence: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    org: OrgOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Add a memory."""
    data = MemoryCreate(bank_id=bank, scope=parse_scope(scope), fact=fact, topic=topic, confidence=confidence)

    async def work(rt: Runtime) -> Any:
        return await rt.memories.create_memory(tenant_id=await _tenant(rt, org), data=data)

    emit(run_with_runtime(work), as_json=as_json, columns=COLUMNS)


@app.command("list")
def list_(
    scope: ScopeOpt = None,
    bank: BankOpt = None,
    topic: Annotated[str | None, typer.Option("--topic")] = None,
    as_of: Annotated[datetime | None, typer.Option("--as-of", help="What was true at this time.")] = None,
    include_deleted: Annotated[bool, typer.Option("--include-deleted")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    org: OrgOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """List memories, newest first."""
    filters = MemoryFilter(
        bank_id=bank, scope=parse_scope(scope) if scope else None, topic=topic, as_of=as_of,
        include_deleted=include_deleted,
    )

    async def work(rt: Runtime) -> Any:
        page = await rt.memories.list_memories(tenant_id=await _tenant(rt, org), filters=filters, limit=limit)
        return page.items

    emit(run_with_runtime(work), as_json=as_json, columns=["id", "scope", *COLUMNS[1:]])


@app.command("get")
def get(memory_id: UUID, org: OrgOpt = "default", as_json: JsonOpt = False) -> None:
    """Show one memory."""

    async def work(rt: Runtime) -> Any:
        return await rt.memories.get_memory(tenant_id=await _tenant(rt, org), memory_id=memory_id)

    emit(run_with_runtime(work), as_json=as_json, columns=["id", "scope", *COLUMNS[1:], "expires_at"])


@app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="What to look for; empty for the newest memories.")],
    scope: ScopeOpt = None,
    bank: BankOpt = None,
    mode: Annotated[
        str | None, typer.Option(help="similarity, keyword or hybrid (default: the bank's default mode).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100)] = 10,
    topic: Annotated[list[str] | None, typer.Option("--topic", help="Only these topics; repeatable.")] = None,
    org: OrgOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Retrieve the memories of a scope most relevant to QUERY."""
    if mode is not None and mode not in ("similarity", "keyword", "hybrid"):
        raise typer.BadParameter("expected similarity, keyword or hybrid", param_hint="--mode")
    chosen: dict[str, RetrieveMode] = {"mode": mode} if mode is not None else {}  # type: ignore[dict-item]
    request = RetrieveRequest(
        bank_id=bank, scope=parse_scope(scope), query=query or None, top_k=top_k,
        filters=RetrieveFilters(topics=topic or None), **chosen,
    )

    async def work(rt: Runtime) -> Any:
        return await rt.memories.retrieve_memories(tenant_id=await _tenant(rt, org), request=request)

    result = run_with_runtime(work)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    rows = [
        {"score": round(r.score, 4), **{k: round(v, 4) for k, v in r.scores.items()},
         **r.memory.model_dump(mode="json")}
        for r in result.memories
    ]
    from rich.table import Table

    table = Table("score", "similarity", "keyword", "id", "fact", "topic")
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in ("score", "similarity", "keyword", "id", "fact", "topic")])
    console.print(table)


@app.command("history")
def history(memory_id: UUID, org: OrgOpt = "default", as_json: JsonOpt = False) -> None:
    """Show a memory's revisions, oldest first."""

    async def work(rt: Runtime) -> Any:
        page = await rt.memories.list_revisions(tenant_id=await _tenant(rt, org), memory_id=memory_id, limit=1000)
        return page.items

    emit(run_with_runtime(work), as_json=as_json,
         columns=["revision_number", "action", "fact", "topic", "confidence", "valid_from", "valid_to"])


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A JSONL file, one memory per line.")],
    bank: BankOpt = None,
    org: OrgOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Import memories from a JSONL file (all or nothing; errors name the line)."""
    lines = path.read_text(encoding="utf-8").splitlines()

    async def work(rt: Runtime) -> Any:
        tenant = await _tenant(rt, org)
        with _progress() as progress:
            task = progress.add_task("embedding", total=sum(1 for line in lines if line.strip()))
            result = await rt.memories.import_memories(
                tenant_id=tenant, lines=lines, bank_id=bank,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        return result

    result = run_with_runtime(work)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        console.print(f"imported {result.imported} memories")


@app.command("export")
def export(
    scope: ScopeOpt = None,
    bank: BankOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    org: OrgOpt = "default",
) -> None:
    """Export live memories as JSONL (the format `import` reads)."""

    async def work(rt: Runtime) -> int:
        tenant = await _tenant(rt, org)
        out = output.open("w", encoding="utf-8") if output else sys.stdout
        count = 0
        try:
            async for memory in rt.memories.export_memories(
                tenant_id=tenant, bank_id=bank, scope=parse_scope(scope) if scope else None
            ):
                out.write(json.dumps(memory.model_dump(mode="json"), ensure_ascii=False) + "\n")
                count += 1
        finally:
            if output:
                out.close()
        return count

    count = run_with_runtime(work)
    if output:
        console.print(f"exported {count} memories to {output}")


@app.command("reembed")
def reembed(
    bank: BankOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=4096)] = 128,
    org: OrgOpt = "default",
) -> None:
    """Re-embed every memory of a bank with the configured model (after changing it)."""

    async def work(rt: Runtime) -> int:
        tenant = await _tenant(rt, org)
        with _progress() as progress:
            task = progress.add_task(f"re-embedding with {rt.embeddings.model}", total=None)
            return await rt.memories.reembed_bank(
                tenant_id=tenant, bank_id=bank, batch_size=batch_size,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )

    count = run_with_runtime(work)
    console.print(f"re-embedded {count} memories")


@app.command("generate")
def generate(
    org: OrgOpt = "default",
    scope: ScopeOpt = None,
    bank: BankOpt = None,
    session: Annotated[UUID | None, typer.Option("--session", help="Learn from this session's events.")] = None,
    fact: Annotated[list[str] | None, typer.Option("--fact", help="A fact to consolidate; repeatable.")] = None,
    events_file: Annotated[
        Path | None, typer.Option("--events", help='JSONL file of events: {"author": "user", "text": "..."}')
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Enqueue and return at once.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Turn a session, a file of events or given facts into memories (a generation job)."""
    from contextiq.memories.generation.models import GenerateRequest

    sources = [s for s in (session, fact, events_file) if s]
    if len(sources) != 1:
        raise typer.BadParameter("give exactly one of --session, --fact (repeatable) or --events FILE")
    body: dict[str, Any] = {"scope": parse_scope(scope), "bank_id": bank,
                            "config": {"wait_for_completion": not no_wait}}
    if session is not None:
        body.update(source_type="session", source_reference=str(session))
    elif fact:
        body.update(source_type="facts", facts=list(fact))
    else:
        assert events_file is not None
        lines = [ln for ln in events_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        body.update(source_type="events", events=[json.loads(ln) for ln in lines])
    request = GenerateRequest.model_validate(body)

    async def work(rt: Runtime) -> Any:
        tenant = await _tenant(rt, org)
        job = await rt.generation.generate(tenant_id=tenant, data=request)
        events = await rt.generation.list_job_events(tenant_id=tenant, job_id=job.id, limit=1000)
        return job, events.items

    job, events = run_with_runtime(work)
    if as_json:
        typer.echo(json.dumps({"job": job.model_dump(mode="json"),
                               "events": [e.model_dump(mode="json") for e in events]}, indent=2))
        return
    console.print(f"job {job.id}: {job.status}" + (f" ({job.error_message})" if job.error_message else ""))
    if job.result is not None:
        r = job.result
        console.print(f"created {r.memories_created}, updated {r.memories_updated}, deleted {r.memories_deleted}, "
                      f"extracted {r.extracted_count}")
    emit(events, as_json=False, columns=["event_id", "status", "reason"])
