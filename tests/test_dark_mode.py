"""Dark mode: every page opened in the theme's dark mode (screenshots in
``tests/artifacts/screenshots/dark/``), and every text of every plotly figure has a contrast ratio of
at least 4.5:1 (WCAG AA) against the background actually drawn behind it (:mod:`gates.contrast`).
The same visit measures the size every figure's text is drawn at (plotly figures and hand-drawn
diagrams): at least 11 px on a 1280 px wide page. Each chapter's first screen (light mode, 1280 x 800)
is kept in ``tests/artifacts/first-screen/``, and no code the reader sees on a page does bookkeeping."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

import nbtools
from conftest import BookBuild
from gates import contrast, sites

PAGES = nbtools.toc_docnames() + ["genindex", "search"]


def test_contrast_ratio_matches_wcag():
    white, black = (255.0, 255.0, 255.0), (0.0, 0.0, 0.0)
    assert contrast.contrast_ratio(white, black) == pytest.approx(21.0)
    assert contrast.contrast_ratio((118.0, 118.0, 118.0), white) == pytest.approx(4.54, abs=0.01)  # #767676
    assert contrast.contrast_ratio((119.0, 119.0, 119.0), white) == pytest.approx(4.48, abs=0.01)  # #777777
    assert contrast.parse_color("rgba(255, 255, 255, 0.5)") == (255, 255, 255, 0.5)
    assert contrast.parse_color("#1f2328") == (31, 35, 40, 1.0)
    assert contrast.composite((0, 0, 0, 0.5), white) == (127.5, 127.5, 127.5)


@pytest.mark.parametrize("docname", PAGES)
def test_figure_text_is_readable_in_dark_mode(book: BookBuild, site: str, chromium, artifacts: Path, docname: str):
    if not book.page(docname).is_file():
        pytest.fail(f"{docname}.html was not built")
    shot = artifacts / "screenshots" / "dark" / f"{docname.replace('/', '__')}.png"
    with contrast.open_dark(chromium, f"{site}{docname}.html", screenshot=shot) as page:
        theme = contrast.page_theme(page)
        texts = contrast.figure_text_contrast(page)
        sizes = contrast.figure_font_sizes(page)
    assert theme == "dark", f"{docname}: the page did not switch to dark mode (data-theme={theme!r})"
    worst = min((t.ratio for t in texts), default=None)
    print(f"{docname}: {len(texts)} figure texts, lowest contrast {worst and round(worst, 2)} (screenshot {shot})")
    problems = contrast.contrast_problems(texts)
    assert not problems, f"{docname}: figure text below 4.5:1 in dark mode:\n  " + "\n  ".join(problems)
    small = contrast.font_size_problems(sizes)
    assert not small, f"{docname}: figure text drawn below {contrast.MIN_FONT_PX:g} px:\n  " + "\n  ".join(small[:40])


def test_dark_mode_gate_catches_low_contrast_text(tmp_path: Path, chromium):
    """A figure with a transparent background and grey text fails on the dark page; lmlab's white card passes."""
    faint = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    faint.update_layout(paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", font_color="#444444",
                        title="Faint title", template="none", width=500, height=320)
    from lmlab import viz

    card = viz.next_token_bars({"a": 0.75, "b": 0.25}, k=2, context="x")
    site = sites.write_site(tmp_path, {
        "faint.html": sites.theme_page(sites.figure_html(faint, "faint bars"), plotly=True),
        "card.html": sites.theme_page(sites.figure_html(card, viz.alt_text(card)), plotly=True),
    })
    with sites.serve(site) as base:
        with contrast.open_dark(chromium, f"{base}faint.html", screenshot=tmp_path / "faint.png") as page:
            assert contrast.page_theme(page) == "dark"
            faint_texts = contrast.figure_text_contrast(page)
        with contrast.open_dark(chromium, f"{base}card.html") as page:
            card_texts = contrast.figure_text_contrast(page)
    problems = contrast.contrast_problems(faint_texts)
    assert any("'Faint title'" in p for p in problems), problems
    assert len(problems) == len(faint_texts) >= 3, problems  # title and tick labels, all on the dark page
    assert all(t.background[0] < 40 for t in faint_texts), [t.describe() for t in faint_texts]
    assert card_texts and not contrast.contrast_problems(card_texts), contrast.contrast_problems(card_texts)


def test_font_size_gate_catches_small_text(tmp_path: Path, chromium):
    """Planted faults: tick labels of 8 px, and a diagram whose viewBox shrinks 12-unit text below 11 px.
    lmlab's attention grid and architecture diagram pass on the same page width."""
    from lmlab import interpret, viz

    small = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    small.update_layout(xaxis=dict(tickfont=dict(size=8)), height=320)
    grid = viz.attention_grid(np.random.default_rng(0).dirichlet(np.ones(6), size=(2, 4, 6)), list("abcdef"))
    shrunk = ('<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 2000 200" width="100%">'
              '<text x="10" y="100" font-size="12">far too small</text></svg>')
    site = sites.write_site(tmp_path, {
        "small.html": sites.theme_page(sites.figure_html(small, "bars") + shrunk, plotly=True),
        "good.html": sites.theme_page(sites.figure_html(grid, viz.alt_text(grid)) + interpret.architecture_svg(),
                                      plotly=True),
    })
    with sites.serve(site) as base:
        with contrast.open_dark(chromium, f"{base}small.html") as page:
            bad = contrast.font_size_problems(contrast.figure_font_sizes(page))
        with contrast.open_dark(chromium, f"{base}good.html") as page:
            good = contrast.figure_font_sizes(page)
    assert any("plotly" in p and "8.0 px" in p for p in bad), bad
    assert any("'far too small'" in p and "diagram" in p for p in bad), bad
    assert {t["kind"] for t in good} == {"plotly", "diagram"}, good
    assert not contrast.font_size_problems(good), contrast.font_size_problems(good)


BOOKKEEPING = re.compile(r"\b(claim|glue)\(|from lmlab import[^\n]*\b(claim|glue)\b")


@pytest.mark.parametrize("docname", [d for d in PAGES if d.startswith("chapters/")])
def test_first_screen_and_no_bookkeeping_in_sight(book: BookBuild, site: str, chromium, artifacts: Path,
                                                  docname: str):
    """A screenshot of the chapter's first screen as a reader sees it (1280 x 800, light mode), and no
    code cell the page shows (hidden-input toggles and solutions included) calls claim or glue."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light",
                                   service_workers="block")
    try:
        page = context.new_page()
        page.goto(f"{site}{docname}.html", wait_until="load", timeout=60_000)
        page.wait_for_timeout(500)
        shot = artifacts / "first-screen" / f"{docname.replace('/', '__')}.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        code = page.evaluate("() => [...document.querySelectorAll('.cell_input pre, div.highlight pre')]"
                             ".map(e => e.textContent)")
    finally:
        context.close()
    found = [c.strip().splitlines()[0][:80] for c in code if BOOKKEEPING.search(c)]
    assert not found, f"{docname}: code the reader sees does bookkeeping (claim/glue): {found}"


def test_bookkeeping_pattern_catches_planted_fault():
    assert BOOKKEEPING.search("x = 1\nclaim(x == 1, 'one')") and BOOKKEEPING.search("from lmlab import claim, viz")
    assert not BOOKKEEPING.search("proclaim the claims\nglued = 3")
