"""Checks on a FINAL answer, in one place: what makes an answer worth sending back once.

Each check looks at the answer, the cell that gave it and what the model had seen — never at how
the question is worded — and, when it fails, says in one message what is wrong and what to do.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass

from rlm_local.sandbox import CellResult

GREP_CAP = 50  # grep's default max_hits: a len() of its result equal to this is no count
COPIED_WORDS = 40  # a FINAL this long that stands verbatim in the printed output was copied

NON_ANSWER = re.compile(
    r"^\W*(the answer is )?(none|null|unknown|n/?a|\[\]|\{\})\W*$"
    r"|\b(no|zero) (exact )?(hits?|match(es)?|results?|answers?|information)\b"
    r"|\bnot (found|mentioned|available)\b|\bcould not (find|determine)\b"
    r"|\bno\b[\w\s-]{0,40}\bfound\b|\bno data\b",
    re.IGNORECASE,
)
_EMPTY_RESULTS = frozenset(["", "0", "0.0", "None", "[]", "{}", "()", "set()", "''"])


@dataclass(frozen=True)
class FinalCell:
    """What a check may look at: the answer, the cell that gave it, and the run so far."""

    answer: str
    question: str
    code: str
    result: CellResult
    seen_values: bool  # had the model read printed output of its own code before this cell?
    shown: str = ""  # every output the model was shown in this run, this cell's included
    earlier: tuple[str, ...] = ()  # the code of the cells run before this one
    look: str = ""  # the first message: the data look (sample lines, a directory's tree)
    context: str | dict[str, str] = ""  # the input itself

    @property
    def codes(self) -> tuple[str, ...]:
        return (*self.earlier, self.code)


@dataclass(frozen=True)
class SentBack:
    """Why an answer goes back: the check that failed (each fails a run at most once) and the
    message the model reads."""

    check: str
    message: str


def review(cell: FinalCell, passed: frozenset[str] = frozenset()) -> SentBack | None:
    """What sends the answer back, or None to accept it; checks named in `passed` already sent
    an answer of this run back, and the model's second word on them stands."""
    for name, check in CHECKS.items():
        message = None if name in passed else check(cell)
        if message is not None:
            return SentBack(name, f"{message}\nQuestion: {cell.question}")
    return None


def is_non_answer(answer: str) -> bool:
    """An answer that only says nothing was found."""
    return bool(NON_ANSWER.search(answer.strip()[:200])) or not answer.strip()


def _gave_up(cell: FinalCell) -> str | None:
    if not is_non_answer(cell.answer):
        return None
    return (
        f"FINAL({_short(cell.answer)}) does not answer the question yet. Search another way: "
        "search() with other words, find_lines() with a looser pattern, or read sections()."
    )


def is_echo(answer: str, question: str) -> bool:
    """An answer that is (the start of) the question: no answer at all."""
    said = " ".join(answer.lower().split())
    return len(said) >= 30 and said[:80] in " ".join(question.lower().split())


def _echoed(cell: FinalCell) -> str | None:
    if not is_echo(cell.answer, cell.question):
        return None
    return (
        f"FINAL({_short(cell.answer)}...) only repeats the question; it is not an answer. Call "
        "FINAL with the answer itself, computed from the values you printed."
    )


def _named(cell: FinalCell) -> str | None:
    """An answer that is a value both the question and the input name: the question refers to
    it (the date it says to leave aside, the program it excludes, the status code it gives), and
    seldom asks for it. In the devsuite's runs every such answer was wrong. A choice the question
    offers (a label, yes or no) is rarely written in the input; offered, it is said again."""
    said = _words(_EXTENSION.sub("", cell.answer.strip()))
    if (
        not said
        or said in _BOOLEANS
        or len(said.split()) > NAMED_WORDS
        or f" {said} " not in f" {_words(cell.question)} "
        or not _in_input(said, cell.context)
    ):
        return None
    return (
        f"FINAL({_short(cell.answer)}) is a value the question itself names, so it is seldom "
        "what the question asks for: it may be a value the question leaves out. Print the top "
        "candidates your code found (e.g. counts.most_common(5)) and answer with the best one "
        "the question does not name. Only if the question offers this value as a choice, call "
        "FINAL with it again."
    )


NAMED_WORDS = 6  # a longer answer is a sentence, which _restated and _echoed judge
_BOOLEANS = frozenset(["yes", "no", "true", "false"])
_EXTENSION = re.compile(r"\.[A-Za-z]\w{0,3}$")  # "chrome.exe" names what "Chrome" names


def _in_input(words: str, context: str | dict[str, str]) -> bool:
    """Whether the input holds these words in a row, whatever the case and punctuation."""
    pattern = re.compile(
        r"(?<![^\W_])" + r"[\W_]+".join(map(re.escape, words.split())) + r"(?![^\W_])", re.I
    )
    texts = context.values() if isinstance(context, dict) else (context,)
    return any(pattern.search(text) for text in texts)


def _words(text: str) -> str:
    """Lower-case words and numbers, one space between: "Chrome (32- or 64-bit)" and "chrome 32
    or 64 bit" are one phrase."""
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def _restated(cell: FinalCell) -> str | None:
    """A sentence around the answer that restates the question ("The client IP with the most
    sessions established is ..."): a checker, or a user's script, wants the value alone."""
    words = set(re.findall(r"[^\W\d_]{3,}", cell.answer.lower()))
    asked = set(re.findall(r"[^\W\d_]{3,}", cell.question.lower()))
    restated = words & asked
    if (
        len(cell.answer.split()) < RESTATED_WORDS
        or len(restated) < RESTATED_MIN
        or len(restated) * 2 < len(words)
        or _tokens(cell.answer) <= _tokens(cell.question)  # the question itself: _echoed's
    ):
        return None
    return (
        f"FINAL({_short(cell.answer)}) restates the question around the answer. Call FINAL with "
        "the answer alone: the name, number or list the question asks for, as your output shows it."
    )


RESTATED_WORDS = 6  # an answer this many words long, RESTATED_MIN of them the question's
RESTATED_MIN = 3


def _raised(cell: FinalCell) -> str | None:
    if cell.result.error is None:
        return None
    return (
        f"Your cell called FINAL({_short(cell.answer)}) but also raised an error: "
        f"{cell.result.error.splitlines()[-1][:200]}\nThe answer may come from half-run code. "
        "Fix the code, print the result, then call FINAL."
    )


def _capped_count(cell: FinalCell) -> str | None:
    """A count that is the len() of a capped result: search() returns k pieces, grep() at most
    50 snippets; the 1.5B model counted `len(search("error"))` as the errors in a log."""
    if not cell.answer.strip().isdigit():
        return None
    helper = next((h for h in CAPPED if any(counts_capped(c, h) for c in cell.codes)), None)
    if helper is None:
        return None
    return (
        f"len({helper}(...)) is not a count: {CAPPED[helper]}, not every match in the input. "
        "Count matching lines with len(find_lines(pattern)), which has every match; print a few "
        "of them to check the pattern."
    )


CAPPED = {
    "search": "search returns only the k best pieces (5 unless given)",
    "grep": f"grep returns at most {GREP_CAP} snippets and merges matches close together",
}


def _calls(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def counts_capped(code: str, helper: str) -> bool:
    """Whether a cell takes len() of a helper's capped result (directly, or of a name set from
    it)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    from_helper = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(_calls(n, helper) for n in ast.walk(node.value))
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    return any(
        _calls(node, "len")
        and node.args
        and (
            any(_calls(n, helper) for n in ast.walk(node.args[0]))
            or (isinstance(node.args[0], ast.Name) and node.args[0].id in from_helper)
        )
        for node in ast.walk(tree)
    )


def _empty(cell: FinalCell) -> str | None:
    """0 or nothing from code that found nothing: a 1.5B model's first filter or regex often
    fits the lines it imagined, not the ones in the input, and it answers the empty result."""
    if cell.answer.strip() not in _EMPTY_RESULTS:
        return None
    if not cell.seen_values:
        return _unseen_empty(cell)
    if not any(_is_empty_output(line) for line in cell.shown.splitlines()):
        return None  # a 0 read off the input ("lo=0" in a signature) is an answer
    return (
        f"FINAL({_short(cell.answer)}) comes from code that found nothing. A count of 0 or an "
        "empty list usually means the pattern or filter does not fit how the input is written. "
        "Print a few lines that hold what the question is about (find_lines with one plain word "
        "you expect in them, or search()), fit the pattern to those lines, and compute again. If "
        "nothing really matches, call FINAL again."
    )


def _is_empty_output(line: str) -> bool:
    """A printed line that is an empty result: a bare 0, [], or find_lines' empty result."""
    return line.strip() in _PRINTED_EMPTY


_PRINTED_EMPTY = (_EMPTY_RESULTS - {""}) | {"(0 matching lines)"}


def _unseen_empty(cell: FinalCell) -> str | None:
    """0 or nothing, computed before the model saw any value: it never saw the empty list."""
    if not computes(cell.code):
        return None
    printed = f"Output:\n{cell.result.output.rstrip()}\n" if cell.result.output.strip() else ""
    values = f"Its values:\n{cell.result.values}\n" if cell.result.values else ""
    return (
        f"Your code called FINAL({_short(cell.answer)}) before you saw what it computed.\n"
        f"{printed}{values}An empty list or a 0 usually means a pattern matched nothing: print a "
        "few matching lines (find_lines) and fix the pattern. If it is right, call FINAL again."
    )


def _unread(cell: FinalCell) -> str | None:
    """An answer typed in next to a print(): written before the output existed."""
    if not cell.result.output.strip() or not final_is_literal(cell.code):
        return None
    return (
        f"Your code printed this and called FINAL({_short(cell.answer)}) in the same cell, before "
        f"you read it:\n{cell.result.output.rstrip()[:1500]}\n\nRead it. If it answers the "
        "question, call FINAL with the answer taken from it; if not, write code for the next step."
    )


def _unfounded(cell: FinalCell) -> str | None:
    """A typed-in answer with words or numbers that stand nowhere the model looked: made up (a
    sponsor no passage named) or taken from the question ("Chrome (32- or 64-bit)" for "apart
    from Chrome, which program ...")."""
    if not final_is_literal(cell.code) or is_non_answer(cell.answer):
        return None
    if _words(cell.answer) in _BOOLEANS:
        return None  # read off a printed True or False, or a comparison the model made
    looked = f"{cell.look.replace(cell.question, ' ')}\n{cell.shown}"
    missing = sorted(_tokens(cell.answer) - _tokens(looked))
    if not missing:
        return None
    return (
        f"FINAL({_short(cell.answer)}) has {', '.join(map(repr, missing[:5]))}, which stand in "
        "no output you were shown: the answer was not read from the input. Print the lines that "
        "hold the answer (find_lines or search), then call FINAL with it as written there."
    )


def _tokens(text: str) -> set[str]:
    """Words and numbers, lower-case; digit groups joined ("1_000_000", "16,384")."""
    joined = re.sub(r"(?<=\d)[_,](?=\d{3}(?!\d))", "", text)
    return set(re.findall(r"[^\W\d_]+|\d+", joined.lower()))


def _copied(cell: FinalCell) -> str | None:
    """A long passage copied out of the printed output, instead of the answer it holds."""
    said = " ".join(cell.answer.split())
    if len(said.split()) < COPIED_WORDS or said[:200] not in " ".join(cell.shown.split()):
        return None
    return (
        "Your FINAL copies a long passage of the output. Answer the question itself, briefly: "
        "the name, number or list it asks for."
    )


CHECKS: dict[str, Callable[[FinalCell], str | None]] = {
    check.__name__.lstrip("_"): check
    for check in (
        _gave_up,
        _echoed,
        _named,
        _restated,
        _raised,
        _capped_count,
        _empty,
        _unread,
        _unfounded,
        _copied,
    )
}


def _short(answer: str) -> str:
    return repr(answer[:80])


def _final_arguments(tree: ast.AST) -> list[ast.expr]:
    return [
        node.args[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "FINAL"
        and len(node.args) == 1
    ]


def final_is_literal(code: str) -> bool:
    """Whether the cell calls FINAL with a literal ("location", 42): typed in, not computed."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(arg, ast.Constant) for arg in _final_arguments(tree))


def computes(code: str) -> bool:
    """Whether the cell computes its values (calls, comprehensions) rather than only typing them
    in (`lo = 0; FINAL(lo)` after reading `lo=0`): only a computed 0 can be a filter's miss."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return True
    typed = {"FINAL", "FINAL_VAR", "Final", "print"}
    return any(
        isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp)
        or (
            isinstance(node, ast.Call)
            and not (isinstance(node.func, ast.Name) and node.func.id in typed)
        )
        for node in ast.walk(tree)
    )
