"""Every checker passes a correct solution and names the mistake in typical wrong ones."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmlab import exercises as ex

torch.set_num_threads(1)
NEG_INF = float("-inf")


def verdict(capsys, checker, fn):
    """Run a checker; return (result, printed text)."""
    result = checker(fn)
    out = capsys.readouterr().out
    return result, out


# --- correct solutions, written the way a student would ------------------------------------------------

def softmax_ok(x):
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def causal_mask_ok(n):
    return torch.tril(torch.ones(n, n)).bool()


def attention_ok(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, NEG_INF)
    return torch.softmax(scores, dim=-1) @ v


def count_bigrams_ok(tokens, vocab):
    index = {w: i for i, w in enumerate(vocab)}
    counts = torch.zeros(len(vocab), len(vocab), dtype=torch.long)
    for a, b in zip(tokens, tokens[1:]):
        counts[index[a], index[b]] += 1
    return counts


def bigram_probs_ok(counts, alpha=0.0):
    c = counts + alpha
    return c / c.sum(dim=1, keepdim=True)


def cross_entropy_ok(logits, targets):
    logp = torch.log_softmax(logits, dim=-1)
    return -logp[torch.arange(len(targets)), targets].mean()


def perplexity_ok(logprobs):
    return math.exp(-logprobs.mean().item())


def entropy_ok(probs):
    p = probs[probs > 0]
    return -(p * torch.log(p)).sum()


def sample_ok(logits, temperature):
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1).item()


def top_k_ok(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_ok(logits, p):
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = torch.sort(probs, descending=True)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    keep_sorted = before < p
    keep = torch.zeros_like(keep_sorted)
    keep[order] = keep_sorted
    return logits.masked_fill(~keep, NEG_INF)


def cosine_ok(a, b):
    return (a @ b) / (a.norm() * b.norm())


def neighbors_ok(E, i, k):
    sims = F.cosine_similarity(E, E[i].unsqueeze(0), dim=-1)
    sims[i] = NEG_INF
    return torch.topk(sims, k).indices.tolist()


def analogy_ok(E, a, b, c):
    target = E[b] - E[a] + E[c]
    sims = F.cosine_similarity(E, target.unsqueeze(0), dim=-1)
    sims[[a, b, c]] = NEG_INF
    return int(sims.argmax())


def greedy_ok(logits):
    return logits[:, -1].argmax(dim=-1)


def train_step_ok(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


CORRECT = {
    "softmax": softmax_ok, "causal_mask": causal_mask_ok, "attention": attention_ok,
    "bigram_counts": count_bigrams_ok, "bigram_probs": bigram_probs_ok, "cross_entropy": cross_entropy_ok,
    "perplexity": perplexity_ok, "entropy": entropy_ok, "sample": sample_ok, "top_k": top_k_ok, "top_p": top_p_ok,
    "cosine_similarity": cosine_ok, "nearest_neighbors": neighbors_ok, "analogy": analogy_ok,
    "greedy_next": greedy_ok, "train_step": train_step_ok,
}


def test_every_checker_has_a_correct_solution_here():
    assert set(CORRECT) == set(ex.CHECKERS)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_solution_passes_with_one_line(capsys, name):
    ok, out = verdict(capsys, ex.CHECKERS[name], CORRECT[name])
    assert ok is True, out
    assert out.count("\n") == 1 and out.startswith(f"✅ {name}: correct"), out


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_stub_is_not_attempted_yet(capsys, name):
    def stub(*args, **kwargs):
        raise NotImplementedError("write your code here")

    ok, out = verdict(capsys, ex.CHECKERS[name], stub)
    assert ok is False
    assert "not attempted yet" in out and "Traceback" not in out and out.count("\n") == 1


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_accepts_nothing(capsys, name):
    """No checker passes a function that returns a constant, None, or its first argument."""
    for fn in (lambda *a, **k: 0, lambda *a, **k: None, lambda *a, **k: a[0] if not isinstance(a[0], int) else 0):
        ok, out = verdict(capsys, ex.CHECKERS[name], fn)
        assert ok is False, (name, out)
        assert out.startswith(f"❌ {name}:")


def test_other_exceptions_are_reported_in_one_line(capsys):
    def broken(x):
        return x @ torch.ones(99)

    ok, out = verdict(capsys, ex.check_softmax, broken)
    assert not ok
    assert out.startswith("❌ softmax: your function raised RuntimeError:") and out.count("\n") == 1
    assert "Traceback" not in out


def test_none_return_and_non_function(capsys):
    ok, out = verdict(capsys, ex.check_entropy, lambda p: None)
    assert not ok and "returned None" in out and "return" in out
    ok, out = verdict(capsys, ex.check_entropy, 3.0)
    assert not ok and "pass your function itself" in out


# --- typical wrong versions, each with the message it must get --------------------------------------

def _naive_softmax(x):
    return torch.exp(x) / torch.exp(x).sum(dim=-1, keepdim=True)


def _scores(q, k, scale=True):
    s = q @ k.transpose(-2, -1)
    return s / math.sqrt(q.shape[-1]) if scale else s


WRONG = {
    "softmax": [
        (_naive_softmax, ["large logits", "NaN", "overflows", "Hint: subtract"]),
        (lambda x: torch.softmax(x, dim=0), ["batch of 4 rows", "wrong axis", "dim=-1"]),
        (lambda x: torch.exp(x - x.max()) / torch.exp(x - x.max()).sum(), ["whole tensor"]),
        (lambda x: torch.exp(x - x.max(dim=-1, keepdim=True).values), ["without dividing by the sum"]),
        (lambda x: torch.exp(x), ["returns exp(x) without dividing"]),
        (lambda x: torch.softmax(x, dim=-1).unsqueeze(0), ["wrong shape", "expected (3,), got (1, 3)"]),
        (lambda x: torch.softmax(x, dim=-1) * 0.9, ["do not sum to 1"]),
        (lambda x: torch.exp(x - x.min(dim=-1, keepdim=True).values) /
         torch.exp(x - x.min(dim=-1, keepdim=True).values).sum(dim=-1, keepdim=True), ["NaN or inf"]),
    ],
    "causal_mask": [
        (lambda n: torch.ones(n, n, dtype=torch.bool).triu(), ["transposed"]),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), ["diagonal is masked", "j <= i"]),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(1), ["off by one"]),
        (lambda n: ~torch.ones(n, n, dtype=torch.bool).tril(), ["True marks the positions to hide"]),
        (lambda n: torch.tril(torch.ones(n, n)), ["pattern is right", "not booleans", ".bool()"]),
        (lambda n: torch.zeros(n, n).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), NEG_INF),
         ["additive float mask"]),
        (lambda n: torch.ones(n + 1, n + 1, dtype=torch.bool).tril(), ["wrong shape", "expected (4, 4), got (5, 5)"]),
    ],
    "attention": [
        (lambda q, k, v, mask=None: torch.softmax(
            _scores(q, k, scale=False) if mask is None else _scores(q, k, False).masked_fill(~mask, NEG_INF), -1) @ v,
         ["not scaled", "sqrt(d_k)"]),
        (lambda q, k, v, mask=None: torch.softmax(
            (q @ k.transpose(-2, -1) / q.shape[-1]) if mask is None else
            (q @ k.transpose(-2, -1) / q.shape[-1]).masked_fill(~mask, NEG_INF), -1) @ v,
         ["divide the scores by d_k instead of sqrt(d_k)"]),
        (lambda q, k, v, mask=None: torch.softmax(_scores(q, k), dim=-1) @ v, ["mask is ignored", "causal mask"]),
        (lambda q, k, v, mask=None: torch.softmax(
            _scores(q, k) if mask is None else _scores(q, k).masked_fill(mask, NEG_INF), -1) @ v,
         ["True means 'may attend'"]),
        (lambda q, k, v, mask=None: torch.softmax(
            _scores(q, k) if mask is None else _scores(q, k).masked_fill(~mask, 0.0), -1) @ v,
         ["set to 0 instead of -inf"]),
        (lambda q, k, v, mask=None: torch.softmax(_scores(q, k), dim=-1) * (1 if mask is None else mask) @ v
         if mask is None else (torch.softmax(_scores(q, k), dim=-1) * mask) @ v,
         ["applied after the softmax"]),
        (lambda q, k, v, mask=None: torch.softmax(
            _scores(q, k) if mask is None else _scores(q, k).masked_fill(~mask, NEG_INF), dim=-2) @ v,
         ["over the queries (dim=-2)"]),
        (lambda q, k, v, mask=None: torch.softmax(
            _scores(q, k) if mask is None else _scores(q, k).masked_fill(~mask, NEG_INF), -1),
         ["wrong shape", "expected (3, 2), got (3, 5)", "shape of the attention weights", "weights @ v"]),
        (lambda q, k, v, mask=None: _naive_softmax(
            _scores(q, k) if mask is None else _scores(q, k).masked_fill(~mask, NEG_INF)) @ v,
         ["scores in the hundreds", "NaN", "overflows"]),
    ],
    "bigram_counts": [
        (lambda t, v: count_bigrams_ok(t, v).T, ["transposed"]),
        (lambda t, v: count_bigrams_ok(t + t[:1], v), ["one pair too many", "wrapping"]),
        (lambda t, v: count_bigrams_ok(t, v).clamp(max=1), ["whether a pair occurs", "repeated pairs"]),
        (lambda t, v: torch.zeros(len(v), len(v) + 1), ["wrong shape", "expected (5, 5), got (5, 6)"]),
    ],
    "bigram_probs": [
        (lambda c, a=0.0: (c + a) / (c + a).sum(dim=0, keepdim=True), ["columns sum to 1"]),
        (lambda c, a=0.0: (c + a) / (c + a).sum(), ["total of the whole table"]),
        (lambda c, a=0.0: c / c.sum(dim=1, keepdim=True), ["NaN", "all-zero row", "Hint: add alpha"]),
        (lambda c, a=0.0: (c + a) / (c.sum(dim=1, keepdim=True) + a), ["adds alpha once", "alpha * V"]),
        (lambda c, a=0.0: (c + a) / c.sum(dim=1, keepdim=True), ["not to the row totals"]),
        (lambda c, a=0.0: (c + a) / c.sum(dim=1, keepdim=True).clamp(min=1), ["rows do not sum to 1"]),
    ],
    "cross_entropy": [
        (lambda l, t: F.cross_entropy(l, t, reduction="sum"), ["sum the losses instead of averaging"]),
        (lambda l, t: F.cross_entropy(l, t) / math.log(2), ["bits"]),
        (lambda l, t: -F.cross_entropy(l, t), ["negative"]),
        (lambda l, t: -l[torch.arange(len(t)), t].mean(), ["raw logits", "log_softmax"]),
        (lambda l, t: F.cross_entropy(l, t, reduction="none"), ["one loss per example", "mean"]),
        (lambda l, t: -torch.log_softmax(l, -1)[:, t].mean(), ["logp[:, targets]"]),
        (lambda l, t: -torch.log(_naive_softmax(l))[torch.arange(len(t)), t].mean(),
         ["logits in the thousands", "NaN", "log_softmax"]),
        (lambda l, t: -torch.log(torch.softmax(l, -1))[torch.arange(len(t)), t].mean(),
         ["logits in the thousands", "returned inf", "log(0)"]),
    ],
    "perplexity": [
        (lambda lp: math.exp(lp.mean().item()), ["below 1", "minus sign"]),
        (lambda lp: math.exp(-lp.sum().item()), ["total, not the mean"]),
        (lambda lp: 2 ** (-lp.mean().item()), ["2 **"]),
        (lambda lp: (1 / torch.exp(lp).mean()).item(), ["average probability"]),
        (lambda lp: -lp.mean(), ["cross-entropy", "exp"]),
    ],
    "entropy": [
        (lambda p: -(p * torch.log(p)).sum(), ["NaN", "0 * log(0)", "Hint: count 0 log 0 as 0"]),
        (lambda p: -(p[p > 0] * torch.log2(p[p > 0])).sum(), ["bits"]),
        (lambda p: (p[p > 0] * torch.log(p[p > 0])).sum(), ["negative", "minus sign"]),
        (lambda p: -torch.log(p[p > 0]).sum(), ["without weighting by p"]),
    ],
    "sample": [
        (lambda l, T: torch.multinomial(torch.softmax(l * T, -1), 1).item(), ["multiply the logits by the temperature",
                                                                             "temperature 0.5"]),
        (lambda l, T: torch.multinomial(torch.softmax(l, -1), 1).item(), ["temperature has no effect"]),
        (lambda l, T: int(torch.argmax(l / T)), ["greedy decoding", "temperature 1"]),
        (lambda l, T: int(torch.randint(0, len(l), ())), ["equally often"]),
        (lambda l, T: torch.softmax(l / T, -1), ["returned shape (5,)", "return one token id"]),
        (lambda l, T: torch.multinomial(l / T, 1).item(), ["raised RuntimeError"]),
    ],
    "top_k": [
        (lambda l, k: l.masked_fill(l < torch.topk(l, k, -1).values[..., -1:], 0.0), ["set to 0", "-inf"]),
        (lambda l, k: torch.softmax(top_k_ok(l, k), -1), ["return probabilities"]),
        (lambda l, k: top_k_ok(l, min(k + 1, l.shape[-1])), ["k + 1", "off by one"]),
        (lambda l, k: top_k_ok(l, k - 1) if k > 1 else torch.full_like(l, NEG_INF), ["k - 1", "off by one"]),
        (lambda l, k: l.masked_fill(l > torch.topk(l, k, -1, largest=False).values[..., -1:], NEG_INF),
         ["k smallest"]),
        (lambda l, k: l.masked_fill(l < torch.topk(l.flatten(), k).values[-1], NEG_INF),
         ["whole tensor, not of each row", "batch of 3 rows"]),
        (lambda l, k: l.masked_fill_(l < torch.topk(l, k, -1).values[..., -1:], NEG_INF), ["changed its input in place"]),
        (lambda l, k: torch.where(top_k_ok(l, k).isinf(), top_k_ok(l, k), l * 2), ["change their logits"]),
        (lambda l, k: l + 0.0, ["nothing was removed"]),
    ],
    "top_p": [
        (lambda l, p: _top_p_variant(l, p, strict=True), ["drop the token that crosses p"]),
        (lambda l, p: _top_p_variant(l, p, extra=1), ["one token too many"]),
        (lambda l, p: _top_p_by_position(l, p), ["vocabulary order", "sort"]),
        (lambda l, p: torch.where(top_p_ok(l, p).isinf(), torch.zeros_like(l), l), ["set to 0"]),
        (lambda l, p: torch.softmax(top_p_ok(l, p), -1), ["return probabilities"]),
        (lambda l, p: torch.full_like(l, NEG_INF), ["removed every token"]),
        (lambda l, p: l.clone(), ["nothing was removed"]),
        (lambda l, p: _top_p_on_logits(l, p), ["nothing was removed", "accumulate probabilities"]),
    ],
    "cosine_similarity": [
        (lambda a, b: a @ b, ["dot product without dividing"]),
        (lambda a, b: (a @ b) / a.norm(), ["length of a only"]),
        (lambda a, b: (a @ b) / (a.norm() ** 2 * b.norm() ** 2), ["squared lengths"]),
        (lambda a, b: 1 - cosine_ok(a, b), ["cosine distance"]),
        (lambda a, b: (a - b).norm(), ["Euclidean distance"]),
    ],
    "nearest_neighbors": [
        (lambda E, i, k: torch.topk(F.cosine_similarity(E, E[i][None], dim=-1), k).indices, ["includes the word itself"]),
        (lambda E, i, k: torch.topk((E @ E[i]).index_fill(0, torch.tensor([i]), NEG_INF), k).indices,
         ["dot product", "long vectors"]),
        (lambda E, i, k: torch.topk((-(E - E[i]).norm(dim=-1)).index_fill(0, torch.tensor([i]), NEG_INF), k).indices,
         ["Euclidean distance"]),
        (lambda E, i, k: torch.topk((-F.cosine_similarity(E, E[i][None], dim=-1)).index_fill(0, torch.tensor([i]),
                                                                                            NEG_INF), k).indices,
         ["least similar"]),
        (lambda E, i, k: torch.topk(F.cosine_similarity(E, E[i][None], dim=-1), k).values * 0.99,
         ["return row indices", "not similarities"]),
    ],
    "analogy": [
        (lambda E, a, b, c: int(F.cosine_similarity(E, (E[b] - E[a] + E[c])[None], dim=-1).argmax()),
         ["one of the three input words"]),
        (lambda E, a, b, c: analogy_ok(E, b, a, c), ["E[a] - E[b] + E[c]"]),
        (lambda E, a, b, c: int((E @ (E[b] - E[a] + E[c])).index_fill(0, torch.tensor([a, b, c]), NEG_INF).argmax()),
         ["dot product"]),
    ],
    "greedy_next": [
        (lambda l: l[:, 0].argmax(-1), ["first position"]),
        (lambda l: l[:, -1].argmin(-1), ["argmin"]),
        (lambda l: l[:, -1].max(-1).values, ["largest logit, not its index"]),
        (lambda l: l.argmax(-1), ["wrong shape", "one id per position"]),
        (lambda l: l.argmax(1)[:, -1], ["over the positions (dim 1)"]),
    ],
    "train_step": [
        (lambda m, o, x, y: _step(m, o, x, y, zero_grad=False), ["never zero the gradients", "step 2 of 3"]),
        (lambda m, o, x, y: _step(m, o, x, y, backward=False), ["parameters did not change", "step 1 of 3"]),
        (lambda m, o, x, y: _step(m, o, x, y, step=False), ["parameters did not change"]),
        (lambda m, o, x, y: _step(m, o, x, y, order="step_first"), ["parameters did not change", "in that order"]),
        (lambda m, o, x, y: _step(m, o, x, y, sign=-1), ["climbs the gradient"]),
        (lambda m, o, x, y: _step(m, o, x, y, after=True), ["loss after the update"]),
        (lambda m, o, x, y: _step(m, o, x, y, loss="mse"), ["differ from one SGD step on the cross-entropy"]),
    ],
}


def _top_p_variant(logits, p, strict=False, extra=0):
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = torch.sort(probs, descending=True)
    cum = torch.cumsum(sorted_probs, dim=-1)
    keep_sorted = (cum <= p) if strict else (cum - sorted_probs < p)
    if extra:
        keep_sorted = torch.arange(len(logits)) < int(keep_sorted.sum()) + extra
    keep = torch.zeros_like(keep_sorted)
    keep[order] = keep_sorted
    return logits.masked_fill(~keep, NEG_INF)


def _top_p_on_logits(logits, p):
    sorted_logits, order = torch.sort(logits, descending=True)
    keep_sorted = torch.cumsum(sorted_logits, -1) - sorted_logits < p
    keep = torch.zeros_like(keep_sorted)
    keep[order] = keep_sorted
    return logits.masked_fill(~keep, NEG_INF)


def _top_p_by_position(logits, p):
    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(torch.cumsum(probs, -1) - probs >= p, NEG_INF)


def _step(model, optimizer, x, y, zero_grad=True, backward=True, step=True, order="normal", sign=1,
          after=False, loss="ce"):
    if zero_grad:
        optimizer.zero_grad()
    if order == "step_first":
        optimizer.step()
    out = model(x)
    value = F.cross_entropy(out, y) if loss == "ce" else ((out - F.one_hot(y, 3).float()) ** 2).mean()
    if backward:
        (sign * value).backward()
    if step and order != "step_first":
        optimizer.step()
    if after:
        return F.cross_entropy(model(x), y).item()
    return value.item()


CASES = [(name, i) for name, wrongs in WRONG.items() for i in range(len(wrongs))]


def test_every_checker_has_at_least_three_wrong_versions():
    assert set(WRONG) == set(ex.CHECKERS)
    assert all(len(w) >= 3 for w in WRONG.values())


@pytest.mark.parametrize("name,i", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_wrong_version_fails_with_its_message(capsys, name, i):
    fn, expected = WRONG[name][i]
    ok, out = verdict(capsys, ex.CHECKERS[name], fn)
    assert ok is False, out
    assert out.startswith(f"❌ {name}: "), out
    for fragment in expected:
        assert fragment in out, f"{fragment!r} not in: {out}"
    assert "Traceback" not in out


def test_checkers_leave_the_callers_random_state_alone(capsys):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    ex.check_sample(sample_ok)
    ex.check_train_step(train_step_ok)
    capsys.readouterr()
    assert torch.equal(torch.rand(3), expected)


def test_numpy_solutions_are_accepted(capsys):
    def softmax_np(x):
        x = np.asarray(x, dtype=float)
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    ok, out = verdict(capsys, ex.check_softmax, softmax_np)
    assert ok, out
