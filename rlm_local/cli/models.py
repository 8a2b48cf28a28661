"""`rlm-local models`: list, pull, verify, import and remove local GGUF models."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.table import Table

from rlm_local.cli.common import byte_progress, err, out, settings_for
from rlm_local.config import Settings
from rlm_local.models import ModelStore
from rlm_local.models.store import ModelStatus


@click.group()
def models() -> None:
    """List, pull, verify, import and remove local GGUF models."""


def _store(ctx: click.Context) -> ModelStore:
    settings = settings_for(ctx)
    return ModelStore(settings.registry, settings.models_dir)


def _roles(settings: Settings) -> dict[str, str]:
    """Model name -> the roles it plays ("root, sub")."""
    named = [(settings.root, "root"), (settings.sub, "sub"), (settings.labeller, "labeller")]
    roles: dict[str, str] = {}
    for name, role in named:  # the labeller is listed only when set apart from the root model
        if name:
            roles[name] = f"{roles[name]}, {role}" if name in roles else role
    return roles


def _listing_json(rows: list[ModelStatus], roles: dict[str, str]) -> str:
    return json.dumps(
        [
            {
                "name": r.name,
                "role": roles.get(r.name),
                "size": r.size or r.spec.size,
                "present": r.present,
                "verified": r.verified,
                "path": str(r.path),
                "problem": r.problem,
            }
            for r in rows
        ]
    )


def _listing_table(rows: list[ModelStatus], roles: dict[str, str]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("name", "role", "size", "state", "path"):
        table.add_column(column)
    for r in rows:
        size = r.size or r.spec.size
        state = (
            "[green]verified[/green]"
            if r.verified
            else ("[red]unverified[/red]" if r.present else "[dim]not pulled[/dim]")
        )
        if r.spec.server is not None:
            size_text, state, where = (
                "served",
                "[green]server[/green]",
                " ".join(r.spec.server.base_urls),
            )
        else:
            size_text = f"{size / 1e9:.2f} GB" if size else "?"
            where = str(r.path) if r.present else ""
        table.add_row(r.name, roles.get(r.name, ""), size_text, state, where)
    return table


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """Show each known model, its role, and whether it is present and verified."""
    settings = settings_for(ctx)
    store = ModelStore(settings.registry, settings.models_dir)
    roles = _roles(settings)
    rows = store.list()
    if as_json:
        click.echo(_listing_json(rows, roles))
        return
    out.print(_listing_table(rows, roles))
    for r in rows:
        if r.problem:
            err.print(f"[yellow]{r.problem}[/yellow]")


@models.command("pull")
@click.argument("names", nargs=-1)
@click.option("--all", "pull_all", is_flag=True, help="Every model in the registry.")
@click.option("--force", is_flag=True, help="Download again even if a verified copy exists.")
@click.pass_context
def models_pull(ctx: click.Context, names: tuple[str, ...], pull_all: bool, force: bool) -> None:
    """Download models (default: the models the roles use) and verify their sha256."""
    settings = settings_for(ctx)
    store = ModelStore(settings.registry, settings.models_dir)
    if pull_all:
        names = tuple(settings.registry.models)
    elif not names:
        names = tuple(settings.models_in_use())
    for name in names:
        started = time.monotonic()
        with byte_progress(err.is_terminal) as progress:
            outcome = store.pull(name, progress, force=force)
        if outcome.downloaded:
            err.print(
                f"[green]pulled[/green] {name} from {outcome.origin} "
                f"in {time.monotonic() - started:.0f} s"
            )
        else:
            err.print(f"{name} is already present and verified")


@models.command("verify")
@click.argument("names", nargs=-1)
@click.pass_context
def models_verify(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Hash present models in full and compare with the registry (default: all present)."""
    store = _store(ctx)
    names = names or tuple(s.name for s in store.list() if s.present)
    if not names:
        err.print("No model is present; run `rlm-local models pull`.")
        return
    for name in names:
        with byte_progress(err.is_terminal) as progress:
            store.verify(name, progress)
        err.print(f"[green]verified[/green] {name}")


@models.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def models_import(ctx: click.Context, name: str, file: Path) -> None:
    """Copy a GGUF FILE in as model NAME (for air-gapped machines); its sha256 must match."""
    store = _store(ctx)
    with byte_progress(err.is_terminal) as progress:
        store.import_file(name, file, progress)
    err.print(f"[green]imported[/green] {file} as {name}")


@models.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def models_rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Delete downloaded models."""
    store = _store(ctx)
    for name in names:
        removed = store.remove(name)
        err.print(f"removed {name}" if removed else f"{name} was not present")
