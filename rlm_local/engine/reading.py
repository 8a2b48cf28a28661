"""The first search's passages read as text by the root model, before any code is written.

Asked to write code about `optimize=-1`, the 1.5B model answered 0 or 1; asked to read the
passages and copy the answer, it copies it right. The model itself decides whether the passages
state the answer (else it replies CODE and the code turns begin); a reply counts only when it is
short and stands in the passages as written, so a guess or a number made up never becomes the
answer.
"""

from __future__ import annotations

import re

from rlm_local.engine.checks import is_non_answer

NEEDS_CODE = "CODE"
READ_SYSTEM = (
    "You read passages found in a long input. If one passage states the answer to the question "
    "directly, reply with the answer only, copied exactly from the text. If the answer must be "
    "counted, listed, compared or computed over the whole input, or is not stated here, reply "
    f"with the single word {NEEDS_CODE}."
)


def read_messages(question: str, passages: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": READ_SYSTEM},
        {"role": "user", "content": f"{passages.rstrip()}\n\nQuestion: {question}"},
    ]


def grounded_answer(reply: str, passages: str) -> str | None:
    """The reader's answer, if it is short and stands in the passages as written (as a whole
    token: "10" is not copied from "line 107"); None for CODE, prose, a guess or "not found"."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines:
        return None
    # Copied with a comment mark (source()'s "# path line N", a defaults note): dropped.
    answer = re.sub(r"^#\s+", "", " ".join(lines[0].strip("`").split())).rstrip(".")
    if not answer or answer.upper() == NEEDS_CODE or len(answer) > 200 or is_non_answer(answer):
        return None
    copied = re.compile(rf"(?<!\w){re.escape(answer)}(?!\w)", re.IGNORECASE)
    return answer if copied.search(" ".join(passages.split())) else None
