"""The strategy helpers (find_lines, sections, files, search) in the real sandbox worker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

from rlm_local.sandbox import CellResult, Sandbox, SandboxLimits
from rlm_local.sandbox.helpers import files, find_lines, search, sections, tables, tally, tree

LIMITS = SandboxLimits(wall_seconds=10, cpu_seconds=20, memory_mb=512, output_chars=4000)
LEVELS = ("INFO", "WARN", "ERROR")
LOG = "\r\n".join(
    f"2015-07-{29 + i // 1000} 10:{i % 60:02d}:00,{i:03d} - {LEVELS[i % 7 % 3]}  "
    f"[worker-{i % 5}] - request {i} from /10.0.0.{i % 4}:{4000 + i}"
    for i in range(2000)
)
NOTES = """# Meeting, 22 March

## Budget review
Presenter: Alice Smith
Some talk about money.

### Conclusion
The budget was approved.

## Hiring plan
Presenter: Bob Jones

### Conclusion
No decision; revisit next month.
"""
PEP = """PEP: 9999
Title: A test proposal

Abstract
========

We propose a thing.

Rationale
=========

Because of reasons.
"""


def ok(result: CellResult) -> str:
    assert result.error is None, result.error
    return result.output


@pytest.fixture
def log_box() -> Iterator[Sandbox]:
    with Sandbox(LOG, limits=LIMITS) as box:
        yield box


def test_find_lines_counts_every_match_where_grep_stops_at_fifty(log_box: Sandbox) -> None:
    expected = sum(1 for line in LOG.split("\r\n") if " - ERROR " in line)
    assert expected > 500  # far past grep's cap
    out = ok(log_box.run("print(len(find_lines(r' - ERROR ')), len(grep(r' - ERROR ')))"))
    assert out == f"{expected} 50\n"
    shown = ok(log_box.run("hits = find_lines('ERROR')\nprint(hits[:2])"))
    # A slice says what it was cut from: "2 matching lines" was read as the count.
    assert shown.startswith(f"(2 of the {expected} matching lines)\n  line 3: 2015-07-29 10:02")
    assert "\r" not in shown


def test_lines_of_a_directory_say_how_many_files_hold_them() -> None:
    peps = {"a.rst": "Author: Guido\nx\nSponsor: Guido\n", "b.rst": "Author: Guido\n", "c": "x"}
    hits = find_lines("Guido", peps)
    assert repr(hits).startswith("(3 matching lines in 2 files)\n  a.rst:1: Author: Guido")
    assert repr(hits[:1]).startswith("(1 of the 3 matching lines in 2 files)\n  a.rst:1:")
    assert repr(hits[-1:][:5]).startswith("(1 of the 3 matching lines in 2 files)\n  b.rst:1:")
    assert repr(hits[:]).startswith("(3 matching lines in 2 files)")
    assert repr(find_lines("Author", peps)).startswith("(2 matching lines in 2 files)")
    assert repr(find_lines("Sponsor", peps)).startswith("(1 matching line in 1 file)")


def test_count_with_no_argument_is_the_number_of_lines(log_box: Sandbox) -> None:
    expected = sum(1 for line in LOG.split("\r\n") if " - ERROR " in line)
    out = ok(
        log_box.run("hits = find_lines(' - ERROR ')\nprint(hits.count(), hits.count(hits[0]))")
    )
    assert out == f"{expected} 1\n"  # list.count(item) still counts that item


def test_a_pattern_that_matches_nothing_says_how_many_lines_match_ignoring_case(
    log_box: Sandbox,
) -> None:
    expected = sum(1 for line in LOG.split("\r\n") if " - error " in line.lower())
    shown = ok(log_box.run("hits = find_lines(' - error ')\nprint(len(hits))\nprint(hits)"))
    assert shown == f"0\n(0 matching lines)\n({expected} match with ignore_case=True)\n"
    assert ok(log_box.run("print(find_lines(' - nothing at all '))")) == "(0 matching lines)\n"
    asked = ok(log_box.run("print(len(find_lines(' - error ', ignore_case=True)))"))
    assert asked == f"{expected}\n"


def test_tally_counts_a_value_in_every_line_most_common_first(log_box: Sandbox) -> None:
    expected = Counter(line.split(" from /")[1].split(":")[0] for line in LOG.split("\r\n"))
    shown = ok(log_box.run("counts = tally(r'from /([\\d.]+):')\nprint(counts)"))
    top, count = expected.most_common(1)[0]
    assert shown.startswith(f"(2000 matching lines, 4 different values)\n  '{top}': {count}\n")
    # Over find_lines' result: a filter, then the field; lines the pattern misses are skipped.
    errors = [line for line in LOG.split("\r\n") if " - ERROR " in line]
    by_worker = Counter(line.split("[")[1].split("]")[0] for line in errors)
    cell = "print(dict(tally(r'\\[(worker-\\d)\\]', lines=find_lines(' - ERROR '))))"
    assert ok(log_box.run(cell)) == f"{dict(by_worker.most_common())}\n"
    assert ok(log_box.run("print(tally('no such thing'))")) == "(0 matching lines)\n"


def test_tally_shows_the_top_values_and_how_many_more() -> None:
    text = "\n".join(f"user=u{i % 15} ok" for i in range(150)) + "\nno user here"
    counts = tally(r"user=(\w+)", text)
    assert counts.matched == 150 and len(counts) == 15 and counts["u3"] == 10
    shown = repr(counts)
    assert shown.count("\n  '") == 10 and shown.endswith("\n  ... 5 more values")
    assert tally("user=u1 ", text)["user=u1"] == 10  # no group: the whole match, stripped
    assert tally("[bad", "a [bad line") == {"[bad": 1}  # an invalid regex is searched literally


def test_lines_are_strings_that_know_their_number(log_box: Sandbox) -> None:
    cell = (
        "hits = find_lines('request 1234 ')\n"
        "line = hits[0]\n"
        "print(line.number, line.upper().startswith('2015'), re.search(r'/([\\d.]+):', line)[1])"
    )
    assert ok(log_box.run(cell)) == "1235 True 10.0.0.2\n"
    counted = ok(
        log_box.run(
            "c = Counter(re.search(r'/([\\d.]+):', l).group(1) for l in find_lines('WARN'))\n"
            "print(c.most_common(1))"
        )
    )
    warn = [line for line in LOG.split("\r\n") if "WARN" in line]
    ips = Counter(line.split("/")[1].split(":")[0] for line in warn).most_common(1)
    assert counted == f"{ips}\n"


def test_sections_follow_markdown_and_rest_headings() -> None:
    parts = sections(NOTES)
    assert [p.title for p in parts] == [
        "Meeting, 22 March",
        "Budget review",
        "Budget review > Conclusion",
        "Hiring plan",
        "Hiring plan > Conclusion",
    ]
    assert parts[2].line == 7 and "approved" in parts[2]
    rest = sections({"pep-9999.rst": PEP})
    assert [(p.path, p.title, p.line) for p in rest] == [
        ("pep-9999.rst", "", 1),
        ("pep-9999.rst", "Abstract", 4),
        ("pep-9999.rst", "Rationale", 9),
    ]
    blocks = sections("para one\nstill one\n\npara two\n")
    assert [str(b) for b in blocks] == ["para one\nstill one\n\npara two"]  # joined while small


def test_sections_print_as_a_table_of_contents() -> None:
    with Sandbox(NOTES, limits=LIMITS) as box:
        out = ok(box.run("print(sections())"))
        assert out.splitlines()[0] == "(5 sections)"
        assert "line 7 'Budget review > Conclusion'" in out and "approved" not in out
        text = ok(box.run("print([s for s in sections() if 'Conclusion' in s.title][1])"))
        assert "revisit next month" in text


def test_files_match_globs_names_and_parts_of_paths() -> None:
    context = {"pkg/__init__.py": "", "pkg/routing/map.py": "x", "utils.py": "y", "README": "z"}
    assert files("*.py", context) == ["pkg/__init__.py", "pkg/routing/map.py", "utils.py"]
    assert files("map.py", context) == ["pkg/routing/map.py"]
    assert files("routing", context) == ["pkg/routing/map.py"]
    assert files("*", context) == sorted(context)
    assert files("*.py", "a str context") == []
    assert tree(list(context)).splitlines() == [
        "./: README, utils.py",
        "pkg/: __init__.py",
        "pkg/routing/: map.py",
    ]


def test_search_ranks_the_piece_holding_the_query_s_rare_words_first() -> None:
    filler = "\n".join(f"Line {i} about the weather and the usual things." for i in range(3000))
    text = filler[:40000] + "\nThe ZooKeeper server version is 3.4.5, built on 2012.\n" + filler
    best = search("which zookeeper version does the server report", text, k=3)
    assert "3.4.5" in best[0]
    needle_line = text[: text.index("ZooKeeper")].count("\n") + 1
    assert best[0].line <= needle_line < best[0].line + 12  # the window it stands in
    long_line = "x " * 5000 + "the needle phrase lives here " + "y " * 5000  # one 20,000-char line
    assert "needle" in search("needle phrase", long_line, k=1)[0]
    code = {"a.py": "def parse_config(path):\n    return path\n", "b.py": "x = 1\n"}
    hit = search("where is parse config defined", code, k=1)[0]
    assert hit.path == "a.py" and hit.line == 1  # snake_case parts match plain words
    assert search("", code) == [] and search("zzzz", code) == []


def test_search_matches_the_forms_of_a_word_by_its_stem() -> None:
    """A question says "sponsored" where the headers say `Sponsor:`; by exact words the pieces
    that mention the name in passing outranked the headers."""
    header = "PEP: {n}\nTitle: Something {n}\nAuthor: Ann Smith\nSponsor: Jelle Zijlstra\n"
    mention = "As Jelle Zijlstra noted on the list, the Jelle Zijlstra draft was long.\n"
    filler = "\n".join(f"Unrelated text line {i} of the rationale." for i in range(40))
    context = {
        "pep-1.rst": header.format(n=1) + filler,
        "pep-2.rst": filler + "\n" + mention + filler,
        "pep-3.rst": header.format(n=3) + filler,
    }
    hits = search("List the PEPs that Jelle Zijlstra sponsored", context, k=2)
    assert sorted(hit.path for hit in hits) == ["pep-1.rst", "pep-3.rst"]
    assert "Sponsor: Jelle Zijlstra" in str(hits)
    plural = search("failed connections", "a connection failed here\n" + filler, k=1)
    assert "connection failed" in plural[0]
    # The part of a long piece shown is where the stem stands, not the piece's start.
    long_piece = "\n".join([f"Line {i} of a long preamble. " * 12 for i in range(6)])
    shown = str(search("who sponsored it", long_piece + "\nSponsor: Ann Lee\n", k=1))
    assert "Sponsor: Ann Lee" in shown and "Line 0 " not in shown
    # A word the input writes is matched as written: its other forms only share the word.
    forms = "\n".join(["By default iter(items) walks the iterator."] * 30 + [filler])
    written = search("the default iterations", forms + "\nThe default iterations: 600.\n", k=1)
    assert "iterations: 600" in written[0]


def test_search_shows_the_same_passage_in_every_process() -> None:
    """What a cell prints decides the cache keys of the calls after it: a passage chosen by set
    order (which changes with each process's hash seed) made every second run a cache miss."""
    script = (
        "from rlm_local.sandbox.helpers import search\n"
        "piece = 'alpha beta gamma. ' * 60 + 'the magic number for icy harbor is 7. ' + "
        "'delta epsilon. ' * 60 + 'icy harbor magic number lists. ' + 'zeta. ' * 80\n"
        "print(repr(search('magic number for icy harbor', piece, k=1)))"
    )
    shown = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in range(1, 7)
    }
    assert len(shown) == 1 and "magic number" in shown.pop()


def test_search_prints_where_each_piece_is() -> None:
    with Sandbox({"notes/a.md": NOTES}, limits=LIMITS) as box:
        out = ok(box.run("print(search('who presented hiring', k=1))"))
        assert out.startswith("--- notes/a.md:") and "Bob Jones" in out


def test_search_names_the_defs_and_classes_a_piece_of_python_sits_in() -> None:
    body = "\n".join(f"        total = total + {i}  # filler" for i in range(30))
    module = (
        'import os\n\n\nclass Vault:\n    """A store."""\n\n'
        f"    def unlock(self, key):\n        total = 0\n{body}\n"
        "        raise ValueError('Key length must be at least 1.')\n\n\n"
        "def helper():\n    return 1\n"
    )
    context = {"vault.py": module, "notes.txt": module}
    with Sandbox(context, limits=LIMITS) as box:
        out = ok(box.run("print(search('which raises Key length must be at least 1', k=2))"))
    heads = [line for line in out.splitlines() if line.startswith("---")]
    assert heads[0].startswith("--- vault.py:") and heads[0].endswith(
        " (in class Vault, def unlock)"
    )
    assert heads[1].startswith("--- notes.txt:") and "(in" not in heads[1]  # Python files only
    top = search("import os", {"vault.py": module}, k=1)
    assert repr(top).splitlines()[0] == "--- vault.py:1"  # top-level code sits in nothing


def test_helpers_reject_wrong_arguments_with_how_to_call_them(log_box: Sandbox) -> None:
    result = log_box.run("find_lines(3)")
    assert result.error is not None and "find_lines(r'ERROR')" in result.error
    result = log_box.run("tally(None)")
    assert result.error is not None and "tally(r'user=(\\w+)')" in result.error
    result = log_box.run("search(['a'])")
    assert result.error is not None and "search('budget decision')" in result.error
    assert find_lines("[unclosed", "a [unclosed b\nnone") == ["a [unclosed b"]


def test_tables_parse_pipe_tables_with_their_columns(log_box: Sandbox) -> None:
    doc = (
        "# Minutes\n\n**Attendees:**\n\n| Name | Abbreviation | Organization |\n"
        "|------|:------------:|--------------|\n| Ann Lee | AL | Acme |\n"
        "| Bo Chen | BC | Initech |\n"
        "| Cy Young | CY | Acme |\n\nText after.\n\nA | B\n---|---\n1 | 2\n"
    )
    found = tables(doc)
    assert [len(t) for t in found] == [3, 1] and found[1] == [{"A": "1", "B": "2"}]
    first = found[0]
    assert first.columns == ["Name", "Abbreviation", "Organization"] and first.line == 5
    assert Counter(row["Organization"] for row in first) == {"Acme": 2, "Initech": 1}
    assert repr(first).startswith(
        "(table at line 5: 3 rows; columns ['Name', 'Abbreviation', 'Organization'])\n"
        "  {'Name': 'Ann Lee', 'Abbreviation': 'AL', 'Organization': 'Acme'}"
    )
    # A column by name, whatever its case, as in pandas; a name that is no column says which are.
    assert first["organization"] == ["Acme", "Initech", "Acme"] and first[0]["name"] == "Ann Lee"
    assert first[1:] == found[0][1:] and len(first[:2]) == 2
    with pytest.raises(KeyError, match="no column 'Attendee'; the columns are 'Name', 'Abb"):
        first["Attendee"]
    with pytest.raises(KeyError, match="no column 'Org'"):
        first[0]["Org"]
    assert tables({"notes/a.md": doc})[0].path == "notes/a.md"
    assert tables("no | table here\njust text") == []
    assert tables("A title | with a bar\n---------------------\ntext") == []  # a heading
    # In a cell, over the worker's context; a short row gets empty cells.
    with Sandbox("| k | v |\n|---|---|\n| a |\n| b | 2 |", limits=LIMITS) as box:
        assert ok(box.run("print(tables()[0])")).endswith(
            "  {'k': 'a', 'v': ''}\n  {'k': 'b', 'v': '2'}\n"
        )
        assert ok(box.run("print(tables()[0]['V'])")) == "['', '2']\n"
        error = box.run("tables()[0]['x']").error or ""
        assert "no column 'x'; the columns are 'k', 'v'" in error


def test_search_shows_whole_lines_of_a_long_piece() -> None:
    """Only part of a long piece is shown; cut mid-line, a log line lost the value at its end
    (`ask A to replicate B to datanode(s) C` without C), and the reader named another IP."""
    rows = [
        f"081111 0809{i:02d} 19 INFO dfs.DataNode: Receiving block blk_{i}{i * 7919} "
        f"src: /10.250.{i}.240:40589 dest: /10.250.{i}.240:50010 size 67108864"
        for i in range(10)
    ]
    rows[5] = (
        "081111 080934 19 INFO dfs.FSNamesystem: BLOCK* ask 10.250.14.38:50010 to replicate "
        "blk_-7571492020523929240 to datanode(s) 10.251.122.38:50010"
    )
    log = "\n".join(rows)
    shown = str(search("which datanode receives the replicate instruction", log, k=1))
    body = shown.split("\n", 1)[1].removeprefix("... ").removesuffix(" ...")
    assert "to datanode(s) 10.251.122.38:50010" in body
    assert all(line in rows for line in body.split("\n"))  # each shown line is whole
