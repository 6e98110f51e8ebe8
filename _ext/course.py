"""Local Sphinx extension: the book's scripts come from the site itself, never from a CDN.

* plotly.js: ``plotly.min.js`` from the installed ``plotly`` package is copied once into the site's
  ``_static/`` and added to every page that holds a plotly figure (figures are written by lmlab's
  book renderer without plotly.js, see ``lmlab.env``).
* MathJax 3: the files of the installed ``sphinx-mathjax-offline`` package are copied into
  ``_static/mathjax/`` and ``mathjax_path`` points there. (That package's own module name has a hyphen,
  so it cannot be loaded as an extension; we locate its files through its distribution metadata.)

* Chapter pages offer their printed PDF (``pdf/NN-name.pdf``, made after the build by ``tools/pdf.py``)
  in the download menu, in place of the theme's "print this page" entry.

* The live panels (``<div class="lmlab-live" data-panel="...">`` in a chapter): ``live/live-panel.js``
  and ``.css`` are added to the pages that hold one; onnxruntime-web's single-threaded WebAssembly
  build (pinned in ``live/package.json``, installed by ``npm ci --prefix live``) goes to
  ``_static/live/ort/`` and toy-gpt's ONNX export and the grammar's tables (``lmlab.live``, rewritten
  only when lmlab or the weights change) to ``_static/live/``. The page fetches them only when the
  reader starts a panel.

* The sidebar's expand/collapse toggles (a ``<summary>`` holding only a decorative chevron, made by
  pydata-sphinx-theme for an entry with pages under it) get an accessible name (``aria-label``), which
  axe-core requires (rule summary-name).

* Bibliography entries are marked as list items (``role="listitem"``) instead of docutils' deprecated
  ``doc-biblioentry`` role, which accessibility checkers report (tests/test_accessibility.py).

Copies are skipped when the target already holds the same bytes (size and mtime), so incremental
builds stay fast. Nothing is committed to the repository.
"""
from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

PLOTLY_JS = "plotly.min.js"
MATHJAX_DIR = "mathjax"
MATHJAX_ENTRY = "tex-chtml.js"
MATHJAX_DIST = "sphinx-mathjax-offline"
# Markers that a page's body holds a figure written by plotly's HTML renderer.
PLOTLY_MARKERS = ("Plotly.newPlot", "plotly-graph-div")


def plotly_js_source() -> Path:
    """The ``plotly.min.js`` shipped inside the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not path.is_file():
        raise ExtensionError(f"plotly.min.js not found at {path}; reinstall plotly (requirements.txt)")
    return path


def mathjax_source() -> Path:
    """The ``static/mathjax`` folder of the installed ``sphinx-mathjax-offline`` distribution."""
    try:
        dist = metadata.distribution(MATHJAX_DIST)
    except metadata.PackageNotFoundError as err:
        raise ExtensionError(
            f"{MATHJAX_DIST} is not installed; run `pip install -r requirements.txt`"
        ) from err
    for file in dist.files or []:
        if file.name == MATHJAX_ENTRY and file.parent.name == MATHJAX_DIR:
            folder = Path(dist.locate_file(file)).parent
            if folder.is_dir():
                return folder
    raise ExtensionError(f"no {MATHJAX_DIR}/{MATHJAX_ENTRY} among the files of {MATHJAX_DIST}")


def _same(src: Path, dst: Path) -> bool:
    if not dst.is_file():
        return False
    a, b = src.stat(), dst.stat()
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def copy_file(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless it is already there; True when something was copied."""
    if _same(src, dst):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return True


def copy_tree(src: Path, dst: Path) -> int:
    """Copy every file under ``src`` to ``dst`` (skipping unchanged ones); returns how many were copied."""
    copied = 0
    for path in src.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            copied += copy_file(path, dst / path.relative_to(src))
    return copied


ROOT = Path(__file__).resolve().parents[1]
LIVE_SRC = ROOT / "live"
LIVE_JS, LIVE_CSS = "live-panel.js", "live-panel.css"
ORT_DIST = LIVE_SRC / "node_modules" / "onnxruntime-web" / "dist"
# onnxruntime-web's WebAssembly build as a classic script, its loader module and the single wasm binary.
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
LIVE_MARKER = 'class="lmlab-live"'


def _copy_live_assets(static: Path) -> None:
    if not (LIVE_SRC / LIVE_JS).is_file():  # a book without the live/ folder (a test's tiny book) has no panels
        return
    missing = [name for name in ORT_FILES if not (ORT_DIST / name).is_file()]
    if missing:
        raise ExtensionError(f"onnxruntime-web is not installed ({ORT_DIST / missing[0]} missing); run "
                             "`npm ci --prefix live` (make venv does)")
    copied = sum(copy_file(ORT_DIST / name, static / "live" / "ort" / name) for name in ORT_FILES)
    for name in (LIVE_JS, LIVE_CSS):
        copied += copy_file(LIVE_SRC / name, static / name)
    from lmlab import live  # imports torch: only here, once per build

    if live.write_assets(static / "live"):
        logger.info("course: exported toy-gpt (ONNX) and the toy grammar into _static/live/")
    if copied:
        logger.info(f"course: copied {copied} live-panel files into _static/")


def _set_mathjax_path(app: Sphinx, config: Any) -> None:
    # Relative paths are served from the site's _static folder.
    config.mathjax_path = f"{MATHJAX_DIR}/{MATHJAX_ENTRY}"


def _copy_assets(app: Sphinx) -> None:
    # Copied before pages are written, so Sphinx can add its ?v=checksum to the script URLs.
    if app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    if copy_file(plotly_js_source(), static / PLOTLY_JS):
        logger.info(f"course: copied {PLOTLY_JS} into _static/")
    copied = copy_tree(mathjax_source(), static / MATHJAX_DIR)
    if copied:
        logger.info(f"course: copied {copied} MathJax files into _static/{MATHJAX_DIR}/")
    _copy_live_assets(static)


def _add_plotly_js(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    # Only pages that show a figure load plotly.js; every such page loads the same copy.
    body = context.get("body") or ""
    if LIVE_MARKER in body:  # a live panel: its script (deferred) and style; it draws with plotly.js
        app.builder.add_js_file(LIVE_JS, priority=600, defer="defer")
        app.builder.add_css_file(LIVE_CSS)
    if LIVE_MARKER in body or any(marker in body for marker in PLOTLY_MARKERS):
        # Not deferred: the figures' inline scripts call Plotly.newPlot as the page is parsed.
        app.builder.add_js_file(PLOTLY_JS, priority=200)  # this page only, like sphinx.ext.mathjax


def _drop_unused_thebe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    # Jupyter Book always loads sphinx-thebe, which writes a CDN URL (unpkg.com) into every page even
    # when thebe is off. With no thebe button nothing loads it, but a page of this site names no
    # remote script at all: drop the thebe scripts and style unless launch_buttons.thebe is on.
    launch = (app.config.html_theme_options or {}).get("launch_buttons") or {}
    if launch.get("thebe"):
        return
    scripts = context.get("script_files")
    if isinstance(scripts, list):
        scripts[:] = [
            js for js in scripts
            if "thebe" not in str(getattr(js, "filename", "") or "")
            and "THEBE_JS_URL" not in (getattr(js, "attributes", {}) or {}).get("body", "")
        ]
    styles = context.get("css_files")
    if isinstance(styles, list):
        styles[:] = [css for css in styles if "thebe" not in str(getattr(css, "filename", "") or "")]


def _citation_list_roles(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    # docutils writes the bibliography as <div role="list"> whose entries have role="doc-biblioentry".
    # DPUB-ARIA 1.1 deprecated that role because it is not a list item (w3c/dpub-aria#22: "use
    # list/listitem"), so axe-core reports the list as missing its items (aria-required-children,
    # critical). The entries are list items: say so.
    body = context.get("body")
    if isinstance(body, str) and 'role="doc-biblioentry"' in body:
        context["body"] = body.replace('role="doc-biblioentry"', 'role="listitem"')


# The chapters that tools/pdf.py prints: pages under chapters/ (it prints those listed in _toc.yml).
PDF_DIR = "pdf"


def _link_chapter_pdf(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    # sphinx-book-theme's download menu ends with ".pdf", which runs window.print(). A chapter has a
    # printed PDF of its own (tools/pdf.py, after the build): link it there instead. Relative link, so
    # the site works under any path (GitHub Pages serves it under /REPO/).
    if not pagename.startswith("chapters/"):
        return
    for group in context.get("header_buttons") or []:
        if group.get("label") != "download-buttons":
            continue
        buttons = group.setdefault("buttons", [])
        entry = {"type": "link", "url": context["pathto"](f"{PDF_DIR}/{pagename.split('/')[-1]}.pdf", 1),
                 "text": ".pdf", "icon": "fas fa-file-pdf", "tooltip": "Printable PDF of this chapter",
                 "label": "download-pdf-button"}
        buttons[:] = [b for b in buttons if b.get("label") != "download-pdf-button"] + [entry]


TOGGLE_LABEL = "Show or hide the pages under this entry"


def _name_sidebar_toggles(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    # pydata-sphinx-theme puts generate_toctree_html into the context (priority 500); wrap it so each
    # toggle <summary> with no text of its own carries a label for screen readers.
    generate = context.get("generate_toctree_html")
    if generate is None:
        return

    def named(*args: Any, **kwargs: Any) -> Any:
        out = generate(*args, **kwargs)  # a BeautifulSoup tree
        for summary in out.select("summary"):
            if not summary.get_text(strip=True) and not summary.get("aria-label"):
                summary["aria-label"] = TOGGLE_LABEL
        return out

    context["generate_toctree_html"] = named


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _set_mathjax_path)
    app.connect("builder-inited", _copy_assets)
    app.connect("html-page-context", _add_plotly_js)
    app.connect("html-page-context", _drop_unused_thebe, priority=900)
    app.connect("html-page-context", _citation_list_roles)
    app.connect("html-page-context", _name_sidebar_toggles, priority=600)  # after the theme's (500)
    app.connect("html-page-context", _link_chapter_pdf, priority=600)  # after the theme's buttons (501)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
