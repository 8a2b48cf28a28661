"""The sandbox worker process: holds `context` and the cell variables, runs cells under limits.

Started by the parent as `python -m rlm_local.sandbox.worker --fd N` with one end of a socketpair.
It reads the context once, sets its resource limits, then serves `run` requests until the socket
closes. Bridge calls made by a cell are forwarded to the parent over the same socket.
"""

from __future__ import annotations

import builtins
import contextlib
import gc
import os
import re
import resource
import signal
import socket
import sys
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from types import CodeType, ModuleType
from typing import Any

from RestrictedPython import compile_restricted

from rlm_local.sandbox.helpers import make_helpers
from rlm_local.sandbox.helpers.files import PathDict
from rlm_local.sandbox.policy import CellPolicy, CellTransformer, public_names
from rlm_local.sandbox.protocol import (
    EXIT_BRIDGE_FAILED,
    MAX_CALL_BYTES,
    PeerClosed,
    ProtocolError,
    encode_message,
    recv_frame,
    recv_message,
    send_frame,
    send_message,
    to_exact,
    to_plain,
)

MB = 1024 * 1024
CELL_FILENAME = "<cell>"
MAX_ERROR_CHARS = 1500
MAX_FINAL_CHARS = 4_000_000
MAX_SHOWN_VALUES = 12
# Rounds of collecting a cell's garbage (whose clean-up may make more) before giving up on it.
MAX_SETTLE_ROUNDS = 20
_SURROGATE = re.compile("[\ud800-\udfff]")
_RP_LINE = re.compile(r"^Line (\d+|None): (.*)$", re.DOTALL)


def current_vm_bytes() -> int:
    """Address space in use now (what RLIMIT_AS counts)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def _cap(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 20] + " [... cut ...]"


class Worker:
    """One sandbox: policy, persistent variables, the reserved names restored before every cell."""

    def __init__(
        self,
        sock: socket.socket,
        context: str | dict[str, str],
        bridge_names: list[str],
        limits: dict[str, Any],
    ) -> None:
        self.sock = sock
        self.context = context
        self.cpu_seconds = int(limits["cpu_seconds"])
        self.memory_mb = int(limits["memory_mb"])
        self.policy = CellPolicy(int(limits["output_chars"]))
        self.preloaded = self.policy.preloaded()
        self.ns: dict[str, Any] = dict(self.preloaded)
        self.final: str | None = None
        self.as_limit: int | None = None
        # Code object of every function a cell defined -> that cell's lines (for error lines).
        self.sources: weakref.WeakKeyDictionary[CodeType, list[str]] = weakref.WeakKeyDictionary()
        reserved: dict[str, Callable[..., Any]] = {n: self._bridge_stub(n) for n in bridge_names}
        helpers = make_helpers(context)
        reserved.update({name: exact_arguments(name, func) for name, func in helpers.items()})
        reserved["FINAL"] = self._final
        reserved["Final"] = self._final  # the 1.5B model's spelling after a long cell, at times
        reserved["FINAL_VAR"] = self._final_var
        self.reserved_callables = reserved
        self.reserved_names = frozenset([*reserved, "context"])
        # Real builtins a cell cannot use: a NameError on one of them says so.
        self.hidden_builtins = frozenset(dir(builtins)) - set(self.policy.builtins)
        self.bridge_stopped: str | None = None  # why the parent refuses bridge calls this cell

    # --- names every cell gets ------------------------------------------------------------------

    def _final(self, value: Any) -> None:
        try:
            value = to_exact(value, "the answer")
        except TypeError as exc:
            raise TypeError(f"FINAL: {exc}; e.g. FINAL(str(answer))") from None
        text = value if type(value) is str else str(value)
        if len(text) > MAX_FINAL_CHARS:
            raise ValueError(
                f"FINAL: the answer has {len(text)} characters; at most {MAX_FINAL_CHARS}"
            )
        self.final = text

    def _final_var(self, name: Any) -> None:
        # A plain str first: a cell's subclass could make `startswith("_")` say no.
        if not issubclass(type(name), str):
            raise TypeError(
                'FINAL_VAR takes the name of a variable as a string, e.g. FINAL_VAR("answer")'
            )
        name = to_exact(name)
        if name.startswith("_") or name in self.reserved_names or name not in self.ns:
            names = self._variables()
            shown = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
            raise NameError(f"FINAL_VAR: no variable named {name!r}; variables: {shown or 'none'}")
        self._final(self.ns[name])

    def _variables(self) -> list[str]:
        """The cell's own variables: not the reserved names, not untouched preloaded ones."""
        return [
            n
            for n in public_names(self.ns, self.reserved_names)
            if n not in self.preloaded or self.ns[n] is not self.preloaded[n]
        ]

    def _values(self) -> str:
        """The cell's data variables, each in one short line, in the order they were first set:
        shown with a FINAL the model wrote before seeing any value (an empty list says why)."""
        own = set(self._variables())
        lines = [
            f"{name} = {describe_value(value)}"
            for name, value in self.ns.items()
            if name in own and not callable(value) and not isinstance(value, ModuleType)
        ]
        return "\n".join(lines[:MAX_SHOWN_VALUES])

    def _bridge_stub(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.bridge_stopped is not None:  # refused by the parent already: not asked again
                raise BridgeLimitError(f"{name}: {self.bridge_stopped}")
            try:
                plain_args = [to_plain(a, f"argument {i + 1}") for i, a in enumerate(args)]
                plain_kwargs = {
                    to_plain(k): to_plain(v, f"argument {k!r}") for k, v in kwargs.items()
                }
            except TypeError as exc:
                raise TypeError(f"{name}: {exc}") from None
            payload = encode_message(
                {"op": "call", "name": name, "args": plain_args, "kwargs": plain_kwargs}
            )
            if len(payload) > MAX_CALL_BYTES:
                raise ValueError(
                    f"{name}: the arguments are {len(payload) // MB} MB; at most "
                    f"{MAX_CALL_BYTES // MB} MB can be sent"
                )
            try:
                send_frame(self.sock, payload)
                del payload
                reply = recv_message(self.sock)
            except BaseException:
                # The parent is gone, or the reply could not be read whole (out of memory): the
                # stream is out of step and cannot be resumed.
                os._exit(EXIT_BRIDGE_FAILED)
            if reply["op"] == "return":
                return reply.get("value")
            message = str(reply.get("message", "failed"))
            if reply.get("limit"):
                self.bridge_stopped = message
                raise BridgeLimitError(f"{name}: {message}")
            raise RuntimeError(f"{name}: {message}")

        call.__name__ = call.__qualname__ = name
        return call

    def _restore(self) -> dict[str, Any]:
        """Put back the guards and reserved names: one cell cannot break the next."""
        restored: dict[str, Any] = dict(self.reserved_callables)
        ctx = self.context
        restored["context"] = PathDict(ctx) if isinstance(ctx, dict) else ctx
        self.ns.update(self.policy.guards())
        self.ns.update(restored)
        return restored

    def _settle(self) -> bool:
        """Do now, within this cell's limits, the work the cell left behind: the clean-up of its
        garbage (a generator suspended in a `try/finally` and dropped in a reference cycle runs
        its `finally` when collected) and of values it bound to sandbox names or put in a dict
        `context` (dropped when those are restored). Left for later, it would run in the next
        cell and be charged to it. False if the clean-up keeps making more."""
        for _ in range(MAX_SETTLE_ROUNDS):
            restored = self._restore()
            gc.collect()
            # What survives a full collection is moved to the oldest generation: objects in the
            # youngest one were made by clean-up code during it, maybe more garbage to collect.
            # (The number collect() returns does not say: a generator's own clean-up breaks its
            # cycle, and it is freed without being counted.)
            if not gc.get_objects(generation=0) and self._untouched(restored):
                return True
        return False

    def _untouched(self, restored: dict[str, Any]) -> bool:
        """Whether the names restored last are still as restored (clean-up code may rebind)."""
        if any(self.ns.get(name) is not obj for name, obj in restored.items()):
            return False
        copy, ctx = restored["context"], self.context
        if isinstance(ctx, dict):
            return len(copy) == len(ctx) and all(copy.get(k) is v for k, v in ctx.items())
        return True

    # --- running a cell --------------------------------------------------------------------------

    def _set_cpu_limit(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime) + 1 + self.cpu_seconds
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))

    def run_cell(self, code: str) -> dict[str, Any]:
        self._set_cpu_limit()
        self.final = None
        self.bridge_stopped = None
        collector = self.policy.new_collector()
        restored = self._restore()
        lines = code.splitlines()
        compiled, error, memory_error = compile_cell(code, lines)
        if compiled is not None:
            for code_object in _code_objects(compiled):
                self.sources[code_object] = lines
            try:
                exec(compiled, self.ns)
            except BaseException as exc:  # any failure of the cell is reported
                error = describe_exception(
                    exc, lines, self.hidden_builtins, self.sources, self.memory_mb
                )
                memory_error = isinstance(exc, MemoryError)
            del compiled
        rebound = [n for n, obj in restored.items() if self.ns.get(n) is not obj]
        del restored
        settled = self._settle()
        if not settled:
            error = (error + " " if error else "") + (
                "WorkerError: what the cell left behind kept running clean-up code (e.g. "
                "generators whose `finally` makes more such generators)."
            )
        # Checked only now, when the traceback (and the frames it keeps alive) is gone.
        restart = not settled or (memory_error and self._memory_exhausted())
        output = collector.render()
        if rebound and not restart:
            if output and not output.endswith("\n"):
                output += "\n"
            output += (
                f"[note: {', '.join(sorted(rebound))} is a sandbox name and is restored before "
                "every cell; keep your data in a variable with another name]\n"
            )
        return {
            "op": "result",
            "output": output,
            "error": error,
            "final": self.final,
            "values": self._values() if self.final is not None and not restart else None,
            "restart": restart,
        }

    def _memory_exhausted(self) -> bool:
        """After a MemoryError: is so little memory left that the worker should be replaced?"""
        gc.collect()
        if self.as_limit is None:
            return False
        try:
            left = self.as_limit - current_vm_bytes()
        except Exception:  # cannot even read /proc: assume the worst
            return True
        return left < max(32 * MB, self.memory_mb * MB // 8)

    def serve(self) -> int:
        while True:
            try:
                message = recv_message(self.sock)
            except PeerClosed:
                return 0
            except MemoryError:
                message = None
            try:
                if message is None:
                    raise MemoryError
                if message.get("op") != "run" or not isinstance(message.get("code"), str):
                    return 2
                reply = self.run_cell(message["code"])
                del message
                send_message(self.sock, reply)
            except (OSError, ProtocolError):
                return 4  # the parent is gone
            except BaseException as exc:  # never leave the parent without an answer
                try:
                    send_message(
                        self.sock,
                        {
                            "op": "result",
                            "output": "",
                            "error": f"{type(exc).__name__}: the sandbox worker failed.",
                            "final": None,
                            "restart": True,
                        },
                    )
                except BaseException:
                    os._exit(70)


class BridgeLimitError(RuntimeError):
    """A bridge call refused because the cell reached one of its bridge limits."""


def exact_arguments(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` taking only exact built-in copies of its arguments (protocol.to_exact).

    Every helper the worker installs gets this wrapper, so a helper's own checks and uses of its
    arguments never run a method a cell's subclass overrides.
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            exact_args = [to_exact(a, f"argument {i + 1}") for i, a in enumerate(args)]
            exact_kwargs = {to_exact(k): to_exact(v, f"argument {k!r}") for k, v in kwargs.items()}
        except TypeError as exc:
            raise TypeError(f"{name}: {exc}") from None
        return func(*exact_args, **exact_kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = func.__doc__
    return call


_PLAIN = (str, int, float, bool, type(None))


def _short(value: Any, limit: int = 60) -> str:
    """repr of plain values only: a cell's own class could run any code in its __repr__."""
    if isinstance(value, tuple) and all(type(item) in _PLAIN for item in value):
        text = repr(value)
    else:
        text = repr(value) if type(value) in _PLAIN else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_value(value: Any) -> str:
    """One line about a value: its kind, size and first items."""
    try:
        return _describe(value)
    except Exception:  # a cell's own container type may fail in len() or iteration
        return f"<{type(value).__name__}>"


def _describe(value: Any) -> str:
    if type(value) in _PLAIN:
        size = f" ({len(value):,} chars)" if isinstance(value, str) and len(value) > 60 else ""
        return _short(value) + size
    if isinstance(value, list | tuple | set | frozenset | dict):
        kind = "Counter" if isinstance(value, Counter) else type(value).__name__
        if not value:
            return f"{kind} of 0 items (empty)"
        # dict.items, not value.items: a cell's subclass may override the method.
        items = list(dict.items(value))[:2] if isinstance(value, dict) else list(value)[:2]
        if isinstance(value, dict):
            first = ", ".join(f"{_short(k, 30)}: {_short(v, 30)}" for k, v in items)
        else:
            first = ", ".join(_short(item) for item in items)
        return f"{kind} of {len(value):,} items, first: {first}"
    return f"<{type(value).__name__}>"


def _cell_line(lineno: int | None, lines: list[str]) -> str:
    if lineno is None or not 1 <= lineno <= len(lines):
        return ""
    return f" (line {lineno}: {_cap(lines[lineno - 1].strip(), 200)})"


def describe_exception(
    exc: BaseException,
    lines: list[str],
    hidden: frozenset[str] = frozenset(),
    sources: Mapping[CodeType, list[str]] | None = None,
    memory_mb: int | None = None,
) -> str:
    """`Type: message (line N: source)`, N being the innermost line of cell code involved.

    `sources` maps code objects of earlier cells to their lines, so an error inside a function
    defined by an earlier cell quotes that cell's line, not the current one's.
    """
    lineno = None
    code: CodeType | None = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == CELL_FILENAME:
            lineno = tb.tb_lineno
            code = tb.tb_frame.f_code
        tb = tb.tb_next
    try:
        message = str(exc)
    except Exception:
        message = ""
    if isinstance(exc, MemoryError) and not message and memory_mb:
        message = f"out of memory (a cell may use about {memory_mb} MB)"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if isinstance(exc, NameError) and getattr(exc, "name", None) in hidden:
        text += f" ({exc.name} is not available in the sandbox)"
    where = ""
    if code is not None and sources is not None:
        earlier = sources.get(code)
        if earlier is not None and earlier is not lines:
            where = _cell_line(lineno, earlier).replace(" (line ", " (earlier cell, line ", 1)
    return _cap(text) + (where or _cell_line(lineno, lines))


def _code_objects(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_objects(const)


def compile_cell(code: str, lines: list[str]) -> tuple[CodeType | None, str | None, bool]:
    """(code object, None, False), or (None, one-sentence error, whether memory ran out).

    Whatever the compiler raises on hostile source is an error of the cell, never of the
    worker: an unpaired surrogate (UnicodeEncodeError), a null byte (ValueError or SyntaxError),
    nesting too deep for the parser or for RestrictedPython's transformer (RecursionError,
    MemoryError) and anything else.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return (
                compile_restricted(code, CELL_FILENAME, "exec", policy=CellTransformer),
                None,
                False,
            )
    except SyntaxError as exc:
        return None, describe_compile_error(exc, lines), False
    except MemoryError:
        return None, "MemoryError: the cell is too large or nested too deeply to compile", True
    except RecursionError:  # `not not … 1` thousands deep: the compiler's own recursion
        return None, "RecursionError: the cell is nested too deeply to compile", False
    except UnicodeError as exc:
        found = _SURROGATE.search(code)
        if found is None:
            return (
                None,
                _cap(f"UnicodeError: the cell holds text Python cannot compile ({exc})"),
                False,
            )
        where = _cell_line(code.count("\n", 0, found.start()) + 1, lines)
        error = (
            f"UnicodeError: the cell holds a lone surrogate character ({found.group()!r}), "
            f"which Python cannot compile; remove it{where}"
        )
        return None, _cap(error), False
    except ValueError as exc:
        what = "a null character" if "\0" in code else "something Python cannot compile"
        return None, _cap(f"ValueError: the cell holds {what} ({exc})"), False
    except Exception as exc:  # whatever else the compiler or the transformer may raise
        return None, _cap(f"{type(exc).__name__}: the cell could not be compiled ({exc})"), False


def describe_compile_error(exc: SyntaxError, lines: list[str]) -> str:
    """RestrictedPython's error list as short `line N: what` items with the source line."""
    raw = exc.args[0] if exc.args else str(exc)
    items = list(raw) if isinstance(raw, list | tuple) else [str(raw)]
    parts: list[str] = []
    syntax = False
    for item in items[:3]:
        match = _RP_LINE.match(str(item))
        if not match:
            parts.append(_cap(str(item), 300))
            continue
        lineno = int(match.group(1)) if match.group(1) != "None" else None
        what = match.group(2)
        if what.startswith("SyntaxError: "):
            syntax = True
            what = what.removeprefix("SyntaxError: ").split(" at statement: ")[0]
        parts.append(_cap(what, 300) + _cell_line(lineno, lines))
    if len(items) > 3:
        parts.append(f"and {len(items) - 3} more")
    prefix = "SyntaxError" if syntax else "PolicyError: not allowed in the sandbox"
    return f"{prefix}: {'; '.join(parts)}"


def apply_limits(memory_mb: int) -> int:
    """Process limits that hold whatever the cell does; returns the address-space limit."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with an error instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no effect for root
    as_limit = current_vm_bytes() + memory_mb * MB
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        as_limit = min(as_limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
    return as_limit


def _read_context(sock: socket.socket, meta: dict[str, Any]) -> str | dict[str, str]:
    def blob() -> str:
        return recv_frame(sock).decode("utf-8", "surrogatepass")

    if meta.get("kind") == "str":
        return blob()
    if meta.get("kind") == "dict":
        return {str(path): blob() for path in meta["paths"]}
    raise ProtocolError("unknown context kind")


def _silence_std_streams() -> None:
    """Nothing the worker does may write to the parent's terminal or a file."""
    warnings.simplefilter("ignore")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "--fd":
        print("usage: python -m rlm_local.sandbox.worker --fd N", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(args[1]))
    try:
        init = recv_message(sock)
        if init.get("op") != "init":
            raise ProtocolError("expected init")
        context = _read_context(sock, init["context"])
        worker = Worker(sock, context, list(init["bridge"]), init["limits"])
        _silence_std_streams()
        worker.as_limit = apply_limits(worker.memory_mb)
        gc.collect()
        send_message(sock, {"op": "ready", "vm_mb": current_vm_bytes() // MB})
    except Exception as exc:  # reported to the parent as one sentence
        with contextlib.suppress(OSError):
            send_message(sock, {"op": "fatal", "message": _cap(f"{type(exc).__name__}: {exc}")})
        return 1
    return worker.serve()


if __name__ == "__main__":
    sys.exit(main())
