"""Build one or a few pages with the book's own settings, fast, into a folder of their own.

    python tools/build_page.py chapters/02-attention.ipynb [more pages] [--out DIR] [--cache DIR]

It makes a temporary book holding `_config.yml`, `_ext/`, `references.bib`, the bibliography page and
the pages you name (the first is the root), builds it in build mode (``LMLAB_BOOK=1``) with
``-W --keep-going`` and prints where the HTML is. The whole book is built by ``make book``; this is for
writing a chapter without executing the others (and without two writers sharing ``_build/``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ["_config.yml", "_ext", "references.bib", "bibliography.md"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pages", nargs="+", help="pages relative to the repository root, e.g. chapters/01-x.ipynb")
    parser.add_argument("--out", help="folder for the temporary book (default: a new temporary folder)")
    parser.add_argument("--cache", help="LMLAB_CACHE to use (default: the environment's, else a fresh one)")
    args = parser.parse_args(argv)

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="lmlab-page-"))
    out.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        src, dst = ROOT / name, out / name
        if dst.is_dir():
            shutil.rmtree(dst)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    stems = []
    for page in args.pages:
        src = (ROOT / page).resolve()
        if not src.exists():
            parser.error(f"no such page: {page}")
        rel = src.relative_to(ROOT)
        (out / rel.parent).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, out / rel)
        stems.append(str(rel.with_suffix("")))
    toc = ["format: jb-book", f"root: {stems[0]}", "chapters:"] + [f"  - file: {s}" for s in stems[1:]]
    toc.append("  - file: bibliography")
    (out / "_toc.yml").write_text("\n".join(toc) + "\n")

    env = dict(os.environ, LMLAB_BOOK="1")
    if args.cache:
        env["LMLAB_CACHE"] = args.cache
    env.setdefault("LMLAB_CACHE", tempfile.mkdtemp(prefix="lmlab-cache-"))
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(bin_dir / "jupyter-book"), "build", str(out), "-W", "--keep-going"]
    print("building:", " ".join(cmd), f"(LMLAB_CACHE={env['LMLAB_CACHE']})", flush=True)
    status = subprocess.call(cmd, env=env)
    print(f"HTML: {out / '_build' / 'html'} (exit {status})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
