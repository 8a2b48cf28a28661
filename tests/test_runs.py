"""`runs list|show|html` on traces written by the real engine (scripted models, real sandbox and
cache), and the HTML page rendered by a real headless Chromium."""

from __future__ import annotations

import html
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from scripted import ScriptedModel

from rlm_local.api import RLM
from rlm_local.config import load_settings
from rlm_local.engine import RunOptions
from rlm_local.report import render_html, write_report
from rlm_local.trace import find_run, list_runs, load_run, read_trace, summarize

CHROMIUM = "/usr/bin/chromium"
HOSTILE_QUESTION = "What is the code? <img src=x onerror=alert('q')>"
DOCUMENT = "alpha beta. The secret code is 4417. gamma delta. <script>alert('doc')</script>\n" * 120
ROOT_SCRIPT = [
    # turn 1: a plain cell
    "hits = grep('secret code')\nprint(len(hits), hits[0][:60])",
    # turn 2: a batch of sub-calls, whose answers are hostile
    "r = llm_query_batched([f'Part {i}: ' + c[:80] for i, c in enumerate(chunks(size=3000))])\n"
    "print(len(r))",
    # turn 3: hostile output, a terminal escape, then an error
    "print('<script>alert(1)</script>')\nprint('\\x1b[31mred\\x1b[0m')\nprint(undefined)",
    # turn 4: an rlm_query run at depth 1 (its two turns below), then one more sub-call
    "sub = rlm_query('What code?', context[:300])\nprint(sub, llm_query('check ' + sub))",
    "print(llm_query('x'))",  # depth 1, turn 1
    "print(llm_query('x'))",  # depth 1, turn 2: a repeat, resampled into the next reply
    "FINAL('4417')",
    # turn 5
    "FINAL('4417 </pre><script>alert(3)</script>')",
]


def _sub_answer(prompt: str) -> str:
    return f"</pre><script>alert(2)</script> about {prompt[:20]!r}"


def _env(home: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RLM_LOCAL_ROOT", "RLM_LOCAL_SUB")}
    return {**env, "RLM_LOCAL_HOME": str(home), "RLM_LOCAL_CONFIG": str(config)}


@dataclass
class Recorded:
    home: Path
    env: dict[str, str]
    full: Path  # the trace with every kind of event
    no_answer: Path
    direct: Path
    ids: list[str] = field(default_factory=list)

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """Three real runs in one home: a full one, one out of turns, one in direct mode."""
    base = tmp_path_factory.mktemp("runs")
    config = base / "models.toml"
    config.write_text("")
    env = _env(base / "home", config)
    with pytest.MonkeyPatch.context() as mp:
        for key in ("RLM_LOCAL_ROOT", "RLM_LOCAL_SUB"):
            mp.delenv(key, raising=False)
        mp.setenv("RLM_LOCAL_HOME", env["RLM_LOCAL_HOME"])
        mp.setenv("RLM_LOCAL_CONFIG", env["RLM_LOCAL_CONFIG"])
        settings = load_settings()
        sub = ScriptedModel(answer=_sub_answer)
        with RLM(
            settings,
            RunOptions(mode="rlm", first_search=False),
            root=ScriptedModel(ROOT_SCRIPT),
            sub=sub,
        ) as r:
            full = r.ask(HOSTILE_QUESTION, DOCUMENT)
        root = ScriptedModel(["print(1)", "print(2)", "no_such_name)"])  # the forced answer fails
        with RLM(
            settings, RunOptions(mode="rlm", max_turns=2, first_search=False), root=root, sub=sub
        ) as r:
            no_answer = r.ask("Which turn?", DOCUMENT)
        with RLM(settings, RunOptions(mode="direct"), root=ScriptedModel(["4417"]), sub=sub) as r:
            direct = r.ask("Short one?", "The secret code is 4417.")
    assert full.answer == "4417 </pre><script>alert(3)</script>"
    assert no_answer.answer is None
    yield Recorded(
        home=base / "home",
        env=env,
        full=Path(str(full.trace_path)),
        no_answer=Path(str(no_answer.trace_path)),
        direct=Path(str(direct.trace_path)),
        ids=[str(full.run_id), str(no_answer.run_id), str(direct.run_id)],
    )


def _cli(rec: Recorded, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rlm_local", *args],
        capture_output=True,
        text=True,
        env=rec.env,
        timeout=120,
    )


# -- the trace as a tree ------------------------------------------------------------------------


def test_load_run_nests_turns_cells_sub_calls(recorded: Recorded) -> None:
    run = load_run(recorded.full)
    assert run.question == HOSTILE_QUESTION and run.status == "answered"
    assert [t.number for t in run.turns] == [1, 2, 3, 4, 5]
    assert all(t.depth == 0 for t in run.turns)
    one, two, three, four, five = run.turns
    assert one.cell is not None and "The secret code is 4417" in one.cell.output
    assert not one.cell.sub_calls
    assert two.cell is not None and len(two.cell.sub_calls) == 4  # 10,000 chars in 3,000s
    assert three.cell is not None and "<script>alert(1)</script>" in three.cell.output
    assert three.cell.error is not None and "NameError" in three.cell.error
    assert four.cell is not None and [c.prompt for c in four.cell.sub_calls] == ["check 4417"]
    (child,) = four.cell.children
    assert child.depth == 1 and [t.number for t in child.turns] == [1, 2]
    assert child.turns[0].cell is not None
    assert [c.prompt for c in child.turns[0].cell.sub_calls] == ["x"]
    assert child.turns[1].repeated_code == "print(llm_query('x'))"
    assert child.turns[1].cell is not None and child.turns[1].cell.final == "4417"
    assert five.cell is not None and five.cell.final == run.answer
    # Every sub-call of the trace is in the tree once, numbered in trace order.
    assert [c.index for c in run.sub_calls] == list(range(1, 7))
    assert run.stats["sub_calls"] == 7 and run.stats["turns"] == 7


def test_summaries_and_lookup(recorded: Recorded) -> None:
    summaries = list_runs(recorded.runs_dir)
    assert [s.run_id for s in summaries] == recorded.ids[::-1]  # newest first
    full = next(s for s in summaries if s.run_id == recorded.ids[0])
    assert (full.turns, full.sub_calls, full.status) == (7, 7, "answered")
    assert next(s for s in summaries if s.run_id == recorded.ids[1]).status == "no_answer"
    assert find_run(recorded.runs_dir, "last") == recorded.direct
    assert find_run(recorded.runs_dir, recorded.ids[0]) == recorded.full
    unique = next(
        n for n in range(1, 30) if sum(i.startswith(recorded.ids[0][:n]) for i in recorded.ids) == 1
    )
    assert find_run(recorded.runs_dir, recorded.ids[0][:unique]) == recorded.full


def test_torn_and_older_traces_still_read(recorded: Recorded, tmp_path: Path) -> None:
    """A run killed mid-write (no run_end, a torn last line) and a trace without the fields
    newer versions added (options, prompts, tokens) still list, show and render."""
    runs = tmp_path / "runs"
    runs.mkdir()
    lines = recorded.full.read_text("utf-8").splitlines()
    cut = next(i for i, line in enumerate(lines) if '"type": "sub_call"' in line) + 1
    torn = runs / "20200101-000000-aaaaaa.jsonl"
    torn.write_text("\n".join(lines[:cut]) + "\n" + lines[cut][:25], "utf-8")
    older = runs / "20190101-000000-bbbbbb.jsonl"
    newer_fields = ("options", "prompt", "prompt_sha256", "prompt_tokens", "completion_tokens")
    with older.open("w", encoding="utf-8") as fh:
        for event in read_trace(recorded.full):
            for key in newer_fields:
                event.pop(key, None)
            fh.write(json.dumps(event) + "\n")

    killed = summarize(torn)
    assert killed.status == "unfinished" and killed.answer is None
    assert killed.turns == 2 and killed.sub_calls == 1
    run = load_run(torn)
    assert run.status == "unfinished" and len(run.turns) == 2
    second = run.turns[1]
    assert second.cell is None and second.pending is not None  # the cell never reported
    assert len(second.pending.sub_calls) == 1
    assert "did not finish" in render_html(run)

    old = load_run(older)
    assert old.answer == "4417 </pre><script>alert(3)</script>" and not old.options
    assert len(old.sub_calls) == 6 and old.sub_calls[0].prompt == ""
    page = render_html(old)
    assert "sub-call 6" in page
    assert [s.run_id for s in list_runs(runs)] == [torn.stem, older.stem]


def test_compaction_and_direct_mode_in_the_tree(tmp_home: Path) -> None:
    root = ScriptedModel(
        ["print('x' * 1900)", "print('y' * 1900)", "FINAL('compacted')"], n_ctx=384 + 1900
    )
    sub = ScriptedModel(answer=_sub_answer)
    with RLM(
        load_settings(),
        RunOptions(mode="rlm", first_search=False, skip_checks=("unfounded",)),
        root=root,
        sub=sub,
    ) as rlm:
        result = rlm.ask("q?", DOCUMENT)
    run = load_run(Path(str(result.trace_path)))
    assert [t.compacted for t in run.turns] == [False, False, True]
    assert "conversation compacted" in render_html(run)

    with RLM(
        load_settings(), RunOptions(mode="direct"), root=ScriptedModel(["4417"]), sub=sub
    ) as rlm:
        trace = Path(str(rlm.ask("Short?", "The secret code is 4417.").trace_path))
    direct = load_run(trace)
    assert direct.mode == "direct" and direct.turns[0].code is None
    assert direct.turns[0].text == "4417" and direct.turns[0].work is None
    assert "read the input directly" in render_html(direct)
    assert summarize(trace).turns == 1


def test_runs_list_table_and_json(recorded: Recorded) -> None:
    listed = _cli(recorded, "runs", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    for column in ("id", "time", "question", "answer", "turns", "sub-calls", "seconds"):
        assert column in header
    assert [r.split()[0] for r in rows] == recorded.ids[::-1]
    full_row = next(r for r in rows if r.startswith(recorded.ids[0]))
    assert "What is the code?" in full_row and "4417" in full_row
    assert full_row.split()[-3:-1] == ["7", "7"]
    assert "(no answer)" in next(r for r in rows if r.startswith(recorded.ids[1]))

    data = json.loads(_cli(recorded, "runs", "list", "--json").stdout)
    assert [d["id"] for d in data] == recorded.ids[::-1]
    assert data[-1]["question"] == HOSTILE_QUESTION and data[-1]["sub_calls"] == 7
    assert data[-1]["started"][:2] == "20" and data[-1]["seconds"] > 0
    assert _cli(recorded, "runs", "list", "-n", "1", "--json").stdout.count('"id"') == 1


def test_runs_show_prints_the_tree(recorded: Recorded) -> None:
    shown = _cli(recorded, "runs", "show", recorded.ids[0][:-2])  # a unique prefix
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert HOSTILE_QUESTION in text
    for piece in ("turn 1", "turn 5", "cell", "sub-call 6", "rlm_query run at depth 1"):
        assert piece in text
    assert "turn 2 (depth 1)" in text and "resampled a repeated cell" in text
    assert "grep('secret code')" in text and "NameError" in text
    assert "answer: 4417 </pre><script>alert(3)</script>" in text
    assert "\x1b" not in text and "\\x1b[31mred" in text  # escape codes shown, not sent
    # The tree nests: a depth-1 turn is indented below turn 4's cell.
    lines = text.splitlines()
    turn4 = next(i for i, line in enumerate(lines) if "turn 4" in line)
    nested = next(i for i, line in enumerate(lines) if "turn 1 (depth 1)" in line)
    assert nested > turn4
    assert len(lines[nested]) - len(lines[nested].lstrip("│├└─ ")) > 8

    last = _cli(recorded, "runs", "show", "last")
    assert last.returncode == 0 and "Short one?" in last.stdout and "answer: 4417" in last.stdout
    assert "no answer" in _cli(recorded, "runs", "show", recorded.ids[1]).stdout


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nonesuch", "There is no run 'nonesuch'; see `rlm-local runs list`."),
        ("20", "matches 3 runs"),
    ],
)
def test_unknown_or_ambiguous_id_is_one_sentence(
    recorded: Recorded, ref: str, message: str
) -> None:
    for command in ("show", "html"):
        result = _cli(recorded, "runs", command, ref)
        assert result.returncode == 1
        assert message in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert result.stdout == ""


def test_runs_html_writes_an_escaped_self_contained_page(
    recorded: Recorded, tmp_path: Path
) -> None:
    made = _cli(recorded, "runs", "html", recorded.ids[0])
    assert made.returncode == 0, made.stderr
    page = Path(made.stdout.strip())
    assert page == recorded.runs_dir / f"{recorded.ids[0]}.html"
    source = page.read_text("utf-8")
    for raw in ("<script", "<img", "</pre><script>"):
        assert raw not in source
    assert html.escape(HOSTILE_QUESTION) in source
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in source  # a cell's output, as text
    assert "Content-Security-Policy" in source and "default-src 'none'" in source
    parsed = _Dom(source)
    assert parsed.scripts == 0
    assert not {"script", "img", "link", "iframe", "object", "embed"} & {t for t, _ in parsed.tags}
    assert "url(" not in source and "@import" not in source  # the CSS fetches nothing either
    links = [a for _, attrs in parsed.tags for a in attrs if a[0] in ("href", "src", "action")]
    assert links and all(str(value).startswith("#") for _, value in links)
    assert len([d for d in parsed.details if d["class"] == "sub-call"]) == 6

    chosen = tmp_path / "report" / "page.html"
    assert _cli(recorded, "runs", "html", "last", "-o", str(chosen)).stdout.strip() == str(chosen)
    assert "Short one?" in chosen.read_text("utf-8")
    blocked = _cli(recorded, "runs", "html", "last", "-o", "/proc/no/such/page.html")
    assert blocked.returncode == 1 and "choose another file with -o" in blocked.stderr
    assert "Traceback" not in blocked.stderr


def test_no_runs_yet(tmp_home: Path) -> None:
    env = dict(os.environ)
    listed = subprocess.run(
        [sys.executable, "-m", "rlm_local", "runs", "list"], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0 and listed.stdout == ""
    assert "No runs yet" in listed.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "rlm_local", "runs", "show", "last"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert shown.returncode == 1 and "There are no runs in" in shown.stderr
    assert "Traceback" not in shown.stderr


# -- the page in a real browser -----------------------------------------------------------------


class _Dom(HTMLParser):
    """What a dumped DOM holds: its text, its <details> (class, open, ids inside), scripts."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.details: list[dict[str, object]] = []
        self.stack: list[dict[str, object]] = []
        self.scripts = 0
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "script":
            self.scripts += 1
        if tag == "details":
            entry = {"class": values.get("class"), "open": "open" in values, "ids": []}
            self.details.append(entry)
            self.stack.append(entry)
        if values.get("id"):
            for entry in self.stack:
                entry["ids"].append(values["id"])  # type: ignore[union-attr]

    def handle_endtag(self, tag: str) -> None:
        if tag == "details" and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def content(self) -> str:
        return "".join(self.text)

    def around(self, element_id: str) -> list[dict[str, object]]:
        return [d for d in self.details if element_id in d["ids"]]  # type: ignore[operator]


def _chromium(tmp_path: Path, url: str, *mode: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1200,2000",
        *mode,
        url,
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _pixels(png: bytes) -> tuple[int, int, set[bytes]]:
    """Width, height and distinct pixel values (every 5th column) of an 8-bit PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = color = 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0, "only 8-bit non-interlaced PNGs are decoded"
        elif kind == b"IDAT":
            idat.append(body)
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prev = bytearray(stride)
    values: set[bytes] = set()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride) if kind else ():
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            else:  # Paeth
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        values.update(bytes(line[i : i + bpp]) for i in range(0, stride, bpp * 5))
        prev = line
    return width, height, values


@pytest.fixture(scope="module")
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"{CHROMIUM} is not installed; install Debian's chromium "
            "(apt-get install -y chromium) to run the browser test"
        )
    return CHROMIUM


def test_page_renders_in_headless_chromium(
    recorded: Recorded, chromium: str, tmp_path: Path
) -> None:
    page = write_report(recorded.full, tmp_path / "page.html")
    run = load_run(recorded.full)
    url = page.as_uri()

    dom = _Dom(_chromium(tmp_path, url, "--dump-dom").stdout)
    text = dom.content
    assert HOSTILE_QUESTION in text and run.answer is not None and run.answer in text
    assert "hits = grep('secret code')" in text  # the highlighted code, as the browser reads it
    assert "<script>alert(1)</script>" in text  # hostile output shown as text...
    assert dom.scripts == 0  # ...and no script element anywhere
    sub_folds = [d for d in dom.details if d["class"] == "sub-call"]
    assert len(sub_folds) == len(run.sub_calls) == 6
    turn_folds = [d for d in dom.details if d["class"] == "turn"]
    assert len(turn_folds) == 7  # five at depth 0, two in the rlm_query run
    assert turn_folds[0]["open"] and not any(d["open"] for d in turn_folds[1:])
    assert not any(d["open"] for d in sub_folds)

    # A link into a fold opens it, and every fold around it, without any script.
    target = "sub-call-5"  # the depth-1 sub-call, inside turn 4 > rlm_query run > turn 1
    opened = _Dom(_chromium(tmp_path, f"{url}#{target}", "--dump-dom").stdout)
    around = opened.around(target)
    assert [d["class"] for d in around] == ["turn", "nested", "turn", "sub-call"]
    assert all(d["open"] for d in around)

    shots = []
    for suffix in ("", f"#{target}"):
        png = tmp_path / f"shot{len(shots)}.png"
        _chromium(tmp_path, url + suffix, f"--screenshot={png}")
        width, height, values = _pixels(png.read_bytes())
        assert (width, height) == (1200, 2000)
        assert len(values) > 50, "the screenshot is blank"
        shots.append(values)
    assert shots[0] != shots[1]  # the opened folds changed what is drawn


def test_screenshot_decoder_sees_a_blank_page(chromium: str, tmp_path: Path) -> None:
    """The non-blank check above means something: an empty page has a single pixel value."""
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><html><body></body></html>")
    png = tmp_path / "blank.png"
    _chromium(tmp_path, blank.as_uri(), f"--screenshot={png}")
    assert len(_pixels(png.read_bytes())[2]) == 1


def test_evidence_is_shown_by_runs_show_and_the_html_page(recorded: Recorded) -> None:
    """The direct run read "The secret code is 4417." (standard input, so path `-`) and
    answered 4417: its evidence is that line, in the trace, in `runs show` and on the page."""
    [item] = load_run(recorded.direct).evidence
    assert (item["path"], item["line_start"], item["line_end"]) == ("-", 1, 1)
    assert item["text"] == "The secret code is 4417." and item["turn"] == 1

    shown = _cli(recorded, "runs", "show", recorded.ids[2])
    assert shown.returncode == 0, shown.stderr
    assert "evidence" in shown.stdout and "-:1" in shown.stdout
    assert "The secret code is 4417." in shown.stdout
    unanswered = _cli(recorded, "runs", "show", recorded.ids[1]).stdout
    assert "evidence" not in unanswered

    page = Path(_cli(recorded, "runs", "html", recorded.ids[2]).stdout.strip())
    source = page.read_text("utf-8")
    assert "<h3>Evidence</h3>" in source and 'href="#turn-1"' in source
    assert 'id="turn-1"' in source
    assert "The secret code is 4417." in source.split("<h3>Evidence</h3>")[1]
