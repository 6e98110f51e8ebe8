"""Links of a built site: every internal link, anchor, citation and cross-reference resolves.

:func:`check_site` parses every HTML page with :mod:`html.parser` and checks

* each local ``href``/``src``/``action`` (``<a>``, ``<area>``, ``<link>``, ``<img>``, ``<iframe>``,
  ``<form>``, ...) names a file of the site (a folder counts when it holds ``index.html``);
* each ``#fragment`` of a link to a page exists there as an ``id`` (or ``<a name>``) — citations
  (``bibliography.html#id3``), cross-references, glossary terms and footnotes are such links;
* no cross-reference was left unresolved: Sphinx renders a reference it could not resolve as an
  ``xref`` element that is not inside a link.

External links (``http``, ``https``, ``//``, ``mailto``) are collected, not fetched (the tests run
offline): :func:`external_report` writes them, with the pages that use them, to a report file.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LINK_ATTRS = {"a": "href", "area": "href", "link": "href", "img": "src", "iframe": "src", "source": "src",
              "audio": "src", "video": "src", "embed": "src", "script": "src", "form": "action"}
SKIP_SCHEMES = {"javascript", "data", "tel", "blob", "about"}
EXTERNAL_SCHEMES = {"http", "https", "mailto", "ftp"}
# Theme and search pages not generated from sources; their links are checked like any other.
SKIP_DIRS = {"_static", "_sources", "_images", "jupyter_execute", "reports"}


@dataclass
class PageLinks:
    """What one page offers (anchors) and points at (links)."""

    anchors: set[str] = field(default_factory=set)
    links: list[tuple[str, str]] = field(default_factory=list)  # (tag, url)
    unresolved_xrefs: list[str] = field(default_factory=list)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = PageLinks()
        self._stack: list[str] = []  # open elements
        self._xref_depth: int | None = None  # stack depth of an unresolved xref being read
        self._xref_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag in {"a", "map"} else ("id",):
            if a.get(key):
                self.page.anchors.add(a[key])
        attr = LINK_ATTRS.get(tag)
        if attr and a.get(attr) is not None:
            self.page.links.append((tag, a[attr]))
        if tag in VOID:
            return
        classes = (a.get("class") or "").split()
        if "xref" in classes and tag != "a" and "a" not in self._stack and self._xref_depth is None:
            self._xref_depth, self._xref_text = len(self._stack), []
        self._stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self._stack and self._stack[-1] == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag not in self._stack:
            return
        while self._stack and self._stack.pop() != tag:
            pass
        if self._xref_depth is not None and len(self._stack) <= self._xref_depth:
            self.page.unresolved_xrefs.append("".join(self._xref_text).strip())
            self._xref_depth = None

    def handle_data(self, data):
        if self._xref_depth is not None:
            self._xref_text.append(data)


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def parse_page(path: Path) -> PageLinks:
    parser = _Parser()
    parser.feed(Path(path).read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser.page


@dataclass
class LinkReport:
    broken: list[str] = field(default_factory=list)
    external: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    checked: int = 0


def site_pages(root: Path) -> list[Path]:
    root = Path(root)
    return sorted(p for p in root.rglob("*.html") if not (set(p.relative_to(root).parts[:-1]) & SKIP_DIRS))


def check_site(root: Path, pages: list[Path] | None = None) -> LinkReport:
    """Check every link of ``pages`` (default: every page of the site under ``root``)."""
    root = Path(root).resolve()
    pages = [Path(p).resolve() for p in (pages if pages is not None else site_pages(root))]
    cache: dict[Path, PageLinks] = {}

    def parsed(path: Path) -> PageLinks:
        if path not in cache:
            cache[path] = parse_page(path)
        return cache[path]

    report = LinkReport()
    for page in pages:
        name = page.relative_to(root).as_posix()
        info = parsed(page)
        for text in info.unresolved_xrefs:
            report.broken.append(f"{name}: unresolved cross-reference {text!r}")
        for tag, url in info.links:
            report.checked += 1
            url = url.strip()
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme in SKIP_SCHEMES:
                continue
            if scheme in EXTERNAL_SCHEMES or url.startswith("//"):
                report.external[url].add(name)
                continue
            if scheme:
                report.broken.append(f"{name}: <{tag}> {url!r}: unknown scheme")
                continue
            path = unquote(parts.path)
            if not path:
                target = page
            elif path.startswith("/"):
                target = (root / path.lstrip("/")).resolve()
            else:
                target = (page.parent / path).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                report.broken.append(f"{name}: <{tag}> {url!r}: no such file {target.relative_to(root) if target.is_relative_to(root) else target}")
                continue
            # As a browser does: the fragment as written, then percent-decoded (nbconvert's heading
            # ids keep their percent-escapes, Sphinx's do not).
            fragment = unquote(parts.fragment)
            if fragment and tag in {"a", "area"} and target.suffix == ".html":
                if fragment not in parsed(target).anchors and parts.fragment not in parsed(target).anchors:
                    report.broken.append(f"{name}: <{tag}> {url!r}: no id {fragment!r} in {target.relative_to(root).as_posix()}")
    return report


def external_report(report: LinkReport) -> str:
    """The external links, one a line, each with the pages that link to it."""
    lines = ["# External links of the built book (not fetched by the tests: they run offline).",
             "# URL<TAB>pages"]
    for url in sorted(report.external):
        lines.append(f"{url}\t{' '.join(sorted(report.external[url]))}")
    return "\n".join(lines) + "\n"
