"""Notebook hygiene and the setup cell: no build needed, fast.

Every notebook of the book (and the chapter template) has no committed outputs or execution counts,
a python3 kernel, and the canonical setup cell first; every notebook is in _toc.yml and every toc entry
exists; gated solutions follow the Colab form convention; the setup cell really installs on "Colab"
(forced by LMLAB_FORCE_COLAB=1) and does nothing elsewhere.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import zipfile
from pathlib import Path

import nbformat
import pytest

import nbtools
from conftest import ROOT

NOTEBOOKS = nbtools.all_notebooks()
IDS = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert ROOT / "intro.ipynb" in NOTEBOOKS
    assert nbtools.TEMPLATE in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_hygiene(path: Path):
    problems = nbtools.hygiene_problems(path)
    assert not problems, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_valid_nbformat(path: Path):
    nbformat.validate(nbformat.read(path, as_version=4))


def test_hygiene_check_catches_problems(tmp_path: Path):
    """The checker itself: a notebook with outputs, a count, a wrong kernel and no setup cell fails."""
    nb = nbtools.load(ROOT / "intro.ipynb")
    nb["metadata"]["kernelspec"] = {"name": "ir", "language": "R", "display_name": "R"}
    first = nbtools.code_cells(nb)[0]
    first["source"] = "print('hello')"
    first["execution_count"] = 3
    first["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hello\n"}]
    bad = tmp_path / "bad.ipynb"
    nbtools.save(nb, bad)
    problems = "\n".join(nbtools.hygiene_problems(bad))
    for expected in ("kernelspec", "committed outputs", "execution count", "not the canonical setup cell"):
        assert expected in problems
    nbtools.save(nbtools.strip(nb), bad)
    assert "committed outputs" not in "\n".join(nbtools.hygiene_problems(bad))


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    docnames = nbtools.toc_docnames()
    assert len(docnames) == len(set(docnames)), f"a page is listed twice in _toc.yml: {docnames}"
    missing = [d for d in docnames if nbtools.source_of(d) is None]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"
    listed = {nbtools.source_of(d) for d in docnames}
    unlisted = [p.relative_to(ROOT).as_posix() for p in nbtools.course_notebooks() if p not in listed]
    assert not unlisted, f"notebooks missing from _toc.yml (add `- file: ...`): {unlisted}"
    assert docnames[0] == "intro" and "bibliography" in docnames


def test_colab_urls_are_well_formed():
    url, branch = nbtools.repository()
    slug = nbtools.github_slug(url)
    for path in nbtools.course_notebooks():
        rel = path.relative_to(ROOT).as_posix()
        link = nbtools.colab_url(rel)
        assert link == f"https://colab.research.google.com/github/{slug}/blob/{branch}/{rel}"
        assert re.fullmatch(r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w./-]+\.ipynb", link)


def _marker(cell: dict) -> str | None:
    text = nbtools.source(cell)
    for name in ("solution-start", "solution-end"):
        if re.search(r"^(```|:::)\{" + name + r"\}", text, flags=re.M):
            return name
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_gated_solutions_are_colab_forms(path: Path):
    """Code inside {solution-start}...{solution-end} starts with `# @title Solution` and has cellView form."""
    inside = False
    for i, cell in enumerate(nbtools.load(path)["cells"]):
        marker = _marker(cell)
        if marker == "solution-start":
            assert not inside, f"cell {i}: solution-start inside another solution"
            inside = True
        elif marker == "solution-end":
            assert inside, f"cell {i}: solution-end without solution-start"
            inside = False
        elif inside and cell["cell_type"] == "code":
            assert nbtools.source(cell).startswith("# @title Solution"), f"cell {i} must start with '# @title Solution'"
            assert cell["metadata"].get("cellView") == "form", f"cell {i} needs metadata cellView: form"
    assert not inside, "a solution-start has no solution-end"


def test_intro_has_an_exercise_with_a_gated_solution():
    markers = [_marker(c) for c in nbtools.load(ROOT / "intro.ipynb")["cells"]]
    assert "solution-start" in markers and "solution-end" in markers


# --- the setup cell's behaviour ------------------------------------------------------------------

def _probe_wheel(folder: Path) -> Path:
    """A minimal wheel, ``lmlab_probe``, so the setup cell's pip install can be tested offline."""
    name, version = "lmlab_probe", "0.0.1"
    files = {
        f"{name}.py": b"INSTALLED = True\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def _run_setup_cell(env: dict[str, str], cwd: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(nbtools.setup_cell_source())])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def test_setup_cell_installs_when_forced_to_colab_and_not_otherwise(tmp_path: Path):
    target = tmp_path / "site-packages"
    wheel = _probe_wheel(tmp_path)
    source = f"--no-index --no-deps --target {target} {wheel}"
    # Not on Colab: nothing is installed even though a source is given.
    env = {"LMLAB_PIP_SOURCE": source, "LMLAB_FORCE_COLAB": "0"}
    _run_setup_cell(env, tmp_path)
    assert not (target / "lmlab_probe.py").exists(), "the setup cell installed outside Colab"
    # Forced Colab branch: the cell runs `%pip install` on LMLAB_PIP_SOURCE.
    _run_setup_cell({**env, "LMLAB_FORCE_COLAB": "1"}, tmp_path)
    assert (target / "lmlab_probe.py").read_text() == "INSTALLED = True\n"


def test_setup_cell_default_source_is_the_repository_lib():
    url, branch = nbtools.repository()
    assert f'os.environ.get("LMLAB_PIP_SOURCE", "git+{url}@{branch}#subdirectory=lib")' in nbtools.setup_cell_source()
