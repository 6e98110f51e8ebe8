"""Figure text in the theme's dark mode: WCAG contrast of every plotly text against what is behind it.

:func:`open_dark` opens a page the way a reader who chose dark mode sees it: pydata-sphinx-theme keeps
the reader's choice in ``localStorage`` (``mode`` and ``theme``), and with the book's
``default_mode: auto`` it also follows the browser's ``prefers-color-scheme``; both are set, and the
page must end up with ``<html data-theme="dark">``.

:func:`figure_text_contrast` then measures, for every visible SVG ``<text>`` of every plotly figure
(axis titles, tick labels, legend, annotations, slider and button labels, the title):

* its colour: the computed ``fill``, with ``fill-opacity`` and the opacity of its ancestors;
* its background: the figure is screenshotted with all its text hidden, and the colours of the pixels
  inside the text's box are counted. That is the *computed* background whatever drew it: the plot or
  paper rectangle, a legend box, a heatmap cell, or the page itself where the paper is transparent.

:func:`contrast_problems` lists every text whose contrast ratio (WCAG 2) against a colour covering at
least :data:`MIN_SHARE` of its box is below 4.5:1 (AA for normal text).

:func:`figure_font_sizes` measures the size at which every visible text of every figure is drawn (plotly
figures and hand-drawn SVG diagrams with ``role="img"``): the computed ``font-size`` times the scale
from the SVG's user units to the screen (a diagram with a ``viewBox`` shrinks with its column).
:func:`font_size_problems` lists every text drawn below :data:`MIN_FONT_PX` on a 1280 px wide page.
"""
from __future__ import annotations

import base64
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

MIN_RATIO = 4.5
#: The smallest font size (CSS px, page 1280 px wide) for a figure's tick labels and a diagram's text.
MIN_FONT_PX = 11.0
#: A background colour counts when it covers at least this share of the text's box (gridlines do not).
MIN_SHARE = 0.25

RGBA = tuple[float, float, float, float]
RGB = tuple[float, float, float]

_NAMED = {"black": (0, 0, 0), "white": (255, 255, 255), "red": (255, 0, 0), "green": (0, 128, 0),
          "blue": (0, 0, 255), "gray": (128, 128, 128), "grey": (128, 128, 128)}


def parse_color(css: str) -> RGBA | None:
    """``(r, g, b, alpha)`` (0-255 and 0-1) of a CSS colour; None for ``none``/``transparent``/unknown."""
    css = (css or "").strip().lower()
    if css in {"", "none", "transparent"}:
        return None
    m = re.fullmatch(r"rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:\s*[,/]\s*([\d.]+%?))?\s*\)", css)
    if m:
        alpha = m.group(4)
        a = 1.0 if alpha is None else (float(alpha[:-1]) / 100 if alpha.endswith("%") else float(alpha))
        return float(m.group(1)), float(m.group(2)), float(m.group(3)), a
    m = re.fullmatch(r"#([0-9a-f]{3,8})", css)
    if m:
        h = m.group(1)
        if len(h) in (3, 4):
            h = "".join(c * 2 for c in h)
        r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
        a = int(h[6:8], 16) / 255 if len(h) == 8 else 1.0
        return float(r), float(g), float(b), a
    if css in _NAMED:
        return (*map(float, _NAMED[css]), 1.0)
    return None


def composite(fg: RGBA, bg: RGB) -> RGB:
    """``fg`` drawn with its alpha over the opaque ``bg``."""
    a = fg[3]
    return tuple(fg[i] * a + bg[i] * (1 - a) for i in range(3))


def relative_luminance(rgb: RGB) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0-255 channels)."""
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: RGB, b: RGB) -> float:
    """WCAG 2 contrast ratio, from 1 (same) to 21 (black on white)."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


# --- in the browser ---------------------------------------------------------------------------------

DARK_INIT = """
try { localStorage.setItem("mode", "dark"); localStorage.setItem("theme", "dark"); } catch (e) {}
"""

# Every visible text of a figure: content, colour, opacity and box relative to the figure.
TEXTS_JS = r"""
(gd) => {
  const box = gd.getBoundingClientRect();
  const out = [];
  for (const el of gd.querySelectorAll('svg text')) {
    const text = (el.textContent || '').trim();
    if (!text || el.closest('.hoverlayer')) continue;
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) continue;
    let node = el, opacity = 1, hidden = false, filtered = false;
    while (node && node !== gd.parentElement) {
      const s = getComputedStyle(node);
      if (s.display === 'none' || s.visibility === 'hidden') hidden = true;
      opacity *= parseFloat(s.opacity || '1');
      if (s.filter && s.filter !== 'none') filtered = true;
      node = node.parentElement;
    }
    if (hidden || opacity === 0) continue;
    const s = getComputedStyle(el);
    out.push({text: text.slice(0, 80), fill: s.fill, fillOpacity: parseFloat(s.fillOpacity || '1'),
              opacity, filtered, fontSize: s.fontSize,
              x: r.left - box.left, y: r.top - box.top, w: r.width, h: r.height});
  }
  return out;
}
"""

SET_TEXT_VISIBILITY_JS = r"""
(gd, visibility) => { for (const el of gd.querySelectorAll('svg text')) el.style.visibility = visibility; }
"""

# Decode a PNG (the figure without its text) and count the colours inside each box.
BACKGROUNDS_JS = r"""
async ([png, boxes]) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + png;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  return boxes.map(b => {
    const x = Math.max(0, Math.floor(b.x)), y = Math.max(0, Math.floor(b.y));
    const w = Math.min(img.width, Math.ceil(b.x + b.w)) - x, h = Math.min(img.height, Math.ceil(b.y + b.h)) - y;
    if (w <= 0 || h <= 0) return [];
    const px = ctx.getImageData(x, y, w, h).data;
    const counts = new Map();
    for (let i = 0; i < px.length; i += 4) {
      const key = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    const total = px.length / 4;
    return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5)
      .map(([k, n]) => [(k >> 16) & 255, (k >> 8) & 255, k & 255, n / total]);
  });
}
"""


@dataclass
class TextContrast:
    figure: int
    text: str
    color: RGB  # the text's colour composited over its background
    background: RGB
    ratio: float
    filtered: bool = False
    backgrounds: list = field(default_factory=list)  # (r, g, b, share), most common first

    def describe(self) -> str:
        hexa = lambda c: "#" + "".join(f"{round(v):02x}" for v in c)  # noqa: E731
        return (f"figure {self.figure}: text {self.text!r} {hexa(self.color)} on {hexa(self.background)}: "
                f"contrast {self.ratio:.2f}:1")


def text_contrast(figure: int, info: dict, backgrounds: list) -> TextContrast:
    """The worst contrast of one text (``TEXTS_JS`` entry) against its background colours."""
    fg = parse_color(info["fill"]) or (0.0, 0.0, 0.0, 0.0)
    fg = (*fg[:3], fg[3] * info.get("fillOpacity", 1.0) * info.get("opacity", 1.0))
    candidates = [b for b in backgrounds if b[3] >= MIN_SHARE] or backgrounds[:1]
    worst = None
    for r, g, b, _share in candidates:
        bg = (float(r), float(g), float(b))
        color = composite(fg, bg)
        ratio = contrast_ratio(color, bg)
        if worst is None or ratio < worst.ratio:
            worst = TextContrast(figure, info["text"], color, bg, ratio, info.get("filtered", False), backgrounds)
    return worst or TextContrast(figure, info["text"], fg[:3], fg[:3], 1.0, info.get("filtered", False), [])


@contextmanager
def open_dark(browser, url: str, screenshot: Path | None = None, viewport=(1280, 900)):
    """Open ``url`` in the theme's dark mode (requests leaving its host are blocked); yields the page.

    All ``<details>`` are opened and every figure redrawn at its size, so figures in dropdowns count.
    """
    origin = urlparse(url)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, color_scheme="dark",
                                  service_workers="block")
    context.add_init_script(DARK_INIT)

    def route(r):
        target = urlparse(r.request.url)
        if target.scheme in {"http", "https"} and (target.hostname, target.port) != (origin.hostname, origin.port):
            r.abort("blockedbyclient")
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    try:
        page.goto(url, wait_until="load", timeout=60_000)
        page.wait_for_load_state("networkidle", timeout=30_000)
        page.evaluate("""async () => {
            document.querySelectorAll('details').forEach(d => { d.open = true; });
            document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
            if (window.Plotly) {
              for (const gd of document.querySelectorAll('.plotly-graph-div')) {
                try { await Plotly.Plots.resize(gd); } catch (e) {}
              }
            }
        }""")
        page.wait_for_timeout(300)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        yield page
    finally:
        context.close()


def page_theme(page) -> str:
    return page.evaluate("() => document.documentElement.dataset.theme || ''")


def figure_text_contrast(page) -> list[TextContrast]:
    """Contrast of every visible text of every plotly figure on ``page`` (see the module docstring)."""
    results = []
    page.evaluate("document.fonts.ready.then(() => true)")  # late fonts change text widths, so margins
    for index, gd in enumerate(page.query_selector_all(".plotly-graph-div")):
        gd.scroll_into_view_if_needed()
        # A figure can still be resizing to its column (plotly's responsive relayout after scrolling or
        # a late layout change above it): the text boxes measured before the screenshot must be where
        # the texts are in it, so measure again afterwards and retry until the two agree.
        for attempt in range(5):
            texts = gd.evaluate(TEXTS_JS)
            if not texts:
                break
            gd.evaluate(SET_TEXT_VISIBILITY_JS, "hidden")
            try:
                png = gd.screenshot(animations="disabled")
            finally:
                gd.evaluate(SET_TEXT_VISIBILITY_JS, "")
            if gd.evaluate(TEXTS_JS) == texts:
                break
            page.wait_for_timeout(500)
        if not texts:
            continue
        backgrounds = page.evaluate(BACKGROUNDS_JS, [base64.b64encode(png).decode(), texts])
        results += [text_contrast(index, info, bg) for info, bg in zip(texts, backgrounds)]
    return results


# Every visible text of every figure on the page and the size it is drawn at (CSS px).
FONT_SIZES_JS = r"""
() => {
  const figures = [...document.querySelectorAll('.plotly-graph-div, svg[role="img"]')]
    .filter(f => !(f.tagName.toLowerCase() === 'svg' && f.closest('.plotly-graph-div')));
  const out = [];
  figures.forEach((fig, index) => {
    const texts = fig.tagName.toLowerCase() === 'svg' ? fig.querySelectorAll('text') : fig.querySelectorAll('svg text');
    for (const el of texts) {
      const text = (el.textContent || '').trim();
      if (!text || el.closest('.hoverlayer')) continue;
      const r = el.getBoundingClientRect();
      if (r.width < 1 || r.height < 1) continue;
      let node = el, hidden = false;
      while (node && node !== fig.parentElement) {
        const st = getComputedStyle(node);
        if (st.display === 'none' || st.visibility === 'hidden' || parseFloat(st.opacity || '1') === 0) hidden = true;
        node = node.parentElement;
      }
      if (hidden) continue;
      const m = el.getScreenCTM();
      const scale = m ? Math.sqrt(m.a * m.a + m.b * m.b) : 1;
      const px = parseFloat(getComputedStyle(el).fontSize) * scale;
      out.push({figure: index, kind: fig.tagName.toLowerCase() === 'svg' ? 'diagram' : 'plotly',
                text: text.slice(0, 60), px: Math.round(px * 100) / 100});
    }
  });
  return out;
}
"""


def figure_font_sizes(page) -> list[dict]:
    """``{figure, kind, text, px}`` for every visible text of every figure on ``page`` (open details and
    hidden-input toggles first: :func:`open_dark` does)."""
    page.evaluate("document.fonts.ready.then(() => true)")
    return page.evaluate(FONT_SIZES_JS)


def font_size_problems(items: list[dict], minimum: float = MIN_FONT_PX) -> list[str]:
    return [f"{t['kind']} {t['figure']}: text {t['text']!r} drawn at {t['px']:.1f} px (below {minimum:g} px)"
            for t in items if t["px"] < minimum - 0.05]


def contrast_problems(items: list[TextContrast], minimum: float = MIN_RATIO) -> list[str]:
    problems = [t.describe() + f" (below {minimum}:1)" for t in items if t.ratio < minimum]
    problems += [t.describe() + " (a CSS filter changes its colours: contrast unknown)" for t in items if t.filtered]
    return problems
