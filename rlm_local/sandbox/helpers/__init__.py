"""Trusted worker-side helpers every cell gets, each strategy in its own module.

Small models use these well and write them badly themselves (unbounded regex output, capped
counts, chunks cut mid-word), so the sandbox provides tested versions that default to `context`.
Each module also holds the worked example the root prompt shows for its strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlm_local.sandbox.helpers.base import Context
from rlm_local.sandbox.helpers.code import source
from rlm_local.sandbox.helpers.files import files, tree
from rlm_local.sandbox.helpers.lines import Line, Lines, find_lines
from rlm_local.sandbox.helpers.records import record_keys, records
from rlm_local.sandbox.helpers.search import search
from rlm_local.sandbox.helpers.sections import Section, sections
from rlm_local.sandbox.helpers.tables import Table, tables
from rlm_local.sandbox.helpers.tally import Tally, tally
from rlm_local.sandbox.helpers.text import Snippets, chunks, grep, render

__all__ = [
    "Line",
    "Lines",
    "Section",
    "Snippets",
    "Table",
    "Tally",
    "chunks",
    "files",
    "find_lines",
    "grep",
    "make_helpers",
    "record_keys",
    "records",
    "render",
    "search",
    "sections",
    "source",
    "tables",
    "tally",
    "tree",
]


def _named(function: Callable[..., Any], name: str, like: Callable[..., Any]) -> Callable[..., Any]:
    function.__name__ = function.__qualname__ = name
    function.__doc__ = like.__doc__
    return function


def make_helpers(context: Context) -> dict[str, Callable[..., Any]]:
    """The helpers bound to this worker's context (the default `text`)."""

    def pick(text: Any) -> Any:
        return context if text is None else text

    def grep_(pattern, text=None, window=150, max_hits=50, ignore_case=True):  # type: ignore[no-untyped-def]
        return grep(pattern, pick(text), window, max_hits, ignore_case)

    def chunks_(text=None, size=8000, overlap=0):  # type: ignore[no-untyped-def]
        return chunks(pick(text), size, overlap)

    def source_(name, text=None, max_lines=60, max_defs=5):  # type: ignore[no-untyped-def]
        return source(name, pick(text), max_lines, max_defs)

    def records_(text=None):  # type: ignore[no-untyped-def]
        return records(pick(text))

    def find_lines_(pattern, text=None, ignore_case=False, limit=0):  # type: ignore[no-untyped-def]
        return find_lines(pattern, pick(text), ignore_case, limit)

    def tally_(pattern, lines=None, ignore_case=False):  # type: ignore[no-untyped-def]
        return tally(pattern, pick(lines), ignore_case)

    def tables_(text=None):  # type: ignore[no-untyped-def]
        return tables(pick(text))

    def sections_(text=None):  # type: ignore[no-untyped-def]
        return sections(pick(text))

    def search_(query, k=5, text=None):  # type: ignore[no-untyped-def]
        return search(query, pick(text), k)

    def files_(pattern="*"):  # type: ignore[no-untyped-def]
        return files(pattern, context)

    return {
        "grep": _named(grep_, "grep", grep),
        "chunks": _named(chunks_, "chunks", chunks),
        "source": _named(source_, "source", source),
        "records": _named(records_, "records", records),
        "find_lines": _named(find_lines_, "find_lines", find_lines),
        "tally": _named(tally_, "tally", tally),
        "sections": _named(sections_, "sections", sections),
        "tables": _named(tables_, "tables", tables),
        "search": _named(search_, "search", search),
        "files": _named(files_, "files", files),
    }
