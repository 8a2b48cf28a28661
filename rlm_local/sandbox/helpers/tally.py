"""tally(pattern): how many lines give each value, most common first, over every line.

For "which X has the most lines" the 1.5B model wrote `Counter(...).most_common(1)[0][0]` and
printed only the winner, so a pattern that pulled the wrong field ("[10.30" as a program name)
went unseen; `re.search(...).group(1)` on a line that did not match raised. tally skips lines
the pattern misses and prints the counts it found with one line each value came from, so a wrong
field shows at once.
"""

from __future__ import annotations

import re
from collections import Counter

from rlm_local.sandbox.helpers.base import Context, sources

SHOWN_VALUES = 10  # values a printed tally shows; the Counter holds them all

EXAMPLE = """\
Example, for which value is most (or least) common, or how many lines have each value:
```python
logins = find_lines(r"logged in")  # the lines the question is about
counts = tally(r"user=(\\w+)", logins)  # group 1 of the pattern, in each line it matches
print(counts)  # how many lines matched, then each value and its count, most first
```"""


class Tally(Counter[str]):
    """tally's result: a Counter of values; printed, the lines counted and the top values."""

    matched = 0  # lines the pattern matched

    def __repr__(self) -> str:
        if not self:
            return "(0 matching lines)"
        top = self.most_common(SHOWN_VALUES)
        shown = [f"  {value!r}: {count}" for value, count in top]
        more = len(self) - len(top)
        tail = f"\n  ... {more} more values" if more else ""
        head = f"({self.matched} matching lines, {len(self)} different values)"
        return head + "\n" + "\n".join(shown) + tail

    __str__ = __repr__


def tally(pattern: str, lines: Context | list[str] | None, ignore_case: bool = False) -> Tally:
    """How many lines give each value: group 1 of the regex `pattern` (the whole match when it
    has no group) in each line it matches, case-sensitive unless `ignore_case`; an invalid regex
    is searched literally."""
    if not isinstance(pattern, str):
        raise TypeError("tally: pattern must be a str, e.g. tally(r'user=(\\w+)')")
    flags = re.IGNORECASE if ignore_case else 0
    try:
        regex = re.compile(pattern, flags)
    except re.error:
        regex = re.compile(re.escape(pattern), flags)
    counts = Tally()
    for _prefix, body in sources(lines, "tally"):
        for line in body.split("\n"):
            found = regex.search(line)
            if found is None:
                continue
            counts.matched += 1
            value = found.group(1) if regex.groups else found.group(0)
            if value is not None:
                counts[value.strip()] += 1
    return counts
