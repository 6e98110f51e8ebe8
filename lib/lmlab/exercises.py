"""Exercise checkers: call ``check_<name>(your_function)`` and read one line.

Each checker runs your function on hidden inputs (including hard ones: logits large enough to overflow
a naive softmax, masks, rows that need the scale, edge cases) and compares it with a reference. It
prints either one success line or what is wrong (a wrong shape with both shapes, a NaN from overflow,
a missing ``1/sqrt(d_k)``, a mask off by one, probabilities that do not sum to 1, the wrong axis...)
with a hint, and returns ``True`` or ``False``. A function that still raises ``NotImplementedError``
is reported as "not attempted yet"; any other exception is reported in one line.

The function each checker expects (inputs are torch tensors, float32 unless noted; return a tensor,
a NumPy array or a Python number):

====================  ===================================================================================
checker               your function
====================  ===================================================================================
check_softmax         ``softmax(x) -> probs``, same shape, over the last axis
check_causal_mask     ``causal_mask(n) -> (n, n) bool``, True where query i may attend to key j (j <= i)
check_attention       ``attention(q, k, v, mask=None) -> (..., seq_q, d_v)``: softmax(q k^T / sqrt(d_k)) v;
                      ``mask`` is bool ``(seq_q, seq_k)``, True = may attend (masked scores become -inf)
check_bigram_counts   ``count_bigrams(tokens, vocab) -> (V, V)``, ``[i, j]`` = times vocab[j] follows vocab[i]
check_bigram_probs    ``bigram_probs(counts, alpha) -> (V, V)``: (counts + alpha) / row total, each row sums to 1
check_cross_entropy   ``cross_entropy(logits (N, V), targets (N,) int64) -> number``: mean -log p(target), nats
check_perplexity      ``perplexity(logprobs (N,)) -> number``: exp(-mean log p), natural logs in
check_entropy         ``entropy(probs (V,)) -> number``: -sum p log p in nats, with 0 log 0 = 0
check_sample          ``sample(logits (V,), temperature) -> int``: one token id drawn from softmax(logits / T)
check_top_k           ``top_k_filter(logits (..., V), k) -> same shape``: all but the k largest per row -> -inf
check_top_p           ``top_p_filter(logits (V,), p) -> (V,)``: tokens outside the nucleus -> -inf
check_cosine_similarity  ``cosine_similarity(a (d,), b (d,)) -> number``
check_nearest_neighbors  ``nearest_neighbors(E (V, d), i, k) -> k ids``, most cosine-similar first, i left out
check_analogy         ``analogy(E (V, d), a, b, c) -> id``: a is to b as c is to ?, by cosine to
                      E[b] - E[a] + E[c], leaving a, b and c out
check_greedy_next     ``greedy_next(logits (batch, seq, V)) -> (batch,) int``: argmax at the last position
check_train_step      ``train_step(model, optimizer, x, y) -> float``: one step on the cross-entropy loss,
                      returns the loss computed before the update
====================  ===================================================================================

The nucleus (top-p): sort tokens by probability, keep a token while the probability of the tokens
before it is still below p (so the token that crosses p is kept, and the top token always is).
"""
from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "check_softmax", "check_causal_mask", "check_attention", "check_bigram_counts", "check_bigram_probs",
    "check_cross_entropy", "check_perplexity", "check_entropy", "check_sample", "check_top_k", "check_top_p",
    "check_cosine_similarity", "check_nearest_neighbors", "check_analogy", "check_greedy_next",
    "check_train_step", "CHECKERS",
]

OK, FAIL, TODO = "✅", "❌", "⏳"


# --- the machinery ---------------------------------------------------------------------------------

class _Failure(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


class _NotAttempted(Exception):
    pass


def _run(name: str, fn: Any, body: Callable[[Callable], int]) -> bool:
    """Run ``body(fn)`` (which returns the number of hidden tests) and print one verdict."""
    if not callable(fn):
        print(f"{FAIL} {name}: pass your function itself, e.g. check_{name}(my_{name}), "
              f"not {type(fn).__name__} {fn!r:.40}.")
        return False
    try:
        n = body(fn)
    except _NotAttempted:
        print(f"{TODO} {name}: not attempted yet: your function still raises NotImplementedError. "
              "Write its body, then run this check again.")
        return False
    except _Failure as failure:
        print(f"{FAIL} {name}: {failure.message}" + (f"\n   Hint: {failure.hint}" if failure.hint else ""))
        return False
    print(f"{OK} {name}: correct on all {n} hidden tests.")
    return True


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else "(no message)"


def _copy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, torch.nn.Module) or isinstance(x, torch.optim.Optimizer):
        return x
    return copy.deepcopy(x)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and \
            bool(torch.equal(a, b) or torch.allclose(a.double(), b.double(), equal_nan=True, rtol=0, atol=0))
    return True


def _call(fn: Callable, args: tuple, case: str, no_grad: bool = True, **kwargs) -> Any:
    """Call the student's ``fn`` on copies of ``args``; turn exceptions and in-place edits into failures."""
    given = [_copy(a) for a in args]
    try:
        with torch.no_grad() if no_grad else contextlib.nullcontext():
            out = fn(*given, **kwargs)
    except NotImplementedError:
        raise _NotAttempted() from None
    except _Failure:
        raise
    except Exception as err:  # noqa: BLE001 - any error in student code is reported, not raised
        raise _Failure(f"your function raised {type(err).__name__}: {_first_line(err)} (on {case}).") from None
    for original, passed in zip(args, given):
        if isinstance(original, torch.Tensor) and not _same(original, passed):
            raise _Failure(f"your function changed its input in place (on {case}).",
                           "work on a copy (x = x.clone()) or use out-of-place operations "
                           "(masked_fill, not masked_fill_).")
    return out


def _array(out: Any, case: str, what: str = "a tensor") -> np.ndarray:
    """The student's result as a NumPy array (bools kept as bools, numbers as float64)."""
    if out is None:
        raise _Failure(f"your function returned None (on {case}).", "did you forget the `return` line?")
    if isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
        if any(o.ndim > 0 for o in out):
            raise _Failure(f"your function returned a {type(out).__name__} of {len(out)} tensors (on {case}); "
                           f"return only {what}.")
        out = [o.item() for o in out]
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu()
        return out.numpy() if out.dtype == torch.bool else out.double().numpy()
    try:
        arr = np.asarray(out)
    except Exception:  # noqa: BLE001
        arr = np.asarray([None])
    if arr.dtype == bool:
        return arr
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise _Failure(f"your function returned {type(out).__name__} {str(out)[:60]!r} (on {case}); "
                       f"it should return {what}.")
    return arr.astype(float)


def _shape(got: np.ndarray, want: tuple, case: str, hint: str | None = None) -> None:
    if tuple(got.shape) != tuple(want):
        raise _Failure(f"wrong shape on {case}: expected {tuple(want)}, got {tuple(got.shape)}.", hint)


def _scalar(out: Any, case: str, what: str) -> float:
    arr = _array(out, case, what)
    if arr.size != 1:
        raise _Failure(f"your function returned shape {tuple(arr.shape)} on {case}; it should return one "
                       f"number ({what}).", "reduce to a single number (e.g. .mean() or .sum()).")
    return float(arr.reshape(()))


def _close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def _fmt(x: Any, precision: int = 3) -> str:
    arr = np.asarray(x)
    if arr.dtype == bool:
        arr = arr.astype(int)
    return np.array2string(arr, precision=precision, suppress_small=True, max_line_width=100, threshold=40,
                           separator=", ").replace("\n", "")


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.numpy() if x.dtype == torch.bool else x.double().numpy()
    return np.asarray(x, dtype=float)


def _catalogue(got: np.ndarray, args: tuple, mistakes: list[tuple[Callable, str, str | None]],
               case: str, **kwargs) -> None:
    """Raise the message of the first known mistake whose output matches ``got``."""
    for wrong, message, hint in mistakes:
        try:
            expected = _np(wrong(*[_copy(a) for a in args], **kwargs))
        except Exception:  # noqa: BLE001 - a mistake that cannot run on this input is not the one
            continue
        if expected.shape == got.shape and _close(got, expected):
            raise _Failure(f"{message} (on {case}).", hint)


def _wrong_values(got: np.ndarray, want: np.ndarray, case: str, hint: str | None = None) -> _Failure:
    return _Failure(f"wrong values on {case}: expected {_fmt(want)}, got {_fmt(got)}.", hint)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=_generator(seed)) * scale


# --- softmax ---------------------------------------------------------------------------------------

_SOFTMAX_HINT = ("subtract each row's largest value before exp: x - x.max(dim=-1, keepdim=True).values; "
                 "softmax does not change when every logit moves by the same amount.")


def check_softmax(softmax: Callable) -> bool:
    """Check ``softmax(x) -> probabilities`` of the same shape, normalised over the last axis."""
    cases = [
        (torch.tensor([1.0, 2.0, 3.0]), "the vector [1.0, 2.0, 3.0]"),
        (_randn(4, 6, seed=1, scale=2.0), "a batch of 4 rows of 6 logits"),
        (torch.tensor([1000.0, 1001.0, 1002.0]), "large logits [1000, 1001, 1002]"),
        (torch.tensor([-1000.0, -1001.0, -1002.0]), "very negative logits [-1000, -1001, -1002]"),
        (torch.tensor([[0.0, float("-inf"), 1.0], [2.0, 2.0, float("-inf")]]), "rows containing -inf (masked logits)"),
        (_randn(2, 3, 5, seed=2), "a (2, 3, 5) tensor"),
    ]
    mistakes = [
        (lambda x: torch.exp(x), "your function returns exp(x) without dividing by the sum",
         "divide by the sum over the last axis: e / e.sum(dim=-1, keepdim=True)."),
        (lambda x: torch.exp(x - x.max(dim=-1, keepdim=True).values), "your function returns exp(x - max) "
         "without dividing by the sum", "divide by the sum over the last axis: e / e.sum(dim=-1, keepdim=True)."),
        (lambda x: torch.exp(x) / torch.exp(x).sum(), "you normalise over the whole tensor instead of each row",
         "sum over the last axis only: .sum(dim=-1, keepdim=True)."),
        (lambda x: torch.softmax(x, dim=0), "you normalise over the wrong axis (dim 0, down the columns) instead "
         "of the last axis", "use dim=-1 (and keepdim=True when you divide)."),
        (lambda x: torch.softmax(-x, dim=-1), "you compute softmax(-x): the largest logit must get the largest "
         "probability", None),
        (lambda x: x / x.sum(dim=-1, keepdim=True), "you divide the logits by their sum without exp",
         "exponentiate first: e = exp(x), then e / e.sum(...)."),
    ]

    def body(fn):
        for x, case in cases:
            got = _array(_call(fn, (x,), case), case)
            _shape(got, x.shape, case, "softmax keeps the shape of its input.")
            want = torch.softmax(x.double(), dim=-1).numpy()
            if np.isnan(got).any() or np.isinf(got).any():
                if torch.isinf(x).any():
                    raise _Failure(f"on {case} your function returned NaN or inf: {_fmt(got)}. A -inf logit must "
                                   "get probability 0.", "subtract each row's maximum (finite), not its minimum, "
                                                         "and let exp(-inf) = 0 do the rest.")
                if x.abs().max() > 100:
                    what = "overflows to inf, and inf / inf" if x.max() > 100 else "underflows to 0, and 0 / 0"
                    raise _Failure(f"on {case} your function returned NaN or inf: exp of these logits {what} is NaN.",
                                   _SOFTMAX_HINT)
                raise _Failure(f"on {case} your function returned NaN or inf: {_fmt(got)}.", _SOFTMAX_HINT)
            if _close(got, want):
                continue
            _catalogue(got, (x,), mistakes, case)
            sums = got.sum(axis=-1)
            if not np.allclose(sums, 1.0, atol=1e-4):
                raise _Failure(f"on {case} the probabilities do not sum to 1 along the last axis (sums: {_fmt(sums)}).",
                               "divide by the sum over the last axis: e / e.sum(dim=-1, keepdim=True).")
            raise _wrong_values(got, want, case)
        return len(cases)

    return _run("softmax", softmax, body)


# --- causal mask -----------------------------------------------------------------------------------

def check_causal_mask(causal_mask: Callable) -> bool:
    """Check ``causal_mask(n) -> (n, n)`` bool tensor, True where query i may attend to key j (j <= i)."""
    sizes = [4, 7, 1]
    mistakes = [
        (lambda n: torch.ones(n, n, dtype=torch.bool).triu(), "your mask is transposed (upper triangle): token i "
         "may see the future tokens j > i and not its past", "True goes where j <= i: torch.ones(n, n).tril()."),
        (lambda n: torch.ones(n, n, dtype=torch.bool).triu(1), "True marks the positions to hide; here True must "
         "mean 'may attend' (j <= i)", "invert it (~mask) or build it with .tril()."),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "the diagonal is masked: each token must be "
         "allowed to attend to itself (j <= i, not j < i)", "use tril() with diagonal=0."),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(1), "your mask is off by one: token i may also see "
         "the next token i + 1", "use tril() with diagonal=0."),
        (lambda n: torch.ones(n, n, dtype=torch.bool), "nothing is masked: every token sees the future",
         "keep only j <= i: torch.ones(n, n).tril()."),
    ]

    def body(fn):
        for n in sizes:
            case = f"n = {n}"
            out = _call(fn, (n,), case)
            got = _array(out, case, "an (n, n) bool tensor")
            _shape(got, (n, n), case)
            want = np.tril(np.ones((n, n), dtype=bool))
            if got.dtype != bool:
                if np.isin(got, [0.0, -np.inf]).all() and np.isinf(got).any():
                    raise _Failure(f"your function returned an additive float mask (0 and -inf) on {case}; this "
                                   "exercise wants booleans, True where attending is allowed.",
                                   "return torch.ones(n, n, dtype=torch.bool).tril().")
                if np.isin(got, [0.0, 1.0]).all() and (got.astype(bool) == want).all():
                    kind = getattr(out, "dtype", type(out).__name__)
                    raise _Failure(f"the pattern is right but the values are numbers ({kind}), not booleans "
                                   f"(on {case}).", "convert with .bool(), or build it with dtype=torch.bool.")
                raise _Failure(f"your function returned numbers, not True/False, on {case}: {_fmt(got)}.",
                               "return a bool tensor: torch.ones(n, n, dtype=torch.bool).tril().")
            if (got == want).all():
                continue
            _catalogue(got.astype(float), (n,), mistakes, case)
            raise _Failure(f"wrong mask on {case}: expected (1 = may attend) {_fmt(want)}, got {_fmt(got)}.",
                           "query i (row) may attend to key j (column) when j <= i.")
        return len(sizes)

    return _run("causal_mask", causal_mask, body)


# --- attention -------------------------------------------------------------------------------------

def _attention_ref(q, k, v, mask=None, scale="sqrt", softmax_dim=-1, mask_mode="inf"):
    d = q.shape[-1]
    scores = q.double() @ k.double().transpose(-2, -1)
    scores = scores / {"sqrt": math.sqrt(d), "none": 1.0, "d": float(d), "times": 1 / math.sqrt(d)}[scale]
    if mask is not None and mask_mode == "inf":
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None and mask_mode == "inverted":
        scores = scores.masked_fill(mask, float("-inf"))
    elif mask is not None and mask_mode == "zero":
        scores = scores.masked_fill(~mask, 0.0)
    weights = torch.softmax(scores, dim=softmax_dim)
    if mask is not None and mask_mode == "after":
        weights = weights * mask
    return weights @ v.double()


def check_attention(attention: Callable) -> bool:
    """Check ``attention(q, k, v, mask=None) -> softmax(q k^T / sqrt(d_k)) v`` of shape ``(..., seq_q, d_v)``.

    ``mask`` is a bool ``(seq_q, seq_k)`` tensor, True where a query may attend to a key; masked scores
    become -inf before the softmax.
    """
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    cases = [
        ((_randn(3, 4, seed=10), _randn(5, 4, seed=11), _randn(5, 2, seed=12)), None,
         "q (3, 4), k (5, 4), v (5, 2), no mask"),
        ((_randn(2, 3, 5, 16, seed=13), _randn(2, 3, 5, 16, seed=14), _randn(2, 3, 5, 6, seed=15)), causal,
         "batched q, k (2, 3, 5, 16), v (2, 3, 5, 6) with a causal mask"),
        ((_randn(4, 16, seed=16, scale=2.0), _randn(6, 16, seed=17, scale=2.0), _randn(6, 3, seed=18)), None,
         "q (4, 16), k (6, 16), v (6, 3) with larger scores"),
        ((_randn(5, 8, seed=19, scale=12.0), _randn(5, 8, seed=20, scale=12.0), _randn(5, 4, seed=21)), causal,
         "q, k (5, 8) with scores in the hundreds and a causal mask"),
    ]
    mistakes = [
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, scale="none"),
         "the scores are not scaled: divide q k^T by sqrt(d_k)",
         "d_k = q.shape[-1]; scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, scale="d"),
         "you divide the scores by d_k instead of sqrt(d_k)", "use math.sqrt(d_k)."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, scale="times"),
         "you multiply the scores by sqrt(d_k) instead of dividing", None),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, softmax_dim=-2),
         "the softmax runs over the queries (dim=-2): each query's weights over the keys must sum to 1",
         "softmax over the last axis (dim=-1)."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, None),
         "the mask is ignored: where mask is False the weight must be 0",
         "scores = scores.masked_fill(~mask, float('-inf')) before the softmax."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, mask_mode="inverted"),
         "you hide the positions where mask is True; True means 'may attend'",
         "use masked_fill(~mask, float('-inf'))."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, mask_mode="zero"),
         "masked scores are set to 0 instead of -inf, and exp(0) = 1 still gives them weight",
         "fill with float('-inf')."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, mask_mode="after"),
         "the mask is applied after the softmax, so the weights no longer sum to 1",
         "mask the scores (with -inf) before the softmax."),
    ]

    def body(fn):
        for (q, k, v), mask, case in cases:
            args = (q, k, v) if mask is None else (q, k, v, mask)
            got = _array(_call(fn, args, case), case, "the output tensor")
            want_shape = (*q.shape[:-1], v.shape[-1])
            if tuple(got.shape) == (*q.shape[:-1], k.shape[-2]) and want_shape != tuple(got.shape):
                raise _Failure(f"wrong shape on {case}: expected {want_shape}, got {tuple(got.shape)}: that is the "
                               "shape of the attention weights.", "return weights @ v.")
            _shape(got, want_shape, case, "the output has one row per query and v's width: weights @ v.")
            want = _attention_ref(q, k, v, mask).numpy()
            if _close(got, want, rtol=1e-3, atol=1e-4):
                continue
            _catalogue(got, args, mistakes, case)
            if np.isnan(got).any() or np.isinf(got).any():
                raise _Failure(f"on {case} your function returned NaN or inf: the exp in your softmax overflows on "
                               "large scores.", "use torch.softmax, or subtract each row's maximum before exp.")
            raise _wrong_values(got, want, case, "weights = softmax(q @ k.transpose(-2, -1) / sqrt(d_k), dim=-1); "
                                                 "return weights @ v.")
        return len(cases)

    return _run("attention", attention, body)


# --- bigrams ---------------------------------------------------------------------------------------

def _bigram_counts_ref(tokens, vocab, wrap=False, transpose=False):
    index = {w: i for i, w in enumerate(vocab)}
    counts = np.zeros((len(vocab), len(vocab)))
    pairs = list(zip(tokens, tokens[1:])) + ([(tokens[-1], tokens[0])] if wrap and tokens else [])
    for a, b in pairs:
        counts[index[a], index[b]] += 1
    return counts.T if transpose else counts


def check_bigram_counts(count_bigrams: Callable) -> bool:
    """Check ``count_bigrams(tokens, vocab) -> (V, V)`` where ``[i, j]`` counts vocab[j] right after vocab[i]."""
    vocab = ["the", "cat", "dog", "sees", "."]
    cases = [
        ("the cat sees the dog .".split(), "the tokens 'the cat sees the dog .'"),
        ("the dog sees the dog . the cat sees the cat .".split(), "a text with repeated pairs"),
        (["."], "a one-token text (no pairs at all)"),
        ("the the the cat".split(), "'the the the cat' (overlapping pairs)"),
    ]
    mistakes = [
        (lambda t, v: _bigram_counts_ref(t, v, transpose=True), "your table is transposed: row i must be the "
         "first word of the pair and column j the word that follows", "counts[index[prev], index[next]] += 1."),
        (lambda t, v: _bigram_counts_ref(t, v, wrap=True), "you count one pair too many: the last token wrapping "
         "around to the first", "pair each token with the next: zip(tokens, tokens[1:])."),
        (lambda t, v: np.minimum(_bigram_counts_ref(t, v), 1), "you mark whether a pair occurs (0/1) instead of "
         "counting how often", "add 1 for every occurrence: counts[i, j] += 1."),
    ]

    def body(fn):
        for tokens, case in cases:
            got = _array(_call(fn, (list(tokens), list(vocab)), case), case, "a (V, V) table of counts")
            _shape(got, (len(vocab), len(vocab)), case, "one row and one column per vocabulary word.")
            want = _bigram_counts_ref(tokens, vocab)
            if _close(got, want):
                continue
            _catalogue(got, (tokens, vocab), mistakes, case)
            if abs(got.sum() - want.sum()) > 1e-9:
                raise _Failure(f"on {case} your table holds {got.sum():g} pairs; the text has {want.sum():g} "
                               "(one per neighbouring pair of tokens).", "loop over zip(tokens, tokens[1:]).")
            raise _wrong_values(got, want, case)
        return len(cases)

    return _run("bigram_counts", count_bigrams, body)


def _bigram_probs_ref(counts, alpha=0.0):
    c = counts.double() + alpha
    return c / c.sum(dim=1, keepdim=True)


def check_bigram_probs(bigram_probs: Callable) -> bool:
    """Check ``bigram_probs(counts, alpha) -> (V, V)``: ``(counts + alpha) / row total``; rows sum to 1."""
    c1 = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 2.0], [1.0, 1.0, 4.0]])
    c2 = torch.tensor([[1.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0], [5.0, 2.0, 0.0, 1.0], [0.0, 4.0, 4.0, 0.0]])
    cases = [((c1, 0.0), "a 3x3 table of counts, alpha = 0"),
             ((c2, 1.0), "a 4x4 table with an all-zero row, alpha = 1 (add-one smoothing)"),
             ((c1 * 10, 0.5), "a 3x3 table, alpha = 0.5")]
    mistakes = [
        (lambda c, a=0.0: (c.double() + a) / (c.double() + a).sum(dim=0, keepdim=True),
         "your columns sum to 1, not your rows: normalise each row (the word before) over the words that follow",
         "divide by counts.sum(dim=1, keepdim=True)."),
        (lambda c, a=0.0: (c.double() + a) / (c.double() + a).sum(),
         "you divide by the total of the whole table; each row must sum to 1", "use .sum(dim=1, keepdim=True)."),
        (lambda c, a=0.0: _bigram_probs_ref(c, 0.0),
         "you ignore alpha: add it to every count before normalising", None),
        (lambda c, a=0.0: (c.double() + a) / (c.double().sum(dim=1, keepdim=True) + a),
         "the denominator adds alpha once; it must add alpha for every word in the row (alpha * V)",
         "normalise (counts + alpha) by its own row sum."),
        (lambda c, a=0.0: (c.double() + a) / c.double().sum(dim=1, keepdim=True),
         "you add alpha to the counts but not to the row totals, so rows do not sum to 1",
         "normalise (counts + alpha) by its own row sum."),
    ]

    def body(fn):
        for (counts, alpha), case in cases:
            got = _array(_call(fn, (counts, alpha), case), case, "a (V, V) table of probabilities")
            _shape(got, counts.shape, case, "one probability per cell of the counts table.")
            want = _bigram_probs_ref(counts, alpha).numpy()
            if np.isnan(got).any():
                raise _Failure(f"on {case} your table has NaN in rows whose counts are all 0 (0 / 0): {_fmt(got)}.",
                               "add alpha to every count before dividing; with alpha > 0 no row total is 0.")
            if _close(got, want):
                continue
            _catalogue(got, (counts, alpha), mistakes, case)
            sums = got.sum(axis=1)
            if not np.allclose(sums, 1.0, atol=1e-4):
                raise _Failure(f"on {case} the rows do not sum to 1 (row sums {_fmt(sums)}).",
                               "divide (counts + alpha) by its row sums: .sum(dim=1, keepdim=True).")
            raise _wrong_values(got, want, case)
        return len(cases)

    return _run("bigram_probs", bigram_probs, body)


# --- cross-entropy, perplexity, entropy ------------------------------------------------------------

def _ce_ref(logits, targets):
    return F.cross_entropy(logits.double(), targets)


def check_cross_entropy(cross_entropy: Callable) -> bool:
    """Check ``cross_entropy(logits (N, V), targets (N,)) -> mean -log softmax(logits)[target]`` in nats."""
    cases = [
        ((_randn(4, 5, seed=30), torch.tensor([0, 3, 1, 4])), "4 examples over 5 tokens"),
        ((_randn(3, 6, seed=31, scale=3.0), torch.tensor([5, 5, 0])), "3 examples over 6 tokens"),
        ((_randn(3, 4, seed=32, scale=1000.0), torch.tensor([1, 0, 2])), "logits in the thousands"),
        ((torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([2])), "a single example"),
    ]
    mistakes = [
        (lambda l, t: F.cross_entropy(l.double(), t, reduction="sum"), "you sum the losses instead of "
         "averaging them", "divide by the number of examples (or use .mean())."),
        (lambda l, t: _ce_ref(l, t) / math.log(2), "your loss is in bits (log base 2); use natural logs (nats)",
         "torch.log, not torch.log2."),
        (lambda l, t: -_ce_ref(l, t), "your loss is negative: it is minus the mean log-probability",
         "put a minus sign in front of the mean log-probability."),
        (lambda l, t: -l.double()[torch.arange(len(t)), t].mean(), "you use the raw logits as log-probabilities",
         "turn them into log-probabilities first: torch.log_softmax(logits, dim=-1)."),
        (lambda l, t: -torch.softmax(l.double(), -1)[torch.arange(len(t)), t].mean(),
         "you average the probabilities of the targets; take their log",
         "loss = -log p(target), averaged."),
        (lambda l, t: -torch.log_softmax(l.double(), -1).mean(), "you average the log-probabilities of every "
         "token, not only of the targets", "pick the target column: logp[torch.arange(N), targets]."),
        (lambda l, t: -torch.log_softmax(l.double(), -1)[:, t].mean(), "you index with logp[:, targets], which "
         "takes every target for every row (N x N)", "use logp[torch.arange(N), targets]."),
        (lambda l, t: -torch.log_softmax(l.double(), 0)[torch.arange(len(t)), t].mean(),
         "your log-softmax runs over the examples (dim 0), not over the vocabulary", "use dim=-1."),
    ]

    def body(fn):
        for (logits, targets), case in cases:
            out = _call(fn, (logits, targets), case)
            arr = _array(out, case, "one number")
            if arr.size == len(targets) and arr.size > 1:
                raise _Failure(f"you return one loss per example (shape {tuple(arr.shape)}) on {case}; "
                               "return their mean, one number.", "add .mean().")
            got = _scalar(out, case, "the mean loss")
            want = float(_ce_ref(logits, targets))
            if math.isnan(got):
                raise _Failure(f"on {case} your function returned NaN: exp of large logits overflows to inf, "
                               "and inf / inf is NaN.", "use torch.log_softmax (it subtracts the maximum for you), "
                                                        "or the log-sum-exp trick.")
            if math.isinf(got):
                raise _Failure(f"on {case} your function returned inf: a target's probability rounds to 0 and "
                               "log(0) = -inf.", "take logs without forming probabilities: torch.log_softmax(logits, "
                                                 "dim=-1), not torch.log(torch.softmax(...)).")
            if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5):
                continue
            _catalogue(np.array(got), (logits, targets), mistakes, case)
            raise _Failure(f"wrong value on {case}: expected {want:.4f}, got {got:.4f}.",
                           "loss = -log_softmax(logits, dim=-1)[torch.arange(N), targets].mean().")
        return len(cases)

    return _run("cross_entropy", cross_entropy, body)


def check_perplexity(perplexity: Callable) -> bool:
    """Check ``perplexity(logprobs (N,)) -> exp(-mean(logprobs))`` (natural-log probabilities in)."""
    cases = [
        (torch.tensor([-1.0, -2.0, -0.5]), "log-probabilities [-1.0, -2.0, -0.5]"),
        (torch.full((6,), -math.log(8.0)), "six tokens each with probability 1/8 (perplexity 8)"),
        (torch.tensor([-0.1, -3.0, -7.0, -0.7, -2.2]), "five log-probabilities"),
        (torch.full((400,), -2.0), "400 tokens with log-probability -2"),
    ]
    mistakes = [
        (lambda lp: torch.exp(lp.double().mean()), "your perplexity is below 1: exp(mean) lost the minus sign",
         "perplexity = exp(-mean(logprobs))."),
        (lambda lp: torch.exp(-lp.double().sum()), "you exponentiate the total, not the mean",
         "use the mean log-probability per token."),
        (lambda lp: 2 ** (-lp.double().mean()), "you use 2 ** ...; with natural-log probabilities use exp",
         None),
        (lambda lp: 1 / torch.exp(lp.double()).mean(), "you invert the average probability; perplexity inverts "
         "the geometric mean", "exp(-mean(logprobs))."),
        (lambda lp: -lp.double().mean(), "you return the cross-entropy (mean negative log-probability); "
         "perplexity is its exp", "wrap it in exp."),
    ]

    def body(fn):
        for lp, case in cases:
            got = _scalar(_call(fn, (lp,), case), case, "the perplexity")
            want = math.exp(-lp.double().mean().item())
            if math.isclose(got, want, rel_tol=1e-4):
                continue
            _catalogue(np.array(got), (lp,), mistakes, case)
            raise _Failure(f"wrong value on {case}: expected {want:.4f}, got {got:.4f}.",
                           "perplexity = exp(-mean(logprobs)).")
        return len(cases)

    return _run("perplexity", perplexity, body)


def _entropy_ref(p):
    p = p.double()
    return -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum()


def check_entropy(entropy: Callable) -> bool:
    """Check ``entropy(probs (V,)) -> -sum p log p`` in nats, counting ``0 log 0`` as 0."""
    cases = [
        (torch.full((4,), 0.25), "the uniform distribution over 4 tokens"),
        (torch.tensor([0.5, 0.25, 0.125, 0.125]), "probabilities [0.5, 0.25, 0.125, 0.125]"),
        (torch.tensor([0.0, 1.0, 0.0]), "a certain outcome [0, 1, 0]"),
        (torch.tensor([0.7, 0.0, 0.2, 0.1]), "a distribution with a zero"),
    ]
    mistakes = [
        (lambda p: _entropy_ref(p) / math.log(2), "your entropy is in bits (log base 2); use natural logs",
         "torch.log, not torch.log2."),
        (lambda p: -_entropy_ref(p), "your entropy is negative: you forgot the minus sign", None),
        (lambda p: _entropy_ref(p) / math.log(10), "your entropy uses log base 10; use natural logs", None),
        (lambda p: -torch.log(p.double()[p > 0]).sum(), "you sum -log p without weighting by p",
         "entropy = -sum(p * log p)."),
    ]

    def body(fn):
        for p, case in cases:
            got = _scalar(_call(fn, (p,), case), case, "the entropy")
            want = float(_entropy_ref(p))
            if math.isnan(got):
                raise _Failure(f"on {case} your function returned NaN: 0 * log(0) is 0 * -inf = NaN.",
                               "count 0 log 0 as 0: skip zero probabilities, e.g. p = p[p > 0].")
            if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6):
                continue
            _catalogue(np.array(got), (p,), mistakes, case)
            raise _Failure(f"wrong value on {case}: expected {want:.4f}, got {got:.4f}.", "entropy = -sum(p * log p).")
        return len(cases)

    return _run("entropy", entropy, body)


# --- sampling and filters --------------------------------------------------------------------------

@contextlib.contextmanager
def _fixed_seeds(seed: int):
    """Seed torch, NumPy and random for a block, then restore the caller's generator states."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def check_sample(sample: Callable, n_draws: int = 3000) -> bool:
    """Check ``sample(logits (V,), temperature) -> int`` statistically (fixed seeds, ``n_draws`` draws per
    temperature): the frequencies must match ``softmax(logits / temperature)``."""
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, 0.0])
    temperatures = [1.0, 0.5, 2.0]

    def _draw(fn, T, case):
        counts = np.zeros(len(logits))
        for _ in range(n_draws):
            out = _call(fn, (logits, T), case)
            arr = _array(out, case, "one token id (an int)")
            if arr.size != 1:
                raise _Failure(f"your function returned shape {tuple(arr.shape)} on {case}; return one token "
                               "id.", "torch.multinomial(probs, 1).item().")
            value = float(arr.reshape(()))
            if value != int(value) or not 0 <= value < len(logits):
                raise _Failure(f"your function returned {value:g} on {case}; it must return a token id, an "
                               f"int from 0 to {len(logits) - 1}.", "torch.multinomial(probs, 1).item().")
            counts[int(value)] += 1
        return counts

    def body(fn):
        for T in temperatures:
            case = f"temperature {T:g} with logits {_fmt(logits.numpy(), 1)}"
            with _fixed_seeds(1234):
                counts = _draw(fn, T, case)
            freq = counts / n_draws
            candidates = {
                "right": (torch.softmax(logits / T, -1).numpy(), None, None),
                "times": (torch.softmax(logits * T, -1).numpy(), "you multiply the logits by the temperature; "
                          "divide them", "probs = softmax(logits / temperature)."),
                "ignored": (torch.softmax(logits, -1).numpy(), "the temperature has no effect on your samples",
                            "divide the logits by the temperature before the softmax."),
                "greedy": (np.eye(len(logits))[int(logits.argmax())], "your function always returns the most "
                           "likely token: that is greedy decoding, not sampling",
                           "draw from the distribution: torch.multinomial(probs, 1)."),
                "uniform": (np.full(len(logits), 1 / len(logits)), "your function picks every token equally often; "
                            "sample according to the probabilities", "torch.multinomial(probs, 1)."),
            }
            tv = {name: 0.5 * np.abs(freq - dist).sum() for name, (dist, _, _) in candidates.items()}
            best = min(tv, key=tv.get)
            want = candidates["right"][0]
            if best == "right" and tv["right"] < 0.04:
                continue
            if best != "right" and tv[best] < 0.04:
                _, message, hint = candidates[best]
                raise _Failure(f"{message} (on {case}).", hint)
            raise _Failure(f"on {case} your samples' frequencies {_fmt(freq, 2)} do not match "
                           f"softmax(logits / T) = {_fmt(want, 2)}.",
                           "probs = torch.softmax(logits / temperature, dim=-1); "
                           "return torch.multinomial(probs, 1).item().")
        return len(temperatures)

    return _run("sample", sample, body)


def _top_k_ref(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def check_top_k(top_k_filter: Callable) -> bool:
    """Check ``top_k_filter(logits (..., V), k)``: the k largest logits of each row unchanged, the rest -inf."""
    cases = [
        ((torch.tensor([1.5, -0.3, 2.7, 0.4, -1.2, 0.9]), 3), "6 logits, k = 3"),
        ((_randn(3, 8, seed=40, scale=2.0), 2), "a batch of 3 rows of 8 logits, k = 2 (per row)"),
        ((torch.tensor([-2.0, -0.5, -3.0, -1.0]), 1), "negative logits, k = 1"),
        ((torch.tensor([0.3, 1.1, -0.4]), 3), "k equal to the vocabulary size (nothing removed)"),
        ((torch.tensor([400.0, 395.0, 410.0, 380.0]), 2), "large logits, k = 2"),
    ]
    mistakes = [
        (lambda l, k: torch.where(_top_k_ref(l, k) == float("-inf"), torch.zeros_like(l), l),
         "removed logits are set to 0, but a logit of 0 still has probability", "set them to float('-inf')."),
        (lambda l, k: torch.softmax(_top_k_ref(l, k), -1), "you return probabilities; return the filtered logits "
         "(the softmax comes later)", None),
        (lambda l, k: _top_k_ref(l, min(k + 1, l.shape[-1])), "you keep k + 1 tokens (off by one)", None),
        (lambda l, k: _top_k_ref(l, k - 1) if k > 1 else torch.full_like(l, float("-inf")),
         "you keep k - 1 tokens (off by one)", None),
        (lambda l, k: l.masked_fill(l > torch.topk(l, k, dim=-1, largest=False).values[..., -1:], float("-inf")),
         "you keep the k smallest logits instead of the k largest", "torch.topk returns the largest by default."),
        (lambda l, k: l.masked_fill(l < torch.topk(l.flatten(), k).values[-1], float("-inf")),
         "you pick the k largest of the whole tensor, not of each row", "use torch.topk(logits, k, dim=-1)."),
    ]

    def body(fn):
        for (logits, k), case in cases:
            got = _array(_call(fn, (logits, k), case), case, "the filtered logits")
            _shape(got, logits.shape, case, "return logits of the same shape, with -inf for the removed tokens.")
            want = _top_k_ref(logits.double(), k).numpy()
            if _close(got, want):
                continue
            if np.isfinite(got).all() and not np.isin(got, [0.0]).any():
                raise _Failure(f"on {case} nothing was removed: expected {_fmt(want)}, got {_fmt(got)}.",
                               "set every logit below the k-th largest to float('-inf').")
            _catalogue(got, (logits.double(), k), mistakes, case)
            kept = np.isfinite(got).sum(axis=-1)
            if (np.isfinite(got) == np.isfinite(want)).all():
                raise _Failure(f"on {case} you keep the right tokens but change their logits: expected {_fmt(want)}, "
                               f"got {_fmt(got)}.", "leave the kept logits as they are.")
            raise _Failure(f"on {case} you keep {_fmt(kept)} tokens per row: expected {_fmt(want)}, got {_fmt(got)}.",
                           "keep the k largest logits of each row: torch.topk(logits, k, dim=-1).")
        return len(cases)

    return _run("top_k", top_k_filter, body)


def _top_p_ref(logits, p, strict=False, extra=0, on_logits=False, by_position=False):
    logits = logits.double()
    if by_position:
        probs = torch.softmax(logits, -1)
        before = torch.cumsum(probs, -1) - probs
        return logits.masked_fill(before >= p, float("-inf"))
    order = torch.argsort(logits, descending=True)
    sorted_vals = logits[order] if on_logits else torch.softmax(logits, -1)[order]
    cum = torch.cumsum(sorted_vals, -1)
    before = cum - sorted_vals
    keep_sorted = (cum <= p) if strict else (before < p)
    if extra:
        n = int(keep_sorted.sum()) + extra
        keep_sorted = torch.arange(len(logits)) < n
    keep = torch.zeros_like(keep_sorted).scatter(0, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def check_top_p(top_p_filter: Callable) -> bool:
    """Check ``top_p_filter(logits (V,), p)``: keep the nucleus (the fewest most probable tokens whose total
    probability reaches p, the one that crosses p included), set the rest to -inf."""
    probs = torch.tensor([0.05, 0.5, 0.1, 0.15, 0.2])
    logits = torch.log(probs) + 1.0
    wide = torch.log(torch.tensor([0.02, 0.08, 0.3, 0.04, 0.36, 0.2])) - 2.0
    cases = [
        ((logits, 0.6), "probabilities [0.05, 0.5, 0.1, 0.15, 0.2], p = 0.6"),
        ((logits, 0.3), "the same, p = 0.3 (only the top token)"),
        ((logits, 0.9), "the same, p = 0.9"),
        ((wide, 0.75), "six tokens, p = 0.75"),
        ((logits, 1.0), "p = 1.0 (keep everything)"),
    ]
    mistakes = [
        (lambda l, p: _top_p_ref(l, p, strict=True), "you drop the token that crosses p: keep tokens while the "
         "probability *before* them is below p, so the kept total reaches p",
         "keep = (cumulative - probs) < p, in sorted order."),
        (lambda l, p: _top_p_ref(l, p, extra=1), "you keep one token too many", None),
        (lambda l, p: _top_p_ref(l, p, by_position=True), "you accumulate the probabilities in vocabulary order; "
         "sort them from most to least probable first, then map the decision back",
         "torch.sort(probs, descending=True) gives the order; scatter the mask back."),
        (lambda l, p: _top_p_ref(l, p, on_logits=True), "you accumulate logits; accumulate probabilities",
         "probs = torch.softmax(logits, dim=-1) first."),
        (lambda l, p: torch.where(torch.isinf(_top_p_ref(l, p)), torch.zeros_like(l.double()), l.double()),
         "removed logits are set to 0, but a logit of 0 still has probability", "set them to float('-inf')."),
        (lambda l, p: torch.softmax(_top_p_ref(l, p), -1), "you return probabilities; return the filtered logits",
         None),
    ]

    def body(fn):
        for (l, p), case in cases:
            got = _array(_call(fn, (l, p), case), case, "the filtered logits")
            _shape(got, l.shape, case, "return logits of the same shape, with -inf for the removed tokens.")
            want = _top_p_ref(l, p).numpy()
            if _close(got, want):
                continue
            if not np.isfinite(got).any():
                raise _Failure(f"on {case} you removed every token; the most probable token is always kept.",
                               "keep tokens while the probability before them is below p.")
            if _close(got, l.double().numpy()):
                raise _Failure(f"on {case} nothing was removed: expected {_fmt(want)}, got {_fmt(got)}.",
                               "accumulate probabilities (softmax first), from most to least probable, and set the "
                               "tokens after the nucleus to float('-inf').")
            _catalogue(got, (l, p), mistakes, case)
            raise _Failure(f"on {case}: expected {_fmt(want)}, got {_fmt(got)}.",
                           "sort by probability, keep while the mass before a token is below p, -inf elsewhere.")
        return len(cases)

    return _run("top_p", top_p_filter, body)


# --- geometry --------------------------------------------------------------------------------------

def _cos(a, b):
    a, b = a.double(), b.double()
    return (a @ b) / (a.norm() * b.norm())


def check_cosine_similarity(cosine_similarity: Callable) -> bool:
    """Check ``cosine_similarity(a (d,), b (d,)) -> a . b / (|a| |b|)``."""
    a = torch.tensor([1.0, 2.0, -1.0, 0.5])
    cases = [
        ((a, 3 * a), "a vector and 3 times itself (similarity 1)"),
        ((a, -0.5 * a), "a vector and -0.5 times itself (similarity -1)"),
        ((torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 2.0, 0.0])), "orthogonal vectors (similarity 0)"),
        ((_randn(8, seed=50, scale=3.0), _randn(8, seed=51)), "two random 8-d vectors of different lengths"),
        ((_randn(16, seed=52, scale=200.0), _randn(16, seed=53, scale=0.01)), "a long and a short 16-d vector"),
    ]
    mistakes = [
        (lambda x, y: x.double() @ y.double(), "you return the dot product without dividing by the lengths",
         "divide by a.norm() * b.norm()."),
        (lambda x, y: (x.double() @ y.double()) / x.double().norm(), "you divide by the length of a only",
         "divide by a.norm() * b.norm()."),
        (lambda x, y: (x.double() @ y.double()) / (x.double().norm() ** 2 * y.double().norm() ** 2),
         "you divide by the squared lengths", "use a.norm() * b.norm(), not squared norms."),
        (lambda x, y: 1 - _cos(x, y), "you return the cosine distance 1 - cos; return the similarity", None),
        (lambda x, y: (x.double() - y.double()).norm(), "you return the Euclidean distance", None),
    ]

    def body(fn):
        for (x, y), case in cases:
            got = _scalar(_call(fn, (x, y), case), case, "the similarity")
            want = float(_cos(x, y))
            if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5):
                continue
            _catalogue(np.array(got), (x, y), mistakes, case)
            raise _Failure(f"wrong value on {case}: expected {want:.4f}, got {got:.4f}.",
                           "cos = (a @ b) / (a.norm() * b.norm()).")
        return len(cases)

    return _run("cosine_similarity", cosine_similarity, body)


def _neighbors_ref(E, i, k, metric="cos", include_self=False, ascending=False):
    E = E.double()
    if metric == "cos":
        score = F.cosine_similarity(E, E[i][None], dim=-1)
    elif metric == "dot":
        score = E @ E[i]
    else:
        score = -(E - E[i]).norm(dim=-1)
    if ascending:
        score = -score
    if not include_self:
        score[i] = float("-inf")
    return torch.topk(score, k).indices


def _geometry_embeddings() -> torch.Tensor:
    # rows chosen so that cosine, dot product and Euclidean distance rank neighbours differently
    return torch.tensor([
        [1.0, 0.0, 0.0],    # 0 query
        [0.9, 0.1, 0.0],    # 1 same direction, short
        [6.0, 4.0, 0.0],    # 2 long, a bit off: large dot product
        [0.6, -0.5, 0.2],   # 3 close in space, different direction
        [0.0, 1.0, 0.0],    # 4 orthogonal
        [-1.0, 0.1, 0.0],   # 5 opposite
        [2.0, 0.3, 0.3],    # 6 same direction, longer
        [0.2, 0.9, 0.9],    # 7
    ])


def check_nearest_neighbors(nearest_neighbors: Callable) -> bool:
    """Check ``nearest_neighbors(E (V, d), i, k) -> k ids``: most cosine-similar to row i first, i left out."""
    E = _geometry_embeddings()
    E2 = _randn(12, 5, seed=60) * torch.linspace(0.2, 4.0, 12)[:, None]
    cases = [((E, 0, 3), "8 vectors, neighbours of 0, k = 3"), ((E, 4, 2), "8 vectors, neighbours of 4, k = 2"),
             ((E2, 7, 4), "12 vectors of very different lengths, neighbours of 7, k = 4")]
    mistakes = [
        (lambda E, i, k: _neighbors_ref(E, i, k, include_self=True), "your list includes the word itself "
         "(every vector is most similar to itself)", "leave out index i, e.g. set its similarity to -inf."),
        (lambda E, i, k: _neighbors_ref(E, i, k, metric="dot"), "you rank by dot product, which favours long "
         "vectors; rank by cosine similarity", "normalise the vectors first."),
        (lambda E, i, k: _neighbors_ref(E, i, k, metric="euclid"), "you rank by Euclidean distance; rank by "
         "cosine similarity", None),
        (lambda E, i, k: _neighbors_ref(E, i, k, ascending=True), "you return the least similar vectors; "
         "sort from most to least similar", "torch.topk or argsort(descending=True)."),
    ]

    def body(fn):
        for (emb, i, k), case in cases:
            out = _call(fn, (emb, i, k), case)
            got = _array(out, case, f"a list of {k} token ids")
            if got.shape != (k,):
                raise _Failure(f"wrong shape on {case}: expected {k} ids, got shape {tuple(got.shape)}.",
                               "return the indices of the k best, e.g. torch.topk(sims, k).indices.")
            if not np.allclose(got, np.round(got)) or (got < 0).any() or (got >= len(emb)).any():
                raise _Failure(f"on {case} you return {_fmt(got)}; return row indices (ints from 0 to "
                               f"{len(emb) - 1}), not similarities.", "torch.topk(sims, k).indices.")
            want = _neighbors_ref(emb, i, k).numpy()
            if (got == want).all():
                continue
            _catalogue(got, (emb, i, k), mistakes, case)
            raise _Failure(f"on {case}: expected {_fmt(want)}, got {_fmt(got)}.",
                           "cosine similarity of row i with every row, leave i out, take the k largest.")
        return len(cases)

    return _run("nearest_neighbors", nearest_neighbors, body)


def _analogy_ref(E, a, b, c, exclude=True, sign=1, metric="cos"):
    E = E.double()
    target = E[b] - E[a] + E[c] if sign == 1 else E[a] - E[b] + E[c]
    score = F.cosine_similarity(E, target[None], dim=-1) if metric == "cos" else E @ target
    if exclude:
        score[[a, b, c]] = float("-inf")
    return int(score.argmax())


def check_analogy(analogy: Callable) -> bool:
    """Check ``analogy(E, a, b, c) -> id``: the row most cosine-similar to ``E[b] - E[a] + E[c]``,
    leaving out a, b and c ("a is to b as c is to ?")."""
    # 0 man, 1 woman, 2 king, 3 queen, 4 prince, 5 throne (long), 6 girl, 7 boy
    E = torch.tensor([
        [1.0, 0.0, 0.1, 0.0], [0.0, 1.0, 0.1, 0.0], [1.0, 0.0, 1.0, 0.2], [0.0, 1.0, 1.0, 0.2],
        [1.2, -0.4, 0.6, 0.0], [-10.0, 8.0, 9.0, 9.0], [-0.2, 1.0, -0.2, -0.4], [1.0, -0.6, -0.2, -0.1],
    ])
    rng = _randn(10, 6, seed=70)
    cases = [((E, 0, 1, 2), "man : woman :: king : ? (8 toy vectors)"),
             ((E, 0, 6, 4), "man : girl :: prince : ? (8 toy vectors)"),
             ((rng, 1, 4, 7), "10 random vectors, a = 1, b = 4, c = 7")]
    mistakes = [
        (lambda E, a, b, c: _analogy_ref(E, a, b, c, exclude=False), "you return one of the three input words; "
         "leave a, b and c out of the candidates", "set their scores to -inf before the argmax."),
        (lambda E, a, b, c: _analogy_ref(E, a, b, c, sign=-1), "you compute E[a] - E[b] + E[c]; the offset goes "
         "from a to b: E[b] - E[a] + E[c]", None),
        (lambda E, a, b, c: _analogy_ref(E, a, b, c, metric="dot"), "you rank by dot product, which favours long "
         "vectors; rank by cosine similarity", None),
    ]

    def body(fn):
        for (emb, a, b, c), case in cases:
            got = _scalar(_call(fn, (emb, a, b, c), case), case, "one row index")
            if got != int(got) or not 0 <= got < len(emb):
                raise _Failure(f"on {case} you return {got:g}; return a row index (an int from 0 to {len(emb) - 1}).",
                               "int(scores.argmax()).")
            want = _analogy_ref(emb, a, b, c)
            if int(got) == want:
                continue
            _catalogue(np.array(got), (emb, a, b, c), mistakes, case)
            raise _Failure(f"on {case}: expected {want}, got {int(got)}.",
                           "cosine similarity of every row with E[b] - E[a] + E[c]; leave a, b, c out; argmax.")
        return len(cases)

    return _run("analogy", analogy, body)


# --- decoding and training -------------------------------------------------------------------------

def check_greedy_next(greedy_next: Callable) -> bool:
    """Check ``greedy_next(logits (batch, seq, V)) -> (batch,)`` ids: the argmax at the last position."""
    cases = [
        (_randn(2, 4, 7, seed=80), "logits of shape (2, 4, 7)"),
        (_randn(3, 1, 5, seed=81), "logits of shape (3, 1, 5) (one position)"),
        (_randn(1, 6, 9, seed=82, scale=50.0), "logits of shape (1, 6, 9)"),
    ]
    mistakes = [
        (lambda l: l[:, 0].argmax(-1), "you read the first position; the next token comes from the last one",
         "logits[:, -1]."),
        (lambda l: l[:, -1].argmin(-1), "you take the least likely token (argmin)", "use argmax."),
        (lambda l: l[:, -1].max(-1).values, "you return the largest logit, not its index", "use argmax."),
        (lambda l: l.argmax(1)[:, -1], "you take the argmax over the positions (dim 1), not over the vocabulary",
         "logits[:, -1].argmax(dim=-1)."),
        (lambda l: torch.softmax(l[:, -1], -1).max(-1).values, "you return the highest probability, not the "
         "token id", "use argmax."),
    ]

    def body(fn):
        for logits, case in cases:
            got = _array(_call(fn, (logits,), case), case, "one token id per sequence")
            want = logits[:, -1].argmax(-1).numpy().astype(float)
            if got.shape == (logits.shape[0], logits.shape[1]):
                raise _Failure(f"wrong shape on {case}: expected {tuple(want.shape)}, got {tuple(got.shape)}: one id "
                               "per position.", "keep only the last position: logits[:, -1].")
            _shape(got, want.shape, case, "one id per sequence in the batch: logits[:, -1].argmax(dim=-1).")
            if (got == want).all():
                continue
            _catalogue(got, (logits,), mistakes, case)
            raise _Failure(f"on {case}: expected {_fmt(want)}, got {_fmt(got)}.", "logits[:, -1].argmax(dim=-1).")
        return len(cases)

    return _run("greedy_next", greedy_next, body)


def _train_setup(seed: int = 0):
    with _fixed_seeds(seed):
        model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = _generator(seed + 1)
    batches = [(torch.randn(6, 4, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(3)]
    return model, opt, batches


def _params(model) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).double().numpy()


def _simulate(variant: str) -> tuple[list[float], list[np.ndarray]]:
    """Three steps of a (possibly wrong) training step; returns the returned losses and the parameters."""
    model, opt, batches = _train_setup()
    losses, params = [], []
    for x, y in batches:
        if variant != "no_zero_grad":
            opt.zero_grad()
        if variant == "step_first":
            opt.step()
        loss = F.cross_entropy(model(x), y)
        if variant == "ascent":
            (-loss).backward()
        elif variant != "no_backward":
            loss.backward()
        if variant not in ("no_step", "step_first"):
            opt.step()
        returned = F.cross_entropy(model(x), y).item() if variant == "loss_after" else loss.item()
        losses.append(returned)
        params.append(_params(model))
    return losses, params


def check_train_step(train_step: Callable) -> bool:
    """Check ``train_step(model, optimizer, x, y) -> float``: zero the gradients, compute the cross-entropy
    of ``model(x)`` against ``y``, backpropagate, step, and return the loss (computed before the step).

    The checker runs three steps on a small ``nn.Linear(4, 3)`` classifier with ``torch.optim.SGD``.
    """
    mistakes = {
        "no_zero_grad": ("you never zero the gradients, so each step adds the previous steps' gradients",
                         "call optimizer.zero_grad() at the start of each step."),
        "ascent": ("the loss goes up: your step climbs the gradient instead of descending it",
                   "backpropagate the loss itself (loss.backward()), not -loss."),
        "loss_after": ("you return the loss after the update; return the loss computed before optimizer.step()",
                       None),
    }
    reference_losses, reference_params = _simulate("right")
    variants = {name: _simulate(name) for name in mistakes}

    def body(fn):
        model, opt, batches = _train_setup()
        before = _params(model)
        for step, (x, y) in enumerate(batches):
            case = f"step {step + 1} of 3 (nn.Linear(4, 3), SGD, lr 0.5)"
            out = _call(fn, (model, opt, x, y), case, no_grad=False)
            loss = _scalar(out, case, "the loss")
            now = _params(model)
            if np.array_equal(now, before):
                raise _Failure(f"the parameters did not change on {case}.",
                               "after optimizer.zero_grad() and the loss, call loss.backward() and then "
                               "optimizer.step(), in that order.")
            if not _close(now, reference_params[step], rtol=1e-5, atol=1e-6):
                for name, (v_losses, v_params) in variants.items():
                    if _close(now, v_params[step], rtol=1e-5, atol=1e-6):
                        message, hint = mistakes[name]
                        raise _Failure(f"{message} (on {case}).", hint)
                raise _Failure(f"after {case} the parameters differ from one SGD step on the cross-entropy loss.",
                               "loss = F.cross_entropy(model(x), y); optimizer.zero_grad(); loss.backward(); "
                               "optimizer.step().")
            if not math.isclose(loss, reference_losses[step], rel_tol=1e-5, abs_tol=1e-6):
                if math.isclose(loss, variants["loss_after"][0][step], rel_tol=1e-5, abs_tol=1e-6):
                    message, hint = mistakes["loss_after"]
                    raise _Failure(f"{message} (on {case}).", hint)
                raise _Failure(f"on {case} you return {loss:.4f}; the cross-entropy before the update is "
                               f"{reference_losses[step]:.4f}.", "return loss.item() of the loss you backpropagated.")
            before = now
        return len(batches)

    return _run("train_step", train_step, body)


CHECKERS: dict[str, Callable[[Callable], bool]] = {
    name[len("check_"):]: fn for name, fn in globals().items() if name.startswith("check_") and callable(fn)
}
