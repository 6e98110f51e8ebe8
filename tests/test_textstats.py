"""lmlab.textstats: distances, diversity and grammaticality of generated text, strategy tables, slot
comparisons and the beam-search checker. Models here are tiny untrained transformers (fast, no zoo)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import corpus, textstats as ts
from lmlab import generate as G
from lmlab.models import Transformer, TransformerConfig
from lmlab.tokenizers import WordTokenizer


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def lang():
    return corpus.toy()


@pytest.fixture(scope="module")
def tok(lang):
    return WordTokenizer.for_toy(lang)


def tiny(tok, causal=True, seed=0) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=tok.vocab_size, context_length=24, n_layer=1, n_head=2, d_model=16,
                            d_ff=32, causal=causal, init_std=0.3)
    return Transformer(cfg).eval()


# --- distributions ------------------------------------------------------------------------------------

def test_total_variation_by_hand():
    assert ts.total_variation({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0
    assert ts.total_variation({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    # dicts are aligned on the union of their keys
    assert ts.total_variation({"a": 0.7, "b": 0.3}, {"a": 0.4, "c": 0.6}) == pytest.approx(0.6)
    rows = ts.total_variation(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([[0.0, 1.0], [0.25, 0.75]]))
    assert rows.shape == (2,) and rows == pytest.approx([1.0, 0.25])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=2, max_size=8), st.integers(0, 2**31 - 1))
def test_distances_properties(weights, seed):
    p = np.array(weights) / sum(weights)
    q = np.random.default_rng(seed).dirichlet(np.ones(len(p)))
    tv = ts.total_variation(p, q)
    assert 0 <= tv <= 1 and tv == pytest.approx(ts.total_variation(q, p))
    assert ts.kl_divergence(p, q) >= -1e-12 and ts.kl_divergence(p, p) == pytest.approx(0, abs=1e-12)
    # Pinsker's inequality: TV <= sqrt(KL / 2)
    assert tv <= math.sqrt(ts.kl_divergence(p, q) / 2) + 1e-9


def test_kl_is_infinite_when_the_second_rules_out_what_the_first_allows():
    assert ts.kl_divergence({"a": 0.5, "b": 0.5}, {"a": 1.0}) == math.inf
    assert ts.kl_divergence({"a": 1.0}, {"a": 0.5, "b": 0.5}) == pytest.approx(math.log(2))


def test_impossible_and_cut_mass():
    truth = {"a": 0.6, "b": 0.4}
    strat = {"a": 0.9, "x": 0.1}  # puts 0.1 on an impossible word, can never produce "b"
    assert ts.impossible_mass(strat, truth) == pytest.approx(0.1)
    assert ts.cut_mass(strat, truth) == pytest.approx(0.4)


def test_distribution_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        ts.total_variation({"a": 0.5}, {"a": 1.0})
    with pytest.raises(ValueError, match="same shape"):
        ts.total_variation(np.ones(3) / 3, np.ones(4) / 4)
    with pytest.raises(TypeError, match="two dicts"):
        ts.total_variation({"a": 1.0}, np.array([1.0]))
    with pytest.raises(ValueError, match="probabilities"):
        ts.kl_divergence(np.array([1.5, -0.5]), np.array([0.5, 0.5]))


def test_empirical_distribution():
    d = ts.empirical_distribution(["a", "b", "a", ["x", "y"]])
    assert d == {"a": 0.5, "b": 0.25, ("x", "y"): 0.25} and list(d)[0] == "a"
    with pytest.raises(ValueError):
        ts.empirical_distribution([])
    with pytest.raises(TypeError):
        ts.empirical_distribution("abc")


# --- text ---------------------------------------------------------------------------------------------------

def test_split_sentences_and_ngrams():
    done, tail = ts.split_sentences(". the dog barks . a cat")
    assert done == [["the", "dog", "barks", "."]] and tail == ["a", "cat"]
    assert ts.ngrams("a b c", 2) == [("a", "b"), ("b", "c")] and ts.ngrams(["a"], 2) == []
    with pytest.raises(ValueError, match="n must be"):
        ts.ngrams("a b", 0)


def test_distinct_n_and_repetition():
    same = ["the dog barks ."] * 10
    assert ts.distinct_n(same, 2) == pytest.approx(3 / 30)
    assert ts.distinct_n(["a b c", "d e f"], 1) == 1.0
    assert ts.distinct_n(["a b", "b c"], 2) == 1.0  # bigrams do not cross texts
    loop = " ".join(["the big man sees ."] * 6)
    assert ts.repetition_rate([loop], 4) == pytest.approx(1 - 5 / 27)
    assert ts.repetition_rate(["a b c d e f g"], 4) == 0.0
    assert ts.repetition_rate(["a b", "a b c d a b c d"], 4) == pytest.approx(1 / 5)  # short texts skipped
    with pytest.raises(ValueError, match="no 4-grams"):
        ts.repetition_rate(["a b c"], 4)
    with pytest.raises(TypeError):
        ts.distinct_n(42, 2)


def test_exact_logprobs(lang):
    good = lang.sentences(3, seed=1)
    lps = ts.exact_logprobs(lang, good + [["the", "dog", "the", "."], ["the", "dog"], ["the", "dog", "barks", ".",
                                                                                   "the", "."]])
    assert np.isfinite(lps[:3]).all() and lps[:3] == pytest.approx([lang.sentence_logprob(s) for s in good])
    assert (lps[3:] == -math.inf).all()  # ungrammatical, unfinished, two sentences


def test_sample_stats(lang):
    texts = [". " + " ".join(s) for s in lang.sentences(50, seed=2)]
    s = ts.sample_stats(lang, texts)
    assert s.n == 50 and s.grammatical == 1.0 and s.distinct_sentences > 40 and np.isfinite(s.mean_logprob)
    broken = ts.sample_stats(lang, texts[:10] + [". the the the ."] * 10 + [". the dog"] * 5)
    assert broken.grammatical == pytest.approx(10 / 25)
    same = ts.sample_stats(lang, [". the dog barks ."] * 7)
    lp = lang.sentence_logprob("the dog barks .")
    assert same.distinct_sentences == 1 and same.mean_logprob == pytest.approx(lp)
    assert same.logprob_per_word == pytest.approx(lp / 4) and same.mean_length == 4
    with pytest.raises(ValueError):
        ts.sample_stats(lang, [])


# --- per-step distributions ------------------------------------------------------------------------------

def test_next_token_pairs_match_generate(lang, tok):
    model = tiny(tok)
    sents = lang.sentences(4, seed=3)
    logits, truth, prefixes = ts.next_token_pairs(model, tok, lang, sents)
    assert logits.shape == (sum(len(s) for s in sents), tok.vocab_size) == truth.shape
    assert truth.sum(1) == pytest.approx(np.ones(len(truth)))
    assert truth[:, tok.pad_id].sum() == 0
    i = len(sents[0]) + 2  # the third prefix of the second sentence
    assert prefixes[i] == sents[1][:2]
    want = G.next_token_distribution(model, tok.encode_tokens(["."] + sents[1][:2]))
    assert torch.softmax(logits[i], -1) == pytest.approx(want, abs=1e-5)
    assert truth[i][tok.token_to_id(sents[1][2])] > 0
    exact = lang.next_token_distribution(sents[1][:2])
    assert {tok.id_to_token(j): p for j, p in enumerate(truth[i]) if p > 0} == pytest.approx(exact)
    with pytest.raises(TypeError, match="causal"):
        ts.next_token_pairs(tiny(tok, causal=False), tok, lang, sents)


def test_strategy_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 0.0, 0.0]])
    g = ts.strategy_distribution(logits, "greedy")
    assert (g == np.array([[1, 0, 0, 0], [0, 1, 0, 0]])).all()
    s = ts.strategy_distribution(logits, "sample", temperature=0.5, top_k=2)
    assert s == pytest.approx(G.sampling_distribution(logits, 0.5, 2).double().numpy())
    assert (s[0, 2:] == 0).all()
    with pytest.raises(ValueError, match="beam"):
        ts.strategy_distribution(logits, "beam")


def test_step_stats():
    truth = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    same = ts.step_stats(truth, truth)
    assert same.tv == 0 and same.kl == 0 and same.impossible == 0 and same.cut == 0 and same.kept == 1.5
    strat = np.array([[1.0, 0.0, 0.0], [0.8, 0.0, 0.2]])
    s = ts.step_stats(strat, truth)
    assert s.tv == pytest.approx(0.35) and s.kl == math.inf and s.impossible == pytest.approx(0.1)
    assert s.cut == pytest.approx(0.25) and s.kept == 1.5


# --- tables and the strategy comparison ------------------------------------------------------------------

def test_table():
    t = ts.Table(["name", "x", "n"], [["a", 0.12345, 3], ["b", math.inf, 4], ["c", float("nan"), -1]], caption="cap")
    text = repr(t)
    assert "cap" in text and "0.123" in text and "∞" in text and "–" in text
    assert t["x"][0] == 0.12345 and t.row("b")["n"] == 4
    html = t._repr_html_()
    assert html.count("<tr>") == 4 and "<caption>cap</caption>" in html
    assert repr(t).splitlines()[3].startswith("a ")  # text left-aligned, numbers right-aligned
    per_column = ts.Table(["name", "x", "y"], [["a", 1.23456, 2.5]], digits=[0, 1, 2])
    assert "1.2" in repr(per_column) and "2.50" in repr(per_column) and "1.23" not in repr(per_column)
    assert 'text-align:left;white-space:nowrap' in per_column._repr_html_()
    with pytest.raises(ValueError, match="3 values"):
        ts.Table(["a", "b", "c"], [[1, 2]])
    with pytest.raises(ValueError, match="digits"):
        ts.Table(["a", "b"], [[1, 2]], digits=[1])
    with pytest.raises(KeyError):
        t["y"]


def test_compare_strategies_small(lang, tok):
    model = tiny(tok)
    strategies = {"sample": dict(temperature=1.0), "top-k 3": dict(top_k=3), "greedy": dict(strategy="greedy"),
                  "beam": dict(strategy="beam", num_beams=2)}
    c = ts.compare_strategies(model, tok, lang, strategies, n_samples=12, prefix_sentences=lang.sentences(3, seed=4),
                              long_tokens=10, n_long=2, seed=0)
    assert c.steps["strategy"] == [ts.LANGUAGE] + list(strategies)
    assert c.n_prefixes == sum(len(s) for s in lang.sentences(3, seed=4))
    ref = c.steps.row(ts.LANGUAGE)
    assert ref["TV from truth"] == 0 and ref["true mass cut"] == 0
    assert c.samples.row(ts.LANGUAGE)["grammatical"] == 1.0
    assert c.steps.row("top-k 3")["tokens drawable"] == 3 and c.steps.row("greedy")["tokens drawable"] == 1
    assert c.steps.row("top-k 3")["KL(truth‖strategy)"] == math.inf
    assert math.isnan(c.steps.row("beam")["TV from truth"])
    assert c.samples.row("greedy")["distinct sentences (of 12)"] == 1 and len(c.texts["greedy"]) == 12
    # an untrained model's samples are mostly not sentences of the language
    assert c.samples.row("sample")["grammatical"] < 0.5
    assert all(len(t.split()) == 10 for t in c.long_texts["sample"])
    # the same seed gives the same tables (and the thread setting is restored after the one-thread block)
    torch.set_num_threads(2)
    again = ts.compare_strategies(model, tok, lang, strategies, n_samples=12, prefix_sentences=lang.sentences(3, seed=4),
                                  long_tokens=10, n_long=2, seed=0)
    assert repr(again.samples) == repr(c.samples) and repr(again.steps) == repr(c.steps)
    assert torch.get_num_threads() == 2
    fig = ts.tradeoff_figure(c)
    assert len(fig.data) == len(strategies) + 1 and "grammatical" in fig.layout.meta["alt"]
    labels = [t.text[0] for t in fig.data if t.text[0]]
    assert len(labels) == len({(round(t.x[0], 3), round(t.y[0], 3)) for t in fig.data})  # one label per point
    with pytest.raises(ValueError, match="unknown argument"):
        ts.compare_strategies(model, tok, lang, {"bad": dict(beams=3)})
    with pytest.raises(ValueError, match="n_samples"):
        ts.compare_strategies(model, tok, lang, strategies, n_samples=0)


# --- next-word versus masked ----------------------------------------------------------------------------------

def test_slot_comparison(lang, tok):
    r = ts.slot_comparison(lang, tiny(tok), tok, tiny(tok, causal=False, seed=1), tok,
                           "the world is ___ that is the case .")
    assert r.left == ["the", "world", "is"] and r.right == ["that", "is", "the", "case", "."]
    assert r.exact_both == pytest.approx({"everything": 1.0})
    assert r.exact_left == pytest.approx(lang.next_token_distribution("the world is"))
    for d in (r.causal, r.masked):
        assert "<mask>" not in d and "<pad>" not in d and 0.9 < sum(d.values()) <= 1 + 1e-6
    assert r.p("everything")["exact_both"] == 1.0
    table = r.table(3)
    assert table.row(1)["exact, both sides"] == "everything" and len(table.rows) == 3
    fig = ts.slot_figure(r, k=4)
    assert len(fig.data) == 4 and "both sides" in fig.layout.meta["alt"]
    summary = ts.slot_summary(lang, tiny(tok), tok, tiny(tok, causal=False, seed=1), tok,
                              ["the world is ___ that is the case .", "the ___ barks ."])
    assert summary["words that fit"] == ["everything", "dog, puppy"]
    assert summary["exact, left only"][0] == pytest.approx(lang.next_token_distribution("the world is")["everything"])
    left = lang.next_token_distribution("the")
    assert summary["exact, left only"][1] == pytest.approx(left["dog"] + left["puppy"])
    assert summary["masked model"][0] == pytest.approx(r.masked["everything"])
    with pytest.raises(ValueError, match="exactly one slot"):
        ts.slot_comparison(lang, tiny(tok), tok, tiny(tok, causal=False), tok, "the dog barks .")
    with pytest.raises(TypeError):
        ts.slot_figure("not a result")


# --- the beam-search checker ------------------------------------------------------------------------------------

def test_check_beam_search_passes_the_reference(capsys):
    assert ts.check_beam_search(ts.beam_search_reference)
    assert "correct on all" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, message", [
    (lambda m, p, b, s: ts.beam_search_reference(m, p, 1, s), "you keep only one hypothesis"),
    (ts._last_only, "by the last token's log-probability"),
    (ts._per_beam_best, "extend each beam by its own best token"),
    (ts._worst, "least probable"),
    (lambda m, p, b, s: list(p) + ts.beam_search_reference(m, p, b, s), "return the prompt too"),
    (lambda m, p, b, s: (ts.beam_search_reference(m, p, b, s), 0.0), "return only the list"),
    (lambda m, p, b, s: ts.beam_search_reference(m, p, b + 20, s), "search everything"),
])
def test_check_beam_search_names_the_mistake(capsys, wrong, message):
    assert not ts.check_beam_search(wrong)
    out = capsys.readouterr().out
    assert out.startswith("❌") and message in out, out


def test_check_beam_search_not_attempted(capsys):
    def stub(next_logprobs, prompt, num_beams, steps):
        raise NotImplementedError

    assert not ts.check_beam_search(stub)
    assert "not attempted yet" in capsys.readouterr().out


def test_beam_reference_agrees_with_generate_on_a_model(tok):
    """The exercise's reference and lmlab.generate's beam search find the same best continuation, and
    with one beam both are greedy decoding."""
    model = tiny(tok, seed=3)

    def next_logprobs(tokens):
        probs = G.next_token_distribution(model, tok.encode_tokens(tokens))
        return {tok.id_to_token(i): math.log(p) for i, p in enumerate(probs.tolist()) if p > 0}

    for beams in (1, 3):
        mine = ts.beam_search_reference(next_logprobs, ["."], beams, 3)
        best = G.beam_search(model, tok.encode_tokens(["."]), num_beams=beams, max_new_tokens=3)[0]
        assert mine == [tok.id_to_token(i) for i in best.ids[1:]]
    greedy = G.generate(model, tok.encode_tokens(["."]), 3, strategy="greedy")
    assert ts.beam_search_reference(next_logprobs, ["."], 1, 3) == [tok.id_to_token(i) for i in greedy[1:]]


# --- the temperature checker -------------------------------------------------------------------------------------

def test_temperature_reference_reaches_its_target():
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0])
    for target in (0.2, 0.9, 1.3):
        T = ts.temperature_for_entropy_reference(logits, target)
        p = torch.softmax(logits / T, -1)
        assert float(-(p * p.log()).sum()) == pytest.approx(target, abs=1e-6)


def test_check_temperature_for_entropy_passes_the_reference(capsys):
    assert ts.check_temperature_for_entropy(ts.temperature_for_entropy_reference)
    assert "correct on all" in capsys.readouterr().out


def _bits(logits, target):
    lo, hi = 1e-4, 1e4
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if ts._entropy_at(logits, mid, base=2) < target else (lo, mid)
    return mid


@pytest.mark.parametrize("wrong, message", [
    (lambda l, t: 1 / ts.temperature_for_entropy_reference(l, t), "multiplied by T"),
    (_bits, "bits, not nats"),
    (lambda l, t: t, "return the target itself"),
    (lambda l, t: 1.0, "too high (too flat)"),
    (lambda l, t: 2 * ts.temperature_for_entropy_reference(l, t), "too high"),
    (lambda l, t: -1.0, "a number > 0"),
    (lambda l, t: [1.0, 2.0], "return one number"),
])
def test_check_temperature_for_entropy_names_the_mistake(capsys, wrong, message):
    assert not ts.check_temperature_for_entropy(wrong)
    out = capsys.readouterr().out
    assert out.startswith("❌") and message in out, out


def test_check_temperature_for_entropy_not_attempted(capsys):
    def stub(logits, target):
        raise NotImplementedError

    assert not ts.check_temperature_for_entropy(stub)
    assert "not attempted yet" in capsys.readouterr().out


def test_labels_avoid_each_other():
    placed = []
    first = ts._label_position(0.5, 0.9, 8, placed)
    second = ts._label_position(0.45, 0.9, 8, placed)  # its right-hand label would cover the first point
    assert first == "middle right" and second != "middle right"
    assert len(placed) == 4
