"""A mutation table per checker: realistic wrong solutions, written as a student would write them, each of
which must be rejected with its own diagnosis (the printed message names the actual mistake), never a
generic "wrong values"; and every hint printed on the way may only name what the chapter imported."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from checker_support import CORRECT, NEG_INF, bisection, printed, unimported
from lmlab import exercises as ex

torch.set_num_threads(1)


# --- helpers for the mutants ----------------------------------------------------------------------------

def _scores(q, k):
    return q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5


def _masked(q, k, mask, fill=NEG_INF, invert=False):
    s = _scores(q, k)
    if mask is None:
        return s
    return s.masked_fill(mask if invert else ~mask, fill)


def attention_own_tril(q, k, v, mask=None):
    scores = _scores(q, k)
    if mask is not None:
        causal = torch.tril(torch.ones(scores.shape[-2], scores.shape[-1])).bool()
        scores = scores.masked_fill(~causal, NEG_INF)
    return torch.softmax(scores, dim=-1) @ v


def attention_times_inf(q, k, v, mask=None):
    scores = _scores(q, k)
    if mask is not None:
        scores = scores + (~mask) * float("-inf")
    return torch.softmax(scores, dim=-1) @ v


def attention_k_T(q, k, v, mask=None):
    scores = q @ k.T / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, NEG_INF)
    return torch.softmax(scores, dim=-1) @ v


def naive_softmax(x):
    return torch.exp(x) / torch.exp(x).sum(dim=-1, keepdim=True)


def softmax_global_max(x):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=-1, keepdim=True)


def count_bigrams_fixed_size(tokens, vocab):
    index = {w: i for i, w in enumerate(vocab)}
    counts = np.zeros((5, 5))
    for a, b in zip(tokens, tokens[1:]):
        counts[index[a], index[b]] += 1
    return counts


def count_bigrams_first_seen(tokens, vocab):
    index = {}
    for w in tokens + vocab:
        index.setdefault(w, len(index))
    counts = np.zeros((len(vocab), len(vocab)))
    for a, b in zip(tokens, tokens[1:]):
        counts[index[a], index[b]] += 1
    return counts


def count_bigrams_sorted(tokens, vocab):
    index = {w: i for i, w in enumerate(sorted(vocab))}
    counts = np.zeros((len(vocab), len(vocab)))
    for a, b in zip(tokens, tokens[1:]):
        counts[index[a], index[b]] += 1
    return counts


def _top_p(logits, p, strict=False, by_position=False, unsorted_back=False, on_logits=False):
    probs = torch.softmax(logits, dim=-1)
    if by_position:
        return logits.masked_fill(torch.cumsum(probs, -1) - probs >= p, NEG_INF)
    values = logits if on_logits else probs
    sorted_vals, order = torch.sort(values, descending=True)
    cum = torch.cumsum(sorted_vals, dim=-1)
    keep_sorted = (cum <= p) if strict else (cum - sorted_vals < p)
    if unsorted_back:
        return logits.masked_fill(~keep_sorted, NEG_INF)
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, NEG_INF)


def _neighbors(E, i, k, normalise_dim=1, include_self=False, dot=False):
    unit = E if dot else E / E.norm(dim=normalise_dim, keepdim=True)
    sims = unit @ unit[i]
    if not include_self:
        sims[i] = NEG_INF
    return torch.topk(sims, k).indices


def _analogy(E, a, b, c, exclude=(0, 1, 2), sign=1, score="cos"):
    target = E[b] - E[a] + E[c] if sign == 1 else E[a] - E[b] + E[c]
    if score == "cos":
        sims = (E @ target) / (E.norm(dim=1) * target.norm())
    elif score == "dot":
        sims = E @ target
    else:
        sims = -(E - target).norm(dim=1)
    sims[[(a, b, c)[j] for j in exclude]] = NEG_INF
    return int(sims.argmax())


def _step(model, optimizer, x, y, zero_grad=True, backward=True, step=True, sign=1, after=False, manual_lr=None,
          as_tensor=False, order="normal"):
    if zero_grad:
        optimizer.zero_grad()
    if order == "step_first":
        optimizer.step()
    loss = F.cross_entropy(model(x), y)
    if backward:
        (sign * loss).backward()
    if manual_lr is not None:
        with torch.no_grad():
            for p in model.parameters():
                p -= manual_lr * p.grad
    elif step and order != "step_first":
        optimizer.step()
    if after:
        return F.cross_entropy(model(x), y).item()
    return loss if as_tensor else loss.item()


def _relu_grads(x, y, W1, b1, W2, b2, deriv="relu", scale=True, onehot=True, b_axis=0):
    a = x @ W1 + b1
    h = torch.relu(a)
    q = torch.softmax(h @ W2 + b2, dim=-1)
    dz = q - F.one_hot(y, q.shape[-1]) if onehot else q
    if scale:
        dz = dz / len(y)
    dh = dz @ W2.T
    da = {"relu": dh * (a > 0), "tanh": dh * (1 - h ** 2), "none": dh, "h": dh * h}[deriv]
    return {"W1": x.T @ da, "b1": da.sum(b_axis), "W2": h.T @ dz, "b2": dz.sum(b_axis)}


def _prune(trained, initial, sparsity, rank=None, values=None, keep_smallest=False, signed=False):
    weights, masks = {}, {}
    for name, w in (rank or trained).items():
        order = torch.sort(w.flatten() if signed else w.abs().flatten(), stable=True).indices
        n = round(sparsity * w.numel())
        keep = torch.ones(w.numel(), dtype=torch.bool)
        if keep_smallest and n:
            keep[:] = False
            keep[order[:w.numel() - n]] = True
        else:
            keep[order[:n]] = False
        masks[name] = keep.view_as(w)
        weights[name] = (values or initial)[name] * masks[name]
    return weights, masks


def _probe(X_train, y_train, X_test, y_test, fit="train", score="test", flip=False, percent=False):
    from sklearn.linear_model import LogisticRegression

    fx, fy = {"train": (X_train, y_train), "test": (X_test, y_test)}[fit]
    probe = LogisticRegression(max_iter=1000).fit(fx, fy)
    acc = probe.score(*((X_train, y_train) if score == "train" else (X_test, y_test)))
    return 100 * acc if percent else (1 - acc if flip else acc)


def _head(patterns, sites, row="query", reduce="mean", weight=False):
    s, q, t = sites.T
    rows = patterns[s, :, :, q, :] if row == "query" else (
        patterns.transpose(-1, -2)[s, :, :, q, :] if row == "column" else patterns[s, :, :, q - 1, :])
    if weight:
        return rows[torch.arange(len(t)), :, :, t].mean(0)
    hits = (rows.argmax(-1) == t[:, None, None]).float()
    return hits.sum(0) if reduce == "sum" else hits.mean(0)


def _ngram(n, train, test, vocab_size, score_on="test", log=False, per_sentence=False, smoothing=None, order=0):
    from lmlab.models import NGramLM

    lm = NGramLM(n + order, vocab_size=vocab_size, **({"smoothing": smoothing} if smoothing else {})).fit(train)
    scored = train if score_on == "train" else test
    lps = [lm.token_logprobs(s) for s in scored]
    if per_sentence:
        return float(np.mean([math.exp(-lp.mean()) for lp in lps]))
    ce = -np.concatenate(lps).mean()
    return ce if log else math.exp(ce)


def _beam(next_logprobs, prompt, num_beams, steps, per_beam=False, last_only=False, ascending=False,
          with_prompt=False, with_score=False):
    beams = [([], 0.0)]
    for _ in range(steps):
        if per_beam and beams[0][0]:
            beams = [max(((toks + [w], sc + lp) for w, lp in next_logprobs(list(prompt) + toks).items()),
                         key=lambda c: c[1]) for toks, sc in beams]
            continue
        candidates = [(toks + [w], (lp if last_only else sc + lp)) for toks, sc in beams
                      for w, lp in next_logprobs(list(prompt) + toks).items()]
        candidates.sort(key=lambda c: c[1], reverse=not ascending)
        beams = candidates[:num_beams]
    best = max(beams, key=lambda b: b[1]) if per_beam else beams[0]
    tokens = list(prompt) + best[0] if with_prompt else best[0]
    return (tokens, best[1]) if with_score else tokens


def _entropy_nan(p):
    return float(-(p * torch.log(p)).sum())


def _entropy_no_minus(p):
    nz = p[p > 0]
    return float((nz * torch.log(nz)).sum())


def _entropy_bits(p):
    nz = p[p > 0]
    return float(-(nz * torch.log2(nz)).sum())


def _entropy_ok(p):
    nz = p[p > 0]
    return float(-(nz * torch.log(nz)).sum())


def _sinusoidal(n, d, swap=False, halves=False, pair_exponent=True, start=0, multiply=False):
    pos = torch.arange(start, start + n, dtype=torch.float64)[:, None]
    i = torch.arange(0, d, 2, dtype=torch.float64) if pair_exponent else torch.arange(d // 2, dtype=torch.float64)
    angle = pos * 10000.0 ** ((i if multiply else -i) / d)
    a, b = (torch.cos(angle), torch.sin(angle)) if swap else (torch.sin(angle), torch.cos(angle))
    if halves:
        return torch.cat([a, b], dim=1)
    table = torch.zeros(n, d, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = a, b
    return table


def _rotate(x, positions, sign=1.0, combine="stack", pairs="neighbours", exponent="2i", use_rows=False):
    d = x.shape[-1]
    i = torch.arange(0, d, 2, dtype=torch.float32) if exponent == "2i" else torch.arange(d // 2, dtype=torch.float32)
    pos = torch.arange(len(positions)) if use_rows else positions
    angle = sign * pos.float()[:, None] * 10000.0 ** (-i / d)
    x1, x2 = (x[:, 0::2], x[:, 1::2]) if pairs == "neighbours" else (x[:, : d // 2], x[:, d // 2:])
    first, second = x1 * angle.cos() - x2 * angle.sin(), x1 * angle.sin() + x2 * angle.cos()
    if combine == "cat" or pairs == "halves":
        return torch.cat([first, second], dim=-1)
    return torch.stack([first, second], dim=-1).flatten(-2)


def _block(x, attn, mlp, ln1, ln2, kind="pre"):
    if kind == "post":
        x = ln1(x + attn(x))
        return ln2(x + mlp(x))
    if kind == "parallel":
        return x + attn(ln1(x)) + mlp(ln2(x))
    if kind == "no_residual":
        return mlp(ln2(attn(ln1(x))))
    if kind == "normed":
        x = ln1(x) + attn(ln1(x))
        return ln2(x) + mlp(ln2(x))
    if kind == "swapped":
        x = x + attn(ln2(x))
        return x + mlp(ln1(x))
    raise ValueError(kind)


# --- the tables: (wrong solution, fragments its message must contain; the first names the mistake) ------

MUTANTS = {
    "softmax": [
        (naive_softmax, ["overflows", "Hint: subtract"]),
        (lambda x: torch.softmax(x, dim=0), ["wrong axis", "dim=-1"]),
        (lambda x: torch.exp(x - x.max()) / torch.exp(x - x.max()).sum(), ["whole tensor"]),
        (lambda x: torch.exp(x - x.max(dim=-1, keepdim=True).values), ["without dividing by the sum"]),
        (lambda x: torch.exp(x - x.max(dim=-1).values) / torch.exp(x - x.max(dim=-1).values).sum(-1, keepdim=True),
         ["row maxima without keepdim=True"]),
        (lambda x: torch.exp(x - x.max(dim=-1, keepdim=True).values) /
         torch.exp(x - x.max(dim=-1, keepdim=True).values).sum(dim=-1), ["row sums without keepdim=True"]),
        (lambda x: torch.exp(x - x.max(dim=-1)) / torch.exp(x - x.max(dim=-1)).sum(dim=-1, keepdim=True),
         ["returns a pair (values, indices)", ".values"]),
        (softmax_global_max, ["maximum of the whole tensor", "underflow"]),
        (lambda x: torch.softmax(x, dim=-1).unsqueeze(0), ["wrong shape", "expected (3,), got (1, 3)"]),
        (lambda x: torch.softmax(x, dim=-1) * 0.9, ["do not sum to 1"]),
        (lambda x: torch.exp(x - x.min(dim=-1, keepdim=True).values) /
         torch.exp(x - x.min(dim=-1, keepdim=True).values).sum(dim=-1, keepdim=True), ["A -inf logit"]),
    ],
    "causal_mask": [
        (lambda n: torch.ones(n, n, dtype=torch.bool).triu(), ["transposed"]),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), ["diagonal is masked", "j <= i"]),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(1), ["off by one"]),
        (lambda n: ~torch.ones(n, n, dtype=torch.bool).tril(), ["True marks the positions to hide"]),
        (lambda n: torch.tril(torch.ones(n, n)), ["pattern is right", "not booleans", ".bool()"]),
        (lambda n: torch.zeros(n, n).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), NEG_INF),
         ["additive float mask"]),
        (lambda n: torch.ones(4, 4, dtype=torch.bool).tril(), ["size is fixed in your code"]),
        (lambda n: torch.ones(n, n, dtype=torch.bool), ["nothing is masked"]),
    ],
    "attention": [
        (lambda q, k, v, mask=None: torch.softmax(
            (q @ k.transpose(-2, -1)) if mask is None else (q @ k.transpose(-2, -1)).masked_fill(~mask, NEG_INF),
            -1) @ v, ["not scaled", "d_k ** 0.5"]),
        (lambda q, k, v, mask=None: torch.softmax(
            (q @ k.transpose(-2, -1) / q.shape[-1]) if mask is None else
            (q @ k.transpose(-2, -1) / q.shape[-1]).masked_fill(~mask, NEG_INF), -1) @ v,
         ["divide the scores by d_k instead of sqrt(d_k)"]),
        (lambda q, k, v, mask=None: torch.softmax(_scores(q, k), dim=-1) @ v, ["mask is ignored"]),
        (attention_own_tril, ["build your own causal mask", "padding mask"]),
        (lambda q, k, v, mask=None: torch.softmax(_masked(q, k, mask, invert=True), -1) @ v,
         ["True means 'may attend'"]),
        (lambda q, k, v, mask=None: torch.softmax(_masked(q, k, mask, fill=0.0), -1) @ v,
         ["set to 0 instead of -inf"]),
        (lambda q, k, v, mask=None: (torch.softmax(_scores(q, k), dim=-1) * (1 if mask is None else mask)) @ v,
         ["applied after the softmax"]),
        (lambda q, k, v, mask=None: torch.softmax(_masked(q, k, mask), dim=-2) @ v, ["over the queries (dim=-2)"]),
        (lambda q, k, v, mask=None: torch.softmax(_masked(q, k, mask), -1),
         ["wrong shape", "expected (3, 2), got (3, 5)", "shape of the attention weights"]),
        (lambda q, k, v, mask=None: naive_softmax(_masked(q, k, mask)) @ v,
         ["scores in the hundreds", "overflows", "use torch.softmax"]),
        (attention_times_inf, ["(~mask) * float('-inf')", "0 * -inf = NaN", "masked_fill"]),
        (attention_k_T, ["k.T reverses every axis", "transpose(-2, -1)"]),
    ],
    "bigram_counts": [
        (lambda t, v: count_bigrams_fixed_size(t, v).T, ["transposed"]),
        (lambda t, v: count_bigrams_fixed_size(t + t[:1], v), ["one pair too many", "wrapping"]),
        (lambda t, v: np.minimum(count_bigrams_fixed_size(t, v), 1), ["whether a pair occurs"]),
        (count_bigrams_fixed_size, ["fixed size of 5 x 5", "len(vocab)"]),
        (count_bigrams_first_seen, ["order they first appear"]),
        (count_bigrams_sorted, ["sorted order"]),
        (lambda t, v: _skip_two(t, v), ["two places later"]),
        (lambda t, v: torch.zeros(len(v), len(v) + 1), ["wrong shape", "expected (5, 5), got (5, 6)"]),
    ],
    "bigram_probs": [
        (lambda c, a: (c + a) / (c + a).sum(dim=0, keepdim=True), ["columns sum to 1"]),
        (lambda c, a: (c + a) / (c + a).sum(), ["total of the whole table"]),
        (lambda c, a: c / c.sum(dim=1, keepdim=True), ["ignore alpha"]),
        (lambda c, a: (c + 1) / (c + 1).sum(dim=1, keepdim=True), ["always add 1"]),
        (lambda c, a: (c + a) / (c.sum(dim=1, keepdim=True) + a), ["adds alpha once", "alpha * V"]),
        (lambda c, a: (c + a) / c.sum(dim=1, keepdim=True), ["not to the row totals"]),
        (lambda c, a: (c + a) / (c + a).sum(dim=1), ["without keepdim=True"]),
        (lambda c, a: c.add_(a) / c.sum(dim=1, keepdim=True), ["changed its input in place"]),
    ],
    "cross_entropy": [
        (lambda l, t: F.cross_entropy(l, t, reduction="sum"), ["sum the losses instead of averaging"]),
        (lambda l, t: F.cross_entropy(l, t) / math.log(2), ["bits"]),
        (lambda l, t: -F.cross_entropy(l, t), ["negative"]),
        (lambda l, t: -l[torch.arange(len(t)), t].mean(), ["raw logits", "log_softmax"]),
        (lambda l, t: F.cross_entropy(l, t, reduction="none"), ["one loss per example", "mean"]),
        (lambda l, t: -torch.log_softmax(l, -1)[:, t].mean(), ["logp[:, targets]"]),
        (lambda l, t: -torch.log(naive_softmax(l))[torch.arange(len(t)), t].mean(),
         ["logits in the thousands", "NaN", "log_softmax"]),
        (lambda l, t: -torch.log(torch.softmax(l, -1))[torch.arange(len(t)), t].mean(), ["returned inf", "log(0)"]),
        (lambda l, t: -(l - torch.logsumexp(l, dim=-1))[torch.arange(len(t)), t].mean(),
         ["log-sum-exp without keepdim=True"]),
        (lambda l, t: -torch.log_softmax(l, 0)[torch.arange(len(t)), t].mean(), ["over the examples (dim 0)"]),
    ],
    "perplexity": [
        (lambda lp: math.exp(lp.mean().item()), ["below 1", "minus sign"]),
        (lambda lp: math.exp(-lp.sum().item()), ["total, not the mean"]),
        (lambda lp: 2 ** (-lp.mean().item()), ["2 **"]),
        (lambda lp: (1 / torch.exp(lp).mean()).item(), ["average probability"]),
        (lambda lp: torch.exp(-lp).mean(), ["average exp(-log p)"]),
        (lambda lp: -lp.mean(), ["cross-entropy", "exp"]),
    ],
    "entropy": [
        (lambda p: -(p * torch.log(p)).sum(), ["NaN", "0 * log(0)", "Hint: count 0 log 0 as 0"]),
        (lambda p: -(p[p > 0] * torch.log2(p[p > 0])).sum(), ["bits"]),
        (lambda p: (p[p > 0] * torch.log(p[p > 0])).sum(), ["negative", "minus sign"]),
        (lambda p: -torch.log(p[p > 0]).sum(), ["sum -log p without weighting"]),
        (lambda p: -torch.log(p[p > 0]).mean(), ["average -log p without weighting"]),
        (lambda p: -(p[p > 0] * torch.log(p[p > 0])).mean(), ["average -p log p"]),
    ],
    "sample": [
        (lambda l, T: int(torch.multinomial(torch.softmax(l * T, -1), 1)), ["multiply the logits by the temperature"]),
        (lambda l, T: int(torch.multinomial(torch.softmax(l, -1), 1)), ["temperature has no effect"]),
        (lambda l, T: int(torch.argmax(l / T)), ["greedy decoding"]),
        (lambda l, T: int(torch.randint(0, len(l), ())), ["equally often"]),
        (lambda l, T: torch.softmax(l / T, -1), ["returned shape (5,)", "return one token id"]),
        (lambda l, T: int(torch.multinomial(l / T, 1)), ["needs probabilities"]),
        (lambda l, T: torch.multinomial(torch.softmax(l / T, -1), 1), ["you return a tensor", "Python int"]),
        (lambda l, T: int(torch.multinomial(torch.softmax(l[:5] / T, -1), 1)), ["only ever returns ids 0 to 4"]),
    ],
    "top_k": [
        (lambda l, k: l.masked_fill(l < torch.topk(l, k, -1).values[..., -1:], 0.0), ["set to 0", "-inf"]),
        (lambda l, k: l.masked_fill(l < torch.topk(l, k, -1).values[..., -1:], -1e9),
         ["large finite number", "instead of -inf"]),
        (lambda l, k: torch.softmax(CORRECT["top_k"](l, k), -1), ["return probabilities"]),
        (lambda l, k: CORRECT["top_k"](l, min(k + 1, l.shape[-1])), ["k + 1", "off by one"]),
        (lambda l, k: CORRECT["top_k"](l, k - 1) if k > 1 else torch.full_like(l, NEG_INF), ["k - 1", "off by one"]),
        (lambda l, k: l.masked_fill(l > torch.topk(l, k, -1, largest=False).values[..., -1:], NEG_INF),
         ["k smallest"]),
        (lambda l, k: l.masked_fill(l < torch.topk(l.flatten(), k).values[-1], NEG_INF), ["whole tensor"]),
        (lambda l, k: l.masked_fill_(l < torch.topk(l, k, -1).values[..., -1:], NEG_INF), ["changed its input in place"]),
        (lambda l, k: torch.where(CORRECT["top_k"](l, k).isinf(), CORRECT["top_k"](l, k), l * 2),
         ["change their logits"]),
        (lambda l, k: l + 0.0, ["nothing was removed"]),
        (lambda l, k: l.masked_fill(l < torch.topk(l, k, -1).values[..., -1], NEG_INF), ["without keeping their axis"]),
        (lambda l, k: torch.topk(l, k, dim=-1).values, ["only the k kept values"]),
    ],
    "top_p": [
        (lambda l, p: _top_p(l, p, strict=True), ["drop the token that crosses p"]),
        (lambda l, p: _top_p(l, p, by_position=True), ["vocabulary order; sort them"]),
        (lambda l, p: _top_p(l, p, unsorted_back=True), ["map it back with the sort order"]),
        (lambda l, p: torch.where(CORRECT["top_p"](l, p).isinf(), torch.zeros_like(l), l), ["set to 0"]),
        (lambda l, p: CORRECT["top_p"](l, p).clamp(min=-1e9), ["large finite number"]),
        (lambda l, p: torch.softmax(CORRECT["top_p"](l, p), -1), ["return probabilities"]),
        (lambda l, p: torch.full_like(l, NEG_INF), ["removed every token"]),
        (lambda l, p: l.clone(), ["nothing was removed"]),
        (lambda l, p: _top_p(l, p, on_logits=True), ["accumulate logits"]),
    ],
    "cosine_similarity": [
        (lambda a, b: a @ b, ["dot product without dividing"]),
        (lambda a, b: (a @ b) / a.norm(), ["length of a only"]),
        (lambda a, b: (a @ b) / (a.norm() ** 2 * b.norm() ** 2), ["squared lengths"]),
        (lambda a, b: (a @ b) / (a.norm() + b.norm()), ["sum of the lengths"]),
        (lambda a, b: 1 - (a @ b) / (a.norm() * b.norm()), ["cosine distance"]),
        (lambda a, b: (a - b).norm(), ["Euclidean distance"]),
        (lambda a, b: (a @ b) / (a.sum() * b.sum()), ["sums of the entries"]),
    ],
    "nearest_neighbors": [
        (lambda E, i, k: _neighbors(E, i, k, include_self=True), ["includes the word itself"]),
        (lambda E, i, k: _neighbors(E, i, k, normalise_dim=0), ["wrong axis", "dim=0"]),
        (lambda E, i, k: _neighbors(E, i, k, dot=True), ["dot product", "long vectors"]),
        (lambda E, i, k: torch.topk((-(E - E[i]).norm(dim=-1)).index_fill(0, torch.tensor([i]), NEG_INF), k).indices,
         ["Euclidean distance"]),
        (lambda E, i, k: torch.topk((-F.cosine_similarity(E, E[i][None], dim=-1)).index_fill(
            0, torch.tensor([i]), NEG_INF), k).indices, ["least similar vectors"]),
        (lambda E, i, k: _neighbors(E, i, k).flip(0), ["least similar first"]),
        (lambda E, i, k: _neighbors(E, i, k, include_self=True)[1:], ["dropping the first result"]),
        (lambda E, i, k: E / E.norm(dim=1), ["without keepdim=True"]),
        (lambda E, i, k: torch.topk(F.cosine_similarity(E, E[i][None], dim=-1), k).values * 0.99,
         ["return row indices", "not similarities"]),
    ],
    "analogy": [
        (lambda E, a, b, c: _analogy(E, a, b, c, exclude=()), ["one of the three input words"]),
        (lambda E, a, b, c: _analogy(E, a, b, c, exclude=(2,)), ["leave out only c"]),
        (lambda E, a, b, c: _analogy(E, a, b, c, sign=-1), ["E[a] - E[b] + E[c]"]),
        (lambda E, a, b, c: _analogy(E, a, b, c, score="dot"), ["dot product"]),
        (lambda E, a, b, c: _analogy(E, a, b, c, score="euclid"), ["Euclidean distance"]),
        (lambda E, a, b, c: E[b] - E[a] + E[c], ["vector of 4 numbers", "the target"]),
    ],
    "greedy_next": [
        (lambda l: l[:, 0].argmax(-1), ["first position"]),
        (lambda l: l[:, -1].argmin(-1), ["argmin"]),
        (lambda l: l[:, -1].max(-1).values, ["largest logit, not its index"]),
        (lambda l: l.argmax(-1), ["wrong shape", "one id per position"]),
        (lambda l: l.argmax(1)[:, -1], ["over the positions (dim 1)"]),
        (lambda l: l[-1].argmax(-1), ["last sequence of the batch"]),
        (lambda l: torch.softmax(l[:, -1], -1).max(-1).values, ["highest probability"]),
    ],
    "train_step": [
        (lambda m, o, x, y: _step(m, o, x, y, zero_grad=False), ["never zero the gradients", "step 2 of 3"]),
        (lambda m, o, x, y: _step(m, o, x, y, backward=False), ["no gradients", "step 1 of 3"]),
        (lambda m, o, x, y: _step(m, o, x, y, step=False), ["although they have gradients", "in that order"]),
        (lambda m, o, x, y: _step(m, o, x, y, sign=-1), ["climbs the gradient"]),
        (lambda m, o, x, y: _step(m, o, x, y, after=True), ["loss after the update"]),
        (lambda m, o, x, y: _step(m, o, x, y, manual_lr=0.5), ["by hand (p -= 0.5 * p.grad)", "AdamW",
                                                              "optimizer.step()"]),
        (lambda m, o, x, y: _step(m, o, x, y, manual_lr=o.param_groups[0]["lr"]), ["by hand (p -= lr * p.grad)"]),
        (lambda m, o, x, y: _step(m, o, x, y, as_tensor=True), ["you return a tensor", "Python number",
                                                               "loss.item()"]),
        (lambda m, o, x, y: _mse_step(m, o, x, y), ["differ from one optimizer step"]),
    ],
    "relu_backprop": [
        (lambda *a: _relu_grads(*a, deriv="tanh"), ["tanh's derivative"]),
        (lambda *a: _relu_grads(*a, deriv="none"), ["through the ReLU unchanged"]),
        (lambda *a: _relu_grads(*a, deriv="h"), ["output h instead of its derivative"]),
        (lambda *a: _relu_grads(*a, scale=False), ["N times too large"]),
        (lambda *a: _relu_grads(*a, onehot=False), ["p - onehot(y)"]),
        (lambda x, y, *p: {**_relu_grads(x, y, *p), "b2": _relu_grads(x, y, *p)["b2"][None].expand(len(y), -1)},
         ["one row per example"]),
        (lambda x, y, *p: {**_relu_grads(x, y, *p), "W2": _relu_grads(x, y, *p)["W2"].T}, ["check the transposes"]),
        (lambda x, y, *p: {k: v for k, v in _relu_grads(x, y, *p).items() if k != "b1"}, ["your dict has no"]),
    ],
    "gradient_descent": [
        (lambda w0, lr, n, c: [w0 * (1 + lr * c) ** t for t in range(n + 1)], ["up the slope"]),
        (lambda w0, lr, n, c: CORRECT["gradient_descent"](w0, lr, n, 1.0), ["leave out the curvature"]),
        (lambda w0, lr, n, c: CORRECT["gradient_descent"](w0, lr, n, c / 2), ["half what it should be"]),
        (lambda w0, lr, n, c: CORRECT["gradient_descent"](w0, 1.0, n, c), ["leave out the learning rate"]),
        (lambda w0, lr, n, c: CORRECT["gradient_descent"](w0, lr, n, c)[1:], ["leave out the starting point w0",
                                                                               "steps + 1"]),
        (lambda w0, lr, n, c: CORRECT["gradient_descent"](w0, lr, n, c)[:-1], ["stop one step early"]),
        (lambda w0, lr, n, c: [w0 - t * lr * c * w0 for t in range(n + 1)], ["gradient at w0 for every step"]),
        (lambda w0, lr, n, c: CORRECT["gradient_descent"](w0, lr, n, c)[-1], ["return a list of numbers"]),
    ],
    "prune_and_rewind": [
        (lambda tr, ini, s: _prune(tr, ini, s, values=tr), ["keep the trained values"]),
        (lambda tr, ini, s: _prune(tr, ini, s, rank=ini), ["initial magnitude"]),
        (lambda tr, ini, s: _prune(tr, ini, s, keep_smallest=True), ["keep the smallest"]),
        (lambda tr, ini, s: _prune(tr, ini, s, signed=True), ["signed value"]),
        (lambda tr, ini, s: _prune(tr, ini, 1 - s if s else 0.0), ["fraction removed"]),
        (lambda tr, ini, s: _global_prune(tr, ini, s), ["across all tensors"]),
        (lambda tr, ini, s: tr, ["pair (weights, masks)"]),
    ],
    "probe": [
        (lambda *a: _probe(*a, score="train"), ["training data"]),
        (lambda *a: _probe(*a, fit="test"), ["fit the probe on the test split"]),
        (lambda *a: _probe(*a, flip=True), ["error rate"]),
        (lambda *a: _probe(*a, percent=True), ["percentage"]),
        (lambda Xtr, ytr, Xte, yte: _probe_predictions(Xtr, ytr, Xte), ["predictions"]),
    ],
    "head_accuracy": [
        (lambda p, s: _head(p, s, row="column"), ["column"]),
        (lambda p, s: _head(p, s, weight=True), ["mean attention weight"]),
        (lambda p, s: _head(p, s, reduce="sum"), ["number of hits"]),
        (lambda p, s: _head(p, s, row="before"), ["token before the query"]),
        (lambda p, s: _head(p, s).T, ["transposed"]),
        (lambda p, s: _head(p, s).max(-1, keepdim=True).values.expand(-1, p.shape[2]), ["each layer's best head"]),
    ],
    "ngram_perplexity": [
        (lambda *a: _ngram(*a, log=True), ["return the cross-entropy"]),
        (lambda *a: _ngram(*a, score_on="train"), ["score the training sequences"]),
        (lambda *a: _ngram(*a, per_sentence=True), ["average the perplexities of the sentences"]),
        (lambda *a: _ngram(*a, order=1), ["perplexity of the 2-gram model"]),
        (lambda *a: _ngram(*a, smoothing="add-k"), ["add-one smoothing"]),
        (lambda *a: 1 / _ngram(*a), ["at least 1"]),
    ],
    "beam_search": [
        (lambda m, p, b, s: _beam(m, p, 1, s), ["you keep only one hypothesis"]),
        (lambda m, p, b, s: _beam(m, p, b, s, last_only=True), ["by the last token's log-probability"]),
        (lambda m, p, b, s: _beam(m, p, b, s, per_beam=True), ["extend each beam by its own best token"]),
        (lambda m, p, b, s: _beam(m, p, b, s, ascending=True), ["least probable"]),
        (lambda m, p, b, s: _beam(m, p, b, s, with_prompt=True), ["return the prompt too"]),
        (lambda m, p, b, s: _beam(m, p, b, s, with_score=True), ["return only the list"]),
        (lambda m, p, b, s: _beam(m, p, b + 20, s), ["search everything"]),
    ],
    "temperature_for_entropy": [
        (lambda l, t: bisection(_entropy_nan, l, t), ["0 * log(0)", "NaN", "p = p[p > 0]"]),
        (lambda l, t: bisection(_entropy_no_minus, l, t), ["no minus sign"]),
        (lambda l, t: bisection(_entropy_bits, l, t), ["bits"]),
        (lambda l, t: 1 / bisection(_entropy_ok, l, t), ["multiplied by T"]),
        (lambda l, t: t, ["return the target itself"]),
        (lambda l, t: 2 * bisection(_entropy_ok, l, t), ["too high (too flat)"]),
        (lambda l, t: -1.0, ["a number > 0"]),
        (lambda l, t: [1.0, 2.0], ["return one number"]),
    ],
    "sinusoidal_positions": [
        (lambda n, d: _sinusoidal(n, d, swap=True), ["swapped"]),
        (lambda n, d: _sinusoidal(n, d, halves=True), ["first half"]),
        (lambda n, d: _sinusoidal(n, d, pair_exponent=False), ["2i/d"]),
        (lambda n, d: _sinusoidal(n, d, start=1), ["start at 1"]),
        (lambda n, d: _sinusoidal(n, d).T, ["transposed"]),
        (lambda n, d: _sinusoidal(n, d, multiply=True), ["multiply the positions"]),
    ],
    "rotary": [
        (lambda x, p: _rotate(x, p, sign=-1.0), ["clockwise"]),
        (lambda x, p: _rotate(x, p, combine="cat"), ["torch.cat", "interleave"]),
        (lambda x, p: _rotate(x, p, pairs="halves"), ["GPT-NeoX"]),
        (lambda x, p: _rotate(x, p, exponent="i"), ["-2i/d"]),
        (lambda x, p: x.clone(), ["nothing turns"]),
        (lambda x, p: _rotate(x, p, use_rows=True), ["row numbers"]),
        (lambda x, p: _rotate_no_axes(x, p), ["their own axes"]),
        (lambda x, p: _rotate(x, p)[:, :2], ["shape"]),
    ],
    "swiglu": [
        (lambda x, g, u, d: (torch.sigmoid(x @ g) * (x @ u)) @ d, ["original GLU"]),
        (lambda x, g, u, d: (F.relu(x @ g) * (x @ u)) @ d, ["ReGLU"]),
        (lambda x, g, u, d: (F.gelu(x @ g) * (x @ u)) @ d, ["GeGLU"]),
        (lambda x, g, u, d: (F.silu(x @ u) * (x @ g)) @ d, ["wrong projection"]),
        (lambda x, g, u, d: F.silu(x @ g) @ d, ["never use w_up"]),
        (lambda x, g, u, d: F.silu((x @ g) * (x @ u)) @ d, ["SiLU to the product"]),
        (lambda x, g, u, d: (F.silu(x @ g) @ (x @ u)) @ d, ["elementwise, with *"]),
    ],
    "prenorm_block": [
        (lambda *a: _block(*a, kind="post"), ["post-norm"]),
        (lambda *a: _block(*a, kind="parallel"), ["parallel"]),
        (lambda *a: _block(*a, kind="no_residual"), ["residual connections are missing"]),
        (lambda *a: _block(*a, kind="normed"), ["normalised stream"]),
        (lambda *a: _block(*a, kind="swapped"), ["ln2 before attention"]),
        (lambda x, attn, mlp, ln1, ln2: x + attn(ln1(x)), ["feed-forward half is missing"]),
        (lambda x, attn, mlp, ln1, ln2: x + mlp(ln2(attn(ln1(x)))), ["reads attention's output"]),
    ],
}


def _skip_two(tokens, vocab):
    index = {w: i for i, w in enumerate(vocab)}
    counts = np.zeros((len(vocab), len(vocab)))
    for a, b in zip(tokens, tokens[2:]):
        counts[index[a], index[b]] += 1
    return counts


def _mse_step(model, optimizer, x, y):
    optimizer.zero_grad()
    out = model(x)
    loss = ((out - F.one_hot(y, out.shape[-1]).float()) ** 2).mean()
    loss.backward()
    optimizer.step()
    return loss.item()


def _global_prune(trained, initial, sparsity):
    values = torch.cat([v.abs().flatten() for v in trained.values()])
    n = round(sparsity * values.numel())
    threshold = torch.sort(values).values[n - 1] if n else -1.0
    masks = {k: v.abs() > threshold for k, v in trained.items()}
    return {k: initial[k] * masks[k] for k in masks}, masks


def _probe_predictions(X_train, y_train, X_test):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000).fit(X_train, y_train).predict(X_test)


def _rotate_no_axes(x, positions):
    d = x.shape[-1]
    angle = positions * 10000.0 ** (-torch.arange(0, d, 2) / d)
    x1, x2 = x[:, 0::2], x[:, 1::2]
    return torch.stack([x1 * angle.cos() - x2 * angle.sin(), x1 * angle.sin() + x2 * angle.cos()], -1).flatten(-2)


CASES = [(name, i) for name, table in MUTANTS.items() for i in range(len(table))]


def test_every_checker_has_a_mutation_table_of_at_least_four():
    assert set(MUTANTS) == set(ex.CHECKERS)
    short = {name: len(table) for name, table in MUTANTS.items() if len(table) < 4}
    assert not short, short


def test_each_mutant_of_a_table_has_its_own_diagnosis():
    for name, table in MUTANTS.items():
        keys = [fragments[0] for _, fragments in table]
        assert len(set(keys)) == len(keys), (name, keys)


@pytest.mark.parametrize("name,i", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_mutant_is_rejected_with_its_diagnosis(capsys, name, i):
    fn, fragments = MUTANTS[name][i]
    ok = ex.CHECKERS[name](fn)
    out = capsys.readouterr().out
    assert bool(ok) is False and ok.status == "failed", out
    assert out.startswith(f"❌ {printed(name)}: "), out
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in: {out}"
    assert "wrong values" not in out and "Traceback" not in out, out
    assert not unimported(name, out), f"the message names {unimported(name, out)}, which the chapter never " \
                                      f"imported: {out}"


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_reference_solution_passes(capsys, name):
    assert ex.CHECKERS[name](CORRECT[name]).passed is True, capsys.readouterr().out
