"""The sandbox runs what small models ordinarily write, and its plumbing behaves."""

# The cell tables below read best one cell per line.
# ruff: noqa: E501

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_local.sandbox import CellResult, Sandbox, SandboxError, SandboxLimits
from rlm_local.sandbox.helpers import chunks, grep, source

LIMITS = SandboxLimits(wall_seconds=3, cpu_seconds=20, memory_mb=512, output_chars=2000)
DOC = (
    "Alice met Bob in Paris on 2021-03-04.\n"
    "They discussed the budget: 1200 EUR.\n"
    "Later, Carol joined. Bob left early!\n"
)


def ok(result: CellResult) -> str:
    assert result.error is None, result.error
    assert not result.worker_restarted
    return result.output


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(DOC, limits=LIMITS) as sb:
        yield sb


VOCABULARY: list[tuple[str, str]] = [
    ("print(len(context))", f"{len(DOC)}\n"),
    ("lines = context.splitlines()\nprint(len(lines), lines[0][:5])", "3 Alice\n"),
    ("print(lines[-1][::-1][:5], context[6:9])", "!ylra met\n"),
    ("print([l.split()[0] for l in lines if 'Bob' in l])", "['Alice', 'Later,']\n"),
    (
        "print({w: len(w) for w in ['a', 'bb']}, {x % 3 for x in range(10)})",
        "{'a': 1, 'bb': 2} {0, 1, 2}\n",
    ),
    ("print(sum(x * x for x in range(4)), list(zip('ab', [1, 2])))", "14 [('a', 1), ('b', 2)]\n"),
    ("import re\nprint(re.findall(r'\\d{4}-\\d{2}-\\d{2}', context))", "['2021-03-04']\n"),
    (
        "from re import findall, IGNORECASE\nprint(findall('bob', context, IGNORECASE))",
        "['Bob', 'Bob']\n",
    ),
    (
        "import re as r\nm = r.search(r'(\\d+) EUR', context)\nprint(m.group(1), m.start())",
        "1200 65\n",
    ),
    (
        "import json\nd = json.loads('{\"a\": [1, 2]}')\nprint(json.dumps(d, indent=None), d['a'][1])",
        '{"a": [1, 2]} 2\n',
    ),
    (
        "print('  Hi There '.strip().lower().replace('hi', 'ho').title(), 'a,b'.split(','))",
        "Ho There ['a', 'b']\n",
    ),
    (
        "name = 'Bob'\nn = 3\nprint(f'{name} has {n:03d} items, {n / 2:.1f} avg, {name!r}')",
        "Bob has 003 items, 1.5 avg, 'Bob'\n",
    ),
    (
        "print('{} {}'.format('a', 'b'), '{0}-{0}'.format(7), '{x:>4}|'.format(x='y'))",
        "a b 7-7    y|\n",
    ),
    ("print('%s=%d' % ('k', 5), '{:,}'.format(1234567))", "k=5 1,234,567\n"),
    (
        "people = [('bob', 30), ('al', 25)]\nprint(sorted(people, key=lambda p: p[1]))",
        "[('al', 25), ('bob', 30)]\n",
    ),
    (
        "print(sorted(['bb', 'a', 'ccc'], key=len, reverse=True), max([3, 9, 2]), min('zx'))",
        "['ccc', 'bb', 'a'] 9 x\n",
    ),
    (
        "from collections import Counter\nc = Counter(context.lower().split())\nprint(c['bob'], c.most_common(1)[0][1])",
        "2 2\n",
    ),
    (
        "from collections import defaultdict\ng = defaultdict(list)\nfor k, v in [('a', 1), ('a', 2)]:\n    g[k].append(v)\nprint(dict(g))",
        "{'a': [1, 2]}\n",
    ),
    (
        "try:\n    {}['x']\nexcept KeyError as e:\n    print('missing', e)\nfinally:\n    print('done')",
        "missing 'x'\ndone\n",
    ),
    ("try:\n    int('x')\nexcept (ValueError, TypeError):\n    print('bad')", "bad\n"),
    (
        "def show(items):\n    for i, it in enumerate(items):\n        print(i, it)\n    return len(items)\nprint(show(['a', 'b']))",
        "0 a\n1 b\n2\n",
    ),
    (
        "n = 1\nn += 2\ns = 'a'\ns += 'b'\nl = [1]\nl += [2]\nl *= 2\nprint(n, s, l)",
        "3 ab [1, 2, 1, 2]\n",
    ),
    (
        "for (a, b), c in [((1, 2), 3)]:\n    print(a + b + c)\nx, *rest = [1, 2, 3]\nprint(rest)",
        "6\n[2, 3]\n",
    ),
    ("d = {'a': 1}\nd['b'] = 2\ndel d['a']\nfor k, v in d.items():\n    print(k, v)", "b 2\n"),
    (
        "import math, statistics\nprint(math.sqrt(16), statistics.mean([1, 2, 3]), round(math.pi, 2))",
        "4.0 2 3.14\n",
    ),
    (
        "import itertools, functools\nprint(list(itertools.islice(itertools.count(), 3)), functools.reduce(lambda a, b: a + b, [1, 2, 3]))",
        "[0, 1, 2] 6\n",
    ),
    (
        "import heapq, bisect\nprint(heapq.nlargest(2, [5, 1, 9]), bisect.bisect([1, 3, 5], 4))",
        "[9, 5] 2\n",
    ),
    (
        "from datetime import datetime, timedelta\nd = datetime.strptime('2021-03-04', '%Y-%m-%d') + timedelta(days=1)\nprint(d.date().isoformat())",
        "2021-03-05\n",
    ),
    (
        "import textwrap, difflib, string\nprint(textwrap.shorten('a b c d e f', 7), difflib.get_close_matches('appel', ['apple']), string.digits[:3])",
        "a [...] ['apple'] 012\n",
    ),
    ("import random\nrandom.seed(1)\nprint(len(random.sample(range(10), 3)))", "3\n"),
    (
        "from functools import lru_cache\n@lru_cache(maxsize=None)\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nprint(fib(60))",
        "1548008755920\n",
    ),
    (
        "class Box:\n    def __init__(self, v):\n        self.v = v\nb = Box(2)\nb.v += 1\nprint(b.v, isinstance(b, Box))",
        "3 True\n",
    ),
    (
        "print(any(x > 2 for x in [1, 3]), all([]), list(map(str, [1, 2])), list(filter(None, [0, 1])))",
        "True True ['1', '2'] [1]\n",
    ),
    (
        "print(list(reversed([1, 2])), tuple([1]), set('aa'), abs(-2), repr('x'), bool(0), float('1.5'))",
        "[2, 1] (1,) {'a'} 2 'x' False 1.5\n",
    ),
    ("print(len(range(10**12)), list(range(5000))[-1])", "1000000000000 4999\n"),
    (
        "import operator\nprint(sorted([(1, 'b'), (0, 'a')], key=operator.itemgetter(1)))",
        "[(0, 'a'), (1, 'b')]\n",
    ),
    ("while True:\n    break\nelse:\n    pass\nprint((y := 5) + 1)", "6\n"),
    (
        "counts = {}\nfor w in 'a b a'.split():\n    counts[w] = counts.get(w, 0)\n    counts[w] += 1\nprint(counts)",
        "{'a': 2, 'b': 1}\n",
    ),
    ("grid = [[1]]\ngrid[0][0] += 1\ngrid[0] += [3]\nprint(grid)", "[[2, 3]]\n"),
    (
        "v = [1, 2, 3]\nv[1:2] += [9]\npairs = {}\npairs[1, 2] = 0\npairs[1, 2] += 5\nprint(v, pairs)",
        "[1, 2, 9, 3] {(1, 2): 5}\n",
    ),
    (
        "from datetime import date\nprint(date(2021, 3, 4).strftime('%d/%m/%Y'), f'{date(2020, 1, 2):%Y}')",
        "04/03/2021 2020\n",
    ),
]


def test_ordinary_vocabulary_of_small_models(sandbox: Sandbox) -> None:
    # One sandbox for all of them: variables persist across the cells as they go.
    for code, expected in VOCABULARY:
        result = sandbox.run(code)
        assert (result.output, result.error) == (expected, None), code


def test_variables_persist_across_cells(sandbox: Sandbox) -> None:
    ok(sandbox.run("total = 0\nnotes = []"))
    ok(sandbox.run("total += 5\nnotes.append('x')"))
    assert ok(sandbox.run("print(total, notes)")) == "5 ['x']\n"


def test_prints_from_functions_and_lambdas_of_earlier_cells_reach_this_cell(
    sandbox: Sandbox,
) -> None:
    ok(sandbox.run("def say(x):\n    print('said', x)\nshout = lambda x: print(x.upper())"))
    assert ok(sandbox.run("say(1)\nshout('a')")) == "said 1\nA\n"
    assert ok(sandbox.run("n = 2\nsay(n)")) == "said 2\n"


def test_a_set_prints_in_the_same_order_in_every_worker() -> None:
    """Cells that print a set or build a prompt from one give the same text in each run, so the
    calls that follow are found in the cache (the worker's hash seed is fixed)."""
    code = "print(list({'alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta'}))"
    printed = set()
    for _ in range(3):
        with Sandbox("x") as box:
            printed.add(ok(box.run(code)))
    assert len(printed) == 1


def test_lone_surrogates_do_not_reach_the_parent(sandbox: Sandbox) -> None:
    result = sandbox.run("s = chr(0xD800)\nprint('a' + s)\nFINAL(s)")
    assert result.error is None
    result.output.encode("utf-8")  # printable in the parent
    assert result.final is not None and result.final.encode("utf-8")


def test_reentrant_run_from_a_bridge_call_is_refused() -> None:
    holder: dict[str, Sandbox] = {}

    def again() -> str:
        return holder["sb"].run("print(1)").output

    with Sandbox("ctx", {"again": again}, LIMITS) as sb:
        holder["sb"] = sb
        result = sb.run("again()")
        assert "RuntimeError: again: Sandbox.run was called from inside" in (result.error or "")
        assert ok(sb.run("print(1+1)")) == "2\n"


def test_error_is_short_with_type_message_and_line(sandbox: Sandbox) -> None:
    result = sandbox.run("print('before')\nx = 1\ny = q + 1\nprint('after')")
    assert result.output == "before\n"
    assert result.error == "NameError: name 'q' is not defined (line 3: y = q + 1)"
    ok(sandbox.run("def f(a):\n    return a['missing']"))
    result = sandbox.run("print(1)\nf({})")
    assert result.error == "KeyError: 'missing' (earlier cell, line 2: return a['missing'])"
    result = sandbox.run("x = (1,\nprint(x)")
    assert result.error is not None and result.error.startswith("SyntaxError: ")
    assert "line 1" in result.error
    result = sandbox.run("a = 1\nb = a.__class__")
    assert result.error == (
        'PolicyError: not allowed in the sandbox: "__class__" is an invalid attribute name '
        'because it starts with "_". (line 2: b = a.__class__)'
    )


def test_final_and_final_var(sandbox: Sandbox) -> None:
    result = sandbox.run("FINAL('the answer')\nprint('still running')")
    assert (result.final, result.output, result.error) == ("the answer", "still running\n", None)
    result = sandbox.run("answer = {'n': 3}\nFINAL_VAR('answer')")
    assert result.final == "{'n': 3}"
    result = sandbox.run("FINAL_VAR('nope')")
    assert result.final is None
    error = result.error or ""
    assert "'nope'" in error and "answer" in error  # the name asked for, the variables there are
    assert ok(sandbox.run("print(1)")) == "1\n"  # final is per cell
    assert sandbox.run("Final(71)").final == "71"  # a spelling the root model writes at times


def test_common_modules_need_no_import(sandbox: Sandbox) -> None:
    code = "print(Counter('abca').most_common(1), re.sub('a', 'b', 'aa'), json.dumps([1]))"
    assert ok(sandbox.run(code)) == "[('a', 2)] bb [1]\n"
    assert ok(sandbox.run("re = 'mine'\nprint(re, math.floor(2.5), defaultdict(int)[1])")) == (
        "mine 2 0\n"
    )
    result = sandbox.run("FINAL_VAR('nope')")  # a rebound name is the cell's own variable
    assert " re " in (result.error or "").split("'nope'", 1)[1]  # listed among the variables
    assert ok(sandbox.run("print(collections.Counter is Counter)")) == "True\n"
    assert ok(sandbox.run("print(list(itertools.combinations([1, 2, 3], 2)))")) == (
        "[(1, 2), (1, 3), (2, 3)]\n"
    )


def test_bridge_round_trip_and_errors() -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def llm_query(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return {"text": f"echo {args[0]}", "n": [1, 2.5, None, True]}

    def broken(prompt: str) -> str:
        raise ValueError("model exploded")

    def weird() -> Any:
        return object()

    def slow() -> str:
        time.sleep(1.5)
        return "slept"

    bridge = {"llm_query": llm_query, "broken": broken, "weird": weird, "slow": slow}
    with Sandbox("ctx", bridge, SandboxLimits(wall_seconds=1, memory_mb=512)) as sb:
        out = ok(
            sb.run(
                "r = llm_query('hi', ('a', 1), opts={'t': 0.5, 'k': [None]})\nprint(r['text'], r['n'])"
            )
        )
        assert out == "echo hi [1, 2.5, None, True]\n"
        assert calls == [(("hi", ["a", 1]), {"opts": {"t": 0.5, "k": [None]}})]
        out = ok(sb.run("try:\n    broken('x')\nexcept RuntimeError as e:\n    print(e)"))
        assert out == "broken: model exploded\n"
        result = sb.run("weird()")
        assert "RuntimeError: weird: returned a value that is not plain data" in (
            result.error or ""
        )
        # Two bridge calls of 1.5 s each in a cell with a 1 s wall limit: bridge time is not cell time.
        result = sb.run("print(slow(), slow())")
        assert (result.output, result.error) == ("slept slept\n", None)
        assert result.seconds >= 3.0


def test_grep_and_chunks_on_str_and_dict_contexts() -> None:
    files = {"a.py": "def main():\n    return 1\n", "b.md": "# Title\nmain idea here\n"}
    with Sandbox(files, limits=LIMITS) as sb:
        out = ok(sb.run("for h in grep('main', window=5):\n    print(h)"))
        assert out == "a.py: def main():\nb.md: itle main idea\n"
        out = ok(sb.run("parts = chunks(size=30)\nprint(len(parts), parts[0])"))
        assert out.startswith("3 ### a.py\ndef main():\n")
        assert (
            ok(sb.run("print(grep('[unclosed', text='a [unclosed b', window=2))"))
            == "['a [unclosed b']\n"
        )
    with Sandbox(DOC * 100, limits=LIMITS) as sb:
        assert ok(sb.run("print(len(grep('bob')), len(grep('bob', max_hits=3)))")) == "50 3\n"
        out = ok(
            sb.run(
                "ps = chunks(size=100)\nprint(all(len(p) <= 100 for p in ps), ''.join(ps) == context)"
            )
        )
        assert out == "True True\n"


def test_grep_helper_details() -> None:
    text = "x" * 1000 + " NEEDLE  in\n\n the   haystack " + "y" * 1000
    assert grep("needle", text, window=10) == ["xxxxxxxxx NEEDLE in the"]
    assert grep("needle", text, window=10, ignore_case=False) == []
    assert grep("a+(", "a+( b", window=0) == ["a+("]  # invalid regex: literal search
    assert len(grep("x", "x" * 10**7, window=0, max_hits=5)) == 5
    assert grep("x", "xx xx", window=1) == ["xx", "xx"]  # no hit repeated inside a window


def test_chunks_helper_details() -> None:
    text = "First sentence here. Second one follows. " * 50
    pieces = chunks(text, size=100)
    assert all(len(p) <= 100 for p in pieces) and "".join(pieces) == text
    assert all(p.endswith(". ") for p in pieces[:-1])
    lines = "\n".join(f"line {i}" for i in range(100))
    assert all(p.endswith("\n") for p in chunks(lines, size=50)[:-1])
    overlapped = chunks("abcdefghij" * 10, size=30, overlap=10)
    assert all(len(p) <= 30 for p in overlapped)
    assert overlapped[1].startswith(overlapped[0][-10:])
    assert chunks({"f": "body"}, size=100) == ["### f\nbody"]
    with pytest.raises(ValueError):
        chunks("abc", size=10, overlap=10)


def test_output_cap_keeps_head_and_tail() -> None:
    limits = SandboxLimits(wall_seconds=3, memory_mb=512, output_chars=100)
    with Sandbox("ctx", limits=limits) as sb:
        result = sb.run("print('A' * 50 + 'B' * 1000 + 'C' * 50)")
        assert result.output == "A" * 50 + "\n[... 1001 characters cut ...]\n" + "C" * 49 + "\n"
        assert ok(sb.run("print('short')")) == "short\n"


def test_error_keeps_output_printed_before_it(sandbox: Sandbox) -> None:
    result = sandbox.run("for i in range(3):\n    print(i)\nraise ValueError('boom')")
    assert (result.output, result.error) == (
        "0\n1\n2\n",
        "ValueError: boom (line 3: raise ValueError('boom'))",
    )


def test_large_context_is_sent_once_and_cells_stay_fast() -> None:
    context = "All work and no play makes Jack a dull boy. 0123456789\n" * 1_850_000  # ~100 MB
    assert len(context) > 100_000_000
    started = time.monotonic()
    with Sandbox(context, limits=SandboxLimits(wall_seconds=10, memory_mb=512)) as sb:
        startup = time.monotonic() - started
        timings = []
        for code in ["print(len(context))", "print(context[:8])", "print(context.count('Jack'))"]:
            t = time.monotonic()
            result = sb.run(code)
            timings.append(time.monotonic() - t)
            assert result.error is None
        assert timings[1] < 1.0 and timings[2] < 1.0, timings
        t = time.monotonic()
        result = sb.run("while True:\n    pass")
        assert result.worker_restarted
        restart = time.monotonic() - t - result.seconds
        assert ok(sb.run("print(len(context))")) == f"{len(context)}\n"
    print(
        f"\n100-MB context: start {startup:.2f} s, cells {[round(x, 3) for x in timings]} s, "
        f"restart with context re-sent {restart:.2f} s"
    )


def test_worker_recovery_time() -> None:
    with Sandbox(DOC, limits=SandboxLimits(wall_seconds=1, memory_mb=512)) as sb:
        t0 = time.monotonic()
        result = sb.run("while True:\n    pass")
        t1 = time.monotonic()
        after = sb.run("print(1+1)")
        t2 = time.monotonic()
    assert result.worker_restarted and "exceeded the 1 s time limit" in (result.error or "")
    assert "all variables were lost" in (result.error or "")
    assert after.output == "2\n"
    kill_and_restart = t1 - t0 - result.seconds
    print(
        f"\nworker recovery: kill + fresh worker {kill_and_restart:.3f} s, next cell "
        f"{t2 - t1:.3f} s (timeout itself {result.seconds:.2f} s)"
    )
    assert kill_and_restart < 5.0


def test_close_is_idempotent_and_final() -> None:
    sb = Sandbox("ctx", limits=LIMITS)
    worker = sb._worker
    assert worker is not None
    sb.close()
    sb.close()
    assert worker.proc.poll() is not None and not os.path.exists(worker.tmpdir)
    with pytest.raises(SandboxError):
        sb.run("print(1)")


def test_worker_that_cannot_start_raises_sandbox_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'RestrictedPython'\" >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    with pytest.raises(SandboxError) as info:
        Sandbox("ctx", limits=LIMITS)
    assert str(info.value).startswith(
        "The sandbox worker could not start (ModuleNotFoundError: No module named 'RestrictedPython')"
    )
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(SandboxError, match="could not start"):
        Sandbox("ctx", limits=LIMITS)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(SandboxError, match="could not be started"):
        Sandbox("ctx", limits=LIMITS)


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        Sandbox(["not", "a", "context"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Sandbox("ctx", {"FINAL": lambda x: x})
    with pytest.raises(ValueError):
        Sandbox("ctx", {"_private": lambda: 1})


def test_worker_module_imports_no_model_code() -> None:
    probe = "import sys, rlm_local.sandbox.worker; print('llama_cpp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_grep_falls_back_to_definitions_or_the_rarest_word() -> None:
    source = {
        "profile.py": (
            "class Profile:\n    def runctx(self, cmd, globals, locals):\n        pass\n\n"
            + "# filler\n" * 40
            + "def runctx(statement, globals, locals, sort=-1):\n    pass\n"
        ),
        "other.py": "x = globals()\n",
    }
    with Sandbox(source, limits=SandboxLimits(wall_seconds=10)) as sandbox:
        result = sandbox.run(
            "hits = grep(r'def runctx\\(self, frame, globals, locals, sort=None\\):')\n"
            "print(len(hits))\nprint(hits[0])\nprint(hits[1])"
        )
        assert result.error is None, result.error
        hit = "profile.py: def runctx(statement, globals, locals, sort=-1): pass"
        count, first_line = result.output.splitlines()[:2]
        # the hit, after a note naming the definitions it fell back to
        assert count == "2" and first_line.endswith(hit) and "'runctx'" in first_line[: -len(hit)]
        first, second = result.output.splitlines()[1:3]
        assert "sort=-1" in first and "cmd" not in first  # the top-level function comes first
        assert "cmd" in second
        words = sandbox.run("print(grep('globals and locals and zebra')[0])")
        noted = words.output.splitlines()[0]  # the rarest of the words that occur
        assert "'locals'" in noted and "'globals'" not in noted and "'zebra'" not in noted
        exact = sandbox.run("print(grep('zebra'))\nprint(grep('zebra crossing here'))")
        assert exact.output == "[]\n[]\n"  # nothing to fall back to: still empty


CODE = {
    "a.py": "import os\n\nclass Box:\n    def open(self, force=False):\n        return 1\n",
    "b.py": (
        "def open(path,\n         mode='r', *,\n         buffering=-1):\n"
        '    """Open."""\n\n    return path\n\nVALUE = open\n'
    ),
}


def test_source_reads_definitions_top_level_first() -> None:
    text = source("open", CODE)
    # A signature over lines, keyword-only defaults and `=-1` (one token to the model) included.
    defaults = "# defaults: mode = 'r', buffering = -1\n"
    assert text.startswith(f"# b.py line 1\n{defaults}def open(path,\n         mode='r', *,\n")
    assert "    return path" in text and "VALUE" not in text  # the body, not what follows
    method = "# a.py line 4\n# defaults: force = False\n    def open(self, force=False):\n"
    assert method + "        return 1" in text
    assert source("def Box(", CODE).startswith("# a.py line 3\nclass Box:\n    def open")
    assert source("Box.open", CODE) == text  # the last name is the one looked up
    assert source("open", CODE, max_defs=1) == text.split("\n\n# a.py")[0]  # top level first
    missing = source("nothing", CODE)
    assert not missing.startswith("#") and "grep('nothing')" in missing  # no def: what to try
    # A constant: its top-level assignment, with the lines its value runs over.
    table = {"c.py": "X = 1\nTABLE: dict[str, int] = {\n    'a': 1,\n    'b': 2,\n}\nY = TABLE\n"}
    assert source("TABLE", table) == "# c.py line 2\nTABLE: dict[str, int] = {\n    'a': 1,\n" \
        "    'b': 2,\n}"  # fmt: skip
    assert source("VALUE", CODE) == "# b.py line 8\nVALUE = open"
    assert source("mode", CODE) == missing.replace("nothing", "mode")  # a parameter is no constant
    assert source("open", CODE, max_lines=2).startswith(f"# b.py line 1\n{defaults}def open(")
    no_defaults = {"c.py": "def run(a, b): return a\n"}  # nothing to list: no line
    assert source("run", no_defaults) == "# c.py line 1\ndef run(a, b): return a"
    # Printed, a definition shows max_lines lines; the str holds them all, for counts and regexes.
    cut = source("open", CODE, max_lines=2)
    assert "4 more lines" in str(cut) and "\n\n# a.py line 4" in str(cut)
    assert "    return path" in cut and "    return path" not in str(cut)


def test_source_in_a_cell() -> None:
    with Sandbox(CODE) as code_sandbox:
        assert ok(code_sandbox.run("print(source('Box'))")).startswith("# a.py line 3\nclass Box")
        counted = "code = source('open', max_lines=1)\nprint(code)\nprint(code.count('return'))"
        printed = ok(code_sandbox.run(counted))
        assert "1 more line" in printed and printed.endswith("\n2\n")
        assert "return path" not in printed  # the count saw lines the print cut
        result = code_sandbox.run("source(42)")
        assert "source: name must be a str" in (result.error or "")


def test_printed_grep_hits_show_code_quotes_as_written() -> None:
    code = {"ast.py": 'def parse(source, mode=\'exec\'):\n    """Parse."""\n', "b.py": "exec = 1\n"}
    with Sandbox(code, limits=SandboxLimits(wall_seconds=10)) as sandbox:
        result = sandbox.run(
            "hits = grep('exec')\nprint(hits[:5])\nprint(len(hits), hits[1], isinstance(hits[0], str))"
        )
        assert result.error is None, result.error
        assert result.output == (
            '[\'ast.py: def parse(source, mode=\'exec\'): """Parse."""\',\n'
            " 'b.py: exec = 1']\n"
            "2 b.py: exec = 1 True\n"
        )


def test_counter_prints_one_count_a_line_with_its_ends_marked() -> None:
    with Sandbox("x", limits=SandboxLimits(wall_seconds=10)) as sandbox:
        result = sandbox.run(
            "c = Counter(['a', 'b', 'b', 'c', 'c', 'c', 'd'])\nprint(c)\n"
            "from collections import Counter as C\nprint(C('xy'), c.most_common(1), c['b'])"
        )
        assert result.error is None, result.error
        assert result.output == (
            "Counter of 4 different values, counts adding up to 7, most common first:\n"
            "  'c': 3  (most common)\n  'b': 2\n  'a': 1  (least common)\n"
            "  'd': 1  (least common)\n"
            "Counter of 2 different values, counts adding up to 2, most common first:\n"
            "  'x': 1\n  'y': 1 [('c', 3)] 2\n"
        )
        odd = sandbox.run("c = Counter()\nc['a'] = 'x'\nc['b'] = 'y'\nprint(c)")
        assert odd.output.startswith("Counter of 2 different values, most common first:\n")


def test_a_final_comes_with_a_short_line_for_each_value_of_the_cell() -> None:
    code = (
        "import re\n"
        "pairs = re.findall(r'(\\w+)=(\\d+)', context)\n"
        "empty = [p for p in pairs if p[0] == 'zzz']\n"
        "counts = Counter(name for name, _ in pairs)\n"
        "long_text = context * 10\n"
        "def helper(x):\n"
        "    return x\n"
        "FINAL(len(empty))"
    )
    with Sandbox("a=1 b=2 a=3") as sandbox:
        result = sandbox.run(code)
        assert sandbox.run("print(1)").values is None  # only with a FINAL
    assert result.final == "0"
    assert result.values == (
        "pairs = list of 3 items, first: ('a', '1'), ('b', '2')\n"
        "empty = list of 0 items (empty)\n"
        "counts = Counter of 2 items, first: 'a': 2, 'b': 1\n"
        "long_text = 'a=1 b=2 a=3a=1 b=2 a=3a=1 b=2 a=3a=1 b=2 a=3a=1 b=2 a=3a... (110 chars)"
    )  # modules and functions left out; values in the order they were set


def test_records_parse_key_value_lines_by_their_shared_fields() -> None:
    lines = [
        "Date: Jan 01, 2024 || User: 501 || Text: Where is Note: the key? a, User: b",
        "",
        "Date: Feb 02, 2023 || User: 007 || Text: What does RAM mean?",  # kept as written
    ]
    with Sandbox("\n".join(lines), limits=SandboxLimits(wall_seconds=10)) as sandbox:
        result = sandbox.run("rows = records()\nprint(len(rows))\nprint(rows[0])\nprint(rows[1])")
        assert result.error is None, result.error
        assert result.output == (
            "2\n{'Date': 'Jan 01, 2024', 'User': 501, 'Text': 'Where is Note: the key? a, User: b'}"
            "\n{'Date': 'Feb 02, 2023', 'User': '007', 'Text': 'What does RAM mean?'}\n"
        )
        listed = sandbox.run(
            "print(records(['Level: ERROR; Msg: disk full', 'Level: INFO; Msg: ok']))"
        )
        assert listed.output == (
            "[{'Level': 'ERROR', 'Msg': 'disk full'}, {'Level': 'INFO', 'Msg': 'ok'}]\n"
        )
        prose = sandbox.run("records('Just prose.\\nNothing: here at all.\\nMore prose.')")
        assert prose.error is not None
        assert prose.error.startswith("ValueError: records")  # says which helper refused
        assert "Traceback" not in prose.error


def test_a_cell_ending_in_a_bare_expression_shows_its_value(sandbox: Sandbox) -> None:
    assert ok(sandbox.run("words = 'b a b'.split()\nCounter(words)['b']")) == "2\n"
    assert ok(sandbox.run("words")) == "['b', 'a', 'b']\n"
    assert ok(sandbox.run("x = 1;  x + 1")) == "2\n"
    assert ok(sandbox.run("len(words)\n# a closing comment")) == "3\n"
    # None (print, sort, FINAL) and a string literal standing as a comment show nothing; only the
    # last statement is shown, as in a notebook.
    assert ok(sandbox.run("words.sort()")) == ""
    assert ok(sandbox.run("'a note to self'")) == ""
    assert ok(sandbox.run("len(words)\nprint('done')")) == "done\n"
    assert ok(sandbox.run("for w in words:\n    w")) == ""
    result = sandbox.run("FINAL(len(words))")
    assert (result.final, result.output) == ("3", "")


def test_a_cell_nested_too_deeply_to_compile_is_an_error_not_a_crash(sandbox: Sandbox) -> None:
    ok(sandbox.run("kept = 7"))
    result = sandbox.run("x = " + "not " * 5000 + "1")
    assert result.error == "RecursionError: the cell is nested too deeply to compile"
    assert not result.worker_restarted and ok(sandbox.run("print(kept)")) == "7\n"


@pytest.mark.parametrize("name", ["search", "find_lines", "source", "records", "FINAL"])
def test_a_bridge_function_named_like_a_helper_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid bridge name"):
        Sandbox(DOC, bridge={name: lambda: None}, limits=LIMITS)


def test_a_guessed_path_of_a_directory_input_names_the_closest_ones() -> None:
    files = {"http.py": "CODES = {}\n", "datastructures/mixins.py": "x = 1\n", "wsgi.py": ""}
    with Sandbox(files, limits=LIMITS) as sb:
        result = sb.run("print(context['datastructures/http.py'])")
        assert result.error is not None and not result.worker_restarted
        assert "KeyError" in result.error
        assert "['http.py'" in result.error  # the closest paths, the same file name first
        assert ok(sb.run("print(context['http.py'], context.get('nope'), len(context))")) == (
            "CODES = {}\n None 3\n"
        )
        assert ok(sb.run("print(sorted(context)[:1], isinstance(context, dict))")) == (
            "['datastructures/mixins.py'] True\n"
        )
        assert ok(sb.run("FINAL(str(len(dict(context))))")) == ""
