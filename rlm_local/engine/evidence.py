"""The passages of the input an answer rests on, found from what the run saw, never from what a
model says it cited.

A run leaves observations: what each cell printed and the prompts sub-calls read. Their lines that
stand verbatim in the input are located there (path, 1-based inclusive lines, PDF page), and those
linked to the answer become its evidence: lines holding the answer's words or values, the pieces
whose sub-call answers went into it, or, for a computed value, lines the computing cell printed.
"""

from __future__ import annotations

import ast
import bisect
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rlm_local.engine import patterns
from rlm_local.sandbox.helpers.search import STOPWORDS

Source = Literal["printed", "sub_call", "input"]  # "input": the model read it all (direct)
Why = Literal["answer_words", "sub_call_answer", "computed"]

MAX_ITEMS = 6
MIN_FRAGMENT_CHARS = 8  # shorter printed lines (`}`, `return x`) stand everywhere
COUNTED_SHOWN = 3  # lines shown of those a computed answer counted
MAX_ITEM_LINES = 40  # a sub-call's piece is cut to its lines holding the words, or to this
PAGE_LINE = re.compile(r"^--- page (\d+) ---$", re.MULTILINE)  # documents/pdf.py's page marker
QUOTED = re.compile(r"'((?:[^'\\\n]|\\.){8,})'")  # a str in a printed list
LABEL = re.compile(r"^[\w .-]{0,24}?\d+\s*[:|]\s+")  # a line number printed before a line
TERM = re.compile(r"\d+(?:[.:,]\d+)*|[A-Za-z_][\w]*(?:[./\-][\w]+)*")


@dataclass(frozen=True)
class Observation:
    """Text the run saw: a cell's printed output, or a sub-call's prompt with its answer."""

    source: Source
    depth: int
    turn: int | None
    text: str
    answer: str = ""  # a sub-call's reply
    code: str = ""  # a cell's code
    final: str | None = None  # the answer the cell gave with FINAL


@dataclass(frozen=True)
class Evidence:
    path: str
    line_start: int  # 1-based, inclusive, in the file's text (a document's converted text)
    line_end: int
    text: str  # verbatim the lines line_start..line_end
    why: Why
    source: Source
    depth: int
    turn: int | None
    page: int | None = None  # PDFs: the page the lines are on
    code: str | None = None  # why == "computed": the cell that computed the answer

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "turn"}


@dataclass(eq=False)
class _File:
    path: str
    text: str
    starts: list[int] = field(init=False)  # offset of each line's first character
    pages: list[tuple[int, int]] = field(init=False)  # (offset, page) of each page marker

    def __post_init__(self) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        self.pages = [(m.start(), int(m.group(1))) for m in PAGE_LINE.finditer(self.text)]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)

    def lines(self, first: int, last: int) -> str:
        end = self.starts[last] if last < len(self.starts) else len(self.text)
        return self.text[self.starts[first - 1] : end].rstrip("\r\n")

    def numbers_matching(
        self, wanted: list[patterns.Pattern], deadline: float, most: int
    ) -> list[int]:
        """The first line numbers where every pattern matches (none once past the deadline)."""
        numbers: list[int] = []
        for number, line in enumerate(self.text.split("\n"), 1):
            if time.monotonic() > deadline:
                return []
            if all(patterns.matches_line(p, line) for p in wanted):
                numbers.append(number)
                if len(numbers) == most:
                    break
        return numbers

    def page_of(self, offset: int) -> int | None:
        at = bisect.bisect_right(self.pages, (offset, 1 << 30))
        return self.pages[at - 1][1] if at else None


@dataclass(frozen=True)
class _Span:
    file: _File
    first: int
    last: int
    offset: int

    @property
    def text(self) -> str:
        return self.file.lines(self.first, self.last)


class Locator:
    """Where a printed fragment stands in the input: its whole lines."""

    def __init__(self, context: str | dict[str, str], name: str) -> None:
        items = {name: context} if isinstance(context, str) else context
        self.files = [_File(path, text) for path, text in items.items()]

    def ordered(self, hint: str, files: list[_File] | None = None) -> list[_File]:
        """The files (all, or `files`), those whose path the hint names first."""
        return sorted(self.files if files is None else files, key=lambda f: f.path not in hint)

    def find(self, fragment: str, files: list[_File]) -> _Span | None:
        """Where the fragment first stands in the files, else the fragment without a line number
        printed before it (`line 78: text`)."""
        fragment = fragment.strip().strip("…").removeprefix("...").removesuffix("...").strip()
        found = self._first(fragment, files)
        if found is None and LABEL.match(fragment):
            found = self._first(LABEL.sub("", fragment, count=1), files)
        return found

    @staticmethod
    def _first(fragment: str, files: list[_File]) -> _Span | None:
        if len(fragment) < MIN_FRAGMENT_CHARS:
            return None
        for file in files:
            at = file.text.find(fragment)
            if at >= 0:
                first = file.line_of(at)
                return _Span(file, first, file.line_of(at + len(fragment) - 1), at)
        return None

    def named_in(self, code: str) -> list[_File]:
        return [f for f in self.files if f.path in code]


def answer_terms(answer: str) -> set[str]:
    """The answer's words and values worth finding: not stopwords, not one-letter words."""
    terms = {t.lower().strip(".,:") for t in TERM.findall(answer)}
    return {t for t in terms if t not in STOPWORDS and (len(t) > 2 or t.isdigit())}


def _has_term(line: str, term: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(term)}(?![\w])", line, re.IGNORECASE) is not None


def _fragments(text: str) -> Iterable[str]:
    """A printed text's lines, and the strings inside lines that print Python lists or dicts."""
    for line in text.splitlines():
        yield line
        if "'" in line:
            for quoted in QUOTED.findall(line):
                try:
                    yield ast.literal_eval(f"'{quoted}'")
                except (ValueError, SyntaxError):
                    continue


def _spans(
    observation: Observation, locator: Locator, terms: set[str], files: list[_File] | None = None
) -> list[_Span]:
    """The observation's fragments located in the input (in `files` if given) that hold one of
    the terms (any fragment, when no terms are given)."""
    found: list[_Span] = []
    ordered = locator.ordered(observation.text[:2000], files)  # a printed path's file first
    for fragment in _fragments(observation.text):
        if terms and not any(_has_term(fragment, t) for t in terms):
            continue
        span = locator.find(fragment, ordered)
        if span is not None and span not in found:
            found.append(span)
    return found


def _names(path: str, term: str) -> bool:
    """The term is the file's path or its end: an answer naming the file the lines are in."""
    return ("/" in term or "." in term) and (path == term or path.endswith("/" + term))


def _holds(span: _Span, term: str) -> bool:
    return _names(span.file.path, term) or _has_term(span.text, term)


def _item(span: _Span, observation: Observation, why: Why) -> Evidence:
    return Evidence(
        path=span.file.path,
        line_start=span.first,
        line_end=span.last,
        text=span.text,
        why=why,
        source=observation.source,
        depth=observation.depth,
        turn=observation.turn,
        page=span.file.page_of(span.offset),
        code=observation.code if why == "computed" else None,
    )


def _covering(candidates: list[tuple[_Span, Observation]], terms: set[str]) -> list[Evidence]:
    """Greedily, the spans that hold most of the answer's terms not yet held."""
    chosen: list[Evidence] = []
    left, pool = set(terms), list(candidates)
    while pool and left and len(chosen) < MAX_ITEMS:
        best = max(pool, key=lambda c: sum(_holds(c[0], t) for t in left))
        held = {t for t in left if _holds(best[0], t)}
        if not held:
            break
        chosen.append(_item(*best, "answer_words"))
        left -= held
        pool.remove(best)
    return chosen


def _sub_call_items(
    observations: list[Observation], locator: Locator, answer: str
) -> list[Evidence]:
    """The pieces read by sub-calls whose answers went into the answer: their lines holding the
    sub-answer's words, else the piece's first lines."""
    items: list[Evidence] = []
    for seen in observations:
        reply = seen.answer.strip()
        if seen.source != "sub_call" or len(reply) < 2 or reply.lower() not in answer.lower():
            continue
        spans = _spans(seen, locator, answer_terms(reply)) or _spans(seen, locator, set())[:1]
        items.extend(_item(_cut(span), seen, "sub_call_answer") for span in spans[:2])
    return items


def _cut(span: _Span) -> _Span:
    last = min(span.last, span.first + MAX_ITEM_LINES - 1)
    return _Span(span.file, span.first, last, span.offset)


def _computed_items(
    observations: list[Observation], locator: Locator, answer: str
) -> list[Evidence]:
    """A value no passage states (a count, a sum): the last cell that printed it (or gave it), with
    a few input lines it printed, else a few lines its patterns match."""
    terms = answer_terms(answer) or {answer.strip().lower()}
    for cell in reversed([o for o in observations if o.source == "printed"]):
        if cell.final != answer and not any(_has_term(cell.text, t) for t in terms):
            continue
        spans = _spans(cell, locator, set())[:COUNTED_SHOWN] or _matched(cell.code, locator)
        if spans:
            return [_item(span, cell, "computed") for span in spans]
    return []


def _matched(code: str, locator: Locator) -> list[_Span]:
    """The first lines matching every pattern the code wrote (or its first pattern), in the one
    text or in the files the code names: the lines it most likely counted."""
    written = patterns.written_patterns(code)
    files = locator.files if len(locator.files) == 1 else locator.named_in(code)
    if not written or not files:
        return []
    deadline = time.monotonic() + patterns.TIMEOUT_SECONDS
    for wanted in (written, written[:1]):
        found = [
            _Span(file, number, number, file.starts[number - 1])
            for file in files
            for number in file.numbers_matching(wanted, deadline, COUNTED_SHOWN)
        ]
        if found:
            return found[:COUNTED_SHOWN]
    return []


def gather(
    answer: str | None,
    question: str,
    context: str | dict[str, str],
    observations: list[Observation],
    name: str,
) -> list[Evidence]:
    """The evidence of an answer; `name` is the path shown for a single text (the file, or `-`)."""
    if not answer or not answer.strip():
        return []
    locator = Locator(context, name)
    terms = answer_terms(answer)
    printed = [o for o in observations if o.source != "sub_call"]
    candidates = [(span, seen) for seen in printed for span in _spans(seen, locator, terms)]
    named = [f for f in locator.files if any(_names(f.path, t) for t in terms)]
    if named:  # an answer naming a file: the lines seen in it that hold the question's words
        asked = answer_terms(question) - terms
        candidates += [(s, o) for o in printed for s in _spans(o, locator, asked, named)]
    items = _covering(candidates, terms)
    if len(items) < MAX_ITEMS:
        items += _sub_call_items(observations, locator, answer)[: MAX_ITEMS - len(items)]
    if not items:
        items = _computed_items(observations, locator, answer)
    return _unique(items)


def _unique(items: list[Evidence]) -> list[Evidence]:
    seen: set[tuple[str, int, int]] = set()
    kept = []
    for item in items:
        where = (item.path, item.line_start, item.line_end)
        if where not in seen:
            seen.add(where)
            kept.append(item)
    return kept


@dataclass
class Recorder:
    """A run listener keeping what the run saw; a sub-call belongs to the next cell of its depth."""

    observations: list[Observation] = field(default_factory=list)
    _pending: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "sub_call" and "answer" in event:
            self._pending.append(event)
        elif kind == "cell":
            depth, turn = event.get("depth", 0), event.get("turn")
            self._settle(turn)
            self.observations.append(
                Observation(
                    "printed",
                    depth,
                    turn,
                    event.get("output") or "",
                    code=event.get("code") or "",
                    final=event.get("final"),
                )
            )

    def read_whole(self, context: str | dict[str, str]) -> None:
        """Direct mode: the root model read every file itself."""
        texts = [context] if isinstance(context, str) else list(context.values())
        self.observations += [Observation("input", 0, 1, text) for text in texts]

    def _settle(self, turn: int | None) -> None:
        """Sub-calls made below a cell are emitted before it: they belong to that cell."""
        for call in self._pending:
            self.observations.append(
                Observation("sub_call", call.get("depth", 0), turn, call["prompt"], call["answer"])
            )
        self._pending.clear()
