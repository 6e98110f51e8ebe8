"""Tiny sites for the planted-fault tests, and a local web server.

:func:`theme_page` writes a page with the parts of pydata-sphinx-theme the gates rely on: the article
element (``<article class="bd-article">``), and the dark mode switch (``<html data-theme>``, set from
``localStorage`` the way the theme does, with the theme's dark page colours).
"""
from __future__ import annotations

import functools
import html
import http.server
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

DARK_CSS = """
html[data-theme="light"] body { background: #ffffff; color: #222832; }
html[data-theme="dark"] body { background: #14181e; color: #ced6dd; }
"""
THEME_JS = """
document.documentElement.dataset.mode = localStorage.getItem("mode") || "light";
document.documentElement.dataset.theme = localStorage.getItem("theme") || "light";
"""


def theme_page(body: str, title: str = "Planted", plotly: bool = False, head: str = "") -> str:
    """A whole HTML page around ``body`` (see the module docstring)."""
    script = '<script src="_static/plotly.min.js"></script>' if plotly else ""
    return (f'<!DOCTYPE html>\n<html lang="en" data-theme="light"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><script>{THEME_JS}</script><style>{DARK_CSS}</style>"
            f'{script}{head}</head><body><main id="main-content"><article class="bd-article" role="main">'
            f"<h1>{html.escape(title)}</h1>{body}</article></main></body></html>\n")


def figure_html(fig, alt: str | None = None, include_plotlyjs=False) -> str:
    """A plotly figure's HTML; wrapped like lmlab's renderer when ``alt`` is given."""
    body = fig.to_html(include_plotlyjs=include_plotlyjs, full_html=False)
    if alt is None:
        return body
    return f'<div class="lmlab-figure" role="figure" aria-label="{html.escape(alt, quote=True)}">{body}</div>'


def write_site(folder: Path, pages: dict[str, str]) -> Path:
    """Write ``{relative path: html}`` into ``folder``, with plotly.min.js in ``_static/``."""
    import plotly

    folder = Path(folder)
    for name, text in pages.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    static = folder / "_static"
    static.mkdir(exist_ok=True)
    shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static / "plotly.min.js")
    return folder


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 (a free port); yields the base URL ending in ``/``."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
