"""lmlab.measure: sparsity, Zipf, tokenization lengths, scores, the comparison table, figures, the checker."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmlab import measure, viz
from lmlab.corpus import toy
from lmlab.data import evaluate_sentences, stream_ids
from lmlab.models import MLPConfig, MLPLM, NGramLM
from lmlab.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lang():
    return toy()


@pytest.fixture(scope="module")
def words(lang):
    return WordTokenizer.for_toy(lang)


@pytest.fixture(scope="module")
def corpus(lang, words):
    train = lang.sentences(400, seed=21)
    test = lang.sentences(40, seed=22)
    return train, test, stream_ids(train, words)


# --- counting ---------------------------------------------------------------------------------------

def test_fit_ngrams_equals_separate_fits(corpus, words):
    train, test, ids = corpus
    family = measure.fit_ngrams(ids, orders=[1, 2, 3], vocab_size=words.vocab_size)
    assert sorted(family) == [1, 2, 3]
    for n, lm in family.items():
        alone = NGramLM(n, vocab_size=words.vocab_size).fit(ids)
        for context in ([], [5], [7, 9], [words.token_to_id("the"), words.token_to_id("dog")]):
            np.testing.assert_allclose(lm.next_distribution(context), alone.next_distribution(context), atol=1e-12)


def test_with_counts_changes_smoothing_without_recounting(corpus, words):
    _, _, ids = corpus
    kn = NGramLM(3, vocab_size=words.vocab_size).fit(ids)
    add1 = measure.with_counts(kn, n=2, smoothing="add-k", k=1.0)
    alone = NGramLM(2, vocab_size=words.vocab_size, smoothing="add-k", k=1.0).fit(ids)
    assert add1.counts[2] is kn.counts[2]
    ctx = [words.token_to_id("the")]
    np.testing.assert_allclose(add1.next_distribution(ctx), alone.next_distribution(ctx), atol=1e-12)
    with pytest.raises(ValueError, match=r"n must be an int in \[1, 3\]"):
        measure.with_counts(kn, n=4)
    with pytest.raises(TypeError, match="fitted NGramLM"):
        measure.with_counts(NGramLM(2))


def test_unseen_rates_by_hand():
    train = [1, 2, 3, 1, 2, 4]
    test = [1, 2, 3, 4, 2]
    rows = {r["n"]: r for r in measure.unseen_rates(train, test, orders=[1, 2, 3])}
    assert rows[1]["unseen_context"] == 0.0 and rows[1]["unseen_ngram"] == 0.0
    # bigrams of test: 12 23 34 42 -> unseen: 34, 42; contexts 1 2 3 4 all seen
    assert rows[2]["unseen_ngram"] == pytest.approx(2 / 4)
    assert rows[2]["unseen_context"] == 0.0
    # trigrams: 123 234 342 -> contexts 12 (seen) 23 (seen) 34 (unseen); trigrams 123 seen, others not
    assert rows[3]["unseen_context"] == pytest.approx(1 / 3)
    assert rows[3]["unseen_ngram"] == pytest.approx(2 / 3)
    assert rows[3]["distinct_contexts"] == len({(1, 2), (2, 3), (3, 1), (2, 4)})
    with pytest.raises(ValueError, match="fewer than n=9"):
        measure.unseen_rates(train, test, orders=[9])
    with pytest.raises(ValueError, match="orders"):
        measure.unseen_rates(train, test, orders=[0])


def test_unseen_rates_grow_with_n_and_shrink_with_data(corpus, lang, words):
    _, test, ids = corpus
    test_ids = stream_ids(test, words)
    small = measure.unseen_rates(ids[:300], test_ids, range(1, 6))
    big = measure.unseen_rates(ids, test_ids, range(1, 6))
    assert all(a["unseen_context"] <= b["unseen_context"] for a, b in zip(big, big[1:]))
    assert all(s["unseen_ngram"] >= b["unseen_ngram"] for s, b in zip(small, big))


def test_unseen_context_mask_aligns_with_scored_tokens():
    train = [0, 1, 2, 3, 0, 1, 4]
    rows = [[0, 1, 2], [0, 9, 1]]
    masks = measure.unseen_context_mask(train, rows, size=2)
    assert [m.tolist() for m in masks] == [[False, False], [False, True]]  # contexts (0,), (0,1) | (0,), (0,9)
    with pytest.raises(ValueError, match="size"):
        measure.unseen_context_mask(train, rows, size=0)
    with pytest.raises(TypeError, match="list of id sequences"):
        measure.unseen_context_mask(train, [0, 1, 2], size=1)


# --- Zipf -------------------------------------------------------------------------------------------

def test_rank_frequency_and_exact_power_law():
    tokens = [w for r, w in enumerate("abcdefgh", start=1) for _ in range(840 // r)]
    rf = measure.rank_frequency(tokens)
    assert rf.tokens[:3] == ["a", "b", "c"] and rf.counts[0] == 840 and rf.total == len(tokens)
    fit = measure.fit_zipf(rf)
    assert fit.slope == pytest.approx(-1.0, abs=0.01) and fit.r2 > 0.999
    np.testing.assert_allclose(fit.predict([1, 2]), [840, 420], rtol=0.02)
    with pytest.raises(ValueError, match="min_rank"):
        measure.fit_zipf(rf, min_rank=5, max_rank=3)
    with pytest.raises(TypeError, match="split it first"):
        measure.rank_frequency("a b c")
    with pytest.raises(ValueError, match="empty"):
        measure.rank_frequency([])


def test_zipf_on_the_toy_language(lang):
    rf = measure.rank_frequency(w for s in lang.sentences(2000, seed=3) for w in s)
    fit = measure.fit_zipf(rf)
    assert -1.6 < fit.slope < -0.6
    fig = measure.zipf_figure(rf, fit)
    assert fig.layout.xaxis.type == "log" and len(fig.data) == 2
    assert "slope" in viz.alt_text(fig)


# --- tokens -----------------------------------------------------------------------------------------

def test_tokenization_lengths(lang, words):
    text = lang.text(300, seed=4)
    toks = {"chars": CharTokenizer.from_text(text), "bpe": BPETokenizer.train(text, 60), "words": words}
    sentences = lang.sentences(30, seed=5)
    rows = {r["name"]: r for r in measure.tokenization_lengths(toks, sentences)}
    n_words = sum(len(s) for s in sentences)
    assert rows["words"]["tokens"] == n_words and rows["words"]["tokens_per_word"] == 1.0
    assert rows["chars"]["tokens"] == sum(len(" ".join(s)) for s in sentences)
    assert rows["chars"]["tokens_per_sentence"] > rows["bpe"]["tokens_per_sentence"] > rows["words"]["tokens_per_sentence"]
    assert all(r["unknown"] == 0 for r in rows.values())
    fig = measure.tokenization_figure(list(rows.values()))
    assert list(fig.data[0].x) == sorted(r["vocab_size"] for r in rows.values())
    with pytest.raises(ValueError, match="non-empty dict"):
        measure.tokenization_lengths({}, sentences)


# --- distributions and figures ----------------------------------------------------------------------

def test_next_word_distribution_for_ngram_and_neural(corpus, words):
    _, _, ids = corpus
    lm = NGramLM(2, vocab_size=words.vocab_size).fit(ids)
    dist = measure.next_word_distribution(lm, words, ". the")
    assert abs(sum(dist.values()) - 1) < 1e-9
    assert list(dist.values()) == sorted(dist.values(), reverse=True)
    expected = lm.next_distribution([words.token_to_id("the")])
    assert dist["dog"] == pytest.approx(expected[words.token_to_id("dog")])
    torch.manual_seed(0)
    mlp = MLPLM(MLPConfig(vocab_size=words.vocab_size, window=2, d_embed=8, d_hidden=16))
    dist = measure.next_word_distribution(mlp, words, ["the", "dog"])
    assert abs(sum(dist.values()) - 1) < 1e-5
    with pytest.raises(ValueError, match="empty"):
        measure.next_word_distribution(lm, words, "")
    with pytest.raises(TypeError, match="NGramLM or an lmlab neural model"):
        measure.next_word_distribution(object(), words, "the")


def test_distribution_bars_orders_by_the_last_distribution():
    fig = measure.distribution_bars({"model": {"a": 0.7, "b": 0.3}, "exact": {"b": 0.6, "c": 0.4}}, k=3,
                                    context="x y")
    assert [tr.name for tr in fig.data] == ["model", "exact"]
    assert list(fig.data[1].customdata) == ["b", "c", "a"]
    assert list(fig.data[0].y) == [0.3, 0.0, 0.7]
    assert "after “x y”" in viz.alt_text(fig)
    with pytest.raises(ValueError, match="non-empty"):
        measure.distribution_bars({})


def test_sampling_figure_has_one_slider_step_per_draw(lang):
    steps, prefix = [], []
    rng = np.random.default_rng(1)
    while not prefix or prefix[-1] != ".":
        dist = lang.next_token_distribution(prefix)
        word = str(rng.choice(list(dist), p=list(dist.values())))
        steps.append((list(prefix), dist, word))
        prefix.append(word)
    fig = measure.sampling_figure(steps, k=5)
    assert not fig.frames  # no animation frames: the page opens on step 1
    slider = fig.layout.sliders[0]
    assert len(slider.steps) == len(steps) and slider.active == 0
    assert list(fig.data[0].customdata) == list(slider.steps[0].args[0]["customdata"][0])
    for slider_step, (_, dist, word) in zip(slider.steps, steps):
        data, layout = slider_step.args
        shown, colors = data["customdata"][0], data["marker.color"][0]
        assert word in shown  # the drawn word is always shown ...
        assert colors[list(shown).index(word)] == viz.OKABE_ITO["vermillion"]  # ... highlighted
        assert f"drew “{word}”" in layout["title.text"]
    assert " ".join(prefix) in viz.alt_text(fig)
    with pytest.raises(ValueError, match="not in its distribution"):
        measure.sampling_figure([([], {"a": 1.0}, "b")])


def test_surprisal_figure_and_sparsity_figure():
    fig = measure.surprisal_figure(["a", "b"], {"m1": [0.5, 1.5], "m2": np.array([0.1, 0.2])})
    assert len(fig.data) == 2 and "mean 1.00" in fig.data[0].name
    with pytest.raises(ValueError, match="2 tokens"):
        measure.surprisal_figure(["a", "b"], {"m": [1.0]})
    rates = {"small": [{"n": 1, "unseen_context": 0.0}, {"n": 2, "unseen_context": 0.5}]}
    fig = measure.sparsity_figure(rates)
    assert list(fig.data[0].y) == [0.0, 50.0]
    with pytest.raises(ValueError, match="metric"):
        measure.sparsity_figure(rates, metric="other")


# --- scores -----------------------------------------------------------------------------------------

def test_order_figure():
    fig = measure.order_figure({"a": [3.0, 2.0, 1.5], "b": [3.0, 2.5, 2.4]}, floor=1.0, legend="lower left")
    assert [tr.name for tr in fig.data] == ["a", "b"] and list(fig.data[0].x) == [1, 2, 3]
    assert fig.layout.legend.x == 0.02 and fig.layout.xaxis.dtick == 1
    assert "entropy floor" in viz.alt_text(fig)
    fig = measure.order_figure({"a": [2.0, 1.0]}, orders=[3, 5])
    assert list(fig.data[0].x) == [3, 5]
    with pytest.raises(ValueError, match="2 values for 3 orders"):
        measure.order_figure({"a": [2.0, 1.0]}, orders=[1, 2, 3])
    with pytest.raises(ValueError, match="legend"):
        measure.order_figure({"a": [1.0]}, legend="middle")


def test_score_nll_by_hand():
    s = measure.score_nll([np.array([1.0, 2.0]), np.array([3.0])], name="m")
    assert s.cross_entropy == pytest.approx(2.0) and s.perplexity == pytest.approx(math.exp(2.0))
    assert s.n_tokens == 3 and s.n_sentences == 2 and s.zeros == 0
    assert "nats per token" in str(s) and s.unit == "token"
    assert "nats per word" in str(measure.score_nll([np.array([1.0])], unit="word"))
    inf = measure.score_nll([np.array([1.0, np.inf])])
    assert math.isinf(inf.cross_entropy) and math.isinf(inf.perplexity) and inf.zeros == 1
    with pytest.raises(ValueError, match=">= 0"):
        measure.score_nll([np.array([-1.0])])
    with pytest.raises(ValueError, match="empty"):
        measure.score_nll([])


def test_evaluate_ngram_matches_evaluate_sentences_and_is_memoised(corpus, words):
    _, test, ids = corpus
    lm = NGramLM(3, vocab_size=words.vocab_size).fit(ids)
    score = measure.evaluate(lm, words, test, name="3-gram")
    direct = evaluate_sentences(lm, words, test)
    np.testing.assert_allclose(np.concatenate(score.token_nll), np.concatenate(direct))
    assert measure._memo(lm) is measure._memo(lm)  # reused while the model is unchanged
    lm.fit(ids[: len(ids) // 2])                   # refitting replaces the counts: the cache must go
    refit = measure.evaluate(lm, words, test)
    np.testing.assert_allclose(np.concatenate(refit.token_nll), np.concatenate(evaluate_sentences(lm, words, test)))
    assert refit.cross_entropy != score.cross_entropy


def test_exact_score_sits_on_the_floor(lang):
    sentences = lang.sentences(600, seed=8)
    exact = measure.exact_score(lang, sentences)
    floor = lang.entropy_rate()
    assert abs(exact.cross_entropy - floor) < 3 * exact.se


def test_unsmoothed_counts_give_infinite_perplexity(corpus, words):
    _, test, ids = corpus
    mle = NGramLM(3, vocab_size=words.vocab_size, smoothing="add-k", k=0.0).fit(ids)
    score = measure.evaluate(mle, words, test)
    assert score.zeros > 0 and math.isinf(score.cross_entropy)
    kn = measure.evaluate(NGramLM(3, vocab_size=words.vocab_size).fit(ids), words, test)
    assert kn.zeros == 0 and math.isfinite(kn.cross_entropy)


def test_comparison_table(corpus, lang, words):
    _, test, ids = corpus
    scores = [measure.evaluate(NGramLM(n, vocab_size=words.vocab_size).fit(ids), words, test, name=f"{n}-gram")
              for n in (1, 2)]
    exact = measure.exact_score(lang, test)
    floor = lang.entropy_rate()
    table = measure.comparison_table(scores + [exact], floor)
    assert [r["model"] for r in table.rows] == ["1-gram", "2-gram", "exact (the grammar)"]
    assert table.row("2-gram")["gap"] == pytest.approx(scores[1].cross_entropy - floor)
    assert table.row("1-gram")["gap"] > table.row("2-gram")["gap"] > 0
    html = table._repr_html_()
    assert html.count("<tr>") == 1 + 3 + 1 and "entropy floor" in html
    assert "2-gram" in str(table)
    fig = measure.comparison_figure(table)
    assert list(fig.data[0].x) == ["1-gram", "2-gram", "exact (the grammar)"]
    assert table.unit == "word" and "nats per word" in html
    with pytest.raises(ValueError, match="different texts"):
        measure.comparison_table([scores[0], measure.exact_score(lang, test[:5])], floor)
    per_token = measure.score_nll(scores[0].token_nll, name="same numbers, per token", unit="token")
    with pytest.raises(ValueError, match="different units"):
        measure.comparison_table([scores[0], per_token], floor)
    with pytest.raises(KeyError, match="no row"):
        table.row("MLP")


def test_perplexity_helper():
    assert measure.perplexity(0.0) == 1.0
    assert measure.perplexity(math.log(8)) == pytest.approx(8.0)
    with pytest.raises(TypeError):
        measure.perplexity("2")


# --- the checker ------------------------------------------------------------------------------------

def _ppl_ok(n, train, test, vocab_size):
    lm = NGramLM(n, vocab_size=vocab_size).fit(train)
    return math.exp(-np.concatenate([lm.token_logprobs(s) for s in test]).mean())


def _ppl_log(n, train, test, vocab_size):
    return math.log(_ppl_ok(n, train, test, vocab_size))


def _ppl_on_train(n, train, test, vocab_size):
    return _ppl_ok(n, train, train, vocab_size)


def _ppl_per_sentence(n, train, test, vocab_size):
    lm = NGramLM(n, vocab_size=vocab_size).fit(train)
    return float(np.mean([math.exp(-lm.token_logprobs(s).mean()) for s in test]))


def _ppl_off_by_one(n, train, test, vocab_size):
    return _ppl_ok(n + 1, train, test, vocab_size)


def _ppl_add_one(n, train, test, vocab_size):
    lm = NGramLM(n, vocab_size=vocab_size, smoothing="add-k").fit(train)
    return math.exp(-np.concatenate([lm.token_logprobs(s) for s in test]).mean())


def _ppl_todo(n, train, test, vocab_size):
    raise NotImplementedError


@pytest.mark.parametrize("fn, expected", [
    (_ppl_log, "you return the cross-entropy"),
    (_ppl_on_train, "you score the training sequences"),
    (_ppl_per_sentence, "you average the perplexities of the sentences"),
    (_ppl_off_by_one, "perplexity of the 2-gram model"),
    (_ppl_add_one, "add-one smoothing"),
    (_ppl_todo, "not attempted yet"),
])
def test_check_ngram_perplexity_names_the_mistake(capsys, fn, expected):
    assert bool(measure.check_ngram_perplexity(fn)) is False
    assert expected in capsys.readouterr().out


def test_check_ngram_perplexity_passes_the_reference(capsys):
    assert bool(measure.check_ngram_perplexity(_ppl_ok)) is True
    assert "correct on all 3 hidden tests" in capsys.readouterr().out
