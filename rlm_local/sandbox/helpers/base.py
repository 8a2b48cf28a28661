"""What every helper shares: the texts it reads, and argument checks with clear messages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Context = str | dict[str, str]


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def sources(text: Any, what: str) -> Iterator[tuple[str, str]]:
    """(prefix, text) pairs: a dict gives one per file, a list one per item."""
    if isinstance(text, str):
        yield "", text
    elif isinstance(text, dict):
        for path, body in text.items():
            if not isinstance(body, str):
                raise TypeError(f"{what}: every value of the dict must be str")
            yield f"{path}: ", body
    elif isinstance(text, list | tuple):
        for i, body in enumerate(text):
            if not isinstance(body, str):
                raise TypeError(f"{what}: every item of the list must be str")
            yield f"[{i}]: ", body
    else:
        raise TypeError(f"{what}: text must be a str, a dict of str or a list of str")
