"""The note on a cell's patterns that match no line of the input (engine/patterns.py)."""

from __future__ import annotations

import time

from rlm_local.engine.patterns import Pattern, unmatched_note, written_patterns

LOG = "\n".join(
    [
        "2015-07-29 19:04:12 INFO Established session 0x1 for client /10.0.0.1:4000",
        "2015-07-29 19:05:12 INFO Closed socket connection for client /10.0.0.2:4001",
        "2015-07-29 19:06:12 WARN Expiring session 0x2, timeout of 10000ms exceeded",
    ]
)


def test_the_patterns_a_cell_writes_are_found_in_its_code() -> None:
    code = (
        "import re\n"
        "ips = re.findall(r'Client IP: (\\d+)', context)\n"
        "hits = find_lines('WARN', ignore_case=True)\n"
        "rows = [l for l in context.splitlines() if 'Expiring' in l and 'ms' in l]\n"
        "x = re.search(pattern_variable, context)\n"
    )
    assert written_patterns(code) == [
        Pattern(r"Client IP: (\d+)"),
        Pattern("WARN", ignore_case=True),
        Pattern("Expiring", literal=True),  # 'ms' is too short to be worth a note
    ]
    assert written_patterns("print(") == []  # a cell that does not parse has none


def test_a_pattern_that_matches_no_line_is_noted_with_lines_that_hold_its_words() -> None:
    note = unmatched_note("ips = re.findall(r'Client IP: (\\d+\\.\\d+)', context)", LOG)
    head = note.splitlines()[0]
    assert r"r'Client IP: (\d+\.\d+)'" in head  # as the model wrote it, not with \\ doubled
    assert "for client /10.0.0.1:4000" in note and "for client /10.0.0.2:4001" in note
    assert "Expiring" not in note  # a line without the pattern's words is not shown


def test_the_lines_shown_hold_the_most_of_the_pattern_s_words() -> None:
    note = unmatched_note("n = find_lines('Expiring session timeout of 20000ms').count()", LOG)
    shown = note.splitlines()[1:]
    assert shown[0] == "  " + LOG.splitlines()[2]


def test_no_note_when_the_patterns_match() -> None:
    code = "a = find_lines(r'^2015-07-29')\nb = [l for l in context.split() if 'Closed' in l]"
    assert unmatched_note(code, LOG) == ""
    assert unmatched_note("a = find_lines('warn', ignore_case=True)", LOG) == ""
    assert unmatched_note("a = re.findall(r'[unclosed', context)", LOG) == ""  # no regex


def test_a_directory_s_lines_are_shown_after_their_file() -> None:
    files = {"pep-1.rst": "PEP: 1\nCreated: 13-Jun-2000\n", "pep-2.rst": "PEP: 2\n"}
    note = unmatched_note("years = re.findall(r'Created: (\\d{4})', context['pep-1.rst'])", files)
    assert note.splitlines()[-1] == "  pep-1.rst: Created: 13-Jun-2000"  # the line after its path


def test_a_pattern_that_backtracks_for_ever_gets_no_note_and_does_not_stall() -> None:
    text = "a" * 40 + "b"
    started = time.perf_counter()
    assert unmatched_note("re.findall(r'(a|aa)+c', context)", text) == ""
    assert time.perf_counter() - started < 5


def test_lines_that_hold_less_than_half_of_the_words_are_not_shown() -> None:
    note = unmatched_note("parts = [s for s in parts if 'Session constructor' in s.lower()]", LOG)
    assert len(note.splitlines()) == 1 and "'Session constructor'" in note  # no lines shown
