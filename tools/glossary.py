"""The glossary's terms, and links from each chapter's first use of a term to its definition.

    python tools/glossary.py check            # list first uses that are not links (exit 1 if any)
    python tools/glossary.py link [NB ...]    # turn each chapter's first unlinked use into a link

A *use* is a case-insensitive, whole-word match of any form an entry declares (its term lines in
``glossary.md``: "language model", "language models") in a chapter's markdown text. Headings,
code (inline and fenced), math, directive lines, roles (``{cite:p}`...```), link targets, HTML and
comments are not text. The first use of each entry in a chapter must be a ``{term}`` link; later uses
may be plain. ``link`` writes ``{term}`original text <form>``` at that first use.

A word can be a glossary form without meaning the glossary's thing: t-SNE's "perplexity" is a setting
of a projection, not a language model's perplexity. Mark such a cell with an HTML comment (invisible
in the book and on Colab), for example ``<!-- not-term: perplexity -->`` (several forms: separate them
with commas). In that cell no form of the named entries counts as a use, and a ``{term}`` link to one
of them is reported as a contradiction; a marker that names no glossary form is reported too.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "glossary.md"

# Spans that are not prose. Order matters: longer constructs first.
_NOT_TEXT = [
    r"```.*?```",                          # fenced code and fenced directives' first lines
    r"~~~.*?~~~",
    r"\$\$.*?\$\$",                        # display math
    r"(?<!\\)\$[^$\n]+?(?<!\\)\$",         # inline math
    r"\{[\w:.-]+\}`[^`]*`",                # roles: {cite:p}`x`, {term}`x`, {glue:text}`x`
    r"`[^`\n]*`",                          # inline code
    r"<!--.*?-->",                         # comments
    r"<[^>\n]+>",                          # HTML tags
    r"\]\([^)\n]*\)",                      # link targets: [text](target)
    r"^[ \t]*#{1,6} .*?$",                 # headings
    r"^[ \t]*:{3,}.*?$",                   # :::{directive} lines
    r"^[ \t]*:[\w-]+:.*?$",                # directive options (":class: tip")
    r"^[ \t]*\|?[ \t]*:?-{3,}.*?$",        # table rules
]
_NOT_TEXT_RE = re.compile("|".join(f"(?:{p})" for p in _NOT_TEXT), re.DOTALL | re.MULTILINE)
_TERM_ROLE_RE = re.compile(r"\{term\}`(?:[^`<]*?<)?([^`<>]+?)>?`")
_NOT_TERM_RE = re.compile(r"<!--\s*not-term:(.*?)-->", re.DOTALL)


@dataclass(frozen=True)
class Entry:
    term: str                 # the first term line (the canonical name)
    forms: tuple[str, ...]    # every term line of the entry


def entries(path: Path = GLOSSARY) -> list[Entry]:
    """The glossary's entries: each definition with the term lines above it."""
    text = path.read_text(encoding="utf-8")
    block = re.search(r"```\{glossary\}\n(.*?)\n```", text, re.DOTALL)
    if not block:
        raise ValueError(f"{path} has no ```{{glossary}} block")
    out, forms = [], []
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        if line.startswith((" ", "\t")):
            if forms:
                out.append(Entry(forms[0], tuple(forms)))
                forms = []
        else:
            forms.append(line.strip())
    return out


def _form_pattern(form: str) -> re.Pattern:
    words = r"\s+".join(re.escape(w) for w in form.split())
    return re.compile(rf"(?<![\w-]){words}(?![\w-])", re.IGNORECASE)


def prose_mask(text: str) -> list[bool]:
    """For each character of a markdown cell, whether it is prose (a place a term can be used)."""
    mask = [True] * len(text)
    for m in _NOT_TEXT_RE.finditer(text):
        for i in range(m.start(), m.end()):
            mask[i] = False
    return mask


def _markdown_cells(nb: dict) -> list[tuple[int, str]]:
    cells = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            src = cell["source"]
            cells.append((i, "".join(src) if isinstance(src, list) else src))
    return cells


def not_term_marks(text: str) -> list[str]:
    """The forms a markdown cell's ``<!-- not-term: ... -->`` comments name (lowercase, in order)."""
    return [f.strip().lower() for m in _NOT_TERM_RE.finditer(text) for f in m.group(1).split(",") if f.strip()]


def _not_terms(text: str, glossary: list[Entry]) -> set[str]:
    """The entries (by term) that a cell marks as not meant in the glossary's sense."""
    by_form = {f.lower(): e for e in glossary for f in e.forms}
    return {by_form[f].term for f in not_term_marks(text) if f in by_form}


def marker_problems(nb: dict, glossary: list[Entry]) -> list[str]:
    """What is wrong with a notebook's not-term markers: unknown forms, and links the marker contradicts."""
    by_form = {f.lower(): e for e in glossary for f in e.forms}
    problems = []
    for cell_index, text in _markdown_cells(nb):
        for form in not_term_marks(text):
            if form not in by_form:
                problems.append(f"cell {cell_index}: not-term marker names {form!r}, which is no glossary form")
        marked = _not_terms(text, glossary)
        for m in _TERM_ROLE_RE.finditer(text):
            entry = by_form.get(m.group(1).strip().lower())
            if entry and entry.term in marked:
                problems.append(f"cell {cell_index}: {m.group(0)} links to '{entry.term}', which a not-term "
                                f"marker in the same cell says is not meant here")
    return problems


@dataclass
class Use:
    entry: Entry
    cell: int
    start: int
    end: int
    text: str
    linked: bool


def first_uses(nb: dict, glossary: list[Entry]) -> dict[str, Use]:
    """Each entry's first use in the notebook (a link or plain prose), by cell and position."""
    by_form = {f.lower(): e for e in glossary for f in e.forms}
    found: dict[str, Use] = {}
    for cell_index, text in _markdown_cells(nb):
        mask = prose_mask(text)
        marked = _not_terms(text, glossary)  # entries this cell uses in another sense
        candidates: list[Use] = []
        for m in _TERM_ROLE_RE.finditer(text):
            entry = by_form.get(m.group(1).strip().lower())
            if entry and entry.term not in marked:
                candidates.append(Use(entry, cell_index, m.start(), m.end(), m.group(0), True))
        for entry in glossary:
            if entry.term in found or entry.term in marked:
                continue
            for form in entry.forms:
                for m in _form_pattern(form).finditer(text):
                    if all(mask[m.start():m.end()]):
                        candidates.append(Use(entry, cell_index, m.start(), m.end(), m.group(0), False))
                        break
        for use in sorted(candidates, key=lambda u: (u.start, -u.end)):
            found.setdefault(use.entry.term, use)
    return found


def unlinked_first_uses(nb: dict, glossary: list[Entry]) -> list[Use]:
    """First uses that are not links, in document order."""
    return sorted((u for u in first_uses(nb, glossary).values() if not u.linked), key=lambda u: (u.cell, u.start))


def _overlaps(a: Use, b: Use) -> bool:
    return a.cell == b.cell and a.start < b.end and b.start < a.end


def link(path: Path, glossary: list[Entry] | None = None) -> int:
    """Rewrite a notebook so every entry's first use is a link; returns how many links were added."""
    glossary = glossary or entries()
    nb = json.loads(path.read_text(encoding="utf-8"))
    added = 0
    for _ in range(len(glossary)):  # each pass links non-overlapping first uses; later passes see them
        uses = unlinked_first_uses(nb, glossary)
        if not uses:
            break
        chosen: list[Use] = []
        for use in sorted(uses, key=lambda u: -(u.end - u.start)):  # prefer the longest match
            if not any(_overlaps(use, c) for c in chosen):
                chosen.append(use)
        for use in sorted(chosen, key=lambda u: (u.cell, -u.start)):  # right to left within a cell
            cell = nb["cells"][use.cell]
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            form = next(f for f in use.entry.forms if _form_pattern(f).fullmatch(use.text))
            role = f"{{term}}`{use.text}`" if use.text == form else f"{{term}}`{use.text} <{form}>`"
            src = src[:use.start] + role + src[use.end:]
            cell["source"] = src.splitlines(keepends=True)
            added += 1
    if added:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return added


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "tools"))
    import nbtools

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check", "link"])
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    glossary = entries()
    notebooks = args.notebooks or [p for p in nbtools.course_notebooks(ROOT) if p.parent.name == "chapters"]
    problems = 0
    for path in notebooks:
        if args.command == "link":
            print(f"{path}: {link(path, glossary)} links added")
        else:
            nb = json.loads(Path(path).read_text(encoding="utf-8"))
            for use in unlinked_first_uses(nb, glossary):
                problems += 1
                print(f"{path}: cell {use.cell}: first use of '{use.entry.term}' ({use.text!r}) is not a link")
            for problem in marker_problems(nb, glossary):
                problems += 1
                print(f"{path}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
