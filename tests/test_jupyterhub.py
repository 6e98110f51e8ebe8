"""The JupyterHub route: a chapter's "JupyterHub" launch link (nbgitpuller) works on a real hub.

A JupyterHub 6 runs on 127.0.0.1 (DummyAuthenticator, SimpleLocalProcessSpawner: the single-user
server is a local process of this user, ``--allow-root`` when that user is root, as in CI), with
configurable-http-proxy from ``hub/node_modules`` (``make venv``: ``npm ci --prefix hub``). The test
takes the JupyterHub link of chapter 1's rocket menu from the built page, points its hub at the local
one and its ``repo=`` at a local clone of this repository (``file://``, no network), and follows it in
headless Chromium as a student would: log in, the hub starts the server, nbgitpuller clones the
repository into the student's home and opens the chapter in Notebook 7. Then the notebook's setup
cell runs in that server's kernel (through the server's REST and kernel websocket API): on a machine
that is not Colab it does nothing, and must finish without an error.

Without a tool it needs (Chromium, jupyterhub, nbgitpuller, notebook, node, configurable-http-proxy,
git) the test skips loudly, unless LMLAB_REQUIRE_BROWSER=1 (CI), which fails it instead.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

import nbtools
from conftest import ROOT, BookBuild, _flag, loud

BIN = Path(sys.executable).parent
CHP = ROOT / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
USER = "student"
CHAPTER = "chapters/01-language-models"  # the chapter whose link is followed
HUB_LINK = re.compile(r'href="([^"]*/hub/user-redirect/git-pull\?[^"]*)"')
WALL_S = 60  # what the whole route may take (the hub's start, the spawn, the pull, the page, the cell)


def missing_tools() -> list[str]:
    missing = [name for name in ("jupyterhub", "nbgitpuller", "notebook", "jupyter_server")
               if importlib.util.find_spec(name) is None]
    if not (BIN / "jupyterhub-singleuser").exists():
        missing.append(f"jupyterhub-singleuser (not in {BIN})")
    if not CHP.exists():
        missing.append(f"configurable-http-proxy ({CHP}: make venv runs `npm ci --prefix hub`)")
    for exe in ("node", "git"):
        if not shutil.which(exe):
            missing.append(exe)
    return missing


@pytest.fixture(scope="module")
def hub_tools():
    missing = missing_tools()
    if missing:
        message = f"JUPYTERHUB TEST NOT RUN: missing {', '.join(missing)}."
        if _flag("LMLAB_REQUIRE_BROWSER"):
            pytest.fail(message + " LMLAB_REQUIRE_BROWSER=1 requires it.")
        loud(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hub_link(book: BookBuild, docname: str = CHAPTER) -> str:
    """The JupyterHub launch link of a built chapter page."""
    found = HUB_LINK.findall(book.page(docname).read_text(encoding="utf-8"))
    assert found, f"{docname}.html has no JupyterHub launch link (launch_buttons.jupyterhub_url in _config.yml)"
    return unescape(found[0])


def local_clone(dest: Path, branch: str, docname: str) -> Path:
    """A clone of this repository at ``dest`` on ``branch``, with the working tree's copy of the chapter."""
    git = ["git", "-c", "user.name=course tests", "-c", "user.email=tests@localhost", "-c", "advice.detachedHead=false"]
    subprocess.run([*git, "clone", "-q", "--no-hardlinks", str(ROOT), str(dest)], check=True, capture_output=True)
    subprocess.run([*git, "-C", str(dest), "checkout", "-q", "-B", branch], check=True, capture_output=True)
    rel = f"{docname}.ipynb"
    shutil.copy2(ROOT / rel, dest / rel)  # the notebook as it is now, committed or not
    if subprocess.run([*git, "-C", str(dest), "status", "--porcelain", rel], capture_output=True, text=True).stdout:
        subprocess.run([*git, "-C", str(dest), "commit", "-q", "-m", "working copy", "--", rel], check=True,
                       capture_output=True)
    return dest


HUB_CONFIG = """
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = {pid_file!r}
c.JupyterHub.db_url = "sqlite:///{db}"
c.JupyterHub.cookie_secret_file = {secret!r}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {home!r}
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.environment = {{"PATH": {path!r}}}
c.JupyterHub.services = [{{"name": "course-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "course-test", "scopes": ["access:servers", "read:users", "admin:servers"],
                            "services": ["course-test"]}}]
"""


class Hub:
    """A JupyterHub on 127.0.0.1 in ``folder`` (its database, cookie secret, log and users' homes)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.log_file = folder / "jupyterhub.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
        config = self.folder / "jupyterhub_config.py"
        config.write_text(HUB_CONFIG.format(
            port=self.port, hub_port=free_port(), api_port=free_port(), chp=str(CHP),
            pid_file=str(self.folder / "proxy.pid"), db=self.folder / "jupyterhub.sqlite",
            secret=str(self.folder / "cookie_secret"), home=str(self.folder / "home" / "{username}"),
            singleuser=str(BIN / "jupyterhub-singleuser"),
            args=["--allow-root"] if os.geteuid() == 0 else [], path=path, token=self.token), encoding="utf-8")
        env = {**os.environ, "PATH": path}
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(config)], cwd=self.folder, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.api("GET", "/hub/api/")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"jupyterhub did not answer within {timeout} s:\n{self.log_tail()}")

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            headers = {"Authorization": f"token {self.token}", "Content-Type": "application/json"}
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            try:
                return resp.status, (json.loads(data) if data.strip() else {})
            except ValueError:  # the proxy's own answers ("Not Found" before the hub's routes are up)
                return resp.status, {"text": data.decode(errors="replace")}
        finally:
            conn.close()

    def log_tail(self, n: int = 40) -> str:
        if not self.log_file.is_file():
            return ""
        return "\n".join(self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the hub stops its proxy and the servers it spawned
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


async def run_cell(ws_url: str, token: str, code: str, timeout: float = 30) -> dict:
    """Run ``code`` in a kernel over the Jupyter server's websocket; returns its reply and outputs."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": USER,
                   "session": uuid.uuid4().hex, "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    reply, outputs, idle = None, [], False
    deadline = time.monotonic() + timeout
    try:
        while not (reply and idle):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the kernel did not finish the cell within {timeout} s (outputs: {outputs})")
            raw = await asyncio.wait_for(conn.read_message(), left)
            if raw is None:
                raise AssertionError("the kernel's websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "execute_reply":
                reply = msg["content"]
            elif kind == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
            elif kind in {"stream", "error", "execute_result", "display_data"}:
                outputs.append({"type": kind, **msg["content"]})
    finally:
        conn.close()
    return {"reply": reply, "outputs": outputs}


def notebook_kernel(hub: Hub, server: str, path: str, timeout: float = 30) -> str:
    """The id of the kernel the notebook at ``path`` runs on (its session, opened by the page)."""
    deadline = time.monotonic() + timeout
    sessions: object = None
    while time.monotonic() < deadline:
        status, sessions = hub.api("GET", f"{server}/sessions")
        if status == 200:
            for s in sessions:
                # JupyterLab 4's document ids: the session's path may be FOLDER/<id>, its name the file's.
                named = s.get("name") == Path(path).name and s.get("path", "").startswith(f"{Path(path).parent}/")
                if (s.get("path") == path or named) and s.get("kernel"):
                    return s["kernel"]["id"]
        time.sleep(0.5)
    raise AssertionError(f"the opened notebook {path} has no kernel session: {sessions}")


def test_config_has_one_hub_url():
    """The hub URL is set in _config.yml and spelled nowhere else (the instructors' page names the key)."""
    url = nbtools.read_config()["launch_buttons"]["jupyterhub_url"]
    assert url.startswith("https://") and not url.endswith("/"), url
    elsewhere = []
    for path in (ROOT / "README.md", ROOT / "instructors.md", ROOT / "CONTRIBUTING.md", *nbtools.course_notebooks()):
        if path.is_file() and url in path.read_text(encoding="utf-8"):
            elsewhere.append(path.relative_to(ROOT).as_posix())
    assert not elsewhere, f"the hub URL {url} is spelled out in {elsewhere}: name _config.yml's key instead"
    assert "jupyterhub_url" in (ROOT / "instructors.md").read_text(encoding="utf-8")


def test_every_chapter_offers_jupyterhub(book: BookBuild):
    """Each chapter's rocket menu has an nbgitpuller link for the configured hub, repository and branch."""
    config = nbtools.read_config()
    hub = config["launch_buttons"]["jupyterhub_url"]
    url, branch = nbtools.repository()
    repo_name = nbtools.github_slug(url).split("/")[1]
    for nb in [p for p in nbtools.course_notebooks() if p.parent.name == "chapters"]:
        docname = nb.relative_to(ROOT).with_suffix("").as_posix()
        link = hub_link(book, docname)
        parts = urlsplit(link)
        assert link.startswith(f"{hub}/hub/user-redirect/git-pull?"), link
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert query == {"repo": url, "branch": branch, "urlpath": f"tree/{repo_name}/{docname}.ipynb"}, query


def test_chapter_opens_on_a_local_jupyterhub(book: BookBuild, chromium, hub_tools, tmp_path: Path, artifacts: Path):
    start = time.monotonic()
    url, branch = nbtools.repository()
    repo_name = nbtools.github_slug(url).split("/")[1]
    clone = local_clone(tmp_path / "remote" / repo_name, branch, CHAPTER)
    link = hub_link(book, CHAPTER)
    parts = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["repo"] = clone.as_uri()  # file:// : nbgitpuller's `git clone --depth 1` works on it

    hub = Hub(tmp_path)
    context = None
    try:
        hub.start()
        local_link = f"{hub.url}{parts.path}?{urlencode(query, safe='/')}"
        context = chromium.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(hub.url) else r.abort())
        page = context.new_page()
        page.goto(local_link, timeout=30_000)
        page.wait_for_selector("input[name=username]", timeout=20_000)  # the hub's login form
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", "any")
        page.click("[type=submit]")
        # the hub spawns the server, nbgitpuller clones and redirects: tree/... -> notebooks/...
        notebook_url = f"{hub.url}/user/{USER}/notebooks/{repo_name}/{CHAPTER}.ipynb"
        page.wait_for_url(notebook_url, timeout=45_000)
        nb = nbtools.load(ROOT / f"{CHAPTER}.ipynb")
        title = next(nbtools.source(c).splitlines()[0].lstrip("# ").strip()
                     for c in nb["cells"] if c["cell_type"] == "markdown" and nbtools.source(c).startswith("# "))
        page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
        shot = artifacts / "jupyterhub" / "chapter-on-hub.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        pulled = tmp_path / "home" / USER / repo_name / f"{CHAPTER}.ipynb"
        assert pulled.is_file(), f"nbgitpuller did not put the chapter at {pulled}"

        # The setup cell, in the kernel that the opened notebook started on the student's server.
        server = f"/user/{USER}/api"
        kernel = notebook_kernel(hub, server, f"{repo_name}/{CHAPTER}.ipynb")
        setup = nbtools.source(nbtools.code_cells(nbtools.load(pulled))[0])
        assert setup == nbtools.setup_cell_source(), "the pulled chapter's first code cell is not the setup cell"
        ws = f"ws://127.0.0.1:{hub.port}{server}/kernels/{kernel}/channels"
        code = setup + "\nprint('setup done, on Colab:', _on_colab)"
        with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
            result = pool.submit(asyncio.run, run_cell(ws, hub.token, code)).result()
    except Exception:
        print(f"jupyterhub log tail:\n{hub.log_tail()}", file=sys.stderr)
        raise
    finally:
        if context is not None:
            context.close()
        hub.stop()
    errors = [o for o in result["outputs"] if o["type"] == "error"]
    assert result["reply"]["status"] == "ok" and not errors, result
    text = "".join(o.get("text", "") for o in result["outputs"] if o["type"] == "stream")
    assert "setup done, on Colab: False" in text, result
    seconds = time.monotonic() - start
    print(f"\nJupyterHub route: link followed, chapter opened, setup cell ran in {seconds:.1f} s")
    assert seconds < WALL_S * 1.5, f"the JupyterHub route took {seconds:.0f} s (budget {WALL_S} s)"
