"""Documents as inputs: real PDF, DOCX, XLSX, PPTX, ODT, HTML, e-mail and CSV files made here,
read through load_inputs as the CLI reads them; broken and hostile ones refused in one sentence."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import documents_maker as make
import pytest
from cli_runner import run_cli
from scripted import ScriptedModel

from rlm_local.api import RLM
from rlm_local.config import load_settings
from rlm_local.engine import InputOptions, RunOptions, load_inputs
from rlm_local.errors import InputError
from rlm_local.trace import read_trace

FACT = "The vault combination is 4-8-15-16."


def _page_of(text: str, needle: str) -> int:
    """The page whose `--- page N ---` line comes last before `needle`."""
    before = text[: text.index(needle)]
    return int(re.findall(r"^--- page (\d+) ---$", before, re.MULTILINE)[-1])


def _pages(n: int, fact_on: int) -> list[str | None]:
    return [FACT if i == fact_on else f"Filler page {i}: nothing to see." for i in range(1, n + 1)]


def test_a_fact_on_page_150_of_200_is_found_with_its_page(tmp_path: Path) -> None:
    pdf = make.pdf(tmp_path / "report.pdf", _pages(200, 150))
    loaded = load_inputs([str(pdf)])
    assert isinstance(loaded.context, str)
    assert _page_of(loaded.context, FACT) == 150
    assert len(re.findall(r"^--- page \d+ ---$", loaded.context, re.MULTILINE)) == 200
    [conversion] = loaded.conversions
    assert (conversion.format, conversion.converter, conversion.pages) == ("pdf", "pypdfium2", 200)
    assert conversion.cached is False and conversion.seconds >= 0


def test_converted_text_is_cached_by_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = make.pdf(tmp_path / "report.pdf", _pages(5, 3))
    options = InputOptions(documents_cache=tmp_path / "documents")
    first = load_inputs([str(pdf)], options)
    [kept] = list((tmp_path / "documents").rglob("*.json"))
    assert kept.stat().st_mode & 0o077 == 0 and (tmp_path / "documents").stat().st_mode & 0o077 == 0

    import pypdfium2

    def no_second_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("the PDF was extracted again")

    monkeypatch.setattr(pypdfium2, "PdfDocument", no_second_extraction)
    copy = shutil.copy(pdf, tmp_path / "same-bytes-other-name.pdf")  # keyed by content
    second = load_inputs([str(copy)], options)
    assert second.context == first.context
    assert second.conversions[0].cached is True


def test_a_docx_table_is_read_as_rows_and_headings_as_markdown(tmp_path: Path) -> None:
    text = load_inputs([str(make.docx(tmp_path / "invoices.docx"))]).context
    assert isinstance(text, str)
    lines = text.splitlines()
    assert "# Invoices 2025" in lines and "## Open" in lines
    assert "Client | Amount | Due" in lines
    assert "Acme Ltd | 1200 | 2025-03-01" in lines
    assert "Birch & Co | 75 | " in lines
    assert "- Pay within 30 days." in lines
    assert lines.index("Client | Amount | Due") < lines.index("- Pay within 30 days.")


def test_an_encrypted_pdf_is_refused_then_read_with_its_password(tmp_path: Path) -> None:
    pdf = make.pdf(tmp_path / "locked.pdf", [FACT], password="hunter2")
    with pytest.raises(InputError, match=r"locked\.pdf cannot be read: .*encrypted.*--password"):
        load_inputs([str(pdf)])
    with pytest.raises(InputError, match="does not open it"):
        load_inputs([str(pdf)], InputOptions(password="wrong"))
    cache = tmp_path / "documents"
    loaded = load_inputs([str(pdf)], InputOptions(password="hunter2", documents_cache=cache))
    assert FACT in loaded.context
    assert "hunter2" not in repr(InputOptions(password="hunter2"))
    assert not list(cache.rglob("*.json"))  # the text a password protected is not kept


def test_the_cli_offers_password_and_reads_it_from_the_environment(
    tmp_path: Path, tmp_home: Path
) -> None:
    pdf = make.pdf(tmp_path / "locked.pdf", [FACT], password="hunter2")
    refused = run_cli("ask", "What is the combination?", str(pdf))
    assert refused.returncode == 1
    assert "encrypted PDF" in refused.stderr and "--password" in refused.stderr
    assert "Traceback" not in refused.stderr
    no_terminal = run_cli("ask", "q?", str(pdf), "--password", stdin="")
    assert no_terminal.returncode == 1 and "RLM_LOCAL_PDF_PASSWORD" in no_terminal.stderr
    # With the password the PDF is read and the run goes on to the models, absent in this home.
    opened = run_cli("ask", "q?", str(pdf), env={"RLM_LOCAL_PDF_PASSWORD": "hunter2"})
    assert opened.returncode == 1 and "models pull" in opened.stderr
    assert "encrypted" not in opened.stderr


def test_the_password_never_reaches_the_trace(tmp_path: Path, tmp_home: Path) -> None:
    pdf = make.pdf(tmp_path / "locked.pdf", [FACT, "second page"], password="hunter2-secret")
    loaded = load_inputs([str(pdf)], InputOptions(password="hunter2-secret"))
    root = ScriptedModel(["FINAL('4-8-15-16')"])
    rlm = RLM(
        load_settings(),
        RunOptions(mode="rlm", first_search=False),
        root=root,
        sub=ScriptedModel([]),
    )
    result = rlm.ask("What is the combination?", loaded.context, documents=loaded.conversions)
    trace_text = Path(result.trace_path).read_text()
    assert "hunter2-secret" not in trace_text
    events = read_trace(Path(result.trace_path))
    assert [e["type"] for e in events[:2]] == ["run_start", "inputs"]
    [document] = events[1]["documents"]
    assert document["converter"] == "pypdfium2" and document["pages"] == 2
    assert document["path"] == "locked.pdf" or document["path"].endswith("locked.pdf")


def test_a_scanned_page_is_named(tmp_path: Path) -> None:
    pdf = make.pdf(tmp_path / "mixed.pdf", ["First page text.", None, "Third page text."])
    loaded = load_inputs([str(pdf)])
    assert "Third page text." in loaded.context
    [notice] = [n for n in loaded.notices if "text layer" in n]
    assert "page 2 of 3 has no text layer" in notice and "--ocr" in notice
    assert loaded.conversions[0].notes == [notice.split(": ", 1)[1]]

    scan = make.pdf(tmp_path / "scan.pdf", [None, None])
    with pytest.raises(InputError, match="scan.pdf cannot be read: none of its 2 pages has a text"):
        load_inputs([str(scan)])


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_ocr_reads_a_scanned_page_when_tesseract_is_installed(tmp_path: Path) -> None:
    from fpdf import FPDF
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1800, 300), 255)
    font = ImageFont.load_default(size=96)
    ImageDraw.Draw(image).text((40, 90), "INVOICE 58213", fill=0, font=font)
    doc = FPDF()
    doc.add_page()
    doc.image(image, x=10, y=10, w=180)
    doc.output(str(tmp_path / "scan.pdf"))
    loaded = load_inputs([str(tmp_path / "scan.pdf")], InputOptions(ocr=True))
    assert "58213" in loaded.context
    assert any("read by OCR" in n for n in loaded.notices)


def test_a_mixed_directory_reads_what_it_can_and_names_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    make.pdf(folder / "report.pdf", _pages(3, 2))
    make.docx(folder / "invoices.docx")
    make.xlsx(folder / "staff.xlsx")
    make.pptx(folder / "plan.pptx")
    make.odt(folder / "minutes.odt")
    make.eml(folder / "mail.eml")
    (folder / "page.html").write_text("<html><body><p>Opening hours: 9 to 5.</p></body></html>")
    (folder / "orders.csv").write_text("Order,Total\nA-1,30\n")
    (folder / "notes.txt").write_text("plain notes\n")
    make.pdf(folder / "locked.pdf", [FACT], password="pw")
    good = (folder / "report.pdf").read_bytes()
    (folder / "truncated.pdf").write_bytes(good[: len(good) // 3])
    (folder / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))

    loaded = load_inputs([str(folder)])
    assert isinstance(loaded.context, dict)
    assert set(loaded.context) == {
        "report.pdf", "invoices.docx", "staff.xlsx", "plan.pptx", "minutes.odt", "mail.eml",
        "page.html", "orders.csv", "notes.txt",
    }  # fmt: skip
    assert loaded.context["notes.txt"] == "plain notes\n"
    assert "Opening hours: 9 to 5." in loaded.context["page.html"]
    assert "Order: A-1 || Total: 30" in loaded.context["orders.csv"]
    assert len([n for n in loaded.notices if n.startswith("skipped ")]) == 3
    assert any("locked.pdf: it is an encrypted PDF" in n for n in loaded.notices)
    assert any("truncated.pdf: it is a damaged or truncated PDF file" in n for n in loaded.notices)
    assert any("old.doc: it is an old binary Office file" in n for n in loaded.notices)
    converters = {c.path: c.converter for c in loaded.conversions}
    assert converters == {
        "report.pdf": "pypdfium2", "invoices.docx": "python-docx", "staff.xlsx": "openpyxl",
        "plan.pptx": "pptx-xml", "minutes.odt": "odt-xml", "mail.eml": "email",
        "page.html": "html.parser", "orders.csv": "csv",
    }  # fmt: skip


def test_nothing_readable_is_one_sentence_and_a_failing_exit(
    tmp_path: Path, tmp_home: Path
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    make.pdf(folder / "locked.pdf", [FACT], password="pw")
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="None of the inputs holds readable text"):
        load_inputs([str(folder)])
    result = run_cli("ask", "q?", str(folder))
    assert result.returncode == 1
    assert "None of the inputs holds readable text" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(InputError, match="broken.docx cannot be read: it is a damaged or trunc"):
        load_inputs([str(folder / "broken.docx")])


def test_an_extension_that_lies_is_read_by_content_or_refused(tmp_path: Path) -> None:
    docx_as_pdf = shutil.copy(make.docx(tmp_path / "a.docx"), tmp_path / "contract.pdf")
    loaded = load_inputs([str(docx_as_pdf)])
    assert "Acme Ltd | 1200 | 2025-03-01" in loaded.context
    assert any("content is DOCX despite its .pdf name" in n for n in loaded.notices)
    assert loaded.conversions[0].format == "docx"

    pdf_as_txt = shutil.copy(make.pdf(tmp_path / "b.pdf", [FACT]), tmp_path / "notes.txt")
    assert FACT in load_inputs([str(pdf_as_txt)]).context

    text_as_docx = tmp_path / "letter.docx"
    text_as_docx.write_text("Dear Ana, the kettle arrived.\n")
    loaded = load_inputs([str(text_as_docx)])
    assert loaded.context == "Dear Ana, the kettle arrived.\n"
    assert any("plain text despite its .docx name" in n for n in loaded.notices)

    garbage = tmp_path / "scan.pdf"
    garbage.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(InputError, match=r"scan\.pdf cannot be read: its name says \.pdf but its"):
        load_inputs([str(garbage)])


@pytest.mark.parametrize("kind", ["docx", "xlsx"])
def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path, kind: str) -> None:
    base = make.docx(tmp_path / "a.docx") if kind == "docx" else make.xlsx(tmp_path / "a.xlsx")
    bomb = make.zip_bomb(tmp_path / f"bomb.{kind}", base, unpacked_mib=300)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(InputError, match=r"would unpack to 30\d MiB, over the bound of 256 MiB"):
        load_inputs([str(bomb)])


def test_spreadsheets_are_lines_of_records_per_sheet(tmp_path: Path) -> None:
    text = load_inputs([str(make.xlsx(tmp_path / "staff.xlsx"))]).context
    assert text.splitlines() == [
        "--- sheet Staff ---",
        "Name || Team || Start",
        "Name: Ada || Team: Core || Start: 2019",
        "Name: Linus || Start: 2021",
        "--- sheet Budget ---",
        "Item || Cost",
        "Item: Servers || Cost: 1250.5",
    ]
    tsv = tmp_path / "t.tsv"
    tsv.write_text('City\tNote\nOslo\t"cold, dark"\n')
    assert load_inputs([str(tsv)]).context == "City || Note\nCity: Oslo || Note: cold, dark\n"


def test_slides_and_opendocument(tmp_path: Path) -> None:
    slides = load_inputs([str(make.pptx(tmp_path / "plan.pptx"))]).context
    assert slides.splitlines() == [
        "--- slide 1 ---", "Roadmap", "Ship the parser in May",
        "--- slide 2 ---", "Risks", "Fonts",
    ]  # fmt: skip
    minutes = load_inputs([str(make.odt(tmp_path / "minutes.odt"))]).context
    assert minutes.splitlines() == [
        "# Minutes", "Present:  Ana and Bo.", "- Buy a kettle", "", "Task | Owner", "Kettle | Ana",
    ]  # fmt: skip


def test_mail_headers_body_and_attachments(tmp_path: Path) -> None:
    quote = make.pdf(tmp_path / "q.pdf", ["Quote: 38 euros."]).read_bytes()
    text = load_inputs([str(make.eml(tmp_path / "m.eml", attachment=quote))]).context
    assert text.startswith("From: Ana <ana@example.org>\nTo: bo@example.org\nDate: ")
    assert "Subject: Kettle budget" in text
    assert "The kettle may cost 40 euros." in text
    assert "--- attachment receipt.txt (text/plain) ---\nReceipt number 7731." in text
    assert (
        "--- attachment quote.pdf (application/pdf) ---\n--- page 1 ---\nQuote: 38 euros." in text
    )

    box = tmp_path / "archive.mbox"
    one = (tmp_path / "m.eml").read_bytes()
    two = b"From: Bo <bo@example.org>\nSubject: Re: Kettle\n\nFine.\n>From now on, tea.\n"
    box.write_bytes(b"From ana Mon Mar  3 10:00:00 2025\n" + one + b"\n"
                    b"From bo Mon Mar  3 11:00:00 2025\n" + two)  # fmt: skip
    loaded = load_inputs([str(box)])
    assert loaded.conversions[0].pages == 2
    assert "--- message 2 ---\nFrom: Bo <bo@example.org>\nSubject: Re: Kettle" in loaded.context
    assert "\nFrom now on, tea." in loaded.context


def test_html_keeps_the_main_text_only(tmp_path: Path) -> None:
    page = tmp_path / "page.htm"
    page.write_text(
        "<!DOCTYPE html><html><head><title>Opening hours</title><style>p{color:red}</style>"
        "<script>var secret = 'not text';</script></head><body><nav><a>Home</a></nav>"
        "<main><h2>Week</h2><p>Open 9&ndash;5.</p><ul><li>Mon</li><li>Tue</li></ul>"
        "<table><tr><th>Day</th><th>Hours</th></tr><tr><td>Sat</td><td>10-2</td></tr></table>"
        "</main><footer>Copyright</footer></body></html>"
    )
    text = load_inputs([str(page)]).context
    assert text.splitlines() == [
        "# Opening hours", "## Week", "Open 9–5.", "- Mon", "- Tue", "Day | Hours", "Sat | 10-2",
    ]  # fmt: skip


def test_a_missing_optional_library_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = make.pdf(tmp_path / "report.pdf", ["text"])
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # import now fails, as when not installed
    with pytest.raises(InputError) as caught:
        load_inputs([str(pdf)])
    assert str(caught.value) == (
        f"{pdf} cannot be read: reading PDF files needs the optional package pypdfium2: "
        "pip install 'rlm-local[docs]'."
    )


def test_conversions_are_plain_data_for_json(tmp_path: Path) -> None:
    from dataclasses import asdict

    loaded = load_inputs([str(make.pdf(tmp_path / "r.pdf", ["one"]))])
    data = json.loads(json.dumps([asdict(c) for c in loaded.conversions]))
    assert data[0]["converter"] == "pypdfium2" and data[0]["chars"] == len(loaded.context)


def test_text_that_looks_like_mail_or_mentions_pdf_stays_text(tmp_path: Path) -> None:
    from rlm_local.documents import detect

    note = b"From the start\nTo: the team\nSubject: kettles\nDate: today\n\nbody\n"
    assert detect("notes.txt", note).kind == "text"  # the file says what it is
    assert detect("message", note.replace(b"From the", b"From:")).kind == "eml"  # no suffix
    assert detect("pdfs.py", b"MAGIC = b'%PDF-1.7'\n").kind == "text"
    prefixed = b"junk before the header\n%PDF-1.4\n\x00\x01"
    assert detect("a.pdf", prefixed).kind == "pdf"  # PDF allows bytes before its header
