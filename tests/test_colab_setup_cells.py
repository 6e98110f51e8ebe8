"""The MiniLM setup cell (tools/nbtools.py): present, right after the first setup cell, exactly in the
notebooks that load the packaged MiniLM, and accepted by the hygiene check."""
from __future__ import annotations

import json

import nbformat

import nbtools


def _nb(*cells: str) -> dict:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells[0].metadata["tags"] = [nbtools.SETUP_TAG]
    return json.loads(nbformat.writes(nb))


def _write(tmp_path, nb: dict, name="x.ipynb"):
    path = tmp_path / name
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def test_setup_cells_are_added_where_minilm_is_loaded_and_only_there(tmp_path):
    setup = nbtools.setup_cell_source()
    uses = _nb(setup, "import lmlab", "m, tok = lmlab.hub.load_minilm()")
    plain = _nb(setup, "import lmlab", "print(1)")
    assert nbtools.uses_minilm(uses) and not nbtools.uses_minilm(plain)
    fixed = nbtools.with_setup_cells(uses)
    assert nbtools.source(fixed["cells"][1]) == nbtools.MINILM_SETUP_CELL
    assert fixed["cells"][1]["metadata"]["tags"] == [nbtools.SETUP_TAG]
    assert nbtools.with_setup_cells(fixed) == fixed  # idempotent
    assert nbtools.setup_cells(fixed) == [0, 1] and nbtools.setup_cells(plain) == [0]
    assert nbtools.hygiene_problems(_write(tmp_path, fixed)) == []
    assert nbtools.with_setup_cells(plain) == plain
    # planted faults: the cell missing where MiniLM is loaded; the cell where it is not
    missing = nbtools.hygiene_problems(_write(tmp_path, uses, "missing.ipynb"))
    assert any("MiniLM setup cell" in p for p in missing), missing
    extra = json.loads(json.dumps(plain))
    extra["cells"].insert(1, fixed["cells"][1])
    problems = nbtools.hygiene_problems(_write(tmp_path, extra, "extra.ipynb"))
    assert any("does not load MiniLM" in p for p in problems), problems
    assert nbtools.with_setup_cells(extra) == plain


def test_the_minilm_setup_cell_installs_the_extra_from_the_first_cells_source():
    cell = nbtools.MINILM_SETUP_CELL
    assert cell.startswith("# @title ") and "if _on_colab:" in cell
    assert '%pip install -q "lmlab[minilm] @ {_lmlab_source}"' in cell
    assert "_lmlab_source" in nbtools.setup_cell_source() and "_on_colab" in nbtools.setup_cell_source()
