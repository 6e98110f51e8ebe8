"""Every built page in a real headless Chromium, with every request that would leave the site blocked.

A page fails on: a request that tried to leave 127.0.0.1 (recorded and aborted), a failed or 4xx/5xx
request, a JavaScript error (console error or uncaught exception), a plotly figure without drawn traces
(points, bars, lines, heatmap cells: not just the empty `.main-svg` frame), or math that MathJax did not
render. A full-page screenshot of each page is saved under tests/artifacts/screenshots/.
Without Chromium these tests skip loudly (conftest.py), unless LMLAB_REQUIRE_BROWSER=1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

import nbtools
from conftest import BookBuild

# Pages to open: the toc's, plus Sphinx's own. (test_every_built_page_is_visited checks none is missed;
# index.html only redirects to the root page: test_index_redirects_to_the_intro.)
PAGES = nbtools.toc_docnames() + ["genindex", "search"]

# Drawn marks of a plotly figure, per trace type. A figure's empty frame (.main-svg, axes, grid) has none.
DRAWN_MARKS_JS = r"""
(gd) => {
  const svgMarks = gd.querySelectorAll([
    '.scatterlayer .trace .points path',      // scatter markers
    '.scatterlayer .trace path.js-line',      // lines
    '.scatterlayer .trace path.js-fill',      // filled areas
    '.scatterlayer .trace .text text',        // text-only scatter
    '.barlayer .trace .point path',           // bars
    '.boxlayer .trace path', '.violinlayer .trace path',
    '.heatmaplayer image', '.imagelayer image', '.contourlayer path',
    '.pielayer .slice path', '.funnellayer .point path', '.waterfalllayer .point path',
    '.table .cell-text',                      // table cells with text
  ].join(','));
  let marks = 0;
  for (const m of svgMarks) {
    if (m.tagName.toLowerCase() === 'image') {
      if ((m.getAttribute('href') || m.getAttribute('xlink:href') || '').length > 30) marks++;
    } else if (m.tagName.toLowerCase() === 'text') {
      if ((m.textContent || '').trim()) marks++;
    } else {
      const d = m.getAttribute('d') || '';
      if (d.length > 4 && !/^M0,0Z?$/.test(d)) marks++;
    }
  }
  // WebGL traces (scattergl, 3-D): count canvas pixels that differ from the first one.
  let glPixels = 0;
  for (const c of gd.querySelectorAll('canvas')) {
    if (!c.width || !c.height) continue;
    const probe = document.createElement('canvas');
    probe.width = c.width; probe.height = c.height;
    const ctx = probe.getContext('2d');
    try { ctx.drawImage(c, 0, 0); } catch (e) { continue; }
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 4; i < px.length; i += 4 * 7) {
      if (px[i + 3] && (px[i] !== px[0] || px[i + 1] !== px[1] || px[i + 2] !== px[2])) glPixels++;
    }
  }
  return {marks, glPixels, traces: (gd.data || []).length, hasFrame: !!gd.querySelector('.main-svg')};
}
"""

MATH_JS = r"""
async () => {
  const math = document.querySelectorAll('.math');
  if (!math.length) return {math: 0, rendered: 0, errors: 0, mathjax: !!window.MathJax};
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  let rendered = 0;
  for (const m of math) if (m.querySelector('mjx-container')) rendered++;
  return {math: math.length, rendered, errors: document.querySelectorAll('mjx-merror').length,
          mathjax: !!window.MathJax};
}
"""


@dataclass
class PageVisit:
    url: str
    left_site: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    js_errors: list[str] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)
    math: dict = field(default_factory=dict)


def visit(browser, url: str, screenshot: Path) -> PageVisit:
    """Open ``url`` with non-local requests blocked; collect problems, figures and math; screenshot."""
    result = PageVisit(url)
    origin = urlparse(url)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")

    def route(r):
        target = urlparse(r.request.url)
        if target.scheme in {"http", "https", "ws", "wss"} and (target.hostname, target.port) != (
                origin.hostname, origin.port):
            result.left_site.append(r.request.url)
            r.abort("blockedbyclient")
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and result.js_errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: result.js_errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: result.failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and result.failed.append(f"{r.url} (HTTP {r.status})"))
    try:
        page.goto(url, wait_until="load", timeout=60_000)
        page.wait_for_load_state("networkidle", timeout=30_000)
        # MathJax is deferred: wait until it has started (pages with math) before asking what it drew.
        page.wait_for_function(
            "() => !document.querySelector('.math') || (window.MathJax && MathJax.startup && MathJax.startup.promise)",
            timeout=30_000)
        result.math = page.evaluate(MATH_JS)
        for gd in page.query_selector_all(".plotly-graph-div"):
            gd.scroll_into_view_if_needed()
            result.figures.append(measure_figure(page, gd))
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
    # Blocked requests also show up as failed ones; report them once, as leaving the site.
    result.failed = [f for f in result.failed if not any(f.startswith(u) for u in result.left_site)]
    if result.left_site:
        result.js_errors = [e for e in result.js_errors if "ERR_BLOCKED_BY_CLIENT" not in e]
    return result


# WebGL canvases (3-D scenes) are cleared after compositing, so reading them back from the page gives a
# blank: count instead the pixels of a screenshot of the figure, its SVG layers hidden, inside its canvases.
SCREEN_PIXELS_JS = r"""
async ([png, rects]) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + png;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.width; c.height = img.height;
  const ctx = c.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(img, 0, 0);
  let n = 0;
  for (const [x, y, w, h] of rects) {
    if (w < 1 || h < 1) continue;
    const d = ctx.getImageData(x, y, w, h).data;
    for (let i = 4; i < d.length; i += 4 * 7) {
      if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) n++;
    }
  }
  return n;
}
"""

CANVAS_RECTS_JS = r"""
(gd) => {
  const box = gd.getBoundingClientRect();
  return [...gd.querySelectorAll('canvas')].filter(c => c.width && c.height).map(c => {
    const r = c.getBoundingClientRect();
    return [Math.max(0, Math.round(r.left - box.left)), Math.max(0, Math.round(r.top - box.top)),
            Math.round(Math.min(r.width, box.width)), Math.round(Math.min(r.height, box.height))];
  });
}
"""


def measure_figure(page, gd) -> dict:
    """What one plotly figure drew (:data:`DRAWN_MARKS_JS`); for a figure that drew no SVG marks but has
    canvases (WebGL), ``glPixels`` is counted on a screenshot of the figure with its SVG layers hidden."""
    import base64

    fig = gd.evaluate(DRAWN_MARKS_JS)
    if fig["marks"] == 0 and fig["glPixels"] <= 50:
        rects = gd.evaluate(CANVAS_RECTS_JS)
        if rects:
            gd.evaluate("gd => gd.querySelectorAll('.main-svg').forEach(s => s.style.visibility = 'hidden')")
            try:
                png = base64.b64encode(gd.screenshot()).decode()
            finally:
                gd.evaluate("gd => gd.querySelectorAll('.main-svg').forEach(s => s.style.visibility = '')")
            fig["glPixels"] = page.evaluate(SCREEN_PIXELS_JS, [png, rects])
    return fig


def figure_drawn(fig: dict) -> bool:
    return fig["marks"] > 0 or fig["glPixels"] > 50


@pytest.mark.parametrize("docname", PAGES)
def test_page_in_chromium(book: BookBuild, site: str, chromium, artifacts: Path, docname: str):
    if not book.page(docname).is_file():
        pytest.fail(f"{docname}.html was not built")
    shot = artifacts / "screenshots" / f"{docname.replace('/', '__')}.png"
    v = visit(chromium, f"{site}{docname}.html", shot)
    problems = []
    if v.left_site:
        problems.append(f"requests that tried to leave the site (blocked): {v.left_site}")
    if v.failed:
        problems.append(f"failed requests: {v.failed}")
    if v.js_errors:
        problems.append(f"JavaScript errors: {v.js_errors}")
    blank = [i for i, f in enumerate(v.figures) if not figure_drawn(f)]
    if blank:
        problems.append(f"plotly figures without drawn traces: {[v.figures[i] for i in blank]}")
    n_divs = book.page(docname).read_text(encoding="utf-8").count('class="plotly-graph-div"')
    if len(v.figures) != n_divs:
        problems.append(f"{n_divs} figure divs in the HTML but {len(v.figures)} in the page")
    if v.math.get("math") and (v.math["rendered"] != v.math["math"] or v.math["errors"]):
        problems.append(f"math not rendered by MathJax: {v.math}")
    assert not problems, f"{docname} (screenshot {shot}):\n  " + "\n  ".join(problems)


def test_every_built_page_is_visited(book: BookBuild):
    built = {p.relative_to(book.html_dir).with_suffix("").as_posix() for p in book.pages()}
    opened = set(PAGES) | {"index"}
    assert built <= opened, f"built pages the browser test does not open: {sorted(built - opened)}"


def test_index_redirects_to_the_intro(site: str, chromium):
    context = chromium.new_context()
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(site) else r.abort())
    page = context.new_page()
    try:
        page.goto(f"{site}index.html")
        page.wait_for_url(f"{site}{nbtools.toc_docnames()[0]}.html", timeout=15_000)
    finally:
        context.close()


def test_intro_figure_draws_in_chromium(book: BookBuild, site: str, chromium, artifacts: Path):
    """The intro shows at least one interactive plotly figure drawn by lmlab, and its math renders."""
    v = visit(chromium, f"{site}intro.html", artifacts / "screenshots" / "intro-check.png")
    assert v.figures, "no plotly figure on the intro page"
    assert all(figure_drawn(f) and f["traces"] >= 1 for f in v.figures), v.figures
    assert v.math.get("math", 0) >= 1 and v.math["rendered"] == v.math["math"], v.math
    assert not v.left_site and not v.failed and not v.js_errors, v


def test_the_harness_catches_a_blank_figure_and_a_remote_request(tmp_path: Path, chromium, book: BookBuild):
    """The checks can fail: a page with an empty figure, a remote script and a JS error is flagged."""
    import functools
    import http.server
    import shutil
    import threading

    shutil.copy2(book.html_dir / "_static" / "plotly.min.js", tmp_path / "plotly.min.js")
    (tmp_path / "bad.html").write_text(
        "<html><head><script src='plotly.min.js'></script>"
        "<script src='https://cdn.example.org/x.js'></script></head><body>"
        "<div id='f' class='plotly-graph-div' style='height:300px;width:400px'></div>"
        "<script>Plotly.newPlot('f', [], {}); undefinedFunction();</script></body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        v = visit(chromium, f"http://127.0.0.1:{server.server_address[1]}/bad.html", tmp_path / "bad.png")
    finally:
        server.shutdown()
        server.server_close()
    assert v.left_site == ["https://cdn.example.org/x.js"]
    assert any("undefinedFunction" in e for e in v.js_errors), v.js_errors
    assert len(v.figures) == 1 and v.figures[0]["hasFrame"] and not figure_drawn(v.figures[0]), v.figures


def test_temperature_explorer_works_in_the_built_chapter(book: BookBuild, site: str, chromium, artifacts: Path):
    """Chapter 4's temperature explorer (the static figure the book shows in place of the live widget):
    moving its slider in the built page reshapes the bars, colder sharper and hotter flatter."""
    from test_viz_browser import _click_slider_step, _current_value, _heights

    docname = "chapters/04-generation"
    if not book.page(docname).is_file():
        pytest.fail(f"{docname}.html was not built")
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    page = context.new_page()
    try:
        page.goto(f"{site}{docname}.html", wait_until="load", timeout=60_000)
        page.wait_for_load_state("networkidle", timeout=30_000)
        ids = page.eval_on_selector_all(
            ".plotly-graph-div", "els => els.filter(d => d.layout && d.layout.sliders && d.layout.sliders.length"
            " && /temperature/i.test(JSON.stringify(d.layout.sliders[0].currentvalue || {}) +"
            " JSON.stringify((d.layout.title || {}).text || ''))).map(d => d.id)")
        assert len(ids) == 1, f"expected one temperature explorer in {docname}, found {ids}"
        sel = f"[id='{ids[0]}']"
        page.eval_on_selector(sel, "d => d.scrollIntoView()")
        page.wait_for_timeout(300)
        bars = f"{sel} .trace.bars path"
        before = _heights(page, bars)
        n_steps = len(page.query_selector_all(f"{sel} .slider-container .slider-label-group"))
        assert n_steps >= 3 and len(before) >= 5, (n_steps, before)
        _click_slider_step(page, sel, 0)  # the coldest temperature
        cold = _heights(page, bars)
        cold_label = _current_value(page, sel)
        _click_slider_step(page, sel, n_steps - 1)  # the hottest
        hot = _heights(page, bars)
        page.screenshot(path=str(artifacts / "screenshots" / "temperature-explorer.png"))
    finally:
        context.close()
    assert cold != before and hot != cold, "moving the slider did not change the bars"
    assert cold[0] >= max(before[0], hot[0]) and max(hot) - min(hot) < max(cold) - min(cold), (before, cold, hot)
    assert "0.25" in cold_label, cold_label
