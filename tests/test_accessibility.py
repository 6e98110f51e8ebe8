"""Accessibility of every page's article content (:mod:`gates.a11y`): axe-core finds no serious or
critical violation (except allowlisted theme rules, each with its upstream issue), and every figure
(plotly figure, image, inline SVG) has a text alternative or a caption.

axe-core is the copy bundled with axe-playwright-python, injected into the page; every request that
would leave the local site is blocked and recorded, so a fetch would fail the test."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import plotly.graph_objects as go
import pytest

import nbtools
from conftest import BookBuild
from gates import a11y, sites

PAGES = nbtools.toc_docnames() + ["genindex", "search"]


def _open(browser, url: str, left: list[str]):
    origin = urlparse(url)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")

    def route(r):
        target = urlparse(r.request.url)
        if target.scheme in {"http", "https"} and (target.hostname, target.port) != (origin.hostname, origin.port):
            left.append(r.request.url)
            r.abort("blockedbyclient")
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.goto(url, wait_until="load", timeout=60_000)
    page.wait_for_load_state("networkidle", timeout=30_000)
    return context, page


def test_allowlist_entries_name_their_upstream_issue():
    for rule, issue in a11y.AXE_ALLOWLIST.items():
        assert issue.startswith("https://github.com/") and "/issues/" in issue, (rule, issue)


@pytest.mark.parametrize("docname", PAGES)
def test_article_is_accessible(book: BookBuild, site: str, chromium, docname: str):
    if not book.page(docname).is_file():
        pytest.fail(f"{docname}.html was not built")
    left: list[str] = []
    context, page = _open(chromium, f"{site}{docname}.html", left)
    try:
        violations = a11y.run_axe(page)
        missing = a11y.figures_without_alternative(page)
        figures = a11y.figures(page)
    finally:
        context.close()
    for v in violations:
        print(f"{docname}: axe {v.impact or '-'}: {v.rule}{' (allowlisted)' if v.rule in a11y.AXE_ALLOWLIST else ''}")
    print(f"{docname}: {len(figures)} figure(s), axe-core {a11y.axe_version()}")
    problems = a11y.axe_problems(violations) + missing
    if left:
        problems.append(f"requests that tried to leave the site: {left}")
    assert not problems, f"{docname}:\n  " + "\n  ".join(problems)


def test_accessibility_gate_catches_an_image_without_alt(tmp_path: Path, chromium):
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    site = sites.write_site(tmp_path, {
        "bad.html": sites.theme_page('<p>Text.</p><img src="_static/dot.svg"> ' + sites.figure_html(fig), plotly=True),
        "good.html": sites.theme_page('<p>Text.</p><img src="_static/dot.svg" alt="A dot"> '
                                      + sites.figure_html(fig, alt="Bar chart: a 1, b 2"), plotly=True),
    })
    (site / "_static" / "dot.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
                                              '<circle cx="4" cy="4" r="4"/></svg>')
    results = {}
    with sites.serve(site) as base:
        for name in ("bad", "good"):
            left: list[str] = []
            context, page = _open(chromium, f"{base}{name}.html", left)
            try:
                results[name] = (a11y.axe_problems(a11y.run_axe(page)), a11y.figures_without_alternative(page))
            finally:
                context.close()
            assert not left, left
    axe_bad, missing_bad = results["bad"]
    assert any(p.startswith("image-alt (critical)") for p in axe_bad), axe_bad
    assert len(missing_bad) == 2 and any(m.startswith("img") for m in missing_bad) \
        and any(m.startswith("plotly") for m in missing_bad), missing_bad
    assert results["good"] == ([], []), results["good"]
