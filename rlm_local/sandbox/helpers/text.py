"""grep and chunks: snippets around regex matches, and context cut into pieces.

Small models use these two well and write them badly themselves (unbounded regex output, chunks cut
mid-word), so the sandbox provides tested versions that default to `context`.
"""

from __future__ import annotations

import re
from typing import Any

from rlm_local.sandbox.helpers.base import Context, check_int, sources

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s")


def _compile(pattern: Any, ignore_case: bool) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise TypeError("grep: pattern must be a str")
    flags = re.IGNORECASE if ignore_case else 0
    try:
        return re.compile(pattern, flags)
    except re.error:
        return re.compile(re.escape(pattern), flags)


class Snippets(list[str]):
    """grep's hits: a list whose printed form shows each snippet as written, one per line.

    A plain list prints code with both quote kinds escaped (`mode=\\'exec\\'`), and a small model
    then drops the quotes from the answer it copies.
    """

    def __repr__(self) -> str:
        return "[" + ",\n ".join(f"'{snippet}'" for snippet in self) + "]"

    __str__ = __repr__

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return Snippets(item) if isinstance(index, slice) else item


def grep(
    pattern: str,
    text: Context | list[str] | None,
    window: int = 150,
    max_hits: int = 50,
    ignore_case: bool = True,
) -> Snippets:
    """Regex hits with `window` characters either side, whitespace collapsed.

    A pattern that is not a valid regex is searched literally; one that finds nothing falls back
    to its most distinctive word (the first hit says so). Matches inside the previous hit's
    window are not repeated. Scanning stops at `max_hits`, so huge inputs cost little.
    """
    window = check_int("window", window, 0)
    max_hits = check_int("max_hits", max_hits, 0)
    return Snippets(_hits_or_fallback(pattern, text, window, max_hits, bool(ignore_case)))


def _hits_or_fallback(
    pattern: str, text: Any, window: int, max_hits: int, ignore_case: bool
) -> list[str]:
    hits = _grep(_compile(pattern, ignore_case), text, window, max_hits)
    if hits or max_hits == 0:
        return hits
    # Small models over-specify patterns (a whole signature, a sentence) and then give up on an
    # empty result: fall back to the pattern's rarest word that occurs, and say so in the output.
    # A guessed signature ("def run(self, a, b=None)") falls back to the definitions of the name
    # it defines, not to its rarest word: "locals" led a model to answer from the wrong function.
    for name in dict.fromkeys(_DEFINED.findall(pattern)):
        # Each snippet starts at the definition, so its signature is the first thing read.
        top_level = _grep(_definition_regex(name, True), text, window, max_hits, before=0)
        nested = _grep(_definition_regex(name, False), text, window, max_hits, before=0)
        hits = (top_level + nested)[:max_hits]  # the module's own function before methods
        if hits:
            hits[0] = f"(no exact match for the pattern; definitions of {name!r} instead) {hits[0]}"
            return hits
    anchor = _anchor(pattern, text)
    if anchor is None:
        return hits
    hits = _grep(_word_regex(anchor), text, window, max_hits)
    hits[0] = f"(no exact match for the pattern; hits for {anchor!r} instead) {hits[0]}"
    return hits


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_NOT_DISTINCTIVE = frozenset(
    [
        "def",
        "class",
        "self",
        "return",
        "import",
        "from",
        "none",
        "true",
        "false",
        "lambda",
        "the",
        "and",
        "for",
        "with",
        "what",
        "which",
    ]
)
_COUNT_CAP = 1000


_DEFINED = re.compile(r"\b(?:def|class)(?:\\s[+*]?|\s+)([A-Za-z_]\w*)")


def _definition_regex(name: str, top_level: bool) -> re.Pattern[str]:
    indent = "" if top_level else r"[ \t]+"
    return re.compile(rf"^{indent}(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", re.M)


def _word_regex(word: str) -> re.Pattern[str]:
    return re.compile(r"\b" + re.escape(word) + r"\b", re.IGNORECASE)


def _anchor(pattern: str, text: Any) -> str | None:
    """The pattern's rarest name-like word that occurs in `text` (None for a one-word pattern)."""
    words = {w for w in _WORD.findall(pattern) if w.lower() not in _NOT_DISTINCTIVE}
    if not words or (len(words) == 1 and pattern.strip() in words):
        return None
    defined = set(_DEFINED.findall(pattern))
    best: tuple[int, int, int, str] | None = None
    for word in sorted(words, key=len, reverse=True)[:6]:
        regex = _word_regex(word)
        count = 0
        for _, body in sources(text, "grep"):
            for _ in regex.finditer(body):
                count += 1
                if count >= _COUNT_CAP:
                    break
            if count >= _COUNT_CAP:
                break
        rank = (count, word not in defined, -len(word))
        if count and (best is None or rank < best[:3]):
            best = (*rank, word)
    return best[3] if best else None


def _grep(
    regex: re.Pattern[str], text: Any, window: int, max_hits: int, before: int | None = None
) -> list[str]:
    hits: list[str] = []
    if max_hits == 0:
        return hits
    for prefix, body in sources(text, "grep"):
        covered = -1
        for match in regex.finditer(body):
            if match.end() == match.start() or match.start() < covered:
                continue
            start = max(0, match.start() - (window if before is None else before))
            end = min(len(body), match.end() + window)
            covered = end
            hits.append(prefix + " ".join(body[start:end].split()))
            if len(hits) >= max_hits:
                return hits
    return hits


def render(text: Context) -> str:
    """A dict context as one text: "### path" headers before each file."""
    if isinstance(text, str):
        return text
    if not all(isinstance(body, str) for body in text.values()):
        raise TypeError("chunks: every value of the dict must be str")
    return "\n\n".join(f"### {path}\n{body}" for path, body in text.items())


def _cut_point(text: str, start: int, limit: int) -> int:
    """Where to end a piece in text[start:limit]: a newline, else a sentence end, else a space."""
    floor = start + max(1, (limit - start) // 2)
    newline = text.rfind("\n", floor, limit)
    if newline != -1:
        return newline + 1
    last = -1
    for match in _SENTENCE_END.finditer(text, floor, limit):
        last = match.end()
    if last != -1:
        return last
    space = max(text.rfind(" ", floor, limit), text.rfind("\t", floor, limit))
    if space != -1:
        return space + 1
    return limit


def chunks(text: Context | None, size: int = 8000, overlap: int = 0) -> list[str]:
    """Pieces of at most `size` characters, cut at a newline or sentence end near the limit."""
    size = check_int("size", size, 1)
    overlap = check_int("overlap", overlap, 0)
    if overlap >= size:
        raise ValueError("chunks: overlap must be smaller than size")
    if not isinstance(text, str | dict):
        raise TypeError("chunks: text must be a str or a dict of str")
    whole = render(text)
    pieces: list[str] = []
    start = 0
    n = len(whole)
    while start < n:
        limit = min(start + size, n)
        end = limit if limit == n else _cut_point(whole, start, limit)
        pieces.append(whole[start:end])
        if end >= n:
            break
        start = max(end - overlap, start + 1)
    return pieces
