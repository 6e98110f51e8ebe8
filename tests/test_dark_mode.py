"""Dark mode: every page opened in the theme's dark mode (screenshots in
``tests/artifacts/screenshots/dark/``), and every text of every plotly figure has a contrast ratio of
at least 4.5:1 (WCAG AA) against the background actually drawn behind it (:mod:`gates.contrast`)."""
from __future__ import annotations

from pathlib import Path

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
    assert theme == "dark", f"{docname}: the page did not switch to dark mode (data-theme={theme!r})"
    worst = min((t.ratio for t in texts), default=None)
    print(f"{docname}: {len(texts)} figure texts, lowest contrast {worst and round(worst, 2)} (screenshot {shot})")
    problems = contrast.contrast_problems(texts)
    assert not problems, f"{docname}: figure text below 4.5:1 in dark mode:\n  " + "\n  ".join(problems)


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
