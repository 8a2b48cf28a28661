"""`os` and `os.path` for cells: pure path functions, and a directory input as a read-only tree.

Asked how many files a package has, the 1.5B model writes `import os` and `os.walk('.')` or
`os.path.basename(p)`, and repeated it for five turns after the import was refused (code-14 of
the devsuite). Here those names work on the paths of `context` (a dict input) and nothing else:
no real file, directory, environment or process is reachable.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from typing import Any

PURE_PATH_FUNCTIONS = (
    "basename", "dirname", "split", "splitext", "join", "normpath", "commonprefix",
    "commonpath", "isabs",
)  # fmt: skip


class VirtualTree:
    """The folders and files of a directory input, from its paths ("a/b.py" is in folder "a")."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.files = frozenset(_clean(path) for path in paths)
        folders = {""}
        for path in self.files:
            parts = path.split("/")[:-1]
            folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        self.folders = frozenset(folders)

    def exists(self, path: Any) -> bool:
        return self.isfile(path) or self.isdir(path)

    def isfile(self, path: Any) -> bool:
        return _clean(_as_path(path)) in self.files

    def isdir(self, path: Any) -> bool:
        return _clean(_as_path(path)) in self.folders

    def listdir(self, path: Any = ".") -> list[str]:
        """Names in one folder, files and folders, sorted (the real os.listdir is unordered)."""
        folder = self._folder(path)
        prefix = folder + "/" if folder else ""
        names = {
            entry[len(prefix) :].split("/", 1)[0]
            for entry in self.files | self.folders
            if entry.startswith(prefix) and entry != folder
        }
        return sorted(names)

    def walk(self, top: Any = ".", topdown: bool = True, **_: Any) -> Iterator[tuple]:
        """(folder, subfolders, files) per folder, top first; folders are written as os.walk
        writes them from a relative top ("." then "./a")."""
        start = self._folder(top)
        shown_top = str(top).rstrip("/") or "."
        for folder in sorted(f for f in self.folders if _within(f, start)):
            rest = folder[len(start) :].lstrip("/")
            shown = posixpath.join(shown_top, rest) if rest else shown_top
            names = self.listdir(folder or ".")
            prefix = folder + "/" if folder else ""
            subfolders = [n for n in names if prefix + n in self.folders]
            files = [n for n in names if prefix + n in self.files]
            yield shown, subfolders, files

    def _folder(self, path: Any) -> str:
        folder = _clean(_as_path(path))
        if folder not in self.folders:
            raise FileNotFoundError(
                f"{path!r} is not a folder of context; its top folders: {self.listdir('.')[:8]}"
            )
        return folder


def os_attributes(paths: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The audited names of `os.path` and of `os`, over the given input paths."""
    tree = VirtualTree(paths)
    path_attrs: dict[str, Any] = {name: getattr(posixpath, name) for name in PURE_PATH_FUNCTIONS}
    path_attrs.update(sep="/", exists=tree.exists, isfile=tree.isfile, isdir=tree.isdir)
    return path_attrs, {"sep": "/", "curdir": ".", "listdir": tree.listdir, "walk": tree.walk}


def _as_path(path: Any) -> str:
    if not isinstance(path, str):
        raise TypeError(f"a path must be a str, not {type(path).__name__}")
    return path


def _clean(path: str) -> str:
    """A path as the input's keys write it: no "./" or "/" in front, no "/" at the end."""
    cleaned = posixpath.normpath("/" + path.strip()).lstrip("/")
    return "" if cleaned == "." else cleaned


def _within(folder: str, top: str) -> bool:
    return not top or folder == top or folder.startswith(top + "/")
