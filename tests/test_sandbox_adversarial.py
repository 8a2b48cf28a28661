"""Hostile cells: each must fail cleanly, and the sandbox must keep working afterwards.

One sandbox serves the whole corpus (a replacement worker takes over after a kill), so each case
also proves that the worker, or its replacement, still runs a normal cell and that the parent
process is unharmed.
"""

# The cell tables below read best one cell per line.
# ruff: noqa: E501

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_local.sandbox import Sandbox, SandboxLimits
from rlm_local.sandbox import worker as worker_module
from rlm_local.sandbox.helpers import make_helpers
from rlm_local.sandbox.modules import ModuleProxy, build_module_proxies, proxy_attrs
from rlm_local.sandbox.policy import FORBIDDEN_OBJECTS, CellPolicy, PolicyError
from rlm_local.sandbox.protocol import to_exact

LIMITS = SandboxLimits(wall_seconds=3, cpu_seconds=20, memory_mb=512, output_chars=2000)
CONTEXT = "The quick brown fox.\nSecret code: 1234.\n" * 50

# (id, cell, substring the error must contain). An empty substring: any error will do.
CORPUS: list[tuple[str, str, str]] = [
    # imports of dangerous modules, in every spelling
    ("import-os", "import os\nos.system('id')", "import of 'os' is not allowed"),
    ("import-sys", "import sys\nprint(sys.modules)", "import of 'sys' is not allowed"),
    ("import-subprocess", "import subprocess", "not allowed"),
    ("import-socket", "import socket\nsocket.socket()", "not allowed"),
    ("import-ctypes", "import ctypes", "not allowed"),
    ("import-importlib", "import importlib\nimportlib.import_module('os')", "not allowed"),
    ("import-builtins", "import builtins\nbuiltins.open('/etc/passwd')", "not allowed"),
    ("from-os-import", "from os import system\nsystem('id')", "not allowed"),
    ("import-os-path-as", "import os.path as p", "not allowed"),
    ("import-json-submodule", "import json.decoder", "not allowed"),
    ("from-json-import-submodule", "from json import decoder", "cannot import 'decoder'"),
    ("from-collections-import-abc", "from collections import abc", "cannot import 'abc'"),
    ("from-re-import-star", "from re import *", "PolicyError"),
    ("relative-import", "from . import worker", "not allowed"),
    ("dunder-import", "__import__('os').system('id')", "PolicyError"),
    # dunder walks
    ("subclasses-walk", "().__class__.__bases__[0].__subclasses__()", "PolicyError"),
    ("mro-walk", "class A:\n    pass\nA.mro()[-1].__subclasses__()", "PolicyError"),
    ("func-globals", "f = lambda: 0\nprint(f.__globals__)", "PolicyError"),
    ("builtins-dict", "print(__builtins__['open'])", "PolicyError"),
    ("code-object", "f = lambda: 0\nprint(f.__code__.co_code)", "PolicyError"),
    # forbidden builtins
    ("getattr", "getattr(1, '__class__')", "NameError"),
    ("vars", "print(vars())", "NameError"),
    ("globals", "print(globals())", "NameError"),
    ("locals", "print(locals())", "NameError"),
    ("eval", "eval('1+1')", "Eval calls are not allowed"),
    ("exec", "exec('x = 1')", "Exec calls are not allowed"),
    ("compile", "compile('1', 'f', 'eval')", "NameError"),
    ("open-read", "print(open('/etc/passwd').read())", "NameError"),
    ("type-3-args", "T = type('T', (), {})", "NameError"),
    ("setattr", "setattr(grep, 'x', 1)", "NameError"),
    ("breakpoint", "breakpoint()", "reserved name"),
    ("eval-alias", "e = eval\ne('1')", "NameError"),
    # str.format and string.Formatter tricks
    ("format-class", "print('{0.__class__}'.format(1))", "format field {0.__class__}"),
    ("format-globals", "f = lambda: 0\nprint('{.__globals__}'.format(f))", "not allowed"),
    ("format-index", "print('{0[0]}'.format(['a']))", "not allowed"),
    ("format-map-attr", "print('{x.__init__}'.format_map({'x': grep}))", "not allowed"),
    ("str-format-unbound", "print(str.format('{0.__class__.__mro__}', 1))", "not allowed"),
    ("format-nested-spec", "print('{0:{1.__class__}}'.format(1, 2))", "not allowed"),
    (
        "string-formatter",
        "import string\nstring.Formatter().format('{0.__class__}', 1)",
        "has no attribute 'Formatter'",
    ),
    ("from-string-formatter", "from string import Formatter", "cannot import 'Formatter'"),
    # generator, frame and traceback attributes
    ("gi-frame", "g = (x for x in [1])\nprint(g.gi_frame.f_back.f_globals)", "gi_frame"),
    ("gi-code", "def gen():\n    yield 1\nprint(gen().gi_code)", "gi_code"),
    (
        "traceback-frame",
        "try:\n    1/0\nexcept Exception as e:\n    print(e.__traceback__.tb_frame)",
        "PolicyError",
    ),
    (
        "traceback-via-format",
        "try:\n    1/0\nexcept Exception as e:\n    print('{0.__traceback__}'.format(e))",
        "not allowed",
    ),
    (
        "attributeerror-obj",
        "try:\n    grep.nope\nexcept AttributeError as e:\n    print(e.obj)",
        "PolicyError",
    ),
    # walks toward sys/os through the allowed modules
    ("json-codecs-sys", "import json\nprint(json.codecs.sys.modules)", "has no attribute 'codecs'"),
    ("json-decoder", "import json\nprint(json.decoder.scanner)", "has no attribute 'decoder'"),
    ("re-private", "import re\nprint(re._compile)", "PolicyError"),
    ("re-functools", "import re\nprint(re.functools)", "has no attribute 'functools'"),
    ("statistics-sys", "import statistics\nprint(statistics.sys)", "has no attribute 'sys'"),
    ("datetime-sys", "import datetime\nprint(datetime.sys)", "has no attribute 'sys'"),
    ("textwrap-re", "import textwrap\nprint(textwrap.re)", "has no attribute 're'"),
    ("random-os", "import random\nprint(random._os)", "PolicyError"),
    ("collections-abc", "import collections\nprint(collections.abc)", "has no attribute 'abc'"),
    ("module-write", "import re\nre.findall = None", "cannot modify"),
    # operator / functools helpers that read attributes by name
    (
        "attrgetter",
        "import operator\noperator.attrgetter('__class__')(1)",
        "has no attribute 'attrgetter'",
    ),
    ("from-methodcaller", "from operator import methodcaller", "cannot import 'methodcaller'"),
    ("functools-wraps", "from functools import wraps", "cannot import 'wraps'"),
    (
        "update-wrapper",
        "import functools\nfunctools.update_wrapper(grep, chunks)",
        "has no attribute",
    ),
    ("json-cls", "import json\njson.dumps(1, cls=dict)", "json.dumps(cls=...) is not allowed"),
    # syntax the policy refuses
    ("except-star", "try:\n    pass\nexcept* ValueError:\n    pass", "TryStar"),
    ("async-def", "async def f():\n    pass", "AsyncFunctionDef"),
    ("nonlocal", "def f():\n    x = 1\n    def g():\n        nonlocal x\n    g()", "Nonlocal"),
    ("metaclass-kw", "class A(metaclass=list):\n    pass", "metaclass"),
    ("print-file", "print('x', file=context)", "print(file=...)"),
    ("augassign-dunder", "f = lambda: 0\nf.__globals__ += 1", "PolicyError"),
    ("augassign-module", "import re\nre.findall += 'x'\n", "TypeError"),
    ("augassign-module-str", "import string\nstring.digits += 'x'", "cannot modify"),
    ("augassign-frame", "g = (x for x in [1])\ng.gi_frame += 1", "PolicyError"),
    (
        "match-class-pattern",
        "match 1:\n    case int(real=r):\n        print(r)",
        "Match statements",
    ),
    ("del-module-attr", "import re\ndel re.findall", "cannot modify a module"),
    ("mro-object", "o = str.mro()[1]", "access to object"),
    ("splat-module", "def f(**kw):\n    return kw\nimport re\nf(**re)", "must be a mapping"),
    ("name-mangled", "class A:\n    def __init__(self):\n        self.__x = 1", "PolicyError"),
    # resource exhaustion
    ("memory-str", "s = 'x' * 10**10", "MemoryError"),
    ("memory-list", "a = [0] * 10**10", "MemoryError"),
    ("memory-grow", "x = []\nwhile True:\n    x.append('y' * 10**6)", "MemoryError"),
    ("cpu-loop", "while True:\n    pass", "time limit"),
    ("redos", "import re\nre.match('(a+)+$', 'a' * 64 + 'b')", "time limit"),
    ("recursion", "def f(n):\n    return f(n + 1)\nf(0)", "RecursionError"),
    ("nested-repr", "x = []\nfor i in range(200000):\n    x = [x]\nprint(str(x)[:10])", ""),
    # processes and files
    ("fork", "import os\nos.fork()", "not allowed"),
    ("multiprocessing", "import multiprocessing", "not allowed"),
    ("pty-spawn", "import pty\npty.spawn('/bin/sh')", "not allowed"),
    ("file-write", "open('pwned.txt', 'w').write('x')", "NameError"),
    ("pathlib-write", "import pathlib\npathlib.Path('pwned').write_text('x')", "not allowed"),
    ("io-open", "import io\nio.open('pwned', 'w')", "not allowed"),
    ("tempfile", "import tempfile", "not allowed"),
    # the bridge only takes plain data
    ("bridge-function-arg", "llm_query(lambda: 1)", "llm_query: argument 1 is of type function"),
    ("bridge-module-arg", "import re\nllm_query(prompt=re)", "only plain data"),
    ("bridge-nonstr-key", "llm_query({1: 'a'})", "keys must be str"),
    ("bridge-cycle", "x = []\nx.append(x)\nllm_query(x)", "nested more than"),
]


def _parent_state() -> dict[str, Any]:
    return {
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "cwd_files": sorted(os.listdir(".")),
    }


@pytest.fixture(scope="module")
def bridge_calls() -> list[tuple[Any, ...]]:
    return []


@pytest.fixture(scope="module")
def sandbox(bridge_calls: list[tuple[Any, ...]]) -> Iterator[Sandbox]:
    def llm_query(*args: Any, **kwargs: Any) -> str:
        bridge_calls.append((args, kwargs))
        return "ok"

    with Sandbox(CONTEXT, {"llm_query": llm_query}, LIMITS) as sb:
        yield sb


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40
    assert len({case_id for case_id, _, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("code", "expected"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_hostile_cell_fails_cleanly(
    sandbox: Sandbox, bridge_calls: list[tuple[Any, ...]], code: str, expected: str
) -> None:
    before = _parent_state()
    calls_before = len(bridge_calls)
    result = sandbox.run(code)
    assert result.error, f"cell was not blocked: {code!r} -> {result.output!r}"
    assert expected in result.error, result.error
    assert "Traceback" not in result.error and len(result.error) < 2000
    assert result.final is None
    assert len(bridge_calls) == calls_before  # nothing reached the parent's callables
    after = sandbox.run("print(1+1)")
    assert (after.output, after.error) == ("2\n", None)
    assert _parent_state() == before


def test_huge_output_is_capped(sandbox: Sandbox) -> None:
    result = sandbox.run("print('x' * 10**8)")
    assert result.error is None
    assert len(result.output) < LIMITS.output_chars + 100
    cut = 10**8 + 1 - LIMITS.output_chars
    assert f"[... {cut} characters cut ...]" in result.output
    result = sandbox.run("for i in range(200000):\n    print(i)")
    assert result.output.startswith("0\n1\n2\n") and result.output.endswith("199999\n")
    assert len(result.output) < LIMITS.output_chars + 100
    assert sandbox.run("print(1+1)").output == "2\n"


def test_rebinding_sandbox_names_does_not_reach_the_next_cell(
    sandbox: Sandbox, bridge_calls: list[tuple[Any, ...]]
) -> None:
    result = sandbox.run(
        "context = 'evil'\nllm_query = None\nFINAL = None\nFINAL_VAR = 1\ngrep = 2\nchunks = 3"
    )
    assert result.error is None
    assert "restored before every cell" in result.output
    result = sandbox.run(
        "print(context[:9])\nprint(llm_query('x'))\nFINAL('done')\nprint(len(grep('fox', window=0)))"
    )
    assert result.error is None, result.error
    assert result.output == "The quick\nok\n50\n"
    assert result.final == "done"
    assert bridge_calls[-1] == (("x",), {})


def test_mutating_a_dict_context_does_not_reach_the_next_cell() -> None:
    with Sandbox({"a.txt": "alpha", "b.txt": "beta"}, limits=LIMITS) as sb:
        assert sb.run("context['a.txt'] = 'evil'\ncontext.clear()").error is None
        assert sb.run("print(context['a.txt'], len(context))").output == "alpha 2\n"


def test_cpu_limit_kills_and_replaces_the_worker() -> None:
    limits = SandboxLimits(wall_seconds=20, cpu_seconds=1, memory_mb=512)
    with Sandbox("ctx", limits=limits) as sb:
        sb.run("kept = 1")
        result = sb.run("while True:\n    pass")
        assert result.worker_restarted and "CPU time" in (result.error or "")
        assert "variables were lost" in (result.error or "")
        assert sb.run("print(1+1)").output == "2\n"
        assert "NameError" in (sb.run("print(kept)").error or "")
        assert sb.restarts == 1


def test_worker_death_is_handled_like_a_timeout() -> None:
    with Sandbox("ctx", limits=LIMITS) as sb:
        os.kill(sb._worker.proc.pid, signal.SIGSEGV)  # as CPython gives on some deep structures
        result = sb.run("print(1)")
        assert result.worker_restarted and "SIGSEGV" in (result.error or "")
        assert sb.run("print(1+1)").output == "2\n"


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x00\x00\x00\x00\x00\x00\x05{oops", b"\xff" * 8, b"\x00" * 7 + b"\x02[]"],
    ids=["bad-json", "huge-frame", "not-an-object"],
)
def test_garbage_on_the_pipe_replaces_the_worker(garbage: bytes) -> None:
    with Sandbox("ctx", limits=LIMITS) as sb:
        real = sb._worker
        fake_parent, fake_worker = socket.socketpair()
        real.sock.close()
        real.sock = fake_parent
        fake_worker.sendall(garbage)
        result = sb.run("print(1)")
        fake_worker.close()
        assert result.worker_restarted and "invalid message" in (result.error or "")
        assert real.proc.poll() is not None
        assert sb.run("print(1+1)").output == "2\n"


def test_worker_cannot_write_files_and_runs_in_an_empty_dir(tmp_path: Path) -> None:
    with Sandbox("ctx", limits=LIMITS) as sb:
        sb.run("print(1)")  # the CPU limit is set per cell
        pid = sb._worker.proc.pid
        limits = Path(f"/proc/{pid}/limits").read_text()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
        assert "rlm-sandbox-" in cwd
        assert os.listdir(cwd) == []
        keys = {e.split(b"=", 1)[0].decode() for e in environ if e}
        assert keys <= {
            "PATH",
            "PYTHONPATH",
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONIOENCODING",
            "PYTHONHASHSEED",
            "LC_ALL",
        }
        rows = {line[:26].strip(): line[26:].split() for line in limits.splitlines()[1:]}
        assert rows["Max file size"][:2] == ["0", "0"]
        assert rows["Max core file size"][:2] == ["0", "0"]
        assert rows["Max processes"][:2] == ["0", "0"]
        assert rows["Max address space"][0] != "unlimited"
        assert rows["Max cpu time"][0] != "unlimited"
        open_fds = os.listdir(f"/proc/{pid}/fd")
        assert len(open_fds) == 4  # stdin, stdout, stderr, the socket: nothing of the parent's
    assert not os.path.exists(cwd)  # scratch dir removed on close


def test_worker_limits_make_file_writes_fail_with_an_error(tmp_path: Path) -> None:
    """Defence in depth: even code that reached `open` could not write a byte."""
    probe = (
        "from rlm_local.sandbox.worker import apply_limits\n"
        "apply_limits(256)\n"
        "try:\n"
        f"    open({str(tmp_path / 'f')!r}, 'w').write('x' * 10000)\n"
        "except OSError as e:\n"
        "    print('refused', e.strerror)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.stdout.strip() == "refused File too large", out.stderr
    assert (tmp_path / "f").read_text() == ""


# --- the policy, audited from the parent ------------------------------------------------------


def _walk(roots: dict[str, Any], depth: int) -> Iterator[tuple[str, Any]]:
    """Every object reachable through public attribute names, breadth first."""
    seen: set[int] = set()
    frontier = list(roots.items())
    for _ in range(depth):
        next_frontier = []
        for path, obj in frontier:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            yield path, obj
            names = list(proxy_attrs(obj)) if type(obj) is ModuleProxy else dir(obj)
            for name in names:
                if name.startswith("_"):
                    continue
                try:
                    value = getattr(obj, name)
                except Exception:
                    continue
                next_frontier.append((f"{path}.{name}", value))
        frontier = next_frontier


def test_nothing_reachable_from_allowed_modules_or_builtins_is_dangerous() -> None:
    policy = CellPolicy(100)
    roots: dict[str, Any] = {f"import {n}": p for n, p in policy.proxies.items()}
    roots.update({n: v for n, v in policy.builtins.items() if not n.startswith("__")})
    forbidden = {id(o) for o in FORBIDDEN_OBJECTS}
    count = 0
    for path, obj in _walk(roots, depth=4):
        count += 1
        assert not isinstance(obj, types.ModuleType), path
        assert not isinstance(obj, types.FrameType | types.CodeType | types.TracebackType), path
        assert id(obj) not in forbidden, path
    assert count > 1000  # the walk really went through the attribute graph


def test_every_proxy_attribute_is_not_a_module() -> None:
    for name, proxy in build_module_proxies().items():
        attrs = proxy_attrs(proxy)
        assert attrs, name
        for attr, value in attrs.items():
            assert not isinstance(value, types.ModuleType), f"{name}.{attr}"
        with pytest.raises(AttributeError):
            proxy.__name__  # noqa: B018 - no __name__: `from m import x` cannot fall back
        with pytest.raises(TypeError):
            proxy.anything = 1


def test_guard_refuses_modules_frames_and_private_names() -> None:
    policy = CellPolicy(100)
    getattr_ = policy.guarded_getattr
    gen = (i for i in [1])
    for obj, name in [(gen, "gi_frame"), (gen, "gi_code"), (1, "__class__"), (getattr_, "_x")]:
        with pytest.raises(PolicyError):
            getattr_(obj, name)
    holder = types.SimpleNamespace(mod=os, frame=None)
    with pytest.raises(PolicyError):
        getattr_(holder, "mod")
    with pytest.raises(PolicyError):
        policy.guarded_getitem({"m": os}, "m")
    with pytest.raises(AttributeError):
        getattr_(policy.proxies["json"], "codecs")


@pytest.mark.parametrize("module", sorted(build_module_proxies()))
def test_in_cell_walk_of_each_module_reaches_no_hidden_attribute(
    sandbox: Sandbox, module: str
) -> None:
    """Try, inside a cell, every public name the real module has but the proxy does not."""
    real = __import__(module)
    exposed = set(proxy_attrs(build_module_proxies()[module]))
    hidden = [n for n in dir(real) if not n.startswith("_") and n not in exposed]
    lines = [f"import {module} as m", "reached = []"]
    for name in hidden:
        lines += [
            "try:",
            f"    v = m.{name}",
            f"    reached.append('{name}')",
            "except Exception:",
            "    pass",
        ]
    lines.append("print(reached)")
    result = sandbox.run("\n".join(lines))
    assert (result.output, result.error) == ("[]\n", None)


# --- values that cross: exact built-in types only ---------------------------------------------

# A str subclass whose methods lie: every check trusted code could make through them says yes
# to anything, and each call is recorded in `hijacked` (printed at the end of the cell).
LIAR = """
hijacked = []
class S(str):
    def startswith(self, *a):
        hijacked.append('startswith')
        return False
    def endswith(self, *a):
        hijacked.append('endswith')
        return False
    def isidentifier(self):
        hijacked.append('isidentifier')
        return True
    def strip(self, *a):
        hijacked.append('strip')
        return '__builtins__'
    def split(self, *a, **k):
        hijacked.append('split')
        return ['__builtins__']
    def splitlines(self, *a):
        hijacked.append('splitlines')
        return ['Key: a || Other: b']
    def lower(self):
        hijacked.append('lower')
        return '__builtins__'
    def encode(self, *a, **k):
        hijacked.append('encode')
        return b''
    def replace(self, *a):
        hijacked.append('replace')
        return '__builtins__'
class L(list):
    def copy(self):
        hijacked.append('copy')
        return []
    def index(self, *a):
        hijacked.append('index')
        return 0
class D(dict):
    def items(self):
        hijacked.append('items')
        return [('__builtins__', 1)]
    def keys(self):
        hijacked.append('keys')
        return ['__builtins__']
    def values(self):
        hijacked.append('values')
        return []
    def get(self, *a):
        hijacked.append('get')
        return '__builtins__'
class C(Counter):
    def most_common(self, n=None):
        hijacked.append('most_common')
        return [('__builtins__', 1)]
"""
EXACT = (str, int, float, bool, type(None))


def _exact_types(value: Any) -> bool:
    """Whether `value` is made only of exact built-in types, all the way down."""
    kind = type(value)
    if kind in (list, tuple):
        return all(_exact_types(item) for item in value)
    if kind is dict:
        return all(type(k) is str and _exact_types(v) for k, v in value.items())
    return kind in EXACT


@pytest.fixture(scope="module")
def typed_calls() -> list[tuple[str, Any, Any]]:
    return []


@pytest.fixture(scope="module")
def typed(typed_calls: list[tuple[str, Any, Any]]) -> Iterator[Sandbox]:
    """A sandbox whose bridge functions record what reaches them."""

    def recorder(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            typed_calls.append((name, args, kwargs))
            return "ok"

        return call

    names = ["llm_query", "llm_query_batched", "classify", "rlm_query"]
    with Sandbox(CONTEXT, {n: recorder(n) for n in names}, LIMITS) as sb:
        yield sb


NAME_CHECK_ATTACKS = [
    "FINAL_VAR(S('__builtins__'))",
    "FINAL_VAR(S('_getattr_'))",
    "FINAL_VAR(S('__name__'))",
    "FINAL_VAR(S('llm_query'))",
    "FINAL_VAR(S('context'))",
    "FINAL_VAR(S('nothing_here'))",
    "FINAL_VAR(name=S('__builtins__'))",
    "Final_name = S('__builtins__')\nFINAL_VAR(Final_name)",
]


@pytest.mark.parametrize("attack", NAME_CHECK_ATTACKS)
def test_final_var_checks_a_plain_copy_of_the_name(typed: Sandbox, attack: str) -> None:
    result = typed.run(LIAR + attack)
    assert result.final is None, result.final
    assert result.error is not None and result.error.startswith("NameError: FINAL_VAR")
    assert "guarded" not in result.error and "<function" not in result.error
    assert typed.run("print(hijacked)").output == "[]\n"  # no lying method was asked


def test_final_var_of_a_real_variable_named_by_a_subclass_still_works(typed: Sandbox) -> None:
    result = typed.run(LIAR + "answer = S('forty-two')\nFINAL_VAR(S('answer'))\nprint(hijacked)")
    assert (result.final, result.error, result.output) == ("forty-two", None, "[]\n")


@pytest.mark.parametrize(
    ("value", "final"),
    [
        ("S('plain')", "plain"),
        ("L([S('a'), 1])", "['a', 1]"),
        ("D(a=S('b'))", "{'a': 'b'}"),
        ("C('aab')", "{'a': 2, 'b': 1}"),
        ("(S('x'), L([2]))", "('x', [2])"),
        ("{S('k'): L([D(z=1)])}", "{'k': [{'z': 1}]}"),
        ("{S('only')}", "{'only'}"),
        ("True", "True"),
        ("3.5", "3.5"),
    ],
)
def test_final_answers_with_a_plain_copy(typed: Sandbox, value: str, final: str) -> None:
    result = typed.run(LIAR + f"FINAL({value})\nprint(hijacked)")
    assert (result.final, result.error, result.output) == (final, None, "[]\n")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("lambda: 1", "FINAL: the answer is of type function"),
        ("grep", "FINAL: the answer is of type function"),
        ("re", "FINAL: the answer is of type ModuleProxy"),
        ("[1, [Holder()]]", "FINAL: the answer[1][0] is of type Holder"),
        ("{'k': Holder()}", "FINAL: the answer['k'] is of type Holder"),
        ("loop", "FINAL: the answer[0] contains itself"),
    ],
)
def test_final_refuses_what_has_no_plain_copy(typed: Sandbox, value: str, expected: str) -> None:
    setup = "class Holder:\n    pass\nloop = []\nloop.append(loop)\n"
    result = typed.run(setup + f"FINAL({value})")
    assert result.final is None
    assert result.error is not None and result.error.startswith(f"TypeError: {expected}")
    assert "FINAL(str(answer))" in result.error
    assert typed.run("print(1+1)").output == "2\n"


BRIDGE_ATTACKS = [
    ("llm_query(S('__builtins__'))", "llm_query"),
    ("llm_query(prompt=S('x'))", "llm_query"),
    ("llm_query(**D(prompt=S('x')))", "llm_query"),
    ("llm_query([S('a'), (S('b'), L([S('c')]))])", "llm_query"),
    ("llm_query(D(k=C('aab')))", "llm_query"),
    ("llm_query_batched(L([S('a'), S('b')]))", "llm_query_batched"),
    ("classify(L([S('a')]), L([S('pos'), S('neg')]), S('how'))", "classify"),
    ("classify(items=L([S('a')]), labels=(S('x'), S('y')))", "classify"),
    ("rlm_query(S('q'), D(path=S('text')))", "rlm_query"),
    ("rlm_query(S('q'), L([S('part')]))", "rlm_query"),
]


@pytest.mark.parametrize(("call", "name"), BRIDGE_ATTACKS)
def test_bridge_functions_get_exact_types(
    typed: Sandbox, typed_calls: list[tuple[str, Any, Any]], call: str, name: str
) -> None:
    before = len(typed_calls)
    result = typed.run(LIAR + call + "\nprint(hijacked)")
    assert (result.error, result.output) == (None, "[]\n")
    assert len(typed_calls) == before + 1
    called, args, kwargs = typed_calls[-1]
    assert called == name
    assert _exact_types(list(args)) and _exact_types(kwargs), (args, kwargs)


HELPER_ATTACKS = [
    "print(grep(S('fox'), window=0)[:1])",
    "print(grep(S('def foo(a, b)'), S('def foo(a):\\n    pass'))[:1])",
    "print(grep('fox', L([S('a fox'), S('no')]), window=0))",
    "print(grep('fox', D(a=S('the fox')), window=0))",
    "print(len(chunks(S('abc ') * 10, size=8)))",
    "print(len(chunks(D(f=S('one two')), size=100)))",
    "print(source(S('foo'), S('def foo():\\n    return 1\\n')))",
    "print(source('foo', L([S('def foo():\\n    return 1\\n')])))",
    "print(records(S('Key: a || Other: b\\nKey: c || Other: d')))",
    "print(records(L([S('Key: a || Other: b'), S('Key: c || Other: d')])))",
]


@pytest.mark.parametrize("call", HELPER_ATTACKS)
def test_helpers_use_exact_copies_of_their_arguments(typed: Sandbox, call: str) -> None:
    result = typed.run(LIAR + call + "\nprint(hijacked)")
    assert result.error is None, result.error
    assert result.output.endswith("\n[]\n"), result.output


def test_every_installed_helper_refuses_what_has_no_plain_copy(typed: Sandbox) -> None:
    """Enumerated from make_helpers, so a helper added later is covered too."""
    names = sorted(make_helpers("text"))
    assert {"grep", "chunks", "source", "records"} <= set(names)
    for name in names:
        result = typed.run(f"class Holder:\n    pass\n{name}(Holder())")
        assert result.error is not None and result.error.startswith(
            f"TypeError: {name}: argument 1 is of type Holder; only str, int"
        ), (name, result.error)
        result = typed.run(f"x = []\nx.append(x)\n{name}(text=x)")
        assert result.error is not None and result.error.startswith(
            f"TypeError: {name}: argument 'text'[0] contains itself"
        ), (name, result.error)


def test_the_worker_wraps_every_helper_make_helpers_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A helper added to make_helpers later gets exact copies too (checked in-process)."""
    seen: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        return "spied"

    monkeypatch.setattr(worker_module, "make_helpers", lambda context: {"brand_new": spy})

    class Sub(str):
        def startswith(self, *a: Any) -> bool:
            return False

    parent, child = socket.socketpair()
    with parent, child:
        worker = worker_module.Worker(
            child, "text", [], {"cpu_seconds": 5, "memory_mb": 64, "output_chars": 100}
        )
        assert (
            worker.reserved_callables["brand_new"](Sub("a"), [Sub("b")], k={"x": Sub("c")})
            == "spied"
        )
    ((args, kwargs),) = seen
    assert type(args[0]) is str and type(args[1][0]) is str and type(kwargs["k"]["x"]) is str
    assert args == ("a", ["b"]) and kwargs == {"k": {"x": "c"}}


def test_to_exact_copies_only_plain_data() -> None:
    class Sub(str):
        pass

    class Lst(list):
        pass

    shared = Lst([Sub("s")])
    copied = to_exact({"a": shared, "b": shared, "t": (Sub("x"), 1.5), "f": frozenset([Sub("y")])})
    assert copied == {"a": ["s"], "b": ["s"], "t": ("x", 1.5), "f": frozenset(["y"])}
    assert type(copied["a"]) is list and copied["a"] is copied["b"]  # shared parts copied once
    assert type(copied["t"][0]) is str and type(next(iter(copied["f"]))) is str
    deep: list[Any] = []
    node = deep
    for _ in range(100):
        node.append([])
        node = node[0]
    with pytest.raises(TypeError, match="nested more than"):
        to_exact(deep)
    dag: list[Any] = [1]
    for _ in range(60):  # 2**60 paths through 61 lists: copied in linear time
        dag = [dag, dag]
    node = to_exact(dag)
    for _ in range(60):
        assert type(node) is list and node[0] is node[1]
        node = node[0]
    assert node == [1]
    with pytest.raises(TypeError, match=r"argument\[0\] is of type function"):
        to_exact([lambda: 1], "argument")


# --- source the compiler refuses: an error of the cell, in the same worker --------------------

RECOVERY_SECONDS = 0.5  # the next cell after an attack must be done within this

UNCOMPILABLE: list[tuple[str, str, str]] = [
    (
        "surrogate-in-string",
        "x = 'a\ud800b'",
        "UnicodeError: the cell holds a lone surrogate character ('\\ud800')",
    ),
    (
        "low-surrogate-in-comment",
        "x = 1\n# \udcff",
        "UnicodeError: the cell holds a lone surrogate",
    ),
    ("surrogate-in-name", "x\udc80 = 1", "UnicodeError: the cell holds a lone surrogate"),
    ("surrogate-line-quoted", "a = 1\nb = '\ud83d'", "(line 2: b = '"),
    ("null-byte", "x = 1\x00", "null bytes"),
    ("null-byte-in-string", "x = 'a\x00b'", "null bytes"),
    ("deep-not", "x = " + "not " * 100_000 + "1", "nested too deeply to compile"),
    ("deep-unary-minus", "x = " + "-" * 100_000 + "1", "nested too deeply to compile"),
    ("deep-lambda", "f = " + "lambda: " * 20_000 + "1", "nested too deeply to compile"),
    ("long-sum", "x = " + "1 + " * 200_000 + "1", "RecursionError: the cell is nested too deeply"),
    (
        "deep-subscript",
        "x = context" + "[0]" * 100_000,
        "RecursionError: the cell is nested too deeply",
    ),
    (
        "deep-attribute",
        "x = context" + ".upper()" * 50_000,
        "RecursionError: the cell is nested too deeply",
    ),
    ("deep-parentheses", "x = " + "(" * 1000 + "1" + ")" * 1000, "too many nested parentheses"),
    ("deep-calls", "x = " + "len(" * 1000 + "'a'" + ")" * 1000, "too many nested parentheses"),
    (
        "deep-indent",
        "".join(" " * i + "if 1:\n" for i in range(150)) + " " * 150 + "pass\n",
        "too many levels of indentation",
    ),
    ("deep-fstring", "x = f'{" * 6 + "1" + "}'" * 6, "SyntaxError"),
]


@pytest.mark.parametrize(
    ("code", "expected"), [c[1:] for c in UNCOMPILABLE], ids=[c[0] for c in UNCOMPILABLE]
)
def test_source_the_compiler_refuses_is_a_clean_error_in_the_same_worker(
    typed: Sandbox, code: str, expected: str
) -> None:
    assert typed.run("kept = 'still here'").error is None
    restarts = typed.restarts
    result = typed.run(code)
    assert result.error is not None and expected in result.error, result.error
    assert "Traceback" not in result.error and len(result.error) < 2000
    assert not result.worker_restarted and typed.restarts == restarts
    result.error.encode("utf-8")  # printable in the parent
    started = time.monotonic()
    after = typed.run("print(kept)")
    assert (after.output, after.error) == ("still here\n", None)  # same worker, variables kept
    assert time.monotonic() - started < RECOVERY_SECONDS


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed"),
            "UnicodeError: the cell holds text",
        ),
        (
            UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
            "UnicodeError: the cell holds text",
        ),
        (ValueError("source code string cannot contain null bytes"), "ValueError: the cell holds"),
        (
            RecursionError("maximum recursion depth exceeded"),
            "RecursionError: the cell is nested too deeply",
        ),
        (MemoryError(), "MemoryError: the cell is too large or nested too deeply"),
        (OverflowError("too many"), "OverflowError: the cell could not be compiled (too many)"),
        (SystemError("bad"), "SystemError: the cell could not be compiled (bad)"),
        (TypeError("expected str"), "TypeError: the cell could not be compiled"),
        (IndexError("list index out of range"), "IndexError: the cell could not be compiled"),
        (KeyError("x"), "KeyError: the cell could not be compiled"),
        (AttributeError("no"), "AttributeError: the cell could not be compiled"),
        (
            SyntaxError(["Line 1: SyntaxError: invalid syntax at statement: 'x ='"]),
            "SyntaxError: invalid syntax (line 1: x = 1)",
        ),
    ],
    ids=lambda item: type(item).__name__ if isinstance(item, BaseException) else "",
)
def test_every_exception_of_the_compiler_becomes_one_sentence(
    monkeypatch: pytest.MonkeyPatch, exc: Exception, expected: str
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise exc

    monkeypatch.setattr(worker_module, "compile_restricted", refuse)
    compiled, error, memory = worker_module.compile_cell("x = 1", ["x = 1"])
    assert compiled is None and memory == isinstance(exc, MemoryError)
    assert error is not None and error.startswith(expected), error
    assert "\n" not in error and "Traceback" not in error and len(error) < 400


# --- work a cell leaves behind is done, and charged, in that cell ------------------------------

# A generator suspended inside `try/finally` runs its `finally` when it is collected: the one
# finalizer a cell can write (dunder methods such as __del__ are refused).
TIDY = """
def tidy(box, label='cleaned'):
    try:
        yield 1
    finally:
        n = 0
        for i in range(200000):
            n += i
        print(label, n)
def leave_cycle(label='cleaned'):
    box = []
    g = tidy(box, label)
    box.append(g)
    next(g)
"""
CLEANED = "cleaned 19999900000\n"

LEFT_BEHIND: list[tuple[str, str]] = [
    ("list-cycle", "leave_cycle()"),
    (
        "self-sent",
        "def me():\n    own = yield 1\n    try:\n        yield 2\n    finally:\n        print('cleaned', 19999900000)\ng = me()\nnext(g)\ng.send(g)\ng = None",
    ),
    (
        "instance-cycle",
        "class Holder:\n    pass\nh = Holder()\nh.gen = tidy(h)\nnext(h.gen)\nh = None",
    ),
    (
        "yield-from",
        "def outer(box):\n    yield from tidy(box)\nbox = []\no = outer(box)\nbox.append(o)\nnext(o)\nbox = o = None",
    ),
    ("in-a-dict-cycle", "d = {}\nd['g'] = tidy(d)\nnext(d['g'])\nd = None"),
    ("sandbox-name", "llm_query = tidy([])\nnext(llm_query)"),
    ("grep-name", "grep = tidy([])\nnext(grep)"),
    ("context-name", "context = tidy([])\nnext(context)"),
    ("final-name", "FINAL = tidy([])\nnext(FINAL)"),
    (
        "chain",
        "def link(box, more):\n    try:\n        yield 1\n    finally:\n        if more:\n            b = []\n            g = link(b, more - 1)\n            b.append(g)\n            next(g)\n        else:\n            print('cleaned', 19999900000)\nb = []\ng = link(b, 5)\nb.append(g)\nnext(g)\ng = b = None",
    ),
    ("deep-in-function", "def make():\n    leave_cycle()\n    return 1\nmake()"),
]


@pytest.mark.parametrize(("code"), [c[1] for c in LEFT_BEHIND], ids=[c[0] for c in LEFT_BEHIND])
def test_clean_up_a_cell_leaves_behind_runs_in_that_cell(typed: Sandbox, code: str) -> None:
    assert typed.run(TIDY).error is None
    result = typed.run(code)
    assert result.error is None, result.error
    assert CLEANED in result.output, result.output  # shown, and charged, here
    started = time.monotonic()
    after = typed.run("print(1+1)")
    assert (after.output, after.error, after.final) == ("2\n", None, None)
    assert time.monotonic() - started < RECOVERY_SECONDS


def test_clean_up_in_a_dict_context_runs_in_that_cell() -> None:
    with Sandbox({"a.txt": "alpha"}, limits=LIMITS) as sb:
        assert sb.run(TIDY).error is None
        result = sb.run("context['b.txt'] = tidy([])\nstarted = next(context['b.txt'])")
        assert (result.error, result.output) == (None, CLEANED)
        after = sb.run("print(sorted(context))")
        assert (after.output, after.error) == ("['a.txt']\n", None)


def test_clean_up_that_calls_the_bridge_or_final_is_this_cells(
    typed: Sandbox, typed_calls: list[tuple[str, Any, Any]]
) -> None:
    code = (
        "def sneaky(box):\n    try:\n        yield 1\n    finally:\n"
        "        llm_query('from a finalizer')\n        FINAL('from a finalizer')\n"
        "box = []\ng = sneaky(box)\nbox.append(g)\nnext(g)\ng = box = None"
    )
    before = len(typed_calls)
    result = typed.run(code)
    assert result.final == "from a finalizer" and result.error is None
    assert typed_calls[before:] == [("llm_query", ("from a finalizer",), {})]
    after = typed.run("print(1+1)")
    assert (after.output, after.final) == ("2\n", None)
    assert len(typed_calls) == before + 1  # nothing more ran in the next cell


def test_clean_up_that_raises_is_ignored(typed: Sandbox) -> None:
    code = (
        "def bad(box):\n    try:\n        yield 1\n    finally:\n        print('raising')\n"
        "        raise ValueError('in a finalizer')\n"
        "box = []\ng = bad(box)\nbox.append(g)\nnext(g)\ng = box = None"
    )
    result = typed.run(code)
    assert (result.output, result.error) == ("raising\n", None)
    assert typed.run("print(1+1)").output == "2\n"


def test_endless_clean_up_stops_the_cell_that_left_it_not_the_next() -> None:
    with Sandbox(CONTEXT, limits=LIMITS) as sb:
        sb.run("kept = 1")
        code = (
            "def burn(box):\n    try:\n        yield 1\n    finally:\n        while True:\n"
            "            pass\nbox = []\ng = burn(box)\nbox.append(g)\nnext(g)\ng = box = None\n"
            "print('cell done')"
        )
        before = time.monotonic()
        result = sb.run(code)
        replaced = time.monotonic() - before - result.seconds
        assert result.worker_restarted and "time limit" in (result.error or "")
        started = time.monotonic()
        after = sb.run("print(1+1)")
        assert (after.output, after.error) == ("2\n", None)
        assert time.monotonic() - started < RECOVERY_SECONDS
        assert replaced < 3 * RECOVERY_SECONDS  # kill and a fresh worker, measured ~0.25 s
        print(f"\nendless finalizer: replaced in {replaced:.3f} s")


def test_clean_up_that_keeps_making_more_replaces_the_worker() -> None:
    with Sandbox(CONTEXT, limits=LIMITS) as sb:
        code = (
            "def again(box):\n    try:\n        yield 1\n    finally:\n        b = []\n"
            "        g = again(b)\n        b.append(g)\n        next(g)\n"
            "box = []\ng = again(box)\nbox.append(g)\nnext(g)\ng = box = None"
        )
        result = sb.run(code)
        assert result.worker_restarted
        assert "kept running clean-up code" in (result.error or "")
        started = time.monotonic()
        assert sb.run("print(1+1)").output == "2\n"
        assert time.monotonic() - started < RECOVERY_SECONDS


# --- bridge calls count toward limits of their own -------------------------------------------


@pytest.fixture
def bridge_log() -> list[str]:
    return []


def _limited(log: list[str], calls: int = 5, seconds: float = 60.0, pause: float = 0.0) -> Sandbox:
    def record(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            log.append(name)
            time.sleep(pause)
            return ["ok"] if name == "llm_query_batched" else "ok"

        return call

    names = ["llm_query", "llm_query_batched", "classify", "rlm_query"]
    limits = SandboxLimits(
        wall_seconds=3, cpu_seconds=20, memory_mb=512, bridge_calls=calls, bridge_seconds=seconds
    )
    return Sandbox(CONTEXT, {n: record(n) for n in names}, limits)


LOOPS = [
    ("llm_query", "while True:\n    llm_query('again')"),
    ("rlm_query", "while True:\n    rlm_query('again', context)"),
    ("llm_query_batched", "while True:\n    llm_query_batched(['a', 'b'])"),
    ("classify", "while True:\n    classify(['a'], ['x', 'y'])"),
    ("mixed", "while True:\n    llm_query('a')\n    rlm_query('b', 'c')"),
    ("in-a-comprehension", "answers = [llm_query(str(i)) for i in range(10**6)]"),
    (
        "in-a-function",
        "def ask(n):\n    return llm_query(str(n))\nfor i in range(10**6):\n    ask(i)",
    ),
]


@pytest.mark.parametrize("code", [c[1] for c in LOOPS], ids=[c[0] for c in LOOPS])
def test_a_loop_of_bridge_calls_stops_at_the_call_limit(bridge_log: list[str], code: str) -> None:
    with _limited(bridge_log, calls=5) as sb:
        sb.run("kept = 1")
        result = sb.run(code)
        assert len(bridge_log) == 5  # the sixth call never reached the parent's function
        assert result.error is not None and result.error.startswith("BridgeLimitError: ")
        assert "5 bridge calls" in result.error  # which limit stopped it
        assert not result.worker_restarted and result.seconds < 3
        started = time.monotonic()
        after = sb.run("print(kept, llm_query('next cell'))")  # the limit is per cell
        assert (after.output, after.error) == ("1 ok\n", None)
        assert time.monotonic() - started < RECOVERY_SECONDS


def test_a_cell_that_catches_the_refusal_is_still_told_which_limit_stopped_it(
    bridge_log: list[str],
) -> None:
    with _limited(bridge_log, calls=3) as sb:
        code = (
            "refused = 0\nfor i in range(100000):\n    try:\n        llm_query('x')\n"
            "    except Exception:\n        refused += 1\nprint(refused)\nFINAL('partial')"
        )
        result = sb.run(code)
        assert len(bridge_log) == 3
        assert result.output == "99997\n" and result.final == "partial"
        error = result.error or ""
        assert error.startswith("BridgeLimitError: ") and error.count("BridgeLimitError") == 1
        assert "3 bridge calls" in error  # which limit stopped it
        assert "llm_query_batched" in error and len(error) < 300  # once, with the way around it
        assert result.seconds < 3  # refused in the worker, without a round trip each


@pytest.mark.parametrize("name", ["rlm_query", "llm_query"])
def test_slow_bridge_calls_stop_at_the_time_limit(bridge_log: list[str], name: str) -> None:
    with _limited(bridge_log, calls=1000, seconds=0.6, pause=0.25) as sb:
        result = sb.run(f"while True:\n    {name}('q', 'piece')")
        assert bridge_log == [name] * 3  # 0.75 s spent when the fourth call came
        assert result.error is not None and result.error.startswith(f"BridgeLimitError: {name}: ")
        took = re.search(r"took (\d+\.\d) s, past its limit of 0\.6 s", result.error)
        assert took is not None and float(took.group(1)) >= 0.7, result.error
        assert not result.worker_restarted
        assert 0.75 <= result.seconds < 3  # bridge time is not the cell's wall time


def test_the_cell_wall_limit_is_not_spent_by_bridge_time(bridge_log: list[str]) -> None:
    with _limited(bridge_log, calls=1000, seconds=60, pause=0.5) as sb:
        result = sb.run("for i in range(8):\n    llm_query('x')\nprint('done')")
        assert (result.output, result.error) == ("done\n", None)
        assert result.seconds >= 4  # over the 3 s wall limit, all of it in bridge calls


def test_helpers_and_final_are_not_bridge_calls(bridge_log: list[str]) -> None:
    with _limited(bridge_log, calls=0) as sb:
        result = sb.run("for i in range(50):\n    grep('fox')\n    chunks()\nFINAL('x')")
        assert (result.error, result.final) == (None, "x")
        result = sb.run("llm_query('x')")
        assert "0 bridge calls" in (result.error or "")
        assert bridge_log == []


def test_bridge_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="bridge_calls"):
        SandboxLimits(bridge_calls=-1)
    with pytest.raises(ValueError, match="bridge_seconds"):
        SandboxLimits(bridge_seconds=0)
    assert SandboxLimits().bridge_calls >= 100 and SandboxLimits().bridge_seconds >= 60


def test_clean_up_runs_in_a_cell_that_ends_in_an_error(typed: Sandbox) -> None:
    assert typed.run(TIDY).error is None
    result = typed.run("leave_cycle()\nx = 1 / 0")
    assert result.error is not None and result.error.startswith("ZeroDivisionError")
    assert result.output == CLEANED
    assert typed.run("print(1+1)").output == "2\n"


def test_settling_each_cell_costs_little_with_many_live_objects(typed: Sandbox) -> None:
    assert typed.run("many = [[i] for i in range(300000)]").error is None
    started = time.monotonic()
    assert typed.run("print(len(many))").output == "300000\n"
    assert time.monotonic() - started < RECOVERY_SECONDS  # one full collection, ~20 ms here
    assert typed.run("many = None").error is None
