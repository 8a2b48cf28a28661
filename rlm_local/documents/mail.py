"""E-mail (.eml) and mailboxes (.mbox) with the standard library's email package.

Each message: its From/To/Cc/Date/Subject lines, its body (plain text, or the HTML part's main
text), then its attachments: text ones inline, documents read by their own converter, others
named. Outlook .msg is not read: extract-msg pulls in about fifteen packages (docs/documents.md).
"""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from rlm_local.documents.base import ConvertOptions, DocumentError, Extracted
from rlm_local.documents.web import html_text

HEADERS = ("From", "To", "Cc", "Date", "Subject")
MAX_DEPTH = 2  # attachments of attachments of a message
_MBOX_SEPARATOR = re.compile(rb"^From [^\r\n]*\r?\n", re.MULTILINE)
_ESCAPED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        text = payload.decode("utf-8", errors="replace")
    return html_text(text) if part.get_content_type() == "text/html" else text.strip()


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a header malformed past what the parser mends: left out, not fatal
        return ""
    return " ".join(str(value or "").split())


def _attachment(part: Message, options: ConvertOptions, depth: int) -> str:
    name = part.get_filename() or "(no name)"
    kind = part.get_content_type()
    head = f"--- attachment {name} ({kind}) ---"
    if kind.startswith("text/"):
        return f"{head}\n{_part_text(part)}"
    if kind == "message/rfc822" and depth < MAX_DEPTH:
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return f"{head}\n{message_text(inner[0], options, depth + 1)}"
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or depth >= MAX_DEPTH:
        return f"{head}\n(not read)"
    from rlm_local.documents.registry import convert_bytes  # the registry imports this module

    try:
        converted = convert_bytes(payload, name, options)
    except DocumentError as exc:
        return f"{head}\n(not read: {exc})"
    return f"{head}\n{converted.text.strip()}"


def message_text(message: Message, options: ConvertOptions, depth: int = 0) -> str:
    lines = [f"{h}: {v}" for h in HEADERS if (v := _header(message, h))]
    body_part = (
        message.get_body(preferencelist=("plain", "html"))
        if isinstance(message, EmailMessage)
        else None
    )
    if body_part is None and not message.is_multipart():
        body_part = message
    if body_part is not None:
        lines += ["", _part_text(body_part)]
    attachments = message.iter_attachments() if isinstance(message, EmailMessage) else []
    for part in attachments:
        lines += ["", _attachment(part, options, depth)]
    return "\n".join(lines).strip()


def _parse(data: bytes) -> Message:
    return BytesParser(policy=policy.default).parsebytes(data)


def convert_eml(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    text = message_text(_parse(data), options)
    if not text:
        raise DocumentError("it holds no message")
    return Extracted(text + "\n")


def convert_mbox(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    """Messages split at their `From ` lines (mboxo/mboxrd), each parsed like an .eml file."""
    starts = [m.end() for m in _MBOX_SEPARATOR.finditer(data)]
    ends = [m.start() for m in _MBOX_SEPARATOR.finditer(data)][1:] + [len(data)]
    parts = []
    for number, (start, end) in enumerate(zip(starts, ends, strict=True), start=1):
        raw = _ESCAPED_FROM.sub(rb"\1", data[start:end])
        parts.append(f"--- message {number} ---\n{message_text(_parse(raw), options)}")
    if not parts:
        raise DocumentError("it holds no messages (no 'From ' line starts one)")
    return Extracted("\n\n".join(parts) + "\n", pages=len(parts))
