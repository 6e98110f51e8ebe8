"""What the reader sees is teaching (issues 22 and 23), checked on every notebook of the book
(:mod:`gates.teaching`): no bookkeeping in visible cells, no name a visible cell uses that only a removed
cell defines, no bare True/False shown, no hand-typed cross-reference numbers, a "What does this do?"
dropdown after the first use of each experiment function, exercise tiers, removed cells as Colab forms,
the "Where it fails" labels. Each check has a planted fault (an in-memory modified copy) it must catch.

Fast (syntax trees only), except :func:`test_no_executed_visible_output_is_a_bare_boolean`, which reads
the shared book build's executed notebooks (conftest's ``book``; ``LMLAB_BOOK_DIR`` reuses a build).
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

import nbtools
from conftest import ROOT, BookBuild
from gates import teaching

NOTEBOOKS = nbtools.course_notebooks()
IDS = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS]
CHAPTERS = [p for p in NOTEBOOKS if teaching.chapter_number(p) is not None]


def _report(path: Path, problems: list[str]) -> str:
    return f"{path.relative_to(ROOT)}: {len(problems)} problem(s):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("check", list(teaching.CHECKS))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook(path: Path, check: str):
    problems = teaching.CHECKS[check](nbtools.load(path))
    assert not problems, _report(path, problems)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_has_its_fails_label(path: Path):
    problems = teaching.fails_label_problems(nbtools.load(path), teaching.chapter_number(path))
    assert not problems, _report(path, problems)


def test_the_setup_cell_is_a_colab_form():
    """The setup cell (its text comes from nbtools) is collapsed on Colab like every removed cell."""
    first = nbtools.setup_cell_source().splitlines()[0]
    assert first.startswith("# @title "), f"the setup cell starts with {first!r}, not '# @title ...' (tools/nbtools.py)"


# --- planted faults ------------------------------------------------------------------------------

def _code(text: str, *tags: str, **metadata) -> dict:
    meta = dict(metadata)
    if tags:
        meta["tags"] = list(tags)
    return {"cell_type": "code", "metadata": meta, "source": text, "outputs": [], "execution_count": None}


def _md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _chapter() -> tuple[Path, dict]:
    path = next(p for p in CHAPTERS if teaching.chapter_number(p) == 2)
    return path, nbtools.load(path)


def _insert(nb: dict, *cells: dict, at: int | None = None) -> dict:
    nb = copy.deepcopy(nb)
    at = len(nb["cells"]) if at is None else at
    nb["cells"][at:at] = list(cells)
    return nb


def _new(problems_after: list[str], problems_before: list[str]) -> list[str]:
    return [p for p in problems_after if p not in problems_before]


PLANTED = {
    "bookkeeping": [_code("from lmlab import claim\nclaim(1 + 1 == 2, 'arithmetic')")],
    "undefined names": [_code("hidden_only = 3", "remove-cell"), _code("print(hidden_only * 2)")],
    "bare booleans": [_code("result = 2\nresult == 2")],
    "cross-references": [_md("As in {ref}`exercise 3 <ch02-softmax>` and section 2, see Exercise 5's hint.")],
    "experiment dropdowns": [_code("import lmlab.experiments as ex_planted\nex_planted.lottery_ticket()"),
                             _md("The tickets win.")],
    "exercise tiers": [_md("```{exercise} A planted exercise\n:label: planted\n\nDo it.\n```")],
    "colab forms": [_code("x_planted = 1", "remove-cell")],
}


@pytest.mark.parametrize("check", list(teaching.CHECKS))
def test_planted_fault_is_caught(check: str):
    path, nb = _chapter()
    before = teaching.CHECKS[check](nb)
    planted = _insert(nb, *PLANTED[check])
    found = _new(teaching.CHECKS[check](planted), before)
    assert found, f"the {check} check missed its planted fault in a copy of {path.name}"


def test_planted_fault_first_exercise_must_be_a_warm_up():
    nb = {"cells": [_md("```{exercise} Hard (stretch)\n:label: a\n\nx\n```"),
                    _md("```{exercise} Easy (warm-up)\n:label: b\n\nx\n```")]}
    assert any("first exercise" in p for p in teaching.tier_problems(nb))
    nb["cells"].reverse()
    assert not teaching.tier_problems(nb)


def test_planted_fault_missing_fails_label():
    path, nb = _chapter()
    n = teaching.chapter_number(path)
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = nbtools.source(cell).replace(f"(fails-ch{n})=", "")
    assert teaching.fails_label_problems(nb, n)
    good = _insert(nb, _md(f"(fails-ch{n})=\n## Where it fails\n\nText."))
    assert not teaching.fails_label_problems(good, n)


def test_planted_fault_removed_cell_without_form_metadata():
    nb = {"cells": [_code("# @title Glue the numbers\nx = 1", "remove-cell")]}
    assert any("cellView" in p for p in teaching.form_problems(nb))
    nb["cells"][0]["metadata"]["cellView"] = "form"
    assert not teaching.form_problems(nb)


def test_what_counts_as_defined_is_precise():
    """No noise: loop and comprehension targets, parameters, later defs called from function bodies,
    with/except targets, walrus, imports and IPython names are all defined; hide-input cells count."""
    fine = [
        _code("import numpy as np\nfrom lmlab import viz as v"),
        _code("def f(a, *rest, k=np.pi, **kw):\n    return a + g() + len(rest) + k\ndef g():\n    return 1"),
        _code("squares = [i * i for i in range(3) if i]\nfor j, s in enumerate(squares):\n    last = j\nprint(last)"),
        _code("with open('x') as fh:\n    pass", "raises-exception"),
        _code("try:\n    pass\nexcept ValueError as err:\n    print(err)\nif (n := 3) > 2:\n    display(n)"),
        _code("helper = lambda q: q + 1", "hide-input"),
        _code("%time helper(1)\nprint(helper(v.__name__ and 1))"),
        _code("class A:\n    z = 1\n    def m(self):\n        return self.z + helper(1)"),
    ]
    assert not teaching.undefined_name_problems({"cells": fine})
    wrong = [_code("y = 1", "remove-input"), _code("x = x + 1"), _code("def f():\n    return y")]
    problems = "\n".join(teaching.undefined_name_problems({"cells": wrong}))
    assert "x (line 1)" in problems and "y (line 2)" in problems


def test_dropdown_rules():
    """The first use needs the dropdown right after it (removed cells between are not shown, so they do
    not count); a later use does not; an empty dropdown does not count; imported names are followed."""
    explainer = _md(":::{dropdown} What does this do?\nIt trains 20 models and keeps the best.\n:::")
    nb = {"cells": [_code("from lmlab.train import train as fit\nfit(m)"), _code("# @title g", "remove-cell"),
                    explainer, _code("fit(m)")]}
    assert not teaching.dropdown_problems(nb)
    nb["cells"][2] = _md(":::{dropdown} What does this do?\n:::")
    assert teaching.dropdown_problems(nb)
    nb = {"cells": [_code("lmlab.variants.compare(a)\nmeasure.evaluate(b)"), _md("Nothing here.")]}
    assert "variants.compare, measure.evaluate" in teaching.dropdown_problems(nb)[0]


def test_crossref_rules():
    fine = ("Chapter 2 and {numref}`ch02-softmax`, [the section on heads](#heads), layer 2, "
            "`figure 3` in code, $\\text{table } 2$, 3 sections")
    assert not teaching.crossref_text_problems(fine)
    for bad in ("exercise 3", "Exercise 5's hint", "section 2", "figure 4", "Fig. 2", "table 1", "§2",
                "[section 6](#x)", "{ref}`exercise 2 <ch02-attention>`", "exercises 3 and 4"):
        assert teaching.crossref_text_problems(bad), bad


# --- executed outputs (the shared book build) ----------------------------------------------------

def test_no_executed_visible_output_is_a_bare_boolean(book: BookBuild):
    executed = sorted(book.executed_dir.rglob("*.ipynb"))
    if not executed:
        pytest.skip(f"no executed notebooks in {book.executed_dir}")
    problems = []
    for path in executed:
        problems += [f"{path.relative_to(book.executed_dir)}: {p}"
                     for p in teaching.bool_output_problems(json.loads(path.read_text(encoding="utf-8")))]
    assert not problems, "\n".join(problems)


def test_planted_fault_bool_output():
    cell = _code("check(f)")
    cell["outputs"] = [{"output_type": "execute_result", "data": {"text/plain": "False"}, "metadata": {},
                        "execution_count": 1}]
    printed = _code("print(ok)")
    printed["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "checked\ntensor(True)\n"}]
    hidden = copy.deepcopy(cell)
    hidden["metadata"]["tags"] = ["remove-cell"]
    problems = teaching.bool_output_problems({"cells": [cell, printed, hidden]})
    assert len(problems) == 2, problems


# --- tools/forms.py ------------------------------------------------------------------------------

def test_forms_tool_adds_cell_view_and_reports_missing_titles(tmp_path: Path):
    nb = {"cells": [_code(nbtools.setup_cell_source(), "remove-cell"),
                    _code("# @title Glue the numbers\nx = 1", "remove-cell"),
                    _code("y = 2", "remove-cell"),
                    _code("# @title Solution\nz = 3")],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    nbtools.save(nb, path)
    tool = [sys.executable, str(ROOT / "tools" / "forms.py")]
    written = path.read_bytes()
    check = subprocess.run([*tool, "--check", str(path)], capture_output=True, text=True)
    assert check.returncode == 1 and "cell 1" in check.stdout and "cell 2" in check.stdout, check.stdout
    assert path.read_bytes() == written, "--check must not write"
    fix = subprocess.run([*tool, str(path)], capture_output=True, text=True)
    assert fix.returncode == 1, "a removed cell without a title is still a problem after fixing"
    cells = nbtools.load(path)["cells"]
    assert cells[1]["metadata"]["cellView"] == "form" and cells[3]["metadata"]["cellView"] == "form"
    assert "cellView" not in cells[2]["metadata"] and "missing" in fix.stdout
    nb["cells"].pop(2)
    nbtools.save(nb, path)
    assert subprocess.run([*tool, str(path)], capture_output=True, text=True).returncode == 0
    assert subprocess.run([*tool, "--check", str(path)], capture_output=True, text=True).returncode == 0


# --- the pages around the chapters ---------------------------------------------------------------

def test_failures_page_follows_the_chapters_and_execution_sits_under_instructors():
    import yaml

    docs = nbtools.toc_docnames()
    chapters = [d for d in docs if d.startswith("chapters/")]
    assert docs[docs.index(chapters[-1]) + 1] == "failures", docs
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    top = [entry["file"] for entry in toc["chapters"]]
    assert "execution" not in top, "the execution statistics are not a reader's page: list them under instructors"
    instructors = next(entry for entry in toc["chapters"] if entry["file"] == "instructors")
    assert {"file": "execution"} in instructors.get("sections", [])


def test_failures_page_links_every_chapters_where_it_fails():
    text = (ROOT / "failures.md").read_text(encoding="utf-8")
    for path in CHAPTERS:
        assert f"<fails-ch{teaching.chapter_number(path)}>`" in text, f"failures.md does not link fails-ch{teaching.chapter_number(path)}"
    for failure in ("hallucinat", "agreement", "negation", "wording", "repetition", "calibrat"):
        assert failure in text.lower(), failure
    assert text.count("{cite:") >= 4


@pytest.mark.parametrize("page", ["failures.md", "instructors.md", "execution.md", "glossary.md"])
def test_pages_have_no_hand_typed_cross_reference_numbers(page: str):
    problems = teaching.crossref_text_problems((ROOT / page).read_text(encoding="utf-8"), page)
    assert not problems, "\n".join(problems)


def test_instructors_page_installs_from_the_configured_repository_and_counts_nothing_by_hand():
    import re

    text = (ROOT / "instructors.md").read_text(encoding="utf-8")
    url, branch = nbtools.repository()
    assert f'"git+{url}@{branch}#subdirectory=lib"' in text
    assert "<repository>" not in text
    assert not re.search(r"\b(one|two|three|four|five|six|\d+) optional cells?\b", text), \
        "the number of optional cells changes with the chapters: do not type it"
