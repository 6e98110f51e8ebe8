"""Slide decks: every chapter has slide metadata, and its reveal.js deck (built beside the book from the
executed chapters, `tools/slides.py`) opens offline in headless Chromium with its figures drawn.

The decks come from the session's one book build (conftest.py builds them after the book, as
`make book` does). Each deck is opened with every non-local request blocked; it fails on a request
that tried to leave the site, a failed request, a JavaScript error, no slides, or a plotly figure
without drawn traces. A screenshot of each deck's first slide is saved under tests/artifacts/slides/.

Every slide of every deck fits reveal.js's 1280 x 800 view: each slide is shown (all fragments) and its
scrollHeight and scrollWidth are compared with the view; nothing inside it scrolls; no text is below
18 px (:data:`SLIDES_JS`; a planted overflowing deck is caught). Three slides per deck are kept as
screenshots in tests/artifacts/slides/ (the first, the longest code, the one nearest the view's height).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

import slides
from conftest import BookBuild
from test_browser import figure_drawn, measure_figure

CHAPTERS = slides.chapter_notebooks()


# --- metadata and the marking rules ---------------------------------------------------------------------

@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_chapter_cell_has_a_slide_type(path: Path):
    assert not slides.problems(path)


def test_mark_rules():
    md = lambda s, **meta: {"cell_type": "markdown", "metadata": meta, "source": s}  # noqa: E731
    code = lambda s, **meta: {"cell_type": "code", "metadata": meta, "source": s, "outputs": []}  # noqa: E731
    nb = {"cells": [
        code("# setup", tags=["remove-cell"]),
        md("# Chapter"), md("Some text."), code("x = 1"),
        md("### A subsection"), md(":::{admonition} Try it\n:class: tip\nChange x.\n:::"),
        md("## Exercises"), md("````{exercise} One\nDo it.\n````"), code("def f(): ..."),
        md("````{solution-start} ex1\n````"), code("def f(): return 1"), md("````{solution-end}\n````"),
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    assert slides.slide_types(nb) == ["skip", "slide", "-", "subslide", "subslide", "fragment", "slide",
                                      "subslide", "skip", "skip", "skip", "skip"]


def test_mark_keeps_a_chosen_type(tmp_path: Path):
    nb = {"cells": [{"cell_type": "markdown", "metadata": {"slideshow": {"slide_type": "notes"}},
                     "source": "# Title"},
                    {"cell_type": "markdown", "metadata": {}, "source": "text"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    assert slides.mark(path) == 1
    cells = json.loads(path.read_text())["cells"]
    assert [c["metadata"]["slideshow"]["slide_type"] for c in cells] == ["notes", "-"]
    assert slides.problems(path) == ["nb.ipynb: no cell starts a slide"]


def test_myst_is_rewritten_for_the_decks():
    glue = {"p": {"text/plain": "0.98765"}, "n": {"text/plain": "1234"}, "w": {"text/plain": "'bark'"},
            "note": {"text/markdown": "a *glued* sentence", "text/plain": "<IPython.core.display.Markdown object>"},
            "f": {"text/plain": "np.float64(0.25)"}}
    bib = {"vaswani2017": ("Vaswani et al.", "2017"), "elman1990": ("Elman", "1990")}
    md = ("p = {glue:text}`p:.2f`, n = {glue:text}`n:,d`, {glue:text}`w`, {glue:text}`f:.0%`; {glue:md}`note`. "
          "A {term}`logit`, {term}`heads <attention head>`; {cite:t}`vaswani2017` and "
          "{cite:p}`vaswani2017,elman1990`; see {ref}`the table <tab-orders>`.\n"
          ":::{admonition} Try it\n:class: tip\nChange the seed.\n:::\n"
          "````{exercise} Count bigrams\n:label: ex-count\nWrite it.\n````")
    out = slides.myst_to_markdown(md, glue, bib)
    assert out.splitlines()[0] == ("p = 0.99, n = 1,234, bark, 25%; a *glued* sentence. A logit, heads; "
                                   "Vaswani et al. (2017) and (Vaswani et al., 2017; Elman, 1990); see the table.")
    assert out.splitlines()[1:] == ["**Try it**", "", "Change the seed.", "**Exercise: Count bigrams**", "",
                                    "Write it."]
    assert slides.myst_to_markdown("{glue:text}`missing`", {}, bib) == "`missing`"
    assert slides.myst_to_markdown("(ch02-heads)=\n## Heads", {}, bib) == "## Heads"


def test_deck_links_point_at_the_books_pages():
    """A deck has neither the chapter's labels nor the other pages: its links go to the book's."""
    md = ("see [where it fails](#fails-ch1), [chapter 6](06-beyond.ipynb), [rotary](06-beyond.ipynb#ch6-rope), "
          "[the map](../failures.md) and [d2l](https://d2l.ai/#top)")
    out = slides.myst_to_markdown(md, {}, {}, page="chapters/01-language-models.html")
    assert out == ("see [where it fails](../chapters/01-language-models.html#fails-ch1), "
                   "[chapter 6](../chapters/06-beyond.html), [rotary](../chapters/06-beyond.html#ch6-rope), "
                   "[the map](../failures.html) and [d2l](https://d2l.ai/#top)")
    assert slides.myst_to_markdown(md, {}, {}) == md  # without a page, links stay as they are


def test_bibliography_names_for_the_decks():
    bib = slides.read_bib()
    assert bib["clark2019"] == ("Clark et al.", "2019")
    assert bib["bahdanau2015"] == ("Bahdanau et al.", "2015")
    assert all(year.isdigit() for _, year in bib.values()), [k for k, (_, y) in bib.items() if not y.isdigit()]


# --- the built decks ------------------------------------------------------------------------------------

def deck_path(book: BookBuild, nb: Path) -> Path:
    return book.html_dir / "slides" / f"{nb.stem}.html"


@pytest.mark.parametrize("nb", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_deck_is_built_with_local_assets(book: BookBuild, nb: Path):
    deck = deck_path(book, nb)
    assert deck.is_file(), f"no deck {deck}: the book build did not make the slides (log tail:\n{book.tail(20)})"
    html = deck.read_text(encoding="utf-8")
    # What the page loads (scripts, styles, images, frames), not the links a reader may follow.
    loads = r'<(?:script|img|iframe|source|video|audio|embed)\b[^>]*?\ssrc=["\'](https?://[^"\']+)'
    styles = r'<link\b[^>]*?\shref=["\'](https?://[^"\']+)'
    remote = sorted(set(re.findall(loads, html) + re.findall(styles, html)))
    assert not remote, f"{deck.name} loads remote files: {remote}"
    leftover = sorted(set(re.findall(r"\{(?:glue|term|cite|ref|doc|numref)[\w:-]*\}`[^`]*`", html)))
    assert not leftover, f"{deck.name} shows MyST roles as raw text: {leftover[:5]}"
    assert not re.search(r"(?:```|:::)\{", html), f"{deck.name} shows a MyST directive as raw text"
    labels = re.findall(r"<p>\([\w.:-]+\)=", html)
    assert not labels, f"{deck.name} shows MyST label lines as text: {labels[:3]}"
    for asset in ("_assets/reveal.js/dist/reveal.js", "_assets/plotly.min.js", "_assets/mathjax/tex-chtml.js"):
        assert (deck.parent / asset).is_file(), f"missing local asset {asset}"


DECK_JS = r"""
async () => {
  const t0 = Date.now();
  while (!(window.Reveal && Reveal.isReady && Reveal.isReady()) && Date.now() - t0 < 20000) {
    await new Promise(r => setTimeout(r, 100));
  }
  return {ready: !!(window.Reveal && Reveal.isReady && Reveal.isReady()),
          slides: window.Reveal && Reveal.getTotalSlides ? Reveal.getTotalSlides() : 0};
}
"""


# Show the slide that holds a figure, with all its fragments (a hidden slide's figure is not drawn).
GO_TO_SLIDE_JS = r"""
(gd) => {
  const i = Reveal.getIndices(gd.closest('section'));
  Reveal.slide(i.h, i.v, 1000);
}
"""


@pytest.mark.parametrize("nb", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_deck_opens_offline_with_figures_drawn(book: BookBuild, site: str, chromium, artifacts: Path, nb: Path):
    deck = deck_path(book, nb)
    if not deck.is_file():
        pytest.fail(f"no deck {deck}")
    url = f"{site}slides/{nb.stem}.html"
    origin = urlparse(url)
    left, failed, errors = [], [], []
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, service_workers="block")

    def route(r):
        target = urlparse(r.request.url)
        if target.scheme in {"http", "https", "ws", "wss"} and (target.hostname, target.port) != (
                origin.hostname, origin.port):
            left.append(r.request.url)
            r.abort("blockedbyclient")
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url} (HTTP {r.status})"))
    try:
        page.goto(url, wait_until="load", timeout=60_000)
        page.wait_for_load_state("networkidle", timeout=30_000)
        state = page.evaluate(DECK_JS)
        figures = []
        for gd in page.query_selector_all(".plotly-graph-div"):  # as a presenter would: go to its slide
            gd.evaluate(GO_TO_SLIDE_JS)
            page.wait_for_timeout(400)
            figures.append(measure_figure(page, gd))
        page.evaluate("() => Reveal.slide(0, 0)")
        page.wait_for_timeout(400)
        shot = artifacts / "slides" / f"{nb.stem}.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
    finally:
        context.close()
    n_divs = deck.read_text(encoding="utf-8").count('class="plotly-graph-div"')
    problems = []
    if not state["ready"] or state["slides"] < 1:
        problems.append(f"reveal.js not ready or no slides: {state}")
    if left:
        problems.append(f"requests that tried to leave the site (blocked): {left}")
    if failed:
        problems.append(f"failed requests: {failed}")
    if errors:
        problems.append(f"JavaScript errors: {errors}")
    if len(figures) != n_divs:
        problems.append(f"{n_divs} figure divs in the HTML but {len(figures)} in the page")
    blank = [f for f in figures if not figure_drawn(f)]
    if blank:
        problems.append(f"{len(blank)} of {len(figures)} plotly figures without drawn traces: {blank[:3]}")
    assert not problems, f"{nb.stem} deck:\n  " + "\n  ".join(problems)
    print(f"{nb.stem}: {state['slides']} slides, {len(figures)} figures drawn")


# --- every slide fits the view ------------------------------------------------------------------------

# Show every slide with all its fragments and measure it against reveal.js's configured view.
SLIDES_JS = r"""
async () => {
  const cfg = Reveal.getConfig();
  const W = cfg.width, H = cfg.height;
  const out = [];
  for (const s of Reveal.getSlides()) {
    const idx = Reveal.getIndices(s);
    Reveal.slide(idx.h, idx.v, 100000);
    await new Promise(r => setTimeout(r, 40));
    const problems = [];
    if (s.scrollHeight > H + 1) problems.push(`height ${s.scrollHeight} > ${H}`);
    if (s.scrollWidth > W + 1) problems.push(`width ${s.scrollWidth} > ${W}`);
    for (const el of s.querySelectorAll('*')) {
      if (el.closest('.plotly-graph-div, mjx-container')) continue;
      const st = getComputedStyle(el);
      if (['auto', 'scroll'].includes(st.overflowX) && el.scrollWidth > el.clientWidth + 1) {
        problems.push(`${el.tagName.toLowerCase()} scrolls sideways (${el.scrollWidth} > ${el.clientWidth})`); break; }
      if (['auto', 'scroll'].includes(st.overflowY) && el.scrollHeight > el.clientHeight + 1) {
        problems.push(`${el.tagName.toLowerCase()} scrolls (${el.scrollHeight} > ${el.clientHeight})`); break; }
    }
    let minFont = Infinity, minText = '';
    const walker = document.createTreeWalker(s, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const t = walker.currentNode;
      if (!t.textContent.trim()) continue;
      const p = t.parentElement;
      if (!p || p.closest('svg, .plotly-graph-div, mjx-container, .MathJax')) continue;
      const r = p.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      const f = parseFloat(getComputedStyle(p).fontSize);
      if (f < minFont) { minFont = f; minText = t.textContent.trim().slice(0, 40); }
    }
    if (minFont < 18) problems.push(`text at ${minFont} px: ${JSON.stringify(minText)}`);
    out.push({h: idx.h, v: idx.v, problems, height: s.scrollHeight, code: s.querySelectorAll('pre').length,
              text: (s.innerText || '').trim().replace(/\s+/g, ' ').slice(0, 60)});
  }
  Reveal.slide(0, 0);
  return {width: W, height: H, scroll: getComputedStyle(document.querySelector('.reveal .slides > section')).overflowY,
          slides: out};
}
"""


def measure_deck(browser, url: str, shots: Path | None = None) -> dict:
    """Every slide of the deck at ``url`` measured (``SLIDES_JS``); with ``shots``, three screenshots."""
    context = browser.new_context(viewport={"width": slides.VIEW_WIDTH, "height": slides.VIEW_HEIGHT},
                                  service_workers="block")
    try:
        page = context.new_page()
        page.goto(url, wait_until="load", timeout=60_000)
        page.evaluate(DECK_JS)
        result = page.evaluate(SLIDES_JS)
        if shots is not None and result["slides"]:
            shots.mkdir(parents=True, exist_ok=True)
            ok = [x for x in result["slides"] if not x["problems"]] or result["slides"]
            picks = {"first": result["slides"][0],
                     "code": max(ok, key=lambda x: (x["code"], x["height"])),
                     "fullest": max(ok, key=lambda x: x["height"])}
            for name, x in picks.items():
                page.evaluate(f"() => Reveal.slide({x['h']}, {x['v']}, 100000)")
                page.wait_for_timeout(500)
                page.screenshot(path=str(shots / f"{name}.png"))
    finally:
        context.close()
    return result


def overflow_problems(result: dict) -> list[str]:
    problems = [f"slide {x['h']}/{x['v']} ({x['text']!r}): {'; '.join(x['problems'])}"
                for x in result["slides"] if x["problems"]]
    if (result["width"], result["height"]) != (slides.VIEW_WIDTH, slides.VIEW_HEIGHT):
        problems.append(f"the deck's view is {result['width']} x {result['height']}, not "
                        f"{slides.VIEW_WIDTH} x {slides.VIEW_HEIGHT}")
    return problems


@pytest.mark.parametrize("nb", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_slide_fits_the_view(book: BookBuild, site: str, chromium, artifacts: Path, nb: Path):
    deck = deck_path(book, nb)
    if not deck.is_file():
        pytest.fail(f"no deck {deck}")
    assert "var scroll = true" not in deck.read_text(encoding="utf-8"), f"{deck.name} turns on reveal_scroll"
    result = measure_deck(chromium, f"{site}slides/{nb.stem}.html", artifacts / "slides" / nb.stem)
    problems = overflow_problems(result)
    assert not problems, f"{nb.stem}: {len(problems)} of {len(result['slides'])} slides do not fit:\n  " + \
        "\n  ".join(problems)
    print(f"{nb.stem}: {len(result['slides'])} slides fit {result['width']} x {result['height']}")


def test_overflow_is_caught(tmp_path: Path, chromium, monkeypatch):
    """Planted faults: a deck built from a notebook whose code, figure and summary are far too long for
    one slide, with the fitting switched off, overflows; the same notebook fitted does not."""
    import nbformat
    import plotly.graph_objects as go

    from gates import sites

    long_code = "\n".join(f"value_{i} = {i} * 2  # a line of a long cell" for i in range(40))
    wide = "x = '" + "w" * 300 + "'"
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2])).update_layout(height=1100)
    figure_out = nbformat.v4.new_output("display_data", data={"text/html": sites.figure_html(fig, "bars")})
    summary = "## Summary\n\n" + "\n".join(f"* point {i}: " + "a sentence of some length. " * 6 for i in range(18))
    cells = [nbformat.v4.new_markdown_cell("# Planted", metadata={"slideshow": {"slide_type": "slide"}}),
             nbformat.v4.new_code_cell(long_code, metadata={"slideshow": {"slide_type": "subslide"}}),
             nbformat.v4.new_code_cell(wide, metadata={"slideshow": {"slide_type": "subslide"}}),
             nbformat.v4.new_code_cell("fig", outputs=[figure_out], metadata={"slideshow": {"slide_type": "subslide"}}),
             nbformat.v4.new_markdown_cell(summary, metadata={"slideshow": {"slide_type": "slide"}})]
    executed = tmp_path / "planted.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), executed)
    out = tmp_path / "site"
    slides.copy_assets(out)
    slides.build_deck(executed, out / "fitted.html")
    with monkeypatch.context() as m:
        m.setattr(slides, "fit_slides", lambda nb: None)
        m.setattr(slides, "_cap_figures", lambda nb: None)
        slides.build_deck(executed, out / "raw.html")
    with sites.serve(out) as base:
        raw = overflow_problems(measure_deck(chromium, f"{base}raw.html"))
        fitted = overflow_problems(measure_deck(chromium, f"{base}fitted.html"))
    text = "\n".join(raw)
    assert "value_0" in text or "height" in text, raw
    assert sum("height" in p for p in raw) >= 2, raw   # the long code and the summary (and the figure)
    assert not fitted, fitted


def test_fit_slides_cuts_long_cells():
    import nbformat

    code = "\n".join(f"a{i} = {i}" for i in range(40))
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(code, metadata={"slideshow": {"slide_type": "subslide"}},
                                  outputs=[nbformat.v4.new_output("stream", name="stdout", text="done\n")]),
        nbformat.v4.new_markdown_cell("## Summary\n\n" + "\n".join(f"* item {i} " + "words " * 30 for i in range(20)),
                                      metadata={"slideshow": {"slide_type": "slide"}})])
    slides.fit_slides(nb)
    codes = [c for c in nb.cells if c.cell_type == "code"]
    assert len(codes) >= 3 and all(len(c.source.splitlines()) <= slides.MAX_CODE_LINES for c in codes)
    assert "\n".join(c.source for c in codes) == code
    assert [bool(c.outputs) for c in codes] == [False] * (len(codes) - 1) + [True]
    marks = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(marks) >= 2 and marks[1].source.startswith("## Summary (continued)")
    assert all(slides.markdown_height(m.source) <= slides.BUDGET for m in marks)
