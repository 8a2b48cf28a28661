"""classify(items, labels): label many short texts with the sub-model in a few constrained calls.

Small root models do not write "label each line with llm_query, then count in code" on their own
(measured on OOLONG-style tasks: no sub-call at all), and when they do, each line costs a call.
This turns the strategy into one sandbox call: distinct items only, several per sub-call, labels
forced by a llama.cpp grammar so every reply parses.
"""

from __future__ import annotations

import calendar
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from rlm_local.engine import prompts
from rlm_local.sandbox.helpers import record_keys, records

ITEMS_PER_CALL = 20  # batches of 10 skewed the labels (see benchmarks/results/labels.md)
MAX_LABELS = 50
MAX_LABEL_CHARS = 100
MAX_ITEM_CHARS = 500  # an item is a line or a short passage; longer ones are cut for labelling


@dataclass(frozen=True)
class LabelRequest:
    """Validated arguments of one classify() call."""

    items: list[str]  # as given (after str()), one label comes back for each
    labels: list[str]
    instruction: str

    @cached_property
    def distinct(self) -> list[str]:
        """The texts to label: equal items (after cutting and whitespace folding) cost one label."""
        return list(dict.fromkeys(item_text(item) for item in self.items))


def item_text(item: str) -> str:
    return " ".join(item.split())[:MAX_ITEM_CHARS]


def check_request(items: object, labels: object, instruction: object) -> LabelRequest:
    """Reject what a model's code gets wrong with a message that says how to call it."""
    if isinstance(items, str) or not isinstance(items, list | tuple):
        raise TypeError("classify: items must be a list of str, e.g. context.splitlines()")
    if isinstance(labels, str) or not isinstance(labels, list | tuple):
        raise TypeError('classify: labels must be a list of str, e.g. ["positive", "negative"]')
    names = [" ".join(str(label).split()) for label in labels]
    if len(set(names)) != len(names) or not 2 <= len(names) <= MAX_LABELS:
        raise ValueError(f"classify: labels must be 2 to {MAX_LABELS} different strings")
    if any(not name or len(name) > MAX_LABEL_CHARS for name in names):
        raise ValueError(f"classify: each label must have 1 to {MAX_LABEL_CHARS} characters")
    if instruction is not None and not isinstance(instruction, str):
        raise TypeError("classify: instruction must be a str")
    return LabelRequest([str(item) for item in items], names, (instruction or "").strip())


def rejoin_labels(labels: list[str], question: str) -> list[str]:
    """Labels the question lists as one ("one of: description and abstract concept, entity")
    that the code split in two, joined again; other labels as given."""
    asked = " ".join(question.lower().split())
    joined: list[str] = []
    for label in labels:
        if joined:
            candidate = f"{joined[-1]} and {label}"
            listed = re.search(rf"[:,]\s*{re.escape(candidate.lower())}\s*(?:[,.;?]|$)", asked)
            if listed and candidate not in labels:
                joined[-1] = candidate
                continue
        joined.append(label)
    return joined


_LABEL_LIST = re.compile(r"\bone of:?\s+(.+?)(?:\.\s|\.$|\?|$)", re.IGNORECASE)


def question_labels(question: str) -> list[str]:
    """The labels a question lists ("one of: positive, negative, or mixed."), if it lists them."""
    listed = _LABEL_LIST.search(question)
    if listed is None:
        return []
    parts = re.split(r",\s*(?:or\s+)?|\s+or\s+", listed.group(1))
    names = [" ".join(part.strip(" '\"").split()) for part in parts]
    names = [name for name in names if name]
    fits = all(len(name) <= MAX_LABEL_CHARS for name in names)
    return names if fits and 2 <= len(set(names)) == len(names) <= MAX_LABELS else []


def question_named_labels(question: str, labels: list[str]) -> list[str]:
    """The labels a question names in quotes ("labelled 'entity'"), in its order."""
    quoted = re.findall(r"'([^']+)'|\"([^\"]+)\"", question)
    named = [single or double for single, double in quoted if (single or double) in labels]
    return list(dict.fromkeys(named))


def question_label(question: str, labels: list[str]) -> str | None:
    """The label a question names in quotes, if it names one."""
    named = question_named_labels(question, labels)
    return named[0] if named else None


@dataclass(frozen=True)
class PairRequest:
    """A question about pairs of a field's values ("pairs of user ids where both users asked
    a question labelled 'x' and one labelled 'y'"): the field, and the labels each value needs."""

    field: str
    labels: list[str]


def question_pairs(question: str, labels: list[str], keys: list[str]) -> PairRequest | None:
    """The pairs a question asks for, if it asks for pairs of a field's values by labels.

    After the labelling step the 1.5B model wrote `[(row['User'], row['User']) for row in rows
    if 'x' in row['label'] and 'y' in row['label']]` (pairs of a row with itself, always empty):
    grouping rows by a field is beyond it, so the step groups them. Given the grouped values
    and `itertools.combinations(having, 2)` as a hint, it typed out a few pairs or the values
    themselves (3 of 3 tasks), so the step makes the pairs too.
    """
    if not re.search(r"\bpairs?\b", question, re.IGNORECASE):
        return None
    named = question_named_labels(question, labels)
    words = {word.lower() for word in re.findall(r"[A-Za-z]+", question)}
    field = next(
        (key for key in keys[:-1] if key.lower() in words or f"{key.lower()}s" in words), None
    )
    return PairRequest(field, named) if field and len(named) >= 2 else None


def record_field(items: list[str]) -> str | None:
    """The free-text field of record-like items, if any.

    Small models pass whole lines, so dates and ids make every item distinct; labelling only the
    last field (where free text usually is, after dates, ids and levels) is usually what was
    meant and costs a fraction of the calls.
    """
    keys = record_keys(items)
    return f"{keys[-1]}:" if keys else None


def context_record_keys(context: str | dict[str, str]) -> list[str]:
    """The fields of an input made of lines of records, the shape classify-then-count questions
    come in; empty for anything else."""
    if not isinstance(context, str):
        return []
    return record_keys(context[:50_000].splitlines()[:200])


@dataclass(frozen=True)
class RowFilter:
    """The rows a question names, as a Python condition on `row` and in words."""

    condition: str
    description: str


_QUESTION_TOKEN = re.compile(r"\w+(?:[.:-]\w+)*")
_VALUE_WORD = re.compile(r"\w+")


_MONTHS = {
    name: abbr for name, abbr in zip(calendar.month_name[1:], calendar.month_abbr[1:], strict=True)
}


def _spellings(token: str) -> list[str]:
    """A question's word as a field may spell it: "January" is "Jan" in "Jan 05, 2023"."""
    return [token, _MONTHS[token]] if token in _MONTHS else [token]


def question_rows(question: str, context: str, keys: list[str]) -> RowFilter | None:
    """The rows of records a question names by a field's value ("from users 71503, 29873",
    "asked in May"), if it names some but not all.

    Told to count a label among some users' lines, the 1.5B model counted it among all lines
    (3 of 3 such OOLONG-style tasks); the subset's counts, printed next to the totals, are read.
    """
    try:
        rows = records(context)
    except ValueError:
        return None
    total = len(rows)
    tokens = list(dict.fromkeys(_QUESTION_TOKEN.findall(question)))
    conditions: list[str] = []
    described: list[str] = []
    for key in keys[:-1]:  # the last field is the free text, which mentions anything
        values = {str(row.get(key)): row.get(key) for row in rows}
        named = [values[token] for token in tokens if token in values]
        if named:
            conditions.append(f"row[{key!r}] in {tuple(named)!r}")
            described.append(f"{key} {' or '.join(map(str, named))}")
            rows = [row for row in rows if row.get(key) in named]
            continue
        words = {word for value in values for word in _VALUE_WORD.findall(value)}
        spelled = (word for token in tokens for word in _spellings(token))
        named_words = list(dict.fromkeys(word for word in spelled if word in words))
        if named_words:
            pattern = r"\b(?:" + "|".join(map(re.escape, named_words)) + r")\b"
            conditions.append(f"re.search({pattern!r}, str(row[{key!r}]))")
            described.append(f"{key} mentioning {' or '.join(named_words)}")
            rows = [row for row in rows if re.search(pattern, str(row.get(key)))]
    if not conditions or not 0 < len(rows) < total:
        return None
    return RowFilter(" and ".join(conditions), "; ".join(described))


def field_text(item: str, field: str) -> str:
    return item.split(field)[-1]


def batches(texts: list[str], size: int = ITEMS_PER_CALL) -> list[list[str]]:
    return [texts[start : start + size] for start in range(0, len(texts), size)]


def shuffled(texts: list[str], seed: int) -> list[str]:
    """The order of a later labelling pass: seeded, so runs (and the cache) repeat; never the
    order given, which would only repeat its call."""
    order = list(texts)
    random.Random(seed).shuffle(order)
    return order[::-1] if order == texts else order


LabelPass = Callable[[list[list[str]]], list[list[str | None]]]


def vote(texts: list[str], label_groups: LabelPass, voting: bool = True) -> dict[str, str | None]:
    """Label each text in up to three different batches and keep the majority.

    A small labeller's label for a text moves with its neighbours in the batch (on the
    OOLONG-style instances, one ordering 0.53 and another 0.69 accurate): a second pass in
    another order, and a third only for the texts the two disagree on, cancel much of that
    noise (benchmarks/README.md). A three-way split keeps the first pass's label.
    """

    def labelled(order: list[str]) -> dict[str, str | None]:
        groups = batches(order)
        return {
            text: label
            for group, found in zip(groups, label_groups(groups), strict=True)
            for text, label in zip(group, found, strict=True)
        }

    first = labelled(texts)
    if not voting or len(texts) < 2:
        return first
    try:
        second = labelled(shuffled(texts, 1))
        disputed = [text for text in texts if first[text] != second[text]]
        third = labelled(shuffled(disputed, 2)) if disputed else {}
    except RuntimeError:  # the run's time budget ran out: the first pass still counts
        return first
    chosen: dict[str, str | None] = {}
    for text in texts:
        said = [first[text], second[text], third.get(text)]
        known = [label for label in said if label is not None]
        chosen[text] = max(known, key=known.count) if known else None  # ties: earliest pass
    return chosen


def batch_count(n_texts: int) -> int:
    return -(-n_texts // ITEMS_PER_CALL)


def max_vote_calls(n_texts: int, voting: bool = True) -> int:
    """Sub-calls vote() may make: every text twice, then at most every text once more."""
    return batch_count(n_texts) * (3 if voting and n_texts > 1 else 1)


def _gbnf_literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def grammar(n_items: int, labels: list[str]) -> str:
    """GBNF: exactly one "<n>: <label>" line per item, each label one of `labels`."""
    lines = " ".join(f'"{number}: " label "\\n"' for number in range(1, n_items + 1))
    choices = " | ".join(_gbnf_literal(label) for label in labels)
    return f"root ::= {lines}\nlabel ::= {choices}\n"


def max_tokens(n_items: int, labels: list[str]) -> int:
    """Room for the longest label on every line (a token is rarely shorter than 2 characters)."""
    longest = max(len(label) for label in labels)
    return 8 + n_items * (longest // 2 + 6)


_LINE = re.compile(r"^\s*(\d+)\s*[:.)-]\s*(.+?)\s*$")


def parse(reply: str, n_items: int, labels: list[str]) -> list[str | None]:
    """The label of each item in a reply; None where the reply gives no known label.

    A grammar makes the reply exact; servers that ignore grammars may add prose or change case,
    so labels are matched loosely (case, surrounding punctuation, the label inside a sentence).
    """
    by_key = {label.casefold(): label for label in labels}
    found: list[str | None] = [None] * n_items
    for line in reply.splitlines():
        match = _LINE.match(line)
        if not match or not 1 <= int(match.group(1)) <= n_items:
            continue
        said = match.group(2).strip().casefold()
        label = (
            by_key.get(said)
            or by_key.get(said.strip("\"'`*."))
            or next((by_key[k] for k in sorted(by_key, key=len, reverse=True) if k in said), None)
        )
        found[int(match.group(1)) - 1] = label
    return found


def messages(texts: list[str], request: LabelRequest) -> list[dict[str, str]]:
    return prompts.classify_messages(texts, request.labels, request.instruction)
