"""HTML to its main text with the standard library's html.parser.

Scripts, styles, forms and navigation are dropped; when the page marks its content with <main>
or <article>, only that (and the title) is kept. Headings become markdown headings, list items
"- " lines, table rows one line of cells. Libraries that find the main text on pages that do not
mark it (trafilatura) pull in a dozen packages; see docs/documents.md.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from rlm_local.documents.base import ConvertOptions, DocumentError, Extracted

DROPPED = {"script", "style", "noscript", "template", "svg", "canvas", "iframe", "object",
           "nav", "form", "button", "select", "head"}  # fmt: skip
BLOCKS = {"p", "div", "section", "br", "hr", "li", "tr", "table", "ul", "ol", "dl", "dt", "dd",
          "blockquote", "pre", "header", "footer", "aside", "figure", "figcaption", "address",
          "h1", "h2", "h3", "h4", "h5", "h6", "title", "main", "article"}  # fmt: skip
VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source",
        "track", "wbr", "param"}  # fmt: skip
MAIN = {"main", "article"}


class _Text(HTMLParser):
    """Collects text in two streams: everything, and what lies inside <main>/<article>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.all: list[str] = []
        self.main: list[str] = []
        self.title: list[str] = []
        self.stack: list[str] = []
        self.dropped = 0  # depth inside dropped elements
        self.in_main = 0
        self.in_title = False

    def _emit(self, text: str) -> None:
        self.all.append(text)
        if self.in_main:
            self.main.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if tag in VOID:
            if tag in ("br", "hr"):
                self._emit("\n")
            return
        self.stack.append(tag)
        if tag in DROPPED:
            self.dropped += 1
        if tag in MAIN:
            self.in_main += 1
        if self.dropped:
            return
        if tag in BLOCKS:
            self._emit("\n")
        if re.fullmatch(r"h[1-6]", tag):
            self._emit("#" * int(tag[1]) + " ")
        elif tag == "li":
            self._emit("- ")
        elif tag in ("td", "th"):
            self._emit(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag not in self.stack:
            return  # a stray end tag
        while self.stack:  # close what the page left open inside it
            open_tag = self.stack.pop()
            if open_tag in DROPPED:
                self.dropped -= 1
            if open_tag in MAIN:
                self.in_main -= 1
            if open_tag in BLOCKS and not self.dropped:
                self._emit("\n")
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.dropped:
            self._emit(data)


def _tidy(parts: list[str]) -> str:
    lines = []
    for line in "".join(parts).splitlines():
        line = " ".join(line.split())
        if line.startswith("| "):
            line = line[2:]
        if line and line not in ("-", "#"):
            lines.append(line)
    return "\n".join(lines)


def html_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    body = _tidy(parser.main if parser.main else parser.all)
    title = " ".join("".join(parser.title).split())
    if title and not body.startswith(f"# {title}"):
        body = f"# {title}\n{body}" if body else f"# {title}"
    return body


_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_-]+)""", re.IGNORECASE)


def decode_html(data: bytes) -> str:
    """UTF-8, else the charset the page declares, else Windows-1252 (what browsers assume)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _CHARSET.search(data[:4096])
    for encoding in ([declared.group(1).decode("ascii")] if declared else []) + ["cp1252"]:
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("latin-1")


def convert_html(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    markup = decode_html(data)
    text = html_text(markup)
    if not text.strip():
        raise DocumentError("it holds no text outside scripts and styles")
    return Extracted(text + "\n")
