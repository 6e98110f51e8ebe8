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
