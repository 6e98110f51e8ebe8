"""Counting the claims a chapter makes (``lmlab.claim`` calls), so none can quietly disappear.

The seed-offset replay (``tests/test_replay.py``) fails a chapter whose claims hold only for the book's
seed. The easy way out would be to delete the claim; :data:`FLOOR` records how many ``claim()`` calls
each notebook had when the replay started checking seeds (2026-12-04; raised to the counts after the
chapters' rewrite of issues 22 and 23, the same day), and a notebook may not fall below
it. Raise a number when a chapter gains claims; lower one only with the prose that the claim guarded.
"""
from __future__ import annotations

import ast

#: ``claim()`` calls per notebook (path relative to the repository), counted by :func:`count_claims`.
FLOOR = {
    "intro.ipynb": 2,
    "chapters/01-language-models.ipynb": 58,
    "chapters/02-attention.ipynb": 53,
    "chapters/03-semantic-space.ipynb": 49,
    "chapters/04-generation.ipynb": 62,
    "chapters/05-training.ipynb": 47,
    "chapters/06-beyond.ipynb": 44,
}


def _code(cell: dict) -> str:
    src = cell.get("source", "")
    src = "".join(src) if isinstance(src, list) else src
    # IPython magics and shell escapes are not Python: each becomes `pass` at its own indentation, so a
    # block whose body is one magic (the setup cells' `if _on_colab:`) still parses
    return "\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!"))
                     else line for line in src.splitlines())


def count_claims(nb: dict) -> int:
    """The number of calls to a function named ``claim`` (``claim(...)``, ``lmlab.claim(...)``,
    ``env.claim(...)``) in the notebook's code cells, each call site counted once."""
    n = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for node in ast.walk(ast.parse(_code(cell))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                n += name == "claim"
    return n
