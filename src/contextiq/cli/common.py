"""Helpers shared by the CLI commands: settings, a runtime per command, output."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from contextiq.core.config import Settings
from contextiq.core.errors import ContextIQError
from contextiq.runtime import Runtime

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    """The settings from the environment (and config file); a bad value exits with status 2 and one
    line per problem naming its `CONTEXTIQ_*` variable, instead of a traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = "CONTEXTIQ_" + field.upper() if field else "configuration"
            err_console.print(f"[red]error:[/red] {name}: {error['msg']} (got {error.get('input')!r})")
        raise typer.Exit(2) from None


def run_with_runtime(work: Callable[[Runtime], Awaitable[T]], *, migrate: bool = True) -> T:
    """Build a runtime from the environment, run `work` on it, close it; errors exit with status 1."""
    settings = load_settings()

    async def main() -> T:
        runtime = Runtime(settings)
        try:
            if migrate:
                await runtime.prepare_schema()
            return await work(runtime)
        finally:
            await runtime.aclose()

    try:
        return asyncio.run(main())
    except ContextIQError as exc:
        err_console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from exc


def emit(items: BaseModel | Sequence[BaseModel], *, as_json: bool, columns: Sequence[str]) -> None:
    """Print a model or a list of models as JSON or as a table of `columns`."""
    if as_json:
        if isinstance(items, BaseModel):
            typer.echo(items.model_dump_json(indent=2))
        else:
            typer.echo(json.dumps([i.model_dump(mode="json") for i in items], indent=2))
        return
    rows = [items] if isinstance(items, BaseModel) else list(items)
    table = Table(*columns)
    for item in rows:
        data: dict[str, Any] = item.model_dump(mode="json")
        table.add_row(*[_cell(data.get(c)) for c in columns])
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


async def resolve_org(runtime: Runtime, name: str, *, create: bool = False) -> Any:
    """Return the organization named `name` (slug or name); create it when `create`."""
    if create:
        org, _ = await runtime.platform.ensure_org(name)
        return org
    for org in await runtime.platform.list_orgs():
        if name in (org.slug, org.name):
            return org
    raise ContextIQError(f"organization {name!r} not found (see `contextiq orgs list`)")
