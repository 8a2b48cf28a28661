"""Framing between the parent and the sandbox worker: length-prefixed JSON, never pickle.

Every frame is an 8-byte big-endian length followed by that many bytes. Messages are UTF-8 JSON
objects; the context travels once, at worker start, as raw UTF-8 blobs so a 100-MB text is not
JSON-escaped. The parent decodes worker frames with a size cap and only ever gets plain JSON types
back, so it never calls a method of an object the worker (or the cell) made.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

HEADER = struct.Struct("!Q")

# A cell cannot send a bridge call or a result larger than this (the worker refuses it first).
MAX_CALL_BYTES = 32 * 1024 * 1024
# The parent's hard cap on any frame from the worker: larger means a broken or hostile worker.
MAX_FRAME_BYTES = 2 * MAX_CALL_BYTES
# How deep plain data may nest when it crosses the bridge.
MAX_DEPTH = 64

# Exit status of a worker that lost the thread of the protocol in the middle of a bridge call.
EXIT_BRIDGE_FAILED = 3

PLAIN_TYPES_NOTE = "str, int, float, bool, None, list, tuple or dict with str keys"
EXACT_TYPES_NOTE = "str, int, float, bool, None, bytes, or a list, tuple, set or dict of them"


class ProtocolError(Exception):
    """The other side sent something that is not a valid frame or message."""


class PeerClosed(ProtocolError):
    """The other side closed the connection (for the parent: the worker died)."""


def encode_message(message: dict[str, Any]) -> bytes:
    """One JSON message as frame payload; surrogates survive the round trip."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


# Writing to a dead peer must raise BrokenPipeError, never deliver SIGPIPE (a host program may
# have restored SIGPIPE's default action, which would kill it).
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)


def send_frame(sock: socket.socket, payload: bytes | bytearray | memoryview) -> None:
    sock.sendall(HEADER.pack(len(payload)), _SEND_FLAGS)
    sock.sendall(payload, _SEND_FLAGS)


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    send_frame(sock, encode_message(message))


def _recv_exact_into(sock: socket.socket, view: memoryview, deadline: float | None) -> None:
    got = 0
    total = len(view)
    while got < total:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed while reading from the worker")
            sock.settimeout(remaining)
        try:
            n = sock.recv_into(view[got:], total - got)
        except TimeoutError:
            raise
        except OSError as exc:
            raise PeerClosed(f"connection broken: {exc}") from exc
        if n == 0:
            raise PeerClosed("connection closed")
        got += n


def recv_frame(
    sock: socket.socket, max_bytes: int | None = None, deadline: float | None = None
) -> bytearray:
    """Read one frame; raise TimeoutError after `deadline` (time.monotonic), PeerClosed on EOF."""
    header = bytearray(HEADER.size)
    _recv_exact_into(sock, memoryview(header), deadline)
    (size,) = HEADER.unpack(header)
    if max_bytes is not None and size > max_bytes:
        raise ProtocolError(f"frame of {size} bytes exceeds the limit of {max_bytes}")
    payload = bytearray(size)
    if size:
        _recv_exact_into(sock, memoryview(payload), deadline)
    return payload


def recv_message(
    sock: socket.socket,
    max_bytes: int | None = None,
    deadline: float | None = None,
    errors: str = "surrogatepass",
) -> dict[str, Any]:
    """Read one JSON object; anything else is a ProtocolError.

    The parent passes errors="replace": text from a cell may hold lone surrogates, which would
    make any later print or UTF-8 encode in the parent fail.
    """
    payload = recv_frame(sock, max_bytes, deadline)
    try:
        message = json.loads(payload.decode("utf-8", errors))
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ProtocolError(f"undecodable message: {type(exc).__name__}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError("message is not an object with an 'op'")
    return message


def to_plain(value: Any, where: str = "value", depth: int = 0) -> Any:
    """Copy `value` into plain JSON types, or raise TypeError naming the offending part.

    Only the built-in types' own methods are used (never an override a cell may have defined),
    and every part is checked by its real type (not `isinstance`, which asks `__class__`), so
    converting hostile data runs no code of the cell and what comes out is of the exact types.
    """
    if depth > MAX_DEPTH:
        raise TypeError(f"{where} is nested more than {MAX_DEPTH} levels deep (or contains itself)")
    # Paths name the offending part, but only a few levels down, to keep messages short.
    sub = (lambda part: f"{where}{part}") if depth < 3 else (lambda part: where)
    kind = type(value)
    if value is None or value is True or value is False:
        return value
    if issubclass(kind, str):
        return str.__str__(value)
    if issubclass(kind, int):
        return int.__int__(value)
    if issubclass(kind, float):
        return float.__float__(value)
    if issubclass(kind, list | tuple):
        items = list.__iter__(value) if issubclass(kind, list) else tuple.__iter__(value)
        return [to_plain(item, sub(f"[{i}]"), depth + 1) for i, item in enumerate(items)]
    if issubclass(kind, dict):
        plain: dict[str, Any] = {}
        for key, item in dict.items(value):
            if not issubclass(type(key), str):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; keys must be str")
            key = str.__str__(key)
            plain[key] = to_plain(item, sub(f"[{key[:20]!r}]"), depth + 1)
        return plain
    raise TypeError(f"{where} is of type {kind.__name__}; only plain data ({PLAIN_TYPES_NOTE})")


# Built-in scalar types and the method of each that copies an instance of a subclass into the
# exact type, reading the data only (bool cannot be subclassed; True and False are kept as is).
_EXACT_SCALARS: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (str, str.__str__),
    (int, int.__int__),
    (float, float.__float__),
    (bytes, bytes.__bytes__),
    (complex, complex.__complex__),
)
_EXACT_SCALAR_TYPES = frozenset([str, int, float, bytes, complex, bool, type(None)])


class _Refused(Exception):
    """A part to_exact cannot copy; the path to it is collected on the way out."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
        self.path: list[str] = []  # innermost part first


def to_exact(value: Any, where: str = "value") -> Any:
    """A copy of `value` made only of exact built-in types, or TypeError naming the bad part.

    A cell may hand over an instance of its own subclass of str (or list, dict, ...) whose
    methods lie: `startswith` saying no to "_". After this copy, trusted code that checks or uses
    the value runs the built-in methods only. The data is read with the built-in types' own
    methods, so the copy runs no code of the cell; shared parts are copied once, and a value that
    contains itself is refused.
    """
    try:
        return _ExactCopy().copy(value, 0)
    except _Refused as exc:
        path = "".join(reversed(exc.path[-3:]))  # only a few levels down, to keep it short
        raise TypeError(f"{where}{path} {exc.what}") from None


class _ExactCopy:
    """One to_exact: the containers copied so far, by id (kept alive while the copy runs)."""

    def __init__(self) -> None:
        self.done: dict[int, tuple[Any, Any]] = {}
        self.active: set[int] = set()

    def copy(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind in _EXACT_SCALAR_TYPES:
            return value
        for base, exact in _EXACT_SCALARS:
            if issubclass(kind, base):
                return exact(value)
        if depth >= MAX_DEPTH:
            raise _Refused(f"is nested more than {MAX_DEPTH} levels deep")
        key = id(value)
        if key in self.done:
            return self.done[key][1]
        if key in self.active:
            raise _Refused("contains itself")
        self.active.add(key)
        try:
            copied = self._container(value, kind, depth + 1)
        finally:
            self.active.discard(key)
        self.done[key] = (value, copied)
        return copied

    def _container(self, value: Any, kind: type, depth: int) -> Any:
        if issubclass(kind, list | tuple):
            items = list.__iter__(value) if issubclass(kind, list) else tuple.__iter__(value)
            copied = self._items(items, depth)
            return copied if issubclass(kind, list) else tuple(copied)
        if issubclass(kind, set | frozenset):
            items = set.__iter__(value) if issubclass(kind, set) else frozenset.__iter__(value)
            return (set if issubclass(kind, set) else frozenset)(self._items(items, depth, False))
        if issubclass(kind, dict):
            result: dict[Any, Any] = {}
            for k, v in dict.items(value):
                try:
                    key = self.copy(k, depth)
                except _Refused as exc:
                    exc.path.append(" (a key)")
                    raise
                try:
                    result[key] = self.copy(v, depth)
                except _Refused as exc:
                    exc.path.append(f"[{key!r:.24}]" if type(key) is not str else f"[{key[:20]!r}]")
                    raise
            return result
        raise _Refused(f"is of type {kind.__name__}; only {EXACT_TYPES_NOTE}")

    def _items(self, items: Iterator[Any], depth: int, indexed: bool = True) -> list[Any]:
        copied: list[Any] = []
        for i, item in enumerate(items):
            if type(item) in _EXACT_SCALAR_TYPES:
                copied.append(item)
                continue
            try:
                copied.append(self.copy(item, depth))
            except _Refused as exc:
                exc.path.append(f"[{i}]" if indexed else " (an item)")
                raise
        return copied
