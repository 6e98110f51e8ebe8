"""lmlab.train: schedule, decay groups, learning on the toy language, determinism, checkpoints, resume."""
from __future__ import annotations

import json

import math

import pytest
import torch

from lmlab import corpus, data, train as T
from lmlab.models import MLPConfig, MLPLM, NGramLM, RNNConfig, RNNLM, Transformer, TransformerConfig
from lmlab.tokenizers import WordTokenizer


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LMLAB_BOOK", raising=False)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def toy():
    lang = corpus.toy()
    tok = WordTokenizer.for_toy(lang)
    train_ids = data.stream_ids(lang.sentences(3000, seed=1), tok)
    val_ids = data.stream_ids(lang.sentences(300, seed=2), tok)
    return tok, train_ids, val_ids


def gpt(tok, seed=0, causal=True, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=tok.vocab_size, context_length=16, n_layer=1, n_head=2, d_model=32, d_ff=64, causal=causal)
    cfg.update(kw)
    return Transformer(TransformerConfig(**cfg))


def small(**kw):
    args = dict(steps=40, batch_size=8, lr=3e-3, warmup_steps=5, eval_batches=2, device="cpu")
    args.update(kw)
    return T.TrainConfig(**args)


# --- schedule and optimizer ------------------------------------------------------------------------

def test_warmup_then_cosine_to_min_lr():
    cfg = T.TrainConfig(steps=200, lr=1e-3, min_lr=1e-4, warmup_steps=20)
    lrs = [T.lr_at(s, cfg) for s in range(200)]
    assert lrs[0] == pytest.approx(1e-3 / 21)
    assert lrs[19] == pytest.approx(1e-3 * 20 / 21)
    assert lrs[20] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4)
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:21]))             # rises during warmup
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))             # then only falls
    mid = 20 + (199 - 20) / 2                                           # halfway: the mean of lr and min_lr
    assert T.lr_at(int(mid), cfg) == pytest.approx(5.5e-4, rel=0.02)
    assert T.TrainConfig(lr=2e-3).final_lr == pytest.approx(2e-4)      # default min_lr: lr / 10


def test_decay_groups_follow_nanogpt(toy):
    tok, _, _ = toy
    model = gpt(tok)
    opt = T.make_optimizer(model, T.TrainConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert ids == {id(p) for p in model.parameters()}                    # every parameter once (tied ones too)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(ids)
    assert any(p is model.wte.weight for p in decay["params"])          # embeddings are matrices: they decay


# --- learning --------------------------------------------------------------------------------------

def test_causal_transformer_learns_the_toy_language(toy):
    tok, train_ids, val_ids = toy
    model = gpt(tok)
    hist = T.train(model, train_ids, val_ids, small(steps=200, batch_size=16, lr=1e-2, eval_every=100),
                   progress=False)
    uniform = math.log(tok.vocab_size)
    p = torch.bincount(train_ids, minlength=tok.vocab_size).double()
    p = p[p > 0] / p.sum()
    unigram = float(-(p * p.log()).sum())                               # the best loss without context
    assert hist.train_loss[0] > uniform - 0.3                         # starts near chance
    assert hist.final_val_loss < unigram - 0.5                        # and learns to use the context
    assert hist.val_step == [100, 200] and len(hist.val_loss) == 2
    assert hist.tokens_seen == 200 * 16 * 16 and hist.step[-1] == 200
    assert not model.training                                         # handed back in eval mode


@pytest.mark.parametrize("kind", ["masked", "mlp", "rnn"])
def test_every_neural_model_trains(toy, kind):
    tok, train_ids, val_ids = toy
    torch.manual_seed(0)
    if kind == "masked":
        model = gpt(tok, causal=False)
    elif kind == "mlp":
        model = MLPLM(MLPConfig(vocab_size=tok.vocab_size, window=3, d_embed=16, d_hidden=32, context_length=16))
    else:
        model = RNNLM(RNNConfig(vocab_size=tok.vocab_size, d_embed=16, d_hidden=32, context_length=16))
    cfg = small(steps=80, lr=1e-2, batch_size=16, eval_batches=10)  # masked: ~15% of positions are scored
    hist = T.train(model, train_ids, val_ids, cfg, tokenizer=tok, progress=False)
    assert hist.final_val_loss < math.log(tok.vocab_size) - 1.0


def test_masked_batches_only_score_masked_positions(toy):
    tok, train_ids, _ = toy
    batches = T._Batches(train_ids, "masked", 64, 16, 0.15, tok, torch.Generator().manual_seed(0))
    x, y = batches()
    rows = data.random_windows(train_ids, 64, 16, torch.Generator().manual_seed(0))  # the same windows
    chosen = y != -100
    assert 0.10 < chosen.float().mean() < 0.20
    assert torch.equal(y[chosen], rows[chosen])                     # targets: the original tokens
    assert torch.equal(x[~chosen], rows[~chosen])                   # the rest of the input is untouched
    assert 0.7 < (x[chosen] == tok.mask_id).float().mean() < 0.9    # about 80% of chosen become <mask>


# --- determinism and checkpoints -------------------------------------------------------------------

def test_training_is_deterministic_for_a_seed(toy):
    tok, train_ids, val_ids = toy
    runs = []
    for seed in (0, 0, 1):
        model = gpt(tok, seed=0, dropout=0.1)           # dropout draws from the seeded generator too
        hist = T.train(model, train_ids, val_ids, small(seed=seed), progress=False)
        runs.append((model.state_dict(), hist))
    (a, ha), (b, hb), (c, hc) = runs
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ha.train_loss == hb.train_loss and ha.val_loss == hb.val_loss
    assert not all(torch.equal(a[k], c[k]) for k in a)  # another seed draws other batches


class Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted_training(toy, tmp_path):
    tok, train_ids, val_ids = toy
    cfg = small(steps=30, checkpoint_every=10, eval_every=10, log_every=4)
    whole = gpt(tok, dropout=0.1)
    h_whole = T.train(whole, train_ids, val_ids, cfg, checkpoint=tmp_path / "whole.safetensors", progress=False)

    path = tmp_path / "part.safetensors"

    def stop_at_17(step, metrics):
        if step == 17:
            raise Interrupt

    part = gpt(tok, dropout=0.1)
    with pytest.raises(Interrupt):
        T.train(part, train_ids, val_ids, cfg, checkpoint=path, callback=stop_at_17, progress=False)
    resumed = gpt(tok, seed=123, dropout=0.1)  # other weights: the checkpoint must restore everything
    _ = torch.rand(5)                          # and the global generator state
    h_res = T.train(resumed, train_ids, val_ids, cfg, checkpoint=path, resume=True, progress=False)
    sa, sb = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert h_res.step == h_whole.step and h_res.train_loss == h_whole.train_loss
    assert h_res.val_loss == h_whole.val_loss and h_res.tokens == h_whole.tokens


def test_checkpoint_is_a_safetensors_file_with_the_whole_state(toy, tmp_path):
    from safetensors import safe_open

    tok, train_ids, val_ids = toy
    path = tmp_path / "ckpt.safetensors"
    T.train(gpt(tok), train_ids, val_ids, small(steps=5), checkpoint=path, progress=False)
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
    assert meta["step"] == "5" and meta["format"] == "lmlab-train-1"
    assert "model.wte.weight" in keys and "rng.batches" in keys and "rng.torch" in keys
    assert any(k.endswith(".exp_avg") for k in keys) and any(k.endswith(".exp_avg_sq") for k in keys)
    model = gpt(tok, seed=9)
    step, hist, _ = T.load_checkpoint(path, model)
    assert step == 5 and hist.step[-1] == 5


# --- the history, progress bars, build mode ------------------------------------------------------------

def test_history_plot_and_curves(toy):
    tok, train_ids, val_ids = toy
    hist = T.train(gpt(tok), train_ids, val_ids, small(steps=20, eval_every=10, log_every=5), progress=False)
    curves = hist.as_curves()
    assert curves["train"] == ([5, 10, 15, 20], hist.train_loss)
    assert curves["validation"] == ([10, 20], hist.val_loss)
    fig = hist.plot(floor=2.0)
    assert len(fig.data) >= 2 and fig.layout.meta and "alt" in fig.layout.meta
    assert T.History.from_dict(hist.to_dict()).train_loss == hist.train_loss
    assert hist.tokens_per_second > 0 and "val_loss" in repr(hist)


def test_book_build_prints_one_plain_progress_line(toy, monkeypatch, capsys):
    tok, train_ids, val_ids = toy
    monkeypatch.setenv("LMLAB_BOOK", "1")
    T.train(gpt(tok), train_ids, val_ids, small(steps=10), live=True)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "training" in out[0] and "10/10" in out[0] and "loss=" in out[0]


def test_live_curve_is_inert_outside_a_notebook(toy, capsys):
    tok, train_ids, val_ids = toy
    hist = T.train(gpt(tok), train_ids, val_ids, small(steps=5), live=True, progress=False)
    assert capsys.readouterr().out == "" and hist.step[-1] == 5


# --- arguments ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, word", [
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=1.5), TypeError, "steps"),
    (dict(lr=0), ValueError, "lr"),
    (dict(lr=1e-3, min_lr=1e-2), ValueError, "min_lr"),
    (dict(betas=(0.9, 1.5)), ValueError, "betas"),
    (dict(objective="causal"), ValueError, "objective"),
    (dict(grad_clip=-1), ValueError, "grad_clip"),
    (dict(device="tpu"), ValueError, "device"),
    (dict(mask_prob=0), ValueError, "mask_prob"),
])
def test_config_is_validated(kwargs, error, word):
    with pytest.raises(error, match=word):
        T.TrainConfig(**kwargs)


def test_bad_calls_are_rejected(toy):
    tok, train_ids, val_ids = toy
    with pytest.raises(TypeError, match="fit"):
        T.train(NGramLM(2, vocab_size=tok.vocab_size), train_ids, val_ids, small())
    with pytest.raises(ValueError, match="tokenizer"):
        T.train(gpt(tok, causal=False), train_ids, val_ids, small(), progress=False)
    with pytest.raises(ValueError, match="masked model"):
        T.train(gpt(tok), train_ids, val_ids, small(objective="masked"), progress=False)
    with pytest.raises(ValueError, match="context"):
        T.train(gpt(tok), train_ids, val_ids, small(context=64), progress=False)
    with pytest.raises(ValueError, match="fewer than one window"):
        T.train(gpt(tok), train_ids[:10], val_ids, small(), progress=False)
    with pytest.raises(TypeError, match="token ids"):
        T.train(gpt(tok), torch.rand(100), val_ids, small(), progress=False)
    with pytest.raises(ValueError, match="resume"):
        T.train(gpt(tok), train_ids, val_ids, small(), resume=True, progress=False)


def test_live_curve_redraws_in_place_in_a_kernel(tmp_path):
    """In a real kernel (nbclient) the live loss figure is one output, updated in place: not a new copy
    per update (plotly's own display drops the display id)."""
    import nbformat
    from nbclient import NotebookClient

    code = ("import os; os.environ.pop('LMLAB_BOOK', None)\n"
            "from lmlab import train as T\n"
            "live = T._LivePlot(True, floor=1.0)\n"
            "h = T.History()\n"
            "for step in (1, 2, 3):\n"
            "    h.step.append(step); h.train_loss.append(3.0 / step); h.tokens.append(10 * step); h.lr.append(1e-3); h.elapsed.append(0.1 * step)\n"
            "    live.update(h, force=True)\n"
            "print('updates done')\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    shown = [o for o in outputs if o.output_type in ("display_data", "execute_result")]
    assert [o.output_type for o in outputs if o.output_type == "stream"] == ["stream"], outputs
    assert len(shown) == 1, [o.output_type for o in outputs]
    data = shown[0].data
    figure = data.get("application/vnd.plotly.v1+json") or {}
    text = json.dumps(figure) if figure else str(data.get("text/html", ""))
    assert "Training loss (live)" in text and "1.5" in text, list(data)  # updated: loss 3/2 at step 2
