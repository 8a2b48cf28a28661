"""files(pattern): the paths of a directory input that match a glob or a name; tree() for a look.

Questions about a codebase start from its files ("which module…", "count the .py files"); the
model should not have to re-derive paths from `context.keys()` with string code.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections import defaultdict
from typing import Any

EXAMPLE = """\
Example, for a directory (a dict of files): files by glob, then code per file:
```python
paths = files("*.py")
print(len(paths), paths[:5])
counts = {p: len(find_lines(r"^def ", context[p])) for p in paths}
print(sorted(counts.items(), key=lambda kv: -kv[1])[:3])
```"""


def files(pattern: str, context: Any) -> list[str]:
    """Paths of `context` (a dict) matching `pattern`: a glob on the whole path or on the file
    name ("*.py", "routing/*", "utils.py"), or a plain substring of the path."""
    if not isinstance(pattern, str):
        raise TypeError("files: pattern must be a str, e.g. files('*.py')")
    if not isinstance(context, dict):
        return []
    paths = sorted(context)
    if not pattern or pattern == "*":
        return paths
    glob = any(c in pattern for c in "*?[")
    found = []
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if glob:
            if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(name, pattern):
                found.append(path)
        elif pattern == name or pattern in path:
            found.append(path)
    return found


def tree(paths: list[str], max_lines: int = 40) -> str:
    """A compact listing: one line per folder with its files (names only), deepest cut first."""
    by_folder: dict[str, list[str]] = defaultdict(list)
    for path in sorted(paths):
        folder, _, name = path.rpartition("/")
        by_folder[folder].append(name)
    lines = []
    for folder, names in sorted(by_folder.items()):
        shown = ", ".join(names[:15]) + (f", ... ({len(names)} files)" if len(names) > 15 else "")
        lines.append(f"{folder + '/' if folder else './'}: {shown}")
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... {len(lines) - max_lines} more folders"]
    return "\n".join(lines)


class PathDict(dict):
    """A directory input as cells see it: a path that is not there raises a KeyError naming the
    paths that come closest, so a guessed path ("pkg/http.py" for "http.py") costs one turn, not
    a run of the same KeyError."""

    def __missing__(self, key: Any) -> Any:
        raise KeyError(f"{key!r} is not a path of context; the closest: {close_paths(key, self)}")


def close_paths(key: Any, paths: Any, count: int = 3) -> list[str]:
    """Paths with the same file name first, then those difflib finds alike."""
    wanted = str(key)
    name = wanted.rstrip("/").rsplit("/", 1)[-1]
    same_name = [p for p in sorted(paths) if p.rsplit("/", 1)[-1] == name]
    alike = difflib.get_close_matches(wanted, sorted(paths), n=count, cutoff=0.4)
    return list(dict.fromkeys(same_name + alike))[:count]
