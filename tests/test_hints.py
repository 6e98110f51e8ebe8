"""A checker's messages and hints may only name modules and functions the chapter that calls it has imported
(outside its solution cells) or that its exercise text spells out: following a hint must never end in a
NameError. Checked statically over every string a checker can print (its own, and those of the helpers
and tables it uses, the shared reporting core included), so hints no mutant triggers are covered too;
test_checker_mutations.py checks the printed ones as well."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from checker_support import allowed_names, chapter_of, imported_names, names_used, unimported
from lmlab import exercises as ex

SOURCE = Path(ex.__file__).read_text(encoding="utf-8")
TREE = ast.parse(SOURCE)
GLOBALS = {node.name if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else node.targets[0].id: node
           for node in TREE.body
           if isinstance(node, (ast.FunctionDef, ast.ClassDef)) or
           (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name))}


def _strings(node: ast.AST) -> list[str]:
    """Every string literal in ``node`` (docstrings left out; f-strings by their literal parts, joined)."""
    found = []
    for child in ast.walk(node):
        if isinstance(child, (ast.FunctionDef, ast.ClassDef)) and child.body and \
                isinstance(child.body[0], ast.Expr) and isinstance(child.body[0].value, ast.Constant):
            child.body[0].value._docstring = True
        if isinstance(child, ast.JoinedStr):
            found.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in child.values))
        elif isinstance(child, ast.Constant) and isinstance(child.value, str) and not getattr(child, "_docstring", 0):
            found.append(child.value)
    return found


def strings_reachable(name: str) -> list[str]:
    """The strings of ``name`` and of every module-level function, class or table it refers to."""
    seen, todo, out = set(), [name], []
    while todo:
        current = todo.pop()
        if current in seen or current not in GLOBALS:
            continue
        seen.add(current)
        node = GLOBALS[current]
        out += _strings(node)
        todo += [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in GLOBALS]
    return out


CHECKER_NAMES = sorted(ex.CHECKERS)


def test_every_checker_but_one_is_called_by_a_chapter():
    """greedy_next belongs to no chapter (entropy is chapter 4's warm-up): its hints may name torch only."""
    assert set(CHECKER_NAMES) - set(chapter_of()) == {"greedy_next"}


@pytest.mark.parametrize("name", CHECKER_NAMES)
def test_hints_name_only_what_the_chapter_imported(name):
    bad = {text: unimported(name, text) for text in strings_reachable(f"check_{name}") if unimported(name, text)}
    where = chapter_of().get(name)
    assert not bad, f"check_{name} ({where.name if where else 'no chapter'}) names what the chapter never " \
                    f"imported: {bad}"


def test_the_parser_sees_each_chapters_imports():
    ch2 = next(p for p in chapter_of().values() if p.name.startswith("02"))
    ch5 = next(p for p in chapter_of().values() if p.name.startswith("05"))
    assert {"torch", "np"} <= imported_names(ch2) and "math" not in imported_names(ch2)
    assert {"torch", "F", "math"} <= imported_names(ch5)
    assert names_used("divide by math.sqrt(d_k); F.softmax(x, dim=-1); x.max(dim=-1)") == {"math", "F"}


def test_a_planted_hint_naming_an_unimported_module_fails():
    """The test above would catch the hint the issue reports: math.sqrt(d_k) in chapter 2's attention."""
    assert unimported("attention", "Hint: scores = q @ k.transpose(-2, -1) / math.sqrt(d_k).") == {"math"}
    assert unimported("swiglu", "Hint: use F.silu on x @ w_gate.") == {"F"}
    assert not unimported("attention", "Hint: divide by d_k ** 0.5; torch.softmax(scores, dim=-1).")
    assert "math" not in allowed_names("greedy_next")
