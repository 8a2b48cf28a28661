"""`rlm-local cache`: the model-call cache and local models' evaluated prompt prefixes."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from rlm_local.cache import CallCache
from rlm_local.cli.common import err, settings_for
from rlm_local.config import Settings
from rlm_local.models import ModelStore
from rlm_local.models.prefixes import PrefixStore


@click.group()
def cache() -> None:
    """Inspect or clear the on-disk caches: model calls, and local models' evaluated prompts."""


def _cache(ctx: click.Context) -> tuple[Settings, CallCache, PrefixStore]:
    settings = settings_for(ctx)
    prefixes = PrefixStore(settings.prefixes_dir, settings.prefix_cache_mb)
    return settings, CallCache(settings.cache_dir, settings.cache_size_mb), prefixes


@cache.command("stats")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cache_stats(ctx: click.Context, as_json: bool) -> None:
    """Entries, size on disk, and hits/misses since the cache was created."""
    settings, call_cache, prefixes = _cache(ctx)
    stats, prefix_stats = call_cache.stats(), prefixes.stats()
    if as_json:
        prefix_data = {**asdict(prefix_stats), "directory": str(prefix_stats.directory)}
        prefix_data["limit_bytes"] = settings.prefix_cache_mb << 20
        data = {**asdict(stats), "directory": str(stats.directory), "prefixes": prefix_data}
        click.echo(json.dumps(data))
        return
    total = stats.hits + stats.misses
    rate = f"{100 * stats.hits / total:.0f}%" if total else "n/a"
    click.echo(f"directory  {stats.directory}")
    click.echo(f"entries    {stats.entries}")
    click.echo(f"size       {stats.size_bytes / 1e6:.1f} MB")
    click.echo(f"hits       {stats.hits}")
    click.echo(f"misses     {stats.misses}")
    click.echo(f"hit rate   {rate}")
    click.echo("evaluated prompt prefixes")
    click.echo(f"directory  {prefix_stats.directory}")
    click.echo(f"entries    {prefix_stats.entries}")
    click.echo(
        f"size       {prefix_stats.size_bytes / 1e6:.1f} MB "
        f"(limit {settings.prefix_cache_mb} MB, RLM_LOCAL_PREFIX_CACHE_MB)"
    )


@cache.command("clear")
@click.option("--model", help="Only the entries of this model (a name or .gguf path).")
@click.pass_context
def cache_clear(ctx: click.Context, model: str | None) -> None:
    """Delete cached model calls and evaluated prompt prefixes."""
    settings, call_cache, prefixes = _cache(ctx)
    identity = None
    if model:
        identity = ModelStore(settings.registry, settings.models_dir).resolve(model).sha256
    removed = call_cache.clear(identity)
    removed_prefixes = prefixes.clear(identity)
    err.print(f"removed {removed} entries and {removed_prefixes} prompt prefixes")


@cache.command("path")
@click.pass_context
def cache_path(ctx: click.Context) -> None:
    """Print the cache directory."""
    click.echo(str(settings_for(ctx).cache_dir))
