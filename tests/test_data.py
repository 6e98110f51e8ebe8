"""Training batches and the sentence-aligned evaluation helper.

The evaluation tests use stand-in models that know the exact distribution of a language (a tiny
one written here, and the real toy language when ``lmlab.corpus`` is present): such a model must
show a gap of 0, which it can only do if every token was scored with its whole sentence in context.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from lmlab.data import (
    exact_gap,
    exact_token_nll,
    evaluate_sentences,
    masked_batch,
    next_token_batch,
    random_windows,
    sentence_rows,
    stream_ids,
)
from lmlab.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer

torch.set_num_threads(1)


# --- a tiny language with a long-range dependency, and exact answers ------------------------------

class TinyLanguage:
    """``a|b (x|y)* p|q .``: the verb (p or q) agrees with the first word, any distance away."""

    vocab = ["a", "b", "x", "y", "p", "q", "."]
    first = {"a": 0.6, "b": 0.4}
    verb = {"a": {"p": 0.9, "q": 0.1}, "b": {"p": 0.2, "q": 0.8}}

    def next_token_distribution(self, prefix):
        prefix = list(prefix)
        start = max((i + 1 for i, t in enumerate(prefix) if t == "."), default=0)
        sent = prefix[start:]
        if not sent:
            return dict(self.first)
        if sent[-1] in ("p", "q"):
            return {".": 1.0}
        if sent[0] not in self.first or any(t not in ("x", "y") for t in sent[1:]):
            raise ValueError(f"impossible prefix {sent}")
        return {"x": 0.3, "y": 0.2, **{v: 0.5 * p for v, p in self.verb[sent[0]].items()}}

    def next_token_probs(self, prefix):
        d = self.next_token_distribution(prefix)
        return np.array([d.get(w, 0.0) for w in self.vocab])

    def token_logprobs(self, tokens):
        tokens = list(tokens)
        return np.array([math.log(self.next_token_distribution(tokens[:i])[t]) for i, t in enumerate(tokens)])

    def _prob(self, tokens):
        try:
            return math.exp(self.token_logprobs(tokens).sum())
        except (KeyError, ValueError):
            return 0.0

    def masked_distribution(self, tokens, position):
        tokens = list(tokens)
        scores = {w: self._prob(tokens[:position] + [w] + tokens[position + 1:]) for w in self.vocab}
        z = sum(scores.values())
        return {w: s / z for w, s in scores.items() if s > 0}

    def sentences(self, n, seed=0):
        rng, out = random.Random(seed), []
        for _ in range(n):
            sent = []
            while not sent or sent[-1] != ".":
                d = self.next_token_distribution(sent)
                sent.append(rng.choices(list(d), weights=list(d.values()))[0])
            out.append(sent)
        return out


TINY = TinyLanguage()


@dataclass
class _Config:
    vocab_size: int
    context_length: int = 64


class ExactCausal(nn.Module):
    """Returns the language's exact next-token log-probs, computed from each row's whole prefix."""

    causal = True

    def __init__(self, lang, tok, context_length=64):
        super().__init__()
        self.lang, self.tok = lang, tok
        self.config = _Config(tok.vocab_size, context_length)
        self.offset = tok.vocab.index(lang.vocab[0])
        self.rows_seen: list[list[str]] = []

    def forward(self, idx):
        out = torch.full((*idx.shape, self.tok.vocab_size), -1e30, dtype=torch.float64)
        for b, row in enumerate(idx.tolist()):
            words = [self.tok.id_to_token(i) for i in row]
            self.rows_seen.append(words)
            for t in range(len(words)):
                p = torch.tensor(self.lang.next_token_probs(words[: t + 1]), dtype=torch.float64)
                out[b, t, self.offset: self.offset + len(p)] = torch.log(p.clamp_min(1e-300))
        return out


class ExactMasked(nn.Module):
    """Returns the exact distribution of the one masked word in each row (given both sides)."""

    causal = False

    def __init__(self, lang, tok):
        super().__init__()
        self.lang, self.tok = lang, tok
        self.config = _Config(tok.vocab_size)
        self.offset = tok.vocab.index(lang.vocab[0])

    def forward(self, idx):
        out = torch.zeros((*idx.shape, self.tok.vocab_size), dtype=torch.float64)
        for b, row in enumerate(idx.tolist()):
            assert row.count(self.tok.mask_id) == 1, "each row must mask exactly one position"
            pos = row.index(self.tok.mask_id)
            words = [self.tok.id_to_token(i) for i in row]
            start = max((i + 1 for i in range(pos) if words[i] == "."), default=0)
            sentence = words[start:]
            sentence[pos - start] = sentence[pos - start - 1] if pos > start else sentence[1]  # any word
            d = self.lang.masked_distribution(sentence, pos - start)
            logp = torch.full((self.tok.vocab_size,), -1e30, dtype=torch.float64)
            for w, p in d.items():
                logp[self.tok.token_to_id(w)] = math.log(p)
            out[b, pos] = logp
        return out


class Bigram(nn.Module):
    """Next-token log-probs from bigram counts (add-0.1 smoothing): it cannot see the first word."""

    causal = True

    def __init__(self, tok, sentences):
        super().__init__()
        counts = torch.full((tok.vocab_size, tok.vocab_size), 0.1, dtype=torch.float64)
        for s in sentences:
            ids = [tok.eos_id] + tok.encode_tokens(s)
            for a, b in zip(ids, ids[1:]):
                counts[a, b] += 1
        self.table = nn.Parameter(torch.log(counts / counts.sum(1, keepdim=True)), requires_grad=False)
        self.config = _Config(tok.vocab_size)

    def forward(self, idx):
        return self.table[idx]


class CountingBigram:
    """The same bigram as a counting model with ``next_distribution(context_ids)`` (like NGramLM)."""

    def __init__(self, bigram: Bigram):
        self.probs = bigram.table.exp().numpy()

    def next_distribution(self, context):
        return self.probs[context[-1]]


class Uniform(nn.Module):
    causal = True

    def __init__(self, vocab_size):
        super().__init__()
        self.config = _Config(vocab_size, 1000)

    def forward(self, idx):
        return torch.zeros((*idx.shape, self.config.vocab_size))


# --- next-token batches ---------------------------------------------------------------------------

def test_next_token_batch_targets_are_inputs_shifted_by_one():
    ids = torch.arange(1000)
    g = torch.Generator().manual_seed(0)
    x, y = next_token_batch(ids, batch_size=64, context=16, generator=g)
    assert x.shape == y.shape == (64, 16) and x.dtype == y.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y, x + 1)  # windows are consecutive slices of the stream
    assert x.min() >= 0 and y.max() <= 999
    starts = x[:, 0]
    assert len(set(starts.tolist())) > 40  # random starts, not one window repeated
    x2, y2 = next_token_batch(ids, 64, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_next_token_batch_reaches_the_last_window_and_validates():
    ids = torch.arange(10)
    x, y = next_token_batch(ids, 500, 9, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x[0], torch.arange(9)) and torch.equal(y[0], torch.arange(1, 10))
    with pytest.raises(ValueError, match="fewer than the window length"):
        next_token_batch(ids, 2, 10)
    with pytest.raises(ValueError, match="context must be an int >= 1"):
        next_token_batch(ids, 2, 0)
    with pytest.raises(ValueError, match="1-D LongTensor"):
        next_token_batch(torch.zeros(3, 3, dtype=torch.long), 2, 1)
    assert random_windows([5, 6, 7], 4, 3).tolist() == [[5, 6, 7]] * 4


# --- masked-LM batches ----------------------------------------------------------------------------

def test_masked_batch_follows_the_80_10_10_rule():
    tok = WordTokenizer([f"w{i}" for i in range(200)])
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(5, tok.vocab_size, (400, 100), generator=g)
    rows[:, 90:] = tok.pad_id                 # padding at the end of every row
    rows[:, 0] = tok.bos_id                   # a special token at the start
    inputs, targets = masked_batch(rows, tok, generator=g)
    maskable = (rows != tok.pad_id) & (rows != tok.bos_id)
    chosen = targets != -100
    n, k = int(maskable.sum()), int(chosen.sum())

    def within(observed, expected, trials):  # 4.5 binomial standard errors
        se = math.sqrt(expected * (1 - expected) / trials)
        assert abs(observed - expected) < 4.5 * se, (observed, expected, se)

    assert not (chosen & ~maskable).any()     # never padding or specials
    within(k / n, 0.15, n)
    assert torch.equal(targets[chosen], rows[chosen])
    assert torch.equal(inputs[~chosen], rows[~chosen])
    masked = inputs[chosen] == tok.mask_id
    changed = (inputs[chosen] != tok.mask_id) & (inputs[chosen] != rows[chosen])
    unchanged = inputs[chosen] == rows[chosen]
    n_ordinary = tok.vocab_size - len(tok.special_ids)
    within(masked.float().mean().item(), 0.8, k)
    within(changed.float().mean().item(), 0.1 * (1 - 1 / n_ordinary), k)
    within(unchanged.float().mean().item(), 0.1 + 0.1 / n_ordinary, k)
    assert not torch.isin(inputs[chosen & (inputs != tok.mask_id)], torch.tensor(tok.special_ids)).any()


def test_masked_batch_can_mask_specials_but_never_padding():
    tok = WordTokenizer(["a", "b"])
    rows = torch.tensor([[tok.bos_id, 5, 6, tok.eos_id, tok.pad_id]] * 2000)
    _, targets = masked_batch(rows, tok, mask_prob=0.5, generator=torch.Generator().manual_seed(0),
                              protect_special=False)
    chosen = targets != -100
    assert chosen[:, 0].any() and chosen[:, 3].any() and not chosen[:, 4].any()
    _, targets = masked_batch(rows, tok, mask_prob=0.5, generator=torch.Generator().manual_seed(0))
    assert not (targets[:, [0, 3, 4]] != -100).any()
    with pytest.raises(ValueError, match="mask_prob"):
        masked_batch(rows, tok, mask_prob=0.0)


def test_sentence_rows_keep_sentences_whole():
    tok = WordTokenizer.for_toy(TINY)
    sents = TINY.sentences(300, seed=1)
    one = sentence_rows(sents, tok)
    assert one.shape == (300, max(map(len, sents)))
    for row, s in zip(one, sents):
        assert tok.decode(row, skip_special=True) == " ".join(s)
    packed, mask = sentence_rows(sents, tok, max_len=20, return_attention_mask=True)
    assert packed.shape[1] == 20 and packed.shape[0] < 300
    texts = [tok.decode(r[m]) for r, m in zip(packed, mask)]
    assert all(t.endswith(" .") for t in texts)         # every row ends at a sentence end
    assert " ".join(texts) == " ".join(" ".join(s) for s in sents)  # all sentences, in order
    assert not (packed == tok.pad_id)[mask].any()
    with pytest.raises(ValueError, match="more than max_len"):
        sentence_rows([["a"] + ["x"] * 30 + ["p", "."]], tok, max_len=20)
    # masked batches work on these rows: padding stays untouched
    inputs, targets = masked_batch(packed, tok, generator=torch.Generator().manual_seed(0))
    assert torch.equal(inputs[~mask], packed[~mask]) and (targets[~mask] == -100).all()


def test_sentence_rows_and_streams_with_char_tokenizer():
    sents = TINY.sentences(20, seed=2)
    text = " ".join(" ".join(s) for s in sents)
    tok = CharTokenizer.from_text(text)
    assert tok.decode(stream_ids(sents, tok)) == text
    packed = sentence_rows(sents, tok, max_len=40)
    assert " ".join(tok.decode(r, skip_special=True) for r in packed) == text


# --- the evaluation helper on the tiny language -----------------------------------------------------

def test_exact_model_has_zero_gap_and_every_row_holds_a_whole_sentence():
    tok = WordTokenizer.for_toy(TINY)
    sents = TINY.sentences(200, seed=3)
    model = ExactCausal(TINY, tok)
    result = exact_gap(model, tok, TINY, sents, batch_size=32)
    assert abs(result.gap) < 1e-9
    assert result.n_tokens == sum(map(len, sents)) and result.n_sentences == 200
    assert result.exact_nll == pytest.approx(np.mean(np.concatenate(exact_token_nll(TINY, sents))))
    # each sentence was fed as "." + sentence, whole: no row starts inside a sentence
    assert sorted(" ".join(r) for r in model.rows_seen) == sorted(". " + " ".join(s) for s in sents)
    for m, s in zip(result.model_token_nll, sents):
        assert m.shape == (len(s),)


def test_a_model_that_loses_the_sentence_start_shows_a_gap():
    """The bigram cannot see the first word the verb agrees with: the gap measures that."""
    tok = WordTokenizer.for_toy(TINY)
    bigram = Bigram(tok, TINY.sentences(5000, seed=4))
    result = exact_gap(bigram, tok, TINY, TINY.sentences(2000, seed=5))
    assert result.gap > 0.02 and result.gap > 5 * result.gap_se
    assert result.model_nll == pytest.approx(result.exact_nll + result.gap)


def test_first_word_is_predicted_after_the_previous_sentence_end():
    tok = WordTokenizer.for_toy(TINY)
    model = ExactCausal(TINY, tok)
    (nll,) = evaluate_sentences(model, tok, [["b", "x", "q", "."]])
    assert nll == pytest.approx([-math.log(0.4), -math.log(0.3), -math.log(0.4), 0.0])


def test_counting_models_are_scored_like_modules():
    tok = WordTokenizer.for_toy(TINY)
    bigram = Bigram(tok, TINY.sentences(500, seed=6))
    sents = TINY.sentences(50, seed=7)
    a = evaluate_sentences(bigram, tok, sents)
    b = evaluate_sentences(CountingBigram(bigram), tok, sents)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-9)


def test_sentences_longer_than_the_context_are_refused_not_cut():
    tok = WordTokenizer.for_toy(TINY)
    long_sentence = ["a"] + ["x"] * 10 + ["p", "."]
    with pytest.raises(ValueError, match="context_length is 8"):
        evaluate_sentences(ExactCausal(TINY, tok, context_length=8), tok, [long_sentence])
    with pytest.raises(ValueError, match="context_token"):
        evaluate_sentences(ExactCausal(TINY, tok), tok, [long_sentence], context_token=None)
    with pytest.raises(ValueError, match="does not know"):
        evaluate_sentences(ExactCausal(TINY, tok), tok, [["a", "zebra", "."]])


def test_masked_exact_model_has_zero_pseudo_likelihood_gap():
    tok = WordTokenizer.for_toy(TINY)
    sents = TINY.sentences(60, seed=8)
    result = exact_gap(ExactMasked(TINY, tok), tok, TINY, sents)
    assert abs(result.gap) < 1e-9 and result.n_tokens == sum(map(len, sents))
    # the verb is nearly fixed by both sides: masked NLL is below the left-to-right NLL
    assert result.exact_nll < np.mean(np.concatenate(exact_token_nll(TINY, sents)))


def test_training_mode_is_restored():
    tok = WordTokenizer.for_toy(TINY)
    model = Bigram(tok, TINY.sentences(10))
    model.train()
    evaluate_sentences(model, tok, TINY.sentences(3))
    assert model.training


@pytest.mark.parametrize("make", [
    lambda text: CharTokenizer.from_text(text),
    lambda text: BPETokenizer.train(text, vocab_size=30),
    lambda text: BPETokenizer.train(text, vocab_size=300, byte_level=True),
], ids=["char", "bpe", "bpe-bytes"])
def test_subword_scores_are_aligned_with_words(make):
    """A uniform model pays log V per model token; each word owns its pieces and the space before it."""
    sents = TINY.sentences(40, seed=9)
    tok = make(" ".join(" ".join(s) for s in TINY.sentences(300, seed=10)))
    per_word = evaluate_sentences(Uniform(tok.vocab_size), tok, sents)
    per_token = evaluate_sentences(Uniform(tok.vocab_size), tok, sents, per="token")
    log_v = math.log(tok.vocab_size)
    for s, w, t in zip(sents, per_word, per_token):
        assert w.shape == (len(s),)
        assert w.sum() == pytest.approx(t.sum())
        assert len(t) == len(tok.encode(" " + " ".join(s)))
        if isinstance(tok, CharTokenizer):
            np.testing.assert_allclose(w, [(len(word) + 1) * log_v for word in s], rtol=1e-6)


# --- against the real toy language -------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy():
    corpus = pytest.importorskip("lmlab.corpus")
    lang = corpus.toy()
    return lang, WordTokenizer.for_toy(lang)


def test_toy_exact_model_has_zero_gap(toy):
    lang, tok = toy
    sents = lang.sentences(40, seed=11)
    result = exact_gap(ExactCausal(lang, tok), tok, lang, sents)
    assert abs(result.gap) < 1e-9
    assert result.exact_nll > 0.5  # the language is not trivial


def test_toy_bigram_is_above_the_exact_loss(toy):
    lang, tok = toy
    bigram = Bigram(tok, lang.sentences(3000, seed=12))
    result = exact_gap(bigram, tok, lang, lang.sentences(500, seed=13))
    assert result.gap > 5 * result.gap_se > 0


def test_toy_masked_exact_model_has_zero_gap(toy):
    lang, tok = toy
    sents = lang.sentences(8, seed=14)
    result = exact_gap(ExactMasked(lang, tok), tok, lang, sents, batch_size=16)
    assert abs(result.gap) < 1e-9


def test_toy_sentences_become_streams_and_rows(toy):
    lang, tok = toy
    samples = lang.sample(30, seed=15)  # Sentence objects
    words = [s.tokens for s in samples]
    assert tok.decode(stream_ids(samples, tok)) == " ".join(" ".join(w) for w in words)
    assert torch.equal(stream_ids(lang.sentences(30, seed=15), tok), torch.tensor(tok.encode(lang.text(30, seed=15))))
    rows, mask = sentence_rows(samples, tok, max_len=32, return_attention_mask=True)
    assert " ".join(tok.decode(r[m]) for r, m in zip(rows, mask)) == " ".join(" ".join(w) for w in words)
    assert all(tok.decode(r[m]).endswith(" .") for r, m in zip(rows, mask))
