"""The glossary: every chapter links the first use of each glossary term to its definition."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import glossary  # noqa: E402
import nbtools  # noqa: E402

CHAPTERS = [p for p in nbtools.course_notebooks(ROOT) if p.parent.name == "chapters"]


def notebook(*markdown: str) -> dict:
    return {"cells": [{"cell_type": "markdown", "metadata": {}, "source": m} for m in markdown],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_glossary_entries_are_parsed():
    entries = glossary.entries()
    assert len(entries) >= 50
    by_term = {e.term: e for e in entries}
    assert by_term["language model"].forms == ("language model", "language models")
    assert "perplexity" in by_term and "attention head" in by_term
    assert len({f.lower() for e in entries for f in e.forms}) == sum(len(e.forms) for e in entries)  # no clash


def test_glossary_page_is_in_the_book():
    assert "glossary" in nbtools.toc_docnames(ROOT)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_links_first_use_of_every_term(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    missing = [f"cell {u.cell}: {u.text!r} ({u.entry.term})"
               for u in glossary.unlinked_first_uses(nb, glossary.entries())]
    assert not missing, (f"{path.name}: first uses not linked to the glossary (run `python tools/glossary.py "
                         f"link {path.relative_to(ROOT)}`): " + "; ".join(missing))


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_not_term_markers_are_consistent(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = glossary.marker_problems(nb, glossary.entries())
    assert not problems, f"{path.name}: " + "; ".join(problems)


# --- the rule itself ------------------------------------------------------------------------------------

def test_headings_code_math_and_roles_are_not_uses():
    entries = glossary.entries()
    nb = notebook("## Perplexity\n\nWe compute `perplexity` and $perplexity$ and {cite:p}`perplexity`.\n\n"
                  "```python\nperplexity = 2\n```\n:::{admonition} Perplexity\n:class: tip\n:::\n")
    assert glossary.unlinked_first_uses(nb, entries) == []


def test_first_plain_use_is_found_case_insensitively_and_in_plural():
    entries = glossary.entries()
    nb = notebook("Intro without terms.", "Two Language Models and a transformer; later a language model.")
    found = {u.entry.term: u for u in glossary.unlinked_first_uses(nb, entries)}
    assert found["language model"].text == "Language Models" and found["language model"].cell == 1
    assert found["transformer"].text == "transformer"
    # whole words only: "tokenization" is its own form, "tokenizers" too, but "tokenish" is nothing
    nb = notebook("tokenish things")
    assert "token" not in {u.entry.term for u in glossary.unlinked_first_uses(nb, entries)}


def test_a_link_after_a_plain_use_does_not_count():
    entries = glossary.entries()
    nb = notebook("The perplexity is low.", "See {term}`perplexity`.")
    assert [u.entry.term for u in glossary.unlinked_first_uses(nb, entries)] == ["perplexity"]
    nb = notebook("See {term}`Perplexity <perplexity>`.", "The perplexity is low.")
    assert glossary.unlinked_first_uses(nb, entries) == []


def test_link_rewrites_first_uses(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(notebook("Language models predict tokens with attention heads.",
                                       "A language model again; attention is all you need.")))
    added = glossary.link(path)
    nb = json.loads(path.read_text())
    text = "".join(nb["cells"][0]["source"])
    assert "{term}`Language models <language models>`" in text
    assert "{term}`tokens`" in text and "{term}`attention heads`" in text
    assert "{term}`attention`" in "".join(nb["cells"][1]["source"])  # "attention" alone, first plain use
    assert added == 4
    assert glossary.unlinked_first_uses(nb, glossary.entries()) == []
    assert glossary.link(path) == 0  # idempotent


def test_a_marked_cell_uses_the_word_in_another_sense():
    entries = glossary.entries()
    # t-SNE's perplexity is a setting, not a language model's perplexity: the marked cell is no use
    tsne = "<!-- not-term: perplexity -->\nThe projection's main setting, its perplexity, is a number of neighbours."
    nb = notebook(tsne)
    assert glossary.unlinked_first_uses(nb, entries) == []
    assert glossary.marker_problems(nb, entries) == []
    # the marker covers its own cell only: a later cell's plain use is the first use, and must be a link
    nb = notebook(tsne, "The model's perplexity is low.")
    found = glossary.unlinked_first_uses(nb, entries)
    assert [(u.entry.term, u.cell) for u in found] == [("perplexity", 1)]
    # a marker names an entry by any of its forms, and several entries at once; other terms still count
    nb = notebook("<!-- not-term: language models, Perplexity -->\nA language model has a perplexity; a token.")
    assert [u.entry.term for u in glossary.unlinked_first_uses(nb, entries)] == ["token"]
    # the marker is a comment: the book and Colab do not show it, and it is not prose
    assert "not-term" not in "".join(c for c, keep in zip(tsne, glossary.prose_mask(tsne)) if keep)


def test_marker_problems_catch_contradictions_and_typos():
    entries = glossary.entries()
    nb = notebook("<!-- not-term: perplexity -->\nt-SNE's {term}`perplexity` is a setting.")
    problems = glossary.marker_problems(nb, entries)
    assert len(problems) == 1 and "cell 0" in problems[0] and "{term}`perplexity`" in problems[0]
    nb = notebook("<!-- not-term: perplexitty -->\nt-SNE's perplexity is a setting.")
    problems = glossary.marker_problems(nb, entries)
    assert len(problems) == 1 and "'perplexitty'" in problems[0]
    # a contradiction is not a first use either: the chapter must still link a real use elsewhere
    nb = notebook("<!-- not-term: perplexity -->\nSee {term}`perplexity`.", "Perplexity is low.")
    assert [u.cell for u in glossary.unlinked_first_uses(nb, entries)] == [1]


def test_link_leaves_marked_cells_alone(tmp_path):
    path = tmp_path / "nb.ipynb"
    cells = ["<!-- not-term: perplexity -->\nThe projection's perplexity is a setting.", "The model's perplexity is 3."]
    path.write_text(json.dumps(notebook(*cells)))
    assert glossary.link(path) == 1
    nb = json.loads(path.read_text())
    assert "".join(nb["cells"][0]["source"]) == cells[0]
    assert "{term}`perplexity`" in "".join(nb["cells"][1]["source"])
