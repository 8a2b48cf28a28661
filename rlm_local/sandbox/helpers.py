"""grep, chunks, source and records: trusted worker-side helpers every cell gets.

Small models use these two well and write them badly themselves (unbounded regex output, chunks cut
mid-word), so the sandbox provides tested versions that default to `context`.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

Context = str | dict[str, str]

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _sources(text: Any, what: str) -> Iterator[tuple[str, str]]:
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
    window = _check_int("window", window, 0)
    max_hits = _check_int("max_hits", max_hits, 0)
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
        for _, body in _sources(text, "grep"):
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
    for prefix, body in _sources(text, "grep"):
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
    size = _check_int("size", size, 1)
    overlap = _check_int("overlap", overlap, 0)
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


_KEYWORDS = frozenset({"def", "class", "async", "function", "method"})


def _defaults_note(lines: list[str]) -> str:
    """A comment line listing a def's parameter defaults, spaced out: `sort=-1` and
    `mode='exec'` are single tokens to Qwen's tokenizer (`=-`, `='`), and the 1.5B model read
    them back as 0 and exec; `sort = -1` it reads right."""
    for end in range(1, min(len(lines), 12) + 1):
        head = textwrap.dedent("\n".join(lines[:end]))
        try:
            node = ast.parse(head + "\n    pass").body[0]
        except SyntaxError:
            continue
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return ""
        args = node.args
        positional = args.posonlyargs + args.args
        with_default = positional[len(positional) - len(args.defaults) :]
        pairs = list(zip(with_default, args.defaults, strict=True))
        keyword = zip(args.kwonlyargs, args.kw_defaults, strict=True)
        pairs += [(arg, default) for arg, default in keyword if default is not None]
        shown = ", ".join(f"{arg.arg} = {ast.unparse(default)}" for arg, default in pairs)
        return f"# defaults: {shown}\n" if shown else ""
    return ""


def source(
    name: str, text: Context | list[str] | None, max_lines: int = 60, max_defs: int = 5
) -> str:
    """The code of each function or class called `name`, headed by its path and line number.

    "search, then read around the hit" in one call for code: a grep window cuts long signatures,
    and small models then parse snippets with regexes and print the wrong group.
    """
    if not isinstance(name, str):
        raise TypeError("source: name must be a str, e.g. source('parse_config')")
    max_lines = _check_int("max_lines", max_lines, 1)
    words = [w for w in re.findall(r"[A-Za-z_]\w*", name) if w not in _KEYWORDS]
    if not words:
        raise ValueError("source: name must be a function or class name, e.g. 'parse_config'")
    wanted = words[-1]  # "Config.parse" or "def parse(" -> "parse"
    regex = re.compile(rf"^([ \t]*)(?:async[ \t]+def|def|class)[ \t]+{re.escape(wanted)}\b", re.M)
    found: list[tuple[int, str]] = []  # (indent, code): top-level definitions come first
    for prefix, body in _sources(text, "source"):
        for match in regex.finditer(body):
            line_no = body.count("\n", 0, match.start()) + 1
            lines = body[match.start() :].split("\n", max_lines + 1)[: max_lines + 1]
            indent = len(match.group(1).expandtabs())
            kept = [lines[0]]
            for line in lines[1:]:
                stripped = line.strip()
                if (
                    stripped
                    and len(line) - len(line.lstrip()) <= indent
                    and not (stripped.startswith((")", "]", "}")))
                ):
                    break
                kept.append(line)
            more = "\n    ..." if len(kept) > max_lines else ""
            where = f"{prefix.rstrip(': ')} line {line_no}".strip()
            code = "\n".join(kept[:max_lines]).rstrip()
            defaults = _defaults_note(kept)
            found.append((indent, f"# {where}\n{defaults}{code}{more}"))
    if not found:
        return f"(no def or class named {wanted!r}; try grep({wanted!r}))"
    found.sort(key=lambda item: item[0])  # stable: file order within a level
    return "\n\n".join(code for _, code in found[:max_defs])


_FIELD = re.compile(r"(?:^|[|;,\t]\s*)([A-Z][A-Za-z_]{0,19}):\s")


def record_keys(items: list[str]) -> list[str]:
    """The field names every record-like item has ("Date: … || User: … || Text: …"), in order;
    empty when the items are not records (fewer than two such fields)."""
    sample = [item for item in items[:: max(1, len(items) // 200)] if item.strip()]
    if not sample:
        return []
    keys = list(dict.fromkeys(_FIELD.findall(sample[0])))
    common = [key for key in keys if sum(f"{key}:" in item for item in sample) >= 0.9 * len(sample)]
    return common if len(common) >= 2 else []


def records(text: Context | list[str] | None) -> list[dict[str, str | int]]:
    """One dict per line of "Key: value || Key: value" records, keyed by the shared fields.

    The 1.5B model's own parsing of such lines breaks on "||" (an empty regex alternative) or
    splits at the wrong place; filtering by user or date is then a plain dict lookup.
    """
    lines = [line for _, body in _sources(text, "records") for line in body.splitlines()]
    keys = record_keys(lines)
    if not keys:
        raise ValueError(
            "records: the lines are not 'Key: value' records; use context.splitlines() or grep"
        )
    field = re.compile(r"(?:^|[|;,\t]\s*)(" + "|".join(map(re.escape, keys)) + r"):\s")
    order = {key: n for n, key in enumerate(keys)}
    rows = []
    for line in lines:
        found: list[re.Match[str]] = []
        for match in field.finditer(line):  # each key once, in order; the last runs to the end
            if not found or order[match.group(1)] > order[found[-1].group(1)]:
                found.append(match)
                if match.group(1) == keys[-1]:
                    break
        if not found:
            continue
        ends = [match.start() for match in found[1:]] + [len(line)]
        pairs = zip(found, ends, strict=True)
        rows.append({m.group(1): _value(line[m.end() : end]) for m, end in pairs})
    return rows


def _value(text: str) -> str | int:
    """A field's value; a whole number as an int, since models compare ids with ints
    (`row['User'] in [71503, 29873]` matched nothing when ids were str)."""
    value = text.strip(" |;,\t")
    return int(value) if value.isdigit() and str(int(value)) == value else value


def make_helpers(context: Context) -> dict[str, Callable[..., Any]]:
    """The helpers bound to this worker's context (the default `text`)."""

    def grep_(
        pattern: str,
        text: Context | list[str] | None = None,
        window: int = 150,
        max_hits: int = 50,
        ignore_case: bool = True,
    ) -> Snippets:
        return grep(pattern, context if text is None else text, window, max_hits, ignore_case)

    def chunks_(text: Context | None = None, size: int = 8000, overlap: int = 0) -> list[str]:
        return chunks(context if text is None else text, size, overlap)

    def source_(name: str, text: Context | list[str] | None = None, max_lines: int = 60) -> str:
        return source(name, context if text is None else text, max_lines)

    def records_(text: Context | list[str] | None = None) -> list[dict[str, str | int]]:
        return records(context if text is None else text)

    records_.__name__ = records_.__qualname__ = "records"
    records_.__doc__ = records.__doc__
    source_.__name__ = source_.__qualname__ = "source"
    source_.__doc__ = source.__doc__
    grep_.__name__ = grep_.__qualname__ = "grep"
    grep_.__doc__ = grep.__doc__
    chunks_.__name__ = chunks_.__qualname__ = "chunks"
    chunks_.__doc__ = chunks.__doc__
    return {"grep": grep_, "chunks": chunks_, "source": source_, "records": records_}
