"""records(): lines of "Key: value || Key: value" records as dicts."""

from __future__ import annotations

import re

from rlm_local.sandbox.helpers.base import Context, sources

_FIELD = re.compile(r"(?:^|[|;,\t]\s*)([A-Z][A-Za-z_]{0,19}):\s")


def record_keys(items: list[str]) -> list[str]:
    """The field names every record-like item has ("Date: … || User: … || Text: …"), in order;
    empty when the items are not records (fewer than two such fields)."""
    sample = [item for item in items[:: max(1, len(items) // 200)] if item.strip()]
    if not sample:
        return []
    keys = list(dict.fromkeys(_FIELD.findall(sample[0])))
    common = [key for key in keys if sum(f"{key}:" in item for item in sample) >= 0.9 * len(sample)]
    return common if len(common) >= 2 else []


def records(text: Context | list[str] | None) -> list[dict[str, str | int]]:
    """One dict per line of "Key: value || Key: value" records, keyed by the shared fields.

    The 1.5B model's own parsing of such lines breaks on "||" (an empty regex alternative) or
    splits at the wrong place; filtering by user or date is then a plain dict lookup.
    """
    lines = [line for _, body in sources(text, "records") for line in body.splitlines()]
    keys = record_keys(lines)
    if not keys:
        raise ValueError(
            "records: the lines are not 'Key: value' records; use context.splitlines() or grep"
        )
    field = re.compile(r"(?:^|[|;,\t]\s*)(" + "|".join(map(re.escape, keys)) + r"):\s")
    order = {key: n for n, key in enumerate(keys)}
    rows = []
    for line in lines:
        found: list[re.Match[str]] = []
        for match in field.finditer(line):  # each key once, in order; the last runs to the end
            if not found or order[match.group(1)] > order[found[-1].group(1)]:
                found.append(match)
                if match.group(1) == keys[-1]:
                    break
        if not found:
            continue
        ends = [match.start() for match in found[1:]] + [len(line)]
        pairs = zip(found, ends, strict=True)
        rows.append({m.group(1): _value(line[m.end() : end]) for m, end in pairs})
    return rows


def _value(text: str) -> str | int:
    """A field's value; a whole number as an int, since models compare ids with ints
    (`row['User'] in [71503, 29873]` matched nothing when ids were str)."""
    value = text.strip(" |;,\t")
    return int(value) if value.isdigit() and str(int(value)) == value else value
