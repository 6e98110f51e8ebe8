"""The book's figures draw in a real browser, and their sliders and buttons change what is drawn.

Each figure is written into an HTML page that loads a local copy of plotly.min.js (as the book does,
``include_plotlyjs=False``), served from a temporary folder on 127.0.0.1 and opened in Debian's
headless Chromium through Playwright. Requests that leave 127.0.0.1 are blocked; console errors fail
the test. Skips (loudly) without /usr/bin/chromium, unless ``LMLAB_REQUIRE_BROWSER=1``.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import warnings
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

CHROMIUM = os.environ.get("LMLAB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


def _require_browser():
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401 (only checks it is installed)
        except ImportError:
            missing = "playwright is not installed"
    if missing:
        if os.environ.get("LMLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required (LMLAB_REQUIRE_BROWSER=1) but {missing}")
        message = f"SKIPPING BROWSER TESTS: {missing}; the book's figures are NOT checked in a browser"
        warnings.warn(message)
        print(f"\n{'!' * 20} {message} {'!' * 20}")
        pytest.skip(message)


@pytest.fixture(scope="module")
def figure_site(tmp_path_factory):
    """A temporary folder served on 127.0.0.1, with plotly.min.js in it; yields (folder, base URL)."""
    _require_browser()
    import plotly

    root = tmp_path_factory.mktemp("site")
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", root / "plotly.min.js")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def figure_browser(figure_site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def open_page(figure_site, figure_browser):
    """open_page(name, html_body) -> a loaded Playwright page; console errors are collected and checked."""
    root, base = figure_site
    pages = []

    def _open(name: str, body: str):
        (root / name).write_text(
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>lmlab figure test</title>'
            '<link rel="icon" href="data:,"><script src="plotly.min.js"></script></head>'
            f"<body>{body}</body></html>", encoding="utf-8")
        page = figure_browser.new_page(viewport={"width": 1000, "height": 1000})
        errors: list[str] = []
        blocked: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        def route(r):
            host = urlparse(r.request.url).hostname
            if r.request.url.startswith(("data:", "about:")) or host == "127.0.0.1":
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.goto(f"{base}/{name}")
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0 && "
                               "[...document.querySelectorAll('.js-plotly-plot')].every(d => d._fullLayout)")
        page.wait_for_timeout(300)
        pages.append((page, errors, blocked))
        return page

    yield _open
    for page, errors, blocked in pages:
        page.close()
        assert not errors, f"console errors: {errors}"
        assert not blocked, f"the page tried to reach the network: {blocked}"


# --- the figures, from small fixed inputs -----------------------------------------------------------

TOKENS = "the dogs that the boy feeds bark .".split()


def _patterns(layers=2, heads=3, seed=0):
    rng = np.random.default_rng(seed)
    seq = len(TOKENS)
    a = np.tril(rng.random((layers, heads, seq, seq)) ** 3) + np.eye(seq) * 0.05
    return a / a.sum(-1, keepdims=True)


def _logits(seed=1):
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(25)]
    return rng.normal(size=25) * 2.0, vocab


def _heights(page, selector):
    return page.eval_on_selector_all(selector, "els => els.map(e => e.getBoundingClientRect().height)")


def _paths(page, selector):
    return page.eval_on_selector_all(selector, "els => els.map(e => e.getAttribute('d'))")


def _click_slider_step(page, fig_selector: str, step: int):
    """Click the slider rail at the position of step ``step`` (as a reader would)."""
    ticks = page.query_selector_all(f"{fig_selector} .slider-container .slider-label-group")
    assert ticks, "the slider has no step labels"
    label = ticks[step].text_content().strip()
    tick = ticks[step].bounding_box()
    rail = page.query_selector(f"{fig_selector} .slider-container .slider-rail-touch-rect").bounding_box()
    page.mouse.click(tick["x"] + tick["width"] / 2, rail["y"] + rail["height"] / 2)
    page.wait_for_function(
        "([sel, label]) => document.querySelector(sel + ' .slider-container text.slider-label')"
        ".textContent.trim().endsWith(label)", arg=[fig_selector, label], timeout=10000)
    page.wait_for_timeout(300)


def _current_value(page, fig_selector: str) -> str:
    return page.text_content(f"{fig_selector} .slider-container text.slider-label")


def _title(page, fig_selector: str) -> str:
    return page.text_content(f"{fig_selector} .gtitle")


# --- tests ----------------------------------------------------------------------------------------

def test_temperature_slider_reshapes_the_bars(open_page):
    from lmlab import viz

    logits, vocab = _logits()
    fig = viz.temperature_explorer(logits, vocab, temperatures=(0.25, 1.0, 4.0), k=10)
    page = open_page("temperature.html", viz.figure_html(fig, div_id="temp"))
    sel = "#temp"
    assert page.get_attribute(".lmlab-figure", "aria-label") == viz.alt_text(fig)
    before = _heights(page, f"{sel} .trace.bars path")
    assert len(before) == 10 and all(h > 0 for h in before[:3]), before
    assert "temperature 1" in _current_value(page, sel)

    _click_slider_step(page, sel, 0)  # temperature 0.25: the top bar takes almost everything
    cold = _heights(page, f"{sel} .trace.bars path")
    assert "temperature 0.25" in _current_value(page, sel)
    assert cold[0] > before[0] * 1.5 and sum(cold[3:]) < sum(before[3:])
    assert "Temperature 0.25" in _title(page, sel)

    _click_slider_step(page, sel, 2)  # temperature 4: flatter
    hot = _heights(page, f"{sel} .trace.bars path")
    assert hot[0] < before[0] and max(hot) - min(hot) < max(before) - min(before)


def test_head_view_buttons_and_slider_change_the_lines(open_page):
    from lmlab import viz

    fig = viz.head_view(_patterns(), TOKENS, layer=0, head=0)
    page = open_page("head_view.html", viz.figure_html(fig, div_id="hv"))
    sel = "#hv"
    lines = f"{sel} .scatterlayer .trace .js-line"
    texts = page.eval_on_selector_all(f"{sel} .scatterlayer .textpoint text", "els => els.map(e => e.textContent)")
    assert texts.count("the") == 4 and "bark" in texts  # both columns of tokens, duplicates kept
    first = _paths(page, lines)
    assert any(first), "no attention lines drawn"
    assert _title(page, sel) == "Head view: layer 0, head 0"

    _click_slider_step(page, sel, 2)
    head2 = _paths(page, lines)
    assert _title(page, sel) == "Head view: layer 0, head 2"
    assert head2 != first

    buttons = page.query_selector_all(f"{sel} .updatemenu-button")
    assert len(buttons) == 2
    buttons[1].click()
    page.wait_for_function("sel => document.querySelector(sel + ' .gtitle').textContent.includes('layer 1')",
                           arg=sel, timeout=10000)
    page.wait_for_timeout(300)
    layer1 = _paths(page, lines)
    assert _title(page, sel) == "Head view: layer 1, head 0"
    assert layer1 != first and layer1 != head2
    assert "head 0" in _current_value(page, sel)  # the head slider was reset for the new layer

    _click_slider_step(page, sel, 1)
    assert _title(page, sel) == "Head view: layer 1, head 1"
    assert _paths(page, lines) != layer1


def test_every_book_figure_draws_its_traces(open_page):
    from lmlab import viz

    logits, vocab = _logits()
    probs = viz.softmax(logits)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(24, 6))
    words = [f"v{i}" for i in range(24)]
    seq = len(TOKENS)

    def dist(prefix):
        r = np.random.default_rng(len(prefix))
        return dict(zip("a b c d .".split(), r.dirichlet(np.ones(5))))

    figs = {
        "heat": (viz.attention_heatmap(_patterns()[0, 1], TOKENS), ".heatmaplayer image"),
        "grid": (viz.attention_grid(_patterns(), TOKENS), ".heatmaplayer image"),
        "emb": (viz.embedding_scatter(vectors, words, ["a", "b"] * 12), ".scatterlayer .point"),
        "emb3d": (viz.embedding_scatter(vectors, words, ["a", "b"] * 12, dims=3), ".gl-container canvas, svg.main-svg"),
        "nn": (viz.neighbors_bar(viz.nearest_neighbors(vectors, words, "v1", k=4), "v1"), ".trace.bars path"),
        "bars": (viz.next_token_bars(probs, vocab=vocab, true_probs=viz.softmax(logits * 0.8), k=6), ".trace.bars path"),
        "cut": (viz.cutoff_bars(probs, vocab, top_k=4, top_p=0.7), ".trace.bars path"),
        "sampling": (viz.sampling_distribution(logits, vocab, temperature=0.7, top_p=0.8), ".trace.bars path"),
        "beam": (viz.beam_tree(viz.beam_expansions(dist, ["the"], steps=3)), ".scatterlayer .point"),
        "loss": (viz.loss_curves({"a": [3, 2, 1.5, 1.2], "b": [3, 2.5, 2, 1.8]}, entropy_floor=1.0), ".scatterlayer .js-line"),
        "lens": (viz.logit_lens(rng.random((3, seq)), [TOKENS[::-1]] * 3, TOKENS), ".heatmaplayer image"),
        "ablation": (viz.ablation_effect(rng.normal(size=(2, 3)), target="bark"), ".heatmaplayer image"),
    }
    body = "".join(viz.figure_html(fig, div_id=name) for name, (fig, _) in figs.items())
    page = open_page("all.html", body)
    for name, (fig, selector) in figs.items():
        n = page.eval_on_selector_all(f"#{name} {selector.split(',')[0]}", "els => els.length")
        assert n > 0, f"figure {name!r} drew no {selector.split(',')[0]!r}"
        label = page.get_attribute(f"div.lmlab-figure:has(#{name})", "aria-label")
        assert label == viz.alt_text(fig)
    assert page.eval_on_selector_all("#heat .heatmaplayer image", "els => els[0].getAttribute('href').length") > 100
    assert len(page.query_selector_all("#grid .heatmaplayer image")) == 6
    heat_text = page.eval_on_selector_all("#lens .scatterlayer text", "els => els.map(e => e.textContent)")
    assert "bark" in heat_text  # the top tokens are written in the cells (a text layer over the heatmap)


def test_widget_iframe_draws_without_the_page_defining_plotly(figure_site, figure_browser):
    """The widgets' pattern: a full HTML document in an <iframe srcdoc> that loads plotly.js itself."""
    from lmlab import viz, widgets

    root, base = figure_site
    logits, vocab = _logits()
    fig = viz.next_token_bars(viz.softmax(logits), vocab=vocab, k=5)
    frame = widgets.iframe_html(fig, plotlyjs=f"{base}/plotly.min.js")
    (root / "frame.html").write_text(f"<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head>"
                                     f"<body>{frame}</body></html>", encoding="utf-8")
    page = figure_browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{base}/frame.html")
        assert page.evaluate("typeof window.Plotly") == "undefined"
        inner = page.frame_locator("iframe").locator(".trace.bars path")
        inner.first.wait_for(timeout=15000)
        assert inner.count() == 5
        assert page.get_attribute("iframe", "title") == viz.alt_text(fig)
        assert not errors, errors
    finally:
        page.close()
