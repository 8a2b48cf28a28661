"""Hostile cells: each must fail cleanly, and the sandbox must keep working afterwards.

One sandbox serves the whole corpus (a replacement worker takes over after a kill), so each case
also proves that the worker, or its replacement, still runs a normal cell and that the parent
process is unharmed.
"""

# The cell tables below read best one cell per line.
# ruff: noqa: E501

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_local.sandbox import Sandbox, SandboxLimits
from rlm_local.sandbox.modules import ModuleProxy, build_module_proxies, proxy_attrs
from rlm_local.sandbox.policy import FORBIDDEN_OBJECTS, CellPolicy, PolicyError

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
