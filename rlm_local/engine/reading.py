"""The first search's passages read as text by the root model, before any code is written.

Asked to write code about `optimize=-1`, the 1.5B model answered 0 or 1; asked to read the
passages and copy the answer, it copies it right. The model itself decides whether the passages
state the answer (else it replies CODE and the code turns begin); a reply counts only when it is
short and stands in the passages as written, so a guess or a number made up never becomes the
answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rlm_local.engine.checks import is_non_answer
from rlm_local.sandbox.helpers.search import PIECE_LINES


@dataclass(frozen=True)
class Reading:
    """What the reader found: `answer`, the run's answer when accepted; `grounded`, its reply
    when it stood in the passages even if refused (the answer when the code turns find none)."""

    answer: str | None = None
    grounded: str | None = None


NEEDS_CODE = "CODE"
READ_SYSTEM = (
    "You read passages found in a long input. If one passage states the answer to the question "
    "directly, reply with the answer only, copied exactly from the text. If the answer must be "
    "counted, listed, compared or computed over the whole input, or is not stated here, reply "
    f"with the single word {NEEDS_CODE}."
)


REREAD_SYSTEM = (
    "You read what a program printed while it worked on a question about a long input. Reply "
    "with the answer to the question only, copied exactly from the printed output: a name, a "
    "number or a list. If the output does not hold the answer, reply NONE."
)


def reread_messages(question: str, outputs: str) -> list[dict[str, str]]:
    """A fresh reading of the code turns' printed output: the conversation's model, asked
    again, said a sent-back answer again with the values that refute it in view."""
    return [
        {"role": "system", "content": REREAD_SYSTEM},
        {"role": "user", "content": f"Printed output:\n{outputs.strip()}\n\nQuestion: {question}"},
    ]


def read_messages(question: str, passages: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": READ_SYSTEM},
        {"role": "user", "content": f"{passages.rstrip()}\n\nQuestion: {question}"},
    ]


def grounded_answer(reply: str, passages: str) -> str | None:
    """The reader's answer, if it is short and stands in the passages: as written (as a whole
    token: "10" is not copied from "line 107"), each item of a list as written, or a short
    answer whose words and numbers all stand there; None for CODE, prose, a guess or "not
    found"."""
    lines = [line for line in map(_unmarked, reply.strip().splitlines()) if line]
    if not lines:
        return None
    text = " ".join(passages.split())
    # A list given one item a line ("10.10.34.12\n10.10.34.13"): each short, as written there.
    if 1 < len(lines) <= MAX_LIST_LINES and all(
        len(line) <= MAX_ITEM_CHARS and not is_non_answer(line) and _stands_in(line, text)
        for line in lines
    ):
        return ", ".join(lines)
    answer = lines[0]
    if not answer or answer.upper() == NEEDS_CODE or len(answer) > 200 or is_non_answer(answer):
        return None
    items = [item for item in LIST_SEPARATOR.split(answer) if item]
    if all(_stands_in(item, text) for item in items) or _tokens_stand_in(answer, text):
        return answer
    return None


def without_cut_item(reply: str) -> str:
    """A reply cut at the token limit without its last item, which the cut may have shortened
    ("10.251" of "10.251.122.79")."""
    lines = reply.rstrip().split("\n")
    if len(lines) > 1:
        return "\n".join(lines[:-1])
    items = LIST_SEPARATOR.split(reply.strip())
    return ", ".join(items[:-1])


SHARED_SHARE = 50  # a value in one line in this many (or more) is a shared field value
MAX_LIST_LINES = 12
MAX_ITEM_CHARS = 80


def _unmarked(line: str) -> str:
    """A reply line without list bullets, backticks, a comment mark (source()'s "# path line N")
    or a closing full stop."""
    line = re.sub(r"^(?:[-*•]|\d+[.)]|#)\s+", "", line.strip())
    return " ".join(line.rstrip(".").strip("`").rstrip(".").split())


LIST_SEPARATOR = re.compile(r"\s*[,;]\s*(?:and\s+)?|\s+and\s+")
SHORT_ANSWER_TOKENS = 3


def _stands_in(item: str, text: str) -> bool:
    """As written, as a whole token ("10" does not stand in "line 107")."""
    return re.search(rf"(?<!\w){re.escape(item)}(?!\w)", text, re.IGNORECASE) is not None


def _tokens(text: str) -> set[str]:
    """Words and numbers, numbers without leading zeros: "pep-0589.rst" gives pep, 589, rst."""
    found = re.findall(r"[^\W\d_]+|\d+", text.lower())
    return {token.lstrip("0") or "0" if token.isdigit() else token for token in found}


def _tokens_stand_in(answer: str, text: str) -> bool:
    """A short answer put together from what the passages show ("PEP 589" from a passage of
    pep-0589.rst): each of its words and numbers stands in them."""
    tokens = _tokens(answer)
    # A lone number or word must stand as written: "4" is in any log's "19:37:04".
    return 2 <= len(tokens) <= SHORT_ANSWER_TOKENS and tokens <= _tokens(text)


def shared_by_many(answer: str, context: str | dict[str, str], seen_pieces: int) -> int:
    """How often the answer's least frequent item stands in the input, when that is more often
    than the passages the reader saw could hold (pieces x PIECE_LINES lines) and in at least
    one line in SHARED_SHARE, else 0.

    A value standing in hundreds of a log's lines (a date, a host, a block size) is one many
    records share: which of them the question wants is decided over the whole input, and the
    reader only saw a few of its occurrences. A class name in 50 of a codebase's 15,000 lines
    is a name, not a shared field; nor is a list with one rare item ("default, string, any"),
    which is stated where that item is (docs/design.md)."""
    texts = [context] if isinstance(context, str) else list(context.values())
    lines = sum(text.count("\n") + 1 for text in texts)
    limit = max(seen_pieces * PIECE_LINES, lines // SHARED_SHARE)
    items = [item for item in LIST_SEPARATOR.split(answer) if item]
    fewest = min((_occurrences(item, texts, limit) for item in items), default=0)
    return fewest if fewest > limit else 0


def _occurrences(item: str, texts: list[str], limit: int) -> int:
    """Occurrences of the item as a whole token, counted up to limit + 1."""
    pattern = re.compile(rf"(?<!\w){re.escape(item)}(?!\w)", re.IGNORECASE)
    count = 0
    for text in texts:
        for _ in pattern.finditer(text):
            count += 1
            if count > limit:
                return count
    return count
