"""`python -m benchmarks.documents`: PDF extraction measured apart from answering.

    python -m benchmarks.documents extract --pages 300          # every PDF library, no models
    python -m benchmarks.documents answer --pages 300 --n 3     # rlm-local end to end (models)

`extract` builds a generated PDF (haystack prose, one needle sentence on a known page) and a
reading-order page, then times each installed library and checks the needle's page and the
reading order. `answer` times `load_inputs` (extraction, then again from the document cache) and
`RLM.ask` apart, and appends rows to results/documents.jsonl. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.haystack import Needle, haystack, make_needle

RESULTS = Path(__file__).parent / "results"
PAGE_CHARS = 2400  # prose on one generated page (Helvetica 10 on A4: about 26 lines)


# -- generated PDFs -----------------------------------------------------------------------------


def needle_pdf(path: Path, pages: int, needle_page: int, seed: int = 1) -> Needle:
    """A `pages`-page PDF of prose; the needle sentence is on page `needle_page` (1-based)."""
    from fpdf import FPDF

    needle = make_needle(seed)
    text = haystack(pages * PAGE_CHARS, seed).replace("\n\n", " ")
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_font("Helvetica", size=10)
    for n in range(1, pages + 1):
        chunk = text[(n - 1) * PAGE_CHARS : n * PAGE_CHARS]
        if n == needle_page:
            cut = chunk.find(". ", len(chunk) // 2) + 1 or len(chunk)
            chunk = f"{chunk[:cut]} {needle.sentence}{chunk[cut:]}"
        pdf.add_page()
        pdf.multi_cell(0, 5, chunk.strip())
    pdf.output(str(path))
    return needle


def order_pdf(path: Path) -> list[str]:
    """One page whose content stream is out of reading order; returns the sentences in the
    order a reader reads them: a heading, two columns (the right one drawn first), a 3x3 table
    (drawn bottom row first), a footer drawn before everything else."""
    from fpdf import FPDF

    rng = random.Random(5)
    words = [w for w in re.findall(r"[a-z]+", haystack(4000, 3)) if len(w) > 3]

    def sentence(i: int) -> str:
        return f"S{i:02d} " + " ".join(rng.choice(words) for _ in range(5))

    heading = sentence(0)
    left = [sentence(i) for i in range(1, 11)]
    right = [sentence(i) for i in range(11, 21)]
    table = [[sentence(21 + 3 * r + c)[:3] + f" r{r}c{c}" for c in range(3)] for r in range(3)]
    footer = sentence(30)
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_font("Helvetica", size=9)
    pdf.set_xy(10, 280)
    pdf.cell(0, 5, footer)
    for i, line in enumerate(right):
        pdf.set_xy(110, 30 + 6 * i)
        pdf.cell(90, 5, line)
    pdf.set_xy(10, 15)
    pdf.cell(0, 6, heading)
    for i, line in enumerate(left):
        pdf.set_xy(10, 30 + 6 * i)
        pdf.cell(90, 5, line)
    for r in reversed(range(3)):
        for c in range(3):
            pdf.set_xy(10 + 60 * c, 110 + 7 * r)
            pdf.cell(55, 6, table[r][c], border=1)
    pdf.output(str(path))
    return [heading, *left, *right, *[cell for row in table for cell in row], footer]


# -- the libraries ------------------------------------------------------------------------------


def _pypdfium2(path: Path) -> list[str]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        texts = []
        for page in pdf:
            textpage = page.get_textpage()
            texts.append(textpage.get_text_bounded())
            textpage.close()
            page.close()
        return texts
    finally:
        pdf.close()


def _pypdf(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(str(path)).pages]


def _pypdf_layout(path: Path) -> list[str]:
    from pypdf import PdfReader

    pages = PdfReader(str(path)).pages
    return [page.extract_text(extraction_mode="layout") or "" for page in pages]


def _pdfminer(path: Path) -> list[str]:
    from pdfminer.high_level import extract_text

    text = extract_text(str(path))
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


EXTRACTORS: dict[str, Callable[[Path], list[str]]] = {
    "pypdfium2": _pypdfium2,
    "pypdf": _pypdf,
    "pypdf-layout": _pypdf_layout,
    "pdfminer.six": _pdfminer,
}


def _version(library: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(library.split("-")[0])
    except PackageNotFoundError:
        return ""


def order_score(text: str, expected: list[str]) -> float:
    """Reading-order fidelity: the longest run of expected sentences found whole and in order
    (a longest increasing subsequence of their positions) over their number."""
    flat = " ".join(text.split())
    positions = [flat.find(" ".join(s.split())) for s in expected]
    found = [p for p in positions if p >= 0]
    best: list[int] = []  # patience sorting: best[k] = smallest tail of a run of length k+1
    for p in found:
        lo, hi = 0, len(best)
        while lo < hi:
            mid = (lo + hi) // 2
            if best[mid] < p:
                lo = mid + 1
            else:
                hi = mid
        best[lo : lo + 1] = [p]
    return len(best) / len(expected)


@dataclass
class ExtractRow:
    library: str
    version: str
    pages: int
    seconds: float
    chars: int
    needle_page: int | None  # the page the needle was read on (None: not found)
    order: float  # reading-order fidelity on the out-of-order page, 0..1


def measure(
    library: str, big: Path, needle: Needle, order_page: Path, order: list[str]
) -> ExtractRow:
    extract = EXTRACTORS[library]
    started = time.perf_counter()
    texts = extract(big)
    seconds = time.perf_counter() - started
    found = next(
        (i + 1 for i, t in enumerate(texts) if needle.value in t and needle.key in t), None
    )
    return ExtractRow(
        library=library,
        version=_version(library),
        pages=len(texts),
        seconds=round(seconds, 2),
        chars=sum(map(len, texts)),
        needle_page=found,
        order=round(order_score("\n".join(extract(order_page)), order), 2),
    )


def run_extract(args: argparse.Namespace) -> list[ExtractRow]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        big, page = Path(tmp) / "big.pdf", Path(tmp) / "order.pdf"
        needle = needle_pdf(big, args.pages, args.needle_page)
        order = order_pdf(page)
        print(f"{args.pages} pages, {big.stat().st_size / 1e6:.1f} MB; needle on page "
              f"{args.needle_page}")  # fmt: skip
        print("| library | version | pages | seconds | characters | needle read on page "
              "| reading order |\n| --- | --- | --- | --- | --- | --- | --- |")  # fmt: skip
        for library in args.libraries.split(","):
            try:
                row = measure(library, big, needle, page, order)
            except ImportError:
                print(f"| {library} | not installed | | | | | |")
                continue
            rows.append(row)
            print(f"| {row.library} | {row.version} | {row.pages} | {row.seconds:.2f} | "
                  f"{row.chars:,} | {row.needle_page} | {row.order:.2f} |")  # fmt: skip
        first, cached = time_load_inputs(big, Path(tmp) / "documents")
        print(f"\nrlm-local load_inputs on the same PDF: {first:.2f} s converting, "
              f"{cached:.3f} s from the document cache")  # fmt: skip
    chars, seconds = time_html(args.pages * PAGE_CHARS)
    print(f"HTML main text (html.parser) of a {chars / 1e6:.1f} MB page: {seconds:.2f} s")
    return rows


def time_load_inputs(pdf: Path, cache: Path) -> tuple[float, float]:
    """Seconds of load_inputs converting the PDF, then reading its text back from the cache."""
    from rlm_local.engine import InputOptions, load_inputs

    options = InputOptions(documents_cache=cache)
    times = []
    for _ in range(2):
        started = time.perf_counter()
        load_inputs([str(pdf)], options)
        times.append(time.perf_counter() - started)
    return times[0], times[1]


def time_html(n_chars: int) -> tuple[int, float]:
    """A generated page (navigation, scripts, paragraphs, a table) through html_text."""
    from rlm_local.documents.web import html_text

    paragraphs = haystack(n_chars, 9).split("\n\n")
    rows = "".join(f"<tr><td>{i}</td><td>row {i}</td></tr>" for i in range(500))
    page = (
        "<!DOCTYPE html><html><head><title>Report</title><style>p{margin:0}</style></head><body>"
        "<nav><a href='/'>Home</a></nav><script>var x = 1;</script><main>"
        + "".join(f"<h2>Part {i}</h2><p>{p}</p>" for i, p in enumerate(paragraphs))
        + f"<table>{rows}</table></main><footer>(c)</footer></body></html>"
    )
    started = time.perf_counter()
    html_text(page)
    return len(page), time.perf_counter() - started


# -- end to end (needs the models) --------------------------------------------------------------


def run_answer(args: argparse.Namespace) -> Path:
    """Per seed: a fresh PDF (the needle on a seeded page), load_inputs twice (extraction, then
    the document cache), then RLM.ask; one row per seed with each time apart. Runs the real
    models unless --scripted."""
    from benchmarks.machine import machine
    from benchmarks.runner import commit
    from rlm_local.api import RLM
    from rlm_local.config import load_settings
    from rlm_local.engine import InputOptions, RunOptions, load_inputs

    settings = load_settings(use_cache=not args.no_cache)
    if args.home:
        settings = settings.with_overrides(home=Path(args.home))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "documents.jsonl"
    models = {}
    if args.scripted:  # the plumbing only (CI's smoke test), not a measurement
        from benchmarks.scripted import scripted_models

        models = dict(zip(("root", "sub"), scripted_models(), strict=True))
    run_options = RunOptions(max_seconds=args.max_seconds)
    with RLM(settings, run_options, **models) as rlm, tempfile.TemporaryDirectory() as tmp:
        options = InputOptions(documents_cache=Path(tmp) / "documents")  # empty: honest timing
        for seed in range(1, args.n + 1):
            pdf = Path(tmp) / f"report-{seed}.pdf"
            page = random.Random(seed).randint(1, args.pages)
            needle = needle_pdf(pdf, args.pages, page, seed)
            started = time.perf_counter()
            loaded = load_inputs([str(pdf)], options)
            extract_s = time.perf_counter() - started
            started = time.perf_counter()
            load_inputs([str(pdf)], options)
            cached_s = time.perf_counter() - started
            question = f"{needle.question} On which page of the PDF is it?"
            result = rlm.ask(question, loaded.context)
            answer = result.answer or ""
            row = {
                "suite": "pdf-needle",
                "pages": args.pages,
                "seed": seed,
                "needle_page": page,
                "extract_seconds": round(extract_s, 2),
                "cached_extract_seconds": round(cached_s, 3),
                "answer_seconds": result.seconds,
                "number_right": needle.value in answer,
                "page_right": re.search(rf"\b{page}\b", answer) is not None,
                "answer": answer,
                "turns": result.stats.turns,
                "sub_calls": result.stats.sub_calls,
                "converter": [asdict(r) for r in loaded.conversions],
                "machine": machine(),
                "commit": commit(),
            }
            with raw.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            print(json.dumps(row, ensure_ascii=False))
    return raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.documents")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="time each PDF library; no models")
    ex.add_argument("--pages", type=int, default=300)
    ex.add_argument("--needle-page", type=int, default=150)
    ex.add_argument("--libraries", default=",".join(EXTRACTORS))
    an = sub.add_parser("answer", help="a needle in a PDF, end to end with the real models")
    an.add_argument("--pages", type=int, default=300)
    an.add_argument("--n", type=int, default=3)
    an.add_argument("--no-cache", action="store_true", help="no model-call cache")
    an.add_argument("--max-seconds", type=float, default=900.0)
    an.add_argument("--home", help="RLM_LOCAL_HOME for this run")
    an.add_argument("--out", default=str(RESULTS))
    an.add_argument("--scripted", action="store_true", help="scripted models (smoke test only)")
    args = parser.parse_args(argv)
    if args.command == "extract":
        run_extract(args)
    else:
        run_answer(args)


if __name__ == "__main__":
    main()
