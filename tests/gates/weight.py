"""Page weight: each page's own HTML stays small, and shared assets come from the site's ``_static/``.

:func:`page_weight` measures one page: its HTML bytes, the local files it loads (counted for the table,
not limited), its figures, where plotly.js and MathJax come from, and whether plotly.js is *inlined*
(a figure rendered with ``include_plotlyjs=True`` or plotly's ``notebook`` renderer puts the whole
~4.8 MB library into the page: :func:`inlined_plotly` finds it by plotly's banner or by a huge inline
script that defines ``Plotly``). :func:`weight_problems` says what is wrong with a page.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

MAX_PAGE_BYTES = 1_000_000
#: plotly.js's banner ("plotly.js v3.1.1"), found in its minified source.
PLOTLY_BANNER = re.compile(r"plotly\.js v\d+\.\d+")
#: An inline script this long that mentions Plotly is a bundled library, not a figure's newPlot call.
INLINE_LIBRARY_BYTES = 300_000
PLOTLY_STATIC = "_static/plotly.min.js"
MATHJAX_STATIC = "_static/mathjax/"


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.sources: list[str] = []  # script src, stylesheet href, img src
        self.scripts: list[str] = []  # script src only
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            if a.get("src"):
                self.scripts.append(a["src"])
                self.sources.append(a["src"])
            else:
                self._in_script = True
                self.inline.append("")
        elif tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or ""):
            self.sources.append(a["href"])
        elif tag == "img" and a.get("src"):
            self.sources.append(a["src"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and self.inline:
            self.inline[-1] += data


def inlined_plotly(html: str) -> list[str]:
    """Evidence that ``html`` carries plotly.js itself (empty when it does not)."""
    found = []
    parser = _Scripts()
    parser.feed(html)
    for i, code in enumerate(parser.inline):
        if PLOTLY_BANNER.search(code):
            found.append(f"inline script {i} holds plotly.js ({PLOTLY_BANNER.search(code).group(0)}, {len(code):,} bytes)")
        elif len(code) > INLINE_LIBRARY_BYTES and "Plotly" in code and "Plotly.newPlot(" not in code[:2000]:
            found.append(f"inline script {i} is {len(code):,} bytes and defines Plotly")
    for src in parser.scripts:
        if src.startswith("data:") and "plotly" in src[:200].lower():
            found.append("a data: URL script holds plotly.js")
    return found


@dataclass
class PageWeight:
    page: str
    html_bytes: int
    local_bytes: int  # HTML plus every local script, stylesheet and image it loads (each once)
    figures: int
    plotly_sources: list[str] = field(default_factory=list)
    mathjax_sources: list[str] = field(default_factory=list)
    inlined: list[str] = field(default_factory=list)


def _local(page: Path, url: str) -> Path | None:
    parts = urlsplit(url)
    if parts.scheme or url.startswith("//") or not parts.path:
        return None
    return (page.parent / parts.path).resolve()


def page_weight(page: Path, root: Path) -> PageWeight:
    """Measure one built page (see the module docstring)."""
    page, root = Path(page), Path(root)
    html = page.read_text(encoding="utf-8", errors="replace")
    parser = _Scripts()
    parser.feed(html)
    local = {p for p in (_local(page, u) for u in parser.sources) if p is not None and p.is_file()}
    return PageWeight(
        page=page.relative_to(root).as_posix(),
        html_bytes=page.stat().st_size,
        local_bytes=page.stat().st_size + sum(p.stat().st_size for p in local),
        figures=html.count('class="plotly-graph-div"'),
        plotly_sources=[s for s in parser.scripts if "plotly" in s.lower() and not s.startswith("data:")],
        mathjax_sources=[s for s in parser.scripts if "mathjax" in s.lower()],
        inlined=inlined_plotly(html),
    )


def weight_problems(w: PageWeight, max_bytes: int = MAX_PAGE_BYTES) -> list[str]:
    """What is wrong with a page's weight or assets (empty when nothing is)."""
    problems = []
    if w.html_bytes >= max_bytes:
        problems.append(f"{w.page}: its HTML is {w.html_bytes:,} bytes (limit {max_bytes:,})")
    problems += [f"{w.page}: {what}" for what in w.inlined]
    for src in w.plotly_sources:
        if urlsplit(src).scheme or src.startswith("//") or not urlsplit(src).path.endswith(PLOTLY_STATIC):
            problems.append(f"{w.page}: plotly.js from {src!r}, not from {PLOTLY_STATIC}")
    if w.figures and not w.plotly_sources:
        problems.append(f"{w.page}: {w.figures} figure(s) but plotly.js is not loaded from {PLOTLY_STATIC}")
    for src in w.mathjax_sources:
        if urlsplit(src).scheme or src.startswith("//") or MATHJAX_STATIC not in src:
            problems.append(f"{w.page}: MathJax from {src!r}, not from {MATHJAX_STATIC}")
    return problems


def weight_table(weights: list[PageWeight]) -> str:
    head = f"{'page':44} {'HTML bytes':>12} {'with assets':>12} {'figures':>8}  plotly.js / MathJax"
    lines = [head, "-" * len(head)]
    for w in weights:
        src = ", ".join(sorted({s.split("?")[0] for s in w.plotly_sources + w.mathjax_sources})) or "-"
        lines.append(f"{w.page:44} {w.html_bytes:12,} {w.local_bytes:12,} {w.figures:8}  {src}")
    return "\n".join(lines)
