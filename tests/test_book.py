"""The book build (one shared build, see conftest.py): it succeeds with zero warnings, offline; every
page is built; the site names no remote script, style or font; plotly.js and MathJax come from
_static; the Colab buttons are right; and a failing cell or a warning makes a build fail."""
from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

import nbtools
from conftest import ROOT, BookBuild, _flag, build_book, loud, offline_command

MAX_PAGE_BYTES = 1_000_000


# --- the shared build ----------------------------------------------------------------------------

def test_build_succeeds(book: BookBuild):
    if book.returncode is None:
        pytest.skip("reused build (LMLAB_BOOK_DIR): its exit status is unknown")
    assert book.returncode == 0, f"the book build failed (exit {book.returncode}):\n{book.tail()}"
    assert "build succeeded" in book.clean_log


def test_build_has_zero_warnings(book: BookBuild):
    if book.reused and not book.log:
        pytest.skip("reused build without its log (_build/book-build.log)")
    problems = book.problems()
    assert not problems, f"{len(problems)} warning(s)/error(s) in the build log:\n" + "\n".join(problems)


def test_build_was_offline(book: BookBuild):
    if book.reused:
        pytest.skip("reused build (LMLAB_BOOK_DIR): not known to be offline")
    if not book.offline:
        message = "THE BOOK WAS BUILT WITH THE NETWORK ON: " + "; ".join(book.notes)
        if _flag("LMLAB_REQUIRE_OFFLINE"):
            pytest.fail(message + " (LMLAB_REQUIRE_OFFLINE=1)")
        loud(message)
        pytest.skip(message)
    assert book.returncode == 0


def test_offline_command_really_has_no_network():
    prefix, reason = offline_command()
    if not prefix:
        pytest.skip(f"unshare not permitted here: {reason}")
    import subprocess
    import sys

    code = ("import socket\n"
            "s = socket.socket(); s.settimeout(3)\n"
            "try:\n    s.connect(('1.1.1.1', 80)); print('CONNECTED')\n"
            "except OSError as e:\n    print('NO NETWORK', e)\n"
            "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(); print('LOOPBACK OK')\n")
    out = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stdout
    assert "NO NETWORK" in out and "LOOPBACK OK" in out, out


def test_every_toc_page_is_built(book: BookBuild):
    missing = [d for d in nbtools.toc_docnames() if not book.page(d).is_file()]
    assert not missing, f"pages in _toc.yml that were not built: {missing}"
    assert (book.html_dir / "index.html").is_file()


def test_no_page_has_an_error_report(book: BookBuild):
    reports = book.html_dir / "reports"
    assert not reports.exists() or not any(reports.iterdir()), f"execution error reports in {reports}"


# --- what the pages load -------------------------------------------------------------------------

class _Assets(HTMLParser):
    """Collect the URLs a page loads (scripts, styles, fonts, images, frames) and its inline code."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str]] = []
        self.scripts: list[str] = []  # script src, in order
        self.inline: list[str] = []  # inline <script> and <style> text
        self._in = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            if a.get("src"):
                self.loads.append((tag, a["src"]))
                self.scripts.append(a["src"])
            self._in = tag
        elif tag == "style":
            self._in = tag
        elif tag == "link" and a.get("href"):
            rel = (a.get("rel") or "").lower()
            if any(r in rel for r in ("stylesheet", "preload", "prefetch", "modulepreload", "icon", "manifest")):
                self.loads.append((f"link[{rel}]", a["href"]))
        elif tag in {"img", "iframe", "source", "audio", "video", "embed"} and a.get("src"):
            self.loads.append((tag, a["src"]))
        elif tag == "object" and a.get("data"):
            self.loads.append((tag, a["data"]))
        if a.get("style"):
            self.inline.append(a["style"])

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in:
            self.inline.append(data)


def parse(page: Path) -> _Assets:
    parser = _Assets()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


REMOTE = re.compile(r"^(https?:)?//", re.I)
REMOTE_IN_CODE = re.compile(
    r"""(@import\s+(url\()?\s*['"]?(https?:)?//|url\(\s*['"]?(https?:)?//|<script[^>]+src=["']?(https?:)?//|"""
    r"""import\s*\(?\s*['"](https?:)?//|\.src\s*=\s*['"](https?:)?//)""", re.I)


def test_no_page_loads_anything_remote(book: BookBuild):
    bad = []
    for page in book.pages():
        assets = parse(page)
        bad += [f"{page.name}: <{tag}> {url}" for tag, url in assets.loads if REMOTE.match(url)]
        bad += [f"{page.name}: inline code loads {m.group(0)!r}" for code in assets.inline
                for m in REMOTE_IN_CODE.finditer(code)]
    assert not bad, "remote resources in the built pages:\n" + "\n".join(bad)


def test_static_styles_load_nothing_remote(book: BookBuild):
    """The theme's CSS (pydata/sphinx-book-theme and extensions) names no remote fonts or imports."""
    bad = []
    for css in (book.html_dir / "_static").rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        bad += [f"{css.relative_to(book.html_dir)}: {m.group(0)}" for m in REMOTE_IN_CODE.finditer(text)]
    assert not bad, "\n".join(bad)


def _local_target(book: BookBuild, page: Path, url: str) -> Path:
    return (page.parent / url.split("?")[0].split("#")[0]).resolve()


def test_plotly_and_mathjax_are_served_from_static(book: BookBuild):
    import plotly

    intro = book.page("intro")
    scripts = parse(intro).scripts
    plotly_js = [s for s in scripts if s.split("?")[0].endswith("_static/plotly.min.js")]
    mathjax = [s for s in scripts if s.split("?")[0].endswith("_static/mathjax/tex-chtml.js")]
    assert len(plotly_js) == 1, f"intro should load _static/plotly.min.js once, loads {scripts}"
    assert len(mathjax) == 1, f"intro should load _static/mathjax/tex-chtml.js, loads {scripts}"
    shipped = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    served = _local_target(book, intro, plotly_js[0])
    assert served.read_bytes() == shipped.read_bytes(), "_static/plotly.min.js differs from the installed plotly's"
    assert (book.html_dir / "_static" / "mathjax" / "output" / "chtml" / "fonts").is_dir(), "MathJax fonts missing"
    # plotly.js must run before the figures' inline Plotly.newPlot calls: not deferred, not async.
    tag = re.search(r"<script[^>]*_static/plotly\.min\.js[^>]*>", intro.read_text(encoding="utf-8")).group(0)
    assert "defer" not in tag and "async" not in tag, tag


def test_every_local_script_and_style_exists(book: BookBuild):
    missing = []
    for page in book.pages():
        for tag, url in parse(page).loads:
            if REMOTE.match(url) or url.startswith(("data:", "#", "mailto:")):
                continue
            if not _local_target(book, page, url).is_file():
                missing.append(f"{page.name}: <{tag}> {url}")
    assert not missing, "\n".join(missing)


def test_plotly_js_is_never_inlined_and_pages_are_small(book: BookBuild):
    sizes = {p.relative_to(book.html_dir).as_posix(): p.stat().st_size for p in book.pages()}
    print("\npage sizes (bytes): " + ", ".join(f"{k} {v:,}" for k, v in sorted(sizes.items())))
    assert sizes["intro.html"] < MAX_PAGE_BYTES, f"intro.html is {sizes['intro.html']:,} bytes (limit 1 MB)"
    for page in book.pages():
        text = page.read_text(encoding="utf-8")
        assert "* plotly.js v" not in text and "cdn.plot.ly" not in text, f"{page.name} inlines or fetches plotly.js"


def test_pages_without_figures_do_not_load_plotly(book: BookBuild):
    for page in book.pages():
        text = page.read_text(encoding="utf-8")
        has_figure = "Plotly.newPlot" in text
        loads = any("plotly.min.js" in s for s in parse(page).scripts)
        assert has_figure == loads, f"{page.name}: figures {has_figure}, loads plotly.js {loads}"


def test_intro_has_a_plotly_figure_and_math(book: BookBuild):
    text = book.page("intro").read_text(encoding="utf-8")
    assert text.count("Plotly.newPlot") >= 1
    assert 'class="math' in text


def test_exercise_and_gated_solution_are_rendered(book: BookBuild):
    text = book.page("intro").read_text(encoding="utf-8")
    assert re.search(r'class="[^"]*exercise', text), "no sphinx-exercise admonition on the intro page"
    m = re.search(r'<div class="[^"]*solution[^"]*dropdown[^"]*"', text) or re.search(
        r'<div class="[^"]*dropdown[^"]*solution[^"]*"', text)
    assert m, "no dropdown solution on the intro page"
    # The solution's code ran at build time: its checker's success line is in the page.
    solution = text[m.start():]
    assert "Correct: your probabilities match" in solution.split("</section>")[0]


def test_citations_resolve_to_the_bibliography(book: BookBuild):
    intro = book.page("intro").read_text(encoding="utf-8")
    assert re.search(r'href="bibliography\.html#id\d+"', intro), "the intro's {cite} links go nowhere"
    bib = book.page("bibliography").read_text(encoding="utf-8")
    for doi in re.findall(r"doi\s*=\s*\{([^}]+)\}", (ROOT / "references.bib").read_text(encoding="utf-8")):
        assert doi in bib, f"DOI {doi} missing from the bibliography page"


# --- Colab ---------------------------------------------------------------------------------------

def test_every_notebook_page_has_its_colab_button(book: BookBuild):
    for docname in nbtools.toc_docnames():
        source = nbtools.source_of(docname)
        if source is None or source.suffix != ".ipynb":
            continue
        expected = nbtools.colab_url(source.relative_to(ROOT).as_posix())
        text = book.page(docname).read_text(encoding="utf-8")
        links = set(re.findall(r"https://colab\.research\.google\.com/[^\"'\s<]+", text))
        assert links == {expected}, f"{docname}: Colab links {links}, expected {expected}"


def test_repository_buttons_point_at_the_repository(book: BookBuild):
    url, _ = nbtools.repository()
    text = book.page("intro").read_text(encoding="utf-8")
    assert f'href="{url}"' in text and f"{url}/issues/new" in text


# --- a failing cell and a warning make a build fail ------------------------------------------------

def _tiny_book(dest: Path, cell: str, markdown: str = "Fine.") -> Path:
    """A book with this repository's _config.yml, _ext and references, and one small notebook."""
    dest.mkdir(parents=True)
    for name in ("_config.yml", "references.bib"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "_ext", dest / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: bibliography\n")
    (dest / "bibliography.md").write_text("# Bibliography\n\n```{bibliography}\n:all:\n```\n")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": f"# Tiny\n\n{markdown}"},
                    {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": cell}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (dest / "intro.ipynb").write_text(json.dumps(nb))
    return dest


@pytest.mark.parametrize(
    "case, cell, markdown, fails_with",
    [
        ("clean", "print(1 + 1)", "Fine.", None),
        ("cell error", "1 / 0", "Fine.", "ZeroDivisionError"),
        ("sphinx warning", "print(1 + 1)", "See {doc}`no-such-page`.", "WARNING"),
    ],
    ids=["clean-builds", "failing-cell-fails", "warning-fails"],
)
def test_build_gates(tmp_path: Path, case: str, cell: str, markdown: str, fails_with: str | None):
    src = _tiny_book(tmp_path / "src", cell, markdown)
    built = build_book(src, tmp_path / "out", offline=False, timeout=600)
    if fails_with is None:
        assert built.returncode == 0, built.tail()
        assert not built.problems(), built.problems()
    else:
        assert built.returncode != 0, f"{case}: the build should fail but exited 0:\n{built.tail()}"
        assert fails_with in built.clean_log, built.tail()


def test_book_renderer_writes_figures_without_plotly_js_or_cdn_scripts():
    """lmlab's build-mode plotly renderer: a div and a Plotly.newPlot call, no <script src>, no CDN."""
    import subprocess
    import sys

    code = ("import lmlab, plotly.io as pio, plotly.graph_objects as go\n"
            "assert pio.renderers.default == 'lmlab_book', pio.renderers.default\n"
            "fig = go.Figure(go.Bar(x=['a', 'b'], y=[1, 2]))\n"
            "print(pio.renderers['lmlab_book'].to_mimebundle(fig.to_dict())['text/html'])\n")
    env = {**os.environ, "LMLAB_BOOK": "1"}
    html = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "Plotly.newPlot" in html and 'class="plotly-graph-div"' in html
    assert not re.search(r"<script[^>]*\ssrc=", html), "the figure loads a script"
    assert "cdn" not in html.lower() and "* plotly.js v" not in html and len(html) < 20_000


# The lecture's reference list (../shared/seed/), with the DOI or URL the slides give (None: none given).
LECTURE_REFERENCES = {
    "bahdanau2015": ("https://arxiv.org/pdf/1409.0473", "url"),
    "clark2019": ("10.18653/v1/W19-4828", "doi"),
    "dong2021": ("https://proceedings.mlr.press/v139/dong21a.html", "url"),
    "frankle2018": ("https://openreview.net/forum?id=rJl-b3RcF7", "url"),
    "geva2022": ("https://aclanthology.org/2022.emnlp-main.3", "url"),
    "perez2021": (None, None),
    "rogers2020": ("10.1162/tacl_a_00349", "doi"),
    "shazeer2020": ("10.48550/arXiv.2002.05202", "doi"),
    "vaswani2017": ("https://papers.nips.cc/paper/2017/hash/3f5ee243547dee91fbd053c1c4a845aa-Abstract.html", "url"),
}


def test_references_hold_the_lecture_list():
    from pybtex.database import parse_file

    entries = parse_file(str(ROOT / "references.bib")).entries
    for key, (value, field) in LECTURE_REFERENCES.items():
        assert key in entries, f"references.bib lacks the lecture's reference {key}"
        fields = entries[key].fields
        if field:
            assert fields.get(field) == value, f"{key}: {field} should be {value}, got {fields.get(field)}"
        else:
            assert "doi" not in fields and "url" not in fields, f"{key}: the lecture gives no DOI or URL"
