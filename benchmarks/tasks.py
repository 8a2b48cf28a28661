"""Benchmark tasks: seeded, deterministic, scored exactly (after ../shared/design/benchmarks.md).

Families: S-NIAH (find one needle), OOLONG-style aggregation over lines whose labels are hidden,
OOLONG-Pairs-style (pairs of users meeting a condition), and codebase QA over the Python standard
library installed on the machine (answers derived with `ast`).
"""

from __future__ import annotations

import ast
import random
import re
import sysconfig
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmarks.haystack import niah_text

CHARS_PER_TOKEN = 4  # sizes are given in tokens; generators work in characters

ScoreKind = Literal["contains", "expr", "label", "yesno", "number", "pairs", "path"]


@dataclass(frozen=True)
class Task:
    task_id: str
    family: str
    size_tokens: int
    question: str
    answer: str
    kind: ScoreKind
    context: str | dict[str, str]


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


# A pair is two ids alone in one pair of brackets, `(11111, 22222)`, or joined, `11111-22222`:
# a list of single ids, `[11111, 22222, 33333]`, names no pairs.
_ID = r"['\"]?(\d{5})['\"]?"
_PAIR = re.compile(r"[(\[]\s*" + _ID + r"\s*,\s*" + _ID + r"\s*,?\s*[)\]]")
_JOINED = re.compile(r"(?<!\d)(\d{5})\s*(?:-|–|&|\band\b)\s*(\d{5})(?!\d)")


def score(task: Task, answer: str | None) -> float:
    """1.0 for right; numbers 0.75^|error|; pairs F1 (as the published tasks are scored)."""
    if not answer:
        return 0.0
    if task.kind == "contains":
        return float(task.answer in answer)
    if task.kind == "expr":  # the expression as a whole token, not as part of another
        pattern = r"(?<![\w.])" + re.escape(task.answer) + r"(?!\w|\.\w)"
        return float(re.search(pattern, answer) is not None)
    if task.kind == "path":
        return float(task.answer in answer or Path(task.answer).name in answer.split("/")[-1])
    if task.kind == "number":
        numbers = re.findall(r"-?\d+", answer.replace(",", ""))
        if not numbers:
            return 0.0
        return 0.75 ** abs(int(numbers[0]) - int(task.answer))
    if task.kind == "yesno":
        words = _words(answer).split()
        return float(bool(words) and words[0] == task.answer)
    if task.kind == "label":
        said = _words(answer)
        if said == _words(task.answer):
            return 1.0
        named = [label for label in LABELS if _words(label) in said]
        return float(named == [task.answer])
    if task.kind == "pairs":
        expected = {tuple(sorted(p.split("-"))) for p in task.answer.split()} - {()}
        got = {tuple(sorted(p)) for p in _PAIR.findall(answer)} | {
            tuple(sorted(p)) for p in _JOINED.findall(answer)
        }
        if not expected and not got:
            return 1.0
        if not expected or not got:
            return 0.0
        hits = len(expected & got)
        precision, recall = hits / len(got), hits / len(expected)
        return 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)
    raise ValueError(task.kind)


# -- S-NIAH -------------------------------------------------------------------------------------


def niah_task(size_tokens: int, seed: int) -> Task:
    text, needle = niah_text(size_tokens * CHARS_PER_TOKEN, seed=seed)
    return Task(
        task_id=f"niah-{size_tokens}-{seed}",
        family="niah",
        size_tokens=size_tokens,
        question=needle.question,
        answer=needle.value,
        kind="contains",
        context=text,
    )


# -- OOLONG-style -------------------------------------------------------------------------------

LABELS = (
    "description and abstract concept",
    "entity",
    "human being",
    "numeric value",
    "location",
    "abbreviation",
)
_FILL = {
    "thing": ["the telescope", "paper money", "the bicycle", "a vaccine", "the radio", "chess"],
    "place": ["Lisbon", "the Sahara", "Mount Fuji", "Lake Baikal", "Patagonia", "Oslo"],
    "work": ["Hamlet", "the Odyssey", "Don Quixote", "War and Peace", "the Iliad"],
    "concept": ["inflation", "irony", "entropy", "democracy", "photosynthesis", "nostalgia"],
    "abbr": ["NASA", "UNESCO", "GDP", "DNA", "HTML", "NATO", "LED", "RAM"],
    "animal": ["a dingo", "an axolotl", "a pangolin", "a narwhal", "a quokka"],
}
_TEMPLATES = {
    "description and abstract concept": [
        "What does {concept} mean?",
        "Why do people feel {concept}?",
        "How would you explain {concept} to a child?",
        "What is the difference between {concept} and habit?",
    ],
    "entity": [
        "What kind of animal is {animal}?",
        "What instrument is used to study {place}?",
        "Which language is spoken in {place}?",
        "What was {thing} originally made from?",
    ],
    "human being": [
        "Who wrote {work}?",
        "Who invented {thing}?",
        "Which explorer first reached {place}?",
        "Who translated {work} into English?",
    ],
    "numeric value": [
        "How many people live in {place}?",
        "What year was {thing} invented?",
        "How tall is {place}?",
        "How much did {thing} cost in 1900?",
    ],
    "location": [
        "Where is {place}?",
        "In which country was {thing} first used?",
        "Where was {work} written?",
        "What city is closest to {place}?",
    ],
    "abbreviation": [
        "What does {abbr} stand for?",
        "What is the full form of {abbr}?",
        "What is {abbr} short for?",
        "What does the abbreviation {abbr} mean?",
    ],
}
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTH_NAMES = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip


@dataclass(frozen=True)
class Record:
    month: int
    user: str
    label: str
    line: str


def oolong_records(size_tokens: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    weights = [0.3, 0.22, 0.18, 0.14, 0.1, 0.06]
    rng.shuffle(weights)
    n_users = max(10, size_tokens // 400)
    users = [str(rng.randint(10000, 99999)) for _ in range(n_users)]
    heavy = users[: max(2, n_users // 5)]
    records: list[Record] = []
    total = 0
    while total < size_tokens * CHARS_PER_TOKEN:
        label = rng.choices(LABELS, weights)[0]
        template = rng.choice(_TEMPLATES[label])
        instance = template.format(**{k: rng.choice(v) for k, v in _FILL.items()})
        user = rng.choice(heavy) if rng.random() < 0.8 else rng.choice(users)
        month = rng.randrange(12)
        date = f"{_MONTHS[month]} {rng.randint(1, 28):02d}, {rng.choice([2022, 2023, 2024])}"
        line = f"Date: {date} || User: {user} || Instance: {instance}"
        records.append(Record(month, user, label, line))
        total += len(line) + 1
    return records


def oolong_task(
    size_tokens: int, seed: int, label_of: Callable[[Record], str | None] = lambda r: r.label
) -> Task:
    """`label_of` replaces the true labels, e.g. with a model's, to see what they would score."""
    records = oolong_records(size_tokens, seed)
    text = "\n".join(r.line for r in records)
    counts = Counter(label_of(r) for r in records)
    rng = random.Random(seed + 1)
    kind_of_question = seed % 5
    labels = ", ".join(LABELS)
    preface = (
        "Each line of the text is a question asked by a user. Each question has one hidden label, "
        f"one of: {labels}. "
    )
    if kind_of_question == 0:
        question = preface + "Which label is the most common? Answer with the label only."
        answer, kind = max(LABELS, key=lambda label: counts[label]), "label"
    elif kind_of_question == 1:
        question = preface + "Which label is the least common? Answer with the label only."
        answer, kind = min(LABELS, key=lambda label: counts[label]), "label"
    elif kind_of_question == 2:
        a, b = rng.sample(LABELS, 2)
        question = (
            preface + f"Are questions labelled '{a}' more common than '{b}'? Answer yes or no."
        )
        answer, kind = ("yes" if counts[a] > counts[b] else "no"), "yesno"
    elif kind_of_question == 3:
        label = rng.choice(LABELS)
        users = sorted({r.user for r in records})
        subset = rng.sample(users, min(3, len(users)))
        n = sum(1 for r in records if r.user in subset and label_of(r) == label)
        question = (
            preface + f"How many questions from users {', '.join(subset)} are labelled '{label}'? "
            "Answer with a number."
        )
        answer, kind = str(n), "number"
    else:
        label = rng.choice(LABELS)
        month = rng.randrange(12)
        n = sum(1 for r in records if r.month == month and label_of(r) == label)
        question = (
            preface + f"How many questions labelled '{label}' were asked in {_MONTH_NAMES[month]} "
            "(any year)? Answer with a number."
        )
        answer, kind = str(n), "number"
    return Task(f"oolong-{size_tokens}-{seed}", "oolong", size_tokens, question, answer, kind, text)


def oolong_pairs_task(size_tokens: int, seed: int) -> Task:
    records = oolong_records(size_tokens, seed)
    text = "\n".join(r.line for r in records)
    rng = random.Random(seed + 2)
    first, second = rng.sample(LABELS, 2)
    by_user: dict[str, set[str]] = {}
    for r in records:
        by_user.setdefault(r.user, set()).add(r.label)
    qualifying = sorted(u for u, labels in by_user.items() if {first, second} <= labels)
    pairs = [f"{a}-{b}" for i, a in enumerate(qualifying) for b in qualifying[i + 1 :]]
    question = (
        "Each line of the text is a question asked by a user. Each question has one hidden label, "
        f"one of: {', '.join(LABELS)}. List every pair of user ids (as 'id1-id2') where both users "
        f"asked at least one question labelled '{first}' and at least one labelled '{second}'."
    )
    return Task(
        f"pairs-{size_tokens}-{seed}",
        "pairs",
        size_tokens,
        question,
        " ".join(pairs),
        "pairs",
        text,
    )


# -- codebase QA --------------------------------------------------------------------------------


def _stdlib_files(size_tokens: int, seed: int) -> dict[str, str]:
    """Whole stdlib modules (top-level .py files), in a seeded order, up to the size."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if not p.name.startswith("_"))
    random.Random(seed).shuffle(files)
    chosen: dict[str, str] = {}
    total = 0
    budget = size_tokens * CHARS_PER_TOKEN
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if total + len(text) > budget:
            continue
        chosen[path.name] = text
        total += len(text)
        if total >= budget * 0.9:
            break
    return chosen


def codeqa_task(size_tokens: int, seed: int) -> Task:
    files = _stdlib_files(size_tokens, seed)
    rng = random.Random(seed + 3)
    defs: dict[str, list[str]] = {}
    params: list[tuple[str, str, str, str]] = []  # file, function, parameter, default
    for name, source in files.items():
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                defs.setdefault(node.name, []).append(name)
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                args = node.args.args[len(node.args.args) - len(node.args.defaults) :]
                for arg, default in zip(args, node.args.defaults, strict=True):
                    if ast.unparse(default) in ("None", "True", "False"):
                        continue  # too easy to guess
                    params.append((name, node.name, arg.arg, ast.unparse(default)))
    unique = sorted(n for n, where in defs.items() if len(where) == 1 and len(n) > 4)
    if seed % 2 == 0 or not params:
        target = rng.choice(unique)
        question = (
            f"Which file defines the top-level function or class named `{target}`? "
            "Answer with the file name."
        )
        return Task(
            f"codeqa-{size_tokens}-{seed}", "codeqa", size_tokens, question, defs[target][0],
            "path", files,
        )  # fmt: skip
    file, function, parameter, default = rng.choice(params)
    question = (
        f"In the file {file}, what is the default value of the parameter `{parameter}` of the "
        f"top-level function `{function}`? Answer with the Python expression."
    )
    return Task(
        f"codeqa-{size_tokens}-{seed}", "codeqa", size_tokens, question, default, "expr", files
    )


SUITES = {
    "niah": niah_task,
    "oolong": oolong_task,
    "pairs": oolong_pairs_task,
    "codeqa": codeqa_task,
}


def make_tasks(suite: str, size_tokens: int, n: int, first_seed: int = 1) -> list[Task]:
    return [SUITES[suite](size_tokens, seed) for seed in range(first_seed, first_seed + n)]
