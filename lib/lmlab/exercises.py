"""Exercise checkers: call ``check_<name>(your_function)`` and read one line.

Each checker runs your function on hidden inputs and compares it with a reference. The inputs are
chosen so that the plausible wrong solutions go wrong on them: several shapes and vocabulary sizes,
rows of very different magnitudes, masks other than the causal one, values that overflow or underflow
in float32, settings other than the chapter's (another optimizer, learning rate, k or p) and every return
type the exercise asks for. It prints either one success line or what is wrong: the mistake it
recognises (each checker has a table of the mistakes students make most, and says which one it is), or
the case, the expected and the received values with as many digits as it takes to tell them apart,
with a hint. A function that still raises ``NotImplementedError`` is reported as "not attempted yet";
an error raised by your code is reported in one line, and the common broadcasting, indexing and
transposing slips are explained. Checkers return a :class:`Verdict`: true if your function passed, false
otherwise; a notebook shows nothing for it (the printed line is the verdict), and :func:`last_verdict`
returns the most recent one.

The hidden cases are fixed: they are built from explicit seeds that no replay offset shifts, and the
checkers leave the caller's random state as they found it.

The function each checker expects (inputs are torch tensors, float32 unless noted; return a tensor,
a NumPy array or a Python number):

=============================  ==========================================================================
checker                        your function
=============================  ==========================================================================
check_softmax                  ``softmax(x) -> probs``, same shape, over the last axis
check_causal_mask              ``causal_mask(n) -> (n, n) bool``, True where query i may attend to key j
check_attention                ``attention(q, k, v, mask=None) -> (..., seq_q, d_v)``; ``mask`` is bool
                               ``(seq_q, seq_k)``, True = may attend (masked scores become -inf)
check_bigram_counts            ``count_bigrams(tokens, vocab) -> (V, V)``, ``[i, j]`` = times vocab[j]
                               follows vocab[i]
check_bigram_probs             ``bigram_probs(counts, alpha) -> (V, V)``: (counts + alpha) / row total
check_cross_entropy            ``cross_entropy(logits (N, V), targets (N,)) -> number``: mean -log p, nats
check_perplexity               ``perplexity(logprobs (N,)) -> number``: exp(-mean log p)
check_entropy                  ``entropy(probs (V,)) -> number``: -sum p log p in nats, 0 log 0 = 0
check_sample                   ``sample(logits (V,), temperature) -> int`` drawn from softmax(logits / T)
check_top_k                    ``top_k_filter(logits (..., V), k)``: all but the k largest per row -> -inf
check_top_p                    ``top_p_filter(logits (V,), p)``: tokens outside the nucleus -> -inf
check_cosine_similarity        ``cosine_similarity(a (d,), b (d,)) -> number``
check_nearest_neighbors        ``nearest_neighbors(E (V, d), i, k) -> k ids``, most cosine-similar first
check_analogy                  ``analogy(E (V, d), a, b, c) -> id``: cosine to E[b] - E[a] + E[c]
check_greedy_next              ``greedy_next(logits (batch, seq, V)) -> (batch,)`` argmax at the last position
check_train_step               ``train_step(model, optimizer, x, y) -> float``: one step, loss before it
check_relu_backprop            ``relu_backprop(x, y, W1, b1, W2, b2) -> {"W1", "b1", "W2", "b2"}`` by hand
check_gradient_descent         ``gradient_descent(w0, lr, steps, curvature) -> [w0, ..., w_steps]``
check_prune_and_rewind         ``prune_and_rewind(trained, initial, sparsity) -> (weights, masks)``
check_probe                    ``probe_accuracy(X_train, y_train, X_test, y_test) -> fraction``
check_head_accuracy            ``head_accuracy(patterns, sites) -> (layers, heads)``
check_ngram_perplexity         ``ngram_perplexity(n, train, test, vocab_size) -> number``
check_beam_search              ``beam_search(next_logprobs, prompt, num_beams, steps) -> list of tokens``
check_temperature_for_entropy  ``temperature_for_entropy(logits (V,), target) -> T``
check_sinusoidal_positions     ``sinusoidal_positions(n_positions, d_model) -> (n_positions, d_model)``
check_rotary                   ``rotate(x (seq, d), positions (seq,)) -> (seq, d)``
check_swiglu                   ``swiglu(x, w_gate, w_up, w_down) -> (..., d)``
check_prenorm_block            ``block(x, attn, mlp, ln1, ln2) -> same shape as x``
=============================  ==========================================================================

The checkers of chapters other than this module's first sixteen are also reachable from the module
the chapter imports (``measure.check_ngram_perplexity``, ``variants.check_rotary``, ...).

The nucleus (top-p): sort tokens by probability, keep a token while the probability of the tokens
before it is still below p (so the token that crosses p is kept, and the top token always is).
"""
from __future__ import annotations

import contextlib
import copy
import math
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "check_softmax", "check_causal_mask", "check_attention", "check_bigram_counts", "check_bigram_probs",
    "check_cross_entropy", "check_perplexity", "check_entropy", "check_sample", "check_top_k", "check_top_p",
    "check_cosine_similarity", "check_nearest_neighbors", "check_analogy", "check_greedy_next",
    "check_train_step", "check_relu_backprop", "check_gradient_descent", "check_prune_and_rewind",
    "check_probe", "check_head_accuracy", "check_ngram_perplexity", "check_beam_search",
    "check_temperature_for_entropy", "check_sinusoidal_positions", "check_rotary", "check_swiglu",
    "check_prenorm_block", "CHECKERS", "Verdict", "last_verdict",
]

OK, FAIL, TODO = "✅", "❌", "⏳"
NEG_INF = float("-inf")


# --- the reporting core ----------------------------------------------------------------------------
#
# Every checker is a list of hidden cases and a diagnosis table: a list of (wrong_function, message,
# hint) rows, each a mistake students make, written as code. When the student's result differs from
# the reference, the first row whose result matches the student's names the mistake; when the
# student's function raises, the first row that raises the same error names it. Only then does a
# checker fall back on a generic "wrong values" message, with numbers printed to the precision that
# separates them.

class _Failure(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


class _NotAttempted(Exception):
    pass


class Verdict:
    """What a checker found: true if the function passed (``if check_x(f): ...`` works), false otherwise.

    A notebook displays nothing for it, so ``check_x(my_fn)`` as a cell's last line shows only the printed
    verdict, never a stray ``True``/``False``. ``status`` is ``"passed"``, ``"failed"`` or
    ``"not attempted"``; ``message`` is the printed line.
    """

    __slots__ = ("name", "status", "message")

    def __init__(self, name: str, status: str, message: str):
        self.name, self.status, self.message = name, status, message

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"<Verdict {self.name}: {self.status}>"

    def _ipython_display_(self) -> None:
        """IPython shows nothing: the checker has printed its verdict already."""


_last: Verdict | None = None


def last_verdict() -> Verdict | None:
    """The verdict of the most recent checker call (``None`` before the first): a hidden cell can assert
    that the solution above it passed without the solution cell showing its return value."""
    return _last


def _verdict(name: str, status: str, message: str) -> Verdict:
    global _last
    print(message)
    _last = Verdict(name, status, message)
    return _last


def _run(name: str, fn: Any, body: Callable[[Callable], int]) -> Verdict:
    """Run ``body(fn)`` (which returns the number of hidden tests) and print one verdict."""
    if not callable(fn):
        return _verdict(name, "failed", f"{FAIL} {name}: pass your function itself, e.g. check_{name}(my_{name}), "
                                        f"not {type(fn).__name__} {fn!r:.40}.")
    try:
        with torch.random.fork_rng(devices=[]):
            n = body(fn)
    except _NotAttempted:
        return _verdict(name, "not attempted",
                        f"{TODO} {name}: not attempted yet: your function still raises NotImplementedError. "
                        "Write its body, then run this check again.")
    except _Failure as failure:
        return _verdict(name, "failed", f"{FAIL} {name}: {failure.message}"
                                        + (f"\n   Hint: {failure.hint}" if failure.hint else ""))
    return _verdict(name, "passed", f"{OK} {name}: correct on all {n} hidden tests.")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else "(no message)"


# Raw errors from a student's code, translated: (pattern of the message, what it means, hint).
_TRANSLATIONS: list[tuple[str, str, str | None]] = [
    (r"unsupported operand type\(s\).*torch\.return_types\.(\w+)",
     "x.{0}(dim=...) returns a pair (values, indices), not a tensor",
     "take its values: x.{0}(dim=-1, keepdim=True).values."),
    (r"'torch\.return_types\.(\w+)' object has no attribute",
     "x.{0}(dim=...) returns a pair (values, indices), not a tensor",
     "take its values: x.{0}(dim=-1, keepdim=True).values."),
    (r"The size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton dimension (\d+)",
     "two tensors whose shapes do not line up were combined elementwise (a length {0} against a length {1})",
     "a sum or maximum taken along an axis must keep that axis to broadcast back: .sum(dim=-1, keepdim=True); "
     "and .T reverses every axis of a tensor with more than two: swap the last two with .transpose(-2, -1)."),
    (r"mat1 and mat2 shapes cannot be multiplied|Expected size for first two dimensions of batch2|"
     r"size mismatch|inconsistent tensor size|Incompatible dimensions|matmul: Input operand",
     "a matrix product got shapes that do not fit: (a, b) @ (c, d) needs b == c",
     "check which side needs transposing; .transpose(-2, -1) swaps the last two axes."),
    (r"Dimension out of range \(expected to be in range of \[-?\d+, (\d+)\], but got (-?\d+)\)",
     "your code uses an axis the input does not have (this input has {0}+1 axes)",
     "count axes from the end (dim=-1 is the last) so the code works for inputs of any number of axes."),
    (r"index (-?\d+) is out of bounds for dimension (\d+) with size (\d+)",
     "an index ({0}) is out of range for an axis of size {2}",
     "check which axis you index, and that the ids you use belong to that axis."),
    (r"too many indices for tensor of dimension (\d+)",
     "you index more axes than the tensor has ({0})", None),
    (r"a Tensor with (\d+) elements cannot be converted to Scalar|only one element tensors can be converted",
     ".item(), float() or int() needs a tensor of one element", "reduce to one number first (.sum(), .mean())."),
    (r"expected both vectors to have same dtype|expected scalar type|must have the same dtype|"
     r"expected m1 and m2 to have the same dtype|found Double and Float|found Float and Double",
     "two tensors of different dtypes (float64 and float32) were combined",
     "convert one to the other's dtype with .to(other.dtype)."),
    (r"does not require grad and does not have a grad_fn",
     "backward() found no computation graph: the loss was computed without gradients "
     "(after .item() or .detach(), or under torch.no_grad())",
     "call .backward() on the loss tensor itself, and .item() only on what you return."),
    (r"Can't call numpy\(\) on Tensor that requires grad", "a tensor that requires grad was turned into NumPy",
     "add .detach() first."),
    (r"probability tensor contains either",
     "torch.multinomial got negative, inf or NaN weights: it needs probabilities",
     "apply torch.softmax to the (divided) logits first."),
    (r"'(list|tuple|numpy\.ndarray|float|int)' object has no attribute '(\w+)'",
     "your code calls .{1} on a {0}", "convert with torch.tensor(...) first, or use a function that takes a {0}."),
    (r"unsupported operand type\(s\) for ([^:]+): '(\w+)' and '(\w+)'",
     "the operator {0} does not work between a {1} and a {2}", None),
    (r"unhashable type", "a tensor or list was used as a dict key or set element",
     "use .item() or a tuple as the key."),
]


def _translate(err: BaseException) -> tuple[str, str | None] | None:
    text = _first_line(err)
    for pattern, meaning, hint in _TRANSLATIONS:
        match = re.search(pattern, text)
        if match:
            groups = [g or "" for g in match.groups()]
            return meaning.format(*groups), (hint.format(*groups) if hint else None)
    if isinstance(err, KeyError):
        return f"a dictionary has no key {_first_line(err)}", None
    return None


def _copy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, (torch.nn.Module, torch.optim.Optimizer)) or callable(x):
        return x
    return copy.deepcopy(x)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and \
            bool(torch.equal(a, b) or torch.allclose(a.double(), b.double(), equal_nan=True, rtol=0, atol=0))
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return True


def _same_error(wrong: Callable, args: tuple, err: BaseException, no_grad: bool = True, **kwargs) -> bool:
    try:
        with torch.no_grad() if no_grad else contextlib.nullcontext(), _quiet():
            wrong(*[_copy(a) for a in args], **kwargs)
    except Exception as other:  # noqa: BLE001
        return type(other) is type(err) and _first_line(other) == _first_line(err)
    return False


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _call(fn: Callable, args: tuple, case: str, no_grad: bool = True, mistakes: list | None = None,
          **kwargs) -> Any:
    """Call the student's ``fn`` on copies of ``args``; turn exceptions and in-place edits into failures.

    When ``fn`` raises, a row of ``mistakes`` (``(wrong_fn, message, hint)``) whose ``wrong_fn`` raises
    the same error names the mistake; otherwise the error is translated when it is a common slip."""
    given = [_copy(a) for a in args]
    try:
        with torch.no_grad() if no_grad else contextlib.nullcontext(), _quiet():
            out = fn(*given, **kwargs)
    except NotImplementedError:
        raise _NotAttempted() from None
    except _Failure:
        raise
    except Exception as err:  # noqa: BLE001 - any error in student code is reported, not raised
        for wrong, message, hint in mistakes or []:
            if _same_error(wrong, args, err, no_grad, **kwargs):
                raise _Failure(f"{message} (on {case}: your function raised {type(err).__name__}: "
                               f"{_first_line(err)}).", hint) from None
        raised = f"your function raised {type(err).__name__}: {_first_line(err)} (on {case})"
        translated = _translate(err)
        if translated:
            raise _Failure(f"{raised}: {translated[0]}.", translated[1]) from None
        raise _Failure(f"{raised}.") from None
    for original, passed in zip(args, given):
        if isinstance(original, (torch.Tensor, Mapping)) and not _same(original, passed):
            raise _Failure(f"your function changed its input in place (on {case}).",
                           "work on a copy (x = x.clone()) or use out-of-place operations "
                           "(masked_fill, not masked_fill_; x = x + a, not x += a).")
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


def _python_number(out: Any, case: str, what: str, integer: bool = False) -> float:
    """``out`` as a number, refusing tensors and arrays where the exercise asks for a Python number."""
    kind = "int" if integer else "number"
    if isinstance(out, torch.Tensor):
        extra = " that still carries its graph" if out.requires_grad else ""
        raise _Failure(f"you return a tensor{extra} ({_short(out)}) on {case}; the exercise asks for a Python "
                       f"{kind} ({what}).", f"return {'int(...)' if integer else 'loss.item()'}"
                       f"{' or .item()' if integer else ' (or float(...))'}.")
    if isinstance(out, np.ndarray):
        raise _Failure(f"you return a NumPy array on {case}; the exercise asks for a Python {kind} ({what}).",
                       "return int(...) or .item()." if integer else "return float(...) or .item().")
    if out is None:
        raise _Failure(f"your function returned None (on {case}).", "did you forget the `return` line?")
    if isinstance(out, bool) or not isinstance(out, (int, float, np.integer, np.floating)):
        raise _Failure(f"your function returned {type(out).__name__} {str(out)[:60]!r} on {case}; return one "
                       f"{kind} ({what}).")
    if integer and isinstance(out, (float, np.floating)) and float(out) != int(out):
        raise _Failure(f"your function returned {float(out):g} on {case}; return a token id (an int).")
    return float(out)


def _numel(x: Any) -> int:
    return int(x.numel()) if isinstance(x, torch.Tensor) else int(np.size(x))


def _short(t: torch.Tensor) -> str:
    text = repr(t.detach()).replace("\n", "")
    return re.sub(r"\s+", " ", text)[:60]


def _close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def _fmt(x: Any, precision: int = 3) -> str:
    arr = np.asarray(x)
    if arr.dtype == bool:
        arr = arr.astype(int)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    return np.array2string(arr, precision=precision, suppress_small=False, max_line_width=100, threshold=40,
                           separator=", ", floatmode="maxprec").replace("\n", "")


def _fmt_pair(want: Any, got: Any) -> tuple[str, str]:
    """``want`` and ``got`` printed with as many decimals as it takes for the two to look different."""
    for precision in range(3, 13):
        a, b = _fmt(want, precision), _fmt(got, precision)
        if a != b:
            return a, b
    return _fmt(want, 16), _fmt(got, 16)


def _num(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


def _num_pair(want: float, got: float) -> tuple[str, str]:
    for digits in range(4, 17):
        a, b = _num(want, digits), _num(got, digits)
        if a != b:
            return a, b
    return repr(want), repr(got)


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.numpy() if x.dtype == torch.bool else x.double().numpy()
    return np.asarray(x, dtype=float)


def _matches(wrong: Callable, args: tuple, got: np.ndarray, rtol: float, atol: float, **kwargs) -> bool | None:
    """Whether ``wrong(*args)`` gives ``got`` (None when it cannot run on these arguments)."""
    try:
        with torch.no_grad(), _quiet():
            expected = _np(wrong(*[_copy(a) for a in args], **kwargs))
    except Exception:  # noqa: BLE001 - a mistake that cannot run on this input is not the one
        return None
    return expected.shape == got.shape and _close(got, expected, rtol, atol)


def _catalogue(got: Any, args: tuple, mistakes: list[tuple[Callable, str, str | None]], case: str,
               rtol: float = 1e-4, atol: float = 1e-5, others: list[tuple[tuple, np.ndarray]] = (),
               **kwargs) -> None:
    """Raise the message of the first known mistake whose output matches ``got`` (and, where ``others``
    gives the student's results on the other hidden cases, matches those too: two mistakes that agree on
    one case are told apart on the others)."""
    got = np.asarray(got, dtype=float) if not isinstance(got, np.ndarray) or got.dtype != bool else got
    for wrong, message, hint in mistakes:
        if not _matches(wrong, args, got, rtol, atol, **kwargs):
            continue
        if all(_matches(wrong, a, g, rtol, atol, **kwargs) is not False for a, g in others):
            raise _Failure(f"{message} (on {case}).", hint)


def _outputs(fn: Callable, arg_lists: list[tuple], what: str) -> list[tuple[tuple, np.ndarray]]:
    """The student's results on every hidden case that runs, for :func:`_catalogue`'s ``others``."""
    results = []
    for args in arg_lists:
        try:
            results.append((args, _array(_call(fn, args, "another case"), "another case", what)))
        except (_Failure, _NotAttempted):
            continue
    return results


def _wrong_values(got: np.ndarray, want: np.ndarray, case: str, hint: str | None = None) -> _Failure:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    w, g = _fmt_pair(want, got)
    where = ""
    if got.shape == want.shape and got.size > 1:
        diff = np.abs(np.nan_to_num(got - want, nan=np.inf, posinf=np.inf, neginf=np.inf))
        diff[np.isclose(got, want, equal_nan=True) | ((got == want) & np.isinf(want))] = 0
        idx = np.unravel_index(int(np.argmax(diff)), got.shape)
        a, b = _num_pair(float(want[idx]), float(got[idx]))
        where = f"; the largest difference is at index {list(map(int, idx))}: expected {a}, got {b}"
    return _Failure(f"wrong values on {case}: expected {w}, got {g}{where}.", hint)


def _wrong_value(got: float, want: float, case: str, hint: str | None = None) -> _Failure:
    a, b = _num_pair(want, got)
    return _Failure(f"wrong value on {case}: expected {a}, got {b}.", hint)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=_generator(seed)) * scale


@contextlib.contextmanager
def _fixed_seeds(seed: int):
    """Seed torch, NumPy and random for a block with a fixed seed (never shifted by a replay offset),
    then restore the caller's generator states."""
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


# --- softmax ---------------------------------------------------------------------------------------

_SOFTMAX_HINT = ("subtract each row's largest value before exp: x - x.max(dim=-1, keepdim=True).values; "
                 "softmax does not change when every logit of a row moves by the same amount.")


def check_softmax(softmax: Callable) -> Verdict:
    """Check ``softmax(x) -> probabilities`` of the same shape, normalised over the last axis."""
    cases = [
        (torch.tensor([1.0, 2.0, 3.0]), "the vector [1.0, 2.0, 3.0]"),
        (_randn(3, 3, seed=3, scale=2.0), "a square batch of 3 rows of 3 logits"),
        (_randn(4, 6, seed=1, scale=2.0), "a batch of 4 rows of 6 logits"),
        (torch.tensor([1000.0, 1001.0, 1002.0]), "large logits [1000, 1001, 1002]"),
        (torch.tensor([-1000.0, -1001.0, -1002.0]), "very negative logits [-1000, -1001, -1002]"),
        (torch.tensor([[0.0, NEG_INF, 1.0], [2.0, 2.0, NEG_INF]]), "rows containing -inf (masked logits)"),
        (torch.tensor([[500.0, 501.0, 499.0, 502.0], [-3.0, -1.0, -2.0, 0.0]]),
         "two rows of very different magnitudes ([500, 501, 499, 502] and [-3, -1, -2, 0])"),
        (_randn(2, 3, 5, seed=2), "a (2, 3, 5) tensor"),
    ]
    mistakes = [
        (lambda x: torch.exp(x), "your function returns exp(x) without dividing by the sum",
         "divide by the sum over the last axis: e / e.sum(dim=-1, keepdim=True)."),
        (lambda x: torch.exp(x - x.max(dim=-1, keepdim=True).values), "your function returns exp(x - max) "
         "without dividing by the sum", "divide by the sum over the last axis: e / e.sum(dim=-1, keepdim=True)."),
        (lambda x: torch.exp(x - x.max()) / torch.exp(x - x.max()).sum(), "you normalise over the whole tensor "
         "instead of each row", "sum over the last axis only: .sum(dim=-1, keepdim=True)."),
        (lambda x: torch.exp(x) / torch.exp(x).sum(), "you normalise over the whole tensor instead of each row",
         "sum over the last axis only: .sum(dim=-1, keepdim=True)."),
        (lambda x: torch.softmax(x, dim=0), "you normalise over the wrong axis (dim 0, down the columns) instead "
         "of the last axis", "use dim=-1 (and keepdim=True when you divide)."),
        (lambda x: torch.exp(x - x.max(-1, keepdim=True).values) / torch.exp(x - x.max(-1, keepdim=True).values).sum(-1),
         "you divide by the row sums without keepdim=True: the sums lose their axis and broadcast along the wrong "
         "one (each column j is divided by row j's sum)", "e / e.sum(dim=-1, keepdim=True)."),
        (lambda x: torch.exp(x - x.max(-1).values) / torch.exp(x - x.max(-1).values).sum(-1, keepdim=True),
         "you subtract the row maxima without keepdim=True: they lose their axis and broadcast along the wrong "
         "one (column j gets row j's maximum)", "x - x.max(dim=-1, keepdim=True).values."),
        (lambda x: torch.softmax(-x, dim=-1), "you compute softmax(-x): the largest logit must get the largest "
         "probability", None),
        (lambda x: x / x.sum(dim=-1, keepdim=True), "you divide the logits by their sum without exp",
         "exponentiate first: e = exp(x), then e / e.sum(...)."),
    ]
    raising = [
        (lambda x: x - x.max(dim=-1), "x.max(dim=-1) returns a pair (values, indices), not a tensor",
         "x.max(dim=-1, keepdim=True).values."),
        (lambda x: torch.exp(x) / torch.exp(x).sum(-1), "you divide by the row sums without keepdim=True, so "
         "the sums lose their axis and cannot broadcast back", "e / e.sum(dim=-1, keepdim=True)."),
        (lambda x: torch.exp(x - x.max(-1).values), "you subtract the row maxima without keepdim=True, so they "
         "lose their axis and cannot broadcast back", "x - x.max(dim=-1, keepdim=True).values."),
    ]

    def body(fn):
        for x, case in cases:
            got = _array(_call(fn, (x,), case, mistakes=raising), case)
            _shape(got, x.shape, case, "softmax keeps the shape of its input.")
            want = torch.softmax(x.double(), dim=-1).numpy()
            if _close(got, want):
                continue
            if np.isnan(got).any() or np.isinf(got).any():
                if torch.isinf(x).any():
                    _catalogue(got, (x,), mistakes[:2], case)
                    raise _Failure(f"on {case} your function returned NaN or inf: {_fmt(got)}. A -inf logit must "
                                   "get probability 0.", "subtract each row's maximum (finite), not its minimum, "
                                                         "and let exp(-inf) = 0 do the rest.")
                if x.dim() > 1 and (x.max(-1).values - x.min(-1).values).max() < 100 < x.max() - x.min():
                    raise _Failure(f"on {case} your function returned NaN or inf for the row far below the largest "
                                   "logit of the tensor: you subtract the maximum of the whole tensor, and that row's "
                                   "exps underflow to 0 / 0.", _SOFTMAX_HINT)
                if x.abs().max() > 100:
                    what = "overflows to inf, and inf / inf" if x.max() > 100 else "underflows to 0, and 0 / 0"
                    raise _Failure(f"on {case} your function returned NaN or inf: exp of these logits {what} is NaN.",
                                   _SOFTMAX_HINT)
                raise _Failure(f"on {case} your function returned NaN or inf: {_fmt(got)}.", _SOFTMAX_HINT)
            _catalogue(got, (x,), mistakes, case)
            sums = got.sum(axis=-1)
            if not np.allclose(sums, 1.0, atol=1e-4):
                raise _Failure(f"on {case} the probabilities do not sum to 1 along the last axis (sums: {_fmt(sums)}).",
                               "divide by the sum over the last axis: e / e.sum(dim=-1, keepdim=True).")
            raise _wrong_values(got, want, case)
        return len(cases)

    return _run("softmax", softmax, body)


# --- causal mask -----------------------------------------------------------------------------------

def check_causal_mask(causal_mask: Callable) -> Verdict:
    """Check ``causal_mask(n) -> (n, n)`` bool tensor, True where query i may attend to key j (j <= i)."""
    sizes = [4, 7, 1, 12]
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
            if got.shape == (4, 4) and n != 4:
                raise _Failure(f"wrong shape on {case}: expected ({n}, {n}), got (4, 4): the size is fixed in your "
                               "code.", "use the argument n.")
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
            w, g = _fmt_pair(want, got)
            raise _Failure(f"wrong mask on {case}: expected (1 = may attend) {w}, got {g}.",
                           "query i (row) may attend to key j (column) when j <= i.")
        return len(sizes)

    return _run("causal_mask", causal_mask, body)


# --- attention -------------------------------------------------------------------------------------

def _attention_ref(q, k, v, mask=None, scale="sqrt", softmax_dim=-1, mask_mode="inf"):
    d = q.shape[-1]
    scores = q.double() @ k.double().transpose(-2, -1)
    scores = scores / {"sqrt": math.sqrt(d), "none": 1.0, "d": float(d), "times": 1 / math.sqrt(d)}[scale]
    if mask is not None and mask_mode == "own_tril":
        mask = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
        mask_mode = "inf"
    if mask is not None and mask_mode == "inf":
        scores = scores.masked_fill(~mask, NEG_INF)
    elif mask is not None and mask_mode == "inverted":
        scores = scores.masked_fill(mask, NEG_INF)
    elif mask is not None and mask_mode == "zero":
        scores = scores.masked_fill(~mask, 0.0)
    elif mask is not None and mask_mode == "times_inf":
        scores = scores + (~mask) * NEG_INF
    weights = torch.softmax(scores, dim=softmax_dim)
    if mask is not None and mask_mode == "after":
        weights = weights * mask
    return weights @ v.double()


def _padding_mask(seq_q: int, seq_k: int, valid: int) -> torch.Tensor:
    mask = torch.zeros(seq_q, seq_k, dtype=torch.bool)
    mask[:, :valid] = True
    return mask


def check_attention(attention: Callable) -> Verdict:
    """Check ``attention(q, k, v, mask=None) -> softmax(q k^T / sqrt(d_k)) v`` of shape ``(..., seq_q, d_v)``.

    ``mask`` is a bool ``(seq_q, seq_k)`` tensor, True where a query may attend to a key; masked scores
    become -inf before the softmax. The hidden masks are causal, padding (the last keys hidden from every
    query) and arbitrary ones, on square and non-square score matrices.
    """
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    arbitrary = torch.rand(5, 5, generator=_generator(22)) < 0.5
    arbitrary[torch.arange(5), torch.tensor([3, 0, 4, 1, 2])] = True   # every query sees at least one key
    cases = [
        ((_randn(3, 4, seed=10), _randn(5, 4, seed=11), _randn(5, 2, seed=12)), None,
         "q (3, 4), k (5, 4), v (5, 2), no mask"),
        ((_randn(2, 3, 5, 16, seed=13), _randn(2, 3, 5, 16, seed=14), _randn(2, 3, 5, 6, seed=15)), causal,
         "batched q, k (2, 3, 5, 16), v (2, 3, 5, 6) with a causal mask"),
        ((_randn(4, 16, seed=16, scale=2.0), _randn(6, 16, seed=17, scale=2.0), _randn(6, 3, seed=18)), None,
         "q (4, 16), k (6, 16), v (6, 3) with larger scores"),
        ((_randn(5, 8, seed=23, scale=2.0), _randn(5, 8, seed=24, scale=2.0), _randn(5, 3, seed=25)),
         _padding_mask(5, 5, 3), "q, k (5, 8), v (5, 3) with a padding mask (keys 3 and 4 hidden from every query)"),
        ((_randn(4, 8, seed=26, scale=2.0), _randn(6, 8, seed=27, scale=2.0), _randn(6, 2, seed=28)),
         _padding_mask(4, 6, 4), "q (4, 8), k (6, 8), v (6, 2) with a padding mask (keys 4 and 5 hidden)"),
        ((_randn(5, 8, seed=29), _randn(5, 8, seed=30), _randn(5, 4, seed=31)), arbitrary,
         f"q, k (5, 8) with an arbitrary mask {_fmt(arbitrary)}"),
        ((_randn(5, 8, seed=19, scale=12.0), _randn(5, 8, seed=20, scale=12.0), _randn(5, 4, seed=21)), causal,
         "q, k (5, 8) with scores in the hundreds and a causal mask"),
    ]
    mistakes = [
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, scale="none"),
         "the scores are not scaled: divide q k^T by sqrt(d_k)",
         "d_k = q.shape[-1]; scores = q @ k.transpose(-2, -1) / d_k ** 0.5."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, scale="d"),
         "you divide the scores by d_k instead of sqrt(d_k)", "divide by d_k ** 0.5."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, scale="times"),
         "you multiply the scores by sqrt(d_k) instead of dividing", None),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, softmax_dim=-2),
         "the softmax runs over the queries (dim=-2): each query's weights over the keys must sum to 1",
         "softmax over the last axis (dim=-1)."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, None),
         "the mask is ignored: where mask is False the weight must be 0",
         "scores = scores.masked_fill(~mask, float('-inf')) before the softmax."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, mask_mode="own_tril"),
         "you build your own causal mask (tril) instead of using the mask you are given: here the mask is not "
         "causal", "apply the argument: scores.masked_fill(~mask, float('-inf'))."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, mask_mode="inverted"),
         "you hide the positions where mask is True; True means 'may attend'",
         "use masked_fill(~mask, float('-inf'))."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, mask_mode="zero"),
         "masked scores are set to 0 instead of -inf, and exp(0) = 1 still gives them weight",
         "fill with float('-inf')."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, mask_mode="after"),
         "the mask is applied after the softmax, so the weights no longer sum to 1",
         "mask the scores (with -inf) before the softmax."),
        (lambda q, k, v, mask=None: _attention_ref(q, k, v, mask, mask_mode="times_inf"),
         "you add (~mask) * float('-inf') to the scores: where the mask is True that is 0 * -inf = NaN, so every "
         "weight becomes NaN", "fill instead of multiplying: scores.masked_fill(~mask, float('-inf'))."),
    ]
    raising = [
        (lambda q, k, v, mask=None: q @ k.T, "k.T reverses every axis of a tensor with more than two axes, so "
         "q @ k.T pairs the wrong axes", "swap only the last two axes: k.transpose(-2, -1)."),
        (lambda q, k, v, mask=None: q @ k, "you multiply q @ k without transposing k",
         "scores = q @ k.transpose(-2, -1)."),
        (lambda q, k, v, mask=None: torch.softmax(q @ k.transpose(-2, -1), -1) @ v[..., :1, :].T,
         "the output product got shapes that do not fit", "return weights @ v."),
    ]

    def body(fn):
        for (q, k, v), mask, case in cases:
            args = (q, k, v) if mask is None else (q, k, v, mask)
            got = _array(_call(fn, args, case, mistakes=raising), case, "the output tensor")
            want_shape = (*q.shape[:-1], v.shape[-1])
            if tuple(got.shape) == (*q.shape[:-1], k.shape[-2]) and want_shape != tuple(got.shape):
                raise _Failure(f"wrong shape on {case}: expected {want_shape}, got {tuple(got.shape)}: that is the "
                               "shape of the attention weights.", "return weights @ v.")
            _shape(got, want_shape, case, "the output has one row per query and v's width: weights @ v.")
            want = _attention_ref(q, k, v, mask).numpy()
            if _close(got, want, rtol=1e-3, atol=1e-4):
                continue
            _catalogue(got, args, mistakes, case, rtol=1e-3, atol=1e-4)
            if np.isnan(got).any() or np.isinf(got).any():
                largest = float((q.double() @ k.double().transpose(-2, -1)).abs().max())
                if mask is not None and np.isnan(got).any() and largest < 80:
                    raise _Failure(f"on {case} your function returned NaN where the mask is involved: a masked "
                                   "score became NaN (0 * -inf = NaN, or -inf - -inf), or a row has every score -inf.",
                                   "fill the masked scores with scores.masked_fill(~mask, float('-inf')); do not "
                                   "multiply or subtract infinities.")
                raise _Failure(f"on {case} your function returned NaN or inf: the exp in your own softmax overflows on "
                               "scores this large.", "use torch.softmax, or subtract each row's maximum before exp.")
            raise _wrong_values(got, want, case, "weights = softmax(q @ k.transpose(-2, -1) / d_k ** 0.5, dim=-1); "
                                                 "return weights @ v.")
        return len(cases)

    return _run("attention", attention, body)


# --- bigrams ---------------------------------------------------------------------------------------

def _bigram_counts_ref(tokens, vocab, wrap=False, transpose=False, gap=1, order="vocab", size=None):
    if order == "first_seen":
        index = {}
        for w in list(tokens) + list(vocab):
            index.setdefault(w, len(index))
    elif order == "sorted":
        index = {w: i for i, w in enumerate(sorted(vocab))}
    else:
        index = {w: i for i, w in enumerate(vocab)}
    n = size or len(vocab)
    counts = np.zeros((n, n))
    pairs = list(zip(tokens, tokens[gap:])) + ([(tokens[-1], tokens[0])] if wrap and tokens else [])
    for a, b in pairs:
        counts[index[a], index[b]] += 1
    return counts.T if transpose else counts


def check_bigram_counts(count_bigrams: Callable) -> Verdict:
    """Check ``count_bigrams(tokens, vocab) -> (V, V)`` where ``[i, j]`` counts vocab[j] right after vocab[i]."""
    vocab = ["the", "cat", "dog", "sees", "."]
    toy = ["barks", "dogs", "the", ".", "dog", "bark", "cat", "a"]
    cases = [
        ("the cat sees the dog .".split(), vocab, "the tokens 'the cat sees the dog .' (5 words)"),
        ("the dog sees the dog . the cat sees the cat .".split(), vocab, "a text with repeated pairs"),
        (["."], vocab, "a one-token text (no pairs at all)"),
        ("the the the cat".split(), vocab, "'the the the cat' (overlapping pairs)"),
        ("the dogs bark . the dog barks . a cat barks .".split(), toy,
         "an 8-word vocabulary in its own order, not the order the words appear in"),
        ("b a b b c".split(), ["c", "b", "a"], "a 3-word vocabulary ['c', 'b', 'a']"),
    ]
    mistakes = [
        (lambda t, v: _bigram_counts_ref(t, v, transpose=True), "your table is transposed: row i must be the "
         "first word of the pair and column j the word that follows", "counts[index[prev], index[next]] += 1."),
        (lambda t, v: _bigram_counts_ref(t, v, wrap=True), "you count one pair too many: the last token wrapping "
         "around to the first", "pair each token with the next: zip(tokens, tokens[1:])."),
        (lambda t, v: np.minimum(_bigram_counts_ref(t, v), 1), "you mark whether a pair occurs (0/1) instead of "
         "counting how often", "add 1 for every occurrence: counts[i, j] += 1."),
        (lambda t, v: _bigram_counts_ref(t, v, gap=2), "you pair each token with the one two places later",
         "zip(tokens, tokens[1:]) pairs neighbours."),
        (lambda t, v: _bigram_counts_ref(t, v, order="first_seen"), "you number the words in the order they first "
         "appear in the text; row and column i belong to vocab[i]", "index = {w: i for i, w in enumerate(vocab)}."),
        (lambda t, v: _bigram_counts_ref(t, v, order="sorted"), "you number the words in sorted order; row and "
         "column i belong to vocab[i], in the vocabulary's own order", "index = {w: i for i, w in enumerate(vocab)}."),
    ]
    raising = [
        (lambda t, v: _bigram_counts_ref(t, v, size=5), "your table has a fixed size of 5 x 5: this vocabulary has "
         "another size", "size the table from the vocabulary: np.zeros((len(vocab), len(vocab)))."),
    ]

    def body(fn):
        for tokens, voc, case in cases:
            got = _array(_call(fn, (list(tokens), list(voc)), case, mistakes=raising), case, "a (V, V) table of counts")
            if got.shape == (5, 5) and len(voc) != 5:
                raise _Failure(f"wrong shape on {case}: expected ({len(voc)}, {len(voc)}), got (5, 5): your table "
                               "has a fixed size of 5 x 5.", "size the table from the vocabulary: "
                                                             "np.zeros((len(vocab), len(vocab))).")
            _shape(got, (len(voc), len(voc)), case, "one row and one column per vocabulary word.")
            want = _bigram_counts_ref(tokens, voc)
            if _close(got, want):
                continue
            _catalogue(got, (tokens, voc), mistakes, case)
            if abs(got.sum() - want.sum()) > 1e-9:
                raise _Failure(f"on {case} your table holds {got.sum():g} pairs; the text has {want.sum():g} "
                               "(one per neighbouring pair of tokens).", "loop over zip(tokens, tokens[1:]).")
            raise _wrong_values(got, want, case)
        return len(cases)

    return _run("bigram_counts", count_bigrams, body)


def _bigram_probs_ref(counts, alpha=0.0):
    c = counts.double() + alpha
    return c / c.sum(dim=1, keepdim=True)


def check_bigram_probs(bigram_probs: Callable) -> Verdict:
    """Check ``bigram_probs(counts, alpha) -> (V, V)``: ``(counts + alpha) / row total``; rows sum to 1."""
    c1 = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 2.0], [1.0, 1.0, 4.0]])
    c2 = torch.tensor([[1.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0], [5.0, 2.0, 0.0, 1.0], [0.0, 4.0, 4.0, 0.0]])
    c3 = torch.tensor([[2.0, 0.0, 0.0, 1.0, 0.0, 7.0], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]] +
                      [[float((i * j) % 4) for j in range(6)] for i in range(2, 6)])
    cases = [((c1, 0.0), "a 3x3 table of counts, alpha = 0"),
             ((c2, 1.0), "a 4x4 table with an all-zero row, alpha = 1 (add-one smoothing)"),
             ((c1 * 10, 0.5), "a 3x3 table, alpha = 0.5"),
             ((c3, 0.1), "a 6x6 table, alpha = 0.1")]
    mistakes = [
        (lambda c, a=0.0: (c.double() + a) / (c.double() + a).sum(dim=0, keepdim=True),
         "your columns sum to 1, not your rows: normalise each row (the word before) over the words that follow",
         "divide by counts.sum(dim=1, keepdim=True)."),
        (lambda c, a=0.0: (c.double() + a) / (c.double() + a).sum(dim=1),
         "you divide by the row totals without keepdim=True: they broadcast along the wrong axis (column j is "
         "divided by row j's total)", "use .sum(dim=1, keepdim=True)."),
        (lambda c, a=0.0: (c.double() + a) / (c.double() + a).sum(),
         "you divide by the total of the whole table; each row must sum to 1", "use .sum(dim=1, keepdim=True)."),
        (lambda c, a=0.0: _bigram_probs_ref(c, 0.0),
         "you ignore alpha: add it to every count before normalising", None),
        (lambda c, a=0.0: _bigram_probs_ref(c, 1.0),
         "you always add 1 (add-one smoothing): add alpha, whatever its value", None),
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
            if _close(got, want):
                continue
            _catalogue(got, (counts, alpha), mistakes, case)
            if np.isnan(got).any():
                raise _Failure(f"on {case} your table has NaN in rows whose counts are all 0 (0 / 0): {_fmt(got)}.",
                               "add alpha to every count before dividing; with alpha > 0 no row total is 0.")
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


def check_cross_entropy(cross_entropy: Callable) -> Verdict:
    """Check ``cross_entropy(logits (N, V), targets (N,)) -> mean -log softmax(logits)[target]`` in nats."""
    cases = [
        ((_randn(4, 5, seed=30), torch.tensor([0, 3, 1, 4])), "4 examples over 5 tokens"),
        ((_randn(3, 6, seed=31, scale=3.0), torch.tensor([5, 5, 0])), "3 examples over 6 tokens"),
        ((_randn(6, 3, seed=33, scale=2.0), torch.tensor([2, 0, 1, 1, 0, 2])), "6 examples over 3 tokens"),
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
    raising = [
        (lambda l, t: l - torch.logsumexp(l, dim=-1), "you subtract the log-sum-exp without keepdim=True, so it "
         "loses its axis and cannot broadcast back", "torch.logsumexp(logits, dim=-1, keepdim=True), or "
                                                     "torch.log_softmax(logits, dim=-1)."),
        (lambda l, t: l - l.max(dim=-1), "x.max(dim=-1) returns a pair (values, indices), not a tensor",
         "logits.max(dim=-1, keepdim=True).values."),
        (lambda l, t: torch.log_softmax(l, -1)[:, t].diag().mean() + torch.log_softmax(l, -1)[t],
         "you index the rows with targets (logp[targets]) instead of the columns", "logp[torch.arange(N), targets]."),
    ]

    def body(fn):
        for (logits, targets), case in cases:
            out = _call(fn, (logits, targets), case, mistakes=raising)
            arr = _array(out, case, "one number")
            if arr.size == len(targets) and arr.size > 1:
                raise _Failure(f"you return one loss per example (shape {tuple(arr.shape)}) on {case}; "
                               "return their mean, one number.", "add .mean().")
            got = _scalar(out, case, "the mean loss")
            want = float(_ce_ref(logits, targets))
            if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5):
                continue
            if math.isnan(got):
                raise _Failure(f"on {case} your function returned NaN: exp of large logits overflows to inf, "
                               "and inf / inf is NaN.", "use torch.log_softmax (it subtracts the maximum for you), "
                                                        "or the log-sum-exp trick.")
            if math.isinf(got):
                raise _Failure(f"on {case} your function returned inf: a target's probability rounds to 0 and "
                               "log(0) = -inf.", "take logs without forming probabilities: torch.log_softmax(logits, "
                                                 "dim=-1), not torch.log(torch.softmax(...)).")
            _catalogue(np.array(got), (logits, targets), mistakes, case)
            raise _wrong_value(got, want, case, "loss = -log_softmax(logits, dim=-1)[torch.arange(N), targets].mean().")
        return len(cases)

    return _run("cross_entropy", cross_entropy, body)


def check_perplexity(perplexity: Callable) -> Verdict:
    """Check ``perplexity(logprobs (N,)) -> exp(-mean(logprobs))`` (natural-log probabilities in)."""
    cases = [
        (torch.tensor([-1.0, -2.0, -0.5]), "log-probabilities [-1.0, -2.0, -0.5]"),
        (torch.full((6,), -math.log(8.0)), "six tokens each with probability 1/8 (perplexity 8)"),
        (torch.tensor([-0.1, -3.0, -7.0, -0.7, -2.2]), "five log-probabilities"),
        (torch.full((400,), -2.0), "400 tokens with log-probability -2"),
        (torch.tensor([-120.0, -0.5, -1.0, -90.0]), "four log-probabilities, two of them very small "
                                                    "(probabilities that underflow to 0 in float32)"),
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
        (lambda lp: torch.exp(-lp.double()).mean(), "you average exp(-log p) over the tokens; take exp of the "
         "average instead", "exp(-mean(logprobs))."),
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
            if math.isinf(got) or math.isnan(got):
                raise _Failure(f"on {case} your function returned {got}: a probability that underflows to 0 "
                               "(exp(-120) in float32) makes 1/p or log(p) infinite.",
                               "stay with log-probabilities: exp(-mean(logprobs)).")
            raise _wrong_value(got, want, case, "perplexity = exp(-mean(logprobs)).")
        return len(cases)

    return _run("perplexity", perplexity, body)


def _entropy_ref(p):
    p = p.double()
    return -(torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p))).sum()


def check_entropy(entropy: Callable) -> Verdict:
    """Check ``entropy(probs (V,)) -> -sum p log p`` in nats, counting ``0 log 0`` as 0."""
    cases = [
        (torch.full((4,), 0.25), "the uniform distribution over 4 tokens"),
        (torch.tensor([0.5, 0.25, 0.125, 0.125]), "probabilities [0.5, 0.25, 0.125, 0.125]"),
        (torch.tensor([0.0, 1.0, 0.0]), "a certain outcome [0, 1, 0]"),
        (torch.tensor([0.7, 0.0, 0.2, 0.1]), "a distribution with a zero"),
        (torch.softmax(torch.tensor([0.0, -200.0, -1.0, -150.0]), -1), "softmax([0, -200, -1, -150]) in float32 "
                                                                         "(two probabilities underflow to 0)"),
    ]
    mistakes = [
        (lambda p: _entropy_ref(p) / math.log(2), "your entropy is in bits (log base 2); use natural logs",
         "torch.log, not torch.log2."),
        (lambda p: -_entropy_ref(p), "your entropy is negative: you forgot the minus sign in -sum p log p", None),
        (lambda p: _entropy_ref(p) / math.log(10), "your entropy uses log base 10; use natural logs", None),
        (lambda p: -torch.log(p.double()[p > 0]).sum(), "you sum -log p without weighting by p",
         "entropy = -sum(p * log p)."),
        (lambda p: -torch.log(p.double()[p > 0]).mean(), "you average -log p without weighting by p",
         "entropy = -sum(p * log p)."),
        (lambda p: _entropy_ref(p) / (p > 0).sum(), "you average -p log p over the tokens; the entropy is its sum",
         "entropy = -(p * log p).sum()."),
    ]

    def body(fn):
        for p, case in cases:
            got = _scalar(_call(fn, (p,), case), case, "the entropy")
            want = float(_entropy_ref(p))
            if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6):
                continue
            if math.isnan(got):
                raise _Failure(f"on {case} your function returned NaN: a probability of 0 gives 0 * log(0) = "
                               "0 * -inf = NaN.", "count 0 log 0 as 0: skip zero probabilities, e.g. p = p[p > 0].")
            _catalogue(np.array(got), (p,), mistakes, case, rtol=1e-4, atol=1e-6)
            raise _wrong_value(got, want, case, "entropy = -sum(p * log p).")
        return len(cases)

    return _run("entropy", entropy, body)


# --- sampling and filters --------------------------------------------------------------------------

def check_sample(sample: Callable, n_draws: int = 3000) -> Verdict:
    """Check ``sample(logits (V,), temperature) -> int`` statistically (fixed seeds, ``n_draws`` draws per
    case): the frequencies must match ``softmax(logits / temperature)``; the result must be a Python int."""
    five = torch.tensor([2.0, 1.0, 0.5, -1.0, 0.0])
    eight = torch.tensor([0.5, -1.0, 1.5, 0.0, 2.5, -0.5, 1.0, -2.0])
    settings = [(five, 1.0), (five, 0.5), (five, 2.0), (eight, 0.7)]

    def _draw(fn, logits, T, case):
        counts = np.zeros(len(logits))
        for i in range(n_draws):
            out = _call(fn, (logits, T), case, mistakes=[
                (lambda l, t: torch.multinomial(l / t, 1), "torch.multinomial got the logits: it needs "
                 "probabilities (no negative numbers)", "probs = torch.softmax(logits / temperature, dim=-1).")])
            if i == 0:
                if isinstance(out, (torch.Tensor, np.ndarray)) and _numel(out) > 1:
                    raise _Failure(f"your function returned shape {tuple(out.shape)} on {case}; return one token "
                                   "id.", "torch.multinomial(probs, 1).item().")
                value = _python_number(out, case, "one token id", integer=True)
            else:
                value = float(out) if not isinstance(out, torch.Tensor) else float(out.item())
            if value != int(value) or not 0 <= value < len(logits):
                raise _Failure(f"your function returned {value:g} on {case}; it must return a token id, an "
                               f"int from 0 to {len(logits) - 1}.", "torch.multinomial(probs, 1).item().")
            counts[int(value)] += 1
        return counts

    def body(fn):
        for logits, T in settings:
            case = f"temperature {T:g} with logits {_fmt(logits.numpy(), 1)}"
            with _fixed_seeds(1234):
                counts = _draw(fn, logits, T, case)
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
            if len(logits) != 5:
                candidates["five"] = (np.r_[torch.softmax(logits[:5] / T, -1).numpy(), np.zeros(len(logits) - 5)],
                                      "your function only ever returns ids 0 to 4: the vocabulary size is fixed "
                                      "in your code", "use the logits you are given, whatever their length.")
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
        return len(settings)

    return _run("sample", sample, body)


def _top_k_ref(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def _finite_fill(got: np.ndarray, want: np.ndarray, logits: np.ndarray, case: str) -> None:
    """Diagnose removed logits set to a finite value (0, -1e9, ...) with the kept ones right."""
    removed = np.isinf(want)
    if not removed.any() or not np.isfinite(got[removed]).all():
        return
    if not np.allclose(got[~removed], want[~removed], rtol=1e-4, atol=1e-5):
        return
    values = np.unique(got[removed])
    n = int(removed.sum())
    if np.allclose(got[removed], logits[removed]):
        return
    if (values == 0).all():
        raise _Failure(f"on {case} the {n} removed logits are set to 0, but a logit of 0 still has probability.",
                       "set them to float('-inf').")
    if (values <= -1e3).all():
        raise _Failure(f"on {case} the {n} removed logits are set to a large finite number ({values[0]:g}) "
                       "instead of -inf: the exercise asks for -inf (a finite value is still a logit, and can win "
                       "when every kept logit is lower).", "fill with float('-inf').")
    raise _Failure(f"on {case} the {n} removed logits are set to {_fmt(values)} instead of -inf.",
                   "fill with float('-inf').")


def check_top_k(top_k_filter: Callable) -> Verdict:
    """Check ``top_k_filter(logits (..., V), k)``: the k largest logits of each row unchanged, the rest -inf."""
    cases = [
        ((torch.tensor([1.5, -0.3, 2.7, 0.4, -1.2, 0.9]), 3), "6 logits, k = 3"),
        ((_randn(3, 8, seed=40, scale=2.0), 2), "a batch of 3 rows of 8 logits, k = 2 (per row)"),
        ((_randn(4, 4, seed=41, scale=2.0), 3), "a square batch of 4 rows of 4 logits, k = 3 (per row)"),
        ((torch.tensor([-2.0, -0.5, -3.0, -1.0]), 1), "negative logits, k = 1"),
        ((torch.tensor([0.3, 1.1, -0.4]), 3), "k equal to the vocabulary size (nothing removed)"),
        ((torch.tensor([400.0, 395.0, 410.0, 380.0]), 2), "large logits, k = 2"),
        ((torch.tensor([[-2e9, -3e9, -1e9, -4e9], [5.0, 1.0, 3.0, 2.0]]), 2),
         "a row of logits below -1e9 and a row of ordinary ones, k = 2"),
    ]
    mistakes = [
        (lambda l, k: torch.softmax(_top_k_ref(l, k), -1), "you return probabilities; return the filtered logits "
         "(the softmax comes later)", None),
        (lambda l, k: _top_k_ref(l, min(k + 1, l.shape[-1])), "you keep k + 1 tokens (off by one)", None),
        (lambda l, k: _top_k_ref(l, k - 1) if k > 1 else torch.full_like(l, NEG_INF),
         "you keep k - 1 tokens (off by one)", None),
        (lambda l, k: l.masked_fill(l > torch.topk(l, k, dim=-1, largest=False).values[..., -1:], NEG_INF),
         "you keep the k smallest logits instead of the k largest", "torch.topk returns the largest by default."),
        (lambda l, k: l.masked_fill(l < torch.topk(l.flatten(), k).values[-1], NEG_INF),
         "you pick the k largest of the whole tensor, not of each row", "use torch.topk(logits, k, dim=-1)."),
        (lambda l, k: l.masked_fill(l < torch.topk(l, k, dim=-1).values[..., -1], NEG_INF),
         "you compare with the k-th largest values without keeping their axis ([..., -1] instead of [..., -1:]): "
         "row j is compared with row j's threshold along the wrong axis", "torch.topk(...).values[..., -1:]."),
        (lambda l, k: l.masked_fill(l < torch.topk(l, k, dim=-1).values[..., :1], NEG_INF),
         "you compare with the largest logit ([..., :1]) instead of the k-th largest ([..., -1:])", None),
    ]
    raising = [
        (lambda l, k: l.masked_fill(l < torch.topk(l, k, dim=-1).values[..., -1], NEG_INF),
         "you compare with the k-th largest values without keeping their axis ([..., -1] instead of [..., -1:]), so "
         "they cannot broadcast back over the rows", "torch.topk(...).values[..., -1:]."),
        (lambda l, k: l.masked_fill(l < torch.topk(l, k).values[k - 1], NEG_INF),
         "you index the k-th largest value along the first axis; with a batch of rows, take it along the last",
         "torch.topk(logits, k, dim=-1).values[..., -1:]."),
    ]

    def body(fn):
        for (logits, k), case in cases:
            got = _array(_call(fn, (logits, k), case, mistakes=raising), case, "the filtered logits")
            if got.shape == (*logits.shape[:-1], k) and got.shape != logits.shape:
                raise _Failure(f"wrong shape on {case}: expected {tuple(logits.shape)}, got {got.shape}: you return "
                               "only the k kept values.", "return the full-size logits with -inf for the others.")
            _shape(got, logits.shape, case, "return logits of the same shape, with -inf for the removed tokens.")
            want = _top_k_ref(logits.double(), k).numpy()
            if _close(got, want):
                continue
            _finite_fill(got, want, logits.double().numpy(), case)
            if _close(got, logits.double().numpy()):
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
        return logits.masked_fill(before >= p, NEG_INF)
    order = torch.argsort(logits, descending=True)
    sorted_vals = logits[order] if on_logits else torch.softmax(logits, -1)[order]
    cum = torch.cumsum(sorted_vals, -1)
    before = cum - sorted_vals
    keep_sorted = (cum <= p) if strict else (before < p)
    if extra:
        n = int(keep_sorted.sum()) + extra
        keep_sorted = torch.arange(len(logits)) < n
    keep = torch.zeros_like(keep_sorted).scatter(0, order, keep_sorted)
    return logits.masked_fill(~keep, NEG_INF)


def _top_p_unsorted_back(logits, p):
    """A typical mistake: the decision in sorted order applied to the tokens in vocabulary order."""
    logits = logits.double()
    probs = torch.softmax(logits, -1)
    sorted_probs, _ = torch.sort(probs, descending=True)
    keep_sorted = torch.cumsum(sorted_probs, -1) - sorted_probs < p
    return logits.masked_fill(~keep_sorted, NEG_INF)


def check_top_p(top_p_filter: Callable) -> Verdict:
    """Check ``top_p_filter(logits (V,), p)``: keep the nucleus (the fewest most probable tokens whose total
    probability reaches p, the one that crosses p included), set the rest to -inf."""
    probs = torch.tensor([0.05, 0.5, 0.1, 0.15, 0.2])
    logits = torch.log(probs) + 1.0
    wide = torch.log(torch.tensor([0.02, 0.08, 0.3, 0.04, 0.36, 0.2])) - 2.0
    big = torch.tensor([300.0, 302.0, 299.0, 301.5, 290.0, 302.5, 280.0])
    cases = [
        ((big, 0.8), "seven large logits (around 300), p = 0.8"),
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
        (_top_p_unsorted_back, "you decide in sorted order but apply the decision to the tokens in vocabulary "
         "order: map it back with the sort order", "keep = torch.zeros_like(keep_sorted).scatter(-1, order, "
                                                   "keep_sorted)."),
        (lambda l, p: _top_p_ref(l, p, on_logits=True), "you accumulate logits; accumulate probabilities",
         "probs = torch.softmax(logits, dim=-1) first."),
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
            _finite_fill(got, want, l.double().numpy(), case)
            if _close(got, l.double().numpy()):
                raise _Failure(f"on {case} nothing was removed: expected {_fmt(want)}, got {_fmt(got)}.",
                               "accumulate probabilities (softmax first), from most to least probable, and set the "
                               "tokens after the nucleus to float('-inf').")
            _catalogue(got, (l, p), mistakes, case)
            if np.isnan(got).any():
                raise _Failure(f"on {case} your function returned NaN: {_fmt(got)}; exp of large logits overflows.",
                               "torch.softmax(logits, dim=-1) is safe for large logits.")
            w, g = _fmt_pair(want, got)
            raise _Failure(f"on {case}: expected {w}, got {g}.",
                           "sort by probability, keep while the mass before a token is below p, -inf elsewhere.")
        return len(cases)

    return _run("top_p", top_p_filter, body)


# --- geometry --------------------------------------------------------------------------------------

def _cos(a, b):
    a, b = a.double(), b.double()
    return (a @ b) / (a.norm() * b.norm())


def check_cosine_similarity(cosine_similarity: Callable) -> Verdict:
    """Check ``cosine_similarity(a (d,), b (d,)) -> a . b / (|a| |b|)``."""
    a = torch.tensor([1.0, 2.0, -1.0, 0.5])
    cases = [
        ((a, 3 * a), "a vector and 3 times itself (similarity 1)"),
        ((a, -0.5 * a), "a vector and -0.5 times itself (similarity -1)"),
        ((torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 2.0, 0.0])), "orthogonal vectors (similarity 0)"),
        ((_randn(8, seed=50, scale=3.0), _randn(8, seed=51)), "two random 8-d vectors of different lengths"),
        ((_randn(16, seed=52, scale=200.0), _randn(16, seed=53, scale=0.01)), "a long and a short 16-d vector"),
        ((torch.tensor([3.0, 4.0]), torch.tensor([4.0, 3.0])), "the 2-d vectors [3, 4] and [4, 3]"),
    ]
    mistakes = [
        (lambda x, y: x.double() @ y.double(), "you return the dot product without dividing by the lengths",
         "divide by a.norm() * b.norm()."),
        (lambda x, y: (x.double() @ y.double()) / x.double().norm(), "you divide by the length of a only",
         "divide by a.norm() * b.norm()."),
        (lambda x, y: (x.double() @ y.double()) / (x.double().norm() ** 2 * y.double().norm() ** 2),
         "you divide by the squared lengths", "use a.norm() * b.norm(), not squared norms."),
        (lambda x, y: (x.double() @ y.double()) / (x.double().norm() + y.double().norm()),
         "you divide by the sum of the lengths; divide by their product", "a.norm() * b.norm()."),
        (lambda x, y: 1 - _cos(x, y), "you return the cosine distance 1 - cos; return the similarity", None),
        (lambda x, y: (x.double() - y.double()).norm(), "you return the Euclidean distance", None),
        (lambda x, y: (x.double() * y.double()).sum() / (x.double().sum() * y.double().sum()),
         "you divide by the sums of the entries, not by the lengths (square root of the sum of squares)",
         "a.norm() is (a ** 2).sum() ** 0.5."),
    ]
    def body(fn):
        for (x, y), case in cases:
            got = _scalar(_call(fn, (x, y), case), case, "the similarity")
            want = float(_cos(x, y))
            if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5):
                continue
            _catalogue(np.array(got), (x, y), mistakes, case)
            raise _wrong_value(got, want, case, "cos = (a @ b) / (a.norm() * b.norm()).")
        return len(cases)

    return _run("cosine_similarity", cosine_similarity, body)


def _neighbors_ref(E, i, k, metric="cos", include_self=False, ascending=False):
    E = E.double()
    if metric == "cos":
        score = F.cosine_similarity(E, E[i][None], dim=-1)
    elif metric == "dot":
        score = E @ E[i]
    elif metric == "cols":
        unit = E / E.norm(dim=0, keepdim=True)
        score = unit @ unit[i]
    else:
        score = -(E - E[i]).norm(dim=-1)
    if ascending:
        score = -score
    if not include_self:
        score[i] = NEG_INF
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


def check_nearest_neighbors(nearest_neighbors: Callable) -> Verdict:
    """Check ``nearest_neighbors(E (V, d), i, k) -> k ids``: most cosine-similar to row i first, i left out."""
    E = _geometry_embeddings()
    E2 = _randn(12, 5, seed=60) * torch.linspace(0.2, 4.0, 12)[:, None]
    E3 = _randn(9, 4, seed=61) * torch.tensor([10.0, 0.1, 1.0, 3.0])
    cases = [((E, 0, 3), "8 vectors, neighbours of 0, k = 3"), ((E, 4, 2), "8 vectors, neighbours of 4, k = 2"),
             ((E2, 7, 4), "12 vectors of very different lengths, neighbours of 7, k = 4"),
             ((E3, 2, 5), "9 vectors whose dimensions have very different scales, neighbours of 2, k = 5")]
    mistakes = [
        (lambda E, i, k: _neighbors_ref(E, i, k, include_self=True), "your list includes the word itself "
         "(every vector is most similar to itself)", "leave out index i, e.g. set its similarity to -inf."),
        (lambda E, i, k: _neighbors_ref(E, i, k, include_self=True)[1:], "you leave the word itself out by "
         "dropping the first result, so you return k - 1 ids", "set its similarity to -inf, then take k."),
        (lambda E, i, k: _neighbors_ref(E, i, k, metric="cols"), "you normalise along the wrong axis: each "
         "column (dim=0) instead of each row (dim=1), so the rows do not get length 1",
         "unit = E / E.norm(dim=1, keepdim=True)."),
        (lambda E, i, k: _neighbors_ref(E, i, k, metric="dot"), "you rank by dot product, which favours long "
         "vectors; rank by cosine similarity", "normalise each row first: E / E.norm(dim=1, keepdim=True)."),
        (lambda E, i, k: _neighbors_ref(E, i, k, metric="euclid"), "you rank by Euclidean distance; rank by "
         "cosine similarity", None),
        (lambda E, i, k: _neighbors_ref(E, i, k, ascending=True), "you return the least similar vectors; "
         "sort from most to least similar", "torch.topk or argsort(descending=True)."),
        (lambda E, i, k: _neighbors_ref(E, i, k).flip(0), "you return the right ids but least similar first; "
         "most similar first", "torch.topk(similarity, k).indices is already in that order."),
    ]
    raising = [
        (lambda E, i, k: E / E.norm(dim=1), "you divide by the row lengths without keepdim=True, so they "
         "cannot broadcast back over the rows", "E / E.norm(dim=1, keepdim=True)."),
    ]

    def body(fn):
        for (emb, i, k), case in cases:
            out = _call(fn, (emb, i, k), case, mistakes=raising)
            got = _array(out, case, f"a list of {k} token ids")
            if got.shape != (k,):
                _catalogue(got, (emb, i, k), mistakes[1:2], case)
                raise _Failure(f"wrong shape on {case}: expected {k} ids, got shape {tuple(got.shape)}.",
                               "return the indices of the k best, e.g. torch.topk(sims, k).indices.")
            if not np.allclose(got, np.round(got)) or (got < 0).any() or (got >= len(emb)).any():
                raise _Failure(f"on {case} you return {_fmt(got)}; return row indices (ints from 0 to "
                               f"{len(emb) - 1}), not similarities.", "torch.topk(sims, k).indices.")
            want = _neighbors_ref(emb, i, k).numpy()
            if (got == want).all():
                continue
            others = _outputs(fn, [c[0] for c in cases], "ids")
            _catalogue(got, (emb, i, k), mistakes, case, others=others)
            raise _Failure(f"on {case}: expected {_fmt(want)}, got {_fmt(got)}.",
                           "cosine similarity of row i with every row, leave i out, take the k largest.")
        return len(cases)

    return _run("nearest_neighbors", nearest_neighbors, body)


def _analogy_ref(E, a, b, c, exclude=True, sign=1, metric="cos", only_c=False):
    E = E.double()
    target = E[b] - E[a] + E[c] if sign == 1 else E[a] - E[b] + E[c]
    if metric == "cos":
        score = F.cosine_similarity(E, target[None], dim=-1)
    elif metric == "dot":
        score = E @ target
    else:
        score = -(E - target).norm(dim=-1)
    if exclude:
        score[[c] if only_c else [a, b, c]] = NEG_INF
    return int(score.argmax())


def check_analogy(analogy: Callable) -> Verdict:
    """Check ``analogy(E, a, b, c) -> id``: the row most cosine-similar to ``E[b] - E[a] + E[c]``,
    leaving out a, b and c ("a is to b as c is to ?")."""
    # 0 man, 1 woman, 2 king, 3 queen, 4 prince, 5 throne (long), 6 girl, 7 boy
    E = torch.tensor([
        [1.0, 0.0, 0.1, 0.0], [0.0, 1.0, 0.1, 0.0], [1.0, 0.0, 1.0, 0.2], [0.0, 1.0, 1.0, 0.2],
        [1.2, -0.4, 0.6, 0.0], [-10.0, 8.0, 9.0, 9.0], [-0.2, 1.0, -0.2, -0.4], [1.0, -0.6, -0.2, -0.1],
    ])
    rng = _randn(10, 6, seed=70)
    spread = _randn(12, 5, seed=71) * torch.linspace(0.3, 5.0, 12)[:, None]
    cases = [((E, 0, 1, 2), "man : woman :: king : ? (8 toy vectors)"),
             ((E, 0, 6, 4), "man : girl :: prince : ? (8 toy vectors)"),
             ((rng, 1, 4, 7), "10 random vectors, a = 1, b = 4, c = 7"),
             ((spread, 3, 9, 0), "12 vectors of very different lengths, a = 3, b = 9, c = 0"),
             ((spread, 2, 5, 11), "the same 12 vectors, a = 2, b = 5, c = 11")]
    mistakes = [
        (lambda E, a, b, c: _analogy_ref(E, a, b, c, exclude=False), "you return one of the three input words; "
         "leave a, b and c out of the candidates", "set their scores to -inf before the argmax."),
        (lambda E, a, b, c: _analogy_ref(E, a, b, c, only_c=True), "you leave out only c; a and b must be left "
         "out too", "scores[[a, b, c]] = float('-inf')."),
        (lambda E, a, b, c: _analogy_ref(E, a, b, c, sign=-1), "you compute E[a] - E[b] + E[c]; the offset goes "
         "from a to b: E[b] - E[a] + E[c]", None),
        (lambda E, a, b, c: _analogy_ref(E, a, b, c, metric="dot"), "you rank by dot product, which favours long "
         "vectors; rank by cosine similarity", None),
        (lambda E, a, b, c: _analogy_ref(E, a, b, c, metric="euclid"), "you rank by Euclidean distance to the "
         "target; rank by cosine similarity", None),
    ]

    def body(fn):
        for (emb, a, b, c), case in cases:
            out = _call(fn, (emb, a, b, c), case)
            if isinstance(out, (torch.Tensor, np.ndarray)) and _numel(out) == emb.shape[1] and _numel(out) > 1:
                raise _Failure(f"on {case} you return a vector of {_numel(out)} numbers: that looks like the target "
                               "E[b] - E[a] + E[c] itself; return the index of the row most similar to it.",
                               "int(scores.argmax()).")
            got = _scalar(out, case, "one row index")
            if got != int(got) or not 0 <= got < len(emb):
                raise _Failure(f"on {case} you return {got:g}; return a row index (an int from 0 to {len(emb) - 1}).",
                               "int(scores.argmax()).")
            want = _analogy_ref(emb, a, b, c)
            if int(got) == want:
                continue
            others = [(args, arr.reshape(())) for args, arr in _outputs(fn, [c[0] for c in cases], "an id")
                      if arr.size == 1]
            _catalogue(np.array(got), (emb, a, b, c), mistakes, case, others=others)
            raise _Failure(f"on {case}: expected {want}, got {int(got)}.",
                           "cosine similarity of every row with E[b] - E[a] + E[c]; leave a, b, c out; argmax.")
        return len(cases)

    return _run("analogy", analogy, body)


# --- decoding and training -------------------------------------------------------------------------

def check_greedy_next(greedy_next: Callable) -> Verdict:
    """Check ``greedy_next(logits (batch, seq, V)) -> (batch,)`` ids: the argmax at the last position."""
    cases = [
        (_randn(2, 4, 7, seed=80), "logits of shape (2, 4, 7)"),
        (_randn(3, 1, 5, seed=81), "logits of shape (3, 1, 5) (one position)"),
        (_randn(1, 6, 9, seed=82, scale=50.0), "logits of shape (1, 6, 9)"),
        (_randn(4, 4, 4, seed=83), "logits of shape (4, 4, 4)"),
    ]
    mistakes = [
        (lambda l: l[:, 0].argmax(-1), "you read the first position; the next token comes from the last one",
         "logits[:, -1]."),
        (lambda l: l[:, -1].argmin(-1), "you take the least likely token (argmin)", "use argmax."),
        (lambda l: l[:, -1].max(-1).values, "you return the largest logit, not its index", "use argmax."),
        (lambda l: l.argmax(1)[:, -1], "you take the argmax over the positions (dim 1), not over the vocabulary",
         "logits[:, -1].argmax(dim=-1)."),
        (lambda l: l[-1].argmax(-1), "you take the last sequence of the batch (logits[-1]) instead of the last "
         "position of every sequence", "logits[:, -1]."),
        (lambda l: torch.softmax(l[:, -1], -1).max(-1).values, "you return the highest probability, not the "
         "token id", "use argmax."),
    ]

    def body(fn):
        for logits, case in cases:
            got = _array(_call(fn, (logits,), case), case, "one token id per sequence")
            want = logits[:, -1].argmax(-1).numpy().astype(float)
            if got.shape == (logits.shape[0], logits.shape[1]) and got.shape != want.shape:
                raise _Failure(f"wrong shape on {case}: expected {tuple(want.shape)}, got {tuple(got.shape)}: one id "
                               "per position.", "keep only the last position: logits[:, -1].")
            if got.shape == want.shape and (got == want).all():
                continue
            _catalogue(got, (logits,), mistakes, case)
            _shape(got, want.shape, case, "one id per sequence in the batch: logits[:, -1].argmax(dim=-1).")
            raise _Failure(f"on {case}: expected {_fmt(want)}, got {_fmt(got)}.", "logits[:, -1].argmax(dim=-1).")
        return len(cases)

    return _run("greedy_next", greedy_next, body)


# The settings of check_train_step: the chapter's (SGD, lr 0.5) and two others, so that a step that ignores
# the optimizer, or hard-codes its learning rate, cannot pass.
_TRAIN_SETTINGS = [
    (4, 3, "SGD", 0.5, 3), (5, 4, "AdamW", 0.01, 2), (4, 3, "SGD with momentum 0.9", 0.1, 2),
]


def _train_setup(setting: int):
    d_in, classes, kind, lr, steps = _TRAIN_SETTINGS[setting]
    with _fixed_seeds(100 + setting):
        model = torch.nn.Linear(d_in, classes)
    if kind == "AdamW":
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
    elif kind.startswith("SGD with momentum"):
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = _generator(200 + setting)
    batches = [(torch.randn(6, d_in, generator=g), torch.randint(0, classes, (6,), generator=g))
               for _ in range(steps)]
    label = f"torch.nn.Linear({d_in}, {classes}), {kind}, lr {lr:g}"
    return model, opt, batches, label


def _params(model) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).double().numpy()


def _manual_update(model, lr):
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad


def _simulate(variant: str, setting: int) -> tuple[list[float], list[np.ndarray]]:
    """The steps of a (possibly wrong) training step; returns the returned losses and the parameters."""
    model, opt, batches, _ = _train_setup(setting)
    lr = _TRAIN_SETTINGS[setting][3]
    losses, params = [], []
    for x, y in batches:
        if variant != "no_zero_grad":
            opt.zero_grad()
            model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        if variant == "ascent":
            (-loss).backward()
        else:
            loss.backward()
        if variant == "manual_chapter_lr":
            _manual_update(model, 0.5)
        elif variant == "manual":
            _manual_update(model, lr)
        else:
            opt.step()
        returned = F.cross_entropy(model(x), y).item() if variant == "loss_after" else loss.item()
        losses.append(returned)
        params.append(_params(model))
    return losses, params


_TRAIN_MISTAKES = {
    "no_zero_grad": ("you never zero the gradients, so each step adds the previous steps' gradients",
                     "call optimizer.zero_grad() at the start of each step."),
    "ascent": ("the loss goes up: your step climbs the gradient instead of descending it",
               "backpropagate the loss itself (loss.backward()), not -loss."),
    "manual_chapter_lr": ("you update the parameters by hand (p -= 0.5 * p.grad) and ignore the optimizer you are "
                          "given: that is plain SGD at the chapter's learning rate, whatever the optimizer",
                          "let the optimizer update: optimizer.step()."),
    "manual": ("you update the parameters by hand (p -= lr * p.grad) and ignore the optimizer you are given: "
               "AdamW and momentum do not step like plain SGD", "let the optimizer update: optimizer.step()."),
    "loss_after": ("you return the loss after the update; return the loss computed before optimizer.step()",
                   None),
}


def check_train_step(train_step: Callable) -> Verdict:
    """Check ``train_step(model, optimizer, x, y) -> float``: zero the gradients, compute the cross-entropy
    of ``model(x)`` against ``y``, backpropagate, step, and return the loss (computed before the step) as
    a Python number.

    The checker runs a few steps of small ``nn.Linear`` classifiers with the chapter's optimizer (SGD, lr
    0.5) and with others (AdamW at lr 0.01, SGD with momentum at lr 0.1).
    """
    def body(fn):
        n = 0
        for setting in range(len(_TRAIN_SETTINGS)):
            reference_losses, reference_params = _simulate("right", setting)
            variants = {name: _simulate(name, setting) for name in _TRAIN_MISTAKES}
            model, opt, batches, label = _train_setup(setting)
            before = _params(model)
            for step, (x, y) in enumerate(batches):
                n += 1
                case = f"step {step + 1} of {len(batches)} ({label})"
                out = _call(fn, (model, opt, x, y), case, no_grad=False)
                loss = _python_number(out, case, "the loss before the update")
                now = _params(model)
                if np.array_equal(now, before):
                    if all(p.grad is None or not p.grad.any() for p in model.parameters()):
                        raise _Failure(f"the parameters did not change on {case}, and they have no gradients: "
                                       "loss.backward() was never called (or was called before zero_grad()).",
                                       "loss.backward() computes the gradients; then optimizer.step() uses them.")
                    raise _Failure(f"the parameters did not change on {case}, although they have gradients: "
                                   "optimizer.step() was not called after loss.backward().",
                                   "after optimizer.zero_grad() and the loss, call loss.backward() and then "
                                   "optimizer.step(), in that order.")
                if not _close(now, reference_params[step], rtol=1e-5, atol=1e-6):
                    for name, (v_losses, v_params) in variants.items():
                        if _close(now, v_params[step], rtol=1e-5, atol=1e-6):
                            message, hint = _TRAIN_MISTAKES[name]
                            raise _Failure(f"{message} (on {case}).", hint)
                    change = np.abs(now - reference_params[step]).max()
                    raise _Failure(f"after {case} the parameters differ from one optimizer step on the "
                                   f"cross-entropy loss (by up to {change:.3g}).",
                                   "loss = F.cross_entropy(model(x), y); optimizer.zero_grad(); loss.backward(); "
                                   "optimizer.step().")
                if not math.isclose(loss, reference_losses[step], rel_tol=1e-5, abs_tol=1e-6):
                    if math.isclose(loss, variants["loss_after"][0][step], rel_tol=1e-5, abs_tol=1e-6):
                        message, hint = _TRAIN_MISTAKES["loss_after"]
                        raise _Failure(f"{message} (on {case}).", hint)
                    a, b = _num_pair(reference_losses[step], loss)
                    raise _Failure(f"on {case} you return {b}; the cross-entropy before the update is {a}.",
                                   "return loss.item() of the loss you backpropagated.")
                before = now
        return n

    return _run("train_step", train_step, body)


# --- chapter 5: backpropagation by hand, gradient descent, lottery tickets -------------------------

def _relu_ref(x, y, W1, b1, W2, b2, *, act_grad="relu", scale=True, target="onehot", db_axis=0):
    N = x.shape[0]
    a = x @ W1 + b1
    h = torch.relu(a)
    p = torch.softmax(h @ W2 + b2, -1)
    dz = p - (F.one_hot(y, p.shape[-1]).to(p.dtype) if target == "onehot" else 0)
    if scale:
        dz = dz / N
    dh = dz @ W2.T
    da = {"relu": dh * (a > 0), "tanh": dh * (1 - h ** 2), "none": dh, "h": dh * h}[act_grad]
    return {"W1": x.T @ da, "b1": da.sum(db_axis), "W2": h.T @ dz, "b2": dz.sum(db_axis)}


def check_relu_backprop(relu_backprop: Callable) -> Verdict:
    """Check ``relu_backprop(x (N, d), y (N,), W1, b1, W2, b2) -> {"W1": ..., "b1": ..., "W2": ..., "b2": ...}``:
    the gradients of the mean cross-entropy of ``logits = relu(x @ W1 + b1) @ W2 + b2``, by hand."""
    from .experiments import TinyNet, autograd_gradients

    def case(seed, n, d, hidden, classes):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = torch.randint(0, classes, (n,), generator=g)
        params = (torch.randn(d, hidden, generator=g, dtype=torch.float64), torch.randn(hidden, generator=g,
                  dtype=torch.float64) * 0.5, torch.randn(hidden, classes, generator=g, dtype=torch.float64),
                  torch.randn(classes, generator=g, dtype=torch.float64) * 0.5)
        return (x, y, *params), f"{n} examples, {d} inputs, {hidden} hidden units, {classes} classes"

    cases = [case(70, 5, 3, 4, 3), case(71, 8, 2, 6, 4), case(72, 1, 4, 3, 2), case(73, 6, 5, 5, 5)]
    mistakes = [
        (dict(act_grad="tanh"), "you use tanh's derivative (1 - h^2); this network uses ReLU",
         "ReLU's derivative is 1 where its input is positive and 0 elsewhere: da = dh * (a > 0)."),
        (dict(act_grad="none"), "you pass the gradient through the ReLU unchanged",
         "multiply by ReLU's derivative: da = dh * (a > 0)."),
        (dict(act_grad="h"), "you multiply by the ReLU's output h instead of its derivative (a > 0)",
         "da = dh * (a > 0)."),
        (dict(scale=False), "your gradients are N times too large: they are for the summed loss, not the mean",
         "divide dz by the number of examples N."),
        (dict(target="none"), "you use p as the gradient of the logits; it is p - onehot(y)",
         "subtract 1 at each example's target: dz = (p - F.one_hot(y, C)) / N."),
    ]

    def body(fn):
        for args, name in cases:
            out = _call(fn, args, name)
            if not isinstance(out, Mapping):
                raise _Failure(f"your function returned {type(out).__name__} on {name}; return a dict with the keys "
                               "'W1', 'b1', 'W2', 'b2'.")
            missing = [k for k in ("W1", "b1", "W2", "b2") if k not in out]
            if missing:
                raise _Failure(f"your dict has no {missing} on {name}; return all of 'W1', 'b1', 'W2', 'b2'.")
            want = _relu_ref(*args)
            autograd = autograd_gradients(TinyNet(*args[2:]), args[0], args[1], activation="relu")[1]
            for k in ("W1", "b1", "W2", "b2"):
                assert torch.allclose(want[k], autograd[k])  # the reference itself is right
                got = _array(out[k], name)
                if got.shape != tuple(want[k].shape):
                    if k.startswith("b") and got.shape == (args[0].shape[0], want[k].shape[0]):
                        raise _Failure(f"the gradient of {k} has one row per example (shape {got.shape}) on {name}; "
                                       f"{k} has shape {tuple(want[k].shape)}.",
                                       "a bias gradient sums over the examples: dz.sum(0).")
                    hint = ("a bias gradient sums dz over the examples: dz.sum(0)." if k.startswith("b") else
                            f"{k}'s gradient has {k}'s shape {tuple(want[k].shape)}: check the transposes.")
                    raise _Failure(f"the gradient of {k} has shape {got.shape} on {name}; {k} has shape "
                                   f"{tuple(want[k].shape)}.", hint)
            for k in ("W2", "b2", "W1", "b1"):
                got = _array(out[k], name)
                if np.allclose(got, want[k].numpy(), rtol=1e-5, atol=1e-8):
                    continue
                for kwargs, message, hint in mistakes:
                    wrong = _relu_ref(*args, **kwargs)[k].numpy()
                    if np.allclose(got, wrong, rtol=1e-5, atol=1e-8):
                        raise _Failure(f"{message} (in the gradient of {k}, on {name}).", hint)
                w, g = _fmt_pair(want[k].numpy(), got)
                raise _Failure(f"wrong gradient of {k} on {name}: expected {w}, got {g}.",
                               "follow the chain rule backwards: dz, then W2 and b2, then dh, da, W1 and b1.")
        return len(cases)

    return _run("relu_backprop", relu_backprop, body)


def check_gradient_descent(gradient_descent: Callable) -> Verdict:
    """Check ``gradient_descent(w0, lr, steps, curvature) -> [w0, w1, ..., w_steps]`` on the loss
    ``curvature * w**2 / 2``, including learning rates that make it diverge."""
    from .experiments import descend

    cases = [((3.0, 0.1, 5, 1.0), "w0=3, lr=0.1, 5 steps, curvature 1"),
             ((1.0, 0.3, 4, 4.0), "w0=1, lr=0.3, 4 steps, curvature 4 (a stable learning rate)"),
             ((1.0, 0.6, 6, 4.0), "w0=1, lr=0.6, 6 steps, curvature 4 (above 2 / curvature: it diverges)"),
             ((-2.0, 0.05, 0, 2.0), "zero steps"),
             ((0.5, 0.2, 3, 0.5), "w0=0.5, lr=0.2, 3 steps, curvature 0.5")]
    mistakes = [
        (lambda w0, lr, n, c: [w0 * (1 + lr * c) ** t for t in range(n + 1)],
         "your w moves up the slope: subtract the gradient, do not add it", "w = w - lr * curvature * w."),
        (lambda w0, lr, n, c: [w0 * (1 - lr) ** t for t in range(n + 1)],
         "you leave out the curvature: the gradient of curvature * w**2 / 2 is curvature * w", None),
        (lambda w0, lr, n, c: [w0 * (1 - lr * c / 2) ** t for t in range(n + 1)],
         "your gradient is half what it should be: the gradient of curvature * w**2 / 2 is curvature * w", None),
        (lambda w0, lr, n, c: [w0 * (1 - c) ** t for t in range(n + 1)],
         "you leave out the learning rate", "w = w - lr * curvature * w."),
        (lambda w0, lr, n, c: descend(w0, lr, n, c)[1:], "you leave out the starting point w0",
         "return steps + 1 values, starting with w0."),
        (lambda w0, lr, n, c: descend(w0, lr, n + 1, c)[1:], "you leave out the starting point w0 and take one "
         "step too many", "return [w0, w1, ..., w_steps]: steps + 1 values."),
        (lambda w0, lr, n, c: descend(w0, lr, n, c)[:-1] if n else [], "you stop one step early",
         "return steps + 1 values: w0 and one per step."),
        (lambda w0, lr, n, c: [w0 - t * lr * c * w0 for t in range(n + 1)], "you use the gradient at w0 for every "
         "step; recompute it at the current w", "grad = curvature * w with the latest w."),
    ]

    def body(fn):
        for args, name in cases:
            out = _call(fn, args, name)
            if isinstance(out, (int, float, np.floating)) or out is None:
                raise _Failure(f"your function returned {type(out).__name__} on {name}; return a list of numbers, "
                               "[w0, w1, ..., w_steps].")
            try:
                got = _array(list(out) if not isinstance(out, torch.Tensor) else out, name, "a list of numbers")
            except TypeError:
                raise _Failure(f"your function returned {type(out).__name__} on {name}; return a list of numbers.") from None
            want = np.array(descend(*args))
            if got.ndim != 1:
                raise _Failure(f"return a flat list of numbers, got shape {got.shape} on {name}.")
            if got.shape == want.shape and np.allclose(got, want, rtol=1e-6, atol=1e-9):
                continue
            for wrong, message, hint in mistakes:
                w = np.array(wrong(*args), dtype=float)
                if w.shape == got.shape and np.allclose(got, w, rtol=1e-6, atol=1e-9):
                    raise _Failure(f"{message} (on {name}).", hint)
            if got.shape != want.shape:
                raise _Failure(f"on {name} you return {len(got)} values; return steps + 1 = {len(want)} "
                               "(w0 and one per step).")
            raise _wrong_values(got, want, name, "each step: w = w - lr * curvature * w.")
        return len(cases)

    return _run("gradient_descent", gradient_descent, body)


def check_prune_and_rewind(prune_and_rewind_fn: Callable) -> Verdict:
    """Check ``prune_and_rewind(trained, initial, sparsity) -> (weights, masks)`` (dicts of tensors by name):
    prune each trained tensor's ``sparsity`` fraction of smallest magnitudes, rewind the rest to ``initial``."""
    from .experiments import magnitude_masks, prune_and_rewind

    def case(seed, shapes, sparsity):
        g = torch.Generator().manual_seed(seed)
        trained = {f"w{i}": torch.randn(*s, generator=g) for i, s in enumerate(shapes)}
        initial = {f"w{i}": torch.randn(*s, generator=g) * 0.1 for i, s in enumerate(shapes)}
        return (trained, initial, sparsity), f"{len(shapes)} tensors of shapes {shapes}, sparsity {sparsity}"

    cases = [case(80, [(4, 5)], 0.5), case(81, [(3, 4), (6,)], 0.75), case(82, [(2, 8), (4, 4)], 0.25),
             case(83, [(5, 2)], 0.0), case(84, [(3, 3), (10,)], 0.4)]

    def keep_global(tr, s):
        allv = torch.cat([v.abs().flatten() for v in tr.values()])
        n = round(s * allv.numel())
        thr = torch.sort(allv).values[n - 1] if n else -1.0
        return {k: v.abs() > thr for k, v in tr.items()}

    variants = {
        "no_rewind": lambda tr, ini, s: {k: tr[k] * m for k, m in magnitude_masks(tr, s).items()},
        "initial_magnitude": lambda tr, ini, s: {k: ini[k] * m for k, m in magnitude_masks(ini, s).items()},
        "keep_smallest": lambda tr, ini, s: {k: ini[k] * (~m if s else m) for k, m in magnitude_masks(tr, s).items()},
        "signed": lambda tr, ini, s: {k: ini[k] * m for k, m in
                                       magnitude_masks({n: v - v.min() for n, v in tr.items()}, s).items()},
        "global": lambda tr, ini, s: {k: ini[k] * m for k, m in keep_global(tr, s).items()},
        "keep_fraction": lambda tr, ini, s: {k: ini[k] * m for k, m in magnitude_masks(tr, 1 - s if s else 0).items()},
    }
    messages = {
        "no_rewind": ("you keep the trained values; rewind the survivors to their initial values",
                      "weights[name] = initial[name] * mask."),
        "initial_magnitude": ("you rank the weights by their initial magnitude; rank by the trained magnitude",
                              "the mask comes from trained[name].abs(), the values from initial[name]."),
        "keep_smallest": ("you keep the smallest weights and prune the largest", "prune the smallest |w|."),
        "signed": ("you rank by signed value, so large negative weights are pruned; rank by magnitude |w|",
                   "use trained[name].abs()."),
        "global": ("you prune across all tensors at once; prune each tensor separately, the same fraction of each",
                   None),
        "keep_fraction": ("you prune 1 - sparsity; sparsity is the fraction removed", None),
    }

    def body(fn):
        for args, name in cases:
            out = _call(fn, args, name)
            if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(o, Mapping) for o in out)):
                raise _Failure(f"return a pair (weights, masks) of dicts on {name}, got {type(out).__name__}.")
            weights, masks = out
            want_w, want_m = prune_and_rewind(*args)
            for k in want_w:
                if k not in weights or k not in masks:
                    raise _Failure(f"your result has no tensor {k!r} on {name}; keep every name of trained.")
                got_m = _array(masks[k], name)
                if got_m.shape != tuple(want_m[k].shape):
                    raise _Failure(f"the mask of {k!r} has shape {got_m.shape}; expected {tuple(want_m[k].shape)} "
                                   f"(on {name}).")
                kept = int(np.count_nonzero(got_m))
                if kept != int(want_m[k].sum()):
                    pruned = got_m.size - kept
                    hint = ("sparsity is the fraction removed: keep round((1 - sparsity) * numel) entries."
                            if pruned == int((~want_m[k]).sum()) else None)
                    for variant in ("keep_fraction", "global"):
                        w = variants[variant](*args)[k]
                        if int(torch.count_nonzero(w)) == kept and np.allclose(_array(weights[k], name), w.numpy()):
                            raise _Failure(f"{messages[variant][0]} (on {name}).", messages[variant][1])
                    raise _Failure(f"the mask of {k!r} keeps {kept} of {got_m.size} entries on {name}; with "
                                   f"sparsity {args[2]} it should keep {int(want_m[k].sum())}.", hint)
            for k in want_w:
                got = _array(weights[k], name)
                if np.allclose(got, want_w[k].numpy(), atol=1e-7) and np.array_equal(
                        _array(masks[k], name).astype(bool), want_m[k].numpy()):
                    continue
                for variant, wrong in variants.items():
                    if np.allclose(got, wrong(*args)[k].numpy(), atol=1e-7):
                        message, hint = messages[variant]
                        raise _Failure(f"{message} (on {name}).", hint)
                w, g = _fmt_pair(want_w[k].numpy(), got)
                raise _Failure(f"wrong weights for {k!r} on {name}: expected {w}, got {g}.",
                               "mask = the largest (1 - sparsity) of trained[name].abs(); weights = initial * mask.")
        return len(cases)

    return _run("prune_and_rewind", prune_and_rewind_fn, body)


# --- chapter 3: a linear probe ---------------------------------------------------------------------

def check_probe(probe_accuracy_fn: Callable) -> Verdict:
    """Check ``probe_accuracy(X_train (n, d), y_train (n,), X_test (m, d), y_test (m,)) -> float``: fit a
    logistic-regression probe on the training split, return its accuracy (a fraction) on the test split.

    Any sensible linear probe passes: the answer may differ from the reference (scikit-learn's
    ``LogisticRegression(max_iter=1000)``) by up to 0.06, as other regularisation strengths do.
    """
    from .geometry import _probe_data, _probe_ref

    cases = [(_probe_data(seed), f"hidden probing task {i + 1} (40 features, 60 training and 200 test vectors)")
             for i, seed in enumerate((11, 22, 33))]
    tol = 0.06
    mistakes = [
        (lambda *a: _probe_ref(*a, score_on="train"), "you score the probe on its training data; a probe "
         "that fits its training set perfectly says nothing until it is scored on held-out data",
         "return probe.score(X_test, y_test)."),
        (lambda *a: _probe_ref(*a, fit_on="test"), "you fit the probe on the test split (and score it there)",
         "fit on (X_train, y_train), score on (X_test, y_test)."),
        (lambda *a: _probe_ref(*a, fit_on="both"), "you fit the probe on the training and the test data together",
         "fit on (X_train, y_train) only."),
        (lambda *a: _probe_ref(*a, flip=True), "you return the error rate (1 - accuracy)",
         "accuracy = fraction of test vectors labelled right."),
    ]

    def body(fn):
        for args, case in cases:
            out = _call(fn, args, case)
            if isinstance(out, (np.ndarray, list, torch.Tensor)) and np.ndim(out) == 1 and len(out) == len(args[3]):
                raise _Failure(f"on {case} you return {len(out)} predictions; return one number, the accuracy.",
                               "probe.score(X_test, y_test), or (predictions == y_test).mean().")
            got = _scalar(out, case, "the test accuracy")
            if 1 < got <= 100 and got != int(got):
                raise _Failure(f"on {case} you return {got:g}: a percentage; return a fraction in [0, 1].",
                               "probe.score(X_test, y_test) is already a fraction.")
            if 1 < got <= len(args[3]):
                raise _Failure(f"on {case} you return {got:g}: a count of right answers (or a percentage); return "
                               "a fraction in [0, 1].", "probe.score(X_test, y_test) is already a fraction.")
            want = _probe_ref(*args)
            if abs(got - want) <= tol:
                continue
            gaps = [abs(got - wrong(*args)) for wrong, _, _ in mistakes]
            nearest = int(np.argmin(gaps))
            if gaps[nearest] <= tol:
                message, hint = mistakes[nearest][1:]
                raise _Failure(f"{message} (on {case}: you return {got:.3f}, expected about {want:.3f}).", hint)
            raise _Failure(f"on {case}: expected a test accuracy of about {want:.3f}, got {got:.3f}.",
                           "LogisticRegression(max_iter=1000).fit(X_train, y_train).score(X_test, y_test).")
        return len(cases)

    return _run("probe_accuracy", probe_accuracy_fn, body)


# --- chapter 2: score the heads yourself -----------------------------------------------------------

def check_head_accuracy(head_accuracy_fn: Callable) -> Verdict:
    """Check ``head_accuracy(patterns, sites) -> (layers, heads)``.

    ``patterns``: ``(sentences, layers, heads, seq, seq)`` attention weights (rows = queries, columns =
    keys); ``sites``: a LongTensor ``(n_sites, 3)`` of ``(sentence, query, target)``. The result gives,
    for every head, the fraction of sites where the key with the largest weight in the query's row is
    the target.
    """
    from .interpret import _exercise_data, _head_accuracy_ref

    cases = [(_exercise_data(seed), f"hidden test {i + 1}") for i, seed in enumerate((101, 202, 303))]
    cases.append((_exercise_data(404, n=5, layers=3, heads=2, seq=7), "hidden test 4 (3 layers of 2 heads)"))
    mistakes = [
        (lambda p, s: _head_accuracy_ref(p, s, "transposed"), "you read the query's column (who attends to the "
         "query) instead of its row (what the query attends to)", "patterns[s, :, :, q, :] is query q's row; take "
         "argmax over the last axis."),
        (lambda p, s: _head_accuracy_ref(p, s, "weight"), "you return the mean attention weight on the target, "
         "not how often the target gets the largest weight", "compare argmax(row) with the target and average the hits."),
        (lambda p, s: _head_accuracy_ref(p, s, "count"), "you return the number of hits, not the fraction",
         "divide by the number of sites (or use .mean())."),
        (lambda p, s: _head_accuracy_ref(p, s, "off_by_one"), "you use the row of the token before the query",
         "the row to read is the query's own: patterns[s, :, :, q, :]."),
        (lambda p, s: _head_accuracy_ref(p, s, "max_layer"), "you keep only each layer's best head",
         "return one number for every (layer, head)."),
    ]

    def body(fn):
        for (patterns, sites), case in cases:
            out = _call(fn, (patterns, sites), case)
            got = _array(out, case, "a (layers, heads) tensor of fractions")
            want = _head_accuracy_ref(patterns, sites).numpy()
            if got.shape == want.shape[::-1] and want.shape[0] != want.shape[1]:
                raise _Failure(f"wrong shape on {case}: expected {want.shape} (layers, heads), got {got.shape}: "
                               "your result is transposed (or the axes are in the wrong order).",
                               "patterns has the axes (sentence, layer, head, query, key).")
            _shape(got, want.shape, case, "one number per head: shape (layers, heads).")
            if _close(got, want, rtol=1e-6, atol=1e-6):
                continue
            _catalogue(got, (patterns, sites), mistakes, case, rtol=1e-6, atol=1e-6)
            if got.min() < 0 or got.max() > 1:
                raise _Failure(f"on {case} some values are outside [0, 1]: {_fmt(got)}",
                               "each entry is a fraction of sites.")
            raise _wrong_values(got, want, case, "for each site: row = patterns[s, :, :, q, :]; hit = (row.argmax(-1) "
                                                 "== t); average the hits over sites.")
        return len(cases)

    return _run("head_accuracy", head_accuracy_fn, body)


# --- chapter 1: held-out perplexity of an n-gram model ---------------------------------------------

def check_ngram_perplexity(ngram_perplexity: Callable) -> Verdict:
    """Check ``ngram_perplexity(n, train, test, vocab_size) -> float``.

    The function fits ``NGramLM(n, vocab_size=vocab_size)`` (Kneser-Ney, the default) on ``train``, a
    list of id sequences, scores every token of every ``test`` sequence with ``lm.token_logprobs`` and
    returns ``exp(-mean log-probability)`` over all test tokens.
    """
    from .corpus import toy
    from .measure import _ngram_ppl_ref
    from .tokenizers import WordTokenizer

    lang = toy()
    tok = WordTokenizer.for_toy(lang)
    train = [tok.encode_tokens(s) for s in lang.sentences(300, seed=9101)]
    test = [tok.encode_tokens(s) for s in lang.sentences(40, seed=9102)]
    V = tok.vocab_size
    cases = [(1, "n = 1 (a unigram model)"), (2, "n = 2 (a bigram model)"), (3, "n = 3")]
    mistakes = [
        (dict(log=True), "you return the cross-entropy (the mean surprise); perplexity is its exp",
         "return math.exp(-mean_logprob)."),
        (dict(on=train), "you score the training sequences; measure on the held-out test sequences",
         "call lm.token_logprobs on each test sequence."),
        (dict(per_sentence=True), "you average the perplexities of the sentences; average the "
         "log-probabilities of all tokens first, then take exp", "concatenate the test log-probabilities."),
        (dict(total=True), "you exponentiate the total surprise, not the mean per token",
         "divide by the number of test tokens before exp."),
        (dict(stream=True), "you joined the training sequences into one stream; fit on the list of "
         "sequences as given", "lm.fit(train)."),
        (dict(smoothing="add-k"), "you use add-one smoothing; use NGramLM's default (Kneser-Ney)",
         "NGramLM(n, vocab_size=vocab_size)."),
    ]

    def body(fn):
        for n, label in cases:
            case = f"{label} on 300 training and 40 test sentences"
            out = _call(fn, (n, [list(s) for s in train], [list(s) for s in test], V), case)
            got = _scalar(out, case, "the perplexity")
            want = _ngram_ppl_ref(n, train, test, V)
            if math.isclose(got, want, rel_tol=1e-4):
                continue
            for kwargs, message, hint in mistakes:
                if math.isclose(got, _ngram_ppl_ref(n, train, test, V, **kwargs), rel_tol=1e-4):
                    raise _Failure(f"{message} (on {case}).", hint)
            for m in (n - 1, n + 1):
                if m >= 1 and math.isclose(got, _ngram_ppl_ref(m, train, test, V), rel_tol=1e-4):
                    raise _Failure(f"your value is the perplexity of the {m}-gram model (on {case}).",
                                   "NGramLM(n) already looks at n - 1 previous tokens: pass n itself.")
            if got < 1:
                raise _Failure(f"perplexity is at least 1 but you return {_num(got)} (on {case}).",
                               "perplexity = exp(-mean log-probability); check the sign.")
            raise _wrong_value(got, want, case, "fit on train, score each test sequence with lm.token_logprobs, "
                                                "return exp(-mean) over all tokens.")
        return len(cases)

    return _run("ngram_perplexity", ngram_perplexity, body)


# --- chapter 4: beam search, temperature for an entropy --------------------------------------------

def check_beam_search(beam_search: Callable) -> Verdict:
    """Check ``beam_search(next_logprobs, prompt, num_beams, steps) -> list of steps new tokens``.

    ``next_logprobs(tokens) -> {token: log p}`` gives the next-token log-probabilities after a list of
    tokens (the prompt and what was generated). The answer must be the best hypothesis, by summed
    log-probability, among the ``num_beams`` kept after the last step, with ``num_beams`` kept after every
    step (``num_beams = 1`` is greedy decoding)."""
    from .textstats import (_BEAM_CASES, _exhaustive, _last_only, _model, _per_beam_best, _tree, _worst,
                            beam_search_reference)

    prompt = ["<s>"]
    beam_mistakes = (
        (_per_beam_best, "you extend each beam by its own best token; pool the children of all beams "
         "and keep the num_beams best", "candidates = every beam + every token, then sort them all."),
        (_last_only, "you rank hypotheses by the last token's log-probability; rank them by the sum "
         "over the whole hypothesis", "score = beam score + log p(token)."),
        (_worst, "you keep the least probable hypotheses (ascending sort)", "sort by score, highest first."))

    def body(fn):
        for seed, branching, steps, beams in _BEAM_CASES:
            tree = _tree(seed, branching, steps)
            model = _model(tree, prompt)
            case = f"a test language with {branching} words per step, num_beams = {beams}, steps = {steps}"
            out = _call(fn, (model, list(prompt), beams, steps), case)
            want = beam_search_reference(model, prompt, beams, steps)
            if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], list):
                raise _Failure(f"your function returned a pair {out!r:.80} on {case}; return only the list of "
                               "new tokens.", "return best_tokens, not (best_tokens, score).")
            if out is None:
                raise _Failure(f"your function returned None (on {case}).", "did you forget the `return` line?")
            if not isinstance(out, (list, tuple)) or not all(isinstance(t, str) for t in out):
                raise _Failure(f"your function returned {out!r:.80} on {case}; return a list of tokens (strings).")
            out = list(out)
            if out == want:
                continue
            if out[:len(prompt)] == prompt and out[len(prompt):] == want:
                raise _Failure(f"on {case} you return the prompt too: {out}.", "return only the new tokens.")
            if len(out) != steps:
                raise _Failure(f"on {case} you return {len(out)} tokens: expected {steps} new tokens, e.g. {want}.")
            greedy = beam_search_reference(model, prompt, 1, steps)
            if beams > 1 and out == greedy:
                raise _Failure(f"on {case} you return the greedy answer {out}, not the beam's {want}: you keep only "
                               "one hypothesis.", "keep the num_beams best candidates at every step.")
            if out == _exhaustive(tree, steps):
                raise _Failure(f"on {case} you return {out}, the best of all continuations, which a beam of "
                               f"{beams} cannot find (it finds {want}): you search everything instead of pruning.",
                               "after each step keep only the num_beams best candidates.")
            for mistake, message, hint in beam_mistakes:
                if out == mistake(model, prompt, beams, steps):
                    raise _Failure(f"on {case} you return {out}, expected {want}: {message}.", hint)
            raise _Failure(f"on {case} you return {out}, expected {want}.",
                           "score = sum of log-probabilities; keep the num_beams best after each step.")
        return len(_BEAM_CASES)

    return _run("beam_search", beam_search, body)


def _bisect_with(entropy: Callable, logits: torch.Tensor, target: float, low: float = 1e-3, high: float = 1e3,
                 steps: int = 60) -> float:
    """The chapter's bisection (float32 logits, as a student's code sees them) with a given entropy function."""
    for _ in range(steps):
        middle = math.sqrt(low * high)
        if entropy(torch.softmax(logits / middle, dim=-1)) < target:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


def _entropy_nan(p):
    return float(-(p * torch.log(p)).sum())


def _entropy_no_minus(p):
    nz = p[p > 0]
    return float((nz * torch.log(nz)).sum())


def _entropy_bits(p):
    nz = p[p > 0]
    return float(-(nz * torch.log2(nz)).sum())


# (logits, target entropy in nats, case). The last two are what a student meets right after the check,
# on toy-gpt: logits that are the log of a model's distribution, with -inf for tokens of probability 0 and
# probabilities so small that they underflow to 0 in float32 at the temperatures a bisection tries.
_TEMPERATURE_CASES = [
    (torch.tensor([2.0, 1.0, 0.5, -1.0, 0.0]), 1.2, "5 logits, target 1.2 nats"),
    (torch.tensor([2.0, 1.0, 0.5, -1.0, 0.0]), 0.3, "the same logits, target 0.3 nats (a low temperature)"),
    (torch.tensor([3.0, 2.5, 0.0, -2.0, 1.0, -0.5, 0.2, 1.5]), 1.9, "8 logits, target 1.9 nats (a high temperature)"),
    (torch.tensor([40.0, 35.0, 30.0, 20.0]), 0.8, "large logits, target 0.8 nats"),
    (torch.log(torch.tensor([0.45, 0.3, 0.15, 0.07, 0.03, 0.0, 0.0, 0.0])), 1.0,
     "the log of a model's distribution with three tokens of probability 0 (logits -inf), target 1 nat"),
    (torch.tensor([-0.9, -1.2, -1.6, -2.5, -4.0, -95.0, -120.0, -150.0, -210.0, -260.0]), 1.0,
     "log-probabilities down to -260 (exp underflows to 0 in float32), target 1 nat"),
]


def check_temperature_for_entropy(temperature_for_entropy: Callable) -> Verdict:
    """Check ``temperature_for_entropy(logits (V,), target) -> T``: the temperature at which the entropy of
    softmax(logits / T) is ``target`` nats (within 0.005 nats), also for logits with -inf entries and
    probabilities that underflow, as toy-gpt's are."""
    from .textstats import _entropy_at, temperature_for_entropy_reference

    mistakes = [
        (_entropy_nan, "your entropy is NaN here: a probability that is 0 (a -inf logit, or exp underflowing to 0 in "
         "float32) gives 0 * log(0) = 0 * -inf = NaN, and a comparison with NaN is always False, so your search "
         "runs to its end", "count 0 log 0 as 0: keep only the non-zero probabilities, p = p[p > 0]."),
        (_entropy_no_minus, "your entropy has no minus sign: p * log p summed is negative, always below the target, "
         "so your search runs to its upper end", "entropy = -(p * log p).sum()."),
        (_entropy_bits, "your entropy is in bits, not nats (log base 2)", "use natural logarithms: torch.log, "
                                                                          "not torch.log2."),
    ]

    def body(fn):
        for logits, target, case in _TEMPERATURE_CASES:
            out = _call(fn, (logits, target), case)
            if isinstance(out, torch.Tensor) and out.numel() == 1:
                out = out.item()
            if isinstance(out, bool) or not isinstance(out, (int, float, np.integer, np.floating)):
                raise _Failure(f"your function returned {out!r:.60} on {case}; return one number, the temperature.")
            T = float(out)
            want = temperature_for_entropy_reference(logits, target)
            if not (math.isfinite(T) and T > 0):
                raise _Failure(f"your function returned T = {T:g} on {case}; a temperature is a number > 0 "
                               f"(expected about {want:.4g}).")
            got = _entropy_at(logits, T)
            if abs(got - target) <= 5e-3:
                continue
            if abs(T - target) < 1e-9:
                raise _Failure(f"on {case} you return the target itself; return the temperature that reaches it "
                               f"(about {want:.4g}).", "search over T, e.g. by bisection, computing the entropy each time.")
            for entropy, message, hint in mistakes:
                with _quiet():
                    simulated = _bisect_with(entropy, logits, target)
                if math.isclose(T, simulated, rel_tol=1e-3):
                    raise _Failure(f"on {case} you return T = {T:.4g}, expected about {want:.4g}: {message}.", hint)
            if abs(_entropy_at(logits, T, times=True) - target) <= 5e-3:
                raise _Failure(f"on {case} your T = {T:.4g} reaches the target if the logits are multiplied by T; "
                               f"they are divided by it (expected about {want:.4g}).",
                               "probs = softmax(logits / T); a higher T means a flatter distribution.")
            if abs(_entropy_at(logits, T, base=2) - target) <= 5e-3:
                raise _Failure(f"on {case} your T = {T:.4g} gives {target:g} bits, not nats (expected about "
                               f"{want:.4g}).", "use natural logarithms: torch.log, not torch.log2.")
            if T <= 2e-3 and want > 0.05:
                raise _Failure(f"on {case} you return T = {T:.4g}, the bottom of a search range, expected about "
                               f"{want:.4g}: your entropy never came out above the target. Is it NaN (0 * log 0 when "
                               "a probability is 0)?", "count 0 log 0 as 0: keep only the non-zero probabilities.")
            direction = "too high (too flat)" if got > target else "too low (too sharp)"
            a, b = _num_pair(target, got)
            raise _Failure(f"on {case} the entropy at your T = {T:.4g} is {b} nats, not {a}: the "
                           f"temperature is {direction}; expected about {want:.4g}.",
                           "the entropy grows with T: if it is below the target, raise T, else lower it (bisection).")
        return len(_TEMPERATURE_CASES)

    return _run("temperature_for_entropy", temperature_for_entropy, body)


# --- chapter 6: positions, gated feed-forward layers, the pre-norm block ---------------------------

def check_sinusoidal_positions(sinusoidal_positions: Callable) -> Verdict:
    """Check ``sinusoidal_positions(n_positions, d_model) -> (n_positions, d_model)``:
    ``PE[p, 2i] = sin(p / 10000^(2i/d))`` and ``PE[p, 2i+1] = cos(p / 10000^(2i/d))``, positions from 0."""
    from .variants import _sinusoidal_ref

    cases = [(4, 6), (10, 8), (1, 4), (50, 16), (6, 6)]
    mistakes = [
        (lambda n, d: _sinusoidal_ref(n, d, swap=True), "sine and cosine are swapped: even columns take the sine",
         "PE[:, 0::2] = sin(...), PE[:, 1::2] = cos(...)."),
        (lambda n, d: _sinusoidal_ref(n, d, halves=True), "you put all the sines in the first half and all the "
         "cosines in the second; here they alternate (even columns sine, odd columns cosine)",
         "fill PE[:, 0::2] with the sines and PE[:, 1::2] with the cosines."),
        (lambda n, d: _sinusoidal_ref(n, d, exponent="i"), "your frequencies use 10000^(i/d) with i = 0, 1, 2, ...; "
         "the exponent is 2i/d (i counts the sine-cosine pairs)", "use torch.arange(0, d_model, 2) / d_model."),
        (lambda n, d: _sinusoidal_ref(n, d, start=1), "your positions start at 1; the first position is 0",
         "use torch.arange(n_positions)."),
        (lambda n, d: _sinusoidal_ref(n, d).T, "your table is transposed: rows are positions, columns dimensions",
         None),
        (_sin_times,
         "you multiply the positions by 10000^(2i/d); divide them (the frequencies fall with i)",
         "angle = position * 10000 ** (-two_i / d_model)."),
    ]

    def body(fn):
        for n, d in cases:
            case = f"n_positions={n}, d_model={d}"
            got = _array(_call(fn, (n, d), case), case)
            want = _sinusoidal_ref(n, d).numpy()
            if got.shape != want.shape:
                _catalogue(got, (n, d), mistakes, case)
                _shape(got, want.shape, case, "one row per position, one column per dimension.")
            if _close(got, want, rtol=1e-4, atol=1e-5):
                continue
            _catalogue(got, (n, d), mistakes, case)
            raise _wrong_values(got, want, case)
        return len(cases)

    return _run("sinusoidal_positions", sinusoidal_positions, body)


def _sin_times(n, d):
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    angle = pos * 10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    out = torch.zeros(n, d, dtype=torch.float64)
    out[:, 0::2], out[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return out


def _rotary_cat(x, positions):
    """A typical mistake: the pairs rotated right, put back with cat (halves) instead of interleaved."""
    x = x.double()
    d = x.shape[-1]
    angle = positions.double()[:, None] * 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.cat([x1 * angle.cos() - x2 * angle.sin(), x1 * angle.sin() + x2 * angle.cos()], dim=-1)


def check_rotary(rotate: Callable) -> Verdict:
    """Check ``rotate(x (seq, d), positions (seq,)) -> (seq, d)``: each neighbouring pair
    ``(x[:, 2i], x[:, 2i+1])`` at position ``p`` turned anticlockwise by the angle ``p * 10000^(-2i/d)``."""
    from .variants import _rotary_ref

    cases = [
        (_randn(5, 4, seed=11), torch.arange(5), "x of shape (5, 4) at positions 0..4"),
        (_randn(6, 8, seed=12), torch.arange(6), "x of shape (6, 8) at positions 0..5"),
        (_randn(3, 8, seed=13), torch.tensor([7, 2, 30]), "x of shape (3, 8) at positions [7, 2, 30]"),
        (_randn(1, 8, seed=14), torch.tensor([52]), "x of shape (1, 8) at position 52"),
    ]
    mistakes = [
        (lambda x, p: _rotary_ref(x, p, sign=-1.0), "you turn clockwise (the angle's sign is flipped)",
         "new pair = (x1 cos - x2 sin, x1 sin + x2 cos)."),
        (_rotary_cat, "you rotate the right pairs but put the results back with torch.cat (all first coordinates, "
         "then all second ones); interleave them so each pair stays in its two neighbouring columns",
         "torch.stack([first, second], dim=-1).flatten(-2)."),
        (lambda x, p: _rotary_ref(x, p, halves=True), "you pair dimension i with dimension i + d/2 (the GPT-NeoX "
         "layout); here the pairs are neighbours (0, 1), (2, 3), ...", "x1, x2 = x[:, 0::2], x[:, 1::2], and "
         "interleave the results back (torch.stack([...], dim=-1).flatten(-2))."),
        (lambda x, p: _rotary_ref(x, p, exponent="i"), "your frequencies use 10000^(-i/d) with i = 0, 1, 2, ...; "
         "the exponent is -2i/d", "use torch.arange(0, d, 2) / d."),
        (lambda x, p: _rotary_ref(x, p, ignore_positions=True), "nothing turns: the angle must grow with the position",
         "multiply each position by the frequencies: positions[:, None] * freqs[None, :]."),
        (lambda x, p: _rotary_ref(x, torch.arange(len(p))), "you use the row numbers 0, 1, 2, ... as positions; "
         "use the positions you are given", "angle = positions[:, None] * freqs[None, :]."),
    ]
    raising = [
        (lambda x, p: x[:, 0::2] * (p * 10000.0 ** (-torch.arange(0, x.shape[-1], 2) / x.shape[-1])),
         "you multiply the positions (seq,) by the frequencies (d/2,) without giving them their own axes",
         "positions[:, None] * freqs[None, :] has shape (seq, d/2)."),
    ]

    def body(fn):
        for x, p, case in cases:
            got = _array(_call(fn, (x, p), case, mistakes=raising), case)
            want = _rotary_ref(x, p).numpy()
            _shape(got, want.shape, case, "rotary keeps the shape of x.")
            if _close(got, want, rtol=1e-4, atol=1e-5):
                continue
            _catalogue(got, (x, p), mistakes, case)
            raise _wrong_values(got, want, case)
        return len(cases)

    return _run("rotary", rotate, body)


def check_swiglu(swiglu: Callable) -> Verdict:
    """Check ``swiglu(x (..., d), w_gate (d, f), w_up (d, f), w_down (f, d)) -> (..., d)``:
    ``(silu(x @ w_gate) * (x @ w_up)) @ w_down`` (Shazeer 2020's FFN_SwiGLU, without biases)."""
    from .variants import _swiglu_ref

    cases = []
    for seed, (shape, d, f) in enumerate([((4, 6), 6, 5), ((2, 3, 8), 8, 12), ((1, 4), 4, 4), ((3, 5), 5, 7)]):
        cases.append(((_randn(*shape, seed=20 + seed), _randn(d, f, seed=30 + seed, scale=0.7),
                       _randn(d, f, seed=40 + seed, scale=0.7), _randn(f, d, seed=50 + seed, scale=0.7)),
                      f"x of shape {shape}, d_ff={f}"))
    mistakes = [
        (lambda *a: _swiglu_ref(*a, act=torch.sigmoid), "you gate with a sigmoid: that is the original GLU "
         "(Dauphin et al.); SwiGLU gates with Swish = SiLU, x * sigmoid(x)", "use torch.nn.functional.silu on x @ w_gate."),
        (lambda *a: _swiglu_ref(*a, act=F.relu), "you gate with ReLU: that is ReGLU; SwiGLU uses SiLU", "use torch.nn.functional.silu."),
        (lambda *a: _swiglu_ref(*a, act=F.gelu), "you gate with GELU: that is GeGLU; SwiGLU uses SiLU", "use torch.nn.functional.silu."),
        (lambda *a: _swiglu_ref(*a, swap=True), "the activation is applied to the wrong projection: SiLU goes on "
         "x @ w_gate, and x @ w_up stays linear", None),
        (lambda *a: _swiglu_ref(*a, gated=False), "nothing is gated: you return silu(x @ w_gate) @ w_down and never "
         "use w_up", "multiply silu(x @ w_gate) elementwise by x @ w_up before the down projection."),
        (lambda x, g, u, dn: (F.silu(x.double() @ g.double() * (x.double() @ u.double()))) @ dn.double(),
         "you apply SiLU to the product (x @ w_gate) * (x @ w_up); apply it to x @ w_gate alone, then multiply",
         "(silu(x @ w_gate) * (x @ w_up)) @ w_down, with silu(z) = z * torch.sigmoid(z)."),
    ]
    raising = [
        (lambda x, g, u, dn: (F.silu(x @ g) @ (x @ u)) @ dn, "you multiply the gate and the up projection with @ "
         "(a matrix product); the gate multiplies elementwise, with *", "silu(x @ w_gate) * (x @ w_up)."),
    ]

    def body(fn):
        for args, case in cases:
            got = _array(_call(fn, args, case, mistakes=raising), case)
            want = _swiglu_ref(*args).numpy()
            _shape(got, want.shape, case, "the output has the shape of x (the down projection maps back to d_model).")
            if _close(got, want, rtol=1e-4, atol=1e-5):
                continue
            _catalogue(got, args, mistakes, case)
            raise _wrong_values(got, want, case)
        return len(cases)

    return _run("swiglu", swiglu, body)


def check_prenorm_block(block: Callable) -> Verdict:
    """Check ``block(x, attn, mlp, ln1, ln2) -> same shape``: the pre-norm transformer block,
    ``x = x + attn(ln1(x))`` then ``x = x + mlp(ln2(x))`` (``attn``, ``mlp``, ``ln1``, ``ln2`` are functions)."""
    from .variants import _Affine, _block_ref

    cases = []
    for seed, shape in enumerate([(3, 4), (2, 5, 4), (1, 4), (4, 6)]):
        d = shape[-1]
        parts = (_Affine(d, 60 + seed, "attn"), _Affine(d, 70 + seed, "mlp"), _Affine(d, 80 + seed, "norm"),
                 _Affine(d, 90 + seed, "norm"))
        cases.append(((_randn(*shape, seed=100 + seed, scale=2.0).double(), *parts), f"x of shape {shape}"))
    swapped_norms = (lambda x, attn, mlp, ln1, ln2: _block_ref(x, attn, mlp, ln2, ln1))
    mistakes = [
        (lambda *a: _block_ref(*a, kind="post"), "this is the post-norm block (the original transformer's): "
         "normalise the input of each sublayer, not the sum", "x = x + attn(ln1(x)); x = x + mlp(ln2(x))."),
        (lambda *a: _block_ref(*a, kind="parallel"), "this is the parallel block (GPT-J, PaLM): the feed-forward "
         "layer must read the stream after attention has written to it", "update x after attention, then use it."),
        (lambda *a: _block_ref(*a, kind="no_residual"), "the residual connections are missing: add each sublayer's "
         "output to x instead of replacing x", None),
        (lambda *a: _block_ref(*a, kind="normed_residual"), "you add the sublayer's output to the normalised stream; "
         "the stream itself (x) carries on unnormalised", "x = x + attn(ln1(x)), not ln1(x) + attn(ln1(x))."),
        (lambda *a: _block_ref(*a, kind="no_mlp"), "the feed-forward half is missing", "x = x + mlp(ln2(x))."),
        (swapped_norms, "you use ln2 before attention and ln1 before the feed-forward layer; each sublayer has its "
         "own LayerNorm (ln1 for attention, ln2 for the feed-forward layer)", "x = x + attn(ln1(x)); "
                                                                             "x = x + mlp(ln2(x))."),
        (lambda x, attn, mlp, ln1, ln2: x + mlp(ln2(attn(ln1(x)))), "the feed-forward layer reads attention's output "
         "instead of the updated stream x + attn(ln1(x)), and its residual skips attention",
         "x = x + attn(ln1(x)); then x = x + mlp(ln2(x))."),
    ]

    def body(fn):
        for args, case in cases:
            got = _array(_call(fn, args, case), case)
            want = _block_ref(*args).detach().numpy()
            _shape(got, want.shape, case, "a block keeps the shape of the stream.")
            if _close(got, want, rtol=1e-5, atol=1e-6):
                continue
            _catalogue(got, args, mistakes, case, rtol=1e-5, atol=1e-6)
            raise _wrong_values(got, want, case)
        return len(cases)

    return _run("prenorm_block", block, body)


CHECKERS: dict[str, Callable[[Callable], Verdict]] = {
    name[len("check_"):]: fn for name, fn in globals().items() if name.startswith("check_") and callable(fn)
}
