"""Printable chapters: each chapter page of the built book printed to PDF by headless Chromium.

    python tools/pdf.py build [--html _build/html] [--out HTML/pdf] [chapters/01-language-models ...]
    python tools/pdf.py list                  # the chapters and the PDF each one gets

`make book` runs ``build`` after the book and its slide decks (so does the tests' book build,
``tests/conftest.py``); ``make pdf`` runs it alone on the last build. Each chapter of ``_toc.yml``
(``chapters/NN-name``) becomes ``pdf/NN-name.pdf`` in the site; the chapter pages link to it from their
download menu (``_ext/course.py``) and the instructors' page lists them all.

How a page is printed: the built site is served on 127.0.0.1 (any other request is blocked, so the
PDFs are made offline), the page opens in Debian's Chromium at the printable width of an A4 page, with
the print stylesheet below; the script waits for MathJax and for every plotly figure to draw its traces
(WebGL figures are swapped for a picture of themselves, which prints reliably), checks that no code
block is still wider than the page, and prints with Playwright's ``page.pdf()`` (A4, a tagged PDF with
an outline, the chapter and its web address in the header, page numbers in the footer). A figure that
does not draw, or code that would be cut at the margin, fails the build.

Without Chromium (or Playwright) nothing is printed: a loud message, exit status 0, unless
``LMLAB_REQUIRE_BROWSER=1`` (CI), which makes it exit 1.
"""
from __future__ import annotations

import argparse
import functools
import html
import http.server
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbtools  # noqa: E402
import set_repo_url  # noqa: E402

ROOT = nbtools.ROOT
CHROMIUM = os.environ.get("LMLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [  # as tests/conftest.py
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
]
PDF_DIR = "pdf"
# A4 with these margins leaves 182 mm of width: the page is laid out at that width (96 px per inch).
MARGIN = {"top": "16mm", "bottom": "14mm", "left": "14mm", "right": "14mm"}
PRINT_WIDTH_PX = round((210 - 28) / 25.4 * 96)  # 688
FIGURE_TIMEOUT_S = 30

PRINT_CSS = """
@media print {
  /* Code wraps at the margin instead of being cut off (on screen it scrolls sideways). */
  pre, pre code, div.highlight pre, .cell_output pre, .output pre {
    white-space: pre-wrap !important; overflow-wrap: anywhere !important;
    overflow: visible !important; max-height: none !important;
  }
  div.highlight, .cell_output, .output, .table-wrapper { overflow: visible !important; max-height: none !important; }
  /* The site's navigation means nothing on paper. */
  .bd-header, .bd-header-article, .header-article, .bd-sidebar-primary, .bd-sidebar-secondary,
  .bd-footer, .bd-footer-article, .bd-footer-content, .prev-next-area, #pst-back-to-top, .skip-link,
  .search-button, .primary-toggle, .secondary-toggle, .headerlink, .copybtn, .toggle-details__summary svg {
    display: none !important;
  }
  .bd-page-width, .bd-container, .bd-container__inner, .bd-main, .bd-main .bd-content,
  .bd-article-container, .bd-article { max-width: none !important; width: auto !important;
    margin: 0 !important; padding-left: 0 !important; padding-right: 0 !important; }
  /* A figure, an image, a code cell, its output, a table row or an admonition is not split across two
     pages (one longer than a page still is). */
  .plotly-graph-div, .lmlab-figure, .lmlab-print-figure, figure, img, svg, tr, .admonition,
  .cell_input, .cell_output {
    break-inside: avoid;
  }
  h1, h2, h3, h4 { break-after: avoid; }
  a { color: inherit !important; }
}
"""

# True once MathJax (when the page has it) finished typesetting.
MATH_READY_JS = """
async () => {
  if (!window.MathJax) return true;
  const t0 = Date.now();
  while (!(MathJax.startup && MathJax.startup.promise) && Date.now() - t0 < 15000) {
    await new Promise(r => setTimeout(r, 100));
  }
  if (MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  return true;
}
"""

# Redraw every figure at the width it has in print, then wait until each has drawn marks (or a WebGL
# canvas). Returns one record per figure: {id, drawn, gl}.
FIGURES_JS = r"""
async (timeoutMs) => {
  const gds = Array.from(document.querySelectorAll('.plotly-graph-div'));
  if (!gds.length) return [];
  const t0 = Date.now();
  while (!window.Plotly && Date.now() - t0 < timeoutMs) await new Promise(r => setTimeout(r, 100));
  if (!window.Plotly) return gds.map(gd => ({id: gd.id, drawn: false, gl: false, why: 'no Plotly'}));
  for (const gd of gds) {
    try { if (gd._fullLayout) await Plotly.Plots.resize(gd); } catch (e) { /* drawn below or reported */ }
  }
  const marks = 'g.trace, .points path, path.js-line, .bars path, .point path, .heatmaplayer image, ' +
                '.imagelayer image, .contourlayer path, .pielayer .slice path, .table .cell-text';
  const state = gd => {
    const gl = gd.querySelectorAll('canvas').length > 0 && !!(gd._fullLayout && gd._fullLayout._has &&
               (gd._fullLayout._has('gl3d') || gd._fullLayout._has('gl') || gd._fullLayout._has('mapbox')));
    return {id: gd.id, gl, drawn: !!gd._fullLayout && (gl || gd.querySelectorAll(marks).length > 0)};
  };
  let states = gds.map(state);
  while (states.some(s => !s.drawn) && Date.now() - t0 < timeoutMs) {
    await new Promise(r => setTimeout(r, 200));
    states = gds.map(state);
  }
  return states;
}
"""

# Swap each WebGL figure (3-D scatter and the like) for a PNG of itself: a WebGL canvas may print blank.
GL_TO_IMAGE_JS = r"""
async () => {
  let n = 0;
  for (const gd of document.querySelectorAll('.plotly-graph-div')) {
    const fl = gd._fullLayout;
    if (!fl || !fl._has || !(fl._has('gl3d') || fl._has('gl') || fl._has('mapbox'))) continue;
    const w = gd.clientWidth || fl.width, h = gd.clientHeight || fl.height;
    const url = await Plotly.toImage(gd, {format: 'png', width: w, height: h, scale: 2});
    const img = document.createElement('img');
    img.src = url; img.width = w; img.height = h; img.className = 'lmlab-print-figure';
    const alt = gd.closest('[aria-label]');
    img.alt = alt ? alt.getAttribute('aria-label') : 'figure';
    gd.style.display = 'none';
    gd.parentNode.insertBefore(img, gd);
    await img.decode();
    n++;
  }
  return n;
}
"""

# Code blocks (and other preformatted text) still wider than the page once the print CSS applies.
CUT_CODE_JS = r"""
() => Array.from(document.querySelectorAll('article pre')).filter(pre => {
  const box = pre.getBoundingClientRect();
  return box.width > 0 && pre.scrollWidth > pre.clientWidth + 2;
}).map(pre => (pre.textContent || '').split('\n').sort((a, b) => b.length - a.length)[0].slice(0, 80))
"""


def chapter_docnames(root: Path = ROOT) -> list[str]:
    """The chapters of ``_toc.yml`` (``chapters/NN-name``), in reading order: each gets a PDF."""
    return [d for d in nbtools.toc_docnames(root) if d.startswith("chapters/")]


def pdf_name(docname: str) -> str:
    """The PDF of a chapter, relative to the site's root: ``pdf/NN-name.pdf``."""
    return f"{PDF_DIR}/{Path(docname).name}.pdf"


def site_url(root: Path = ROOT) -> str:
    """The published site, ``https://ORG.github.io/REPO/`` for ``repository.url`` in ``_config.yml``."""
    return set_repo_url.pages_url(nbtools.repository(root)[0])


def missing_reason() -> str:
    """Why the PDFs cannot be printed here ('' when they can)."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LMLAB_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements.txt)"
    return ""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 (a free port); yields the base URL ending in ``/``."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _header(title: str, url: str) -> str:
    style = "font-size:7.5px;color:#555;width:100%;margin:0 14mm;display:flex;justify-content:space-between;"
    return (f'<div style="{style}"><span>{html.escape(title)}</span>'
            f'<span>{html.escape(url)}</span></div>')


FOOTER = ('<div style="font-size:7.5px;color:#555;width:100%;text-align:center;">'
          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')


def print_page(browser, base: str, docname: str, out_file: Path, published: str) -> dict:
    """Print one chapter page to ``out_file``; returns what was seen (figures, problems, seconds)."""
    start = time.monotonic()
    origin = urlparse(base)
    context = browser.new_context(viewport={"width": PRINT_WIDTH_PX, "height": 1000}, color_scheme="light",
                                  service_workers="block", device_scale_factor=1)

    def route(r):
        target = urlparse(r.request.url)
        if target.scheme in {"http", "https", "ws", "wss"} and (target.hostname, target.port) != (
                origin.hostname, origin.port):
            r.abort("blockedbyclient")
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    problems: list[str] = []
    try:
        page.goto(f"{base}{docname}.html", wait_until="load", timeout=60_000)
        page.wait_for_load_state("networkidle", timeout=30_000)
        page.add_style_tag(content=PRINT_CSS)
        page.emulate_media(media="print")
        page.evaluate(MATH_READY_JS)
        figures = page.evaluate(FIGURES_JS, FIGURE_TIMEOUT_S * 1000)
        blank = [f["id"] for f in figures if not f["drawn"]]
        if blank:
            problems.append(f"{len(blank)} of {len(figures)} plotly figures drew nothing: {blank[:5]}")
        n_gl = page.evaluate(GL_TO_IMAGE_JS) if figures else 0
        cut = page.evaluate(CUT_CODE_JS)
        if cut:
            problems.append(f"{len(cut)} code blocks wider than the page: {cut[:3]}")
        title = page.title().split(" — ")[0].split(" | ")[0].strip()
        if not problems:
            out_file.parent.mkdir(parents=True, exist_ok=True)
            page.pdf(path=str(out_file), format="A4", print_background=True, margin=MARGIN,
                     display_header_footer=True, header_template=_header(title, f"{published}{docname}.html"),
                     footer_template=FOOTER, tagged=True, outline=True)
    finally:
        context.close()
    return {"docname": docname, "figures": len(figures), "gl": n_gl, "problems": problems,
            "seconds": time.monotonic() - start, "file": out_file}


def build(html_dir: Path, out: Path | None = None, docnames: list[str] | None = None) -> list[Path]:
    """Print every chapter (or ``docnames``) of the site in ``html_dir`` into ``out`` (``html_dir/pdf``)."""
    html_dir = Path(html_dir).resolve()
    out = Path(out) if out is not None else html_dir / PDF_DIR
    docnames = docnames or chapter_docnames()
    missing = [d for d in docnames if not (html_dir / f"{d}.html").is_file()]
    if missing:
        raise SystemExit(f"pdf: not built: {', '.join(d + '.html' for d in missing)} (run `make book` first)")
    from playwright.sync_api import sync_playwright

    published, made, failed = site_url(), [], []
    with serve(html_dir) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for docname in docnames:
                target = out / f"{Path(docname).name}.pdf"
                seen = print_page(browser, base, docname, target, published)
                if seen["problems"]:
                    failed.append(f"{docname}: " + "; ".join(seen["problems"]))
                    print(f"pdf: {docname}: NOT printed: {'; '.join(seen['problems'])}", flush=True)
                    continue
                made.append(target)
                pictures = f", {seen['gl']} of them as pictures" if seen["gl"] else ""
                print(f"pdf: {target} ({target.stat().st_size // 1024} KB, {seen['figures']} figures{pictures}, "
                      f"{seen['seconds']:.1f} s)", flush=True)
        finally:
            browser.close()
    if failed:
        raise SystemExit("pdf: chapters not printed:\n  " + "\n  ".join(failed))
    return made


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print each chapter of the built book to PDF.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="print the chapters of a built book into HTML/pdf/")
    b.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built site (_build/html)")
    b.add_argument("--out", type=Path, default=None, help="where the PDFs go (default: HTML/pdf)")
    b.add_argument("docnames", nargs="*", help="chapters to print (default: every chapter of _toc.yml)")
    sub.add_parser("list", help="the chapters and their PDFs")
    args = parser.parse_args(argv)
    if args.command == "list":
        for docname in chapter_docnames():
            print(f"{docname}\t{pdf_name(docname)}")
        return 0
    reason = missing_reason()
    if reason:
        bar = "!" * 100
        print(f"{bar}\nCHAPTER PDFs NOT BUILT: {reason}.\n{bar}", file=sys.stderr, flush=True)
        return 1 if _flag("LMLAB_REQUIRE_BROWSER") else 0
    start = time.monotonic()
    made = build(args.html, args.out, args.docnames or None)
    print(f"pdf: {len(made)} chapter PDFs in {time.monotonic() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
