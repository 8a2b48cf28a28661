"""classify(items, labels): label many short texts with the sub-model in a few constrained calls.

Small root models do not write "label each line with llm_query, then count in code" on their own
(measured on OOLONG-style tasks: no sub-call at all), and when they do, each line costs a call.
This turns the strategy into one sandbox call: distinct items only, several per sub-call, labels
forced by a llama.cpp grammar so every reply parses.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from rlm_local.engine import prompts

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
