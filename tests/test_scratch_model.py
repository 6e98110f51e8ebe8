"""Chapter 2 builds a GPT forward pass in view, from tensor operations only (issue 22).

The cells tagged ``scratch-model`` in ``chapters/02-attention.ipynb`` are the reader's transformer. Read
from their syntax trees, they must

* import nothing but ``torch``, ``torch.nn.functional`` (as ``F``) and ``math``;
* read no name but their own definitions, builtins, ``torch``/``F``/``math`` and the plain data the chapter
  hands them (:data:`DATA`: the weights, the token ids, the token strings and two sizes): no ``lmlab``
  module, no lmlab model, tokenizer, config or cache;
* call no ``scaled_dot_product_attention`` (or ``multi_head_attention_forward``), and no ``torch.nn``
  module or layer (only ``torch.nn.functional``);
* be visible in the book, each at most :data:`MAX_LINES` lines;
* define the whole model: ``rotate``, ``layer_norm``, ``linear``, ``attention``, ``mlp``, ``block``, ``gpt``.

The model reaches them only through its weights: ``weights`` is bound once in the notebook, to
``model.state_dict()`` of the model ``zoo.load("toy-gpt")`` returned. And the notebook claims, in a
removed cell, ``torch.allclose`` of the logits of the reader's ``gpt`` and of lmlab's ``model`` (the
book build fails if they differ).

Each rule has a planted violation on an in-memory copy of the notebook, which the check must report.
"""
from __future__ import annotations

import ast
import builtins
import copy
import json
from pathlib import Path

import pytest

from gates.teaching import dotted_name

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "chapters" / "02-attention.ipynb"
TAG = "scratch-model"
MAX_LINES = 16
ALLOWED_IMPORTS = {"torch", "torch.nn.functional", "math"}
MODULES = {"torch", "F", "math"}
#: What the chapter hands the scratch cells: the state dict, token ids and strings, and two sizes.
DATA = {"weights", "ids", "tokens", "n_layer", "n_head"}
FORBIDDEN_ATTRS = {"scaled_dot_product_attention", "multi_head_attention_forward"}
REQUIRED = {"rotate", "layer_norm", "linear", "attention", "mlp", "block", "gpt"}
HIDDEN = {"remove-cell", "remove-input", "hide-input", "hide-cell"}


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _code_cells(nb: dict):
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") == "code":
            # IPython magics and shell escapes become `pass` at the same indentation
            text = "\n".join(line[: len(line) - len(line.lstrip())] + "pass"
                             if line.lstrip().startswith(("%", "!")) else line
                             for line in _source(cell).splitlines())
            yield i, cell, ast.parse(text)


def _bound(tree: ast.AST) -> set[str]:
    """Every name a tree binds anywhere (assignments, loop targets, defs, arguments, imports)."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out |= {a.asname or a.name.split(".")[0] for a in n.names}
    return out


def _assignments(nb: dict) -> list[tuple[int, str, ast.AST]]:
    """(cell, target name, value) of every plain assignment in the notebook, tuples unpacked by name."""
    out = []
    for i, _, tree in _code_cells(nb):
        for n in ast.walk(tree):
            if isinstance(n, ast.Assign):
                for target in n.targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store):
                            out.append((i, name.id, n.value))
    return out


def _calls_to(value: ast.AST) -> set[str]:
    return {d for n in ast.walk(value) if isinstance(n, ast.Call) and (d := dotted_name(n.func))}


def scratch_problems(nb: dict) -> list[str]:
    """Every way the notebook breaks the rules above, one readable line each (empty: fine)."""
    problems = []
    cells = [(i, cell, tree) for i, cell, tree in _code_cells(nb) if TAG in _tags(cell)]
    if not cells:
        return [f"no code cell is tagged {TAG!r}"]
    defined: set[str] = set()
    for i, cell, tree in cells:
        where = f"scratch cell {i} ({_source(cell).strip().splitlines()[0][:50]!r})"
        if _tags(cell) & HIDDEN:
            problems.append(f"{where} is hidden in the book; the reader must see it")
        lines = [line for line in _source(cell).strip().splitlines() if line.strip()]
        if len(lines) > MAX_LINES:
            problems.append(f"{where} has {len(lines)} lines (at most {MAX_LINES})")
        for n in ast.walk(tree):
            if isinstance(n, ast.Import):
                bad = [a.name for a in n.names if a.name not in ALLOWED_IMPORTS]
            elif isinstance(n, ast.ImportFrom):
                bad = [f"{n.module}.{a.name}" for a in n.names
                       if f"{n.module}.{a.name}" not in ALLOWED_IMPORTS and n.module not in ALLOWED_IMPORTS]
            else:
                bad = []
            if bad:
                problems.append(f"{where} imports {', '.join(bad)} (only {', '.join(sorted(ALLOWED_IMPORTS))})")
            if isinstance(n, ast.Attribute) and n.attr in FORBIDDEN_ATTRS:
                problems.append(f"{where} uses {n.attr}: write attention from tensor operations")
            if isinstance(n, ast.Attribute) and (d := dotted_name(n)) and d.startswith("torch.nn.") \
                    and not d.startswith("torch.nn.functional"):
                problems.append(f"{where} uses {d}: only tensor operations and torch.nn.functional")
        defined |= _bound(tree)
        known = defined | set(dir(builtins)) | MODULES | DATA
        reads = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
                       - known)
        if reads:
            problems.append(f"{where} reads {', '.join(reads)}: a scratch cell may use only torch, F, math, "
                            f"its own definitions and the data {sorted(DATA)}")
    missing = REQUIRED - defined
    if missing:
        problems.append(f"the scratch cells do not define {', '.join(sorted(missing))}")

    assigned = _assignments(nb)
    # F is torch.nn.functional
    for _, _, tree in _code_cells(nb):
        for n in ast.walk(tree):
            if isinstance(n, ast.Import):
                for a in n.names:
                    if a.asname == "F" and a.name != "torch.nn.functional":
                        problems.append(f"F is bound to {a.name}, not torch.nn.functional")
    # the model only through its weights
    models = {name for _, name, value in assigned if any(c.endswith("zoo.load") for c in _calls_to(value))}
    weights = [(i, value) for i, name, value in assigned if name == "weights"]
    ok = [value for _, value in weights if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
          and value.func.attr == "state_dict" and isinstance(value.func.value, ast.Name)
          and value.func.value.id in models]
    if len(weights) != 1 or not ok:
        problems.append("the notebook must bind `weights` exactly once, to model.state_dict() of a model from "
                        f"zoo.load (found {len(weights)} assignment(s))")
    # the claim: allclose(logits of gpt, logits of lmlab's model)
    from_gpt = {name for _, name, value in assigned if "gpt" in _calls_to(value)}
    from_model = {name for _, name, value in assigned if _calls_to(value) & models}
    claimed = False
    for i, cell, tree in _code_cells(nb):
        if "remove-cell" not in _tags(cell):
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and (dotted_name(n.func) or "").split(".")[-1] == "claim" and n.args:
                test = n.args[0]
                if isinstance(test, ast.Call) and (dotted_name(test.func) or "").endswith("allclose") \
                        and len(test.args) >= 2:
                    names = {a.id for a in test.args[:2] if isinstance(a, ast.Name)}
                    if names & from_gpt and names & from_model:
                        claimed = True
    if not claimed:
        problems.append("no removed cell claims torch.allclose(<logits of gpt(...)>, <logits of the lmlab model>)")
    return problems


@pytest.fixture(scope="module")
def chapter() -> dict:
    return json.loads(CHAPTER.read_text(encoding="utf-8"))


def test_chapter_2_builds_the_model_from_tensor_operations(chapter):
    assert scratch_problems(chapter) == []


def test_every_scratch_definition_is_used_by_the_model(chapter):
    """The model function calls the pieces, so the allclose claim covers each of them."""
    src = "\n".join(_source(c) for c in chapter["cells"] if TAG in _tags(c))
    tree = ast.parse(src)
    calls = {d for n in ast.walk(tree) if isinstance(n, ast.Call) and (d := dotted_name(n.func))}
    assert {"rotate", "layer_norm", "linear", "attention", "mlp", "block"} <= calls


def _cell_defining(nb: dict, name: str) -> dict:
    for cell in nb["cells"]:
        if TAG in _tags(cell) and (f"def {name}(" in _source(cell) or f"{name} =" in _source(cell)):
            return cell
    raise AssertionError(f"no scratch cell defines {name}")


def _plant(nb: dict, name: str, old: str, new: str) -> dict:
    bad = copy.deepcopy(nb)
    cell = _cell_defining(bad, name)
    text = _source(cell)
    assert old in text, f"the planted fault needs {old!r} in the cell defining {name}"
    cell["source"] = text.replace(old, new, 1)
    return bad


PLANTED = {
    "sdpa": ("attention", "z = (pattern @ v)",
             "z = (F.scaled_dot_product_attention(q, k, v, is_causal=True))"),
    "lmlab model attribute": ("mlp", 'hidden = F.gelu(linear(x, f"blocks.{layer}.mlp.fc"), approximate="tanh")',
                              "hidden = model.blocks[layer].mlp.act(model.blocks[layer].mlp.fc(x))"),
    "lmlab import": ("rotate", "def rotate(x):", "from lmlab import models\n\n\ndef rotate(x):"),
    "torch.nn module": ("linear", "return x @ weights",
                        "return torch.nn.Linear(1, 1)(x) if False else x @ weights"),
    "numpy": ("layer_norm", "mean = x.mean(-1, keepdim=True)", "mean = np.mean(x.numpy(), -1, keepdims=True)"),
}


@pytest.mark.parametrize("fault", sorted(PLANTED))
def test_a_planted_violation_fails(chapter, fault):
    name, old, new = PLANTED[fault]
    assert scratch_problems(chapter) == []
    problems = scratch_problems(_plant(chapter, name, old, new))
    assert problems, f"planted fault {fault!r} was not caught"


def test_a_missing_allclose_claim_fails(chapter):
    bad = copy.deepcopy(chapter)
    for cell in bad["cells"]:
        if "remove-cell" in _tags(cell):
            cell["source"] = _source(cell).replace("torch.allclose(logits, lmlab_logits", "bool(logits.shape == lmlab_logits.shape")
    assert any("allclose" in p for p in scratch_problems(bad))


def test_weights_from_elsewhere_fail(chapter):
    bad = copy.deepcopy(chapter)
    for cell in bad["cells"]:
        if "weights = model.state_dict()" in _source(cell):
            cell["source"] = _source(cell).replace("weights = model.state_dict()",
                                                   "weights = {n: p for n, p in model.named_parameters()}")
    assert any("state_dict" in p for p in scratch_problems(bad))


def test_a_hidden_or_long_scratch_cell_fails(chapter):
    bad = copy.deepcopy(chapter)
    cell = _cell_defining(bad, "gpt")
    cell["metadata"].setdefault("tags", []).append("hide-input")
    cell["source"] = _source(cell) + "\n" + "\n".join(f"pad_{i} = {i}" for i in range(MAX_LINES))
    problems = scratch_problems(bad)
    assert any("hidden" in p for p in problems) and any("lines" in p for p in problems)
