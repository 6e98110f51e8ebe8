"""Plotly figures for the course: attention, embeddings, distributions, training, inside the model.

Every function takes plain inputs (NumPy arrays or torch tensors, token lists, ``dict[str, float]``
distributions, lists of losses) and returns a ``plotly.graph_objects.Figure`` drawn with the house
template ``"lmlab"`` (made plotly's default when this module is imported).

Conventions shared by every figure

* **Palette**: Okabe-Ito colours for categories (safe for the common colour-vision deficiencies),
  *viridis* for sequential heatmaps, a red-blue scale centred on zero for signed values. Categories
  also differ by marker symbol or dash where it helps.
* **Background**: a white plot area with dark text, drawn by plotly itself, so a figure reads the same
  as a white card in the book's light *and* dark themes (``html[data-theme=dark]``) and on Colab.
* **Size**: 720 px wide by default (the book's column and Colab's output area).
* **Hover**: every mark names its token(s) and its value.
* **Text alternative**: every figure carries a short description in ``fig.layout.meta["alt"]``;
  read it with :func:`alt_text`. :func:`figure_html` wraps a figure's HTML in
  ``<div role="figure" aria-label="...">`` so screen readers announce it; renderers (the book's, or
  :func:`show`) should use it.
* **Static HTML**: figures with controls (the temperature explorer, the head view) carry all their
  data and switch with plotly sliders and buttons, so they keep working in the static book where no
  Python runs.

Tokens on axes are drawn at integer positions with the tokens as tick labels, so a sentence that uses
the same word twice keeps both columns.

Live ipywidgets front-ends (:func:`sampling_explorer`, :func:`attention_explorer`) live in
:mod:`lmlab.widgets` and are re-exported here.
"""
from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.basedatatypes import BaseFigure
from plotly.subplots import make_subplots

from . import checks, env

__all__ = [
    "TEMPLATE", "OKABE_ITO", "COLORWAY", "SEQUENTIAL", "DIVERGING", "WIDTH",
    "alt_text", "set_alt", "figure_html", "show", "use_template",
    "attention_heatmap", "attention_grid", "head_view", "stack_attention", "model_attention",
    "project", "embedding_scatter", "cosine_similarities", "nearest_neighbors", "neighbors_bar",
    "softmax", "next_token_bars", "temperature_explorer", "cutoff_bars", "top_k_keep", "top_p_keep",
    "sampling_probs", "sampling_distribution",
    "beam_expansions", "beam_tree", "loss_curves", "logit_lens", "logit_lens_data", "ablation_effect",
    "head_ablation_effects", "sampling_explorer", "attention_explorer",
]

# --- the house template --------------------------------------------------------------------------

TEMPLATE = "lmlab"
WIDTH = 680  # the book column is about 690 px wide at a 1280 px window
HEIGHT = 440

#: Okabe & Ito's colour-blind-safe palette.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}
#: Category colours in order of use (yellow last: it is faint on white).
COLORWAY = [OKABE_ITO[c] for c in
            ("blue", "orange", "bluish_green", "vermillion", "reddish_purple", "sky_blue", "black", "yellow")]
SEQUENTIAL = "Viridis"
DIVERGING = "RdBu"
CUT_GREY = "#B8B8B8"
TEXT = "#1f2328"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "triangle-down", "star", "x"]


def _build_template() -> go.layout.Template:
    axis = dict(gridcolor="#e6e8eb", linecolor="#6b7280", zeroline=False, zerolinecolor="#a0a7b1", ticks="outside",
                tickcolor="#6b7280", automargin=True, title=dict(standoff=10), showline=True)
    template = go.layout.Template(pio.templates["plotly_white"])
    template.layout.update(
        colorway=COLORWAY,
        font=dict(family=FONT, size=14, color=TEXT),
        paper_bgcolor="#ffffff", plot_bgcolor="#ffffff",
        # no fixed width: figures fill the book's column (and Colab's cell) and resize with it
        autosize=True, height=HEIGHT, margin=dict(l=70, r=30, t=70, b=60),
        title=dict(x=0.02, xanchor="left", font=dict(size=17)),
        xaxis=axis, yaxis=axis,
        colorscale=dict(sequential=SEQUENTIAL, sequentialminus=SEQUENTIAL, diverging=DIVERGING),
        hoverlabel=dict(bgcolor="#ffffff", bordercolor="#6b7280", font=dict(family=FONT, size=13, color=TEXT)),
        legend=dict(bgcolor="rgba(255,255,255,0.85)", bordercolor="#d0d4da", borderwidth=1),
    )
    template.data.heatmap = [go.Heatmap(colorscale=SEQUENTIAL)]
    return template


pio.templates[TEMPLATE] = _build_template()


def use_template() -> None:
    """Make ``"lmlab"`` plotly's default template (done on import; call again if something reset it)."""
    pio.templates.default = TEMPLATE


use_template()


# --- text alternatives and HTML ------------------------------------------------------------------

def set_alt(fig: go.Figure, text: str) -> go.Figure:
    """Attach a text alternative to ``fig`` (stored in ``fig.layout.meta["alt"]``); returns ``fig``."""
    if not isinstance(fig, go.Figure):
        raise TypeError(f"fig must be a plotly go.Figure, got {type(fig).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"alt text must be a non-empty string, got {text!r}")
    meta = fig.layout.meta
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    meta["alt"] = text.strip()
    fig.update_layout(meta=meta)
    _readable_log_ticks(fig)
    return fig


#: The smallest font size (px) of any text lmlab draws in a figure: tick labels included.
MIN_FONT = 11
#: Plotly draws the in-between labels of a log axis (2, 5 between powers of ten) at 3/4 of the tick font.
_LOG_TICK_FONT = 15


def _readable_log_ticks(fig: go.Figure) -> None:
    """Log axes with plotly's automatic ticks label the digits between powers of ten at 3/4 of the tick
    font: raise their tick font so that those labels are at least :data:`MIN_FONT` px."""
    for name in [k for k in fig.layout.to_plotly_json() if re.fullmatch(r"[xy]axis\d*", k)]:
        axis = fig.layout[name]
        if axis.type == "log" and axis.dtick is None and axis.tickvals is None:
            size = axis.tickfont.size
            if size is None or size * 0.75 < MIN_FONT:
                axis.tickfont.size = max(size or 0, _LOG_TICK_FONT)


def alt_text(fig: go.Figure) -> str:
    """The text alternative of a figure made by :mod:`lmlab.viz` (or given one with :func:`set_alt`)."""
    if not isinstance(fig, BaseFigure):
        raise TypeError(f"fig must be a plotly figure, got {type(fig).__name__}")
    meta = fig.layout.meta
    if isinstance(meta, Mapping) and isinstance(meta.get("alt"), str) and meta["alt"]:
        return meta["alt"]
    raise ValueError("this figure has no text alternative: add one with lmlab.viz.set_alt(fig, '...')")


def figure_html(fig: go.Figure, include_plotlyjs: bool | str = False, full_html: bool = False,
                div_id: str | None = None) -> str:
    """HTML for ``fig`` wrapped in ``<div class="lmlab-figure" role="figure" aria-label=ALT>``.

    ``include_plotlyjs`` is passed to ``fig.to_html`` (``False``: the page loads plotly.js itself, as
    the book does; ``"cdn"``; ``True``: inline, ~5 MB). With ``full_html=True`` a complete document is
    returned (used by the widgets, which show each figure in its own ``<iframe>``).
    """
    body = fig.to_html(include_plotlyjs=include_plotlyjs, full_html=False, div_id=div_id, auto_play=False,
                       config={"displaylogo": False, "responsive": True})
    try:
        label = alt_text(fig)
    except ValueError:
        label = "A plotly figure"
    wrapped = (f'<div class="lmlab-figure" role="figure" aria-label="{html.escape(label, quote=True)}">'
               f"{body}</div>")
    if not full_html:
        return wrapped
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<style>body{margin:0;background:#fff}</style></head>'
            f"<body>{wrapped}</body></html>")


def show(fig: go.Figure) -> None:
    """Display ``fig``: in book builds as accessible HTML (plotly.js comes from the site), else ``fig.show()``."""
    from .env import in_book_build

    if in_book_build():
        from IPython.display import HTML, display

        display(HTML(figure_html(fig)))
    else:
        fig.show()


# --- small helpers --------------------------------------------------------------------------------

def _array(x: Any, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """A float NumPy copy of ``x`` (array, tensor or nested list), checked for shape and finiteness."""
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").float().cpu().numpy()
    try:
        arr = np.array(x, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array or tensor of numbers, got {type(x).__name__}") from err
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if dims is not None and arr.ndim not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _tokens(tokens: Any, name: str = "tokens", length: int | None = None) -> list[str]:
    if isinstance(tokens, str):
        raise TypeError(f"{name} must be a list of token strings, got one string {tokens!r}: split it first")
    try:
        out = [str(t) for t in tokens]
    except TypeError as err:
        raise TypeError(f"{name} must be a list of token strings, got {type(tokens).__name__}") from err
    if length is not None and len(out) != length:
        raise ValueError(f"{name} has {len(out)} entries but the data has {length} positions")
    return out


def _label(token: str) -> str:
    """A token as drawn on an axis: spaces and newlines made visible."""
    return token.replace("\n", "⏎").replace(" ", "␣") if token.strip() != token or token == "" else token


def _token_axis(tokens: Sequence[str], **extra) -> dict:
    n = len(tokens)
    return dict(tickmode="array", tickvals=list(range(n)), ticktext=[_label(t) for t in tokens],
                range=[-0.5, n - 0.5], showgrid=False, **extra)


def _finish(fig: go.Figure, alt: str, title: str | None = None, **layout) -> go.Figure:
    if title is not None:
        layout["title"] = dict(text=title)
    fig.update_layout(template=TEMPLATE, **layout)
    return set_alt(fig, alt)


def _short_list(items: Sequence[str], n: int = 5) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax of ``logits / temperature`` along the last axis (NumPy)."""
    temperature = checks.check_real(temperature, "temperature", 0, low_open=True)
    z = _array(logits, "logits")
    if z.size == 0:
        raise ValueError("logits is empty: pass at least one logit")
    z = (z - z.max(axis=-1, keepdims=True)) / temperature  # shift first: no overflow at small temperatures
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _distribution(probs: Any, vocab: Sequence[str] | None, name: str = "probs") -> tuple[list[str], np.ndarray]:
    """(tokens, values) from a ``dict[str, float]`` or from an array plus its vocabulary."""
    if isinstance(probs, Mapping):
        tokens = [str(t) for t in probs]
        values = _array(list(probs.values()), name, 1)
    else:
        values = _array(probs, name, 1)
        if vocab is None:
            raise ValueError(f"{name} is an array: pass vocab=[...] with one token per entry")
        tokens = _tokens(vocab, "vocab", len(values))
    if len(values) == 0:
        raise ValueError(f"{name} is empty")
    return tokens, values


def _check_probs(values: np.ndarray, name: str) -> None:
    if np.any(values < 0) or np.any(values > 1 + 1e-6):
        raise ValueError(f"{name} must be probabilities in [0, 1], got values from {values.min():.3g} "
                         f"to {values.max():.3g} (pass logits to temperature_explorer instead)")


# --- attention ------------------------------------------------------------------------------------

def stack_attention(cache: Mapping[str, Any], batch: int = 0) -> np.ndarray:
    """Attention patterns of every layer from a ``run_with_cache`` cache, as ``(layers, heads, seq, seq)``.

    Reads ``blocks.{l}.attn.pattern`` (each ``(batch, heads, seq, seq)``) for ``l = 0, 1, ...``.
    """
    if not isinstance(cache, Mapping):
        raise TypeError(f"cache must be a mapping of names to tensors, got {type(cache).__name__}")
    layers = []
    while f"blocks.{len(layers)}.attn.pattern" in cache:
        pattern = _array(cache[f"blocks.{len(layers)}.attn.pattern"], "attention pattern", 4)
        if not 0 <= batch < pattern.shape[0]:
            raise ValueError(f"batch index {batch} out of range for a batch of {pattern.shape[0]}")
        layers.append(pattern[batch])
    if not layers:
        raise ValueError("cache has no 'blocks.0.attn.pattern': pass the cache from model.run_with_cache(idx)")
    return np.stack(layers)


def _patterns(patterns: Any, batch: int = 0) -> np.ndarray:
    if isinstance(patterns, Mapping):
        return stack_attention(patterns, batch)
    arr = _array(patterns, "patterns", (3, 4))
    if arr.ndim == 3:  # (heads, seq, seq): one layer
        arr = arr[None]
    if arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"patterns must end in (seq, seq), got shape {tuple(arr.shape)}")
    return arr


def model_attention(model: Any, idx: Any) -> np.ndarray:
    """Run ``model.run_with_cache`` on one sequence and return its patterns ``(layers, heads, seq, seq)``.

    ``idx`` is a list of token ids or a LongTensor ``(seq,)`` or ``(1, seq)``.
    """
    import torch

    ids = torch.as_tensor(idx, dtype=torch.long)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.shape[0] != 1:
        raise ValueError(f"idx must be one sequence of token ids, got shape {tuple(ids.shape)}")
    was_training = getattr(model, "training", False)
    model.eval()
    with torch.no_grad():
        _, cache = model.run_with_cache(env.to_model_device(model, ids))
    if was_training:
        model.train()
    return stack_attention(cache)


def attention_heatmap(pattern: Any, tokens: Sequence[str], *, query_tokens: Sequence[str] | None = None,
                      title: str | None = None, layer: int | None = None, head: int | None = None) -> go.Figure:
    """One head's attention as a heatmap: row = query (the token attending), column = key.

    ``pattern`` is ``(seq_q, seq_k)`` with rows summing to 1; ``tokens`` names the keys (and the queries
    unless ``query_tokens`` is given).
    """
    z = _array(pattern, "pattern", 2)
    keys = _tokens(tokens, "tokens", z.shape[1])
    queries = _tokens(query_tokens, "query_tokens", z.shape[0]) if query_tokens is not None else keys
    if query_tokens is None and z.shape[0] != z.shape[1]:
        raise ValueError(f"pattern is {z.shape[0]}x{z.shape[1]}: pass query_tokens for the rows")
    which = " ".join(p for p in (f"layer {layer}" if layer is not None else "",
                                 f"head {head}" if head is not None else "") if p)
    title = title if title is not None else f"Attention{' in ' + which if which else ''}"
    custom = np.dstack(np.broadcast_arrays(np.array(queries, dtype=object)[:, None],
                                           np.array(keys, dtype=object)[None, :]))
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(z.shape[1])), y=list(range(z.shape[0])), customdata=custom,
        zmin=0, zmax=1, colorscale=SEQUENTIAL, colorbar=dict(title=dict(text="weight")),
        hovertemplate="query %{y} <b>%{customdata[0]}</b><br>key %{x} <b>%{customdata[1]}</b>"
                      "<br>weight %{z:.3f}<extra></extra>"))
    size = max(360, min(WIDTH - 80, 36 * len(keys) + 200))
    strongest = [f"{queries[i]} → {keys[int(z[i].argmax())]}" for i in range(len(queries))]
    alt = (f"Heatmap of attention weights{' in ' + which if which else ''} for the {len(queries)} tokens "
           f"'{' '.join(queries)}'. Each row is a token attending; its strongest key: {_short_list(strongest, 8)}.")
    return _finish(fig, alt, title, width=size + 80, height=size,
                   xaxis=_token_axis(keys, title=dict(text="key (attended to)"), tickangle=-45, side="bottom"),
                   yaxis=_token_axis(queries, title=dict(text="query (attending)"), autorange="reversed"))


def attention_grid(patterns: Any, tokens: Sequence[str], *, layers: Sequence[int] | None = None,
                   heads: Sequence[int] | None = None, title: str | None = None, batch: int = 0) -> go.Figure:
    """Small multiples: one attention heatmap per layer (row) and head (column), on one colour scale.

    ``patterns`` is ``(layers, heads, seq, seq)`` (or a ``run_with_cache`` cache).
    """
    arr = _patterns(patterns, batch)
    n_layers, n_heads, seq, _ = arr.shape
    toks = _tokens(tokens, "tokens", seq)
    layers = list(range(n_layers)) if layers is None else [_index(l, n_layers, "layer") for l in layers]
    heads = list(range(n_heads)) if heads is None else [_index(h, n_heads, "head") for h in heads]
    rows, cols = len(layers), len(heads)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.02 + 0.04 / cols,
                        vertical_spacing=0.03 + 0.06 / rows,
                        subplot_titles=[f"L{l} H{h}" for l in layers for h in heads])
    col = np.array(toks, dtype=object)
    custom = np.dstack(np.broadcast_arrays(col[:, None], col[None, :]))
    for r, l in enumerate(layers):
        for c, h in enumerate(heads):
            fig.add_trace(go.Heatmap(
                z=arr[l, h], x=list(range(seq)), y=list(range(seq)), customdata=custom, coloraxis="coloraxis",
                hovertemplate=f"layer {l}, head {h}<br>query %{{y}} <b>%{{customdata[0]}}</b><br>"
                              "key %{x} <b>%{customdata[1]}</b><br>weight %{z:.3f}<extra></extra>"),
                row=r + 1, col=c + 1)
            fig.update_xaxes(_token_axis(toks, showticklabels=(r == rows - 1), tickangle=-60,
                                         tickfont=dict(size=MIN_FONT)), row=r + 1, col=c + 1)
            fig.update_yaxes(_token_axis(toks, showticklabels=(c == 0), autorange="reversed",
                                         tickfont=dict(size=MIN_FONT)), row=r + 1, col=c + 1)
    fig.update_annotations(font=dict(size=13))
    alt = (f"A grid of {rows * cols} attention heatmaps, layers {layers[0]} to {layers[-1]} in rows and "
           f"heads {heads[0]} to {heads[-1]} in columns, for the sentence '{' '.join(toks)}'.")
    return _finish(fig, alt, title if title is not None else "Attention in every layer (rows) and head (columns)",
                   height=min(1400, 170 * rows + 160), showlegend=False,
                   coloraxis=dict(colorscale=SEQUENTIAL, cmin=0, cmax=1, colorbar=dict(title=dict(text="weight"))))


def _index(i: Any, n: int, name: str) -> int:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < n:
        raise ValueError(f"{name} must be an int in 0..{n - 1}, got {i!r}")
    return int(i)


def head_view(patterns: Any, tokens: Sequence[str], *, layer: int = 0, head: int = 0,
              min_weight: float = 0.02, levels: int = 8, title: str | None = None, batch: int = 0) -> go.Figure:
    """Lines from each token (left) to the tokens it attends to (right); darker line = more weight.

    ``patterns`` is ``(layers, heads, seq, seq)`` (or a ``run_with_cache`` cache). Buttons choose the
    layer, a slider the head; every layer and head is baked into the figure, so it works in static
    HTML. Weights below ``min_weight`` are not drawn; opacity is rounded to ``levels`` steps.
    """
    arr = _patterns(patterns, batch)
    n_layers, n_heads, seq, _ = arr.shape
    toks = _tokens(tokens, "tokens", seq)
    layer, head = _index(layer, n_layers, "layer"), _index(head, n_heads, "head")
    if not 0 <= min_weight < 1:
        raise ValueError(f"min_weight must be in [0, 1), got {min_weight!r}")
    if not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    ys = [-i for i in range(seq)]
    labels = [_label(t) for t in toks]
    fig = go.Figure()
    for x, pos, side in ((0.0, "middle left", "query"), (1.0, "middle right", "key")):
        fig.add_trace(go.Scatter(
            x=[x] * seq, y=ys, mode="markers+text", text=labels, textposition=pos,
            marker=dict(size=7, color=TEXT), showlegend=False, customdata=list(range(seq)),
            hovertemplate=f"{side} %{{customdata}}: <b>%{{text}}</b><extra></extra>"))
    per_head = levels + 1
    for l in range(n_layers):
        for h in range(n_heads):
            w = arr[l, h]
            drawn = (w >= min_weight) & (w > 0)
            bins = np.clip(np.ceil(w * levels).astype(int) - 1, 0, levels - 1)
            for level in range(levels):
                hi = (level + 1) / levels
                xs, yy = [], []
                for i, j in zip(*np.nonzero(drawn & (bins == level))):
                    xs += [0.0, 1.0, None]
                    yy += [-int(i), -int(j), None]
                fig.add_trace(go.Scatter(
                    x=xs, y=yy, mode="lines", hoverinfo="skip", showlegend=False,
                    visible=(l == layer and h == head), opacity=hi,
                    line=dict(color=OKABE_ITO["blue"], width=1 + 4 * hi)))
            top = [", ".join(f"{_label(toks[j])} {w[i, j]:.2f}" for j in np.argsort(-w[i], kind="stable")[:3])
                   for i in range(seq)]
            fig.add_trace(go.Scatter(
                x=[0.0] * seq, y=ys, mode="markers", marker=dict(size=18, color="rgba(0,0,0,0)"),
                customdata=np.array([labels, top], dtype=object).T, showlegend=False,
                visible=(l == layer and h == head),
                hovertemplate=f"layer {l}, head {h}<br><b>%{{customdata[0]}}</b> attends to "
                              "%{customdata[1]}<extra></extra>"))

    def visible(l: int, h: int) -> list[bool]:
        vis = [True, True]
        for ll in range(n_layers):
            for hh in range(n_heads):
                vis += [ll == l and hh == h] * per_head
        return vis

    def head_title(l: int, h: int) -> str:
        return title if title is not None else f"Head view: layer {l}, head {h}"

    def head_slider(l: int, active: int) -> dict:
        return dict(active=active, x=0.1, len=0.8, y=0, yanchor="top", pad=dict(t=10, b=5),
                    currentvalue=dict(prefix="head ", font=dict(size=13)),
                    steps=[dict(label=str(h), method="update",
                                args=[{"visible": visible(l, h)}, {"title.text": head_title(l, h)}])
                           for h in range(n_heads)])

    layout: dict[str, Any] = {}
    if n_heads > 1:
        layout["sliders"] = [head_slider(layer, head)]
    if n_layers > 1:
        layout["updatemenus"] = [dict(
            type="buttons", direction="right", active=layer, x=0.0, xanchor="left", y=1.0, yanchor="bottom",
            pad=dict(b=4), showactive=True, bgcolor="#f3f4f6", bordercolor="#9ca3af", font=dict(size=12),
            buttons=[dict(label=f"layer {l}", method="update",
                          args=[{"visible": visible(l, 0)},
                                {"title.text": head_title(l, 0),
                                 **({"sliders": [head_slider(l, 0)]} if n_heads > 1 else {})}])
                     for l in range(n_layers)])]
    height = max(320, 30 * seq + 200)
    w0 = arr[layer, head]
    strongest = [f"{toks[i]} → {toks[int(w0[i].argmax())]}" for i in range(seq)]
    alt = (f"Head view of attention for '{' '.join(toks)}': each token on the left is joined to the tokens "
           f"it attends to on the right, darker lines for more weight. Buttons choose one of {n_layers} layers "
           f"and a slider one of {n_heads} heads. Shown first: layer {layer}, head {head}, where "
           f"{_short_list(strongest, 8)}.")
    axis = dict(visible=False, showgrid=False, zeroline=False)
    return _finish(fig, alt, head_title(layer, head), width=560, height=height,
                   margin=dict(l=110, r=110, t=110, b=90),
                   xaxis=dict(axis, range=[-0.25, 1.25], fixedrange=True),
                   yaxis=dict(axis, range=[-seq + 0.5, 0.5], fixedrange=True), **layout)


# --- embeddings -----------------------------------------------------------------------------------

def project(vectors: Any, method: str = "pca", dims: int = 2, seed: int = 0,
            perplexity: float | None = None) -> tuple[np.ndarray, list[str]]:
    """Project ``vectors`` ``(n, d)`` to ``(n, dims)`` with PCA or t-SNE; returns (points, axis titles)."""
    x = _array(vectors, "vectors", 2)
    checks.check_choice(dims, "dims", (2, 3))
    checks.check_seed(int(seed) if checks.is_int(seed) else seed)
    checks.check_real(perplexity, "perplexity", 0, low_open=True, allow_none=True)
    n = x.shape[0]
    if n <= dims:
        raise ValueError(f"need more than {dims} vectors to project to {dims}-D, got {n}")
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=min(dims, x.shape[1]), svd_solver="full")
        pts = pca.fit_transform(x)
        if pts.shape[1] < dims:
            pts = np.pad(pts, ((0, 0), (0, dims - pts.shape[1])))
        ratio = list(pca.explained_variance_ratio_) + [0.0] * (dims - pca.n_components_)
        names = [f"PC {i + 1} ({100 * r:.0f}% of variance)" for i, r in enumerate(ratio)]
    elif method == "tsne":
        from sklearn.manifold import TSNE

        perp = perplexity if perplexity is not None else float(min(30.0, max(2.0, (n - 1) / 3)))
        if not 0 < perp < n:
            raise ValueError(f"perplexity must be in (0, {n}) for {n} points, got {perp!r}")
        pts = TSNE(n_components=dims, perplexity=perp, init="pca",
                   random_state=checks.seed_of(seed) % 2**32).fit_transform(x)
        names = [f"t-SNE {i + 1}" for i in range(dims)]
    else:
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    return pts, names


def embedding_scatter(vectors: Any, tokens: Sequence[str], labels: Sequence[Any] | None = None, *,
                      method: str = "pca", dims: int = 2, seed: int = 0, perplexity: float | None = None,
                      label_name: str = "class", show_text: bool | None = None, title: str | None = None) -> go.Figure:
    """Scatter of ``vectors`` ``(n, d)`` after PCA or t-SNE, coloured by ``labels``; hover shows the token.

    ``labels`` (one per vector, e.g. word class, sense or layer) give colours and marker symbols; the
    legend toggles them. ``show_text`` writes the tokens next to the points (default: up to 60 points).
    """
    pts, names = project(vectors, method, dims, seed, perplexity)
    toks = _tokens(tokens, "tokens", len(pts))
    labs = ["all"] * len(pts) if labels is None else [str(v) for v in _tokens(labels, "labels", len(pts))]
    show_text = len(pts) <= 60 if show_text is None else show_text
    fig = go.Figure()
    groups = list(dict.fromkeys(labs))
    for g, group in enumerate(groups):
        idx = [i for i, v in enumerate(labs) if v == group]
        common = dict(name=group, text=[_label(toks[i]) for i in idx],
                      mode="markers+text" if show_text else "markers", textposition="top center",
                      customdata=[[toks[i], labs[i]] for i in idx], showlegend=labels is not None,
                      hovertemplate=f"<b>%{{customdata[0]}}</b><br>{label_name}: %{{customdata[1]}}<extra></extra>")
        color, symbol = COLORWAY[g % len(COLORWAY)], SYMBOLS[g % len(SYMBOLS)]
        if dims == 2:
            fig.add_trace(go.Scatter(x=pts[idx, 0], y=pts[idx, 1], marker=dict(size=9, color=color, symbol=symbol,
                                     line=dict(width=0.5, color="#ffffff")), textfont=dict(size=11), **common))
        else:
            # 3-D markers are font glyphs; the "x" glyph is missing from common fonts (a box), so it is left out
            sym3 = ["circle", "square", "diamond", "cross", "circle-open", "square-open", "diamond-open"][g % 7]
            fig.add_trace(go.Scatter3d(x=pts[idx, 0], y=pts[idx, 1], z=pts[idx, 2],
                                       marker=dict(size=4, color=color, symbol=sym3), textfont=dict(size=10), **common))
    how = "PCA" if method == "pca" else "t-SNE"
    alt = (f"{dims}-D scatter plot of {len(pts)} embedding vectors after {how}"
           + (f", coloured by {label_name} ({_short_list(groups, 6)})" if labels is not None else "")
           + f". Tokens include {_short_list(toks, 8)}.")
    title = title if title is not None else f"Embeddings after {how}"
    if dims == 2:
        return _finish(fig, alt, title, height=520, legend=dict(title=dict(text=label_name)),
                       xaxis=dict(title=dict(text=names[0]), zeroline=True),
                       yaxis=dict(title=dict(text=names[1]), zeroline=True))
    short = [n.replace(" of variance", "") for n in names]  # 3-D axis titles are drawn at an angle: keep them short
    return _finish(fig, alt, title, height=600, legend=dict(title=dict(text=label_name)),
                   scene=dict(xaxis_title=short[0], yaxis_title=short[1], zaxis_title=short[2],
                              camera=dict(eye=dict(x=1.45, y=1.45, z=1.0))))


def cosine_similarities(vectors: Any, query: Any) -> np.ndarray:
    """Cosine similarity of ``query`` ``(d,)`` with every row of ``vectors`` ``(n, d)``: shape ``(n,)``."""
    x = _array(vectors, "vectors", 2)
    q = _array(query, "query", 1)
    if q.shape[0] != x.shape[1]:
        raise ValueError(f"query has {q.shape[0]} dimensions but vectors have {x.shape[1]}")
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(q)
    return (x @ q) / np.maximum(norms, 1e-12)


def nearest_neighbors(vectors: Any, vocab: Sequence[str], query: str | Any, k: int = 5,
                      exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
    """The ``k`` tokens whose vectors are most cosine-similar to ``query``, best first.

    ``vectors`` is ``(vocab, d)`` with one row per token of ``vocab``; ``query`` is a token of ``vocab``
    (which is then left out of its own neighbours) or a vector ``(d,)``.
    """
    x = _array(vectors, "vectors", 2)
    toks = _tokens(vocab, "vocab", x.shape[0])
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    skip = set(exclude)
    if isinstance(query, str):
        if query not in toks:
            raise ValueError(f"query {query!r} is not in the vocabulary; pass one of {_short_list(toks, 8)}")
        skip.add(query)
        q = x[toks.index(query)]
    else:
        q = query
    sims = cosine_similarities(x, q)
    order = [i for i in np.argsort(-sims, kind="stable") if toks[i] not in skip]
    return [(toks[i], float(sims[i])) for i in order[:k]]


def neighbors_bar(neighbors: Sequence[tuple[str, float]], query: str = "the query", *,
                  title: str | None = None) -> go.Figure:
    """Horizontal bars of ``(token, cosine similarity)`` pairs, e.g. from :func:`nearest_neighbors`."""
    pairs = [(str(t), float(s)) for t, s in neighbors]
    if not pairs:
        raise ValueError("neighbors is empty: pass a list of (token, similarity) pairs")
    toks = [_label(t) for t, _ in pairs]
    sims = [s for _, s in pairs]
    fig = go.Figure(go.Bar(
        x=sims, y=list(range(len(pairs))), orientation="h", marker_color=OKABE_ITO["blue"],
        customdata=toks, text=[f"{s:.2f}" for s in sims], textposition="outside", cliponaxis=False,
        hovertemplate="<b>%{customdata}</b><br>cosine similarity %{x:.3f}<extra></extra>"))
    alt = f"Bar chart of the {len(pairs)} nearest neighbours of '{query}' by cosine similarity: " + \
          ", ".join(f"{t} {s:.2f}" for t, s in pairs) + "."
    lo = min(0.0, min(sims) - 0.1)
    return _finish(fig, alt, title if title is not None else f"Nearest neighbours of '{query}'",
                   height=max(260, 34 * len(pairs) + 140),
                   xaxis=dict(title=dict(text="cosine similarity"), range=[lo, 1.1]),
                   yaxis=_token_axis(toks, autorange="reversed", title=dict(text="token")))


# --- distributions --------------------------------------------------------------------------------

def next_token_bars(probs: Mapping[str, float] | Any, *, vocab: Sequence[str] | None = None,
                    true_probs: Mapping[str, float] | Any | None = None, k: int = 10, context: str | None = None,
                    model_name: str = "model", true_name: str = "true distribution",
                    title: str | None = None) -> go.Figure:
    """Bars of the ``k`` most probable next tokens, optionally beside the true distribution.

    ``probs`` (and ``true_probs``) are ``dict[str, float]`` or arrays over ``vocab``. With a true
    distribution the ``k`` tokens most probable under either one are shown, in the model's order.
    """
    toks, p = _distribution(probs, vocab)
    _check_probs(p, "probs")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    model = dict(zip(toks, p))
    truth = None
    if true_probs is not None:
        ttoks, tp = _distribution(true_probs, vocab, "true_probs")
        _check_probs(tp, "true_probs")
        truth = dict(zip(ttoks, tp))
    keys = list(dict.fromkeys(toks + (list(truth) if truth else [])))
    score = {t: max(model.get(t, 0.0), truth.get(t, 0.0) if truth else 0.0) for t in keys}
    chosen = sorted(keys, key=lambda t: -score[t])[:k]
    chosen.sort(key=lambda t: (-model.get(t, 0.0), -score[t]))
    labels = [_label(t) for t in chosen]
    fig = go.Figure()
    fig.add_trace(go.Bar(name=model_name, x=labels, y=[model.get(t, 0.0) for t in chosen],
                         marker_color=OKABE_ITO["blue"], customdata=chosen,
                         hovertemplate=f"<b>%{{customdata}}</b><br>{model_name}: p = %{{y:.3f}}<extra></extra>"))
    if truth is not None:
        fig.add_trace(go.Bar(name=true_name, x=labels, y=[truth.get(t, 0.0) for t in chosen],
                             marker=dict(color=OKABE_ITO["orange"], pattern=dict(shape="/")), customdata=chosen,
                             hovertemplate=f"<b>%{{customdata}}</b><br>{true_name}: p = %{{y:.3f}}<extra></extra>"))
    after = f" after '{context}'" if context else ""
    alt = (f"Bar chart of the {len(chosen)} most probable next tokens{after}: "
           + ", ".join(f"{t} {model.get(t, 0.0):.2f}" for t in chosen[:8])
           + (f"; the true probabilities are {', '.join(f'{t} {truth.get(t, 0.0):.2f}' for t in chosen[:8])}"
              if truth is not None else "") + ".")
    return _finish(fig, alt, title if title is not None else f"Next-token probabilities{after}",
                   barmode="group", showlegend=truth is not None,
                   xaxis=dict(title=dict(text="next token"), type="category", tickangle=-30 if len(chosen) > 8 else 0),
                   yaxis=dict(title=dict(text="probability"),
                              range=[0, 1.05 * max(1e-9, max(score[t] for t in chosen))]))


def _entropy(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def temperature_explorer(logits: Mapping[str, float] | Any, vocab: Sequence[str] | None = None, *,
                         temperatures: Sequence[float] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
                         k: int = 12, start: float = 1.0, context: str | None = None,
                         title: str | None = None) -> go.Figure:
    """Next-token bars with a slider over temperatures that reshapes them (works in static HTML).

    ``logits`` is a ``dict[str, float]`` or an array ``(vocab,)`` with its ``vocab``. The ``k`` tokens
    with the largest logits are drawn (dividing by a temperature never changes their order); the title
    gives the entropy and the mass the bars hold at each temperature.
    """
    toks, z = _distribution(logits, vocab, "logits")
    temps = [checks.check_real(t, f"temperatures[{i}]", 0, low_open=True)
             for i, t in enumerate(checks.check_nonempty(temperatures, "temperatures", "number > 0"))]
    checks.check_int(k, "k", 1)
    order = np.argsort(-z, kind="stable")[:k]
    labels = [_label(toks[i]) for i in order]
    active = int(np.argmin([abs(t - start) for t in temps]))
    after = f" after '{context}'" if context else ""

    def state(t: float) -> tuple[list[float], str]:
        p = softmax(z, t)
        shown = p[order]
        head = title if title is not None else f"Temperature {t:g}{after}"
        return [float(v) for v in shown], (f"{head}<br><sup>entropy {_entropy(p):.2f} nats; these {len(order)} "
                                           f"tokens hold {100 * shown.sum():.0f}% of the probability</sup>")

    states = [state(t) for t in temps]
    y0, t0 = states[active]
    fig = go.Figure(go.Bar(
        x=list(range(len(order))), y=y0, marker_color=OKABE_ITO["blue"], customdata=labels,
        text=[f"{v:.2f}" for v in y0], textposition="outside", cliponaxis=False,
        hovertemplate="<b>%{customdata}</b><br>p = %{y:.3f}<extra></extra>"))
    steps = [dict(label=f"{t:g}", method="update",
                  args=[{"y": [y], "text": [[f"{v:.2f}" for v in y]]}, {"title.text": tt}])
             for t, (y, tt) in zip(temps, states)]
    alt = (f"Bar chart of the {len(order)} most probable next tokens{after} with a slider over temperatures "
           f"{', '.join(f'{t:g}' for t in temps)}. At temperature {temps[active]:g}: "
           + ", ".join(f"{l} {v:.2f}" for l, v in zip(labels[:6], y0)) +
           ". Low temperatures pile the probability onto the top token; high temperatures flatten the bars.")
    return _finish(fig, alt, t0, height=480, margin=dict(t=90, b=130),
                   sliders=[dict(active=active, steps=steps, x=0.05, len=0.9, y=-0.2, yanchor="top",
                                 currentvalue=dict(prefix="temperature ", font=dict(size=13)), pad=dict(t=30))],
                   xaxis=_token_axis([toks[i] for i in order], title=dict(text="next token"),
                                     tickangle=-30 if len(order) > 8 else 0),
                   yaxis=dict(title=dict(text="probability"), range=[0, 1.1]))


def top_k_keep(probs: Any, k: int) -> np.ndarray:
    """Boolean mask ``(vocab,)`` of the ``k`` most probable tokens (ties broken by position)."""
    p = _array(probs, "probs", 1)
    k = checks.check_int(k, "k (top_k)", 1)
    keep = np.zeros(len(p), dtype=bool)
    keep[np.argsort(-p, kind="stable")[:k]] = True
    return keep


def top_p_keep(probs: Any, p: float) -> np.ndarray:
    """Boolean mask ``(vocab,)`` of the nucleus: the fewest most-probable tokens whose mass reaches ``p``.

    A token is kept when the mass of the tokens ranked above it is still below ``p``; the top token is
    always kept.
    """
    q = _array(probs, "probs", 1)
    p = checks.check_real(p, "p (top_p)", 0, 1, low_open=True)
    order = np.argsort(-q, kind="stable")
    before = np.concatenate([[0.0], np.cumsum(q[order])[:-1]])
    keep = np.zeros(len(q), dtype=bool)
    keep[order[before < p]] = True
    return keep


def sampling_probs(logits: Any, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None) -> np.ndarray:
    """The distribution sampling draws from: softmax of ``logits / temperature``, then the top-k and
    top-p filters (``None`` or ``0`` / ``1.0`` switch them off), renormalised. Shape ``(vocab,)``."""
    p = softmax(_array(logits, "logits", 1), temperature)
    keep = np.ones(len(p), dtype=bool)
    if top_k:
        keep &= top_k_keep(p, top_k)
    if top_p is not None and top_p < 1:
        keep &= top_p_keep(p, top_p)
    q = np.where(keep, p, 0.0)
    return q / q.sum()


def sampling_distribution(logits: Mapping[str, float] | Any, vocab: Sequence[str] | None = None, *,
                          temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                          k: int = 15, context: str | None = None, title: str | None = None) -> go.Figure:
    """Bars of what sampling actually draws from: after the temperature (outline) and after the top-k /
    top-p filters and renormalising (filled). The ``k`` tokens with the largest logits are shown."""
    toks, z = _distribution(logits, vocab, "logits")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    tempered = softmax(z, temperature)
    final = sampling_probs(z, temperature, top_k, top_p)
    order = np.argsort(-z, kind="stable")[:k]
    labels = [_label(toks[i]) for i in order]
    fig = go.Figure()
    fig.add_trace(go.Bar(name=f"after temperature {temperature:g}", x=list(range(len(order))),
                         y=[float(tempered[i]) for i in order], customdata=labels,
                         marker=dict(color="rgba(0,0,0,0)", line=dict(color=OKABE_ITO["blue"], width=1.5)),
                         hovertemplate="<b>%{customdata}</b><br>after temperature: p = %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Bar(name="sampled from (filtered, renormalised)", x=list(range(len(order))),
                         y=[float(final[i]) for i in order], customdata=labels, marker_color=OKABE_ITO["orange"],
                         hovertemplate="<b>%{customdata}</b><br>sampled with p = %{y:.3f}<extra></extra>"))
    kept = int((final > 0).sum())
    settings = [f"temperature {temperature:g}"] + ([f"top-k {top_k}"] if top_k else []) + \
               ([f"top-p {top_p:g}"] if top_p is not None and top_p < 1 else [])
    after = f" after '{context}'" if context else ""
    alt = (f"Bar chart of the next-token distribution{after} with {', '.join(settings)}: {kept} tokens can be "
           f"sampled; " + ", ".join(f"{labels[r]} {final[i]:.2f}" for r, i in enumerate(order[:6])) + ".")
    return _finish(fig, alt, title if title is not None else f"What sampling draws from{after}<br><sup>"
                   f"{', '.join(settings)}: {kept} of {len(toks)} tokens can be drawn</sup>",
                   barmode="overlay", legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right"),
                   margin=dict(t=110),
                   xaxis=_token_axis([toks[i] for i in order], title=dict(text="next token"),
                                     tickangle=-30 if len(order) > 8 else 0),
                   yaxis=dict(title=dict(text="probability"), range=[0, 1.05]))


def cutoff_bars(probs: Mapping[str, float] | Any, vocab: Sequence[str] | None = None, *,
                top_k: int | None = None, top_p: float | None = None, n_show: int = 20,
                context: str | None = None, title: str | None = None) -> go.Figure:
    """Sorted next-token bars with the top-k and/or top-p cut-offs drawn on them.

    Bars kept by every given filter are coloured, cut ones grey; a line shows the cumulative
    probability, dashed verticals mark where each filter cuts.
    """
    toks, p = _distribution(probs, vocab)
    _check_probs(p, "probs")
    if top_k is None and top_p is None:
        raise ValueError("pass top_k=..., top_p=... or both")
    keep = np.ones(len(p), dtype=bool)
    n_k = n_p = None
    if top_k is not None:
        keep &= top_k_keep(p, top_k)
        n_k = int(top_k_keep(p, top_k).sum())
    if top_p is not None:
        keep &= top_p_keep(p, top_p)
        n_p = int(top_p_keep(p, top_p).sum())
    order = np.argsort(-p, kind="stable")
    n = min(len(p), max(n_show, (n_k or 0) + 2, (n_p or 0) + 2))
    order = order[:n]
    labels = [_label(toks[i]) for i in order]
    cum = np.cumsum(p[np.argsort(-p, kind="stable")])[:n]
    fig = go.Figure()
    for kept, name, color in ((True, "kept", OKABE_ITO["blue"]), (False, "cut", CUT_GREY)):
        pos = [r for r, i in enumerate(order) if keep[i] == kept]
        fig.add_trace(go.Bar(x=pos, y=[float(p[order[r]]) for r in pos], name=name, marker_color=color,
                             customdata=[labels[r] for r in pos],
                             hovertemplate=f"<b>%{{customdata}}</b><br>p = %{{y:.3f}} ({name})<extra></extra>"))
    fig.add_trace(go.Scatter(x=list(range(n)), y=cum, name="cumulative probability", mode="lines+markers",
                             line=dict(color=TEXT, width=2), marker=dict(size=5), customdata=labels,
                             hovertemplate="up to <b>%{customdata}</b>: cumulative p = %{y:.3f}<extra></extra>"))
    notes = []
    k_left = n_p is None or (n_k is not None and n_k <= n_p)  # the left-most cut labels to its left
    if n_k is not None:
        fig.add_vline(x=n_k - 0.5, line=dict(color=OKABE_ITO["vermillion"], dash="dash", width=2),
                      annotation=dict(text=f"top-k = {top_k}", font=dict(color=readable(OKABE_ITO["vermillion"]))),
                      annotation_position="top left" if k_left and n_p is not None else "top right")
        notes.append(f"top-k = {top_k} keeps {n_k} tokens")
    if n_p is not None:
        fig.add_hline(y=top_p, line=dict(color=OKABE_ITO["reddish_purple"], dash="dot", width=1.5))
        fig.add_vline(x=n_p - 0.5, line=dict(color=OKABE_ITO["reddish_purple"], dash="dashdot", width=2),
                      annotation=dict(text=f"top-p = {top_p:g}", font=dict(color=readable(OKABE_ITO["reddish_purple"]))),
                      annotation_position="top right" if k_left else "top left")
        notes.append(f"top-p = {top_p:g} keeps {n_p} tokens")
    after = f" after '{context}'" if context else ""
    alt = (f"Bar chart of the {n} most probable next tokens{after}, sorted, with a cumulative probability "
           f"line: {'; '.join(notes)}. Kept tokens: {_short_list([toks[i] for i in order if keep[i]], 10)}.")
    return _finish(fig, alt, title if title is not None else f"Which tokens survive{after}: {'; '.join(notes)}",
                   barmode="overlay", legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"),
                   margin=dict(t=100),
                   xaxis=_token_axis([toks[i] for i in order], title=dict(text="next token, most probable first"),
                                     tickangle=-45 if n > 10 else 0),
                   yaxis=dict(title=dict(text="probability"), range=[0, 1.08]))


# --- beam search ----------------------------------------------------------------------------------

def beam_expansions(next_distribution: Callable[[list[str]], Mapping[str, float]], prompt: Sequence[str], *,
                    beam_width: int = 2, steps: int = 3, expand: int = 3, eos: str | None = ".") \
        -> list[tuple[tuple[str, ...], float, bool]]:
    """Run a small beam search and record every hypothesis considered, for :func:`beam_tree`.

    ``next_distribution(tokens)`` gives ``dict[str, float]`` for the next token after ``tokens``
    (e.g. the toy language's exact ``next_token_distribution``). Each step expands every live
    hypothesis by its ``expand`` most probable tokens and keeps the ``beam_width`` best by total
    log-probability. Returns ``(continuation, total log-prob, kept)`` for every hypothesis.
    """
    for name, v in (("beam_width", beam_width), ("steps", steps), ("expand", expand)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    prompt = list(_tokens(prompt, "prompt"))
    beams: list[tuple[tuple[str, ...], float]] = [((), 0.0)]
    record: list[tuple[tuple[str, ...], float, bool]] = []
    for _ in range(steps):
        candidates = []
        for cont, lp in beams:
            if eos is not None and cont and cont[-1] == eos:
                candidates.append((cont, lp, False))  # finished: competes, is not expanded
                continue
            dist = next_distribution(prompt + list(cont))
            best = sorted(((str(t), float(q)) for t, q in dist.items() if q > 0), key=lambda x: -x[1])[:expand]
            candidates += [(cont + (t,), lp + math.log(q), True) for t, q in best]
        if not candidates:
            break
        ranked = sorted(candidates, key=lambda c: -c[1])
        beams = [(c, lp) for c, lp, _ in ranked[:beam_width]]
        kept = {c for c, _ in beams}
        record += [(c, lp, c in kept) for c, lp, new in candidates if new]
        if all(eos is not None and c[-1] == eos for c, _ in beams):
            break
    return record


def beam_tree(hypotheses: Sequence[Any], *, prompt: str | Sequence[str] | None = None,
              best: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """Draw a beam search as a tree: one column per step, kept hypotheses solid, pruned ones grey.

    ``hypotheses`` lists ``(continuation, total_logprob)`` or ``(continuation, total_logprob, kept)``
    tuples (or dicts with keys ``tokens``, ``logprob``, ``kept``), where ``continuation`` is the token
    list generated after the prompt. Every hypothesis's prefix must be in the list too (the empty one is
    the root). ``best`` (default: the kept hypothesis of greatest depth and log-prob) is highlighted.
    """
    nodes: dict[tuple[str, ...], tuple[float, bool]] = {(): (0.0, True)}
    for h in hypotheses:
        if isinstance(h, Mapping):
            toks, lp, kept = h.get("tokens"), h.get("logprob"), h.get("kept", True)
        elif isinstance(h, Sequence) and len(h) in (2, 3):
            toks, lp, kept = h[0], h[1], (h[2] if len(h) == 3 else True)
        else:
            raise TypeError(f"each hypothesis must be (tokens, logprob[, kept]) or a dict, got {h!r}")
        key = tuple(_tokens(toks, "hypothesis tokens"))
        if not key:
            raise ValueError("a hypothesis has no tokens: the empty continuation is the root, leave it out")
        lp = float(lp)
        if not (math.isfinite(lp) and lp <= 1e-9):
            raise ValueError(f"log-probability of {' '.join(key)!r} must be finite and <= 0, got {lp!r}")
        nodes[key] = (lp, bool(kept))
    if len(nodes) == 1:
        raise ValueError("hypotheses is empty")
    for key in nodes:
        if key and key[:-1] not in nodes:
            raise ValueError(f"hypothesis {' '.join(key)!r} has no parent {' '.join(key[:-1])!r} in the list")
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {k: [] for k in nodes}
    for key in nodes:
        if key:
            children[key[:-1]].append(key)
    ypos: dict[tuple[str, ...], float] = {}
    leaves = [0]

    def place(key: tuple[str, ...]) -> float:
        kids = sorted(children[key], key=lambda c: -nodes[c][0])
        if not kids:
            ypos[key] = -float(leaves[0])
            leaves[0] += 1
        else:
            ypos[key] = float(np.mean([place(c) for c in kids]))
        return ypos[key]

    place(())
    if best is None:
        kept = [k for k in nodes if k and nodes[k][1]]
        best_key = max(kept or [k for k in nodes if k], key=lambda k: (len(k), nodes[k][0]))
    else:
        best_key = tuple(_tokens(best, "best"))
        if best_key not in nodes:
            raise ValueError(f"best {' '.join(best_key)!r} is not one of the hypotheses")
    on_best = {best_key[:i] for i in range(len(best_key) + 1)}
    fig = go.Figure()
    for style, name, color, dash, width in (("kept", "kept in the beam", OKABE_ITO["blue"], "solid", 2),
                                            ("cut", "pruned", CUT_GREY, "dot", 1.5),
                                            ("best", "best hypothesis", OKABE_ITO["vermillion"], "solid", 4)):
        xs, ys = [], []
        for key in nodes:
            if not key:
                continue
            cls = "best" if key in on_best else ("kept" if nodes[key][1] else "cut")
            if cls == style:
                xs += [len(key) - 1, len(key), None]
                ys += [ypos[key[:-1]], ypos[key], None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip",
                                 line=dict(color=color, dash=dash, width=width)))
    root_label = prompt if isinstance(prompt, str) else (" ".join(prompt) if prompt is not None else "⟨start⟩")
    keys = list(nodes)
    labels = [root_label if not k else _label(k[-1]) for k in keys]
    hover = [f"{root_label} <b>{' '.join(k)}</b><br>log p = {nodes[k][0]:.3f} (p = {math.exp(nodes[k][0]):.3f})"
             f"<br>{'kept' if nodes[k][1] else 'pruned'}" if k else f"prompt: {root_label}" for k in keys]
    fig.add_trace(go.Scatter(
        x=[len(k) for k in keys], y=[ypos[k] for k in keys], mode="markers+text", text=labels,
        textposition=["middle left" if not k else "top center" for k in keys], showlegend=False,
        marker=dict(size=[12 if k in on_best else 9 for k in keys],
                    color=[OKABE_ITO["vermillion"] if k in on_best else (OKABE_ITO["blue"] if nodes[k][1] else CUT_GREY)
                           for k in keys],
                    symbol=["circle" if nodes[k][1] else "x" for k in keys], line=dict(width=1, color="#ffffff")),
        customdata=hover, hovertemplate="%{customdata}<extra></extra>"))
    depth = max(len(k) for k in keys)
    n_pruned = sum(1 for k in keys if k and not nodes[k][1])
    alt = (f"Tree of a beam search over {depth} steps from '{root_label}': {len(keys) - 1} hypotheses, "
           f"{n_pruned} of them pruned. Best: '{' '.join(best_key)}' with log-probability {nodes[best_key][0]:.2f}.")
    return _finish(fig, alt, title if title is not None else "Beam search: hypotheses kept and pruned at each step",
                   height=max(380, 34 * leaves[0] + 200), margin=dict(l=140, b=110),
                   legend=dict(orientation="h", y=-0.12, yanchor="top", x=0.5, xanchor="center"),
                   xaxis=dict(title=dict(text="step"), tickmode="array", tickvals=list(range(depth + 1)),
                              range=[-0.6, depth + 0.6], showgrid=False),
                   yaxis=dict(visible=False, range=[-leaves[0] + 0.3, 0.8]))


# --- training -------------------------------------------------------------------------------------

def _curve(value: Any, name: str) -> tuple[list[float], list[float]]:
    if isinstance(value, tuple) and len(value) == 2 and not np.isscalar(value[0]):
        steps, losses = _array(value[0], f"{name} steps", 1), _array(value[1], f"{name} losses", 1)
        if len(steps) != len(losses):
            raise ValueError(f"run {name!r}: {len(steps)} steps but {len(losses)} losses")
        return list(steps), list(losses)
    losses = _array(value, f"run {name!r}", 1)
    return list(range(len(losses))), list(losses)


def _runs(runs: Any) -> list[tuple[str, list[float], list[float]]]:
    """Normalise the accepted inputs of :func:`loss_curves` to ``[(name, steps, losses)]``."""
    if hasattr(runs, "as_curves") and callable(runs.as_curves):  # a History-like object
        runs = runs.as_curves()
    if not isinstance(runs, Mapping):
        return [("loss", *_curve(runs, "loss"))]
    out = []
    for name, value in runs.items():
        if hasattr(value, "as_curves") and callable(value.as_curves):
            value = value.as_curves()
        if isinstance(value, Mapping):
            out += [(f"{name} ({sub})", *_curve(v, f"{name} ({sub})")) for sub, v in value.items()]
        else:
            out.append((str(name), *_curve(value, str(name))))
    if not out:
        raise ValueError("runs is empty: pass a list of losses or a dict of name -> losses")
    return out


def loss_curves(runs: Any, *, entropy_floor: float | None = None, title: str | None = None,
                x_title: str = "training step", y_title: str = "loss (nats per token)",
                log_x: bool = False) -> go.Figure:
    """Loss curves, several runs on one figure, with the entropy floor as a horizontal line.

    ``runs`` is a list of losses, or a dict ``name -> losses`` where losses is a list, a
    ``(steps, losses)`` pair or a dict of named curves (``{"train": [...], "val": (steps, losses)}``).
    Objects with an ``as_curves()`` method returning such a dict are accepted too.
    ``entropy_floor`` is the language's entropy rate: no model's expected loss can go below it.
    """
    curves = _runs(runs)
    fig = go.Figure()
    dashes = ["solid", "dash", "dot", "dashdot"]
    for i, (name, steps, losses) in enumerate(curves):
        fig.add_trace(go.Scatter(
            x=steps, y=losses, name=name, mode="lines" if len(losses) > 30 else "lines+markers",
            line=dict(color=COLORWAY[i % len(COLORWAY)], dash=dashes[(i // len(COLORWAY)) % 4] if "val" not in name
                      else "dash", width=2),
            hovertemplate=f"{name}<br>step %{{x}}<br>loss %{{y:.4f}}<extra></extra>"))
    if entropy_floor is not None:
        if not (isinstance(entropy_floor, (int, float)) and math.isfinite(entropy_floor) and entropy_floor >= 0):
            raise ValueError(f"entropy_floor must be a number >= 0, got {entropy_floor!r}")
        fig.add_hline(y=entropy_floor, line=dict(color=TEXT, dash="dash", width=1.5),
                      annotation=dict(text=f"entropy floor {entropy_floor:.3f}"), annotation_position="bottom left")
    finals = ", ".join(f"{n} ends at {l[-1]:.3f}" for n, _, l in curves[:6])
    alt = (f"Line chart of {len(curves)} loss curve{'s' if len(curves) > 1 else ''} against {x_title}: {finals}"
           + (f". A dashed line marks the entropy floor at {entropy_floor:.3f}." if entropy_floor is not None else "."))
    lo = min(min(l) for _, _, l in curves)
    if entropy_floor is not None:
        lo = min(lo, entropy_floor)
    return _finish(fig, alt, title if title is not None else "Loss during training",
                   xaxis=dict(title=dict(text=x_title), type="log" if log_x else "linear"),
                   yaxis=dict(title=dict(text=y_title), rangemode="tozero" if lo < 0.5 else "normal"),
                   legend=dict(x=0.98, xanchor="right", y=0.98, yanchor="top"), showlegend=len(curves) > 1)


# --- inside the model -----------------------------------------------------------------------------

def _luminance(color: str) -> float:
    """WCAG relative luminance of an ``rgb(...)`` or ``#rrggbb`` colour."""
    from plotly.colors import hex_to_rgb, unlabel_rgb

    rgb = hex_to_rgb(color) if color.startswith("#") else unlabel_rgb(color)
    lin = [(c / 255) / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def readable(color: str, background: str = "#ffffff", ratio: float = 4.5) -> str:
    """``color`` darkened just enough for text on ``background`` to reach the contrast ``ratio``
    (WCAG AA: 4.5), as ``#rrggbb``; a colour that already reaches it is returned unchanged."""
    from plotly.colors import hex_to_rgb, unlabel_rgb

    rgb = hex_to_rgb(color) if color.startswith("#") else unlabel_rgb(color)
    bg = _luminance(background)
    for step in range(101):
        f = 1 - step / 100
        c = "#%02x%02x%02x" % tuple(int(round(v * f)) for v in rgb)
        lum = _luminance(c)
        if (max(lum, bg) + 0.05) / (min(lum, bg) + 0.05) >= ratio:
            return c
    return "#000000"


def text_colors_on(values: Any, colorscale: str | Sequence, vmin: float = 0.0, vmax: float = 1.0) -> list[str]:
    """For text drawn on cells coloured by ``colorscale``: black or white, whichever contrasts more
    with each cell (at least 4.58:1 either way, WCAG AA)."""
    from plotly.colors import get_colorscale, sample_colorscale

    scale = get_colorscale(colorscale) if isinstance(colorscale, str) else [list(c) for c in colorscale]
    v = np.clip((_array(values, "values", 1) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    out = []
    for cell in sample_colorscale(scale, list(v)):
        lum = _luminance(cell)
        out.append("#000000" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#ffffff")
    return out


def cell_text(z: Any, text: Sequence[Sequence[str]], colorscale: str | Sequence, *, vmin: float = 0.0,
              vmax: float = 1.0, x: Sequence | None = None, y: Sequence | None = None,
              size: int = 11) -> go.Scatter:
    """A text layer for a heatmap: ``text[i][j]`` written on cell ``(i, j)`` of ``z`` ``(rows, cols)``,
    each label in black or white, whichever contrasts more with its cell (:func:`text_colors_on`).

    ``x`` and ``y`` are the heatmap's column and row coordinates (default ``0..cols-1``, ``0..rows-1``).
    Plotly's own ``texttemplate`` writes every cell in one colour, which some cells make unreadable.
    """
    z = _array(z, "z", 2)
    rows, cols = z.shape
    if len(text) != rows or any(len(r) != cols for r in text):
        raise ValueError(f"text must be {rows} rows of {cols} labels (the shape of z), got "
                         f"{[len(r) for r in text]}")
    xs = list(range(cols)) if x is None else list(x)
    ys = list(range(rows)) if y is None else list(y)
    return go.Scatter(x=[xs[j] for i in range(rows) for j in range(cols)],
                      y=[ys[i] for i in range(rows) for j in range(cols)], mode="text",
                      text=[t for row in text for t in row], hoverinfo="skip", showlegend=False,
                      textfont=dict(size=size, color=text_colors_on(z.ravel(), colorscale, vmin, vmax)))


def logit_lens(top_probs: Any, top_tokens: Sequence[Sequence[str]], tokens: Sequence[str], *,
               layer_names: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """Logit lens: for each layer (row) and position (column), the top next-token guess and its probability.

    ``top_probs`` is ``(layers, seq)``, ``top_tokens`` the matching tokens (a list of ``seq``-long
    lists), ``tokens`` the input. Row 0 is usually the embedding, the last row the model's output.
    """
    z = _array(top_probs, "top_probs", 2)
    _check_probs(z.ravel(), "top_probs")
    n_layers, seq = z.shape
    toks = _tokens(tokens, "tokens", seq)
    if len(top_tokens) != n_layers:
        raise ValueError(f"top_tokens has {len(top_tokens)} rows but top_probs has {n_layers}")
    guesses = [_tokens(row, f"top_tokens[{i}]", seq) for i, row in enumerate(top_tokens)]
    names = (["embed"] + [f"layer {i}" for i in range(n_layers - 1)]) if layer_names is None else \
        _tokens(layer_names, "layer_names", n_layers)
    custom = np.dstack([np.array(guesses, dtype=object),
                        np.broadcast_to(np.array(toks, dtype=object)[None, :], (n_layers, seq)),
                        np.broadcast_to(np.array(names, dtype=object)[:, None], (n_layers, seq))])
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(seq)), y=list(range(n_layers)), customdata=custom, zmin=0, zmax=1, colorscale=SEQUENTIAL,
        colorbar=dict(title=dict(text="p(top)")),
        hovertemplate="%{customdata[2]}, after <b>%{customdata[1]}</b> (position %{x})<br>"
                      "top guess <b>%{customdata[0]}</b>, p = %{z:.3f}<extra></extra>"))
    # cell labels as a text layer, each in black or white, whichever contrasts more with its cell
    fig.add_trace(cell_text(z, [[_label(g) for g in row] for row in guesses], SEQUENTIAL))
    final = ", ".join(f"{toks[i]} → {guesses[-1][i]}" for i in range(seq))
    alt = (f"Logit lens heatmap for '{' '.join(toks)}': {n_layers} rows from {names[0]} (bottom) to "
           f"{names[-1]} (top), one column per position; each cell names the top next-token guess, coloured by "
           f"its probability. Final guesses: {_short_list(final.split(', '), 8)}.")
    return _finish(fig, alt, title if title is not None else "Logit lens: the top next-token guess after each layer",
                   height=max(320, 46 * n_layers + 190),
                   xaxis=_token_axis(toks, title=dict(text="input position"), tickangle=-30 if seq > 8 else 0),
                   yaxis=dict(tickmode="array", tickvals=list(range(n_layers)), ticktext=names, showgrid=False,
                              title=dict(text="read out after")))


def _final_norm_and_unembed(model: Any) -> tuple[Callable, Callable]:
    # ``ln_f`` first: lmlab's Transformer also has ``ln_final``, but that is an identity hook point
    norm = next((getattr(model, n) for n in ("ln_f", "final_norm", "norm") if hasattr(model, n)), None)
    head = next((getattr(model, n) for n in ("lm_head", "unembed", "head") if hasattr(model, n)), None)
    if not callable(norm) or not callable(head):
        raise TypeError("model needs a final layer norm (ln_f) and an unembedding (lm_head) "
                        "for the logit lens; compute the probabilities yourself and call logit_lens(...)")
    return norm, head


def logit_lens_data(model: Any, idx: Any, vocab: Sequence[str]) -> tuple[np.ndarray, list[list[str]], list[str]]:
    """Run the logit lens on ``model`` for one sequence ``idx``: ``(top_probs, top_tokens, layer_names)``.

    The residual stream before layer 0 (``blocks.0.resid_pre``) and after each layer
    (``blocks.{l}.resid_post``) goes through the model's final layer norm and unembedding.
    """
    import torch

    ids = torch.as_tensor(idx, dtype=torch.long)
    ids = ids[None] if ids.ndim == 1 else ids
    if ids.ndim != 2 or ids.shape[0] != 1:
        raise ValueError(f"idx must be one sequence of token ids, got shape {tuple(ids.shape)}")
    norm, head = _final_norm_and_unembed(model)
    was_training = getattr(model, "training", False)
    model.eval()
    with torch.no_grad():
        _, cache = model.run_with_cache(env.to_model_device(model, ids))
        streams, names = [cache["blocks.0.resid_pre"]], ["embed"]
        l = 0
        while f"blocks.{l}.resid_post" in cache:
            streams.append(cache[f"blocks.{l}.resid_post"])
            names.append(f"layer {l}")
            l += 1
        probs = torch.stack([torch.softmax(head(norm(s))[0].float(), dim=-1) for s in streams])
    if was_training:
        model.train()
    toks = _tokens(vocab, "vocab", probs.shape[-1])
    top_p, top_i = probs.max(dim=-1)
    return top_p.cpu().numpy(), [[toks[i] for i in row] for row in top_i.tolist()], names


def ablation_effect(deltas: Any, *, target: str | None = None, context: str | None = None,
                    title: str | None = None) -> go.Figure:
    """Heatmap of each head's effect under ablation: ``deltas[l, h]`` is the change in the target's
    log-probability when head ``h`` of layer ``l`` is switched off (negative: the head was helping).
    """
    d = _array(deltas, "deltas", 2)
    n_layers, n_heads = d.shape
    what = f"log p('{target}')" if target else "log p(target)"
    bound = max(1e-6, float(np.abs(d).max()))
    fig = go.Figure(go.Heatmap(
        z=d, x=list(range(n_heads)), y=list(range(n_layers)), zmid=0, zmin=-bound, zmax=bound,
        colorscale=DIVERGING, colorbar=dict(title=dict(text=f"Δ {what}")),
        hovertemplate=f"layer %{{y}}, head %{{x}} ablated<br>Δ {what} = %{{z:+.3f}}<extra></extra>"))
    fig.add_trace(cell_text(d, [[f"{v:+.2f}" for v in row] for row in d], DIVERGING, vmin=-bound, vmax=bound))
    l, h = np.unravel_index(int(np.argmin(d)), d.shape)
    after = f" after '{context}'" if context else ""
    alt = (f"Heatmap of the change in {what}{after} when each of {n_layers * n_heads} heads is ablated "
           f"({n_layers} layers by {n_heads} heads). The largest drop, {d[l, h]:+.2f}, comes from layer {l}, "
           f"head {h}; the largest rise is {d.max():+.2f}.")
    return _finish(fig, alt, title if title is not None else f"What each head contributes to {what}{after}",
                   width=min(WIDTH, 120 + 70 * n_heads + 120), height=max(300, 55 * n_layers + 170),
                   xaxis=dict(title=dict(text="head"), tickmode="array", tickvals=list(range(n_heads)), showgrid=False),
                   yaxis=dict(title=dict(text="layer"), tickmode="array", tickvals=list(range(n_layers)),
                              showgrid=False))


def head_ablation_effects(model: Any, idx: Any, position: int, target: int) -> np.ndarray:
    """Change in ``log p(target)`` at ``position`` when each head is zero-ablated: ``(layers, heads)``.

    Zeroes one head's attention pattern (``blocks.{l}.attn.pattern``, which in a causal model removes that
    head's contribution to the residual stream) with ``model.run_with_hooks``.
    """
    import torch

    ids = torch.as_tensor(idx, dtype=torch.long)
    ids = ids[None] if ids.ndim == 1 else ids
    was_training = getattr(model, "training", False)
    model.eval()
    ids = env.to_model_device(model, ids)
    with torch.no_grad():
        logits, cache = model.run_with_cache(ids)
        if not -ids.shape[1] <= position < ids.shape[1]:
            raise ValueError(f"position {position} out of range for a sequence of {ids.shape[1]}")
        base = torch.log_softmax(logits[0, position].float(), -1)[target].item()
        patterns = stack_attention(cache)
        n_layers, n_heads = patterns.shape[:2]
        out = np.zeros((n_layers, n_heads))
        for l in range(n_layers):
            for h in range(n_heads):
                def zero_head(pattern, *args, h=h, **kwargs):
                    pattern = pattern.clone()
                    pattern[:, h] = 0.0
                    return pattern
                ablated = model.run_with_hooks(ids, hooks={f"blocks.{l}.attn.pattern": zero_head})
                ablated = ablated[0] if isinstance(ablated, tuple) else ablated
                out[l, h] = torch.log_softmax(ablated[0, position].float(), -1)[target].item() - base
    if was_training:
        model.train()
    return out


# --- live front-ends (defined in lmlab.widgets) ---------------------------------------------------

def sampling_explorer(*args, **kwargs):
    """See :func:`lmlab.widgets.sampling_explorer`."""
    from .widgets import sampling_explorer as _explorer

    return _explorer(*args, **kwargs)


def attention_explorer(*args, **kwargs):
    """See :func:`lmlab.widgets.attention_explorer`."""
    from .widgets import attention_explorer as _explorer

    return _explorer(*args, **kwargs)
