"""lmlab.models: n-gram, MLP, RNN and transformer LMs; every config option checked as a property."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from lmlab.models import (
    ACTIVATIONS, MLP, PRESETS, KVCache, MLPConfig, MLPLM, NGramLM, RNNConfig, RNNLM, Transformer,
    TransformerConfig, apply_rotary, sinusoidal_positions,
)

torch.set_num_threads(1)
V = 11


def tiny(**overrides) -> Transformer:
    """A tiny random transformer in eval mode (seeded)."""
    torch.manual_seed(overrides.pop("seed", 0))
    kw = dict(vocab_size=V, context_length=16, n_layer=2, n_head=2, d_model=8, d_ff=16)
    kw.update(overrides)
    return Transformer(TransformerConfig(**kw)).eval()


VARIANTS = [
    {}, {"positions": "sinusoidal"}, {"positions": "rotary"}, {"positions": "none"}, {"norm": "post"},
    {"activation": "swiglu"}, {"activation": "geglu", "bias": False}, {"activation": "reglu"},
    {"attention_only": True}, {"tie_weights": False, "activation": "relu"}, {"activation": "gelu_tanh"},
]


def ids(batch=2, seq=9, seed=1):
    return torch.randint(0, V, (batch, seq), generator=torch.Generator().manual_seed(seed))


# --- causal model: causality, attention paths, key-value cache ------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_future_tokens_do_not_change_past_logits(variant):
    model = tiny(**variant)
    x = ids()
    y = x.clone()
    y[:, 5:] = (y[:, 5:] + 3) % V  # change every token from position 5 on
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-3)


def test_masked_model_sees_both_sides():
    model = tiny(causal=False)
    x = ids()
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % V
    with torch.no_grad():
        assert not torch.allclose(model(x)[:, 0], model(y)[:, 0], atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS + [{"causal": False}, {"causal": False, "positions": "rotary"}])
def test_sdpa_and_explicit_attention_agree(variant):
    model = tiny(**variant)
    x = ids()
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[1, 6:] = False  # second row padded
    with torch.no_grad():
        for attention_mask in (None, mask):
            model.attn_impl = "sdpa"
            fast = model(x, attention_mask=attention_mask)
            model.attn_impl = "explicit"
            slow = model(x, attention_mask=attention_mask)
            cached, _ = model.run_with_cache(x, attention_mask=attention_mask)
            assert torch.allclose(fast, slow, atol=1e-5)
            assert torch.allclose(fast, cached, atol=1e-5)


def test_attention_mask_hides_padding():
    for causal in (True, False):
        model = tiny(causal=causal)
        x = ids(batch=1, seq=6)
        padded = torch.cat([x, torch.zeros(1, 3, dtype=torch.long)], dim=1)
        mask = torch.tensor([[True] * 6 + [False] * 3])
        with torch.no_grad():
            alone = model(x)
            both = model(padded, attention_mask=mask)
            assert not torch.isnan(both).any()
            assert torch.allclose(alone, both[:, :6], atol=1e-5)
            # without the mask a bidirectional model is disturbed by the padding
            if not causal:
                assert not torch.allclose(alone, model(padded)[:, :6], atol=1e-4)


@pytest.mark.parametrize("variant", [{}, {"positions": "rotary"}, {"positions": "sinusoidal"},
                                     {"norm": "post", "activation": "swiglu"}, {"positions": "none"}])
def test_kv_cache_equals_full_recomputation(variant):
    model = tiny(**variant)
    x = ids(seq=12)
    with torch.no_grad():
        full = model(x)
        cache = model.new_kv_cache()
        steps = [model(x[:, t:t + 1], kv_cache=cache) for t in range(12)]
        assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
        assert len(cache) == 12
        # chunks of several tokens after a cached prefix use the right causal mask and positions
        cache = model.new_kv_cache()
        chunks = [model(x[:, :4], kv_cache=cache), model(x[:, 4:5], kv_cache=cache), model(x[:, 5:], kv_cache=cache)]
        assert torch.allclose(torch.cat(chunks, dim=1), full, atol=1e-5)


def greedy(model, prompt, steps, use_cache):
    out = prompt
    cache = model.new_kv_cache() if use_cache else None
    nxt = prompt
    with torch.no_grad():
        for _ in range(steps):
            logits = model(nxt, kv_cache=cache) if use_cache else model(out)
            token = logits[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, token], dim=1)
            nxt = token if use_cache else out
    return out


def test_kv_cached_generation_equals_recomputation_token_for_token():
    model = tiny(positions="rotary", seed=3)
    prompt = ids(batch=3, seq=3)
    assert torch.equal(greedy(model, prompt, 12, True), greedy(model, prompt, 12, False))


def test_kv_cache_with_padding_mask_and_batch_tools():
    model = tiny()
    x = ids(batch=2, seq=8)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[0, 2] = False
    with torch.no_grad():
        full = model(x, attention_mask=mask)
        cache = model.new_kv_cache()
        part = [model(x[:, :5], kv_cache=cache, attention_mask=mask[:, :5]),
                model(x[:, 5:], kv_cache=cache, attention_mask=mask[:, 5:])]
        assert torch.allclose(torch.cat(part, 1), full, atol=1e-5)
        # reorder picks batch rows; crop forgets positions
        cache = model.new_kv_cache()
        model(x[:, :5], kv_cache=cache)
        cache.reorder(torch.tensor([1, 1]))
        step = model(x[1:, 5:6].repeat(2, 1), kv_cache=cache)
        assert torch.allclose(step[0], model(x[1:, :6])[0, -1:], atol=1e-5)
        cache.crop(3)
        assert len(cache) == 3
        again = model(x[1:, 3:6].repeat(2, 1), kv_cache=cache)
        assert torch.allclose(again[0], model(x[1:, :6])[0, 3:], atol=1e-5)


def test_kv_cache_errors():
    model = tiny(context_length=8)
    cache = model.new_kv_cache()
    model(ids(seq=6), kv_cache=cache)
    with pytest.raises(ValueError, match="context_length 8"):
        model(ids(seq=3), kv_cache=cache)
    with pytest.raises(ValueError, match="causal"):
        tiny(causal=False).new_kv_cache()
    with pytest.raises(TypeError, match="new_kv_cache"):
        model(ids(), kv_cache=KVCache(5))


# --- inspection --------------------------------------------------------------------------------------

def test_run_with_cache_names_and_shapes():
    model = tiny(n_layer=2, n_head=2, d_model=8, d_ff=16)
    x = ids(batch=2, seq=7)
    logits, cache = model.run_with_cache(x)
    B, T, D, H = 2, 7, 8, 2
    expect = {"embed": (B, T, D), "pos_embed": (B, T, D), "ln_final": (B, T, D), "logits": (B, T, V)}
    for l in range(2):
        expect.update({f"blocks.{l}.resid_pre": (B, T, D), f"blocks.{l}.attn.pattern": (B, H, T, T),
                       f"blocks.{l}.attn.out": (B, T, D), f"blocks.{l}.resid_mid": (B, T, D),
                       f"blocks.{l}.mlp.hidden": (B, T, 16), f"blocks.{l}.mlp.out": (B, T, D),
                       f"blocks.{l}.resid_post": (B, T, D), f"blocks.{l}.attn.z": (B, H, T, D // H)})
    for name, shape in expect.items():
        assert tuple(cache[name].shape) == shape, name
    assert list(cache) == model.hook_names()  # recorded in forward order
    assert torch.equal(cache["logits"], logits.detach())
    pattern = cache["blocks.1.attn.pattern"]
    assert torch.allclose(pattern.sum(-1), torch.ones(B, H, T), atol=1e-6)
    assert torch.all(pattern.triu(1) == 0)  # causal: nothing above the diagonal
    # the residual stream starts as token + position embeddings and each layer hands on to the next
    assert torch.allclose(cache["blocks.0.resid_pre"], cache["embed"] + cache["pos_embed"])
    assert torch.equal(cache["blocks.1.resid_pre"], cache["blocks.0.resid_post"])
    names = model.run_with_cache(x, names=["blocks.0.attn.pattern"])[1]
    assert list(names) == ["blocks.0.attn.pattern"]
    with pytest.raises(ValueError, match="unknown activation name"):
        model.run_with_cache(x, names=["blocks.9.attn.pattern"])


def test_ablating_a_neuron_equals_zeroing_its_weights():
    model = tiny()
    x = ids()

    def kill(h):
        h = h.clone()
        h[..., 3] = 0
        return h

    ablated = model.run_with_hooks(x, {"blocks.1.mlp.hidden": kill})
    edited = tiny()
    with torch.no_grad():
        edited.blocks[1].mlp.proj.weight[:, 3] = 0
        assert torch.allclose(ablated, edited(x), atol=1e-6)
        assert not torch.allclose(ablated, model(x), atol=1e-4)


def test_ablating_a_head_equals_zeroing_its_output_weights():
    model = tiny(n_head=2, d_model=8)

    def kill_head_1(z):  # (batch, heads, seq, d_head)
        z = z.clone()
        z[:, 1] = 0
        return z

    x = ids()
    ablated = model.run_with_hooks(x, {"blocks.0.attn.z": kill_head_1})
    edited = tiny(n_head=2, d_model=8)
    with torch.no_grad():
        edited.blocks[0].attn.proj.weight[:, 4:8] = 0  # head 1 writes through columns 4..7
        assert torch.allclose(ablated, edited(x), atol=1e-6)
    # patching a whole residual stream from another run carries that run's prediction
    y = ids(seed=7)
    logits_y, cache_y = model.run_with_cache(y)
    patched = model.run_with_hooks(x, {"blocks.1.resid_post": lambda r: cache_y["blocks.1.resid_post"]})
    assert torch.allclose(patched, logits_y, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        model.run_with_hooks(x, {"blocks.0.attn.pattern": lambda p: p[:, :1]})


# --- each config option as a property ------------------------------------------------------------------

def test_sinusoidal_positions_match_the_formula():
    n, d = 12, 10
    pe = sinusoidal_positions(n, d)
    for p in range(n):
        for i in range(d // 2):
            angle = p / 10000 ** (2 * i / d)
            assert math.isclose(pe[p, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(pe[p, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    model = tiny(positions="sinusoidal", d_model=10, context_length=12)
    _, cache = model.run_with_cache(ids(seq=12))
    assert torch.allclose(cache["pos_embed"][0], pe)
    assert not any("wpe" in name for name, _ in model.named_parameters())  # fixed, not learned


def test_rotary_scores_depend_only_on_offset():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m, n):
        return (apply_rotary(q, torch.tensor([m])) * apply_rotary(k, torch.tensor([n]))).sum().item()

    for m, n, shift in [(0, 3, 5), (7, 2, 11), (4, 4, 9)]:
        assert math.isclose(score(m, n), score(m + shift, n + shift), abs_tol=1e-4)
    assert not math.isclose(score(0, 3), score(0, 5), abs_tol=1e-3)
    # inside the model: the same token everywhere, so scores can only differ through positions
    model = tiny(positions="rotary", causal=False, n_layer=1)
    _, cache = model.run_with_cache(torch.full((1, 10), 4))
    s = cache["blocks.0.attn.scores"][0, 0]
    for offset in range(-9, 10):
        diag = torch.diagonal(s, offset)
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-5)
    assert not torch.allclose(s.diagonal(0)[0], s.diagonal(3)[0], atol=1e-4)  # but they do depend on it


def test_masked_model_without_positions_is_permutation_equivariant():
    x = ids(batch=2, seq=8)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model = tiny(causal=False, positions="none")
        assert torch.allclose(model(x)[:, perm], model(x[:, perm]), atol=1e-5)
        learned = tiny(causal=False, positions="learned")
        assert not torch.allclose(learned(x)[:, perm], learned(x[:, perm]), atol=1e-4)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_feed_forward_matches_hand_computation(activation):
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=V, d_model=4, n_head=1, d_ff=3, activation=activation)
    mlp = MLP(config)
    x = torch.randn(2, 5, 4)
    up = x @ mlp.fc.weight.T + mlp.fc.bias
    gelu = lambda u: 0.5 * u * (1 + torch.erf(u / math.sqrt(2)))
    gelu_tanh = lambda u: 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
    relu = lambda u: torch.where(u > 0, u, torch.zeros_like(u))
    silu = lambda u: u / (1 + torch.exp(-u))
    if activation in ("swiglu", "geglu", "reglu"):
        gate = x @ mlp.gate.weight.T + mlp.gate.bias
        hidden = {"swiglu": silu, "geglu": gelu, "reglu": relu}[activation](gate) * up
        assert mlp.gate.weight.shape == (3, 4)
    else:
        assert mlp.gate is None
        hidden = {"relu": relu, "gelu": gelu, "gelu_tanh": gelu_tanh}[activation](up)
    expected = hidden @ mlp.proj.weight.T + mlp.proj.bias
    with torch.no_grad():
        assert torch.allclose(mlp(x), expected, atol=1e-6)


def test_gelu_variants_differ():
    x = torch.linspace(-3, 3, 50)
    assert not torch.allclose(F.gelu(x), F.gelu(x, approximate="tanh"), atol=1e-5)


def test_attention_only_has_no_mlp():
    model = tiny(attention_only=True)
    names = [n for n, _ in model.named_parameters()]
    assert not any(".mlp." in n or ".ln2." in n for n in names)
    full = tiny()
    D, F_ = 8, 16
    mlp_params = 2 * (D * F_ + F_ + F_ * D + D + 2 * D)  # two layers of (fc, proj, ln2)
    assert full.num_parameters() - model.num_parameters() == mlp_params
    _, cache = model.run_with_cache(ids())
    assert not any("mlp" in n for n in cache)
    assert torch.equal(cache["blocks.0.resid_mid"], cache["blocks.0.resid_post"])


def test_pre_norm_and_post_norm_differ_where_they_should():
    x = ids()
    _, pre = tiny(norm="pre").run_with_cache(x)
    _, post = tiny(norm="post").run_with_cache(x)
    for l in range(2):
        # pre-norm: the residual stream is a plain sum of what the sublayers write
        total = pre[f"blocks.{l}.resid_pre"] + pre[f"blocks.{l}.attn.out"] + pre[f"blocks.{l}.mlp.out"]
        assert torch.allclose(pre[f"blocks.{l}.resid_post"], total, atol=1e-6)
        total = post[f"blocks.{l}.resid_pre"] + post[f"blocks.{l}.attn.out"] + post[f"blocks.{l}.mlp.out"]
        assert not torch.allclose(post[f"blocks.{l}.resid_post"], total, atol=1e-3)
        # post-norm: after each sum comes a LayerNorm (weight 1, bias 0 at init): mean 0, variance ~1
        mid = F.layer_norm(post[f"blocks.{l}.resid_pre"] + post[f"blocks.{l}.attn.out"], (8,), eps=1e-5)
        assert torch.allclose(post[f"blocks.{l}.resid_mid"], mid, atol=1e-5)
        out = F.layer_norm(post[f"blocks.{l}.resid_mid"] + post[f"blocks.{l}.mlp.out"], (8,), eps=1e-5)
        assert torch.allclose(post[f"blocks.{l}.resid_post"], out, atol=1e-5)
        for name in (f"blocks.{l}.resid_mid", f"blocks.{l}.resid_post"):
            r = post[name]
            assert torch.allclose(r.mean(-1), torch.zeros(r.shape[:-1]), atol=1e-5)
            assert torch.allclose(r.var(-1, unbiased=False), torch.ones(r.shape[:-1]), atol=0.1)
        assert not torch.allclose(pre[f"blocks.{l}.resid_post"].var(-1, unbiased=False),
                                  torch.ones(2, 9), atol=0.1)
    # post-norm has no final LayerNorm; pre-norm has one
    assert torch.equal(post["ln_final"], post["blocks.1.resid_post"])
    assert "ln_f.weight" in dict(tiny(norm="pre").named_parameters())
    assert "ln_f.weight" not in dict(tiny(norm="post").named_parameters())


def test_bias_tying_and_parameter_count():
    c = dict(vocab_size=V, context_length=16, n_layer=2, n_head=2, d_model=8, d_ff=16)
    D, F_, L, T = 8, 16, 2, 16
    per_layer = (D * 3 * D + 3 * D) + (D * D + D) + (D * F_ + F_) + (F_ * D + D) + 2 * (2 * D)
    expected = V * D + T * D + L * per_layer + 2 * D
    assert tiny().num_parameters() == expected
    assert tiny().num_parameters(exclude_embeddings=True) == expected - V * D - T * D
    untied = tiny(tie_weights=False)
    assert untied.num_parameters() == expected + V * D
    tied = tiny()
    assert tied.lm_head.weight is tied.wte.weight and untied.lm_head.weight is not untied.wte.weight
    no_bias = Transformer(TransformerConfig(**c, bias=False))
    assert not any(n.endswith(".bias") for n, _ in no_bias.named_parameters())
    assert sum(p.numel() for p in no_bias.parameters()) == no_bias.num_parameters()


def test_init_std_and_scaled_residual_projections():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=64, d_model=128, n_head=4, n_layer=8, init_std=0.05))
    fc = torch.cat([b.mlp.fc.weight.flatten() for b in model.blocks])
    proj = torch.cat([b.mlp.proj.weight.flatten() for b in model.blocks])
    assert abs(fc.std().item() - 0.05) < 0.002
    assert abs(proj.std().item() - 0.05 / math.sqrt(16)) < 0.001
    assert torch.all(model.blocks[0].attn.qkv.bias == 0)


def test_dropout_only_in_training():
    model = tiny(dropout=0.3)
    x = ids()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.allclose(model(x), model(x))


# --- presets and bad configs ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_build_and_run(name):
    model = Transformer.from_preset(name, vocab_size=20, context_length=16, n_layer=1)
    assert model.config.n_layer == 1 and model.config.vocab_size == 20
    with torch.no_grad():
        assert model(torch.randint(0, 20, (1, 5))).shape == (1, 5, 20)
    assert model.causal == PRESETS[name].get("causal", True)


def test_bad_configs_raise_named_errors():
    with pytest.raises(ValueError, match=r"d_model=10.*n_head=3"):
        TransformerConfig(vocab_size=5, d_model=10, n_head=3)
    with pytest.raises(ValueError, match=r"'swish'.*'swiglu'"):
        TransformerConfig(vocab_size=5, activation="swish")
    with pytest.raises(ValueError, match=r"'alibi'.*'rotary'"):
        TransformerConfig(vocab_size=5, positions="alibi")
    with pytest.raises(ValueError, match=r"'sandwich'.*'pre'"):
        TransformerConfig(vocab_size=5, norm="sandwich")
    with pytest.raises(TypeError, match="n_layer"):
        TransformerConfig(vocab_size=5, n_layer="2")
    with pytest.raises(ValueError, match="dropout"):
        TransformerConfig(vocab_size=5, dropout=1.5)
    with pytest.raises(ValueError, match="rotary"):
        TransformerConfig(vocab_size=5, d_model=6, n_head=2, positions="rotary")
    with pytest.raises(ValueError, match=r"'gpt-huge'.*'gpt-tiny'"):
        Transformer.from_preset("gpt-huge", 5)
    with pytest.raises(TypeError, match="n_layers"):
        Transformer.from_preset("gpt-tiny", 5, n_layers=3)
    model = tiny(context_length=8)
    with pytest.raises(ValueError, match=r"sequence length 9.*context_length 8"):
        model(ids(seq=9))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 10\]"):
        model(torch.tensor([[3, 11]]))
    with pytest.raises(ValueError, match=r"\(batch, seq\)"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids(seq=4), attention_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_impl"):
        model.attn_impl = "flash"


# --- n-gram LM ----------------------------------------------------------------------------------------

DATA = [[1, 2, 3, 1, 2, 4], [2, 3, 1, 0], [4, 4, 2, 3]]


def test_ngram_counts():
    lm = NGramLM(3, vocab_size=5).fit(DATA)
    assert lm.counts[3][(1, 2)] == {3: 1, 4: 1}
    assert lm.count(2, 3) == 3 and lm.count(1, 2, 3) == 1 and lm.count(2) == 4
    assert lm.counts[1][()][4] == 3
    assert lm.num_parameters() == sum(len(c) for t in lm.counts.values() for c in t.values())
    with pytest.raises(ValueError, match="fitted"):
        NGramLM(2).next_distribution([1])


@pytest.mark.parametrize("kw", [dict(smoothing="add-k", k=0.5), dict(smoothing="add-k", k=0.0),
                                dict(smoothing="jelinek-mercer", lambdas=[0.5, 0.7, 0.9]),
                                dict(smoothing="kneser-ney"), dict(smoothing="kneser-ney", bos_id=0)])
def test_ngram_distributions_sum_to_one(kw):
    lm = NGramLM(3, vocab_size=6, **kw).fit(DATA)
    for context in [(), (1,), (1, 2), (2, 3), (5, 5), (0, 5), (3, 4, 1, 2)]:
        p = lm.next_distribution(context)
        assert p.shape == (6,) and np.all(p >= 0)
        assert math.isclose(p.sum(), 1.0, abs_tol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=12), min_size=1, max_size=6),
       st.lists(st.integers(0, 4), max_size=4), st.integers(1, 4), st.floats(0.1, 1.0))
def test_kneser_ney_normalised_for_any_data(seqs, context, n, discount):
    lm = NGramLM(n, vocab_size=5, discount=discount).fit(seqs)
    p = lm.next_distribution(context)
    assert math.isclose(p.sum(), 1.0, abs_tol=1e-9) and np.all(p > 0)


def test_ngram_smoothing_by_hand():
    seqs = [[0, 1, 0, 2, 0, 1]]
    # maximum likelihood and add-k for a bigram
    mle = NGramLM(2, vocab_size=3, smoothing="add-k", k=0.0).fit(seqs)
    assert np.allclose(mle.next_distribution([0]), [0, 2 / 3, 1 / 3])
    add1 = NGramLM(2, vocab_size=3, smoothing="add-k", k=1.0).fit(seqs)
    assert np.allclose(add1.next_distribution([0]), [1 / 6, 3 / 6, 2 / 6])
    # Jelinek-Mercer: 0.5 * bigram MLE + 0.5 * (0.5 * unigram MLE + 0.5 * uniform)
    jm = NGramLM(2, vocab_size=3, smoothing="jelinek-mercer", lambdas=0.5).fit(seqs)
    unigram = np.array([3, 2, 1]) / 6
    assert np.allclose(jm.next_distribution([0]), 0.5 * np.array([0, 2, 1]) / 3 + 0.5 * (0.5 * unigram + 0.5 / 3))
    # Kneser-Ney: discounted bigram + continuation unigram (distinct left neighbours: 0<-{1,2}, 1<-{0}, 2<-{0})
    d = 0.5
    kn = NGramLM(2, vocab_size=3, discount=d).fit(seqs)
    cont = np.array([2, 1, 1])
    p_cont = np.maximum(cont - d, 0) / 4 + d * 3 / 4 * (1 / 3)
    expected = np.maximum(np.array([0, 2, 1]) - d, 0) / 3 + d * 2 / 3 * p_cont
    assert np.allclose(kn.next_distribution([0]), expected)
    assert math.isclose(kn.logprob([0, 1, 0]), sum(kn.token_logprobs([0, 1, 0])))
    assert math.isclose(kn.token_logprobs([0, 1])[1], math.log(expected[1]))
    # an unseen word gets probability 0 under MLE but not under Kneser-Ney
    assert mle.logprob([1, 2]) == -math.inf and kn.logprob([1, 2]) > -math.inf


def test_ngram_bos_padding():
    lm = NGramLM(3, vocab_size=5, smoothing="add-k", k=0.0, bos_id=0).fit([[1, 2], [1, 3], [4, 2]])
    assert np.allclose(lm.next_distribution([]), [0, 2 / 3, 0, 0, 1 / 3])  # what starts a sequence
    assert lm.counts[3][(0, 0)] == {1: 2, 4: 1}
    assert lm.count(0) == 0  # the start symbol is never predicted


def test_ngram_bad_arguments():
    with pytest.raises(ValueError, match=r"'witten-bell'.*'kneser-ney'"):
        NGramLM(2, smoothing="witten-bell")
    with pytest.raises(ValueError, match="discount"):
        NGramLM(2, discount=1.5)
    with pytest.raises(ValueError, match="lambdas"):
        NGramLM(3, smoothing="jelinek-mercer", lambdas=[0.5, 0.5])
    with pytest.raises(ValueError, match="out of range"):
        NGramLM(2, vocab_size=3).fit([[1, 5]])
    with pytest.raises(TypeError, match="integer token ids"):
        NGramLM(2).fit([["the", "cat"]])


# --- MLP and RNN LMs ----------------------------------------------------------------------------------

def test_mlp_lm_window_and_padding():
    torch.manual_seed(0)
    model = MLPLM(MLPConfig(vocab_size=V, window=3, d_embed=4, d_hidden=8, pad_id=5)).eval()
    x = ids(seq=8)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 8, V)
        y = x.clone()
        y[:, 2] = (y[:, 2] + 1) % V  # token 2 is seen by positions 2, 3, 4 only
        changed = (model(y) - logits).abs().amax(dim=(0, 2)) > 1e-6
        assert changed.tolist() == [False, False, True, True, True, False, False, False]
        # before the start the window holds the pad id
        padded = torch.cat([torch.full((2, 2), 5), x], dim=1)
        assert torch.allclose(model(padded)[:, 2:], logits, atol=1e-6)
    direct = MLPLM(MLPConfig(vocab_size=V, window=3, d_embed=4, d_hidden=8, direct=True))
    assert direct.num_parameters() - MLPLM(MLPConfig(vocab_size=V, window=3, d_embed=4, d_hidden=8)).num_parameters() == 12 * V
    _, cache = model.run_with_cache(x)
    assert cache["embed"].shape == (2, 8, 12) and cache["hidden"].shape == (2, 8, 8)
    assert torch.all(cache["hidden"].abs() <= 1)  # tanh
    with pytest.raises(ValueError, match="pad_id"):
        MLPConfig(vocab_size=5, pad_id=5)
    with pytest.raises(ValueError, match="window"):
        MLPConfig(vocab_size=5, window=0)


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_rnn_lm_is_causal(cell):
    torch.manual_seed(0)
    model = RNNLM(RNNConfig(vocab_size=V, cell=cell, d_embed=4, d_hidden=8, n_layer=2)).eval()
    x = ids()
    y = x.clone()
    y[:, 4:] = (y[:, 4:] + 1) % V
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (2, 9, V)
    assert torch.allclose(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4:], b[:, 4:])
    assert model.causal and model.config.context_length == 128
    with pytest.raises(ValueError, match=r"'transformer'.*'gru'"):
        RNNConfig(vocab_size=5, cell="transformer")
