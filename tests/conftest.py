"""Shared test fixtures: ONE book build for the whole session, the built site on 127.0.0.1, Chromium.

* ``book`` (session): builds the book once, exactly as ``make book`` does (``LMLAB_BOOK=1``,
  ``jupyter-book build -W --keep-going``) but into a temporary folder with a fresh temporary
  ``LMLAB_CACHE``, and with the network switched off (``unshare -n``, loopback up) when the system
  allows it. Every page test uses this one build.
  Fast local iteration: ``LMLAB_BOOK_DIR=_build/html pytest ...`` reuses a build made by ``make book``
  (its log, ``_build/book-build.log``, is read when present) instead of building.
* ``site`` (session): the built site served over HTTP on 127.0.0.1; its base URL ends in ``/``.
* ``chromium`` (session): a headless Debian Chromium driven by Playwright. Without Chromium the browser
  tests skip loudly, unless ``LMLAB_REQUIRE_BROWSER=1`` (CI), which turns the skip into a failure.
  ``LMLAB_REQUIRE_OFFLINE=1`` (CI) likewise fails the offline test when ``unshare -n`` is not allowed.

Helpers for other tests: :func:`build_book` (build any book folder), :func:`offline_command`,
:class:`BookBuild`.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

CHROMIUM = os.environ.get("LMLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
]
BUILD_TIMEOUT_S = int(os.environ.get("LMLAB_BUILD_TIMEOUT", "2400"))  # whole book; CI budget is 45 min
ARTIFACTS = ROOT / "tests" / "artifacts"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Sphinx's warnings and errors, and Jupyter Book's own "[Warning]" boxes.
_PROBLEM = re.compile(r"(WARNING|ERROR|CRITICAL|SEVERE)\b|\[Warning\]|Traceback \(most recent call last\)")
# Log lines that look like problems but are not Sphinx warnings (FIELD-NOTES: harmless under -W).
HARMLESS = [re.compile(r"\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption")]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def loud(message: str) -> None:
    """Print a message that stands out in the pytest output (and warn, so it is in the summary)."""
    bar = "!" * 100
    print(f"\n{bar}\n{message}\n{bar}", file=sys.stderr, flush=True)
    warnings.warn(message, stacklevel=2)


# --- building the book ---------------------------------------------------------------------------

@dataclass
class BookBuild:
    """One build of a book: where its HTML is, its log, and how it went."""

    html_dir: Path
    log: str
    returncode: int | None  # None: not built in this session (reused) and no log
    seconds: float | None
    offline: bool | None  # None: unknown (a reused build)
    reused: bool = False
    notes: list[str] = field(default_factory=list)
    cpu_seconds: float | None = None  # CPU time of the build and its kernels (children of this process)
    load: tuple[float, float] | None = None  # 1-minute load average before and after the build

    @property
    def clean_log(self) -> str:
        return _ANSI.sub("", self.log)

    def problems(self) -> list[str]:
        """Every warning or error line of the build log (harmless known lines left out)."""
        return [line for line in self.clean_log.splitlines()
                if _PROBLEM.search(line) and not any(h.search(line) for h in HARMLESS)]

    def pages(self) -> list[Path]:
        """Every HTML page of the site (theme assets and sources left out), sorted."""
        skip = {"_static", "_sources", "_images", "reports", "jupyter_execute", "slides"}
        return sorted(p for p in self.html_dir.rglob("*.html")
                      if not (set(p.relative_to(self.html_dir).parts[:-1]) & skip))

    def page(self, docname: str) -> Path:
        return self.html_dir / f"{docname}.html"

    @property
    def executed_dir(self) -> Path:
        """Where MyST-NB leaves the executed notebooks (``<doc>.ipynb``) and glued values (``<doc>.glue.json``)."""
        return self.html_dir.parent / "jupyter_execute"

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.clean_log.splitlines()[-n:])


@functools.lru_cache(maxsize=1)
def offline_command() -> tuple[tuple[str, ...], str]:
    """The command prefix that runs a program with no network but a working loopback.

    Returns ``(prefix, "")`` or ``((), reason)`` when the system does not allow it. As root,
    ``unshare -n``; otherwise ``unshare -rn`` (a user namespace) where that is permitted.
    """
    unshare, ip = shutil.which("unshare"), shutil.which("ip") or "/usr/sbin/ip"
    if not unshare:
        return (), "`unshare` (util-linux) is not installed"
    if not Path(ip).exists():
        return (), "`ip` (iproute2) is not installed, so the loopback cannot be brought up"
    reasons = []
    for flags in (["-n"], ["-rn"]) if os.geteuid() == 0 else (["-rn"],):
        prefix = (unshare, *flags, "sh", "-c", f'{ip} link set lo up && exec "$@"', "offline")
        probe = subprocess.run([*prefix, "sh", "-c", "exit 0"], capture_output=True, text=True)
        if probe.returncode == 0:
            return prefix, ""
        reasons.append(f"unshare {' '.join(flags)}: {probe.stderr.strip() or probe.returncode}")
    return (), "; ".join(reasons)


def children_cpu_seconds() -> float:
    """CPU time (user + system) of this process's finished children, in seconds."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def jupyter_book_exe() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    return str(exe) if exe.exists() else "jupyter-book"


def build_book(src: Path, out: Path, *, cache: Path | None = None, offline: bool = True,
               timeout: float = BUILD_TIMEOUT_S, extra_env: dict[str, str] | None = None,
               slides: bool = False) -> BookBuild:
    """Build the book in ``src`` into ``out/_build/html`` the way ``make book`` does.

    ``LMLAB_BOOK=1``, ``LMLAB_CACHE=cache`` (a fresh temporary folder by default),
    ``jupyter-book build -W --keep-going``; without network when ``offline`` and the system allows it.
    With ``slides`` (the course's own book), a successful build is followed, as in ``make book``, by
    the chapters' slide decks in ``html/slides`` and their printable PDFs in ``html/pdf``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache is not None else Path(tempfile.mkdtemp(prefix="lmlab-cache-", dir=out))
    env = {**os.environ, "LMLAB_BOOK": "1", "LMLAB_CACHE": str(cache), "PYTHONUNBUFFERED": "1",
           "NO_COLOR": "1", **(extra_env or {})}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [jupyter_book_exe(), "build", str(src), "--path-output", str(out), "-W", "--keep-going"]
    notes, is_offline = [], False
    if offline:
        prefix, reason = offline_command()
        if prefix:
            cmd, is_offline = [*prefix, *cmd], True
        else:
            notes.append(f"built WITH network: {reason}")
    load_before, cpu_before = os.getloadavg()[0], children_cpu_seconds()
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=src, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        log, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as err:
        out_text = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        log, code = out_text + f"\nERROR: build timed out after {timeout} s", -1
    seconds = time.monotonic() - start
    if code == 0 and slides:  # as `make book`: the slide decks from the executed chapters, beside the book
        html = out / "_build" / "html"
        slides = subprocess.run([sys.executable, str(ROOT / "tools" / "slides.py"), "build", "--executed",
                                 str(html.parent / "jupyter_execute"), "--out", str(html / "slides")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log += "\n" + slides.stdout
        if slides.returncode:
            log, code = log + "\nERROR: the slide decks were not built", slides.returncode
        else:  # then, as `make book`, the chapters' printable PDFs in html/pdf (tools/pdf.py)
            pdfs = subprocess.run([sys.executable, str(ROOT / "tools" / "pdf.py"), "build", "--html", str(html)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            log += "\n" + pdfs.stdout
            if pdfs.returncode:
                log, code = log + "\nERROR: the chapter PDFs were not built", pdfs.returncode
    cpu, load = children_cpu_seconds() - cpu_before, (load_before, os.getloadavg()[0])
    (out / "book-build.log").write_text(log, encoding="utf-8")
    return BookBuild(html_dir=out / "_build" / "html", log=log, returncode=code, seconds=seconds,
                     offline=is_offline, notes=notes, cpu_seconds=cpu, load=load)


@pytest.fixture(scope="session")
def book(tmp_path_factory: pytest.TempPathFactory) -> BookBuild:
    """The one book build of this session (see the module docstring)."""
    reuse = os.environ.get("LMLAB_BOOK_DIR")
    if reuse:
        html = Path(reuse).resolve()
        if not (html / "intro.html").is_file():
            pytest.fail(f"LMLAB_BOOK_DIR={reuse!r} holds no built book (no intro.html); run `make book` first")
        log_file = next((p for p in (html.parent / "book-build.log", html.parent.parent / "book-build.log")
                         if p.is_file()), None)
        log = log_file.read_text(encoding="utf-8") if log_file else ""
        loud(f"Reusing the build in LMLAB_BOOK_DIR={reuse} (log: {log_file or 'none'}); the book is NOT "
             "rebuilt, so build tests check that build only, and the offline check is skipped.")
        return BookBuild(html_dir=html, log=log, returncode=None, seconds=None, offline=None, reused=True)
    out = tmp_path_factory.mktemp("book")
    built = build_book(ROOT, out, slides=True)
    for note in built.notes:
        loud(f"Book build: {note}. The offline check cannot pass here.")
    print(f"\nbook built in {built.seconds:.0f} s (offline: {built.offline}); exit {built.returncode}; "
          f"log: {out / 'book-build.log'}", file=sys.stderr)
    return built


# --- serving the site and driving Chromium -------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log in the test output
        pass


@pytest.fixture(scope="session")
def site(book: BookBuild):
    """The built site served on 127.0.0.1 (a random free port); yields the base URL."""
    if not book.html_dir.is_dir():
        pytest.fail(f"the book build produced no HTML folder ({book.html_dir}); log tail:\n{book.tail()}")
    handler = functools.partial(_QuietHandler, directory=str(book.html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def chromium_missing_reason() -> str:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LMLAB_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements.txt)"
    return ""


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (Playwright's sync API); skips loudly, or fails under LMLAB_REQUIRE_BROWSER=1.

    Module-scoped: Playwright's sync API allows one running instance per thread, so a test module that
    starts its own (``sync_playwright()``) must not overlap with this one.
    """
    reason = chromium_missing_reason()
    if reason:
        message = f"BROWSER TESTS NOT RUN: {reason}."
        if _flag("LMLAB_REQUIRE_BROWSER"):
            pytest.fail(message + " LMLAB_REQUIRE_BROWSER=1 requires them.")
        loud(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``tests/artifacts/`` (gitignored): screenshots and reports of this run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
