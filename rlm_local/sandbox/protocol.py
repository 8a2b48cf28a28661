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
    so converting hostile data runs no code of the cell.
    """
    if depth > MAX_DEPTH:
        raise TypeError(f"{where} is nested more than {MAX_DEPTH} levels deep (or contains itself)")
    # Paths name the offending part, but only a few levels down, to keep messages short.
    sub = (lambda part: f"{where}{part}") if depth < 3 else (lambda part: where)
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, list | tuple):
        items = list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value)
        return [to_plain(item, sub(f"[{i}]"), depth + 1) for i, item in enumerate(items)]
    if isinstance(value, dict):
        plain: dict[str, Any] = {}
        for key, item in dict.items(value):
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; keys must be str")
            key = str.__str__(key)
            plain[key] = to_plain(item, sub(f"[{key[:20]!r}]"), depth + 1)
        return plain
    raise TypeError(
        f"{where} is of type {type(value).__name__}; only plain data ({PLAIN_TYPES_NOTE})"
    )
