"""Colab forms: every removed cell (and every ``# @title`` cell) gets ``"cellView": "form"`` metadata.

Colab shows a code cell whose first line is ``# @title <text>`` and whose metadata has
``"cellView": "form"`` collapsed to its title. The book removes its bookkeeping cells (tag
``remove-cell``); on Colab they are forms. This tool adds the metadata to every code cell that starts
with ``# @title`` and reports the removed cells that have no title yet (write one by hand: it says what
the cell does). The setup cell (first cell, text from ``tools/nbtools.py``) is left to nbtools.

    python tools/forms.py [--check] [NOTEBOOK ...]   # default: every course notebook and the template

Exit status 1 when a removed cell has no title, or (with ``--check``) when a file would change.
``--check`` writes nothing.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbtools  # noqa: E402

TITLE = re.compile(r"#\s*@title\s+\S")


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _is_setup(i: int, cell: dict) -> bool:
    return i == 0 and nbtools.source(cell).startswith("# Setup:")


def fix(nb: dict) -> tuple[dict, list[str], list[str]]:
    """(fixed copy, cells given cellView form, removed cells without a title), cells as 'cell N (...)'."""
    nb = copy.deepcopy(nb)
    changed, untitled = [], []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        text = nbtools.source(cell)
        first = (text.splitlines() or [""])[0]
        where = f"cell {i} ({first[:60]!r})"
        if TITLE.match(first):
            if cell.setdefault("metadata", {}).get("cellView") != "form":
                cell["metadata"]["cellView"] = "form"
                changed.append(where)
        elif "remove-cell" in _tags(cell) and not _is_setup(i, cell):
            untitled.append(where)
    return nb, changed, untitled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report only; exit 1 if a file would change")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.notebooks or nbtools.all_notebooks()
    status = 0
    for path in paths:
        nb = nbtools.load(path)
        fixed, changed, untitled = fix(nb)
        for where in changed:
            print(f"{path}: {where}: {'needs' if args.check else 'added'} cellView: form")
        for where in untitled:
            print(f"{path}: {where}: removed cell, '# @title <what it does>' missing (write it by hand)")
        if untitled or (args.check and changed):
            status = 1
        if changed and not args.check:
            # the chapters' own key order, as the chapter scripts write them (round-trips byte for byte)
            path.write_text(json.dumps(fixed, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
