"""Change the course repository's URL (and optionally branch) everywhere it is spelled out.

    python tools/set_repo_url.py https://github.com/NEW-ORG/NEW-REPO [--branch BRANCH]
    python tools/set_repo_url.py --check        # report places that disagree with _config.yml

The URL lives in ``_config.yml`` (``repository.url``, ``repository.branch``). Some places must spell it
out literally, because no build step reaches them: the README's Colab links, clone command and the
published site's address (GitHub Pages, ``https://ORG.github.io/REPO/``), every notebook's setup cell
(its default ``pip install`` source), CONTRIBUTING.md, ``lib/``'s metadata. This
command rewrites ``_config.yml`` and every text file of the repository that mentions the old URL, then
checks that they all agree (``tests/test_repo_url.py`` runs the same check).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbtools  # noqa: E402

TEXT_SUFFIXES = {".md", ".ipynb", ".yml", ".yaml", ".toml", ".py", ".txt", ".cfg", ".rst", ".bib", ".json"}
BRANCH_RE = re.compile(r"^[A-Za-z0-9._/-]+$")
COLAB_RE = re.compile(r"colab\.research\.google\.com/github/([^/\s\"')]+/[^/\s\"')]+)/blob/([^/\s\"')]+)/([^\s\"')]+)")
PIP_RE = re.compile(r"git\+https://github\.com/[^\s\"'@]+@[^\s\"'#]+#subdirectory=lib")
PAGES_RE = re.compile(r"https://([A-Za-z0-9-]+)\.github\.io/([A-Za-z0-9._-]+)")


def pages_url(url: str) -> str:
    """The site GitHub Pages publishes for a repository: ``https://ORG.github.io/REPO/`` (GitHub writes
    the owner in lower case). ``.github/workflows/book.yml`` deploys the book there."""
    org, repo = nbtools.github_slug(url).split("/")
    return f"https://{org.lower()}.github.io/{repo}/"


def text_files(root: Path) -> list[Path]:
    """The repository's text files: git's tracked and untracked-but-not-ignored files, else a walk."""
    root = Path(root)
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                             text=True, check=True).stdout
        paths = [root / line for line in out.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in root.rglob("*")
                 if not (set(p.relative_to(root).parts) & (nbtools.SKIP_DIRS | {"__pycache__", "artifacts"}))]
    return sorted(p for p in paths if p.is_file() and p.suffix in TEXT_SUFFIXES)


def rewrite_config(text: str, url: str, branch: str) -> str:
    """``_config.yml`` with ``repository.url`` and ``repository.branch`` replaced (comments kept)."""
    block = re.search(r"^repository:\n((?:[ \t]+.*\n?|\n)*)", text, flags=re.M)
    if not block:
        raise ValueError("_config.yml has no `repository:` block")
    body = block.group(1)
    body, n_url = re.subn(r"^(\s+url\s*:\s*)\S+", lambda m: m.group(1) + url, body, count=1, flags=re.M)
    body, n_branch = re.subn(r"^(\s+branch\s*:\s*)\S+", lambda m: m.group(1) + branch, body, count=1, flags=re.M)
    if not (n_url and n_branch):
        raise ValueError("_config.yml's repository block must have `url:` and `branch:` lines")
    return text[:block.start(1)] + body + text[block.end(1):]


def set_repo_url(root: Path, new_url: str, new_branch: str | None = None) -> list[Path]:
    """Rewrite the repository URL (and branch) everywhere under ``root``; returns the changed files."""
    root = Path(root)
    new_url = new_url.rstrip("/").removesuffix(".git")
    new_slug = nbtools.github_slug(new_url)  # validates: Colab opens notebooks from GitHub only
    old_url, old_branch = nbtools.repository(root)
    old_slug = nbtools.github_slug(old_url)
    new_branch = new_branch or old_branch
    if not BRANCH_RE.match(new_branch):
        raise ValueError(f"branch must be a git branch name like 'main', got {new_branch!r}")

    replacements = [  # most specific first
        (nbtools.pip_source(old_url, old_branch), nbtools.pip_source(new_url, new_branch)),
        (f"colab.research.google.com/github/{old_slug}/blob/{old_branch}/",
         f"colab.research.google.com/github/{new_slug}/blob/{new_branch}/"),
        (f"github.com/{old_slug}/blob/{old_branch}/", f"github.com/{new_slug}/blob/{new_branch}/"),
        (f"github.com/{old_slug}/tree/{old_branch}", f"github.com/{new_slug}/tree/{new_branch}"),
        (old_url, new_url),
        (f"github.com/{old_slug}", f"github.com/{new_slug}"),
        (pages_url(old_url).removeprefix("https://").rstrip("/"), pages_url(new_url).removeprefix("https://").rstrip("/")),
    ]
    changed = []
    config = root / "_config.yml"
    for path in text_files(root):
        if path.resolve() == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8")
        new = rewrite_config(text, new_url, new_branch) if path.resolve() == config.resolve() else text
        for old, repl in replacements:
            new = new.replace(old, repl)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def check(root: Path = nbtools.ROOT) -> list[str]:
    """Every place under ``root`` that disagrees with ``_config.yml``'s repository URL and branch."""
    root = Path(root)
    url, branch = nbtools.repository(root)
    slug, expected_pip = nbtools.github_slug(url), nbtools.pip_source(url, branch)
    problems = []
    for path in text_files(root):
        rel = path.relative_to(root)
        if path.resolve() == Path(__file__).resolve() or rel.parts[0] == "tests":  # tests build their own
            continue
        text = path.read_text(encoding="utf-8")
        for m in COLAB_RE.finditer(text):
            if (m.group(1), m.group(2)) != (slug, branch):
                problems.append(f"{rel}: Colab link {m.group(0)!r} is not for {slug} on branch {branch}")
            target = m.group(3).split("#")[0]
            if target.endswith(".ipynb") and not (root / target).is_file():
                problems.append(f"{rel}: Colab link {m.group(0)!r} names a notebook that does not exist")
        for m in PIP_RE.finditer(text):
            if m.group(0) != expected_pip:
                problems.append(f"{rel}: pip source {m.group(0)!r} should be {expected_pip!r}")
    readme = root / "README.md"
    if readme.is_file() and url not in readme.read_text(encoding="utf-8"):
        problems.append(f"README.md does not mention the repository URL {url}")
    site = pages_url(url)
    if readme.is_file() and site not in readme.read_text(encoding="utf-8"):
        problems.append(f"README.md does not give the site's URL {site}")
    for path in text_files(root):  # the site's address with another owner: left over from a move
        rel = path.relative_to(root)
        if path.resolve() == Path(__file__).resolve() or rel.parts[0] == "tests":
            continue
        for m in PAGES_RE.finditer(path.read_text(encoding="utf-8")):
            if m.group(2) == slug.split("/")[1] and f"{m.group(0)}/" != site:
                problems.append(f"{rel}: site URL {m.group(0)!r} is not {site}")
    expected_cell = nbtools.setup_cell_source(root)
    for nb in nbtools.all_notebooks(root):
        if nb.is_file():
            cells = nbtools.code_cells(nbtools.load(nb))
            if not cells or nbtools.source(cells[0]) != expected_cell:
                problems.append(f"{nb.relative_to(root)}: first code cell is not the setup cell for {url}@{branch}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Change the course repository's URL everywhere.")
    parser.add_argument("url", nargs="?", help="the new URL, https://github.com/ORG/REPO")
    parser.add_argument("--branch", help="the new branch (default: keep the current one)")
    parser.add_argument("--check", action="store_true", help="only report disagreements")
    parser.add_argument("--root", type=Path, default=nbtools.ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.check:
        if not args.url:
            parser.error("give the new URL (https://github.com/ORG/REPO), or --check")
        for path in set_repo_url(args.root, args.url, args.branch):
            print(f"rewrote {path.relative_to(args.root)}")
    problems = check(args.root)
    for problem in problems:
        print(problem)
    if not problems:
        url, branch = nbtools.repository(args.root)
        print(f"all places agree: {url} (branch {branch})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
