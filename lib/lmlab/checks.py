"""Argument checks shared by every lmlab module: one rule for what a public function accepts.

Each helper returns the checked value (converted to a plain Python type where that helps) or raises a
``TypeError`` (wrong kind) or ``ValueError`` (right kind, wrong value) whose message names the argument,
says what is allowed and shows what was passed:

>>> check_int(0, "batch_size", minimum=1)
Traceback (most recent call last):
...
ValueError: batch_size must be an int >= 1, got 0

The rules, the same in every module:

* **ints** are ``numbers.Integral`` (Python and NumPy ints; ``bool`` is refused), within their range;
* **numbers** are ``numbers.Real`` (ints and floats, NumPy's too, 0-d tensors) and always *finite*:
  ``inf`` and ``nan`` are refused everywhere, whatever the range;
* **token ids** are ints in ``0..vocab_size - 1`` (a float such as ``7.0`` is refused, not rounded);
* **collections** that are averaged over must be non-empty;
* **seeds** are ints in ``0..2**63 - 1`` (:func:`lmlab.env.check_seed`, re-exported here); a public
  function applies :func:`lmlab.env.seeded` to the seed it is given.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Sequence

from .env import SEED_MAX, check_seed, seeded

__all__ = [
    "check_int", "check_real", "check_bool", "check_choice", "check_str", "check_nonempty",
    "check_id", "check_ids", "check_finite_tensor", "check_seed", "check_seeds", "seeded", "SEED_MAX",
    "is_int", "is_real",
]


def _range_text(low: Any, high: Any, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def _tail(hint: str | None) -> str:
    return f"; {hint}" if hint else ""


def is_int(value: Any) -> bool:
    """True for Python and NumPy ints (and 0-d integer tensors), False for bools and everything else."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    if isinstance(value, numbers.Integral):
        return True
    return _is_scalar_tensor(value) and not value.dtype.is_floating_point and not value.dtype.is_complex \
        and str(value.dtype) != "torch.bool"


def is_real(value: Any) -> bool:
    """True for real numbers (ints, floats, NumPy's, 0-d real tensors), False for bools and the rest."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    if isinstance(value, numbers.Real):
        return True
    return _is_scalar_tensor(value) and not value.dtype.is_complex and str(value.dtype) != "torch.bool"


def _is_scalar_tensor(value: Any) -> bool:
    mod = type(value).__module__ or ""
    return mod.startswith("torch") and hasattr(value, "dim") and hasattr(value, "dtype") and value.dim() == 0


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None, *,
              allow_none: bool = False, hint: str | None = None) -> int | None:
    """``value`` as a Python int if it is an int in ``minimum..maximum`` (either bound may be None)."""
    if value is None and allow_none:
        return None
    rng = _range_text(minimum, maximum)
    what = f"an int {rng}".rstrip() + (" or None" if allow_none else "")
    if not is_int(value):
        raise TypeError(f"{name} must be {what}, got {value!r}{_tail(hint)}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {what}, got {value}{_tail(hint)}")
    return value


def check_real(value: Any, name: str, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False, allow_none: bool = False,
               hint: str | None = None) -> float | None:
    """``value`` as a finite Python float in the range (closed unless ``low_open``/``high_open``)."""
    if value is None and allow_none:
        return None
    rng = _range_text(low, high, low_open, high_open)
    what = f"a finite number {rng}".rstrip() + (" or None" if allow_none else "")
    if not is_real(value):
        raise TypeError(f"{name} must be {what}, got {value!r}{_tail(hint)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {what}, got {value}{_tail(hint)}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {what}, got {value}{_tail(hint)}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{name} must be {what}, got {value}{_tail(hint)}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is ``True`` or ``False`` (NumPy's bools too)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def check_choice(value: Any, name: str, allowed: Iterable[Any]) -> Any:
    """``value`` if it is one of ``allowed`` (a ``TypeError`` for an unhashable or odd kind)."""
    allowed = tuple(allowed)
    listed = ", ".join(repr(a) for a in allowed)
    try:
        ok = value in allowed
    except Exception:  # e.g. an array compared elementwise
        ok = False
    if not ok:
        kinds = {type(a) for a in allowed}
        err = TypeError if kinds and not any(isinstance(value, k) for k in kinds) else ValueError
        raise err(f"unknown {name} {value!r}; {name} must be one of {listed}")
    return value


def check_str(value: Any, name: str, *, allow_empty: bool = False, allow_none: bool = False) -> str | None:
    """``value`` if it is a str (non-empty unless ``allow_empty``)."""
    if value is None and allow_none:
        return None
    what = "a str" + ("" if allow_empty else " (non-empty)") + (" or None" if allow_none else "")
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {what}, got {value!r:.80}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_nonempty(items: Any, name: str, what: str = "item", *, allow_str: bool = False) -> list:
    """``items`` as a list if it is a non-empty collection (a single str is refused unless ``allow_str``)."""
    if isinstance(items, str) and not allow_str:
        raise TypeError(f"{name} must be a list of {what}s, got one str {items!r:.60}; wrap it in a list")
    if isinstance(items, (bytes, dict)) or items is None or isinstance(items, numbers.Number):
        raise TypeError(f"{name} must be a non-empty list of {what}s, got {type(items).__name__}")
    try:
        out = list(items)
    except TypeError:
        raise TypeError(f"{name} must be a non-empty list of {what}s, got {type(items).__name__}") from None
    if not out:
        raise ValueError(f"{name} must be a non-empty list of {what}s, got an empty one "
                         f"(an average over nothing is undefined)")
    return out


def check_id(value: Any, name: str, vocab_size: int) -> int:
    """``value`` as an int if it is a token id in ``0..vocab_size - 1``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int token id in 0..{vocab_size - 1}, got {value!r}")
    value = int(value)
    if not 0 <= value < vocab_size:
        raise ValueError(f"{name} {value} is out of range: {name} must be a token id in 0..{vocab_size - 1} "
                         f"(vocab_size={vocab_size})")
    return value


def check_ids(ids: Any, name: str, vocab_size: int | None = None, *, allow_empty: bool = True) -> list[int]:
    """``ids`` as a list of ints if every one is a token id (in ``0..vocab_size - 1`` when given).

    Accepts lists/tuples of ints, NumPy integer arrays and integer tensors (1-D); floats are refused, not
    rounded (``decode([7.9])`` is a mistake, not the id 7).
    """
    hi = f" in 0..{vocab_size - 1}" if vocab_size is not None else " >= 0"
    if isinstance(ids, (str, bytes)) or is_int(ids) or ids is None:
        raise TypeError(f"{name} must be a sequence of int token ids{hi}, got {ids!r:.60}")
    if hasattr(ids, "dtype") and hasattr(ids, "tolist"):  # numpy array or tensor
        kind = str(ids.dtype)
        if "int" not in kind:
            raise TypeError(f"{name} must hold int token ids{hi}, got dtype {kind}")
        if getattr(ids, "ndim", 1) != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(ids.shape)}")
        out = [int(i) for i in ids.tolist()]
    else:
        try:
            seq = list(ids)
        except TypeError:
            raise TypeError(f"{name} must be a sequence of int token ids{hi}, got {type(ids).__name__}") from None
        for i in seq:
            if not is_int(i):
                raise TypeError(f"{name} must hold int token ids{hi}, got {i!r} ({type(i).__name__})")
        out = [int(i) for i in seq]
    if not out and not allow_empty:
        raise ValueError(f"{name} must hold at least one token id, got none")
    bad = [i for i in out if i < 0 or (vocab_size is not None and i >= vocab_size)]
    if bad:
        raise ValueError(f"{name} must hold token ids{hi}"
                         + (f" (vocab_size={vocab_size})" if vocab_size is not None else "")
                         + f", got {bad[:5]}")
    return out


def check_finite_tensor(t: Any, name: str) -> Any:
    """``t`` if it is a tensor (or array) of real numbers with no NaN; ``-inf`` entries are allowed
    (masked logits), ``+inf`` are not, and at least one entry per row must be finite."""
    import torch

    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"{name} must be a float tensor, got dtype {t.dtype}")
    if t.numel():
        if torch.isnan(t).any() or torch.isposinf(t).any():
            raise ValueError(f"{name} must be finite numbers (or -inf for excluded tokens), got NaN or +inf")
        if t.dim() and not torch.isfinite(t).any(dim=-1).all():
            raise ValueError(f"{name} must have at least one finite entry per row, got a row that is all -inf")
    return t


def check_seeds(seeds: Any, name: str = "seeds") -> list[int]:
    """``seeds`` as a list of checked seeds (non-empty); each must pass :func:`check_seed`."""
    items = check_nonempty(seeds, name, "seed")
    return [check_seed(int(s) if is_int(s) else s, f"{name}[{i}]") for i, s in enumerate(items)]


def seed_of(seed: Any, name: str = "seed") -> int:
    """:func:`lmlab.env.seeded` that also takes NumPy ints (the seed lmlab actually uses)."""
    if is_int(seed) and not isinstance(seed, int):
        seed = int(seed)
    return seeded(seed, name)


__all__ += ["seed_of"]
