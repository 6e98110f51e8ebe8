"""lmlab.generate: decoding strategies checked against their definitions.

Sampling tests draw N = 20,000 seeded samples and compare the counts with the target distribution
(computed here with NumPy, independently of lmlab) by a chi-square goodness-of-fit test. A test
passes when p > 1e-3; each has a negative control: the same counts against a wrong distribution
must give p < 1e-6. Cells whose target probability is 0 must have no draws at all.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from lmlab import generate as G
from lmlab.models import Transformer, TransformerConfig

N_DRAWS = 20_000
PASS_P = 1e-3
REJECT_P = 1e-6


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_model(vocab=12, causal=True, context=16, init_std=0.5, seed=0, **kw) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=vocab, context_length=context, n_layer=2, n_head=2, d_model=16,
                            d_ff=32, causal=causal, init_std=init_std, **kw)
    return Transformer(cfg).eval()


# --- target distributions, written out with NumPy ---------------------------------------------------

def np_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def np_target(logits, temperature=1.0, top_k=None, top_p=None):
    p = np_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    if top_k is not None:
        keep = np.argsort(-p)[:top_k]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    if top_p is not None:
        order = np.argsort(-p)
        q = np.zeros_like(p)
        total = 0.0
        for i in order:  # most probable first, until the kept mass reaches top_p
            q[i] = p[i]
            total += p[i]
            if total >= top_p:
                break
        p = q / q.sum()
    return p


def chi2_p(counts, target):
    """p-value of the counts under ``target``; cells with target 0 must be empty (else p = 0)."""
    counts, target = np.asarray(counts, dtype=np.float64), np.asarray(target, dtype=np.float64)
    zero = target == 0
    if counts[zero].sum() > 0:
        return 0.0
    obs, exp = counts[~zero], target[~zero] * counts.sum()
    if obs.size == 1:  # one possible outcome, and every draw is it
        return 1.0
    return float(stats.chisquare(obs, exp).pvalue)


LOGITS = torch.tensor([2.0, 1.5, 1.2, 0.8, 0.5, 0.0, -0.3, -1.0])


def draw(n=N_DRAWS, seed=0, **kwargs):
    g = torch.Generator().manual_seed(seed)
    ids = G.sample_from_logits(LOGITS.expand(n, -1), generator=g, **kwargs)
    return np.bincount(ids.numpy(), minlength=LOGITS.numel())


@pytest.mark.parametrize("kwargs, wrong", [
    (dict(temperature=1.0), dict(temperature=0.8)),
    (dict(temperature=0.6), dict(temperature=1.0)),
    (dict(temperature=2.0), dict(temperature=1.0)),
    (dict(top_k=3), dict()),
    (dict(top_k=1), dict(top_k=2)),
    (dict(top_p=0.7), dict(top_p=0.9)),
    (dict(top_p=0.9), dict()),
    (dict(temperature=0.7, top_k=5, top_p=0.8), dict(temperature=0.7, top_k=5)),
])
def test_sampling_matches_target_distribution(kwargs, wrong):
    counts = draw(**kwargs)
    assert chi2_p(counts, np_target(LOGITS.numpy(), **kwargs)) > PASS_P
    assert chi2_p(counts, np_target(LOGITS.numpy(), **wrong)) < REJECT_P  # negative control


def test_sampling_distribution_equals_numpy_target():
    for kwargs in [dict(), dict(temperature=0.5), dict(top_k=4), dict(top_p=0.75), dict(temperature=1.5, top_p=0.6)]:
        ours = G.sampling_distribution(LOGITS, **kwargs).double().numpy()
        np.testing.assert_allclose(ours, np_target(LOGITS.numpy(), **kwargs), atol=1e-6)


def test_generate_samples_from_the_model_distribution():
    model = tiny_model()
    prompt = torch.tensor([3, 1, 4])
    raw = model(prompt[None])[0, -1].detach().numpy()
    for kwargs, wrong in [(dict(temperature=0.8), dict(temperature=1.2)), (dict(top_p=0.6), dict())]:
        out = G.generate(model, prompt, 1, num_samples=N_DRAWS, seed=1, **kwargs)
        assert out.shape == (N_DRAWS, 4) and bool((out[:, :3] == prompt).all())
        counts = np.bincount(out[:, -1].numpy(), minlength=raw.size)
        assert chi2_p(counts, np_target(raw, **kwargs)) > PASS_P
        assert chi2_p(counts, np_target(raw, **wrong)) < REJECT_P


def test_filters_keep_the_right_tokens():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = lambda x: torch.isfinite(x).nonzero().flatten().tolist()  # noqa: E731
    assert kept(G.top_k_filter(logits, 1)) == [0]
    assert kept(G.top_k_filter(logits, 3)) == [0, 1, 2]
    assert torch.equal(G.top_k_filter(logits, 10), logits)
    assert kept(G.top_p_filter(logits, 0.5)) == [0]
    assert kept(G.top_p_filter(logits, 0.6)) == [0, 1]
    assert kept(G.top_p_filter(logits, 0.8)) == [0, 1]
    assert kept(G.top_p_filter(logits, 0.81)) == [0, 1, 2]
    assert kept(G.top_p_filter(logits, 1.0)) == [0, 1, 2, 3]
    shuffled = logits[[2, 0, 3, 1]]  # order of the vocabulary does not matter
    assert kept(G.top_p_filter(shuffled, 0.6)) == [1, 3]
    assert torch.allclose(G.apply_temperature(logits, 2.0), logits / 2)


# --- greedy, beam, exhaustive ----------------------------------------------------------------------------

def test_greedy_picks_the_argmax_every_step():
    model = tiny_model()
    prompt = [5, 2]
    out = G.generate(model, prompt, 8, strategy="greedy")
    assert len(out) == 10 and out[:2] == prompt
    for t in range(2, 10):
        logits = model(torch.tensor([out[:t]]))[0, -1]
        assert out[t] == int(torch.argmax(logits))
    assert G.generate(model, prompt, 8, strategy="greedy", use_cache=False) == out


def test_cache_equals_recompute_beyond_the_context():
    model = tiny_model(context=8)
    a = G.generate(model, [1, 2, 3], 20, strategy="greedy", use_cache=True)
    b = G.generate(model, [1, 2, 3], 20, strategy="greedy", use_cache=False)
    assert a == b and len(a) == 23
    s1 = G.generate(model, [1, 2, 3], 20, seed=7, use_cache=True)
    s2 = G.generate(model, [1, 2, 3], 20, seed=7, use_cache=False)
    assert s1 == s2


def test_sampling_is_seeded():
    model = tiny_model(init_std=0.1)
    a = G.generate(model, [1], 30, seed=3)
    assert a == G.generate(model, [1], 30, seed=3)
    assert a != G.generate(model, [1], 30, seed=4)


def test_beam_with_one_beam_is_greedy():
    model = tiny_model()
    best = G.beam_search(model, [5, 2], num_beams=1, max_new_tokens=8)
    assert len(best) == 1 and best[0].ids == G.generate(model, [5, 2], 8, strategy="greedy")
    assert G.generate(model, [5, 2], 8, strategy="beam", num_beams=1) == best[0].ids


def exhaustive(model, prompt, vocab, length):
    """Every continuation of ``length`` tokens with its log-probability, best first."""
    scored = []
    for cont in itertools.product(range(vocab), repeat=length):
        ids = list(prompt) + list(cont)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids]))[0].double(), -1)
        lp = sum(float(logp[t - 1, ids[t]]) for t in range(len(prompt), len(ids)))
        scored.append((lp, ids))
    return sorted(scored, key=lambda s: -s[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_exhaustive_search(seed):
    vocab, length = 4, 3
    model = tiny_model(vocab=vocab, seed=seed, init_std=1.0)
    truth = exhaustive(model, [0], vocab, length)
    width = vocab ** (length - 1)  # keeps every hypothesis until the last step
    beams = G.beam_search(model, [0], num_beams=width, max_new_tokens=length)
    # float32 scores on any CPU: compare within 1e-4, and let near-ties (within 1e-4) come in either order
    exact = {tuple(ids): lp for lp, ids in truth}
    np.testing.assert_allclose([b.logprob for b in beams], [lp for lp, _ in truth[:width]], atol=1e-4)
    for b in beams:  # each beam's score is its sequence's exact score
        assert abs(b.logprob - exact[tuple(b.ids)]) <= 1e-4, (b.ids, b.logprob, exact[tuple(b.ids)])
    cutoff = truth[width - 1][0]
    must = {tuple(ids) for lp, ids in truth if lp > cutoff + 1e-4}  # clearly inside the top `width`
    assert must <= {tuple(b.ids) for b in beams}
    # a narrow beam is never better than the exhaustive optimum (float32 against float64: 1e-4)
    narrow = G.beam_search(model, [0], num_beams=2, max_new_tokens=length)[0]
    assert narrow.logprob <= truth[0][0] + 1e-4


def test_beam_search_with_and_without_cache_agree():
    model = tiny_model(vocab=8, context=10, init_std=1.0)
    for stop in (None, 0):
        a = G.beam_search(model, [1, 2], num_beams=3, max_new_tokens=12, stop_at=stop, use_cache=True)
        b = G.beam_search(model, [1, 2], num_beams=3, max_new_tokens=12, stop_at=stop, use_cache=False)
        assert [x.ids for x in a] == [y.ids for y in b]  # 12 new tokens run past the context of 10
        np.testing.assert_allclose([x.logprob for x in a], [y.logprob for y in b], atol=1e-4)
    with G.count_positions(model) as c:
        G.beam_search(model, [1, 2], num_beams=3, max_new_tokens=5)
    assert c.positions == 2 + 4 * 3  # the prompt once, then one position per beam per step


def test_beam_search_stops_at_the_stop_token():
    model = tiny_model(vocab=6, init_std=1.0)
    beams = G.beam_search(model, [1], num_beams=3, max_new_tokens=6, stop_at=0)
    assert 1 <= len(beams) <= 3
    for b in beams:
        new = b.ids[1:]
        assert 0 not in new[:-1]  # nothing after the stop token
        assert math.isclose(b.logprob, G.sequence_logprob(model, new, context=[1]), abs_tol=1e-4)
    assert [b.score for b in beams] == sorted((b.score for b in beams), reverse=True)


# --- log-probabilities --------------------------------------------------------------------------------

def test_sequence_logprob_is_the_sum_of_step_logprobs():
    model = tiny_model()
    seq = [3, 1, 4, 1, 5, 9, 2, 6]
    steps = [math.log(float(G.next_token_distribution(model, seq[:t])[seq[t]])) for t in range(1, len(seq))]
    assert math.isclose(G.sequence_logprob(model, seq), sum(steps), abs_tol=1e-4)
    per_token = G.token_logprobs(model, seq)
    np.testing.assert_allclose(per_token.numpy(), steps, atol=1e-5)
    with_context = G.sequence_logprob(model, seq[3:], context=seq[:3])
    assert math.isclose(with_context, sum(steps[2:]), abs_tol=1e-4)
    assert math.isclose(G.perplexity(model, seq), math.exp(-sum(steps) / len(steps)), rel_tol=1e-5)


def test_long_sequences_are_scored_in_windows():
    model = tiny_model(context=8)
    seq = [i % 12 for i in range(30)]
    lp = G.token_logprobs(model, seq)
    assert lp.shape == (29,) and bool(torch.isfinite(lp).all())
    # the first window's tokens see everything before them
    with torch.no_grad():
        direct = torch.log_softmax(model(torch.tensor([seq[:8]]))[0], -1)
    np.testing.assert_allclose(lp[:7].numpy(), [float(direct[t - 1, seq[t]]) for t in range(1, 8)], atol=1e-5)
    # every later token is scored given the 4 to 8 tokens just before it (at least half the context)
    for t in range(8, 30):
        with torch.no_grad():
            options = [float(torch.log_softmax(model(torch.tensor([seq[s:t]]))[0, -1], -1)[seq[t]])
                       for s in range(t - 8, t - 3)]
        assert min(abs(o - float(lp[t - 1])) for o in options) < 1e-5


# --- masked filling -----------------------------------------------------------------------------------

def test_fill_mask_gives_each_slot_its_distribution():
    model = tiny_model(causal=False)
    mask_id = 11
    ids = [1, mask_id, 3, mask_id, 5]
    probs = G.fill_mask(model, ids, mask_id=mask_id)
    assert probs.shape == (2, 12)
    np.testing.assert_allclose(probs.sum(-1).numpy(), 1.0, atol=1e-6)
    with torch.no_grad():
        direct = torch.softmax(model(torch.tensor([ids]))[0, [1, 3]], -1)
    assert torch.allclose(probs, direct, atol=1e-6)
    with pytest.raises(ValueError, match="no mask token"):
        G.fill_mask(model, [1, 2, 3], mask_id=mask_id)
    with pytest.raises(TypeError, match="masked model"):
        G.fill_mask(tiny_model(), ids, mask_id=mask_id)
    with pytest.raises(TypeError, match="causal"):
        G.generate(model, ids, 3)


def test_text_prompts_with_an_lmlab_tokenizer():
    from lmlab.tokenizers import WordTokenizer

    tok = WordTokenizer(["the", "dog", "cat", "barks", "."], eos_token=".")
    model = tiny_model(vocab=tok.vocab_size)
    text = G.generate(model, "the dog", tokenizer=tok, max_new_tokens=5, strategy="greedy")
    assert isinstance(text, str) and text.startswith("the dog")
    texts = G.generate(model, "the dog", tokenizer=tok, max_new_tokens=5, num_samples=3, seed=0, stop_at=".")
    assert len(texts) == 3 and all(t.startswith("the dog") for t in texts)
    for t in texts:  # stops right after the first "." it generates
        new = t.split()[2:]
        assert "." not in new[:-1]
    pairs = G.top_tokens(G.next_token_distribution(model, "the dog", tokenizer=tok), tok, k=3)
    assert len(pairs) == 3 and pairs[0][1] >= pairs[1][1] >= pairs[2][1]
    assert all(tok.token_to_id(w) is not None for w, _ in pairs)
    bert = tiny_model(vocab=tok.vocab_size, causal=False)
    probs = G.fill_mask(bert, "the <mask> barks .", tokenizer=tok)
    assert probs.shape == (1, tok.vocab_size)


# --- counting the work ---------------------------------------------------------------------------------

def test_count_positions_with_and_without_cache():
    model = tiny_model(context=64)
    prompt, n = [1, 2, 3, 4], 10
    with G.count_positions(model) as cached:
        G.generate(model, prompt, n, strategy="greedy", use_cache=True)
    with G.count_positions(model) as full:
        G.generate(model, prompt, n, strategy="greedy", use_cache=False)
    assert cached.calls == n and cached.positions == len(prompt) + (n - 1)
    assert full.calls == n and full.positions == sum(range(len(prompt), len(prompt) + n))


# --- hub models ---------------------------------------------------------------------------------------

def test_hub_model_through_the_same_calls():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=20, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
                     eos_token_id=0, initializer_range=0.5)
    hf = GPT2LMHeadModel(cfg).eval()
    hf.generation_config.eos_token_id = None  # so generate() neither stops nor suppresses token 0
    prompt = [3, 4, 5]
    a = G.generate(hf, prompt, 12, strategy="greedy", use_cache=True)
    b = G.generate(hf, prompt, 12, strategy="greedy", use_cache=False)
    assert a == b
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, pad_token_id=0)[0].tolist()
    assert a == ref
    probs = G.next_token_distribution(hf, prompt)
    with torch.no_grad():
        direct = torch.softmax(hf(torch.tensor([prompt])).logits[0, -1], -1)
    assert torch.allclose(probs, direct, atol=1e-6)
    with G.count_positions(hf) as c:
        G.generate(hf, prompt, 5, strategy="greedy")
    assert c.positions == 3 + 4


def test_hub_masked_model_fills_the_mask():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    bert = BertForMaskedLM(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=16)).eval()
    ids = [2, 5, 4, 7, 3]
    probs = G.fill_mask(bert, ids, mask_id=4)
    with torch.no_grad():
        direct = torch.softmax(bert(input_ids=torch.tensor([ids])).logits[0, 2], -1)
    assert probs.shape == (1, 30) and torch.allclose(probs[0], direct, atol=1e-6)
    with pytest.raises(TypeError, match="causal"):
        G.next_token_distribution(bert, ids)


def test_models_without_a_cache_generate_in_a_window():
    from lmlab.models import MLPConfig, MLPLM, RNNConfig, RNNLM

    torch.manual_seed(0)
    for model in (MLPLM(MLPConfig(vocab_size=10, window=2, context_length=6)),
                  RNNLM(RNNConfig(vocab_size=10, d_embed=8, d_hidden=8, context_length=6))):
        out = G.generate(model, [1, 2, 3], 10, strategy="greedy")  # 13 tokens > context 6
        assert len(out) == 13
        for t in range(3, 13):  # each token is the argmax given the last 6 tokens at most
            logits = model(torch.tensor([out[max(0, t - 6):t]]))[0, -1]
            assert out[t] == int(torch.argmax(logits))
        assert math.isfinite(G.sequence_logprob(model, out))


# --- arguments ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, words", [
    (dict(temperature=0), ValueError, ["temperature", "> 0", "0"]),
    (dict(temperature=-1.5), ValueError, ["temperature", "-1.5"]),
    (dict(temperature=float("nan")), ValueError, ["temperature"]),
    (dict(top_p=0), ValueError, ["top_p", "(0, 1]"]),
    (dict(top_p=1.5), ValueError, ["top_p", "1.5"]),
    (dict(top_k=0), ValueError, ["top_k", ">= 1", "0"]),
    (dict(top_k=2.5), TypeError, ["top_k", "2.5"]),
    (dict(max_new_tokens=-1), ValueError, ["max_new_tokens", "-1"]),
    (dict(num_samples=0), ValueError, ["num_samples"]),
    (dict(strategy="nucleus"), ValueError, ["strategy", "nucleus", "greedy"]),
    (dict(seed=1.5), TypeError, ["seed", "1.5"]),
])
def test_arguments_are_validated(kwargs, error, words):
    model = tiny_model()
    args = dict(max_new_tokens=3)
    args.update(kwargs)
    with pytest.raises(error) as info:
        G.generate(model, [1, 2], **args)
    for word in words:
        assert word in str(info.value)


def test_bad_prompts_and_beams_are_rejected():
    model = tiny_model()
    with pytest.raises(ValueError, match="tokenizer"):
        G.generate(model, "the dog", 3)
    with pytest.raises(ValueError, match="empty"):
        G.generate(model, [], 3)
    with pytest.raises(TypeError, match="prompt"):
        G.generate(model, 3.5, 3)
    with pytest.raises(ValueError, match="num_beams"):
        G.beam_search(model, [1], num_beams=0)
    with pytest.raises(ValueError, match="top_p"):
        G.top_p_filter(LOGITS, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        G.next_token_distribution(model, [1], temperature=0.0)
