"""The parent side of the sandbox: starts, feeds, times and replaces the worker process.

The parent never executes generated code and never unpickles anything: it reads size-capped JSON
frames, serves bridge calls with the registered callables, and kills the worker (then starts a
fresh one with the same context) when a cell exceeds its time, dies, or breaks the protocol.
"""

from __future__ import annotations

import contextlib
import keyword
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rlm_local.sandbox.helpers import make_helpers
from rlm_local.sandbox.protocol import (
    EXIT_BRIDGE_FAILED,
    MAX_FRAME_BYTES,
    PeerClosed,
    ProtocolError,
    encode_message,
    recv_message,
    send_frame,
    send_message,
    to_plain,
)


@dataclass(frozen=True)
class SandboxLimits:
    """Per-cell limits. Wall time counts only the worker's time; the time of bridge calls (served
    in the parent) has limits of its own: their number and their total seconds in one cell."""

    wall_seconds: float = 60.0
    cpu_seconds: int = 60
    memory_mb: int = 2048  # RLIMIT_AS headroom on top of the worker's size after loading context
    output_chars: int = 4000  # printed output kept per cell (head and tail)
    bridge_calls: int = 1000  # llm_query, rlm_query, classify, ... calls one cell may make
    bridge_seconds: float = 900.0  # after this much time in bridge calls, a cell makes no more

    def __post_init__(self) -> None:
        if not self.wall_seconds > 0 or self.cpu_seconds < 1:
            raise ValueError("wall_seconds must be > 0 and cpu_seconds >= 1")
        if self.memory_mb < 16 or self.output_chars < 0:
            raise ValueError("memory_mb must be >= 16 and output_chars >= 0")
        if self.bridge_calls < 0 or not self.bridge_seconds > 0:
            raise ValueError("bridge_calls must be >= 0 and bridge_seconds > 0")


DEFAULT_LIMITS = SandboxLimits()


@dataclass
class CellResult:
    output: str  # printed output, capped to head and tail
    error: str | None  # short and model-actionable; None on success
    final: str | None  # str() of the value given to FINAL / FINAL_VAR
    seconds: float  # wall time of the cell, bridge calls included
    worker_restarted: bool  # the worker was replaced: all variables are lost
    values: str | None = None  # with a FINAL: the cell's variables, a short line each


class SandboxError(Exception):
    """The sandbox itself cannot work (the worker will not start)."""


# Names every cell gets from the worker; bridge functions may not take them.
# Derived from what the worker installs: a bridge function named like a helper would be shadowed.
RESERVED_NAMES = frozenset(
    {"context", "FINAL", "Final", "FINAL_VAR", "print", "printed", *make_helpers("")}
)
_LOST = "The worker was restarted: all variables were lost (context and the helpers remain)."
_STARTUP_SECONDS = 30.0
_STARTUP_BYTES_PER_SECOND = 20e6


class _WorkerLost(Exception):
    """The worker cannot go on (timeout, death, bad message); the text is for the model."""


class _BridgeBudget:
    """The bridge calls of one cell: how many, how long. Past a limit every call is refused, and
    the cell's error says which limit stopped it (also when the cell caught the refusal)."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self.calls = 0
        self.seconds = 0.0
        self.stopped: str | None = None

    def refusal(self) -> dict[str, Any] | None:
        """The reply refusing the next call, or None if it may run (and is counted)."""
        if self.stopped is None and self.calls >= self.limits.bridge_calls:
            self.stopped = (
                f"the cell reached its limit of {self.limits.bridge_calls} bridge calls "
                "(llm_query, rlm_query, classify, ...); make fewer calls in one cell, e.g. one "
                "llm_query_batched for a list of prompts"
            )
        elif self.stopped is None and self.seconds >= self.limits.bridge_seconds:
            self.stopped = (
                f"the cell's bridge calls (llm_query, rlm_query, classify, ...) took "
                f"{self.seconds:.1f} s, past its limit of {self.limits.bridge_seconds:g} s; "
                "do less per cell"
            )
        if self.stopped is not None:
            return {"op": "raise", "message": self.stopped, "limit": True}
        self.calls += 1
        return None

    def spend(self, seconds: float) -> None:
        self.seconds += seconds

    def explain(self, error: str | None) -> str | None:
        """The cell's error, saying which bridge limit stopped it if one did."""
        if self.stopped is None or (error is not None and self.stopped in error):
            return error
        note = f"BridgeLimitError: {self.stopped}."
        return f"{error} {note}" if error else note


class _WorkerProcess:
    """One worker: its process (own process group), socket and scratch directory."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket, tmpdir: str) -> None:
        self.proc = proc
        self.sock = sock
        self.tmpdir = tmpdir

    def stop(self, graceful: bool = False) -> None:
        """End the process (EOF first if graceful, SIGKILL to its group otherwise); idempotent."""
        with contextlib.suppress(OSError):
            self.sock.close()
        if graceful:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1.0)
        if self.proc.poll() is None:
            try:
                if os.getpgid(self.proc.pid) == self.proc.pid != os.getpgrp():
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def exit_reason(self, limits: SandboxLimits) -> str:
        """Why the worker is gone, in words a model can act on."""
        try:
            code = self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            return "WorkerError: the worker stopped answering."
        if code == EXIT_BRIDGE_FAILED:
            return (
                "WorkerError: the worker could not complete a bridge call (its reply did not fit "
                "in the worker's memory)."
            )
        if code >= 0:
            return f"WorkerError: the worker process exited unexpectedly (status {code})."
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"WorkerError: the worker process was killed by signal {-code}."
        if sig == signal.SIGXCPU:
            return (
                f"TimeoutError: the cell used more than {limits.cpu_seconds} s of CPU time "
                "and was stopped."
            )
        if sig == signal.SIGKILL:
            return (
                "WorkerError: the worker process was killed, most likely for using too much memory."
            )
        if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL):
            return (
                f"WorkerError: the worker process crashed ({sig.name}), e.g. on a too deeply "
                "nested structure; avoid deep recursion and deep nesting."
            )
        return f"WorkerError: the worker process was killed by {sig.name}."


def _package_root() -> str:
    """The directory holding `rlm_local`, so the worker imports this very copy of the package."""
    return str(Path(__file__).resolve().parents[2])


def _worker_env() -> dict[str, str]:
    """A minimal environment: enough to find Python packages, nothing else of the parent's.
    A fixed hash seed makes a cell's output (a set printed, a prompt built from one) the same in
    every process, so the calls that depend on it are found in the cache the next time."""
    paths = [_package_root(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {
        "PATH": os.defpath,
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        "LC_ALL": "C.UTF-8",
    }


def _check_context(context: Any) -> None:
    if isinstance(context, str):
        return
    if isinstance(context, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in context.items()
    ):
        return
    raise TypeError("context must be a str or a dict mapping str paths to str texts")


def _check_bridge(bridge: Mapping[str, Callable[..., Any]]) -> None:
    for name, func in bridge.items():
        if (
            not isinstance(name, str)
            or not name.isidentifier()
            or keyword.iskeyword(name)
            or name.startswith("_")
            or name in RESERVED_NAMES
        ):
            raise ValueError(f"invalid bridge name {name!r} (reserved: {sorted(RESERVED_NAMES)})")
        if not callable(func):
            raise TypeError(f"bridge entry {name!r} is not callable")


def _exception_message(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__


class Sandbox:
    """Runs cells of generated code in a limited worker process that keeps variables between cells.

    `context` is sent to the worker once (and again only to a replacement worker); each name in
    `bridge` becomes a function in the cell whose calls are executed here, in the parent.
    """

    def __init__(
        self,
        context: str | dict[str, str],
        bridge: Mapping[str, Callable[..., Any]] | None = None,
        limits: SandboxLimits = DEFAULT_LIMITS,
    ) -> None:
        _check_context(context)
        bridge = dict(bridge or {})
        _check_bridge(bridge)
        self._context = context
        self._bridge = bridge
        self.limits = limits
        self.restarts = 0
        self._lock = threading.RLock()
        self._running = False
        self._closed = False
        self._worker: _WorkerProcess | None = None
        self._finalizer: weakref.finalize | None = None
        self._worker = self._start_worker()

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker and remove its scratch directory; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._drop_worker(graceful=True)

    def _drop_worker(self, graceful: bool = False) -> None:
        worker, self._worker = self._worker, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if worker is not None:
            worker.stop(graceful=graceful)

    def _context_frames(self) -> tuple[dict[str, Any], Iterator[bytes]]:
        context = self._context
        if isinstance(context, str):
            return {"kind": "str"}, iter([context.encode("utf-8", "surrogatepass")])
        paths = list(context)
        blobs = (context[p].encode("utf-8", "surrogatepass") for p in paths)
        return {"kind": "dict", "paths": paths}, blobs

    def _context_bytes(self) -> int:
        if isinstance(self._context, str):
            return len(self._context)
        return sum(len(v) for v in self._context.values())

    def _start_worker(self) -> _WorkerProcess:
        tmpdir = tempfile.mkdtemp(prefix="rlm-sandbox-")
        parent_sock, child_sock = socket.socketpair()
        # An anonymous file: the worker's cwd stays empty, and startup errors can be read back.
        with tempfile.TemporaryFile() as stderr_file:
            try:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "rlm_local.sandbox.worker",
                        "--fd",
                        str(child_sock.fileno()),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr_file,
                    cwd=tmpdir,
                    env=_worker_env(),
                    pass_fds=(child_sock.fileno(),),
                    close_fds=True,
                    start_new_session=True,
                )
            except OSError as exc:
                parent_sock.close()
                shutil.rmtree(tmpdir, ignore_errors=True)
                raise SandboxError(f"The sandbox worker could not be started: {exc}.") from exc
            finally:
                child_sock.close()
            worker = _WorkerProcess(proc, parent_sock, tmpdir)
            finalizer = weakref.finalize(self, worker.stop)
            try:
                self._handshake(worker)
            except BaseException as exc:
                reason = self._startup_failure(worker, stderr_file, exc)
                finalizer.detach()
                worker.stop()
                if isinstance(exc, Exception):
                    raise SandboxError(reason) from exc
                raise
        self._finalizer = finalizer
        return worker

    def _handshake(self, worker: _WorkerProcess) -> None:
        timeout = _STARTUP_SECONDS + self._context_bytes() / _STARTUP_BYTES_PER_SECOND
        deadline = time.monotonic() + timeout
        worker.sock.settimeout(timeout)
        meta, blobs = self._context_frames()
        limits = {
            "cpu_seconds": self.limits.cpu_seconds,
            "memory_mb": self.limits.memory_mb,
            "output_chars": self.limits.output_chars,
        }
        send_message(
            worker.sock,
            {"op": "init", "limits": limits, "bridge": sorted(self._bridge), "context": meta},
        )
        for blob in blobs:
            send_frame(worker.sock, blob)
            del blob
        reply = recv_message(worker.sock, MAX_FRAME_BYTES, deadline, "replace")
        if reply["op"] == "fatal":
            raise ProtocolError(str(reply.get("message", "unknown failure")))
        if reply["op"] != "ready":
            raise ProtocolError("unexpected first message")

    @staticmethod
    def _startup_failure(worker: _WorkerProcess, stderr_file: IO[bytes], exc: BaseException) -> str:
        detail = str(exc) if isinstance(exc, ProtocolError) else ""
        if not detail or isinstance(exc, PeerClosed):
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(timeout=2.0)
            try:
                stderr_file.seek(0)
                text = stderr_file.read()[-4000:].decode("utf-8", "replace")
                lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
                detail = lines[-1] if lines else ""
            except OSError:
                detail = ""
        if not detail:
            detail = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc)
        return (
            f"The sandbox worker could not start ({detail}); check that RestrictedPython 9.0 "
            f"is installed for {sys.executable}."
        )

    def _replace_worker(self) -> None:
        self._drop_worker()
        self.restarts += 1
        self._worker = self._start_worker()

    # --- running cells ---------------------------------------------------------------------------

    def run(self, code: str) -> CellResult:
        """Run one cell; the worker keeps its variables for the next cell unless it is replaced."""
        if not isinstance(code, str):
            raise TypeError("code must be a str")
        with self._lock:
            if self._running:
                raise SandboxError("Sandbox.run was called from inside one of its bridge calls.")
            if self._closed:
                raise SandboxError("The sandbox is closed; create a new Sandbox.")
            if self._worker is None:  # an earlier replacement failed
                self._worker = self._start_worker()
            worker = self._worker
            started = time.monotonic()
            budget = _BridgeBudget(self.limits)
            self._running = True
            try:
                reply = self._exchange(worker, code, started, budget)
            except _WorkerLost as lost:
                seconds = time.monotonic() - started
                if self._closed:  # close() was called by a bridge function during the cell
                    raise SandboxError("The sandbox was closed while the cell ran.") from None
                self._replace_worker()
                error = budget.explain(f"{lost} {_LOST}")
                return CellResult("", error, None, seconds, True)
            except BaseException:
                self._drop_worker()  # state unknown (e.g. KeyboardInterrupt in a bridge call)
                raise
            finally:
                self._running = False
            seconds = time.monotonic() - started
            error = budget.explain(reply["error"])
            restarted = False
            if reply["restart"]:
                self._replace_worker()
                restarted = True
                error = error or "MemoryError"
                if error.startswith("MemoryError"):
                    error += " The worker had no memory left."
                error = f"{error} {_LOST}"
            return CellResult(
                reply["output"], error, reply["final"], seconds, restarted, reply.get("values")
            )

    def _exchange(
        self, worker: _WorkerProcess, code: str, started: float, budget: _BridgeBudget
    ) -> dict[str, Any]:
        wall = self.limits.wall_seconds
        deadline = started + wall
        timeout_text = f"TimeoutError: the cell exceeded the {wall:g} s time limit and was stopped."
        try:
            worker.sock.settimeout(max(wall, 1.0))
            send_message(worker.sock, {"op": "run", "code": code})
        except OSError:
            raise _WorkerLost(worker.exit_reason(self.limits)) from None
        while True:
            try:
                message = recv_message(worker.sock, MAX_FRAME_BYTES, deadline, "replace")
            except TimeoutError:
                raise _WorkerLost(timeout_text) from None
            except PeerClosed:
                raise _WorkerLost(worker.exit_reason(self.limits)) from None
            except ProtocolError:
                raise _WorkerLost("WorkerError: the worker sent an invalid message.") from None
            if message["op"] == "call":
                served_from = time.monotonic()
                reply = budget.refusal() or self._serve_call(message)
                spent = time.monotonic() - served_from
                budget.spend(spent)
                payload = encode_message(reply)
                deadline += spent  # bridge time is not the cell's: it has its own limit
                try:
                    worker.sock.settimeout(max(deadline - time.monotonic(), 1.0))
                    send_frame(worker.sock, payload)
                except TimeoutError:
                    raise _WorkerLost(timeout_text) from None
                except OSError:
                    raise _WorkerLost(worker.exit_reason(self.limits)) from None
                continue
            if message["op"] == "result" and _valid_result(message):
                return message
            raise _WorkerLost("WorkerError: the worker sent an invalid message.")

    def _serve_call(self, message: dict[str, Any]) -> dict[str, Any]:
        """Run one bridge call here in the parent; the worker only ever sees plain data back."""
        name, args, kwargs = message.get("name"), message.get("args"), message.get("kwargs")
        func = self._bridge.get(name) if isinstance(name, str) else None
        if func is None or not isinstance(args, list) or not isinstance(kwargs, dict):
            return {"op": "raise", "message": "invalid bridge call"}
        try:
            value = func(*args, **kwargs)
        except Exception as exc:  # the cell gets RuntimeError("<name>: <message>")
            return {"op": "raise", "message": _exception_message(exc)}
        try:
            return {"op": "return", "value": to_plain(value, "the return value")}
        except TypeError as exc:
            return {"op": "raise", "message": f"returned a value that is not plain data ({exc})"}


def _valid_result(message: dict[str, Any]) -> bool:
    return (
        isinstance(message.get("output"), str)
        and (message.get("error") is None or isinstance(message.get("error"), str))
        and (message.get("final") is None or isinstance(message.get("final"), str))
        and (message.get("values") is None or isinstance(message.get("values"), str))
        and isinstance(message.get("restart"), bool)
    )
