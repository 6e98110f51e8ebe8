"""lmlab.experiments: chapter 5's experiments (batches, loss, backprop, sweeps, lottery ticket, copying)."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmlab import corpus, data, viz
from lmlab import experiments as ex
from lmlab.tokenizers import WordTokenizer
from lmlab.train import TrainConfig


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LMLAB_BOOK", raising=False)
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


@pytest.fixture(scope="module")
def rows(lang, tok):
    return (ex.training_rows(lang.sentences(600, seed=1), tok, 20),
            ex.training_rows(lang.sentences(60, seed=2), tok, 20))


def tiny(tok, seed=0, **kw):
    return ex.tiny_transformer(tok.vocab_size, d_model=8, n_layer=1, n_head=2, context=20, seed=seed, **kw)


def verdict(capsys, checker, fn):
    result = checker(fn)
    return result, capsys.readouterr().out


# --- batches and the loss ----------------------------------------------------------------------------

def test_training_rows_hold_whole_sentences_after_a_full_stop(lang, tok):
    sentences = lang.sentences(50, seed=3)
    r = ex.training_rows(sentences, tok, 20)
    assert r.shape[1] == 21 and r.dtype == torch.long
    assert (r[:, 0] == tok.token_to_id(".")).all()
    words = [tok.id_to_token(int(i)) for row in r for i in row[1:] if int(i) != tok.pad_id]
    assert words == [w for s in sentences for w in s]          # every sentence, in order, none cut
    for row in r:                                              # each row ends a sentence before its padding
        real = [int(i) for i in row if int(i) != tok.pad_id]
        assert tok.id_to_token(real[-1]) == "."
    with pytest.raises(ValueError, match="context"):
        ex.training_rows(sentences, tok, 0)
    with pytest.raises(ValueError, match="max_len"):
        ex.training_rows([["the"] * 30 + ["."]], tok, 10)


def test_batch_table_shows_inputs_targets_and_unscored_positions(tok):
    x = torch.tensor([tok.encode_tokens(". the dog barks".split())])
    y = torch.tensor([tok.encode_tokens("the dog barks .".split())])
    y[0, 1] = -100
    table = ex.batch_table(x, y, tok)
    lines = table.splitlines()
    assert lines[0].split() == ["position", "input", "target"]
    assert lines[1].split() == ["0", ".", "the"]
    assert lines[2].split() == ["1", "the", "-"]
    table = ex.batch_table(x, y, tok, width=2, original=y.clamp_min(0))
    assert len(table.splitlines()) == 3 and "original" in table
    with pytest.raises(ValueError, match="batch, seq"):
        ex.batch_table(x, y[:, :2], tok)
    with pytest.raises(ValueError, match="row"):
        ex.batch_table(x, y, tok, row=3)


def test_loss_decomposition_is_entropy_plus_kl(lang, tok):
    p = lang.next_token_distribution("the dogs that the boy")
    vocab = tok.vocab
    exact = torch.zeros(len(vocab))
    for w, pw in p.items():
        exact[vocab.index(w)] = pw
    same = ex.loss_decomposition(p, exact, vocab)
    assert same["kl"] == pytest.approx(0.0, abs=1e-6)
    assert same["cross_entropy"] == pytest.approx(same["entropy"], abs=1e-6)
    assert same["entropy"] == pytest.approx(-sum(v * math.log(v) for v in p.values() if v > 0))
    uniform = torch.full((len(vocab),), 1 / len(vocab))
    parts = ex.loss_decomposition(p, uniform, vocab)
    assert parts["cross_entropy"] == pytest.approx(math.log(len(vocab)))
    assert parts["kl"] > 1 and parts["cross_entropy"] == pytest.approx(parts["entropy"] + parts["kl"])
    with pytest.raises(ValueError, match="vocab"):
        ex.loss_decomposition(p, uniform[:5], vocab)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ex.loss_decomposition({"zebra": 1.0}, uniform, vocab)


# --- backpropagation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backprop_by_hand_matches_autograd(seed):
    net = ex.TinyNet.create(d_in=4, hidden=5, classes=3, seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (7,), generator=g)
    loss, grads = ex.backprop_by_hand(net, x, y)
    loss_auto, auto = ex.autograd_gradients(net, x, y)
    assert loss == pytest.approx(loss_auto, rel=1e-12)
    assert loss == pytest.approx(float(F.cross_entropy(torch.tanh(x @ net.W1 + net.b1) @ net.W2 + net.b2, y)))
    for name, p in net.parameters().items():
        assert grads[name].shape == p.shape
        assert torch.allclose(grads[name], auto[name], atol=1e-12)
    assert net.num_parameters() == 4 * 5 + 5 + 5 * 3 + 3


def test_gradient_descent_by_hand_lowers_the_loss():
    net = ex.TinyNet.create(seed=0)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    first, _ = ex.backprop_by_hand(net, x, y)
    for _ in range(50):
        _, grads = ex.backprop_by_hand(net, x, y)
        for name, p in net.parameters().items():
            p -= 0.5 * grads[name]
    assert ex.backprop_by_hand(net, x, y)[0] < first / 3
    with pytest.raises(ValueError, match="activation"):
        ex.autograd_gradients(net, x, y, activation="sigmoid")


# --- untrained models, seeds ---------------------------------------------------------------------------

def test_untrained_transformer_is_near_uniform_and_causal(tok):
    model = ex.tiny_transformer(tok.vocab_size, d_model=32, context=20, seed=0)
    idx = torch.tensor([tok.encode_tokens(". the dogs that the boy feeds bark .".split())])
    report = ex.untrained_report(model, idx)
    assert report["future_weight"] == 0.0
    assert report["attention_max"] == pytest.approx(report["uniform_max"], abs=0.05)
    assert report["uniform_output"] == pytest.approx(math.log(tok.vocab_size))
    assert report["uniform_output"] - report["output_entropy"] < 0.05
    # a large initial scale makes attention peaked and outputs confident: the report can tell
    wild = ex.tiny_transformer(tok.vocab_size, d_model=32, context=20, seed=0, init_std=1.0)
    loud = ex.untrained_report(wild, idx)
    assert loud["attention_max"] > report["attention_max"] + 0.1
    assert loud["output_entropy"] < report["output_entropy"] - 1.0


def test_tiny_transformer_is_deterministic_and_leaves_the_global_generator_alone(tok):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = tiny(tok, seed=5), tiny(tok, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(tiny(tok, seed=6).wte.weight, a.wte.weight)


def test_train_seeds_repeat_exactly_and_rows_loss_scores_every_target(tok, rows):
    train_rows, val_rows = rows
    cfg = TrainConfig(steps=6, batch_size=8, lr=1e-2, warmup_steps=2, eval_batches=0)
    runs = ex.train_seeds(lambda s: tiny(tok, s), [0, 1, 0], train_rows, val_rows, cfg, tokenizer=tok, progress=False)
    assert [r.seed for r in runs] == [0, 1, 0]
    assert runs[0].final_loss == runs[2].final_loss != runs[1].final_loss
    assert torch.equal(runs[0].initial["wte.weight"], tiny(tok, 0).wte.weight)
    assert not torch.equal(runs[0].initial["wte.weight"], runs[0].model.wte.weight)   # it trained
    # rows_loss is the mean cross-entropy over the non-padding targets
    model = runs[1].model
    x, y = val_rows[:, :-1], val_rows[:, 1:]
    with torch.no_grad():
        logits = model(x)
    keep = y != tok.pad_id
    want = float(F.cross_entropy(logits[keep], y[keep]))
    assert ex.rows_loss(model, val_rows, tok.pad_id) == pytest.approx(want, rel=1e-5)
    assert ex.rows_loss(model, val_rows, tok.pad_id, batch_size=7) == pytest.approx(want, rel=1e-5)
    assert ex.final_losses(runs) == [r.final_loss for r in runs]
    steps, mean = ex.mean_curve(runs[:2])
    assert steps == runs[0].history.step
    assert mean[-1] == pytest.approx((runs[0].history.train_loss[-1] + runs[1].history.train_loss[-1]) / 2)
    with pytest.raises(ValueError, match="validation"):
        ex.mean_curve(runs, which="validation")
    with pytest.raises(ValueError, match="seeds"):
        ex.train_seeds(lambda s: tiny(tok, s), [], train_rows, val_rows, cfg)


def test_silent_training_in_book_builds_prints_nothing(tok, rows, monkeypatch, capsys):
    monkeypatch.setenv("LMLAB_BOOK", "1")
    cfg = TrainConfig(steps=2, batch_size=4, eval_batches=0)
    ex.train_seeds(lambda s: tiny(tok, s), [0], rows[0], rows[1], cfg, tokenizer=tok)
    assert capsys.readouterr().out == ""


def test_mean_and_spread():
    assert ex.mean_and_spread([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert ex.mean_and_spread([4.0]) == (4.0, 0.0)
    with pytest.raises(ValueError, match="empty"):
        ex.mean_and_spread([])


# --- the compute sweep ---------------------------------------------------------------------------------

def test_compute_sweep_spends_one_budget(tok, rows):
    budget = 2e7
    points = ex.compute_sweep(rows[0], rows[1], tok, budget, widths=[4, 8], seeds=[0, 1], batch_size=8)
    assert [(p.d_model, p.seed) for p in points] == [(4, 0), (4, 1), (8, 0), (8, 1)]
    for p in points:
        assert p.steps == max(1, round(budget / (p.n_params * 8 * 20)))
        assert p.tokens == p.steps * 8 * 20
        assert math.isfinite(p.val_loss) and len(p.curve[0]) == len(p.curve[1]) > 0
    small, large = points[0], points[2]
    assert small.n_params < large.n_params and small.steps > large.steps
    summary = ex.sweep_summary(points)
    assert [r["d_model"] for r in summary] == [4, 8]
    assert summary[0]["mean"] == pytest.approx((points[0].val_loss + points[1].val_loss) / 2)
    fig = ex.sweep_figure(points)
    assert len(fig.data) == 5 and "parameters" in viz.alt_text(fig)
    with pytest.raises(ValueError, match="budget"):
        ex.compute_sweep(rows[0], rows[1], tok, -1, widths=[4])
    with pytest.raises(ValueError, match="widths"):
        ex.compute_sweep(rows[0], rows[1], tok, 1e6, widths=[])
    with pytest.raises(ValueError, match="empty"):
        ex.sweep_figure([])


# --- the lottery ticket --------------------------------------------------------------------------------

def test_magnitude_masks_prune_exactly_the_smallest():
    w = {"a": torch.tensor([[0.1, -3.0, 0.5], [2.0, -0.2, 0.0]]), "b": torch.tensor([1.0, -1.0, 0.5, 4.0])}
    m = ex.magnitude_masks(w, 0.5)
    assert m["a"].tolist() == [[False, True, True], [True, False, False]]
    assert m["b"].tolist() == [False, True, False, True]        # tie at |1|: the earlier one is pruned
    assert all(mask.all() for mask in ex.magnitude_masks(w, 0.0).values())
    big = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    keep = ex.magnitude_masks({"w": big}, 0.9)["w"]
    assert int(keep.sum()) == 100 and big[keep].abs().min() >= big[~keep].abs().max()
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="sparsity"):
            ex.magnitude_masks(w, bad)
    with pytest.raises(TypeError, match="sparsity"):
        ex.magnitude_masks(w, "half")


def test_prune_and_rewind_uses_trained_magnitudes_and_initial_values():
    trained = {"w": torch.tensor([5.0, -0.1, 3.0, 0.2])}
    initial = {"w": torch.tensor([0.01, 0.02, 0.03, 0.04])}
    weights, masks = ex.prune_and_rewind(trained, initial, 0.5)
    assert masks["w"].tolist() == [True, False, True, False]
    assert weights["w"].tolist() == pytest.approx([0.01, 0.0, 0.03, 0.0])
    with pytest.raises(ValueError, match="same tensors"):
        ex.prune_and_rewind(trained, {"v": initial["w"]}, 0.5)


def test_train_with_masks_keeps_pruned_weights_at_zero(tok, rows):
    model = tiny(tok)
    weights = ex.prunable_weights(model)
    assert set(weights) == {"blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight", "blocks.0.mlp.fc.weight",
                            "blocks.0.mlp.proj.weight"}
    masks = ex.magnitude_masks(weights, 0.8)
    cfg = TrainConfig(steps=5, batch_size=8, lr=3e-2, warmup_steps=0, eval_batches=0)
    ex.train_with_masks(model, masks, rows[0], rows[1], cfg, tokenizer=tok, progress=False)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert (params[name][~mask] == 0).all() and (params[name][mask] != 0).all()
    with pytest.raises(ValueError, match="no parameter"):
        ex.apply_masks(model, {"nope": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="no block weight"):
        ex.prunable_weights(nn.Linear(2, 2))


def test_lottery_ticket_compares_three_networks(tok, rows):
    cfg = TrainConfig(steps=8, batch_size=8, lr=1e-2, warmup_steps=2, eval_batches=0)
    make = lambda s: tiny(tok, s)  # noqa: E731
    dense = ex.train_seeds(make, [3], rows[0], rows[1], cfg, tokenizer=tok)[0]
    result = ex.lottery_ticket(make, 3, 0.75, rows[0], rows[1], cfg, dense=dense, tokenizer=tok)
    assert result.dense == dense.final_loss
    assert result.kept == sum(round(0.25 * w.numel()) for w in ex.prunable_weights(make(3)).values())
    assert result.prunable == sum(w.numel() for w in ex.prunable_weights(make(3)).values())
    assert all(math.isfinite(v) for v in (result.ticket, result.random_init))
    assert result.ticket != result.random_init
    assert set(result.histories) == {"dense", "ticket", "random_init"}
    again = ex.lottery_ticket(make, 3, 0.75, rows[0], rows[1], cfg, tokenizer=tok)    # trains its own dense net
    assert (again.dense, again.ticket, again.random_init) == (result.dense, result.ticket, result.random_init)
    with pytest.raises(ValueError, match="seed 3"):
        ex.lottery_ticket(make, 4, 0.75, rows[0], rows[1], cfg, dense=dense, tokenizer=tok)
    fig = ex.lottery_figure([result, again])
    assert len(fig.data) == 6 and "75% sparsity" in viz.alt_text(fig)


# --- copying -------------------------------------------------------------------------------------------

def test_copy_sentences_are_the_languages_own(lang):
    s = ex.copy_sentence(random.Random(0))
    assert s[:3] == ["the", "code", "is"] and s[6] == "," and s[3:6] == s[7:10] and s[-1] == "."
    # exactly the grammar's copy sentences: p_code times 1/12 per syllable
    assert lang.sentence_logprob(s) == pytest.approx(math.log(0.02) + 3 * math.log(1 / 12))
    long = ex.copy_sentence(random.Random(0), 4)
    assert len(long) == 13 and long[3:7] == long[8:12]
    with pytest.raises(ValueError):
        lang.sentence_logprob(long)           # four syllables: never in the language
    mixed = ex.copy_enriched_sentences(lang, 200, share=0.25, seed=1)
    assert len(mixed) == 200 and sum(s[:2] == ["the", "code"] for s in mixed) >= 50
    assert mixed == ex.copy_enriched_sentences(lang, 200, share=0.25, seed=1)
    with pytest.raises(ValueError, match="share"):
        ex.copy_enriched_sentences(lang, 10, share=1.0)


@pytest.mark.parametrize("k", [3, 4])
def test_copy_probe_positions(lang, tok, k):
    probe = ex.copy_probe(lang, tok, n=12, context=24, code_length=k)
    assert probe.idx.shape == (12, 24) and probe.queries.shape == probe.sources.shape == (12, k)
    for i, toks in enumerate(probe.tokens):
        assert len(toks) <= 24 and toks[0] == "."
        for q, s, t in zip(probe.queries[i], probe.sources[i], probe.targets[i]):
            assert int(probe.idx[i, q + 1]) == int(t) == int(probe.idx[i, s])   # next token = its first copy
            assert int(q + 1 - s) == k + 1
    with pytest.raises(ValueError, match="context"):
        ex.copy_probe(lang, tok, context=8)


class OracleCopier(nn.Module):
    """Attends from every position to the one ``k`` back and predicts the token found there."""

    def __init__(self, vocab_size: int, k: int):
        super().__init__()
        self.k, self.vocab_size = k, vocab_size
        self.config = type("C", (), {"n_layer": 1, "vocab_size": vocab_size})()

    def forward(self, idx):
        logits = torch.zeros(*idx.shape, self.vocab_size)
        source = idx.roll(self.k, dims=1)
        return logits.scatter(-1, source[..., None], 30.0)

    def run_with_cache(self, idx):
        T = idx.shape[1]
        pattern = torch.zeros(idx.shape[0], 2, T, T)
        for t in range(T):
            pattern[:, 0, t, max(0, t - self.k)] = 1.0        # head 0 looks k back, head 1 at itself
            pattern[:, 1, t, t] = 1.0
        return self(idx), {"blocks.0.attn.pattern": pattern}


def test_repeat_loss_and_copy_scores_tell_a_copier_from_a_guesser(lang, tok):
    probe = ex.copy_probe(lang, tok, n=16, context=24)
    copier = OracleCopier(tok.vocab_size, 3)
    assert ex.repeat_loss(copier, probe) < 1e-6
    assert ex.copy_scores(copier, probe).tolist() == [[1.0, 0.0]]
    probe4 = ex.copy_probe(lang, tok, n=16, context=24, code_length=4)
    assert ex.repeat_loss(copier, probe4) > 10                  # a fixed-distance copier fails on longer codes
    fresh = ex.tiny_transformer(tok.vocab_size, d_model=8, n_layer=1, n_head=2, context=24, seed=0)
    assert ex.repeat_loss(fresh, probe) == pytest.approx(math.log(tok.vocab_size), abs=0.3)
    scores = ex.copy_scores(fresh, probe)
    assert scores.shape == (1, 2) and (scores < 0.3).all()


def test_copy_tracker_records_during_training(lang, tok):
    probe = ex.copy_probe(lang, tok, n=8, context=24)
    ids = data.stream_ids(ex.copy_enriched_sentences(lang, 200, 0.5, seed=0), tok)
    model = ex.tiny_transformer(tok.vocab_size, d_model=8, n_layer=2, n_head=2, context=24, seed=0)
    tracker = ex.CopyTracker(model, probe, every=3)
    from lmlab.train import train
    train(model, ids, None, TrainConfig(steps=7, batch_size=4, eval_batches=0), progress=False, callback=tracker)
    assert tracker.steps == [0, 3, 6]
    assert len(tracker.losses) == 3 and all(s.shape == (2, 2) for s in tracker.scores)
    assert tracker.losses[-1] < tracker.losses[0]
    tracker.steps, tracker.losses = [0, 10, 20, 30, 40], [5.0, 2.5, 2.0, 1.0, 0.1]
    tracker.scores = [np.zeros((2, 2))] * 4 + [np.array([[0.1, 0.2], [0.9, 0.3]])]
    assert tracker.jump() == (20, 30)
    assert tracker.best_head == (1, 0)
    fig = ex.emergence_figure({"seed 0": tracker})
    assert len(fig.data) == 2 and "falling between steps 20 and 30" in viz.alt_text(fig)
    heat = ex.head_scores_figure(tracker.scores[-1])
    assert "layer 1, head 0 at 0.90" in viz.alt_text(heat)
    with pytest.raises(ValueError, match="layers, heads"):
        ex.head_scores_figure(np.zeros(3))


# --- exercises -----------------------------------------------------------------------------------------

def test_descend_is_geometric():
    w = ex.descend(2.0, 0.1, 5, curvature=4.0)
    assert w == pytest.approx([2.0 * 0.6 ** t for t in range(6)])
    assert abs(ex.descend(1.0, 0.6, 10, 4.0)[-1]) > 1                 # above 2 / curvature it diverges


def relu_backprop_ok(x, y, W1, b1, W2, b2):
    a = x @ W1 + b1
    h = torch.relu(a)
    q = torch.softmax(h @ W2 + b2, -1)
    dz = (q - F.one_hot(y, q.shape[-1])) / len(y)
    da = (dz @ W2.T) * (a > 0)
    return {"W1": x.T @ da, "b1": da.sum(0), "W2": h.T @ dz, "b2": dz.sum(0)}


def test_check_relu_backprop(capsys):
    assert verdict(capsys, ex.check_relu_backprop, relu_backprop_ok)[0]

    def tanh_grad(x, y, W1, b1, W2, b2):
        a = x @ W1 + b1
        h = torch.relu(a)
        q = torch.softmax(h @ W2 + b2, -1)
        dz = (q - F.one_hot(y, q.shape[-1])) / len(y)
        da = (dz @ W2.T) * (1 - h ** 2)
        return {"W1": x.T @ da, "b1": da.sum(0), "W2": h.T @ dz, "b2": dz.sum(0)}

    def unscaled(x, y, *p):
        return {k: v * len(y) for k, v in relu_backprop_ok(x, y, *p).items()}

    def no_target(x, y, W1, b1, W2, b2):
        a = x @ W1 + b1
        h = torch.relu(a)
        dz = torch.softmax(h @ W2 + b2, -1) / len(y)
        da = (dz @ W2.T) * (a > 0)
        return {"W1": x.T @ da, "b1": da.sum(0), "W2": h.T @ dz, "b2": dz.sum(0)}

    def wrong_axis(x, y, *p):
        g = relu_backprop_ok(x, y, *p)
        return {**g, "b2": g["b2"][None].expand(len(y), -1)}

    def todo(*args):
        raise NotImplementedError

    cases = [(tanh_grad, "tanh's derivative"), (unscaled, "N times too large"), (no_target, "p - onehot"),
             (wrong_axis, "has shape"), (lambda *a: None, "returned NoneType"), (todo, "not attempted yet")]
    for fn, message in cases:
        ok, out = verdict(capsys, ex.check_relu_backprop, fn)
        assert not ok and message in out, (message, out)


def test_check_gradient_descent(capsys):
    assert verdict(capsys, ex.check_gradient_descent, lambda w0, lr, n, c: ex.descend(w0, lr, n, c))[0]

    def ascent(w0, lr, n, c):
        w = [w0]
        for _ in range(n):
            w.append(w[-1] + lr * c * w[-1])
        return w

    def no_curvature(w0, lr, n, c):
        return ex.descend(w0, lr, n, 1.0)

    def no_start(w0, lr, n, c):
        return ex.descend(w0, lr, n, c)[1:]

    def frozen_gradient(w0, lr, n, c):
        return [w0 - t * lr * c * w0 for t in range(n + 1)]

    cases = [(ascent, "up the slope"), (no_curvature, "leave out the curvature"), (no_start, "starting point"),
             (frozen_gradient, "gradient at w0"), (lambda *a: 0.0, "return a list of numbers")]
    for fn, message in cases:
        ok, out = verdict(capsys, ex.check_gradient_descent, fn)
        assert not ok and message in out, (message, out)


def test_check_prune_and_rewind(capsys):
    assert verdict(capsys, ex.check_prune_and_rewind, ex.prune_and_rewind)[0]

    def no_rewind(trained, initial, s):
        w, m = ex.prune_and_rewind(trained, initial, s)
        return {k: trained[k] * m[k] for k in trained}, m

    def by_initial(trained, initial, s):
        return ex.prune_and_rewind(initial, initial, s)

    def keep_smallest(trained, initial, s):
        _, m = ex.prune_and_rewind(trained, initial, s)
        m = {k: ~v if s else v for k, v in m.items()}
        return {k: initial[k] * m[k] for k in m}, m

    def signed(trained, initial, s):
        m = ex.magnitude_masks({k: v - v.min() for k, v in trained.items()}, s)
        return {k: initial[k] * m[k] for k in m}, m

    def keep_fraction(trained, initial, s):
        return ex.prune_and_rewind(trained, initial, 1 - s if s else 0.0)

    def global_prune(trained, initial, s):
        allv = torch.cat([v.abs().flatten() for v in trained.values()])
        n = round(s * allv.numel())
        thr = torch.sort(allv).values[n - 1] if n else -1.0
        m = {k: v.abs() > thr for k, v in trained.items()}
        return {k: initial[k] * m[k] for k in m}, m

    cases = [(no_rewind, "keep the trained values"), (by_initial, "initial magnitude"),
             (keep_smallest, "keep the smallest"), (signed, "signed value"), (keep_fraction, "fraction removed"),
             (global_prune, "across all tensors"), (lambda t, i, s: t, "pair (weights, masks)")]
    for fn, message in cases:
        ok, out = verdict(capsys, ex.check_prune_and_rewind, fn)
        assert not ok and message in out, (message, out)

    def todo(*args):
        raise NotImplementedError

    ok, out = verdict(capsys, ex.check_prune_and_rewind, todo)
    assert not ok and "not attempted yet" in out
