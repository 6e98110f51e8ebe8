"""lmlab.variants: fair comparisons of architectural variants, probes, fine-tuning, exercise checkers.

Training here is tiny (a few steps of a one-layer model): the tests check behaviour (the same budget for
every variant, determinism, what the probes measure, what the checkers diagnose), not the chapter's
findings, which the chapter itself guards with claims.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmlab import corpus, variants as V
from lmlab.models import Transformer, sinusoidal_positions

TINY = V.Budget(steps=4, batch_size=4, train_sentences=200, eval_sentences=20, warmup_steps=1)
SMALL = {"n_layer": 1, "d_model": 16, "n_head": 2, "d_ff": 32}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LMLAB_BOOK", raising=False)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def fresh(causal=True, scale=0.0, **changes):
    """An untrained small model; ``scale`` adds noise of that size to every weight (away from the tiny init)."""
    torch.manual_seed(0)
    tok = V._tokenizer()
    model = Transformer(V.model_config(tok.vocab_size, causal, base=SMALL, **changes))
    if scale:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * scale)
    return model, tok


# --- configs and budgets ---------------------------------------------------------------------------

def test_glu_variants_get_two_thirds_of_the_width_so_parameters_match():
    vocab = V._tokenizer().vocab_size
    counts = {}
    for act in ("relu", "gelu", "gelu_tanh", "swiglu", "geglu", "reglu"):
        cfg = V.model_config(vocab, activation=act, bias=False)
        counts[act] = Transformer(cfg).num_parameters()
        assert cfg.d_ff == (85 if act in V.GLU else 128)
    # the GLU layer has three matrices of width 85 instead of two of width 128: within 1% of the others
    assert max(counts.values()) / min(counts.values()) < 1.01
    assert V.model_config(vocab, activation="swiglu", d_ff=64).d_ff == 64  # an explicit width is kept


def test_model_config_and_budget_reject_bad_values():
    with pytest.raises(TypeError, match="d_modle"):
        V.model_config(50, d_modle=8)
    with pytest.raises(ValueError, match="steps"):
        V.Budget(steps=0)
    with pytest.raises(ValueError, match="held-out"):
        V.Budget(data_seed=V.EVAL_SEED)
    with pytest.raises(ValueError, match="positoins"):
        V.compare("positoins", ["none"])
    with pytest.raises(ValueError, match="seeds"):
        V.compare("positions", ["none"], seeds=[0, 0])


def test_train_variant_is_deterministic_and_changes_only_the_named_field():
    a, _ = V.train_variant({"positions": "rotary"}, seed=3, budget=TINY, base=SMALL)
    b, _ = V.train_variant({"positions": "rotary"}, seed=3, budget=TINY, base=SMALL)
    c, _ = V.train_variant({"positions": "rotary"}, seed=4, budget=TINY, base=SMALL)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.config.positions == "rotary" and a.config.d_model == 16 and a.config.activation == V.BASE["activation"]
    assert torch.get_num_threads() == 1  # restored (the fixture set 1; Budget.threads=1 too)


def test_compare_returns_tidy_runs_with_mean_and_spread():
    comp = V.compare("activation", ["relu", "swiglu"], seeds=(0, 1), budget=TINY, base=SMALL,
                     probes={"constant": lambda m, t: 0.25})
    assert comp.labels == ["relu", "swiglu"] and comp.seeds == [0, 1] and len(comp.runs) == 4
    assert {"gap", "nll", "train_loss", "constant"} <= set(comp.metrics)
    for label in comp.labels:
        v = comp.values(label)
        assert v.shape == (2,) and np.all(np.isfinite(v))
        assert comp.mean(label) == pytest.approx(v.mean())
        assert comp.std(label) == pytest.approx(v.std(ddof=1))
        assert comp.values(label, "constant").tolist() == [0.25, 0.25]
        # gap = model loss - exact loss on the same held-out words
        run = comp.run(label, 0)
        assert run.metrics["gap"] == pytest.approx(run.metrics["nll"] - V._exact_nll("standard", 20, False))
        assert run.model.config.activation == label
    rows = comp.summary()
    assert [r["label"] for r in rows] == comp.labels and rows[0]["n"] == 2
    assert rows[0]["min"] <= rows[0]["mean"] <= rows[0]["max"]
    assert comp.ranking()[0] == comp.best() and set(comp.ranking(seed=1)) == set(comp.labels)
    assert comp.range_of_means() >= 0 and comp.spread() >= 0
    assert "relu" in comp.table() and "<table>" in comp._repr_html_()
    with pytest.raises(ValueError, match="gelu"):
        comp.values("gelu")
    fig = comp.figure(["gap", "nll"])
    assert len(fig.data) == 2 * (2 + 1)  # per panel: one trace per seed and the means
    assert "swiglu" in fig.layout.meta["alt"]


def test_a_masked_model_without_positions_is_blind_to_word_order():
    """Structural, so it holds untrained: both orders of the same words get the same prediction."""
    model, tok = fresh(causal=False, positions="none", scale=0.3)
    pairs = V.agreement_pairs(5)
    for a, b in pairs:
        assert sorted(a) == sorted(b) and a != b
        assert V.verb_number_preference(model, tok, a) == pytest.approx(V.verb_number_preference(model, tok, b),
                                                                           abs=1e-6)
    assert V.agreement_accuracy(model, tok, pairs) == 0.5
    assert V.order_accuracy(model, tok, V.shuffled_sentences(8)) == 0.5
    # with positions (or causal attention) the two orders are told apart
    rotary, _ = fresh(causal=False, positions="rotary", scale=0.3)
    a, b = pairs[0]
    assert V.verb_number_preference(rotary, tok, a) != pytest.approx(V.verb_number_preference(rotary, tok, b), abs=1e-6)
    causal, _ = fresh(causal=True, positions="none", scale=0.3)
    assert V.verb_number_preference(causal, tok, a) != pytest.approx(V.verb_number_preference(causal, tok, b), abs=1e-6)


def test_agreement_pairs_are_grammatical_and_the_exact_language_gets_them_all_right():
    lang = corpus.toy()
    sg, pl = V._verb_forms()
    for a, b in V.agreement_pairs(12, seed=3):
        for prefix, want in ((a, sg), (b, pl)):
            dist = lang.next_token_distribution(prefix)
            assert dist and sum(p for w, p in dist.items() if w in want) == pytest.approx(1.0)


def test_shuffled_sentences_keep_the_words_and_the_final_stop():
    for orig, shuf in V.shuffled_sentences(30, seed=1):
        assert sorted(orig) == sorted(shuf) and orig != shuf and shuf[-1] == "."
    assert V.shuffled_sentences(5, seed=2) == V.shuffled_sentences(5, seed=2)


# --- copying from context ------------------------------------------------------------------------

class Copier(torch.nn.Module):
    """A fake causal LM that predicts the token two places back... after the comma: a perfect copier."""

    causal = True

    def __init__(self, tok, L=3):
        super().__init__()
        self.tok, self.L = tok, L
        self.config = type("C", (), {"context_length": 32})()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.tok.vocab_size)
        comma = self.tok.token_to_id(",")
        for b in range(B):
            row = idx[b].tolist()
            c = row.index(comma)
            for t in range(T):
                if t >= c:  # predict the token at t + 1 = the one L + 1 places before it
                    src = t + 1 - (self.L + 1)
                    logits[b, t, row[src] if src < c else self.tok.token_to_id(".")] = 20.0
        return logits


def test_copy_probe_measures_first_half_and_repeat_separately():
    tok = V._tokenizer()
    codes = V.random_codes(20, seed=0)
    r = V.copy_probe(Copier(tok), tok, codes)
    assert r.repeat_accuracy == 1.0 and r.per_position == [1.0, 1.0, 1.0] and r.repeat_prob > 0.99
    assert r.first_accuracy < 0.2  # it predicts nothing useful before the comma (uniform logits: argmax 0)
    assert r.n == 20 and r.length == 3
    r2 = V.copy_probe(Copier(tok, L=2), tok, V.random_codes(10, length=2, seed=1))
    assert r2.per_position == [1.0, 1.0]
    with pytest.raises(ValueError, match="same length"):
        V.copy_probe(Copier(tok), tok, [("ka", "lo", "mu"), ("ka", "lo")])


def test_random_codes_are_distinct_and_avoid_the_excluded_ones():
    excluded = V.random_codes(100, seed=5)
    codes = V.random_codes(200, seed=6, exclude=excluded)
    assert len(set(codes)) == 200 and not set(codes) & set(excluded)
    assert V.random_codes(10, seed=6) == V.random_codes(10, seed=6)
    with pytest.raises(ValueError, match="n must be"):
        V.random_codes(12 ** 3 + 1)


def test_copy_prompt_is_a_sentence_of_the_language():
    lang = corpus.toy()
    words = V.copy_prompt(("ka", "lo", "mu"))[1:]
    assert lang.sentence_logprob(words) == pytest.approx(math.log(0.02 / 12 ** 3))


# --- fine-tuning -----------------------------------------------------------------------------------

def test_finetune_leaves_the_original_alone_and_records_both_languages():
    model, tok = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = V.finetune(model, tok, steps=6, lr=1e-2, eval_every=3, eval_sentences=10, train_sentences=100, seed=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert run.steps == [0, 3, 6] and len(run.gap_standard) == len(run.gap_shifted) == 3
    assert run.gap_shifted[-1] != run.gap_shifted[0]
    again = V.finetune(model, tok, steps=6, lr=1e-2, eval_every=3, eval_sentences=10, train_sentences=100, seed=1)
    assert again.gap_shifted == run.gap_shifted  # deterministic


def test_finetune_comparison_has_before_finetuned_and_scratch():
    model, tok = fresh(scale=0.3)  # stands in for a trained model: not what a fresh init gives
    comp, runs = V.finetune_comparison(model, tok, seeds=(0, 1), steps=4, eval_every=2, eval_sentences=10,
                                       train_sentences=100)
    assert comp.labels == ["before", "fine-tuned", "from scratch"]
    assert len(comp.values("before", "gap_shifted")) == 1 and len(comp.values("fine-tuned", "gap_shifted")) == 2
    assert [r.label for r in runs] == ["fine-tuned"] * 2 + ["from scratch"] * 2
    # the scratch runs start from a fresh model, not from the given one
    assert runs[2].gap_shifted[0] != pytest.approx(runs[0].gap_shifted[0])
    fig = V.finetune_curves(runs)
    assert len(fig.data) == 8 and "shifted" in fig.layout.meta["alt"]
    assert len(comp.figure(["gap_standard", "gap_shifted"]).data) == 2 * 3


# --- the residual stream ----------------------------------------------------------------------------

def test_logit_attribution_adds_up_to_the_logit():
    model, tok = fresh(positions="learned", scale=0.3)
    idx = torch.tensor([tok.encode(". the dogs near the boy")])
    parts = V.logit_attribution(model, idx, position=-1)
    names = [n for n, _ in parts]
    assert names[:2] == ["token embedding", "position embedding"]
    assert "attention 0" in names and "feed-forward 0" in names
    with torch.no_grad():
        all_logits = model(idx)[0]
    logits = all_logits[-1]
    top = int(logits.argmax())
    assert sum(v for _, v in parts) == pytest.approx(float(logits[top]), abs=1e-4)
    other = V.logit_attribution(model, idx, position=2, token=5)
    assert sum(v for _, v in other) == pytest.approx(float(all_logits[2, 5]), abs=1e-4)
    fig = V.attribution_figure(parts, token=tok.id_to_token(top))
    assert len(fig.data[0].y) == len(parts) + 1
    post, _ = fresh(norm="post")
    with pytest.raises(ValueError, match="pre-norm"):
        V.logit_attribution(post, idx)


# --- transformers ---------------------------------------------------------------------------------

def test_hf_tokenizer_matches_the_lmlab_ids_and_drives_a_converted_model():
    from lmlab import hub

    model, tok = fresh(activation="gelu_tanh")
    hf_tok = V.hf_tokenizer(tok)
    text = ". the dogs that the boy feeds bark ."
    enc = hf_tok(text, return_tensors="pt")
    assert enc["input_ids"][0].tolist() == tok.encode(text)
    assert hf_tok.decode(enc["input_ids"][0]) == text
    assert hf_tok("the blorf")["input_ids"][1] == tok.unk_id
    hf = hub.to_gpt2(model)
    with torch.no_grad():
        assert torch.allclose(hf(**enc).logits, model(enc["input_ids"]), atol=1e-5)
    with pytest.raises(TypeError, match="WordTokenizer"):
        V.hf_tokenizer("words")


# --- exercise checkers -----------------------------------------------------------------------------

def run_checker(checker, fn, capsys):
    ok = checker(fn)
    return ok, capsys.readouterr().out


def not_yet(*args):
    raise NotImplementedError


def sinusoidal_solution(n, d):
    return sinusoidal_positions(n, d)


def test_check_sinusoidal_positions(capsys):
    ok, out = run_checker(V.check_sinusoidal_positions, sinusoidal_solution, capsys)
    assert ok and "correct" in out
    ok, out = run_checker(V.check_sinusoidal_positions, not_yet, capsys)
    assert not ok and "not attempted yet" in out
    wrong = {
        "swapped": lambda n, d: V._sinusoidal_ref(n, d, swap=True),
        "first half": lambda n, d: V._sinusoidal_ref(n, d, halves=True),
        "2i/d": lambda n, d: V._sinusoidal_ref(n, d, exponent="i"),
        "start at 1": lambda n, d: V._sinusoidal_ref(n, d, start=1),
        "transposed": lambda n, d: V._sinusoidal_ref(n, d).T,
    }
    for expected, fn in wrong.items():
        ok, out = run_checker(V.check_sinusoidal_positions, fn, capsys)
        assert not ok and expected in out, (expected, out)


def rotate_solution(x, positions):
    d = x.shape[-1]
    freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    angle = positions.float()[:, None] * freq[None, :]
    x1, x2 = x[:, 0::2], x[:, 1::2]
    return torch.stack([x1 * angle.cos() - x2 * angle.sin(), x1 * angle.sin() + x2 * angle.cos()], dim=-1).flatten(-2)


def test_check_rotary(capsys):
    ok, out = run_checker(V.check_rotary, rotate_solution, capsys)
    assert ok and "correct" in out
    # the library's own rotary (batch, heads, seq, d) agrees with the reference on (seq, d)
    from lmlab.models import apply_rotary

    x, p = torch.randn(5, 8), torch.arange(5)
    assert torch.allclose(apply_rotary(x[None, None], p)[0, 0], rotate_solution(x, p), atol=1e-5)
    ok, out = run_checker(V.check_rotary, not_yet, capsys)
    assert not ok and "not attempted yet" in out
    wrong = {
        "clockwise": lambda x, p: V._rotary_ref(x, p, sign=-1.0),
        "GPT-NeoX": lambda x, p: V._rotary_ref(x, p, halves=True),
        "-2i/d": lambda x, p: V._rotary_ref(x, p, exponent="i"),
        "nothing turns": lambda x, p: V._rotary_ref(x, p, ignore_positions=True),
        "shape": lambda x, p: V._rotary_ref(x, p)[:, :2],
    }
    for expected, fn in wrong.items():
        ok, out = run_checker(V.check_rotary, fn, capsys)
        assert not ok and expected in out, (expected, out)


def swiglu_solution(x, w_gate, w_up, w_down):
    return (F.silu(x @ w_gate) * (x @ w_up)) @ w_down


def test_check_swiglu(capsys):
    ok, out = run_checker(V.check_swiglu, swiglu_solution, capsys)
    assert ok and "correct" in out
    ok, out = run_checker(V.check_swiglu, not_yet, capsys)
    assert not ok and "not attempted yet" in out
    wrong = {
        "original GLU": lambda x, g, u, d: (torch.sigmoid(x @ g) * (x @ u)) @ d,
        "ReGLU": lambda x, g, u, d: (F.relu(x @ g) * (x @ u)) @ d,
        "GeGLU": lambda x, g, u, d: (F.gelu(x @ g) * (x @ u)) @ d,
        "wrong projection": lambda x, g, u, d: (F.silu(x @ u) * (x @ g)) @ d,
        "never": lambda x, g, u, d: F.silu(x @ g) @ d,
        "raised": lambda x, g, u, d: x @ g @ g,
    }
    for expected, fn in wrong.items():
        ok, out = run_checker(V.check_swiglu, fn, capsys)
        assert not ok and expected in out, (expected, out)


def block_solution(x, attn, mlp, ln1, ln2):
    x = x + attn(ln1(x))
    return x + mlp(ln2(x))


def test_check_prenorm_block(capsys):
    ok, out = run_checker(V.check_prenorm_block, block_solution, capsys)
    assert ok and "correct" in out
    ok, out = run_checker(V.check_prenorm_block, not_yet, capsys)
    assert not ok and "not attempted yet" in out

    def post(x, attn, mlp, ln1, ln2):
        x = ln1(x + attn(x))
        return ln2(x + mlp(x))

    def parallel(x, attn, mlp, ln1, ln2):
        return x + attn(ln1(x)) + mlp(ln2(x))

    def no_residual(x, attn, mlp, ln1, ln2):
        return mlp(ln2(attn(ln1(x))))

    def normed(x, attn, mlp, ln1, ln2):
        x = ln1(x) + attn(ln1(x))
        return ln2(x) + mlp(ln2(x))

    for expected, fn in {"post-norm": post, "parallel": parallel, "residual connections are missing": no_residual,
                         "normalised stream": normed}.items():
        ok, out = run_checker(V.check_prenorm_block, fn, capsys)
        assert not ok and expected in out, (expected, out)


# --- probes as callables, figures of the copy analysis ------------------------------------------------

def test_order_and_agreement_probes_are_fixed_callables():
    model, tok = fresh(causal=False, positions="none", scale=0.3)
    order, agreement = V.order_probe(6), V.agreement_probe(4)
    assert order(model, tok) == 0.5 and agreement(model, tok) == 0.5
    causal, _ = fresh(positions="none", scale=0.3)
    assert order(causal, tok) == order(causal, tok)  # the same pairs every call


class FixedOffset(Copier):
    """A fake model whose attention (layer 0, head 1) always looks ``k`` words back: a positional copier."""

    def __init__(self, tok, k=3):
        super().__init__(tok, L=k)
        self.k = k
        self.config = type("C", (), {"context_length": 32, "n_layer": 1, "n_head": 2})()

    def run_with_cache(self, idx, names=None):
        B, T = idx.shape
        pattern = torch.zeros(B, 2, T, T)
        for q in range(T):
            pattern[:, 0, q, q] = 1.0
            pattern[:, 1, q, max(0, q - self.k)] = 1.0
        return self(idx), {"blocks.0.attn.pattern": pattern}


def test_induction_scores_and_attention_by_offset_find_a_fixed_offset_head():
    tok = V._tokenizer()
    model = FixedOffset(tok, k=3)
    scores = V.induction_scores(model, tok, V.random_codes(5, seed=1))
    assert scores.shape == (1, 2) and scores[0, 1] == pytest.approx(1.0) and scores[0, 0] == 0.0
    for L in (2, 3, 4):
        prof = V.attention_by_offset(model, tok, V.random_codes(5, length=L, seed=2), layer=0, head=1)
        assert prof.shape == (6,) and int(np.argmax(prof)) + 1 == 3
    assert V.induction_scores(model, tok, V.random_codes(5, length=4, seed=1))[0, 1] == 0.0  # 3 back is wrong for 4
    with pytest.raises(ValueError, match="head"):
        V.attention_by_offset(model, tok, V.random_codes(2), layer=0, head=5)
    fig = V.offset_figure({L: V.attention_by_offset(model, tok, V.random_codes(5, length=L), 0, 1) for L in (2, 3)},
                          layer=0, head=1)
    assert "peak 3 back (needed 2)" in fig.layout.meta["alt"]


def test_copy_figure_and_activation_figure():
    tok = V._tokenizer()
    results = [V.copy_probe(Copier(tok), tok, V.random_codes(10, seed=s)) for s in (0, 1)]
    fig = V.copy_figure(results)
    assert list(fig.data[0].y) == pytest.approx([0, 0, 0, 1, 1, 1]) and len(fig.data) == 3
    assert "chance is 0.083" in fig.layout.meta["alt"]
    with pytest.raises(TypeError, match="CopyResult"):
        V.copy_figure([0.5])
    act = V.activation_figure()
    assert len(act.data) == 5 and "ReLU" in act.layout.meta["alt"]
    relu = act.data[0]
    assert min(relu.y) == 0.0 and relu.y[-1] == pytest.approx(3.0)
