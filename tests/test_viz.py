"""lmlab.viz: every figure builds from a real lmlab model or the toy language's exact distributions."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch

from lmlab import viz

torch.set_num_threads(1)


# --- a real (small, untrained) model and the toy language ------------------------------------------

@pytest.fixture(scope="module")
def lang():
    from lmlab import corpus

    return corpus.toy()


@pytest.fixture(scope="module")
def tok(lang):
    from lmlab.tokenizers import WordTokenizer

    return WordTokenizer.for_toy(lang)


@pytest.fixture(scope="module")
def model(tok):
    from lmlab.models import Transformer

    torch.manual_seed(0)
    m = Transformer.from_preset("gpt-tiny", vocab_size=tok.vocab_size)
    m.eval()
    return m


SENTENCE = "the dogs that the boy feeds bark ."


@pytest.fixture(scope="module")
def run(model, tok):
    """(tokens, ids, logits (1, seq, vocab), cache) for SENTENCE."""
    tokens = SENTENCE.split()
    ids = tok.encode_tokens(tokens)
    assert tok.unk_id not in ids
    with torch.no_grad():
        logits, cache = model.run_with_cache(torch.tensor([ids]))
    return tokens, ids, logits, cache


def _alt_ok(fig):
    alt = viz.alt_text(fig)
    assert isinstance(alt, str) and len(alt) > 40
    assert fig.layout.meta["alt"] == alt
    return alt


# --- template, alt text, HTML ------------------------------------------------------------------------

def test_house_template_is_registered_and_default():
    assert "lmlab" in pio.templates
    assert pio.templates.default == "lmlab"
    layout = pio.templates["lmlab"].layout
    assert list(layout.colorway[:4]) == ["#0072B2", "#E69F00", "#009E73", "#D55E00"]  # Okabe-Ito
    assert layout.paper_bgcolor == "#ffffff" and layout.plot_bgcolor == "#ffffff"  # readable in dark mode too
    assert layout.font.color == viz.TEXT
    assert layout.width is None and layout.autosize  # figures fill the column (book) or the cell (Colab)
    assert layout.colorscale.sequential[0][1].lower() == "#440154"  # viridis starts dark purple


def test_alt_text_set_and_required():
    fig = go.Figure()
    with pytest.raises(ValueError, match="no text alternative"):
        viz.alt_text(fig)
    viz.set_alt(fig, "An empty chart.")
    assert viz.alt_text(fig) == "An empty chart."
    with pytest.raises(ValueError, match="non-empty"):
        viz.set_alt(fig, "  ")
    with pytest.raises(TypeError, match="plotly"):
        viz.alt_text("not a figure")


def test_figure_html_carries_the_alt_text_for_screen_readers():
    fig = viz.set_alt(go.Figure(go.Bar(x=[1], y=[2])), 'Bars "quoted" & <tagged>.')
    out = viz.figure_html(fig, div_id="f1")
    assert out.startswith('<div class="lmlab-figure" role="figure" aria-label="Bars &quot;quoted&quot; &amp; '
                          '&lt;tagged&gt;.">')
    assert 'id="f1"' in out and "<script" in out and "cdn.plot.ly" not in out  # plotly.js not included
    full = viz.figure_html(fig, full_html=True)
    assert full.startswith("<!DOCTYPE html>") and 'lang="en"' in full


# --- attention -----------------------------------------------------------------------------------------

def test_stack_attention_reads_the_cache(run, model):
    tokens, ids, _, cache = run
    arr = viz.stack_attention(cache)
    c = model.config
    assert arr.shape == (c.n_layer, c.n_head, len(tokens), len(tokens))
    assert np.allclose(arr.sum(-1), 1, atol=1e-5)
    assert np.allclose(np.triu(arr[0, 0], 1), 0)  # causal
    assert np.allclose(viz.model_attention(model, ids), arr, atol=1e-6)
    with pytest.raises(ValueError, match="blocks.0.attn.pattern"):
        viz.stack_attention({"embed": torch.zeros(1)})


def test_attention_heatmap_from_the_model(run):
    tokens, _, _, cache = run
    pattern = cache["blocks.1.attn.pattern"][0, 2]
    fig = viz.attention_heatmap(pattern, tokens, layer=1, head=2)
    (trace,) = fig.data
    assert np.allclose(np.array(trace.z), pattern.numpy(), atol=1e-6)
    assert list(fig.layout.yaxis.ticktext) == tokens  # both "the" rows kept
    assert fig.layout.yaxis.autorange == "reversed"
    assert trace.customdata[3][0][0] == "the" and trace.customdata[3][1][1] == "dogs"
    assert "%{customdata[0]}" in trace.hovertemplate and "%{z:.3f}" in trace.hovertemplate
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    alt = _alt_ok(fig)
    assert "layer 1 head 2" in alt and SENTENCE in alt
    with pytest.raises(ValueError, match="has 3 entries but the data has 8"):
        viz.attention_heatmap(pattern, tokens[:3])
    with pytest.raises(ValueError, match="2-D"):
        viz.attention_heatmap(cache["blocks.1.attn.pattern"], tokens)
    with pytest.raises(TypeError, match="split it first"):
        viz.attention_heatmap(pattern, SENTENCE)


def test_attention_grid_small_multiples(run, model):
    tokens, _, _, cache = run
    fig = viz.attention_grid(cache, tokens)
    L, H = model.config.n_layer, model.config.n_head
    assert len(fig.data) == L * H
    assert all(t.coloraxis == "coloraxis" for t in fig.data)
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1
    arr = viz.stack_attention(cache)
    assert np.allclose(np.array(fig.data[H + 1].z), arr[1, 1])
    assert [a.text for a in fig.layout.annotations][: H + 1][-1] == "L1 H0"
    _alt_ok(fig)
    sub = viz.attention_grid(arr, tokens, layers=[1], heads=[0, 3])
    assert len(sub.data) == 2 and np.allclose(np.array(sub.data[1].z), arr[1, 3])
    with pytest.raises(ValueError, match="head must be an int in 0..3"):
        viz.attention_grid(arr, tokens, heads=[4])


def test_head_view_bakes_every_layer_and_head(run, model):
    tokens, _, _, cache = run
    arr = viz.stack_attention(cache)
    L, H, S = arr.shape[:3]
    levels = 8
    fig = viz.head_view(arr, tokens, layer=1, head=2, levels=levels)
    per_head = levels + 1
    assert len(fig.data) == 2 + L * H * per_head
    # the two token columns, duplicates kept
    assert list(fig.data[0].text) == tokens and list(fig.data[1].text) == tokens

    def block(l, h):
        start = 2 + (l * H + h) * per_head
        return fig.data[start:start + per_head]

    assert all(t.visible for t in block(1, 2))
    assert not any(t.visible for t in block(0, 0))
    # one line segment per weight >= min_weight, at an opacity that grows with the weight
    segments = sum(sum(1 for x in t.x if x is None) for t in block(1, 2)[:levels])
    assert segments == int((arr[1, 2] >= 0.02).sum())
    opacities = [t.opacity for t in block(1, 2)[:levels]]
    assert opacities == sorted(opacities)
    # controls: one button per layer, one slider step per head, each showing exactly one head
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == [f"layer {l}" for l in range(L)] and menu.active == 1
    (slider,) = fig.layout.sliders
    assert len(slider.steps) == H and slider.active == 2
    vis = slider.steps[3].args[0]["visible"]
    assert len(vis) == len(fig.data) and sum(vis) == 2 + per_head
    assert all(vis[2 + (1 * H + 3) * per_head: 2 + (1 * H + 4) * per_head])
    layer0 = menu.buttons[0].args
    assert sum(layer0[0]["visible"]) == 2 + per_head and layer0[1]["sliders"][0]["active"] == 0
    assert layer0[1]["sliders"][0]["steps"][1]["args"][1]["title.text"] == "Head view: layer 0, head 1"
    hover = block(1, 2)[-1]
    assert "attends to" in hover.hovertemplate and hover.customdata[0][0] == "the"
    assert "slider" in _alt_ok(fig)


def test_head_view_without_controls_for_one_layer_and_head():
    pattern = np.tril(np.ones((1, 1, 3, 3)))
    pattern /= pattern.sum(-1, keepdims=True)
    fig = viz.head_view(pattern, ["a", "b", "c"])
    assert not fig.layout.updatemenus and not fig.layout.sliders
    with pytest.raises(ValueError, match="min_weight"):
        viz.head_view(pattern, ["a", "b", "c"], min_weight=1.5)


# --- embeddings --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embeddings(model, tok, lang):
    words = [w for w in lang.vocab if w not in {".", ","}][:60]
    ids = tok.encode_tokens(words)
    vectors = model.wte.weight.detach()[ids]
    labels = [lang.word_class(w) for w in words]
    return words, vectors, labels


def test_embedding_scatter_pca_2d(embeddings):
    from sklearn.decomposition import PCA

    words, vectors, labels = embeddings
    fig = viz.embedding_scatter(vectors, words, labels, label_name="word class")
    groups = list(dict.fromkeys(labels))
    assert [t.name for t in fig.data] == groups
    assert sum(len(t.x) for t in fig.data) == len(words)
    pts = PCA(n_components=2, svd_solver="full").fit_transform(vectors.numpy())
    first = fig.data[0]
    i = words.index(first.customdata[0][0])
    assert np.allclose([first.x[0], first.y[0]], pts[i], atol=1e-5)
    assert "%{customdata[0]}" in first.hovertemplate and "word class" in first.hovertemplate
    assert fig.layout.xaxis.title.text.startswith("PC 1 (")
    assert len({t.marker.symbol for t in fig.data}) == min(len(groups), len(viz.SYMBOLS))  # not colour alone
    assert "PCA" in _alt_ok(fig)


def test_embedding_scatter_3d_and_tsne(embeddings):
    words, vectors, labels = embeddings
    fig3 = viz.embedding_scatter(vectors[:30], words[:30], labels[:30], dims=3)
    assert all(isinstance(t, go.Scatter3d) for t in fig3.data)
    assert fig3.layout.scene.zaxis.title.text.startswith("PC 3")
    figt = viz.embedding_scatter(vectors[:25], words[:25], labels[:25], method="tsne", seed=0)
    again = viz.embedding_scatter(vectors[:25], words[:25], labels[:25], method="tsne", seed=0)
    assert np.allclose(figt.data[0].x, again.data[0].x)  # seeded
    assert figt.layout.xaxis.title.text == "t-SNE 1" and "t-SNE" in _alt_ok(figt)
    with pytest.raises(ValueError, match="'pca' or 'tsne'"):
        viz.project(vectors, method="umap")
    with pytest.raises(ValueError, match="perplexity"):
        viz.project(vectors[:10], method="tsne", perplexity=20)


def test_nearest_neighbors_by_cosine(embeddings):
    words, vectors, _ = embeddings
    query = words[5]
    found = viz.nearest_neighbors(vectors, words, query, k=4)
    v = vectors.numpy()
    sims = v @ v[5] / (np.linalg.norm(v, axis=1) * np.linalg.norm(v[5]))
    order = [i for i in np.argsort(-sims) if i != 5][:4]
    assert [w for w, _ in found] == [words[i] for i in order]
    assert np.allclose([s for _, s in found], sims[order])
    assert query not in [w for w, _ in found]
    by_vector = viz.nearest_neighbors(vectors, words, v[5], k=1)
    assert by_vector[0][0] == query and math.isclose(by_vector[0][1], 1.0, rel_tol=1e-6)
    fig = viz.neighbors_bar(found, query)
    assert list(fig.data[0].x) == [s for _, s in found]
    assert list(fig.layout.yaxis.ticktext) == [w for w, _ in found]
    assert query in _alt_ok(fig)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        viz.nearest_neighbors(vectors, words, "zebra-unicorn")


# --- distributions -------------------------------------------------------------------------------------

def test_next_token_bars_model_beside_truth(model, tok, lang):
    prefix = "the dogs"
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode(prefix)]))[0, -1]
    probs = torch.softmax(logits, -1).numpy()
    truth = lang.next_token_distribution(prefix)
    assert math.isclose(sum(truth.values()), 1.0, rel_tol=1e-9)
    fig = viz.next_token_bars(probs, vocab=tok.vocab, true_probs=truth, k=8, context=prefix)
    model_bars, true_bars = fig.data
    shown = list(model_bars.customdata)
    assert len(shown) == 8 and list(model_bars.x) == shown
    assert np.allclose(model_bars.y, [probs[tok.vocab.index(t)] for t in shown])
    assert np.allclose(true_bars.y, [truth.get(t, 0.0) for t in shown])
    top_true = max(truth, key=truth.get)
    assert top_true in shown  # the truth's favourite is shown even if the untrained model disagrees
    assert fig.layout.xaxis.type == "category" and fig.layout.barmode == "group"
    assert true_bars.marker.pattern.shape == "/"  # told apart by pattern, not colour alone
    assert prefix in _alt_ok(fig)
    alone = viz.next_token_bars(truth, k=3)
    assert len(alone.data) == 1 and list(alone.data[0].y) == sorted(truth.values(), reverse=True)[:3]
    with pytest.raises(ValueError, match="pass vocab"):
        viz.next_token_bars(probs)
    with pytest.raises(ValueError, match="temperature_explorer"):
        viz.next_token_bars(logits.numpy() * 10, vocab=tok.vocab)


def test_temperature_explorer_steps_reshape_the_bars(model, tok):
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode("the boy")]))[0, -1].numpy() * 20  # sharpen the untrained model
    temps = (0.5, 1.0, 2.0)
    fig = viz.temperature_explorer(logits, tok.vocab, temperatures=temps, k=6, context="the boy")
    (slider,) = fig.layout.sliders
    assert [s.label for s in slider.steps] == ["0.5", "1", "2"] and slider.active == 1
    order = np.argsort(-logits)[:6]
    assert list(fig.layout.xaxis.ticktext) == [tok.vocab[i] for i in order]
    ys = []
    for T, step in zip(temps, slider.steps):
        assert step.method == "update"
        (y,) = step.args[0]["y"]
        p = torch.softmax(torch.tensor(logits, dtype=torch.float64) / T, -1).numpy()
        assert np.allclose(y, p[order])
        assert f"Temperature {T:g}" in step.args[1]["title.text"] and "entropy" in step.args[1]["title.text"]
        ys.append(y)
    assert np.allclose(fig.data[0].y, ys[1])
    assert ys[0][0] > ys[1][0] > ys[2][0]  # colder: more mass on the top token
    assert "slider" in _alt_ok(fig)
    with pytest.raises(ValueError, match=r"temperatures\[0\] must be a finite number > 0"):
        viz.temperature_explorer(logits, tok.vocab, temperatures=(0.0, 1.0))


def test_filters_agree_with_lmlab_generate(model, tok):
    from lmlab import generate

    with torch.no_grad():
        logits = model(torch.tensor([tok.encode("the dogs that")]))[0, -1] * 30
    p = torch.softmax(logits.double(), -1).numpy()
    for k in (1, 5, 40):
        assert (viz.top_k_keep(p, k) == torch.isfinite(generate.top_k_filter(logits, k)).numpy()).all()
    for top_p in (0.1, 0.5, 0.9, 0.99):
        assert (viz.top_p_keep(p, top_p) == torch.isfinite(generate.top_p_filter(logits, top_p)).numpy()).all()
    mine = viz.sampling_probs(logits, 0.7, 20, 0.8)
    theirs = generate.sampling_distribution(logits, 0.7, 20, 0.8).double().numpy()
    assert np.allclose(mine, theirs, atol=1e-5)


def test_cutoff_bars_mark_what_survives(model, tok):
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode("the dogs that")]))[0, -1] * 30
    probs = torch.softmax(logits.double(), -1).numpy()
    fig = viz.cutoff_bars(probs, tok.vocab, top_k=5, top_p=0.6)
    kept, cut, cum = fig.data
    n_p = int(viz.top_p_keep(probs, 0.6).sum())
    assert len(kept.x) == min(5, n_p)
    assert sorted(kept.x) == list(range(len(kept.x)))  # kept bars are the most probable ones
    assert np.allclose(cum.y, np.cumsum(np.sort(probs)[::-1])[: len(cum.y)])
    xs = sorted(shape.x0 for shape in fig.layout.shapes if shape.x0 == shape.x1)
    assert xs == sorted([4.5, n_p - 0.5])
    assert any(shape.y0 == 0.6 and shape.y1 == 0.6 for shape in fig.layout.shapes)
    assert {a.text for a in fig.layout.annotations} == {"top-k = 5", "top-p = 0.6"}
    assert "top-p = 0.6 keeps" in _alt_ok(fig)
    with pytest.raises(ValueError, match="top_k=..., top_p=..."):
        viz.cutoff_bars(probs, tok.vocab)
    with pytest.raises(ValueError, match=r"top_p\) must be a finite number in \(0, 1\]"):
        viz.cutoff_bars(probs, tok.vocab, top_p=1.5)


def test_sampling_distribution_figure(model, tok):
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode("the boy")]))[0, -1] * 30
    fig = viz.sampling_distribution(logits, tok.vocab, temperature=0.8, top_k=3, k=10)
    tempered, final = fig.data
    assert sum(v > 0 for v in final.y) == 3 and math.isclose(sum(final.y), 1.0, rel_tol=1e-6)
    assert np.allclose(tempered.y, np.sort(torch.softmax(logits.double() / 0.8, -1).numpy())[::-1][:10])
    assert "top-k 3" in _alt_ok(fig)


def test_beam_search_tree_from_the_exact_distribution(lang):
    prompt = ["the"]
    hyps = viz.beam_expansions(lang.next_token_distribution, prompt, beam_width=2, steps=3, expand=3)
    seen = {tuple(h[0]): h for h in hyps}
    for cont, lp, kept in hyps:  # each log-prob is the parent's plus log p(token | prefix)
        parent = seen[cont[:-1]][1] if len(cont) > 1 else 0.0
        q = lang.next_token_distribution(prompt + list(cont[:-1]))[cont[-1]]
        assert math.isclose(lp, parent + math.log(q), rel_tol=1e-9)
    for depth in (1, 2, 3):
        assert sum(1 for c, _, k in hyps if len(c) == depth and k) <= 2
    fig = viz.beam_tree(hyps, prompt="the")
    kept_edges, cut_edges, best_edges, nodes = fig.data
    assert len(nodes.x) == len(hyps) + 1
    finals = [(c, lp) for c, lp, k in hyps if k and len(c) == 3]
    best = max(finals, key=lambda x: x[1])[0]
    assert " ".join(best) in _alt_ok(fig)
    assert sum(1 for x in best_edges.x if x is None) == 3
    assert nodes.marker.symbol.count("x") == sum(1 for _, _, k in hyps if not k)
    with pytest.raises(ValueError, match="has no parent"):
        viz.beam_tree([(("a", "b"), -1.0)])
    with pytest.raises(ValueError, match="<= 0"):
        viz.beam_tree([(("a",), 0.5)])


# --- training --------------------------------------------------------------------------------------------

def test_loss_curves_with_history_and_entropy_floor(lang):
    from lmlab.train import History

    floor = lang.entropy_rate()
    h = History(step=[0, 10, 20, 30], train_loss=[5.0, 3.1, 2.6, 2.4], val_step=[0, 30], val_loss=[5.1, 2.5])
    fig = viz.loss_curves({"tiny": h, "other": [4.0, 3.0, 2.5]}, entropy_floor=floor)
    names = [t.name for t in fig.data]
    assert names == ["tiny (train)", "tiny (validation)", "other"]
    assert list(fig.data[0].x) == [0, 10, 20, 30] and list(fig.data[1].y) == [5.1, 2.5]
    assert fig.data[1].line.dash == "dash"
    (line,) = [s for s in fig.layout.shapes if s.y0 == s.y1]
    assert math.isclose(line.y0, floor)
    assert f"{floor:.3f}" in fig.layout.annotations[0].text
    assert "entropy floor" in _alt_ok(fig)
    single = viz.loss_curves(h)  # a History alone
    assert [t.name for t in single.data] == ["train", "validation"]
    assert h.plot(floor=floor).layout.template.layout.colorway == pio.templates["lmlab"].layout.colorway
    with pytest.raises(ValueError, match="3 steps but 2 losses"):
        viz.loss_curves({"a": ([1, 2, 3], [1.0, 2.0])})


# --- inside the model ----------------------------------------------------------------------------------

def test_logit_lens_from_the_model(model, tok, run):
    tokens, ids, logits, _ = run
    top_p, top_tokens, names = viz.logit_lens_data(model, ids, tok.vocab)
    L = model.config.n_layer
    assert top_p.shape == (L + 1, len(tokens)) and names == ["embed"] + [f"layer {l}" for l in range(L)]
    final = torch.softmax(logits[0].double(), -1)
    assert np.allclose(top_p[-1], final.max(-1).values.numpy(), atol=1e-5)  # last row = the model's output
    assert top_tokens[-1] == [tok.vocab[i] for i in final.argmax(-1).tolist()]
    fig = viz.logit_lens(top_p, top_tokens, tokens, layer_names=names)
    trace, labels = fig.data
    assert np.allclose(np.array(trace.z), top_p) and labels.mode == "text"
    assert list(labels.text) == [t for row in top_tokens for t in row]
    assert len(labels.textfont.color) == top_p.size
    assert list(fig.layout.yaxis.ticktext) == names
    assert "top next-token guess" in _alt_ok(fig)


def test_head_ablation_effects_from_the_model(model, tok, run):
    tokens, ids, logits, _ = run
    position, target = 5, ids[6]  # predict "bark" after "... feeds"
    deltas = viz.head_ablation_effects(model, ids, position, target)
    L, H = model.config.n_layer, model.config.n_head
    assert deltas.shape == (L, H) and np.abs(deltas).max() > 0

    def zero(pattern):
        pattern = pattern.clone()
        pattern[:, 3] = 0
        return pattern

    with torch.no_grad():
        ablated = model.run_with_hooks(torch.tensor([ids]), {"blocks.1.attn.pattern": zero})
    base = torch.log_softmax(logits[0, position].double(), -1)[target]
    manual = torch.log_softmax(ablated[0, position].double(), -1)[target] - base
    assert math.isclose(deltas[1, 3], manual.item(), abs_tol=1e-5)
    fig = viz.ablation_effect(deltas, target="bark", context=" ".join(tokens[:6]))
    trace, labels = fig.data
    assert trace.zmid == 0 and trace.zmin == -trace.zmax
    n_heads = deltas.shape[1]
    assert labels.mode == "text" and labels.text[1 * n_heads + 3] == f"{deltas[1, 3]:+.2f}"
    assert (labels.x[1 * n_heads + 3], labels.y[1 * n_heads + 3]) == (3, 1)
    l, h = np.unravel_index(np.argmin(deltas), deltas.shape)
    assert f"layer {l}, head {h}" in _alt_ok(fig)


def _contrast(a: str, b: str) -> float:
    la, lb = viz._luminance(a), viz._luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def test_cell_text_is_readable_on_every_cell():
    from plotly.colors import get_colorscale, sample_colorscale

    z = np.linspace(-1, 1, 21).reshape(3, 7)
    layer = viz.cell_text(z, [[f"{v:.1f}" for v in row] for row in z], viz.DIVERGING, vmin=-1, vmax=1)
    cells = sample_colorscale(get_colorscale(viz.DIVERGING), list((z.ravel() + 1) / 2))
    ratios = [_contrast(fg, bg) for fg, bg in zip(layer.textfont.color, cells)]
    assert min(ratios) >= 4.5, ratios
    assert {"#000000", "#ffffff"} == set(layer.textfont.color)  # dark ends get white, the light middle black
    assert layer.text[8] == f"{z[1, 1]:.1f}" and (layer.x[8], layer.y[8]) == (1, 1)
    with pytest.raises(ValueError, match="text must be 3 rows of 7 labels"):
        viz.cell_text(z, [["a"] * 7] * 2, viz.DIVERGING)


def test_readable_darkens_only_what_is_too_light():
    for color in (viz.OKABE_ITO["vermillion"], viz.OKABE_ITO["reddish_purple"], viz.OKABE_ITO["yellow"]):
        dark = viz.readable(color)
        assert _contrast(dark, "#ffffff") >= 4.5 > _contrast(color, "#ffffff")
        assert _contrast(dark, "#ffffff") < 4.8  # just enough: the hue stays recognisable
    assert viz.readable(viz.TEXT) == viz.TEXT.lower()


def test_bad_numbers_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        viz.attention_heatmap(np.full((2, 2), np.nan), ["a", "b"])
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        viz.softmax([1.0, 2.0], temperature=0)
    with pytest.raises(ValueError, match="probabilities in"):
        viz.logit_lens([[1.5]], [["a"]], ["a"])


def test_cell_text_contrasts_with_its_cell():
    """Labels drawn on heatmap cells (the logit lens) reach WCAG AA contrast on every colour of the scale."""
    from plotly.colors import get_colorscale, sample_colorscale

    values = np.linspace(0, 1, 101)
    colors = viz.text_colors_on(values, viz.SEQUENTIAL)
    cells = sample_colorscale(get_colorscale(viz.SEQUENTIAL), list(values))
    for text, cell in zip(colors, cells):
        a, b = viz._luminance(text), viz._luminance(cell)
        assert (max(a, b) + 0.05) / (min(a, b) + 0.05) >= 4.5, (text, cell)
    assert {"#ffffff", "#000000"} == set(colors)  # both are needed along viridis
