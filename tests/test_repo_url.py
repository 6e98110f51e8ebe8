"""The repository URL lives in _config.yml; every place that spells it out agrees, and
tools/set_repo_url.py changes all of them at once."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nbtools
import set_repo_url
from conftest import ROOT


def test_every_place_agrees_with_config():
    problems = set_repo_url.check(ROOT)
    assert not problems, "\n".join(problems)


def test_config_sets_repository_and_colab_explicitly():
    config = nbtools.read_config()
    url, branch = nbtools.repository()
    assert url.startswith("https://github.com/") and branch
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    # Without recursive_update, html_theme_options set under sphinx.config would wipe the buttons.
    assert config["sphinx"].get("recursive_update") is True


def test_readme_opens_the_intro_on_colab():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert nbtools.colab_url("intro.ipynb") in readme
    assert f"git clone {nbtools.repository()[0]}" in readme


def test_readme_gives_the_site_url():
    """The site GitHub Pages serves (.github/workflows/book.yml deploys it), from _config.yml's repository."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    url = nbtools.repository()[0]
    assert set_repo_url.pages_url(url) in readme
    assert set_repo_url.pages_url("https://github.com/Some-Org/some-repo") == "https://some-org.github.io/some-repo/"


def _copy_repo(dest: Path) -> Path:
    for path in set_repo_url.text_files(ROOT):
        target = dest / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def test_set_repo_url_rewrites_every_place(tmp_path: Path):
    repo = _copy_repo(tmp_path / "repo")
    old_url, old_branch = nbtools.repository(repo)
    old_slug = nbtools.github_slug(old_url)
    mentions = {p.relative_to(repo): p.read_text(encoding="utf-8").count(old_slug)
                for p in set_repo_url.text_files(repo)}
    mentions = {p: n for p, n in mentions.items() if n}
    assert Path("_config.yml") in mentions and Path("README.md") in mentions and Path("intro.ipynb") in mentions

    new_url, new_branch = "https://github.com/someone-else/forked-course", "teaching-2027"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "set_repo_url.py"), new_url,
                             "--branch", new_branch, "--root", str(repo)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all places agree" in result.stdout

    assert nbtools.repository(repo) == (new_url, new_branch)
    for rel, count in mentions.items():
        text = (repo / rel).read_text(encoding="utf-8")
        assert old_slug not in text, f"{rel} still mentions {old_slug}"
        assert text.count("someone-else/forked-course") == count, f"{rel}: not every mention was rewritten"
    cell = nbtools.source(nbtools.code_cells(nbtools.load(repo / "intro.ipynb"))[0])
    assert f"git+{new_url}@{new_branch}#subdirectory=lib" in cell
    assert cell == nbtools.setup_cell_source(repo)
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert f"https://colab.research.google.com/github/someone-else/forked-course/blob/{new_branch}/intro.ipynb" in readme
    assert "https://someone-else.github.io/forked-course/" in readme
    assert set_repo_url.check(repo) == []


def test_check_reports_a_stale_place(tmp_path: Path):
    repo = _copy_repo(tmp_path / "repo")
    readme = repo / "README.md"
    url, branch = nbtools.repository(repo)
    stale = nbtools.github_slug(url)
    readme.write_text(readme.read_text(encoding="utf-8").replace(
        f"github/{stale}/blob/{branch}/", "github/old-org/old-repo/blob/master/", 1), encoding="utf-8")
    problems = set_repo_url.check(repo)
    assert any("README.md" in p and "old-org/old-repo" in p for p in problems), problems


@pytest.mark.parametrize("bad", ["https://gitlab.com/a/b", "github.com/a/b", "https://github.com/only-org"])
def test_set_repo_url_rejects_non_github_urls(tmp_path: Path, bad: str):
    repo = _copy_repo(tmp_path / "repo")
    with pytest.raises(ValueError, match="GitHub repository URL"):
        set_repo_url.set_repo_url(repo, bad)
