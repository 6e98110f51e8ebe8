"""The book is deterministic: every notebook executed a second time in the book's own environment
(build mode, a fresh lmlab cache, no network) shows exactly what the book build showed.

This is the strict half of the determinism gates. The build and this second execution run on the same
machine with the same thread count and the same seeds, so every cell must agree, figure data, printed
numbers and glued values included (after the allowlist of :data:`gates.outputs.VOLATILE`: element ids,
memory addresses, wall times, temporary paths). A cell that samples without a seed, or reads the clock,
fails here. (The Colab replay, ``tests/test_replay.py``, runs with a seed offset and compares only the
cells that must be the same on every machine.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import nbtools
from conftest import ROOT, BookBuild, offline_command
from gates import outputs
from test_replay import NOTEBOOKS, _tiny_notebook, book_executed

DRIVER = ROOT / "tests" / "gates" / "replay_driver.py"


def execute_like_the_book(source: Path, work: Path, *, extra_env: dict[str, str] | None = None) -> dict:
    """Execute ``source`` as the book build does (build mode, fresh cache, its own folder as working
    directory, offline where possible); returns the executed notebook (raises if a cell failed)."""
    work.mkdir(parents=True, exist_ok=True)
    executed, result = work / source.name, work / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMLAB_")}
    env.update({"LMLAB_BOOK": "1", "LMLAB_CACHE": str(work / "lmlab-cache"), "PYTHONUNBUFFERED": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                **(extra_env or {})})
    prefix, _ = offline_command()
    cmd = [*prefix, sys.executable, str(DRIVER), str(source), str(executed), str(result),
           "--kernel", "python3", "--cwd", str(source.parent), "--timeout", "600"]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600)
    if not result.is_file():
        raise RuntimeError(f"the notebook driver failed:\n{proc.stdout[-3000:]}")
    record = json.loads(result.read_text(encoding="utf-8"))
    if record["error"]:
        raise RuntimeError(f"{source.name} failed when executed again: {record['error']}")
    return json.loads(executed.read_text(encoding="utf-8"))


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_book_is_deterministic(book: BookBuild, tmp_path: Path, docname: str):
    built, built_glue, where = book_executed(book, docname)
    again = execute_like_the_book(nbtools.source_of(docname), tmp_path)
    comparison = outputs.compare_notebooks(built, again, skip_first_code_cell=False)
    glue = outputs.compare_glue(built_glue, outputs.glue_in_notebook(again))
    problems = [str(d) for d in comparison.differences] + glue
    assert comparison.compared_items > 0 or docname == "intro", f"{docname}: nothing was compared"
    assert not problems, (f"{docname}: a second execution in the book's environment differs from the build "
                          f"({where}):\n" + "\n".join(problems))


def test_determinism_catches_an_unseeded_cell(tmp_path: Path):
    """Planted fault: a cell that samples without a seed differs between two executions."""
    nb_path = _tiny_notebook(tmp_path / "unseeded.ipynb", "print('setup')",
                             "import lmlab\nlmlab.seed_everything(0)\nimport random\nprint(random.random())",
                             "print(random.SystemRandom().random())",  # the OS's entropy: never the same
                             "import torch\nprint(torch.randn(2).tolist())")  # torch's global generator: seeded above
    a = execute_like_the_book(nb_path, tmp_path / "a")
    b = execute_like_the_book(nb_path, tmp_path / "b")
    comparison = outputs.compare_notebooks(a, b, skip_first_code_cell=False)
    assert [d.cell for d in comparison.differences] == [2], [str(d) for d in comparison.differences]
