"""lmlab.widgets: the live explorers, driven programmatically, and their static stand-ins in book builds."""
from __future__ import annotations

import html
import re
import subprocess

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from lmlab import viz, widgets

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy():
    from lmlab import corpus
    from lmlab.models import Transformer
    from lmlab.tokenizers import WordTokenizer

    lang = corpus.toy()
    tok = WordTokenizer.for_toy(lang)
    torch.manual_seed(0)
    model = Transformer.from_preset("gpt-tiny", vocab_size=tok.vocab_size)
    model.eval()
    return lang, tok, model


def _sharpened(model, tok, scale: float = 4.0):
    """prompt -> logits of the untrained model, scaled so temperature and filters visibly matter."""
    base = widgets.logits_fn(model, tok)
    return lambda prompt: base(prompt) * scale


def _srcdoc(value: str) -> str:
    match = re.search(r'srcdoc="([^"]*)"', value)
    assert match, value[:200]
    return html.unescape(match.group(1))


def test_iframe_html_is_a_self_contained_document():
    fig = viz.next_token_bars({"a": 0.7, "b": 0.3})
    frame = widgets.iframe_html(fig)
    assert frame.startswith("<iframe srcdoc=") and f'title="{html.escape(viz.alt_text(fig), quote=True)}"' in frame
    doc = _srcdoc(frame)
    assert doc.startswith("<!DOCTYPE html>")
    # plotly.js is loaded (blocking) in <head>, before the figure's Plotly.newPlot call
    script = re.search(r"<script[^>]*src=\"(https://cdn\.plot\.ly/plotly-[\d.]+\.min\.js)\"", doc)
    assert script and doc.index(script.group(0)) < doc.index("Plotly.newPlot")
    assert 'role="figure"' in doc
    inline = _srcdoc(widgets.iframe_html(fig, plotlyjs="inline"))
    assert len(inline) > 1_000_000 and not re.search(r"<script[^>]*src=", inline)
    local = _srcdoc(widgets.iframe_html(fig, plotlyjs="/static/plotly.min.js"))
    assert '<script charset="utf-8" src="/static/plotly.min.js"></script>' in local
    with pytest.raises(ValueError, match="plotlyjs must be"):
        widgets.iframe_html(fig, plotlyjs="nope")


def test_sampling_explorer_responds_to_its_sliders(toy):
    lang, tok, model = toy
    next_logits = _sharpened(model, tok)
    ex = widgets.sampling_explorer(next_logits, tok.vocab, "the dogs", n_samples=6)
    assert isinstance(ex, widgets.SamplingExplorer)
    fig0, html0, probs0 = ex.figure, ex.plot.value, ex.probs.copy()
    assert "<iframe" in html0 and len(ex.samples) == 6
    assert all(s.startswith("the dogs ") for s in ex.samples)

    ex.temperature.value = 0.3  # what a reader does with the slider
    assert ex.plot.value != html0 and ex.figure is not fig0
    assert ex.probs.max() > probs0.max()  # colder: sharper
    assert list(ex.figure.data[0].y) != list(fig0.data[0].y)
    assert "temperature 0.3" in viz.alt_text(ex.figure)

    ex.top_k.value = 2
    assert (ex.probs > 0).sum() == 2
    kept = {tok.vocab[i] for i in np.flatnonzero(ex.probs)}
    assert {s.split()[-1] for s in ex.samples} <= kept

    ex.top_k.value = 0
    ex.top_p.value = 0.5
    assert np.isclose(ex.probs.sum(), 1.0)
    assert (ex.probs > 0).sum() == viz.top_p_keep(viz.softmax(next_logits("the dogs"), 0.3), 0.5).sum()

    before = list(ex.samples)
    ex.temperature.value = 3.0
    ex.top_p.value = 1.0
    seed = ex.seed
    ex.resample.click()
    assert ex.seed == seed + 1 and ex.samples != before

    ex.prompt.value = "the boy"
    assert ex.figure.layout.title.text.startswith("What sampling draws from after 'the boy'")
    assert np.allclose(ex.probs, viz.sampling_probs(next_logits("the boy"), 3.0))


def test_sampling_explorer_shows_errors_instead_of_raising(toy):
    lang, tok, model = toy
    ex = widgets.SamplingExplorer(widgets.logits_fn(model, tok), tok.vocab, "the")
    good = ex.plot.value
    ex.prompt.value = ""  # empty prompt: logits_fn refuses it
    assert "Could not score this prompt" in ex.error.value and "empty" in ex.error.value
    assert ex.plot.value == good
    ex.prompt.value = "a"
    assert ex.error.value == ""


def test_sampling_explorer_with_a_generate_callable(toy):
    calls = []

    def generate(prompt, temperature, top_k, top_p, seed):
        calls.append((prompt, temperature, top_k, top_p, seed))
        return f"{prompt} <{seed}>"

    ex = widgets.SamplingExplorer(lambda p: np.array([1.0, 2.0, 0.5]), ["x", "y", "z"], "go", generate=generate,
                                  n_samples=2)
    assert ex.samples == ["go <0>", "go <1>"]
    ex.top_k.value = 1
    assert calls[-1] == ("go", 1.0, 1, 1.0, 1)


def test_attention_explorer_picks_sentence_layer_and_head(toy):
    lang, tok, model = toy
    get_attention = widgets.attention_fn(model, tok)
    sentences = ["the dogs that the boy feeds bark .", "the boy sees a cat ."]
    ex = widgets.attention_explorer(get_attention, sentences)
    assert isinstance(ex, widgets.AttentionExplorer)
    tokens, patterns = get_attention(sentences[0])
    assert np.allclose(np.array(ex.figure.data[0].z), patterns[0, 0], atol=1e-6)
    first = ex.plot.value

    ex.layer.value = 1
    ex.head.value = 3
    assert np.allclose(np.array(ex.figure.data[0].z), patterns[1, 3], atol=1e-6)
    assert ex.plot.value != first and "layer 1 head 3" in viz.alt_text(ex.figure)

    ex.sentence.value = sentences[1]
    assert list(ex.figure.layout.xaxis.ticktext) == sentences[1].split()
    assert ex.layer.max == model.config.n_layer - 1 and ex.head.max == model.config.n_head - 1


def test_book_builds_get_static_figures(toy, monkeypatch):
    lang, tok, model = toy
    monkeypatch.setenv("LMLAB_BOOK", "1")
    fig = widgets.sampling_explorer(widgets.logits_fn(model, tok), tok.vocab, "the dogs")
    assert isinstance(fig, go.Figure) and fig.layout.sliders  # the temperature slider works in static HTML
    sentences = ["the boy sees a cat ."]
    head = viz.attention_explorer(widgets.attention_fn(model, tok), sentences)
    assert isinstance(head, go.Figure) and head.layout.updatemenus and head.layout.sliders
    assert "Head view" in head.layout.title.text


def test_bad_arguments():
    with pytest.raises(TypeError, match="next_logits must be a function"):
        widgets.SamplingExplorer("not callable", ["a"])
    with pytest.raises(ValueError, match="sentences is empty"):
        widgets.AttentionExplorer(lambda s: (["a"], np.ones((1, 1, 1, 1))), [])


# --- other versions: plotly 5, 6 and 7; ipywidgets 7 and 8 ------------------------------------------------
# The book's environment has plotly 7 and ipywidgets 8 (the tests above). These run the same tests
# (and lmlab.viz's) in a child pytest with plotly 6 (over the book's environment), and in Colab's own
# environment (Python 3.13, plotly 5.24.1, ipywidgets 7.7.1: tools/colab_env.py, built by the replay).

def _child_pytest(python, pythonpath: list[str], tmp_path) -> subprocess.CompletedProcess:
    import os

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LMLAB_BOOK"))}
    env["PYTHONPATH"] = os.pathsep.join([*pythonpath, str(ROOT / "lib")])
    return subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not other_versions",
                           str(ROOT / "tests" / "test_widgets.py"), str(ROOT / "tests" / "test_viz.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)


def _pip_target(python, target, *specs) -> None:
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-input", "--no-deps", "--target",
                           str(target), *specs], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"could not fetch {specs} (no package index?): {proc.stderr[-500:]}")


def test_widgets_and_figures_with_plotly_6_other_versions(tmp_path):
    import sys

    _pip_target(sys.executable, tmp_path / "plotly6", "plotly==6.9.0")
    proc = _child_pytest(sys.executable, [str(tmp_path / "plotly6")], tmp_path)
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_widgets_and_figures_on_colabs_versions_other_versions(tmp_path):
    """plotly 5.24.1 and ipywidgets 7.7.1 on Python 3.13 (Colab's environment; pytest beside it)."""
    import colab_env
    from gates import replay

    try:
        base = replay.base_environment(None)
    except (FileNotFoundError, RuntimeError) as err:
        pytest.skip(f"no Colab environment here: {err}")
    python = base / "bin" / "python"
    _pip_target(python, tmp_path / "pytest", "pytest==9.2.0", "pluggy", "iniconfig", "hypothesis==6.170.17",
                "sortedcontainers")
    have = colab_env.installed(python)
    assert have["plotly"] == "5.24.1" and have["ipywidgets"] == "7.7.1", have
    proc = _child_pytest(python, [str(tmp_path / "pytest")], tmp_path)
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
