"""The toy language: exact answers agree with sampling, and the phenomena the chapters need are there."""
from __future__ import annotations

import collections
import math
import time

import numpy as np
import pytest
from scipy import stats

from lmlab.corpus import EOS, MASK, ToyLanguage, toy

N_SENTENCES = 200_000
N_TESTS = 200
ALPHA = 0.001


@pytest.fixture(scope="module")
def lang() -> ToyLanguage:
    return toy()


@pytest.fixture(scope="module")
def big_sample(lang) -> list[list[str]]:
    return lang.sentences(N_SENTENCES, seed=2024)


def chi_square_p(observed: dict[str, int], probs: dict[str, float]) -> float:
    """Goodness of fit of counts to a distribution; cells with expected count < 5 are pooled."""
    n = sum(observed.values())
    for tok in observed:
        if probs.get(tok, 0.0) == 0.0:
            return 0.0  # an outcome the distribution says is impossible
    obs, exp, pooled_o, pooled_e = [], [], 0, 0.0
    for tok, p in probs.items():
        e = n * p
        if e < 5:
            pooled_o += observed.get(tok, 0)
            pooled_e += e
        else:
            obs.append(observed.get(tok, 0))
            exp.append(e)
    if pooled_e > 0:
        obs.append(pooled_o)
        exp.append(pooled_e)
    if len(obs) < 2:
        return 1.0
    chi2 = sum((o - e) ** 2 / e for o, e in zip(obs, exp))
    return float(stats.chi2.sf(chi2, len(obs) - 1))


def perturb(probs: dict[str, float], amount: float = 0.02) -> dict[str, float]:
    """Move ``amount`` of probability from the most to the least probable outcome (total variation 0.02)."""
    items = sorted(probs.items(), key=lambda kv: -kv[1])
    if len(items) < 2:
        return {items[0][0]: 1.0 - amount, "__other__": amount}
    out = dict(items)
    top, low = items[0][0], items[-1][0]
    moved = min(amount, out[top])
    out[top] -= moved
    out[low] += moved
    return out


def frequent_prefix_counts(sample):
    counts = collections.defaultdict(collections.Counter)
    for s in sample:
        for i in range(len(s)):
            counts[tuple(s[:i])][s[i]] += 1
    return sorted(counts.items(), key=lambda kv: -sum(kv[1].values()))[:N_TESTS]


def frequent_frame_counts(sample):
    counts = collections.defaultdict(collections.Counter)
    for s in sample:
        for i in range(len(s)):
            counts[(tuple(s[:i]), tuple(s[i + 1:]))][s[i]] += 1
    return sorted(counts.items(), key=lambda kv: -sum(kv[1].values()))[:N_TESTS]


# --- exact distributions ------------------------------------------------------------------------------

def test_distributions_sum_to_one(lang):
    for s in lang.sentences(300, seed=1):
        for i in range(len(s)):
            assert abs(sum(lang.next_token_distribution(s[:i]).values()) - 1) < 1e-9
        pos = len(s) // 2
        assert abs(sum(lang.masked_distribution(s, pos).values()) - 1) < 1e-9
    for state in list(lang._arc_cache)[:2000]:
        arcs = lang.arcs(state)
        if arcs:
            assert abs(sum(a[1] for a in arcs) - 1) < 1e-9, state


def test_next_token_matches_sampling(lang, big_sample):
    tests = frequent_prefix_counts(big_sample)
    assert len(tests) == N_TESTS
    threshold = ALPHA / N_TESTS  # Bonferroni
    p_exact = [chi_square_p(obs, lang.next_token_distribution(list(prefix))) for prefix, obs in tests]
    worst = int(np.argmin(p_exact))
    assert min(p_exact) > threshold, f"prefix {tests[worst][0]} fails with p={p_exact[worst]:.2e}"
    # negative control: the same test rejects the exact distributions perturbed by 2%
    p_wrong = [chi_square_p(obs, perturb(lang.next_token_distribution(list(prefix)))) for prefix, obs in tests]
    assert min(p_wrong) < threshold


def test_masked_matches_sampling(lang, big_sample):
    tests = frequent_frame_counts(big_sample)
    threshold = ALPHA / N_TESTS
    p_exact, p_wrong = [], []
    for (left, right), obs in tests:
        exact = lang.masked_distribution(list(left) + [MASK] + list(right))
        p_exact.append(chi_square_p(obs, exact))
        p_wrong.append(chi_square_p(obs, perturb(exact)))
    worst = int(np.argmin(p_exact))
    assert min(p_exact) > threshold, f"frame {tests[worst][0]} fails with p={p_exact[worst]:.2e}"
    assert min(p_wrong) < threshold


def test_token_logprobs_agree_with_next_token_distribution(lang):
    text = [t for s in lang.sentences(20, seed=5) for t in s]
    lp = lang.token_logprobs(text)
    start = 0
    for i, tok in enumerate(text):
        assert lp[i] == pytest.approx(math.log(lang.next_token_distribution(text[start:i])[tok]), abs=1e-12)
        if tok == EOS:
            start = i + 1
    # sentences are independent: the log-probability of a text is the sum over its sentences
    sents = lang.sentences(10, seed=6)
    assert lang.sequence_logprob([t for s in sents for t in s]) == pytest.approx(
        sum(lang.sentence_logprob(s) for s in sents), abs=1e-9)


def _derivations(lang, tokens):
    """Every derivation of a sentence, by brute-force search over the grammar's arcs: [(logp, tags)]."""
    out = []

    def walk(state, i, logp, tags):
        if i == len(tokens):
            if state == ("FINAL",):
                out.append((logp, tags))
            return
        for tok, p, nxt, tag in lang.arcs(state):
            if tok == tokens[i]:
                walk(nxt, i + 1, logp + math.log(p), tags + [tag])

    walk(("START",), 0, 0.0, [])
    return out


def test_sentence_probability_sums_over_derivations(lang):
    ambiguous = "the girl sees the bat .".split()
    ders = _derivations(lang, ambiguous)
    assert {t[-2].sense for _, t in ders} == {"animal", "tool"}
    assert lang.sentence_logprob(ambiguous) == pytest.approx(math.log(sum(math.exp(lp) for lp, _ in ders)), abs=1e-12)
    unambiguous = "the boy swings the bat .".split()
    ders = _derivations(lang, unambiguous)
    assert len(ders) == 1 and ders[0][1][-2].sense == "tool"
    assert lang.sentence_logprob(unambiguous) == pytest.approx(ders[0][0], abs=1e-12)


def test_entropy_rate_interval_and_floor(lang):
    est = lang.entropy_estimate()
    assert est["ci_width"] < 0.005
    assert est["ci95"][0] <= est["entropy_rate"] <= est["ci95"][1]
    # cross-check against plain Monte Carlo: mean -log p(sentence) over fresh samples / mean length
    sents = lang.sentences(5000, seed=77)
    mc = -sum(lang.sentence_logprob(s) for s in sents) / sum(len(s) for s in sents)
    assert mc == pytest.approx(est["entropy_rate"], abs=0.05)
    assert lang.expected_length() == pytest.approx(np.mean([len(s) for s in sents]), rel=0.03)
    assert 0 < est["ambiguity_entropy"] < math.log(2)


# --- the phenomena the chapters need ------------------------------------------------------------------

def test_vocabulary_and_zipf(lang, big_sample):
    assert 200 <= len(lang.vocab) <= 400
    counts = collections.Counter(t for s in big_sample for t in s)
    assert set(counts) == set(lang.vocab)  # every word occurs
    freqs = np.array(sorted(counts.values(), reverse=True), dtype=float)
    ranks = np.arange(1, len(freqs) + 1)
    mid = slice(9, 200)
    slope = np.polyfit(np.log(ranks[mid]), np.log(freqs[mid]), 1)[0]
    assert -3.0 < slope < -0.7, slope  # a long tail, roughly Zipf
    assert freqs[0] / freqs[-1] > 1000


def test_agreement_at_distance_and_no_violations(lang):
    sents = lang.sample(20_000, seed=3)
    far = 0
    for s in sents:
        main = [(v, n) for v, n in s.heads.items() if s.tags[v].role == "main" and s.tags[v].pos in ("VERB", "COP")]
        if main and main[0][0] - main[0][1] >= 4:
            far += 1
        for dep, head in s.heads.items():
            d, h = s.tags[dep], s.tags[head]
            assert h.pos == "NOUN"
            if d.pos in ("VERB", "COP"):
                assert d.number == h.number, s.text
            if d.lemma in ("himself", "herself", "itself", "his", "her", "its"):
                assert h.number == "sg", s.text
                if h.gender in ("m", "f"):
                    assert d.lemma in {"m": ("himself", "his"), "f": ("herself", "her")}[h.gender], s.text
            if d.lemma in ("themselves", "their"):
                assert h.number == "pl", s.text
    assert far / len(sents) >= 0.20


def test_two_senses_and_selection(lang):
    senses = collections.Counter(t.sense for s in lang.sample(20_000, seed=4) for t in s.tags if t.sense)
    assert senses["animal"] > 100 and senses["tool"] > 100
    # the right context picks the sense: only the tool is swung, only the animal flies
    assert lang.next_token_distribution("the boy swings the").get("bat", 0) > 0
    assert "flies" in lang.next_token_distribution("the bat")
    assert "flies" not in lang.next_token_distribution("the boy swings the bat")
    # selectional restrictions: only dogs bark
    assert set(lang.masked_distribution("the [MASK] barks .")) == {"dog", "puppy"}


def test_masked_slot_fixed_by_right_context(lang):
    left_only = lang.next_token_distribution("the world is")
    both = lang.masked_distribution("the world is [MASK] that is the case .")
    assert both == {"everything": 1.0}
    assert left_only["everything"] < 0.5 and len(left_only) > 3
    assert lang.next_token_distribution("the world is everything that is the") == {"case": 1.0}


def test_copying_pattern(lang):
    first = lang.next_token_distribution("the code is")
    assert len(first) == 12 and max(first.values()) == pytest.approx(1 / 12)
    assert lang.next_token_distribution("the code is te ka po , te ka") == {"po": 1.0}


def test_shifted_variant_same_words_other_preferences(lang):
    shifted = toy("shifted")
    assert shifted.vocab == lang.vocab
    p, q = lang.next_token_probs("the"), shifted.next_token_probs("the")
    assert 0.5 * np.abs(p - q).sum() > 0.1  # total variation between the two next-word distributions
    assert abs(shifted.entropy_rate() - lang.entropy_rate()) > 0.01


def test_trigram_stays_above_the_floor(lang):
    from lmlab.models import NGramLM

    vocab = {w: i for i, w in enumerate(lang.vocab)}
    train = [vocab[t] for t in lang.token_stream(1_000_000, seed=11)]
    test_sents = lang.sentences(3000, seed=12)
    model = NGramLM(3, vocab_size=len(vocab)).fit([train])
    nll, exact = [], []
    for s in test_sents:
        ids = [vocab[EOS], vocab[EOS]] + [vocab[t] for t in s]
        lp = model.token_logprobs(ids)[2:]
        nll.extend(-np.asarray(lp))
        exact.extend(-lang.token_logprobs(s))
    gap = float(np.mean(nll) - np.mean(exact))
    assert gap >= 0.1, gap


# --- sampling -------------------------------------------------------------------------------------------

def test_generation_is_seeded_and_fast(lang):
    assert lang.sentences(50, seed=9) == lang.sentences(50, seed=9)
    assert lang.sentences(50, seed=9) != lang.sentences(50, seed=10)
    assert [s.tokens for s in lang.sample(20, seed=9)] == lang.sentences(20, seed=9)
    fresh = ToyLanguage()  # cold caches, as in a new process
    t0 = time.perf_counter()
    toks = fresh.token_stream(1_000_000, seed=0)
    assert len(toks) >= 1_000_000 and toks[-1] == EOS
    assert time.perf_counter() - t0 < 10


def test_describe_mentions_the_structure(lang):
    text = lang.describe()
    for needle in ("SENTENCE", "that", "agree", "bat", "the world is everything that is the case"):
        assert needle in text


# --- bad input -------------------------------------------------------------------------------------------

def test_clear_errors(lang):
    with pytest.raises(ValueError, match="'unicorn' is not a word"):
        lang.next_token_distribution("the unicorn")
    with pytest.raises(ValueError, match="cannot produce"):
        lang.token_logprobs("the dog bark .")
    with pytest.raises(ValueError, match="variant must be one of"):
        ToyLanguage("klingon")
    with pytest.raises(ValueError, match="exactly one"):
        lang.masked_distribution("the dog barks .")
    with pytest.raises(ValueError, match="position must be"):
        lang.masked_distribution("the dog barks .", 7)
    with pytest.raises(ValueError, match="one sentence ending"):
        lang.sentence_logprob("the dog barks")
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        lang.sentences(-1)
    with pytest.raises(TypeError, match="string of space-separated words"):
        lang.next_token_distribution(42)
