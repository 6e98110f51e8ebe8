"""Live ipywidgets front-ends for Colab and Jupyter; static plotly figures in book builds.

* :func:`sampling_explorer`: type a prompt, move temperature, top-k and top-p sliders, and watch the
  next-token distribution and a few samples change.
* :func:`attention_explorer`: pick a sentence, a layer and a head, and see that head's attention.

Both take plain callables (``prompt -> logits``, ``sentence -> (tokens, patterns)``), so they work with
any model; :func:`logits_fn` and :func:`attention_fn` build those callables from an lmlab model and
tokenizer. In book builds (``LMLAB_BOOK=1``) they return the static plotly equivalent instead
(:func:`lmlab.viz.temperature_explorer`, :func:`lmlab.viz.head_view`), whose slider and buttons keep
working in the static page, where widget callbacks would be dead.

How figures are drawn (and why)
-------------------------------
Each redraw puts the figure, as a complete HTML document that loads plotly.js itself, into an
``<iframe srcdoc=...>`` held by an ``ipywidgets.HTML`` widget (:func:`iframe_html`). The usual
routes fail on Colab: ``go.FigureWidget`` does not display there (plotly/plotly.py#2202), and plotly
output inside an ``ipywidgets.Output`` has been reported blank with "Plotly is not defined"
(googlecolab/colabtools#5889): the output's ``<script src=plotly.js>`` is injected dynamically, so it
loads asynchronously and the inline ``Plotly.newPlot`` runs first. Inside an iframe document the
``<script src>`` is parsed normally and blocks until plotly.js has loaded, so ``Plotly`` is always
defined; the iframe also isolates the figure from whatever plotly.js version the page has (Colab
renders folium maps the same way). ``plotlyjs="cdn"`` (default) loads the plotly.js that matches the
installed plotly from its CDN, cached by the browser after the first redraw; use ``"inline"`` (about
5 MB per redraw) on a machine without internet, or pass a URL.
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from . import checks, env, viz
from .env import in_book_build

__all__ = ["iframe_html", "SamplingExplorer", "sampling_explorer", "AttentionExplorer", "attention_explorer",
           "logits_fn", "attention_fn"]


# --- drawing a figure inside a widget -------------------------------------------------------------

@lru_cache(maxsize=1)
def _cdn_script() -> str:
    """The ``<script src=...>`` tag plotly itself writes for ``include_plotlyjs="cdn"``."""
    import plotly.graph_objects as go

    out = go.Figure().to_html(include_plotlyjs="cdn", full_html=False)
    match = re.search(r"<script[^>]*\bsrc=[^>]*>\s*</script>", out)
    if match is None:  # pragma: no cover - plotly changed its output
        raise RuntimeError("could not find plotly's CDN script tag; pass plotlyjs='inline'")
    return match.group(0)


@lru_cache(maxsize=1)
def _inline_plotlyjs() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _script(plotlyjs: str) -> str:
    if plotlyjs == "cdn":
        return _cdn_script()
    if plotlyjs == "inline":
        return f'<script type="text/javascript">{_inline_plotlyjs()}</script>'
    if isinstance(plotlyjs, str) and (plotlyjs.startswith(("http://", "https://", "/")) or plotlyjs.endswith(".js")):
        return f'<script charset="utf-8" src="{html.escape(plotlyjs, quote=True)}"></script>'
    raise ValueError(f"plotlyjs must be 'cdn', 'inline' or a URL of plotly.min.js, got {plotlyjs!r}")


def iframe_html(fig, plotlyjs: str = "cdn") -> str:
    """``fig`` as an ``<iframe srcdoc=...>`` whose document loads plotly.js itself (see module notes).

    The iframe's ``title`` is the figure's text alternative, and the document inside wraps the figure
    in ``role="figure"`` with the same ``aria-label``.
    """
    doc = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
           '<style>html,body{margin:0;padding:0;background:#fff}</style>'
           f"{_script(plotlyjs)}</head><body>{viz.figure_html(fig, include_plotlyjs=False)}</body></html>")
    width = int(fig.layout.width or viz.WIDTH)
    height = int(fig.layout.height or viz.HEIGHT)
    try:
        title = viz.alt_text(fig)
    except ValueError:
        title = "plotly figure"
    return (f'<iframe srcdoc="{html.escape(doc, quote=True)}" title="{html.escape(title, quote=True)}" '
            f'style="width:{width + 24}px;max-width:100%;height:{height + 24}px;border:0;background:#fff" '
            'loading="eager"></iframe>')


# --- sampling explorer ----------------------------------------------------------------------------

class SamplingExplorer:
    """Prompt box, temperature / top-k / top-p sliders, the resulting distribution and a few samples.

    ``next_logits(prompt) -> logits`` gives the next-token logits ``(vocab,)`` after ``prompt`` (a
    tensor, array or list). Samples are next tokens drawn from the filtered distribution, or whole
    continuations when ``generate(prompt, temperature=, top_k=, top_p=, seed=) -> str`` is given.
    Attributes: ``figure`` (the current plotly figure), ``samples``, ``probs`` and the widgets
    ``prompt``, ``temperature``, ``top_k``, ``top_p``, ``resample``, ``plot``, ``sample_box``, ``widget``.
    """

    def __init__(self, next_logits: Callable[[str], Any], vocab: Sequence[str], prompt: str = "", *,
                 generate: Callable[..., str] | None = None, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, n_samples: int = 5, seed: int = 0, k: int = 15, plotlyjs: str = "cdn"):
        import ipywidgets as w

        if not callable(next_logits):
            raise TypeError(f"next_logits must be a function prompt -> logits, got {type(next_logits).__name__}")
        if generate is not None and not callable(generate):
            raise TypeError(f"generate must be a function or None, got {type(generate).__name__}")
        self.next_logits, self.generate, self.vocab = next_logits, generate, [str(t) for t in vocab]
        self.n_samples, self.seed, self.k, self.plotlyjs = n_samples, seed, k, plotlyjs
        _script(plotlyjs)  # validate early
        style = {"description_width": "110px"}
        wide = w.Layout(width="460px")
        self.prompt = w.Text(value=prompt, description="prompt", continuous_update=False, style=style,
                             layout=w.Layout(width="600px"))
        self.temperature = w.FloatSlider(value=temperature, min=0.05, max=5.0, step=0.05, description="temperature",
                                         continuous_update=False, readout_format=".2f", style=style, layout=wide)
        self.top_k = w.IntSlider(value=top_k, min=0, max=len(self.vocab), description="top-k (0: off)",
                                 continuous_update=False, style=style, layout=wide)
        self.top_p = w.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05, description="top-p (1: off)",
                                   continuous_update=False, readout_format=".2f", style=style, layout=wide)
        self.resample = w.Button(description="new samples", icon="refresh")
        self.plot = w.HTML()
        self.sample_box = w.HTML()
        self.error = w.HTML()
        self.widget = w.VBox([self.prompt, self.temperature, self.top_k, self.top_p,
                              w.HBox([self.resample]), self.error, self.plot, self.sample_box])
        for control in (self.prompt, self.temperature, self.top_k, self.top_p):
            control.observe(lambda change: self.update(), names="value")
        self.resample.on_click(self._new_seed)
        self.figure = None
        self.samples: list[str] = []
        self.probs: np.ndarray | None = None
        self.update()

    def _new_seed(self, _button=None) -> None:
        self.seed += 1
        self.update()

    def update(self) -> None:
        """Recompute the distribution, the figure and the samples from the current widget values."""
        prompt = self.prompt.value
        try:
            logits = viz._array(self.next_logits(prompt), "logits", 1)
            if len(logits) != len(self.vocab):
                raise ValueError(f"next_logits returned {len(logits)} logits for a vocabulary of {len(self.vocab)}")
        except Exception as err:  # show the problem in the widget instead of a traceback in a callback
            self.error.value = f"<p style='color:#b00020'>Could not score this prompt: {html.escape(str(err))}</p>"
            return
        self.error.value = ""
        T, k, p = float(self.temperature.value), int(self.top_k.value) or None, float(self.top_p.value)
        self.probs = viz.sampling_probs(logits, T, k, p if p < 1 else None)
        self.figure = viz.sampling_distribution(logits, self.vocab, temperature=T, top_k=k,
                                                top_p=p if p < 1 else None, k=self.k, context=prompt or None)
        if self.generate is not None:
            self.samples = [str(self.generate(prompt, temperature=T, top_k=k, top_p=p, seed=self.seed + i))
                            for i in range(self.n_samples)]
        else:
            rng = np.random.default_rng(checks.seed_of(self.seed))
            draws = rng.choice(len(self.vocab), size=self.n_samples, p=self.probs)
            self.samples = [f"{prompt} {self.vocab[i]}".strip() for i in draws]
        self.plot.value = iframe_html(self.figure, self.plotlyjs)
        items = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in self.samples)
        self.sample_box.value = f"<p><b>{len(self.samples)} samples</b> (seed {self.seed}):</p><ol>{items}</ol>"

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def sampling_explorer(next_logits: Callable[[str], Any], vocab: Sequence[str], prompt: str = "", **kwargs):
    """A :class:`SamplingExplorer` (live), or in book builds the static
    :func:`lmlab.viz.temperature_explorer` figure for ``prompt``."""
    if in_book_build():
        logits = next_logits(prompt)
        return viz.temperature_explorer(logits, [str(t) for t in vocab], k=kwargs.get("k", 12), context=prompt or None)
    return SamplingExplorer(next_logits, vocab, prompt, **kwargs)


# --- attention explorer ---------------------------------------------------------------------------

class AttentionExplorer:
    """Pick a sentence, a layer and a head; see that head's attention as a heatmap.

    ``get_attention(sentence) -> (tokens, patterns)`` with ``patterns`` ``(layers, heads, seq, seq)``
    (see :func:`attention_fn`). Attributes: ``figure``, and the widgets ``sentence``, ``layer``,
    ``head``, ``plot``, ``widget``.
    """

    def __init__(self, get_attention: Callable[[str], tuple[Sequence[str], Any]], sentences: Sequence[str], *,
                 layer: int = 0, head: int = 0, plotlyjs: str = "cdn"):
        import ipywidgets as w

        if not callable(get_attention):
            raise TypeError(f"get_attention must be a function sentence -> (tokens, patterns), "
                            f"got {type(get_attention).__name__}")
        sentences = [str(s) for s in ([sentences] if isinstance(sentences, str) else sentences)]
        if not sentences:
            raise ValueError("sentences is empty: pass at least one sentence")
        self.get_attention, self.plotlyjs = get_attention, plotlyjs
        _script(plotlyjs)
        self._cache: dict[str, tuple[list[str], np.ndarray]] = {}
        tokens, patterns = self._attention(sentences[0])
        n_layers, n_heads = patterns.shape[:2]
        style = {"description_width": "80px"}
        self.sentence = w.Dropdown(options=sentences, value=sentences[0], description="sentence", style=style,
                                   layout=w.Layout(width="600px"))
        self.layer = w.IntSlider(value=viz._index(layer, n_layers, "layer"), min=0, max=n_layers - 1,
                                 description="layer", continuous_update=False, style=style)
        self.head = w.IntSlider(value=viz._index(head, n_heads, "head"), min=0, max=n_heads - 1,
                                description="head", continuous_update=False, style=style)
        self.plot = w.HTML()
        self.widget = w.VBox([self.sentence, w.HBox([self.layer, self.head]), self.plot])
        for control in (self.sentence, self.layer, self.head):
            control.observe(lambda change: self.update(), names="value")
        self.figure = None
        self.update()

    def _attention(self, sentence: str) -> tuple[list[str], np.ndarray]:
        if sentence not in self._cache:
            tokens, patterns = self.get_attention(sentence)
            arr = viz._patterns(patterns)
            self._cache[sentence] = (viz._tokens(tokens, "tokens", arr.shape[-1]), arr)
        return self._cache[sentence]

    def update(self) -> None:
        tokens, patterns = self._attention(self.sentence.value)
        l, h = int(self.layer.value), int(self.head.value)
        self.figure = viz.attention_heatmap(patterns[l, h], tokens, layer=l, head=h)
        self.plot.value = iframe_html(self.figure, self.plotlyjs)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def attention_explorer(get_attention: Callable[[str], tuple[Sequence[str], Any]], sentences: Sequence[str], **kwargs):
    """An :class:`AttentionExplorer` (live), or in book builds the static :func:`lmlab.viz.head_view`
    of the first sentence (its buttons and slider choose layer and head in the static page)."""
    if in_book_build():
        first = sentences if isinstance(sentences, str) else sentences[0]
        tokens, patterns = get_attention(first)
        return viz.head_view(patterns, tokens, layer=kwargs.get("layer", 0), head=kwargs.get("head", 0))
    return AttentionExplorer(get_attention, sentences, **kwargs)


# --- callables from an lmlab model and tokenizer ---------------------------------------------------

def _encode(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer.encode(text)
    return list(ids.tolist() if hasattr(ids, "tolist") else ids)


def logits_fn(model: Any, tokenizer: Any) -> Callable[[str], np.ndarray]:
    """``prompt -> next-token logits (vocab,)`` for a causal lmlab model and its tokenizer."""
    import torch

    def next_logits(prompt: str) -> np.ndarray:
        ids = _encode(tokenizer, prompt)
        if not ids:
            raise ValueError("the prompt is empty: type at least one token")
        ids = ids[-model.config.context_length:]
        model.eval()
        with torch.no_grad():
            logits = model(env.to_model_device(model, torch.tensor([ids], dtype=torch.long)))
        logits = logits[0] if isinstance(logits, tuple) else logits
        return logits[0, -1].float().cpu().numpy()

    return next_logits


def attention_fn(model: Any, tokenizer: Any) -> Callable[[str], tuple[list[str], np.ndarray]]:
    """``sentence -> (tokens, patterns (layers, heads, seq, seq))`` for an lmlab Transformer."""

    def get_attention(sentence: str) -> tuple[list[str], np.ndarray]:
        ids = _encode(tokenizer, sentence)
        return [tokenizer.id_to_token(i) for i in ids], viz.model_attention(model, ids)

    return get_attention
