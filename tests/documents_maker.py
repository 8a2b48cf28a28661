"""Real documents made inside the tests: PDFs (fpdf2), DOCX (python-docx), XLSX (openpyxl),
PPTX (python-pptx), ODT (by hand: a zip with content.xml), e-mail (the standard library)."""

from __future__ import annotations

import zipfile
from email.message import EmailMessage
from pathlib import Path


def pdf(path: Path, pages: list[str | None], password: str | None = None) -> Path:
    """One page per item: its text, or None for an image-only page (a scan without text)."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    doc = FPDF(format="A4")
    if password is not None:
        doc.set_encryption(owner_password="owner-" + password, user_password=password)
    doc.set_font("Helvetica", size=11)
    for text in pages:
        doc.add_page()
        if text is None:
            image = Image.new("L", (600, 200), 255)
            ImageDraw.Draw(image).rectangle((40, 40, 560, 160), outline=0, width=6)
            doc.image(image, x=20, y=20, w=150)
        else:
            doc.multi_cell(0, 6, text)
    doc.output(str(path))
    return path


def docx(path: Path) -> Path:
    import docx as python_docx

    document = python_docx.Document()
    document.add_heading("Invoices 2025", level=1)
    document.add_paragraph("The open invoices are listed below.")
    document.add_heading("Open", level=2)
    table = document.add_table(rows=3, cols=3)
    rows = [
        ["Client", "Amount", "Due"],
        ["Acme Ltd", "1200", "2025-03-01"],
        ["Birch & Co", "75", ""],
    ]
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("Pay within 30 days.", style="List Bullet")
    document.save(str(path))
    return path


def xlsx(path: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Staff"
    sheet.append(["Name", "Team", "Start"])
    sheet.append(["Ada", "Core", 2019])
    sheet.append(["Linus", None, 2021])
    other = book.create_sheet("Budget")
    other.append(["Item", "Cost"])
    other.append(["Servers", 1250.5])
    book.save(str(path))
    return path


def pptx(path: Path) -> Path:
    from pptx import Presentation

    deck = Presentation()
    for title, body in (("Roadmap", "Ship the parser in May"), ("Risks", "Fonts")):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    deck.save(str(path))
    return path


ODT_CONTENT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" office:version="1.2">
<office:body><office:text>
<text:h text:outline-level="1">Minutes</text:h>
<text:p>Present:<text:s text:c="2"/>Ana and <text:span>Bo</text:span>.</text:p>
<text:list><text:list-item><text:p>Buy a kettle</text:p></text:list-item></text:list>
<table:table table:name="T"><table:table-row>
<table:table-cell><text:p>Task</text:p></table:table-cell>
<table:table-cell><text:p>Owner</text:p></table:table-cell></table:table-row>
<table:table-row><table:table-cell><text:p>Kettle</text:p></table:table-cell>
<table:table-cell><text:p>Ana</text:p></table:table-cell></table:table-row></table:table>
</office:text></office:body></office:document-content>"""


def odt(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", ODT_CONTENT)
    return path


def eml(path: Path, attachment: bytes | None = None) -> Path:
    message = EmailMessage()
    message["From"] = "Ana <ana@example.org>"
    message["To"] = "bo@example.org"
    message["Subject"] = "Kettle budget"
    message["Date"] = "Mon, 03 Mar 2025 10:00:00 +0000"
    message.set_content("The kettle may cost 40 euros.")
    message.add_alternative("<p>The kettle may cost <b>40</b> euros.</p>", subtype="html")
    message.add_attachment("Receipt number 7731.", filename="receipt.txt")
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="pdf", filename="quote.pdf"
        )
    path.write_bytes(bytes(message))
    return path


def zip_bomb(path: Path, base: Path, unpacked_mib: int = 300) -> Path:
    """A copy of the container `base` with one extra member of `unpacked_mib` MiB of zeros
    (about 0.1% of that on disk)."""
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        chunk = bytes(1 << 20)
        with out.open("word/media/padding.bin", "w", force_zip64=True) as member:
            for _ in range(unpacked_mib):
                member.write(chunk)
    return path
