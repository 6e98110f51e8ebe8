"""Page weight: every page's own HTML is under 1 MB, plotly.js and MathJax are loaded from the site's
``_static/`` (never inlined, never from a CDN); the table is printed and kept in
``tests/artifacts/page-weight.txt`` (:mod:`gates.weight`)."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from conftest import BookBuild
from gates import sites, weight


def test_page_weight_and_shared_assets(book: BookBuild, artifacts: Path):
    weights = [weight.page_weight(p, book.html_dir) for p in book.pages()]
    table = weight.weight_table(weights)
    (artifacts / "page-weight.txt").write_text(table + "\n", encoding="utf-8")
    print("\n" + table)
    problems = [p for w in weights for p in weight.weight_problems(w)]
    assert not problems, "\n".join(problems)
    assert any(w.figures for w in weights), "no page has a figure: the plotly.js check checked nothing"


def test_page_weight_catches_an_inlined_plotly_js(tmp_path: Path):
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    site = sites.write_site(tmp_path, {
        "inlined.html": sites.theme_page(sites.figure_html(fig, "Bars", include_plotlyjs=True)),
        "cdn.html": sites.theme_page(sites.figure_html(fig, "Bars", include_plotlyjs="cdn")),
        "good.html": sites.theme_page(sites.figure_html(fig, "Bars"), plotly=True),
    })
    inlined, cdn, good = (weight.page_weight(site / f"{n}.html", site) for n in ("inlined", "cdn", "good"))
    problems = weight.weight_problems(inlined)
    assert inlined.html_bytes > weight.MAX_PAGE_BYTES and inlined.inlined, inlined
    assert any("holds plotly.js" in p for p in problems) and any("limit" in p for p in problems), problems
    assert any("cdn.plot.ly" in p for p in weight.weight_problems(cdn)), weight.weight_problems(cdn)
    assert weight.weight_problems(good) == [], weight.weight_problems(good)
