"""Every text the models see, in one place.

Written for 1.5B-class models: one short system prompt that never changes (llama.cpp keeps its
evaluated prefix across turns), worked examples instead of rules, and turn messages that ask one
concrete question ("does this output answer it?") rather than "continue".
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # labels imports this module
    from rlm_local.engine.labels import PairRequest, RowFilter

ROOT_SYSTEM = """\
You answer a question about a long text you cannot see. The text is stored in the Python \
variable `context`. You write Python code; you see only what the code prints.

Reply with one ```python block, nothing else. Available in the code:
- context: the text (a str), or a dict of file path -> text
- grep(pattern) -> list of snippets around each regex match in context (case-insensitive; \
for a dict, each snippet starts with its path)
- chunks(size=8000) -> list of pieces of context
- llm_query(prompt) -> str: a small model answers a prompt (put a piece of text in it)
- classify(items, labels) -> list: a small model gives each item (a str) one of the labels
- FINAL(answer): give the final answer and stop

Search for a short, rare word or name from the question, not a whole sentence. If a search \
finds nothing, try other words.

Example, to find a fact:
```python
hits = grep("Oakridge")
print(len(hits))
print(hits[:5])
```
Example, to find a definition in code:
```python
print(grep(r"def parse_config\\b")[:5])
```
Example, when every part must be read (summaries, classifying, counting by meaning):
```python
notes = []
for piece in chunks():
    notes.append(llm_query(piece + "\\n\\nList every sentence about the budget."))
print(notes)
```
Example, when the printed output shows the answer:
```python
FINAL("42")
```"""

# Shown only for inputs of records (lines with the same "Key: value" fields): measured, this
# example makes the root model label lines with classify, and on prose or code it made the model
# write regex code where a grep works (S-NIAH 8K 1.00 -> 0.40, codebase QA 0.60 -> 0.30).
RECORDS_EXAMPLE = """\
Example, to count lines by a label the text does not state (kind, topic, sentiment):
```python
labels = classify(context.splitlines(), ["bug report", "question", "praise"])
print(Counter(labels))
```
"""
_LAST_EXAMPLE = "Example, when the printed output shows the answer:"


def root_system(records: bool) -> str:
    """The root system prompt; fixed for a run, so llama.cpp reuses its evaluated prefix."""
    if not records:
        return ROOT_SYSTEM
    return ROOT_SYSTEM.replace(_LAST_EXAMPLE, RECORDS_EXAMPLE + _LAST_EXAMPLE)


SUB_SYSTEM = "Answer briefly and precisely, using only the text you are given."

CLASSIFY_SYSTEM = (
    "You label items. Give each item the one label that fits the item as a whole (what it is "
    "about overall, not one word in it)."
)

DIRECT_SYSTEM = "Answer the question using only the text you are given. Be brief and precise."

# The first step's output read as text: asked to write code about it, the 1.5B model answered
# `optimize = -1` with 0 and `mode = 'exec'` with exec; asked to read it, it copied both right
# (codebase QA, 12 of 12 first-step outputs; S-NIAH 5 of 5).
READ_SYSTEM = (
    "Answer the question using only the text you are given. Reply with the answer only, copied "
    "exactly from the text."
)

CODE_PREFIX = "```python\n"
CODE_STOP = "```"
# With RunOptions.root_grammar, a root turn (after CODE_PREFIX) is code lines whose last one
# prints or answers: a cell that shows nothing costs a turn and tells the model nothing.
ROOT_GRAMMAR = r"""root ::= line* last "```"
line ::= [^`\n]* "\n"
last ::= [ \t]* ("print(" | "FINAL(" | "FINAL_VAR(") [^`\n]* "\n"
"""


def extract_code(reply: str) -> str:
    """The code of a root reply: raw code when the fence was forced, else the first fenced block."""
    if "```" not in reply:
        return reply.strip("\n")
    after = reply.split("```", 1)[1]
    after = after.split("\n", 1)[1] if "\n" in after else ""
    return after.split("```", 1)[0].strip("\n")


def describe_context(
    context: str | dict[str, str], record_keys: list[str] | None = None, preview_chars: int = 300
) -> str:
    """What the root model learns about `context`: its shape and a peek, never its content.

    The peek keeps line breaks: shown as one run-on string, lines of records looked like one long
    line, and the 1.5B model regexed across it instead of splitting lines.
    """
    if isinstance(context, str):
        chars = len(context)
        lines = context.count("\n") + 1
        shape = f"in {lines:,} lines" if lines > 1 else "in one line"
        fields = (
            f" Each line is a record with the fields {', '.join(record_keys)}."
            if record_keys
            else ""
        )
        return (
            f"`context` is a str of {chars:,} characters (about {chars // 4:,} tokens) {shape}."
            f"{fields} It starts:\n{_peek(context, preview_chars)}"
        )
    total = sum(len(v) for v in context.values())
    names = sorted(context)
    shown = ", ".join(f"{n} ({len(context[n]):,} chars)" for n in names[:12])
    more = f", and {len(names) - 12} more" if len(names) > 12 else ""
    return (
        f"`context` is a dict of {len(names):,} files (path -> text), {total:,} characters in all "
        f"(about {total // 4:,} tokens). Files: {shown}{more}."
    )


def _peek(text: str, chars: int) -> str:
    """The first non-blank lines, whole, within `chars`; a longer first line is cut with "..."."""
    shown: list[str] = []
    used = 0
    for line in text[: chars * 4].splitlines():
        if not line.strip():
            continue
        if used + len(line) > chars:
            if not shown:
                shown.append(line[:chars].rstrip() + "...")
            break
        shown.append(line)
        used += len(line) + 1
    return "\n".join(shown) + ("\n..." if len(text) > used else "")


_NEXT = "If yes, reply with code calling FINAL(answer). If not, write code for the next step."


def first_turn(question: str, description: str, searched: str = "") -> str:
    if searched:  # the question again after the output: asked before it only, the 1.5B model
        # answered `indent=1` with 4 (measured on 7 codebase-QA first turns: 4 right -> 5)
        return (
            f"{description}\n\nQuestion: {question}\n\n{searched}\n\n"
            f"Does this output answer the question: {question}\n{_NEXT}"
        )
    return f"{description}\n\nQuestion: {question}\n\nWrite code to find the answer."


# Questions whose answer is not one piece of text: counting, listing, summing up.
_NOT_A_LOOKUP = re.compile(
    r"\b(how many|how often|count|number of|list|every|all|each|summari[sz]e|total|average)\b",
    re.IGNORECASE,
)


def is_lookup(question: str) -> bool:
    """Whether the answer is one fact to find, which a search's output can show whole."""
    return not _NOT_A_LOOKUP.search(question)


def found_nothing(output: str) -> bool:
    """A search that found nothing: an empty list, or a helper's "(no …)" note (grep's fallback
    to another word, source's "no def or class named …")."""
    shown = output.strip()
    return shown in ("", "[]") or shown.lstrip("['\"").startswith("(no ")


def read_messages(question: str, output: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": READ_SYSTEM},
        {"role": "user", "content": f"{output.rstrip()}\n\nQuestion: {question}"},
    ]


def grounded_answer(reply: str, output: str) -> str | None:
    """The reader's answer, if it is short and stands in the output as written: a copied fact.

    Anything else (prose, a guess, "not found") leaves the question to the code loop.
    """
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines:
        return None
    # Copied with the comment mark of source()'s heading line ("# quopri.py line 64"): dropped.
    answer = re.sub(r"^#\s+", "", " ".join(lines[0].strip("`").split()))
    if not answer or len(answer) > 200 or is_non_answer(answer):
        return None
    # As a whole token: "10" is not copied from "line 107".
    copied = re.compile(rf"(?<!\w){re.escape(answer)}(?!\w)", re.IGNORECASE)
    return answer if copied.search(" ".join(output.split())) else None


def search_done(code: str, output: str) -> str:
    return f"A first search, {code}, printed:\n{output.rstrip()}"


def labelling_done(
    output: str, named: str | None, label: str | None, pairs: PairRequest | None = None
) -> str:
    # Described, not shown: shown as code, the 1.5B model ran it again instead of answering.
    # The counting expression: without one it compared context.count('entity') (2 of 2 yes/no
    # tasks at 4444b50), and with the records example in the prompt it re-ran the labelling.
    subset = f", and the counts among the rows the question names ({named})" if named else ""
    picked = ", picked (those rows)" if named else ""
    # Only for a label the question names: given the first listed label as an example, the
    # model answered "which label is the most common" with it.
    counted = "Counter(row['label'] for row in picked)" if named else "Counter(labels)"
    count = f" A count of one label: {counted}[{label!r}]" if label else ""
    grouped = ""
    if pairs:
        subset = (
            f", the {pairs.field} values that have rows of each label the question names, "
            "and their pairs"
        )
        # Shown the pairs, the model answered "There are 28 pairs …" (or copied the question):
        # the call that answers with them, as for counts the expression that counts.
        count = " To answer with the pairs: FINAL(pairs)"
        grouped = ", having (those values, sorted), pairs (every two of them)"
    return (
        f"A first step printed the first row, labelled every line for you and printed the "
        f"counts{subset}:\n"
        f"{output.rstrip()}\n"
        f"Kept for your code: rows (one dict per line, its label in row['label']), "
        f"labels{picked}{grouped}.{count}"
    )


PAIRS_CODE = "pairs = list(itertools.combinations(having, 2))"


def labelling_cell(
    labels: list[str],
    text_field: str,
    named_rows: RowFilter | None = None,
    pairs: PairRequest | None = None,
) -> str:
    """Label every record by its free text; later cells filter the rows and count.

    The rows the question names (`named_rows`) get their counts printed for every label, 0
    included, since "how many … are labelled x" is read there.
    """
    # The first row is printed before it has a label: printed with one, the 1.5B model answered
    # "which label is the most common" with that row's label (3 times in 15 such tasks).
    cell = (
        "rows = records()  # one dict per line\n"
        "print(rows[0])\n"
        f"labels = classify([row[{text_field!r}] for row in rows], {labels!r})\n"
        "for row, label in zip(rows, labels):\n"
        "    row['label'] = label\n"
        "print(Counter(labels))"
    )
    if named_rows:
        cell += (
            f"\npicked = [row for row in rows if {named_rows.condition}]\n"
            f"print(len(picked), {f'rows with {named_rows.description}; their labels:'!r})\n"
            f"for name in {labels!r}:\n"
            "    print(' ', repr(name) + ':', sum(row['label'] == name for row in picked))"
        )
    if pairs:
        # Counts only: shown the pairs, the model typed them into FINAL(...) until it ran out of
        # tokens; shown the values, it typed pairs of neighbours (13715-37519, 37519-44908, …).
        needed = " and ".join(map(repr, pairs.labels))
        wanted = "{" + ", ".join(map(repr, pairs.labels)) + "}"  # a set's repr has no fixed order
        cell += (
            f"\ngroups = {{}}  # {pairs.field} -> the labels of its rows\n"
            "for row in rows:\n"
            f"    groups.setdefault(row[{pairs.field!r}], set()).add(row['label'])\n"
            f"having = sorted(value for value, found in groups.items() if {wanted} <= found)\n"
            f"print(len(having), {f'{pairs.field} values with rows labelled {needed}, in having'!r}"
            ")\n"
            f"{PAIRS_CODE}\n"
            "print(len(pairs), 'pairs of them, in pairs')"
        )
    return cell


def output_turn(question: str, output: str) -> str:
    shown = output if output.strip() else "(nothing was printed; use print() to see values)"
    return f"Output:\n{shown}\n\nDoes this output answer the question: {question}\n{_NEXT}"


def error_turn(error: str, output: str) -> str:
    printed = f"Output before the error:\n{output}\n" if output.strip() else ""
    return f"{printed}Error: {error}\nFix the code and try again."


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


NON_ANSWER = re.compile(
    r"^\W*(the answer is )?(none|null|unknown|n/?a|\[\]|\{\})\W*$"
    r"|\b(no|zero) (exact )?(hits?|match(es)?|results?|answers?|information)\b"
    r"|\bnot (found|mentioned|available)\b|\bcould not (find|determine)\b"
    r"|\bno\b[\w\s-]{0,40}\bfound\b",
    re.IGNORECASE,
)


def is_non_answer(answer: str) -> bool:
    """A FINAL that only says nothing was found: worth one more try while turns remain."""
    return bool(NON_ANSWER.search(answer.strip()[:200])) or not answer.strip()


def echoes_question(answer: str, question: str) -> bool:
    """A FINAL that copies the question out (seen on OOLONG-Pairs-style tasks after the
    labelling step: `FINAL("Each line of the text is a question …")`)."""
    said = " ".join(answer.lower().split())
    return len(said) >= 30 and said[:80] in " ".join(question.lower().split())


def echo_turn(question: str, answer: str) -> str:
    return (
        f"FINAL({answer[:80]!r}...) only repeats the question; it is not an answer. Call FINAL "
        f"with the answer itself, computed from the values above. Question: {question}"
    )


_YES_OR_NO = re.compile(r"\byes or no\b", re.IGNORECASE)


def as_yes_no(question: str, answer: str | None) -> str | None:
    """A Python bool given as the answer to a yes-or-no question, said in its words."""
    if answer is not None and _YES_OR_NO.search(question):
        return {"True": "yes", "False": "no"}.get(answer.strip(), answer)
    return answer


_BACKTICKED = re.compile(r"`([A-Za-z_][\w.]*)`")
_HYPHENATED = re.compile(r"\b[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+\b")
_NAME_LIKE = re.compile(  # snake_case, camelCase, or a capitalised word inside a sentence
    r"\b[A-Za-z]+(?:_[A-Za-z0-9]+|[a-z][A-Z])[A-Za-z0-9_]*\b|(?<=[a-z,;:] )[A-Z][a-z]{3,}\b"
)


def key_term(question: str) -> str | None:
    """The question's most searchable term: a `code name` (the last one: "parameter `p` of
    function `f`" is about f), else a hyphenated key, else a name-like word; None if none."""
    for pattern, pick in ((_BACKTICKED, -1), (_HYPHENATED, 0), (_NAME_LIKE, 0)):
        found = pattern.findall(question)
        if found:
            return found[pick]
    return None


def search_cell(question: str, context: str | dict[str, str]) -> str | None:
    """The obvious first search for the question's key term, run before the first turn."""
    term = key_term(question)
    if term is None:
        return None
    if isinstance(context, dict) and _BACKTICKED.search(question):
        return f"print(source({term.split('.')[-1]!r}))"
    return f"print(grep({term!r})[:5])"


def non_answer_turn(question: str, answer: str) -> str:
    return (
        f"FINAL({answer[:80]!r}) does not answer the question yet. Search another way: other "
        f"or shorter words, a name, or read the pieces with llm_query. Question: {question}"
    )


_EMPTY_RESULTS = frozenset(["", "0", "0.0", "None", "[]", "{}", "()", "set()", "''"])


def is_empty_result(answer: str) -> bool:
    """What code computes when its filter matched nothing: 0, an empty list, None."""
    return answer.strip() in _EMPTY_RESULTS


def unseen_final_turn(question: str, answer: str, output: str, values: str) -> str:
    printed = f"Output:\n{output.rstrip()}\n" if output.strip() else ""
    shown = f"Its values:\n{values}\n" if values else ""
    return (
        f"Your code called FINAL({answer[:80]!r}) before you saw what it computed.\n"
        f"{printed}{shown}"
        "Check them: an empty list or a 0 usually means a filter or pattern matched nothing; then "
        "print a few lines of context and fix the code. If they are right, call FINAL again. "
        f"Question: {question}"
    )


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
    """Whether the cell calls FINAL with a literal ("location", 42): an answer typed in, not
    computed, so one written before the cell's printed output existed."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(arg, ast.Constant) for arg in _final_arguments(tree))


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def final_typed_in(code: str) -> bool:
    """Whether the cell's FINAL gives values typed into the code: a literal (`[('95405-71898',)]`)
    or a name the cell set to one (`pairs = [...]` then `FINAL(pairs)`)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    typed = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and _is_literal(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    return any(
        _is_literal(arg) or (isinstance(arg, ast.Name) and arg.id in typed)
        for arg in _final_arguments(tree)
    )


def typed_pairs_turn(question: str, answer: str) -> str:
    shown = answer if len(answer) <= 80 else answer[:80] + "..."
    return (
        f"FINAL({shown}) gives pairs you typed in; the first step computed them from every row "
        f"into pairs. To answer with them: FINAL(pairs). Question: {question}"
    )


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


def unread_output_turn(question: str, answer: str, output: str) -> str:
    return (
        f"Your code printed this and called FINAL({answer[:80]!r}) in the same cell, before you "
        f"read it:\n{output.rstrip()}\n\nRead it. Does it answer the question: {question}\n{_NEXT}"
    )


def last_turn(question: str, reason: str) -> str:
    return f"{reason} Reply with code calling FINAL(answer) with your best answer to: {question}"


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
