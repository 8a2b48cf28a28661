"""search(query, k): the pieces of the input most relevant to a query, ranked by BM25.

A model that greps for one word picked from the question finds nothing or noise; ranking
pieces by all the query's words (rare words weigh most) finds the passage a fact is in without
guessing the exact wording. BM25 (Robertson and Zaragoza) in a few lines: no index to build
beyond word counts, fast enough for a few MB per call. A query word the input never writes is
matched by its English stem (Snowball), so "sponsored" finds `Sponsor:`; a word it does write is
matched as written, since its other forms mostly stand in passages that only share the word.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import snowballstemmer

from rlm_local.sandbox.helpers.base import Context, check_int, sources
from rlm_local.sandbox.helpers.code import defaults_note
from rlm_local.sandbox.helpers.sections import Section, Sections

PIECE_LINES = 12  # a piece is a window of lines (overlapping by half), cut at MAX_PIECE_CHARS
MAX_PIECE_CHARS = 1200
SHOWN_CHARS = 600  # of a longer piece, the part where the query's words are densest is shown
LINE_SLACK = 240  # chars a shown window may grow by at each end to keep its lines whole
K1, B = 1.2, 0.75
_TOKEN = re.compile(r"[A-Za-z]+|\d+(?:\.\d+)*")
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
    }
)

EXAMPLE = """\
Example, to find a fact (who, which, where, a value) by meaning, not exact words:
```python
hits = search("who presented the caching proposal", k=3)
print(hits)
```"""


class Hits(Sections):
    """search's result: the pieces, best first; printed with where each is (in Python, the defs
    and classes it sits in) and the whole lines of its text where the query's words are densest
    (a piece can be longer than what is shown)."""

    query: str = ""
    stems: tuple[str, ...] = ()  # stems of the query words the input never writes
    within: dict[int, str]  # id() of a hit -> the defs and classes it sits in

    def __repr__(self) -> str:
        if not self:
            return "(no piece shares a word with the query)"
        within = getattr(self, "within", {})
        return "\n".join(
            f"--- {hit.where}{_in(within.get(id(hit), ''))}\n{_shown(hit, self.query, self.stems)}"
            f"{_defaults(hit)}"
            for hit in self
        )

    __str__ = __repr__


def _in(within: str) -> str:
    return f" (in {within})" if within else ""


_OPENER = re.compile(r"^([ \t]*)(?:async[ \t]+)?(def|class)[ \t]+(\w+)")


def enclosing(rows: list[str], line: int) -> str:
    """The defs and classes a piece of Python starting at `line` (1-based) sits in, outermost
    first ("class Map, def __init__"): a piece cut from the middle of a function does not show
    its name, and "which function raises ..." is answered by that name, not the file's."""
    first = next((r for r in rows[line - 1 : line + PIECE_LINES] if r.strip()), "")
    indent = len(first.expandtabs()) - len(first.expandtabs().lstrip())
    found: list[str] = []
    for row in reversed(rows[: line - 1]):
        if indent == 0:
            break
        match = _OPENER.match(row)
        if match and len(match.group(1).expandtabs()) < indent:
            found.append(f"{match.group(2)} {match.group(3)}")
            indent = len(match.group(1).expandtabs())
        elif row.strip() and not row[0].isspace():
            break  # top-level code: nothing further up encloses the piece
    return ", ".join(reversed(found))


_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)", re.M)


def _defaults(piece: str) -> str:
    """The parameter defaults of each def in the piece, spaced out as source() shows them
    (`optimize=-1` is read as 0 by the 1.5B model; `optimize = -1` is read right)."""
    notes = []
    for match in _DEF.finditer(piece):
        note = defaults_note(piece[match.start() :].split("\n"))
        if note:
            notes.append(note.replace("# defaults:", f"# defaults of {match.group(1)}:").rstrip())
    return "\n" + "\n".join(notes) if notes else ""


def _shown(piece: str, query: str, stems: tuple[str, ...] = (), limit: int = SHOWN_CHARS) -> str:
    if len(piece) <= limit:
        return piece
    terms = {t for t in words(query) if t not in STOPWORDS} | set(stems)
    lowered = piece.lower()
    spots = [m.start() for t in terms for m in re.finditer(re.escape(t), lowered)]
    best, best_terms = 0, -1
    for spot in sorted(spots):  # the first window holding the most different query words
        start = max(0, spot - limit // 3)
        found = len({t for t in terms if t in lowered[start : start + limit]})
        if found > best_terms:
            best, best_terms = start, found
    start, end = _whole_lines(piece, best, best + limit)
    return ("... " if start else "") + piece[start:end] + (" ..." if end < len(piece) else "")


def _whole_lines(piece: str, start: int, end: int) -> tuple[int, int]:
    """The window widened to the start and end of the lines it cuts, each within LINE_SLACK
    chars: a log line cut in two loses the value at its end (the replica's datanode of
    `ask A to replicate B to datanode(s) C`)."""
    line_start = piece.rfind("\n", 0, start) + 1
    if start - line_start <= LINE_SLACK:
        start = line_start
    line_end = piece.find("\n", end)
    line_end = len(piece) if line_end < 0 else line_end
    if line_end - end <= LINE_SLACK:
        end = line_end
    return start, end


def words(text: str) -> list[str]:
    """Lower-case words and numbers; snake_case and camelCase names also give their parts."""
    found = []
    for token in _TOKEN.findall(text):
        found.append(token.lower())
        parts = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", token)
        if len(parts) > 1:
            found.extend(part.lower() for part in parts)
    return found


class Stems:
    """English stems of words, each word stemmed once per ranking (a codebase has a few
    thousand distinct words and a million word uses)."""

    def __init__(self) -> None:
        self._stemmer = snowballstemmer.stemmer("english")
        self._known: dict[str, str] = {}

    def of(self, tokens: list[str]) -> list[str]:
        known = self._known
        for token in tokens:
            if token not in known:
                known[token] = self._stemmer.stemWord(token)
        return [known[token] for token in tokens]


def pieces(text: Any) -> list[Section]:
    """Windows of up to PIECE_LINES lines and MAX_PIECE_CHARS, overlapping by half, per file; a
    line longer than MAX_PIECE_CHARS is cut into pieces of its own."""
    found: list[Section] = []
    for prefix, body in sources(text, "search"):
        path = prefix.rstrip(": ")
        window: list[tuple[int, str]] = []  # (line number, text)
        size = fresh = 0  # fresh: lines not yet in an emitted piece
        for number, row in enumerate(body.split("\n"), 1):
            if len(row) > MAX_PIECE_CHARS:
                for start in range(0, len(row), MAX_PIECE_CHARS // 2):  # overlapping
                    found.append(Section(row[start : start + MAX_PIECE_CHARS], "", number, path))
                continue
            window.append((number, row))
            size += len(row) + 1
            fresh += 1
            if len(window) >= PIECE_LINES or size >= MAX_PIECE_CHARS:
                _emit(window, path, found)
                window = window[len(window) // 2 :]
                size, fresh = sum(len(r) + 1 for _, r in window), 0
        if fresh:
            _emit(window, path, found)
    return found


def _emit(window: list[tuple[int, str]], path: str, found: list[Section]) -> None:
    kept = [(n, r) for n, r in window if r.strip()]
    if kept:
        text = "\n".join(r for _, r in window).strip("\n")
        found.append(Section(text, "", kept[0][0], path))


def rank(query: str, candidates: list[str], k: int) -> tuple[list[int], list[str]]:
    """Indices of the `k` candidates with the highest BM25 score for `query` (score > 0), and
    the terms matched (a stem as "~stem"); a piece that defines a name the query uses
    (`class X`, `def x`) counts double, since a definition is where a question about a name is
    answered, not its hundred uses."""
    terms = [t for t in dict.fromkeys(words(query)) if t not in STOPWORDS]
    if not terms or not candidates:
        return [], terms
    names = [n for n in dict.fromkeys(re.findall(r"[A-Za-z_]\w{2,}", query)) if n not in STOPWORDS]
    definitions = (
        re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+(?:" + "|".join(names) + r")\b", re.M)
        if names
        else None
    )
    counts = [Counter(words(c)) for c in candidates]
    lengths = [sum(c.values()) for c in counts]
    terms = _stemmed_where_absent(terms, counts)
    average = sum(lengths) / len(lengths) or 1.0
    n = len(candidates)
    weights = {}
    for term in terms:
        having = sum(1 for c in counts if term in c)
        weights[term] = math.log(1 + (n - having + 0.5) / (having + 0.5)) if having else 0.0
    scores = []
    for i, (count, length) in enumerate(zip(counts, lengths, strict=True)):
        norm = K1 * (1 - B + B * length / average)
        score = sum(
            weights[t] * count[t] * (K1 + 1) / (count[t] + norm) for t in terms if t in count
        )
        if score > 0:
            defines = definitions.search(candidates[i]) if definitions else None
            scores.append((score * (2 if defines else 1), -i))
    return [-i for _, i in sorted(scores, reverse=True)[:k]], terms


def _stemmed_where_absent(terms: list[str], counts: list[Counter[str]]) -> list[str]:
    """The query terms, each one no candidate holds as written replaced by its stem ("~sponsor"
    for "sponsored"), with the candidates' counts of that stem added in place."""
    absent = [t for t in terms if not any(t in count for count in counts)]
    if not absent:
        return terms
    stems = Stems()
    wanted = {f"~{stem}" for stem in stems.of(absent)}
    for count in counts:
        present = list(count)
        for word, stem in zip(present, stems.of(present), strict=True):
            if f"~{stem}" in wanted:
                count[f"~{stem}"] += count[word]
    matched = [f"~{stems.of([t])[0]}" if t in absent else t for t in terms]
    return list(dict.fromkeys(matched))  # two missing forms of one word count once


def search(query: str, text: Context | list[str] | None, k: int = 5) -> Hits:
    """The `k` pieces (windows of lines) of `text` that best match the query's words."""
    if not isinstance(query, str):
        raise TypeError("search: query must be a str, e.g. search('budget decision')")
    k = check_int("k", k, 1)
    if isinstance(text, list) and all(isinstance(t, Section) for t in text):
        candidates = list(text)  # search within pieces already found (sections, hits)
    else:
        candidates = pieces(text)
    hits = Hits()
    taken: list[tuple[str, int, int]] = []  # (path, first line, last line) of each hit
    order, terms = rank(query, candidates, len(candidates))
    for i in order:
        piece = candidates[i]
        span = (piece.path, piece.line, piece.line + piece.count("\n"))
        if any(p == span[0] and a <= span[2] and span[1] <= b for p, a, b in taken):
            continue  # overlapping windows: the same passage once
        taken.append(span)
        hits.append(piece)
        if len(hits) >= k:
            break
    hits.query = query
    hits.stems = tuple(t[1:] for t in terms if t.startswith("~"))
    hits.within = _python_places(hits, text)
    return hits


def _python_places(hits: Hits, text: Any) -> dict[int, str]:
    """For each hit in a .py file of a dict context, the defs and classes it sits in."""
    if not isinstance(text, dict):
        return {}
    places = {}
    for hit in hits:
        body = text.get(hit.path)
        if hit.path.endswith(".py") and isinstance(body, str):
            places[id(hit)] = enclosing(body.split("\n"), hit.line)
    return places
