"""Every text the models see, in one place.

Written for 1.5B-class models: one short system prompt that never changes (llama.cpp keeps its
evaluated prefix across turns), worked examples of general strategies instead of rules (each
example lives with its helper in rlm_local/sandbox/helpers/), and turn messages that ask one
concrete question ("does this output answer it?") rather than "continue".
"""

from __future__ import annotations

import re
from collections import Counter

from rlm_local.sandbox.helpers import tables, tree
from rlm_local.sandbox.helpers.files import EXAMPLE as FILES_EXAMPLE
from rlm_local.sandbox.helpers.lines import EXAMPLE as LINES_EXAMPLE
from rlm_local.sandbox.helpers.search import EXAMPLE as SEARCH_EXAMPLE
from rlm_local.sandbox.helpers.sections import EXAMPLE as SECTIONS_EXAMPLE
from rlm_local.sandbox.helpers.tables import EXAMPLE as TABLES_EXAMPLE
from rlm_local.sandbox.helpers.tally import EXAMPLE as TALLY_EXAMPLE

ROOT_INTRO = """\
You answer a question about a long input you cannot see. It is stored in the Python variable \
`context`. You write Python code; you see only what the code prints.

Reply with one ```python block, nothing else. Available in the code:
- context: the input (a str), or a dict of file path -> text
- search(query, k=5) -> the k pieces of context that best match the query's words
- find_lines(pattern) -> every line matching a regex (case-sensitive), each a str with .number; \
len() is the count
- tally(pattern, lines=context) -> how many lines give each value of the regex's group 1, most \
common first (a Counter); lines may be find_lines' result
- sections() -> the parts of a document (by headings), each a str with .title
- tables() -> the tables of a document (| cell | rows), each a list of dicts (column -> cell)
- files(pattern) -> the file paths of a dict context matching a glob, e.g. files("*.py")
- source(name) -> the code of the function or class called name, with its file and line: \
use it for any function or class the question names
- llm_query(prompt) -> str: a small model answers a prompt (put a piece of text in it)
- ask_each(question, pieces) -> list: llm_query's answer to the question for each piece
- FINAL(answer): give the final answer and stop

Look at the lines shown below before writing a pattern: fit it to how the lines are written. \
Print what you compute and read it before you answer.
"""

CODE_EXAMPLE = """\
Example, to read the code of a function or class:
```python
print(source("parse_config"))
```"""

FINAL_EXAMPLE = """\
Example, when the printed output shows the answer:
```python
FINAL("42")
```"""

ROOT_SYSTEM = "\n".join(
    [
        ROOT_INTRO,
        SEARCH_EXAMPLE,
        LINES_EXAMPLE,
        TALLY_EXAMPLE,
        CODE_EXAMPLE,
        FILES_EXAMPLE,
        SECTIONS_EXAMPLE,
        TABLES_EXAMPLE,
        FINAL_EXAMPLE,
    ]
)


def root_system() -> str:
    """The root system prompt; fixed for every run, so llama.cpp reuses its evaluated prefix."""
    return ROOT_SYSTEM


SUB_SYSTEM = "Answer briefly and precisely, using only the text you are given."

CLASSIFY_SYSTEM = (
    "You label items. Give each item the one label that fits the item as a whole (what it is "
    "about overall, not one word in it)."
)

DIRECT_SYSTEM = "Answer the question using only the text you are given. Be brief and precise."

CODE_PREFIX = "```python\n"
CODE_STOP = "```"
# With RunOptions.root_grammar, a root turn (after CODE_PREFIX) is code lines whose last one
# prints or answers: a cell that shows nothing costs a turn and tells the model nothing.
ROOT_GRAMMAR = r"""root ::= line* last "```"
line ::= [^`\n]* "\n"
last ::= [ \t]* ("print(" | "FINAL(" | "FINAL_VAR(") [^`\n]* "\n"
"""


FINAL_PREFIX = "FINAL("


def calls_final(code: str) -> bool:
    """Whether a cell gives an answer (FINAL or FINAL_VAR)."""
    return re.search(r"\bFINAL(?:_VAR)?\(", code) is not None


def extract_code(reply: str) -> str:
    """The code of a root reply: raw code when the fence was forced, else the first fenced block."""
    if "```" not in reply:
        return reply.strip("\n")
    after = reply.split("```", 1)[1]
    after = after.split("\n", 1)[1] if "\n" in after else ""
    return after.split("```", 1)[0].strip("\n")


_NEXT = "If yes, reply with code calling FINAL(answer). If not, write code for the next step."


def output_turn(question: str, output: str) -> str:
    shown = output if output.strip() else "(nothing was printed; use print() to see values)"
    return f"Output:\n{shown}\n\nDoes this output answer the question: {question}\n{_NEXT}"


def error_turn(error: str, output: str) -> str:
    printed = f"Output before the error:\n{output}\n" if output.strip() else ""
    return f"{printed}Error: {error}\n{_hint(error)}Fix the code and try again."


def cut_off_turn(error: str, output: str, limit: int) -> str:
    """A cell cut off at the reply limit: a small model typing data in (a made-up dict of 40
    entries) ran past it turn after turn, each a different SyntaxError."""
    printed = f"Output before the error:\n{output}\n" if output.strip() else ""
    return (
        f"{printed}Error: {error}\nYour cell was cut off: it ran past the {limit}-token limit of "
        "a reply. Write a short cell (a few lines) that computes from `context` with the helpers; "
        "never type data or long lists in."
    )


_DICT_ERRORS = (
    "unhashable type: 'slice'",
    "'dict' object has no attribute 'split",
    "'dict_values'",
)


def _hint(error: str) -> str:
    """What a common error of a small model means here: each cost turns of guessing when the
    message alone came back (devsuite traces)."""
    if any(part in error for part in _DICT_ERRORS):
        return (
            "`context` is a dict of file path -> text: take one file's text with "
            "context[path] (paths from files()), or search all files with search() or "
            "find_lines().\n"
        )
    if "'NoneType' object has no attribute 'group" in error:
        return (
            "re.search or re.match found no match in some line and gave None: test the match "
            "before .group(), or count with tally(pattern, lines), which skips such lines.\n"
        )
    if "list indices must be integers or slices, not str" in error:
        return (
            "A list is indexed by position, not by name. For one field of each item of a list "
            'of dicts, write [row["Name"] for row in rows]; a tables() table also takes '
            'table["Name"].\n'
        )
    if error.startswith("IndexError") and "[0]" in error:
        return (
            "The list you took [0] of was empty: the pattern or filter before it matched "
            "nothing. Fit it to how the lines are written.\n"
        )
    return ""


def failed_before(error: str) -> str:
    """What a failed cell raised, told without its code: asked again with the cell in view, the
    1.5B model copied it token for token, at any temperature."""
    return (
        f"A cell you wrote before raised: {error}\n{_hint(error)}Write different code that "
        "does not raise it."
    )


def repeat_turn(question: str) -> str:
    return (
        "You already ran exactly this code; its output is above. Write different code, "
        f"or call FINAL(answer) if the output answers: {question}"
    )


def repeat_error_turn(error: str) -> str:
    return (
        f"This exact code already failed with: {error}\nDo not run it again. First look at the "
        "data, e.g. print(context[:500]) or print(context.splitlines()[:5]), then write code that "
        "fits what you see."
    )


def describe_context(context: str | dict[str, str], sample_lines: int = 4) -> str:
    """A look at the data before any code: its shape and real lines from its head, middle and
    tail (a directory: its tree), so the model's first pattern fits the format it saw instead of
    one it guessed."""
    if isinstance(context, str):
        chars = len(context)
        rows = context.split("\n")
        shape = f"{len(rows):,} lines" if len(rows) > 1 else "one line"
        return (
            f"`context` is a str of {chars:,} characters (about {chars // 4:,} tokens) in {shape}."
            "\nSome of its lines, with their numbers:\n"
            + _samples(rows, sample_lines)
            + _frequent_fields(context)
            + _tables(context)
        )
    # No file's text: the model answered from the one file shown (docs/design.md).
    total = sum(len(v) for v in context.values())
    return (
        f"`context` is a dict of {len(context):,} files (path -> text), {total:,} characters in "
        f"all (about {total // 4:,} tokens). The files by folder:\n{tree(list(context))}"
        + _shared_fields(context)
        + _tables(context)
    )


_FIELD_LINE = re.compile(r"^([A-Z][\w-]{0,30}):[ \t]", re.MULTILINE)
MAX_FIELDS = 16  # keys the data look names
MIN_FIELD_LINES = 3  # a text's key needs this many lines


def _frequent_fields(text: str) -> str:
    """The `Key: value` line starts of a text, most frequent first (speakers of a transcript,
    headers of records), when three or more lines share one."""
    counts = Counter(_FIELD_LINE.findall(text)).most_common(MAX_FIELDS)
    common = [(key, n) for key, n in counts if n >= MIN_FIELD_LINES]
    if not common:
        return ""
    listed = ", ".join(f"{key}: {n}" for key, n in common)
    return f"\nLines that start `Key: ` most often (key: lines): {listed}"


def _shared_fields(files: dict[str, str]) -> str:
    """The `Key: value` lines many files have (headers of PEPs, e-mails, front matter), with no
    file's values: where each file states its author or date, without anchoring the model on
    one file."""
    having: dict[str, int] = {}
    for text in files.values():
        for key in dict.fromkeys(_FIELD_LINE.findall(text)):
            having[key] = having.get(key, 0) + 1
    enough = max(2, len(files) // 3)
    common = sorted((-n, key) for key, n in having.items() if n >= enough)[:MAX_FIELDS]
    if not common:
        return ""
    listed = ", ".join(f"{key}: {-n}" for n, key in common)
    return f"\nLines that start `Key: ` in many of the {len(files)} files (key: files): {listed}"


MAX_TABLES = 3  # tables the data look names


def _tables(context: str | dict[str, str]) -> str:
    """Where the input's pipe tables are, with their columns: a table's rows then look like any
    other lines, and the 1.5B model counted a column with search() or a regex it imagined."""
    found = tables(context)
    if not found:
        return ""
    listed = "; ".join(
        f"{table.where}: {len(table)} rows, columns {', '.join(table.columns)}"
        for table in found[:MAX_TABLES]
    )
    return f"\nTables (tables() gives {len(found)}): {listed}"


MAX_SAMPLE_CHARS = 160


def _numbered(rows: list[str], start: int, count: int) -> str:
    shown = []
    for number in range(start, min(start + count, len(rows))):
        row = rows[number].rstrip("\r")
        if len(row) > MAX_SAMPLE_CHARS:
            row = row[:MAX_SAMPLE_CHARS] + " ..."
        shown.append(f"{number + 1}: {row}")
    return "\n".join(shown)


def _samples(rows: list[str], count: int) -> str:
    """Lines from the head, the middle and the tail (blank lines skipped where possible)."""
    if len(rows) <= 3 * count:
        return _numbered(rows, 0, len(rows))
    middle = len(rows) // 2
    tail = len(rows) - count
    while tail > 0 and not rows[-1].strip() and tail > middle + count:
        rows = rows[:-1]
        tail -= 1
    parts = [
        _numbered(rows, 0, count),
        _numbered(rows, middle, count),
        _numbered(rows, tail, count),
    ]
    return "\n...\n".join(parts)


FIRST_SEARCH_HITS = 3


def first_search_cell(question: str) -> str:
    return f"print(search({question!r}, k={FIRST_SEARCH_HITS}))"


def first_turn(question: str, description: str, searched: str = "", read: str | None = None) -> str:
    if not searched:
        return f"{description}\n\nQuestion: {question}\n\nWrite code to find the answer."
    # The question again after the output, so it is answered with the passages in view.
    reading = (
        f"\nRead as text, these pieces give the answer {read!r}. If the question asks for one "
        f"fact that a piece states, reply with code calling FINAL({read!r}).\n"
        if read is not None
        else ""
    )
    return (
        f"{description}\n\nQuestion: {question}\n\nThe pieces of context that best match the "
        f"question's words (a search, not the whole input):\n{searched.rstrip()}\n{reading}\n"
        f"Does this output answer the question: {question}\nIf it shows the answer, reply with "
        "code calling FINAL(answer). If not (counts, lists and totals need code over all of "
        "context), write code for the next step."
    )


def last_turn(question: str, reason: str) -> str:
    return f"{reason} Reply with code calling FINAL(answer) with your best answer to: {question}"


MAX_PIECE_CHARS = 6000  # the sub-model's window holds this with room for the question


def piece_prompt(piece: str, question: str) -> str:
    """One piece and a question about it, for ask_each."""
    return f"{piece}\n\nQuestion about the text above: {question}"


def sub_messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SUB_SYSTEM}, {"role": "user", "content": prompt}]


def classify_messages(
    texts: list[str], labels: list[str], instruction: str
) -> list[dict[str, str]]:
    """Labels first and items last, so consecutive batches share the evaluated prefix."""
    label_lines = "\n".join(f"- {label}" for label in labels)
    task = f"{instruction}\n\n" if instruction else ""
    item_lines = "\n".join(f"{number}. {text}" for number, text in enumerate(texts, 1))
    return [
        {"role": "system", "content": CLASSIFY_SYSTEM},
        {
            "role": "user",
            "content": f"Labels:\n{label_lines}\n\n{task}Items:\n{item_lines}\n\n"
            "Reply with one line per item: its number, a colon, its label.",
        },
    ]


def direct_messages(question: str, context: str | dict[str, str]) -> list[dict[str, str]]:
    if isinstance(context, dict):
        text = "\n\n".join(f"### {path}\n{body}" for path, body in sorted(context.items()))
    else:
        text = context
    return [
        {"role": "system", "content": DIRECT_SYSTEM},
        {"role": "user", "content": f"{text}\n\nQuestion: {question}"},
    ]


def sub_overflow_message(prompt_tokens: int, limit: int) -> str:
    return (
        f"[llm_query error: the prompt has about {prompt_tokens} tokens, more than the sub-model's "
        f"limit of {limit}. Split the text into smaller pieces, e.g. chunks(size=8000).]"
    )
