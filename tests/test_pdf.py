"""Printable chapters: every chapter has a PDF (``tools/pdf.py``, after the book build), linked from its
page's download menu and from the instructors' page; the first pages of one PDF, rendered to PNG with
``pdftoppm`` (poppler-utils), show the chapter title and a drawn figure.

The PDFs come from the session's one book build (conftest.py prints them after the slide decks, as
``make book`` does). Rendered pages are kept in ``tests/artifacts/pdf/``. Without ``pdftoppm`` the
rendering test skips loudly, unless LMLAB_REQUIRE_BROWSER=1 (CI), which fails it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

import nbtools
import pdf
from conftest import ROOT, BookBuild, _flag, loud

CHAPTERS = pdf.chapter_docnames()
FIRST = CHAPTERS[0]
PAGES = 6  # the first pages that are rendered and searched (chapter 1's first figure is on page 4)
DPI = 50


def require_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        message = f"PDF RENDERING TEST NOT RUN: no `{name}` (apt-get install poppler-utils)."
        if _flag("LMLAB_REQUIRE_BROWSER"):
            pytest.fail(message + " LMLAB_REQUIRE_BROWSER=1 requires it.")
        loud(message)
        pytest.skip(message)
    return found


def pdf_file(book: BookBuild, docname: str) -> Path:
    path = book.html_dir / pdf.pdf_name(docname)
    assert path.is_file(), (f"no {pdf.pdf_name(docname)} in the build: tools/pdf.py did not print it "
                            f"(log tail:\n{book.tail(15)})")
    return path


def chapter_title(docname: str) -> str:
    nb = nbtools.load(ROOT / f"{docname}.ipynb")
    for cell in nb["cells"]:
        text = nbtools.source(cell)
        if cell["cell_type"] == "markdown" and text.startswith("# "):
            return re.sub(r"\{[\w:-]+\}`([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", text.splitlines()[0][2:]).strip()
    raise AssertionError(f"{docname} has no title")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_every_chapter_has_a_pdf(book: BookBuild, docname: str):
    path = pdf_file(book, docname)
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:], f"{path.name} is not a whole PDF"
    assert len(data) > 20_000, f"{path.name} is only {len(data)} bytes"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_page_links_its_pdf(book: BookBuild, docname: str):
    page = book.page(docname).read_text(encoding="utf-8")
    rel = f"../{pdf.pdf_name(docname)}"  # chapters/NN.html -> pdf/NN.pdf: relative, so any sub-path works
    links = [unescape(h) for h in re.findall(r'<a\b[^>]*href="([^"]+\.pdf)"', page)]
    assert rel in links, f"{docname}.html does not link {rel} (download menu); PDF links: {links}"
    assert "window.print()" not in page, "the download menu still offers the browser's print instead of the PDF"


def test_instructors_page_lists_every_pdf(book: BookBuild):
    page = book.page("instructors").read_text(encoding="utf-8")
    missing = [pdf.pdf_name(d) for d in CHAPTERS if f'href="{pdf.pdf_name(d)}"' not in page]
    assert not missing, f"the instructors' page does not link {missing}"


def colour_blocks(png: Path, block: int = 12) -> int:
    """How many ``block`` x ``block`` squares of a page are mostly coloured (a figure's bars, lines,
    heatmap cells), not text: black and grey text, and syntax highlighting, fill few pixels of a square."""
    from PIL import Image

    img = Image.open(png).convert("RGB")
    w, h = img.size
    px = img.load()
    blocks = 0
    for y0 in range(0, h - block, block):
        for x0 in range(0, w - block, block):
            coloured = 0
            for y in range(y0, y0 + block, 2):
                for x in range(x0, x0 + block, 2):
                    r, g, b = px[x, y]
                    if max(r, g, b) - min(r, g, b) > 60:
                        coloured += 1
            if coloured >= (block // 2) ** 2 * 0.6:
                blocks += 1
    return blocks


def test_first_pages_show_title_and_a_figure(book: BookBuild, artifacts: Path):
    pdftoppm, pdftotext = require_tool("pdftoppm"), require_tool("pdftotext")
    path = pdf_file(book, FIRST)
    out = artifacts / "pdf"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{Path(FIRST).name}-*.png"):
        old.unlink()
    subprocess.run([pdftoppm, "-f", "1", "-l", str(PAGES), "-r", str(DPI), "-png", str(path),
                    str(out / Path(FIRST).name)], check=True, capture_output=True, timeout=60)
    pngs = sorted(out.glob(f"{Path(FIRST).name}-*.png"))
    assert len(pngs) == PAGES, f"pdftoppm rendered {len(pngs)} pages of {path.name}"

    # The title, as text on the first page (the header line names the chapter too: look below it).
    first = subprocess.run([pdftotext, "-f", "1", "-l", "1", "-layout", str(path), "-"], check=True,
                           capture_output=True, text=True, timeout=60).stdout
    title = chapter_title(FIRST)
    squash = lambda s: re.sub(r"\s+", " ", s).strip()  # noqa: E731
    body = squash("\n".join(first.splitlines()[1:]))
    assert squash(title) in body, f"title {title!r} not on page 1 of {path.name}:\n{first[:600]}"

    # A figure: a drawn plotly figure fills blocks of colour that text and code never do.
    blocks = {png.name: colour_blocks(png) for png in pngs}
    assert max(blocks.values()) >= 8, f"no drawn figure on the first {PAGES} pages of {path.name}: {blocks} ({out})"
    print(f"\n{path.name}: title on page 1; colour blocks per page {blocks} ({out})")


def test_colour_blocks_tell_a_figure_from_text(tmp_path: Path):
    """The figure detector: a page of coloured code and black text has no figure; bars do."""
    from PIL import Image, ImageDraw

    text_page = Image.new("RGB", (400, 560), "white")
    d = ImageDraw.Draw(text_page)
    for i, colour in enumerate(["black", "#008000", "#BA2121", "#0000FF", "#666666"] * 8):
        d.text((20, 12 + i * 13), "for token in tokens: counts[token] += 1  # a comment", fill=colour)
    text_page.save(tmp_path / "text.png")
    figure_page = text_page.copy()
    d = ImageDraw.Draw(figure_page)
    for i, height in enumerate([120, 80, 160, 40]):
        d.rectangle([40 + i * 60, 540 - height, 80 + i * 60, 540], fill="#636efa")
    figure_page.save(tmp_path / "figure.png")
    assert colour_blocks(tmp_path / "text.png") < 8
    assert colour_blocks(tmp_path / "figure.png") >= 8


def test_pdf_tool_lists_the_toc_chapters():
    assert CHAPTERS == [d for d in nbtools.toc_docnames() if d.startswith("chapters/")]
    assert all(pdf.pdf_name(d) == f"pdf/{Path(d).name}.pdf" for d in CHAPTERS)
