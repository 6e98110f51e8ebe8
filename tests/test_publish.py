"""Publishing: the GitHub Actions workflow that builds and deploys the site, and the site under a sub-path.

* ``.github/workflows/*.yml`` pass actionlint (the ``actionlint`` binary that requirements.txt installs
  into the venv), and a planted fault fails it.
* The workflow does what the README says: pull requests run ``make test`` (through ``.ci/run``) and
  deploy nothing; pushes to ``main`` run ``make book`` and deploy ``_build/html`` with the official Pages
  actions.
* GitHub Pages serves a project site under ``/REPO/`` (``https://ORG.github.io/REPO/``): the built
  site, served on 127.0.0.1 under that prefix and nowhere else, is opened page by page in headless
  Chromium; every request a page makes and every link and asset it names must stay under the prefix
  and answer 200.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

import nbtools
import set_repo_url
from conftest import ROOT, BookBuild, _flag, loud
from gates import links

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def actionlint_exe() -> str:
    exe = Path(sys.executable).with_name("actionlint")
    found = str(exe) if exe.exists() else shutil.which("actionlint")
    if not found:
        message = "ACTIONLINT NOT RUN: no actionlint in the venv (pip install -r requirements.txt)."
        if _flag("LMLAB_REQUIRE_BROWSER"):
            pytest.fail(message + " LMLAB_REQUIRE_BROWSER=1 requires it.")
        loud(message)
        pytest.skip(message)
    return found


def actionlint(*paths: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([actionlint_exe(), "-no-color", *map(str, paths)], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


# --- the workflow ----------------------------------------------------------------------------------------

def test_workflow_passes_actionlint():
    assert WORKFLOWS, "no workflow in .github/workflows/"
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


def test_actionlint_catches_planted_faults(tmp_path: Path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("""
on:
  push:
    branch: [main]
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
      - uses: actions/deploy-pages@v4
        with:
          artefact_name: github-pages
""", encoding="utf-8")
    result = actionlint(bad, cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert '"branch" is not available' in out or "unexpected key \"branch\"" in out, out  # typo of branches
    assert "github.event.pull_request.title" in out and "untrusted" in out, out  # script injection
    assert "artefact_name" in out, out  # an input the action does not have


def _workflow() -> dict:
    with open(WORKFLOW, encoding="utf-8") as f:
        flow = yaml.safe_load(f)
    flow["on"] = flow.pop("on", None) or flow.pop(True)  # YAML 1.1 reads the key `on` as True
    return flow


def _runs(job: dict) -> str:
    return "\n".join(str(step.get("run", "")) for step in job.get("steps", []))


def _uses(job: dict) -> list[str]:
    return [str(step["uses"]).split("@")[0] for step in job.get("steps", []) if "uses" in step]


def test_workflow_tests_pull_requests_and_deploys_main():
    flow = _workflow()
    branch = nbtools.repository()[1]
    assert flow["on"]["push"]["branches"] == [branch], flow["on"]
    assert "pull_request" in flow["on"]
    jobs = flow["jobs"]
    deployers = [name for name, job in jobs.items() if "actions/deploy-pages" in _uses(job)]
    assert deployers == ["deploy"], deployers
    deploy = jobs["deploy"]
    assert "github.event_name != 'pull_request'" in deploy["if"] and f"refs/heads/{branch}" in deploy["if"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    build = jobs[deploy["needs"]]
    assert "github.event_name != 'pull_request'" in build["if"]
    assert "bash .ci/run book" in _runs(build)
    assert {"actions/checkout", "actions/configure-pages", "actions/upload-pages-artifact"} <= set(_uses(build))
    upload = next(s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    tests = [job for job in jobs.values() if job.get("if") == "github.event_name == 'pull_request'"]
    assert len(tests) == 1 and "bash .ci/run\n" in _runs(tests[0]) + "\n", tests
    assert flow["permissions"] == {"contents": "read"}  # only the deploy job may write


def test_ci_run_book_runs_make_book():
    """`.ci/run book` is the workflow's build: the same packages as CI, then `make book`."""
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'target="${1:-test}"' in text and 'make "$target"' in text
    assert "poppler-utils" in text
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    book = makefile.split("\nbook:", 1)[1].split("\n\n", 1)[0]
    assert "tools/slides.py build" in book and "tools/pdf.py build" in book


def test_readme_names_site_pdfs_and_hub():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    site = set_repo_url.pages_url(nbtools.repository()[0])
    assert site in readme
    assert f"{site}pdf/" in readme and "jupyterhub_url" in readme and ".github/workflows/book.yml" in readme


# --- the site under a sub-path -----------------------------------------------------------------------------

def site_prefix() -> str:
    """``/REPO/``: where GitHub Pages serves the site."""
    return urlsplit(set_repo_url.pages_url(nbtools.repository()[0])).path


class _PrefixHandler(http.server.SimpleHTTPRequestHandler):
    prefix = "/"

    def log_message(self, *args) -> None:
        pass

    def translate_path(self, path: str) -> str:
        # Only what lies under the prefix exists (as on GitHub Pages); the rest is a 404.
        bare = urlsplit(path).path
        if bare + "/" == self.prefix:
            return super().translate_path(path)  # "/REPO" -> a folder: redirected to "/REPO/"
        if not bare.startswith(self.prefix):
            return os.path.join(self.directory, "not-under-the-prefix", "-")  # a path that is never there
        return super().translate_path("/" + path[len(self.prefix):])


@contextmanager
def serve_under(folder: Path, prefix: str):
    handler = functools.partial(type("H", (_PrefixHandler,), {"prefix": prefix}), directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def status_of(url: str) -> int:
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


# Everything a page names: links, scripts, styles, images, frames, sources (resolved by the browser).
NAMED_URLS_JS = """
() => Array.from(document.querySelectorAll('a[href], link[href], script[src], img[src], iframe[src], source[src]'))
  .map(e => e.href || e.src).filter(u => u && !u.startsWith('javascript:'))
"""


def test_prefix_server_serves_only_under_the_prefix(tmp_path: Path):
    (tmp_path / "a.html").write_text("<p>a</p>", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("<p>i</p>", encoding="utf-8")
    with serve_under(tmp_path, "/repo/") as origin:
        assert status_of(f"{origin}/repo/a.html") == 200
        assert status_of(f"{origin}/repo/sub/") == 200
        assert status_of(f"{origin}/a.html") == 404
        assert status_of(f"{origin}/repo/missing.html") == 404


def test_site_works_under_a_sub_path(book: BookBuild, chromium, artifacts: Path):
    """Every page's links and assets stay under the prefix and answer 200 (read from each page's HTML);
    in Chromium, the site's root, every page that is not a chapter or a deck, and the first chapter and
    deck (the others share their templates and assets) load with no failed request."""
    prefix = site_prefix()
    assert prefix.startswith("/") and prefix.endswith("/") and prefix != "/", prefix
    html = book.html_dir
    files = list(book.pages()) + sorted((html / "slides").glob("*.html"))
    pages = [p.relative_to(html).as_posix() for p in files]
    chapters = [p for p in pages if p.startswith("chapters/")]
    decks = [p for p in pages if p.startswith("slides/")]
    in_browser = [p for p in pages if p not in chapters and p not in decks] + chapters[:1] + decks[:1]
    checked: dict[str, int] = {}
    problems: list[str] = []

    def check(rel: str, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not url.startswith(origin):
            return  # external (listed by the link gate, never fetched), javascript:, data:, mailto:
        target = unquote(parts.path)
        if not target.startswith(prefix):
            problems.append(f"{rel}: names {parts.path!r}, outside {prefix}")
        elif target not in checked:
            checked[target] = status_of(f"{origin}{parts.path}")
        if checked.get(target, 200) != 200:
            problems.append(f"{rel}: names {parts.path!r}: HTTP {checked[target]}")

    with serve_under(html, prefix) as origin:
        base = f"{origin}{prefix}"
        for path, rel in zip(files, pages):  # what each page names, as written in its HTML
            for _tag, url in links.parse_page(path).links:
                check(rel, urljoin(f"{base}{rel}", url.strip()))
        context = chromium.new_context(viewport={"width": 1280, "height": 800}, service_workers="block")
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(origin) else r.abort())
        try:
            page = context.new_page()
            page.goto(base, wait_until="load", timeout=30_000)  # the site's root: index.html -> the intro
            page.wait_for_url(f"{base}{nbtools.toc_docnames()[0]}.html", timeout=15_000)
            page.close()
            for rel in in_browser:  # what each page loads, and names once its scripts ran
                failed: list[str] = []
                page = context.new_page()
                page.on("requestfailed", lambda r: r.url.startswith(origin) and failed.append(f"{r.url} ({r.failure})"))
                page.on("response", lambda r: r.url.startswith(origin) and r.status >= 400
                        and failed.append(f"{r.url} (HTTP {r.status})"))
                page.goto(f"{base}{rel}", wait_until="load", timeout=60_000)
                page.wait_for_load_state("networkidle", timeout=30_000)
                named = page.evaluate(NAMED_URLS_JS)
                page.close()
                problems.extend(f"{rel}: request {f}" for f in failed)
                for url in named:
                    check(rel, url)
        finally:
            context.close()
    report = artifacts / "sub-path.txt"
    report.write_text(f"# the site under {prefix}: {len(pages)} pages read, {len(in_browser)} opened in Chromium, "
                      f"{len(checked)} local URLs checked\n"
                      + "".join(f"{code}\t{path}\n" for path, code in sorted(checked.items())), encoding="utf-8")
    print(f"\nunder {prefix}: {len(pages)} pages read, {len(in_browser)} opened in Chromium, "
          f"{len(checked)} local URLs checked ({report})")
    assert len(checked) > len(pages)
    assert not problems, f"{len(problems)} problem(s) under {prefix}:\n" + "\n".join(sorted(set(problems)))


def test_sub_path_check_catches_a_root_absolute_link(tmp_path: Path):
    """A link written from the domain's root (/_static/...) works at 127.0.0.1:8000/ but not under /REPO/."""
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "x.css").write_text("p{}", encoding="utf-8")
    with serve_under(tmp_path, "/repo/") as origin:
        assert status_of(f"{origin}{urljoin('/repo/a.html', '_static/x.css')}") == 200
        assert status_of(f"{origin}{urljoin('/repo/a.html', '/_static/x.css')}") == 404
