"""Self-consistency on the code path: the question is played again from sampled first programs,
and the answer most plays reach wins.

A 1.5B model's first program decides most of a run, and greedy decoding always writes the same
one. Plays that start from other programs and still reach one answer are evidence for it; a play
that found nothing does not vote. See docs/design.md ("Several plays of the code turns vote").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rlm_local.engine.checks import is_non_answer


def normal_form(answer: str) -> str:
    """What two answers must share to count as one: case, spacing and quotes aside."""
    return " ".join(answer.lower().split()).strip(" .'\"`")


@dataclass
class Ballot:
    """The answers of the plays so far, the greedy play's first."""

    planned: int  # plays at most, the greedy one included
    answers: list[str | None] = field(default_factory=list)

    def add(self, answer: str | None) -> None:
        self.answers.append(answer)

    def _counts(self) -> Counter[str]:
        """Votes per answer, in the order first reached (Counter keeps it among equal counts)."""
        return Counter(normal_form(a) for a in self.answers if a and not is_non_answer(a))

    def settled(self) -> bool:
        """No play still to come could change the winner."""
        remaining = self.planned - len(self.answers)
        if remaining <= 0:
            return True
        counts = [n for _, n in self._counts().most_common(2)] + [0, 0]
        return counts[0] > counts[1] + remaining

    def winner(self) -> str | None:
        """The answer most plays reached, as the first play that reached it wrote it; on a tie,
        the one reached first (the greedy play's); None when no play answered."""
        top = self._counts().most_common(1)
        if not top:
            return next((a for a in self.answers if a is not None), None)
        form = top[0][0]
        return next(a for a in self.answers if a and normal_form(a) == form)
