"""Links: every internal link, anchor, citation and cross-reference of the built book resolves
(:mod:`gates.links`); external links are listed in ``tests/artifacts/external-links.txt``, not fetched."""
from __future__ import annotations

from pathlib import Path

from conftest import BookBuild
from gates import links, sites


def test_internal_links_resolve(book: BookBuild, artifacts: Path):
    report = links.check_site(book.html_dir)
    listing = artifacts / "external-links.txt"
    listing.write_text(links.external_report(report), encoding="utf-8")
    print(f"\n{report.checked} links checked on {len(links.site_pages(book.html_dir))} pages; "
          f"{len(report.external)} external URLs listed in {listing} (not fetched)")
    assert report.checked > 0
    assert not report.broken, f"{len(report.broken)} broken link(s):\n" + "\n".join(report.broken)


def test_every_page_of_the_book_is_checked(book: BookBuild):
    checked = set(links.site_pages(book.html_dir))
    missing = [p for p in book.pages() if p not in checked]
    assert not missing, missing


def test_citations_and_cross_references_are_links(book: BookBuild):
    """The book really has citations that point into the bibliography, so the anchor check covers them."""
    cited = [(tag, url) for tag, url in links.parse_page(book.page("intro")).links if "bibliography.html#" in url]
    assert cited, "no citation links on the intro page"


def test_link_checker_catches_planted_faults(tmp_path: Path):
    site = sites.write_site(tmp_path, {
        "index.html": sites.theme_page(
            '<p id="here"><a href="#here">self</a> <a href="b.html">b</a> <a href="b.html#real">real anchor</a> '
            '<a href="missing.html">missing page</a> <a href="b.html#nope">missing anchor</a> '
            '<a href="sub/">folder</a> <a href="https://example.org/x">external</a> '
            '<img src="_static/gone.png" alt="gone"> '
            '<span class="xref std std-ref">unresolved-label</span> '
            '<a class="reference internal" href="b.html"><span class="xref std std-ref">resolved</span></a></p>'),
        "b.html": sites.theme_page('<h2 id="real">Real</h2>'),
        "sub/index.html": sites.theme_page("folder index"),
    })
    report = links.check_site(site)
    broken = "\n".join(report.broken)
    assert len(report.broken) == 4, broken
    for expected in ("'missing.html'", "no id 'nope'", "_static/gone.png", "unresolved cross-reference 'unresolved-label'"):
        assert expected in broken, broken
    assert dict(report.external) == {"https://example.org/x": {"index.html"}}
