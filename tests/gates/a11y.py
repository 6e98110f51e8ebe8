"""Accessibility of the article content: axe-core, and a text alternative for every figure.

* :func:`run_axe` injects the axe-core bundled with ``axe-playwright-python`` (``axe.min.js``, read
  from the package: nothing is fetched) into a page and runs it on the article
  (:data:`ARTICLE`, pydata-sphinx-theme's ``<article class="bd-article">``). :func:`axe_problems`
  keeps the *serious* and *critical* violations, except rules in :data:`AXE_ALLOWLIST`, each of which
  names the upstream theme issue it comes from.
* :func:`figures_without_alternative` finds figures with no text alternative: a plotly figure needs an
  ancestor with ``role="figure"`` (or ``img``) and an ``aria-label``/``aria-labelledby``, or a
  ``<figure>`` with a ``<figcaption>`` (lmlab's renderer writes ``<div class="lmlab-figure"
  role="figure" aria-label="...">`` from ``layout.meta.alt``); an ``<img>`` needs a non-empty ``alt``
  (or ARIA label, or a figure caption); an inline ``<svg>`` needs ``role="img"`` and a label or
  ``<title>``, or a caption, unless it is hidden from assistive technology or sits in a labelled
  control (an icon).
"""
from __future__ import annotations

from dataclasses import dataclass

ARTICLE = "article.bd-article"
FAILING_IMPACTS = {"serious", "critical"}

#: axe rule id -> the upstream issue of the theme it comes from. Empty: every rule applies.
AXE_ALLOWLIST: dict[str, str] = {}


def axe_script() -> str:
    """axe-core as bundled with axe-playwright-python (``axe.min.js``); raises if it is missing."""
    from axe_playwright_python.base import AXE_SCRIPT

    return AXE_SCRIPT


def axe_version() -> str:
    import re

    m = re.search(r"axe v([\d.]+)", axe_script()[:300])
    return m.group(1) if m else "?"


@dataclass
class AxeViolation:
    rule: str
    impact: str
    help: str
    nodes: list[str]  # CSS targets of the failing elements (the first few)
    url: str

    def describe(self) -> str:
        return f"{self.rule} ({self.impact}): {self.help} — {len(self.nodes)} element(s): {self.nodes[:5]} ({self.url})"


def run_axe(page, context: str = ARTICLE) -> list[AxeViolation]:
    """Run axe-core on ``context`` of an open Playwright page; every violation, any impact."""
    page.evaluate(axe_script())
    response = page.evaluate(
        "([context, options]) => axe.run(document.querySelector(context) ? context : document, options)",
        [context, {"resultTypes": ["violations"]}])
    found = []
    for v in response["violations"]:
        targets = [" ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])]
        found.append(AxeViolation(v["id"], v.get("impact") or "", v.get("help", ""), targets, v.get("helpUrl", "")))
    return found


def axe_problems(violations: list[AxeViolation], allowlist: dict[str, str] | None = None) -> list[str]:
    """Serious and critical violations that are not allowlisted."""
    allow = AXE_ALLOWLIST if allowlist is None else allowlist
    return [v.describe() for v in violations if v.impact in FAILING_IMPACTS and v.rule not in allow]


FIGURES_JS = r"""
(scope) => {
  const root = document.querySelector(scope) || document.body;
  const label = (el) => {
    if (!el) return '';
    const direct = (el.getAttribute('aria-label') || '').trim();
    if (direct) return direct;
    const ids = (el.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean);
    return ids.map(id => (document.getElementById(id) || {}).textContent || '').join(' ').trim();
  };
  const caption = (el) => {
    const fig = el.closest('figure');
    const cap = fig && fig.querySelector('figcaption');
    return cap ? cap.textContent.trim() : '';
  };
  const describe = (el) => {
    const id = el.id ? '#' + el.id : '';
    const cls = (el.getAttribute('class') || '').split(/\s+/).filter(Boolean).slice(0, 2).map(c => '.' + c).join('');
    const src = el.getAttribute('src') ? ` src=${el.getAttribute('src').slice(0, 60)}` : '';
    return `<${el.tagName.toLowerCase()}${id}${cls}${src}>`;
  };
  const out = [];
  for (const gd of root.querySelectorAll('.plotly-graph-div')) {
    let node = gd, ok = false, how = '';
    while (node && node !== root.parentElement) {
      const role = (node.getAttribute && node.getAttribute('role')) || '';
      if ((role === 'figure' || role === 'img') && label(node)) { ok = true; how = 'aria-label'; break; }
      node = node.parentElement;
    }
    if (!ok && caption(gd)) { ok = true; how = 'figcaption'; }
    out.push({kind: 'plotly', element: describe(gd), ok, how});
  }
  for (const img of root.querySelectorAll('img')) {
    if (img.closest('.plotly-graph-div')) continue;
    const alt = (img.getAttribute('alt') || '').trim();
    const ok = !!(alt || label(img) || caption(img)) || img.getAttribute('aria-hidden') === 'true';
    out.push({kind: 'img', element: describe(img), ok, how: alt ? 'alt' : (label(img) ? 'aria' : 'figcaption')});
  }
  for (const svg of root.querySelectorAll('svg')) {
    if (svg.closest('.plotly-graph-div') || svg.closest('mjx-container')) continue;
    if (svg.closest('[aria-hidden="true"]')) continue;
    const control = svg.closest('button, a, [role="button"]');
    if (control && (label(control) || control.textContent.trim() || control.getAttribute('title'))) continue;
    const title = svg.querySelector(':scope > title');
    const ok = !!(label(svg) || (title && title.textContent.trim()) || caption(svg));
    out.push({kind: 'svg', element: describe(svg), ok, how: ok ? 'label' : ''});
  }
  return out;
}
"""


def figures(page, scope: str = ARTICLE) -> list[dict]:
    """Every figure in ``scope``: ``{kind, element, ok, how}``."""
    return page.evaluate(FIGURES_JS, scope)


def figures_without_alternative(page, scope: str = ARTICLE) -> list[str]:
    return [f"{f['kind']} {f['element']} has no text alternative or caption" for f in figures(page, scope) if not f["ok"]]
