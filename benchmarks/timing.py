"""The timing split in the tables: medians of each row's `timing` (rlm rows from the engine).

Rows without one (other methods, or results older than the split) are left out of a median; a
group with none shows "–".
"""

from __future__ import annotations

import statistics
from typing import Any

# (column, key of the row's "timing"): seconds of model load, prompt evaluation, generation,
# sandbox cells (without the sub-calls they waited on) and sub-model calls.
COLUMNS = (
    ("load s", "load_s"),
    ("prompt s", "prompt_eval_s"),
    ("gen s", "generation_s"),
    ("sandbox s", "sandbox_s"),
    ("sub s", "sub_calls_s"),
)


def header() -> str:
    """The columns' names, for a markdown header row: `load s | prompt s | ...`."""
    return " | ".join(name for name, _ in COLUMNS)


def cells(group: list[dict[str, Any]]) -> str:
    """Each column's median over the group's rows that carry it, as markdown cells."""
    values = []
    for _, key in COLUMNS:
        found = [
            float(timing[key])
            for row in group
            if isinstance(timing := row.get("timing"), dict) and key in timing
        ]
        values.append(f"{statistics.median(found):.1f}" if found else "–")
    return " | ".join(values)
