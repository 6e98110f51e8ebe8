"""Every checker passes a correct solution, says "not attempted yet" to a stub, accepts nothing trivial,
and reports through one core (the mistakes each checker names are in test_checker_mutations.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from checker_support import CORRECT, printed, sample_ok, train_step_ok
from lmlab import exercises as ex

torch.set_num_threads(1)


def verdict(capsys, checker, fn):
    """Run a checker; return (result, printed text)."""
    result = checker(fn)
    out = capsys.readouterr().out
    return result, out


def test_every_checker_has_a_correct_solution_here():
    assert set(CORRECT) == set(ex.CHECKERS)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_solution_passes_with_one_line(capsys, name):
    ok, out = verdict(capsys, ex.CHECKERS[name], CORRECT[name])
    assert isinstance(ok, ex.Verdict) and ok.passed and bool(ok) is True, out
    assert ex.last_verdict() is ok and ok.message == out.rstrip("\n")
    assert out.count("\n") == 1 and out.startswith(f"✅ {printed(name)}: correct"), out


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_stub_is_not_attempted_yet(capsys, name):
    def stub(*args, **kwargs):
        raise NotImplementedError("write your code here")

    ok, out = verdict(capsys, ex.CHECKERS[name], stub)
    assert bool(ok) is False and ok.status == "not attempted" and ex.last_verdict() is ok
    assert "not attempted yet" in out and "Traceback" not in out and out.count("\n") == 1


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_accepts_nothing(capsys, name):
    """No checker passes a function that returns a constant, None, or its first argument."""
    for fn in (lambda *a, **k: 0, lambda *a, **k: None, lambda *a, **k: a[0] if not isinstance(a[0], int) else 0):
        ok, out = verdict(capsys, ex.CHECKERS[name], fn)
        assert bool(ok) is False and ok.status == "failed", (name, out)
        assert out.startswith(f"❌ {printed(name)}:")


def test_other_exceptions_are_reported_in_one_line(capsys):
    def broken(x):
        return x.frobnicate()

    ok, out = verdict(capsys, ex.check_softmax, broken)
    assert not ok
    assert out.startswith("❌ softmax: your function raised AttributeError:") and out.count("\n") == 1
    assert "Traceback" not in out


def test_none_return_and_non_function(capsys):
    ok, out = verdict(capsys, ex.check_entropy, lambda p: None)
    assert not ok and "returned None" in out and "return" in out
    ok, out = verdict(capsys, ex.check_entropy, 3.0)
    assert not ok and "pass your function itself" in out


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


def test_checkers_in_other_modules_are_the_same_functions():
    """The chapters call some checkers through the module they import; those are the core's checkers."""
    from lmlab import experiments, geometry, interpret, measure, textstats, variants

    for module in (experiments, geometry, interpret, measure, textstats, variants):
        for name in dir(module):
            if name.startswith("check_") and name[len("check_"):] in ex.CHECKERS:
                assert getattr(module, name) is getattr(ex, name), (module.__name__, name)
    assert variants.check_rotary is ex.check_rotary and measure.check_ngram_perplexity is ex.check_ngram_perplexity


def test_numbers_are_shown_to_the_precision_that_separates_them():
    a, b = ex._fmt_pair(np.array([0.123451, 0.5]), np.array([0.123462, 0.5]))
    assert a != b and "0.12345" in a and "0.12346" in b
    a, b = ex._num_pair(0.80312, 0.80336)
    assert a != b
    failure = ex._wrong_values(np.array([[1.0, 2.0], [3.0, 4.00031]]), np.array([[1.0, 2.0], [3.0, 4.0]]), "a case")
    assert "index [1, 1]" in failure.message and "4.0003" in failure.message


@pytest.mark.parametrize("fn, fragment, hint", [
    (lambda x: x - x.max(dim=-1), "returns a pair (values, indices)", ".values"),
    (lambda x: torch.softmax(x, -1) if x.dim() == 1 else x @ x[:2], "matrix product", "transpos"),
    (lambda x: x.sum().item() + x[0, 99] if x.dim() > 1 else torch.softmax(x, -1), "out of range", "axis"),
    (lambda x: x.sum(dim=3), "axis the input does not have", "dim=-1"),
])
def test_raw_errors_are_translated(capsys, fn, fragment, hint):
    ok, out = verdict(capsys, ex.check_softmax, fn)
    assert not ok and fragment in out and hint in out.split("Hint:")[-1], out
    assert "Traceback" not in out


def test_a_verdict_displays_nothing_and_reads_well(capsys):
    """A checker call as a cell's last line shows only its printed line: IPython's formatter produces no
    output for a Verdict (no stray True/False), and its repr says what happened."""
    from IPython.core.formatters import DisplayFormatter

    passed = ex.check_softmax(CORRECT["softmax"])
    failed = ex.check_softmax(lambda x: x)
    capsys.readouterr()
    assert ex.last_verdict() is failed and passed and not failed
    for v in (passed, failed):
        assert DisplayFormatter().format(v) == ({}, {})
    assert repr(passed) == "<Verdict softmax: passed>" and repr(failed) == "<Verdict softmax: failed>"


def test_checkers_re_exported_elsewhere_are_the_same_functions():
    """Chapters call some checkers through other modules (interpret.check_head_accuracy, ...): every
    check_* of an lmlab module that names an exercise checker is that checker, so it returns a Verdict."""
    import importlib
    import pkgutil

    import lmlab

    checkers = {f"check_{name}": fn for name, fn in ex.CHECKERS.items()} | \
        {fn.__name__: fn for fn in ex.CHECKERS.values()}
    found = 0
    for info in pkgutil.iter_modules(lmlab.__path__):
        module = importlib.import_module(f"lmlab.{info.name}")
        for attr, value in vars(module).items():
            if attr in checkers and module is not ex:
                assert value is checkers[attr], f"lmlab.{info.name}.{attr} is not lmlab.exercises.{attr}"
                found += 1
    assert found >= 5
