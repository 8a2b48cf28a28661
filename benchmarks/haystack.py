"""Seeded natural-English filler text and S-NIAH needles (after RULER's niah_single_2).

No data set can be downloaded here, so the haystack is generated: varied sentences about towns,
trades, weather and travel, grouped in paragraphs, never one sentence repeated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SUBJECTS = [
    "the harbour master",
    "a retired schoolteacher",
    "the night baker",
    "our neighbour",
    "the new librarian",
    "an old fisherman",
    "the mayor's cousin",
    "a travelling musician",
    "the village doctor",
    "two young engineers",
    "the ferry captain",
    "a quiet gardener",
    "the museum guide",
    "my grandmother",
    "the station clerk",
    "a visiting botanist",
]
VERBS = [
    "remembered",
    "described",
    "noticed",
    "complained about",
    "wrote a letter about",
    "laughed at",
    "argued over",
    "sketched",
    "photographed",
    "kept a diary of",
    "told stories about",
    "quietly repaired",
    "walked past",
    "asked questions about",
]
OBJECTS = [
    "the flooded mill by the river",
    "a long winter without snow",
    "the market on the square",
    "the bell tower's crooked clock",
    "the smell of bread at dawn",
    "the broken lighthouse lamp",
    "a festival that lasted three days",
    "the road that climbs to the monastery",
    "the orchard behind the chapel",
    "a storm that came from the east",
    "the train that was late",
    "the price of wool that year",
    "the bridge rebuilt after the fire",
    "the empty cinema",
    "a map drawn on the back of a menu",
    "the cats that sleep on the church steps",
]
TIMES = [
    "Every spring",
    "Late one evening",
    "In the autumn of that year",
    "Long before the war",
    "On market days",
    "After the harvest",
    "During the long drought",
    "Most mornings",
    "When the tide was low",
    "Just before midnight",
    "Some years later",
    "On a grey Sunday",
]
CLAUSES = [
    "and nobody could quite agree on what had happened",
    "although the records from that time are incomplete",
    "which surprised everyone who knew the place",
    "while the children played along the canal",
    "because the old road had been closed for repairs",
    "as the clouds gathered over the hills",
    "though most people have forgotten it by now",
    "and the story was repeated in every kitchen",
    "even though the council had promised otherwise",
    "so the town decided to hold a meeting",
]
REFLECTIONS = [
    "It is hard to say whether this mattered.",
    "Some say it changed the town for good.",
    "The details vary depending on who tells it.",
    "Few photographs survive from those days.",
    "Visitors still ask about it.",
    "The local paper printed a short note.",
    "Nobody wrote it down at the time.",
    "It became a kind of joke among the older residents.",
]
ADJECTIVES = [
    "amber",
    "brave",
    "calm",
    "dusty",
    "eager",
    "fancy",
    "gentle",
    "hollow",
    "icy",
    "jolly",
    "keen",
    "lucky",
    "mellow",
    "nimble",
    "odd",
    "proud",
    "quick",
    "rusty",
    "shiny",
    "tidy",
]
NOUNS = [
    "anchor",
    "badger",
    "candle",
    "dolphin",
    "engine",
    "falcon",
    "garden",
    "harbor",
    "island",
    "jacket",
    "kettle",
    "lantern",
    "meadow",
    "needle",
    "orchard",
    "pepper",
    "quarry",
    "rocket",
]


def _sentence(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.55:
        return (
            f"{rng.choice(TIMES)}, {rng.choice(SUBJECTS)} {rng.choice(VERBS)} "
            f"{rng.choice(OBJECTS)}, {rng.choice(CLAUSES)}."
        )
    if kind < 0.8:
        subject = rng.choice(SUBJECTS)
        return f"{subject[0].upper()}{subject[1:]} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."
    return rng.choice(REFLECTIONS)


def haystack(n_chars: int, seed: int) -> str:
    """Paragraphs of 4-8 sentences until about n_chars characters."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < n_chars:
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randint(4, 8)))
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)


@dataclass(frozen=True)
class Needle:
    key: str
    value: str
    sentence: str
    question: str


def make_needle(seed: int) -> Needle:
    rng = random.Random(seed * 7919 + 1)
    key = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
    value = str(rng.randint(1_000_000, 9_999_999))
    return Needle(
        key=key,
        value=value,
        sentence=f"One of the special magic numbers for {key} is: {value}.",
        question=f"What is the special magic number for {key} mentioned in the provided text?",
    )


def niah_text(n_chars: int, seed: int, depth: float | None = None) -> tuple[str, Needle]:
    """A haystack with the needle at a sentence boundary at `depth` (0..1; random if None)."""
    text = haystack(n_chars, seed)
    needle = make_needle(seed)
    rng = random.Random(seed + 17)
    at = int(len(text) * (depth if depth is not None else rng.random()))
    cut = text.find(". ", at)
    cut = len(text) - 1 if cut == -1 else cut + 1
    return f"{text[:cut]} {needle.sentence}{text[cut:]}", needle
