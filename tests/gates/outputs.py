"""Normalise executed notebooks so two runs can be compared: the determinism gate.

The book build runs in build mode and the Colab replay in live mode, so the same cell shows its
results in different *forms*; :func:`cell_items` reduces each code cell's outputs to what both forms
share, and :func:`compare_notebooks` reports every cell where the results differ.

What is compared, per code cell (the first code cell, the setup cell, is skipped: it installs lmlab on
Colab and prints pip's messages, and does nothing in the build):

* stream text, stdout and stderr separately, each merged into one piece per cell as the book shows it
  (``nb_merge_streams``);
* each plotly figure's data: the traces, frames, annotation texts, sliders and menus, taken from the
  figure JSON inside whichever HTML the renderer wrote (the book's renderer, Colab's, or
  ``application/vnd.plotly.v1+json``), with numpy's base64 arrays decoded. Titles, sizes, templates and
  the alt text are layout, not data (the live training plot is titled "(live)");
* the ``text/plain`` of every other rich output;
* errors (name and message) of cells that are meant to raise;
* glued values (``lmlab.glue``), by name: the build's (:func:`glue_in_notebook`) against the replay's
  record (:func:`read_glue_log`).

The build's side is read from its jupyter-cache (:func:`executed_from_cache`), which holds each
notebook exactly as executed.

Two uses, two strictnesses:

* **The book against itself** (``tests/test_determinism.py``): every cell, exactly (after the
  allowlist below). Two executions in the book's environment must agree.
* **The Colab replay against the book** (``tests/test_replay.py``): the replay runs with a seed offset
  (``LMLAB_SEED_OFFSET=1``) and one torch thread, so only the cells tagged :data:`PORTABLE_TAG` are
  compared: cells whose results depend only on the shipped weights, the grammar and fixed inputs.
  They are compared within a float tolerance (:func:`compare_portable`): numbers in text may differ by
  one unit in their last printed digit, figure data by a relative 1e-5, since another thread count,
  CPU or numpy rounds the last bits differently. Glued values of those cells likewise.

The allowlist (:data:`VOLATILE`), replaced by placeholders before comparing: element ids (UUIDs),
memory addresses, wall times, rates and clock times, temporary and installation paths. Progress-bar
lines (:data:`PROGRESS`) are dropped: the build prints one plain final line, the replay draws a
widget. So are lmlab's "training 'toy-gpt' ..." messages (:data:`CACHE_MESSAGE`): whether a chapter
trains a zoo model depends on what the cache already held. A cell whose replay shows a live ipywidget (not a progress bar) is compared on its stream text
and errors only: the build shows the widget's static equivalent instead, by design (GUIDE.md).
"""
from __future__ import annotations

import base64
import difflib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"

#: (what, pattern, placeholder): output text that may differ between two correct runs.
VOLATILE: list[tuple[str, re.Pattern, str]] = [
    ("element id (UUID)", re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    ("memory address", re.compile(r"\b0x[0-9a-f]{6,16}\b", re.I), "0x<address>"),
    ("installation path", re.compile(r"[^\s'\"<>(]*/(?:site|dist)-packages/"), "<site-packages>/"),
    ("temporary path", re.compile(r"(?:/private)?(?:/tmp|/var/tmp|/var/folders)/[^\s'\"<>)]*"), "<tmp-path>"),
    ("lmlab cache path", re.compile(r"[^\s'\"<>(]*/\.cache/lmlab\b"), "<lmlab-cache>"),
    ("rate", re.compile(r"\b\d+(?:\.\d+)?\s?(?:[kM]?it|tok(?:en)?s?|samples?|steps?|B|[kMG]B)/s\b"), "<rate>"),
    ("clock time", re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?\b"), "<clock>"),
    ("wall time", re.compile(r"\b\d+(?:\.\d+)?(?:e-?\d+)?\s?(?:ns|µs|us|ms|s|sec|secs|seconds?|min|mins|minutes?)\b"),
     "<time>"),
]
#: A progress-bar line (tqdm's format): "desc: 42%|####  | 84/200 [00:03<00:04, 25.1it/s]".
#: lmlab's messages that depend on what the lmlab cache already held ("training 'toy-gpt' ...": the
#: book trains a zoo model in the first chapter that needs it, a replay in every chapter): dropped.
CACHE_MESSAGE = re.compile(r"^lmlab\.zoo: training '")
#: The cell tag that marks a cell whose outputs are the same on every machine and for every seed offset.
PORTABLE_TAG = "same-everywhere"
#: What lmlab.claim prints outside build mode when a claim does not hold (lmlab/env.py).
CLAIM_NOTE = "Note: with your settings this no longer holds"
PROGRESS = re.compile(r"\d+%\|.*\||\d+(?:\.\d+)?[kMG]?it \[\d+:\d+|\|\s*\d+/\d+\s*\[\d+:\d+")


def normalise_text(text: str) -> str:
    """Text with progress-bar lines dropped and the volatile parts (:data:`VOLATILE`) replaced."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.rsplit("\r", 1)[-1]  # what a terminal shows after carriage returns
        if PROGRESS.search(line) or CACHE_MESSAGE.search(line):
            continue
        for _, pattern, placeholder in VOLATILE:
            line = pattern.sub(placeholder, line)
        lines.append(line.rstrip())
    return "\n".join(lines).strip("\n")


def _join(text) -> str:
    return "".join(text) if isinstance(text, list) else (text or "")


# --- plotly figures ------------------------------------------------------------------------------

def _decode_arrays(obj):
    """plotly's ``{"dtype": "f8", "bdata": base64, "shape": "2, 3"}`` arrays as nested lists."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj and set(obj) <= {"bdata", "dtype", "shape"}:
            import numpy as np

            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            if obj.get("shape"):
                arr = arr.reshape([int(s) for s in str(obj["shape"]).split(",")])
            return arr.tolist()
        return {k: _decode_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_arrays(v) for v in obj]
    return obj


def _json_args(text: str, start: int, count: int) -> list:
    """Parse ``count`` comma-separated JSON values from ``text[start:]`` (a JS call's arguments)."""
    decoder, values, i = json.JSONDecoder(), [], start
    for _ in range(count):
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        value, i = decoder.raw_decode(text, i)
        values.append(value)
    return values


def figures_in_html(html: str) -> list[dict]:
    """Every figure drawn by a ``Plotly.newPlot(id, data, layout, config)`` call in ``html``, as
    ``{"data", "layout", "frames"}`` (frames from ``Plotly.addFrames``)."""
    figures = []
    for m in re.finditer(r"Plotly\.newPlot\(", html):
        try:
            div, data, layout = _json_args(html, m.end(), 3)
        except ValueError:
            continue
        frames = []
        f = re.search(r"Plotly\.addFrames\(\s*['\"]" + re.escape(str(div)) + r"['\"]\s*,", html[m.end():])
        if f:
            try:
                frames = _json_args(html, m.end() + f.end(), 1)[0]
            except ValueError:
                frames = []
        figures.append({"data": data, "layout": layout, "frames": frames})
    return figures


def figure_fingerprint(fig: dict) -> str:
    """The data of a figure as canonical JSON (what the determinism gate compares)."""
    layout = fig.get("layout") or {}
    kept = {
        "data": fig.get("data") or [],
        "frames": [{k: v for k, v in fr.items() if k in {"data", "name", "traces"}} for fr in fig.get("frames") or []],
        "annotations": [a.get("text") for a in layout.get("annotations") or []],
        "sliders": layout.get("sliders") or [],
        "updatemenus": layout.get("updatemenus") or [],
    }
    return json.dumps(_decode_arrays(kept), sort_keys=True, separators=(",", ":"))


def figures_in_bundle(data: dict) -> list[dict]:
    if PLOTLY_MIME in data:
        fig = data[PLOTLY_MIME]
        return [fig if isinstance(fig, dict) else json.loads(fig)]
    return figures_in_html(_join(data.get("text/html", "")))


# --- one cell ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One comparable result of a cell: ``kind`` is stdout, stderr, figure, text, error or other."""

    kind: str
    value: str


@dataclass
class CellView:
    items: list[Item]
    live_widget: bool = False  # the run showed a live ipywidget (see the module docstring)
    notes: list[str] = field(default_factory=list)


def is_progress_widget(data: dict) -> bool:
    return WIDGET_MIME in data and bool(PROGRESS.search(_join(data.get("text/plain", ""))))


def bundle_items(data: dict) -> list[Item]:
    """The comparable items of one display bundle (a display_data or execute_result's ``data``)."""
    figures = figures_in_bundle(data)
    if figures:
        return [Item("figure", figure_fingerprint(f)) for f in figures]
    if "text/plain" in data:
        return [Item("text", normalise_text(_join(data["text/plain"])))]
    return [Item("other", "+".join(sorted(data)))]


def is_hidden_glue(output: dict) -> bool:
    """A value glued with MyST-NB's ``glue(..., display=False)``: stored in the cell, never shown."""
    scrapbook = (output.get("metadata") or {}).get("scrapbook") or {}
    return bool(scrapbook.get("mime_prefix"))


def cell_items(cell: dict) -> CellView:
    """Reduce a code cell's outputs to comparable items (see the module docstring).

    Stream text is merged per stream into the place of its first piece, as the book shows it
    (``nb_merge_streams``); progress bars, live widgets and hidden glue outputs are left out.
    """
    view, pieces, first = CellView([]), [], {}
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            name = out.get("name", "stdout")
            if name in first:
                pieces[first[name]][2] += _join(out.get("text"))
            else:
                first[name] = len(pieces)
                pieces.append(["stream", name, _join(out.get("text"))])
        elif kind in {"display_data", "execute_result"}:
            data = out.get("data") or {}
            if is_hidden_glue(out):
                continue
            if WIDGET_MIME in data:
                if not is_progress_widget(data):
                    view.live_widget = True
                continue
            pieces.append(["rich", None, data])
        elif kind == "error":
            pieces.append(["error", None, f"{out.get('ename')}: {normalise_text(str(out.get('evalue')))}"])
    for what, name, payload in pieces:
        if what == "stream":
            text = normalise_text(payload)
            if text:
                view.items.append(Item(name, text))
        elif what == "error":
            view.items.append(Item("error", payload))
        else:
            view.items.extend(bundle_items(payload))
    return view


# --- two notebooks -----------------------------------------------------------------------------------

@dataclass
class Difference:
    cell: int  # index among all cells
    source: str  # the cell's first line
    detail: str

    def __str__(self) -> str:
        return f"cell {self.cell} ({self.source!r}): {self.detail}"


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not compared, and why
    compared_items: int = 0

    @property
    def equal(self) -> bool:
        return not self.differences


def _diff(a: str, b: str, width: int = 1500) -> str:
    if "\n" not in a and "\n" not in b and len(a) < 300 and len(b) < 300:
        return f"book {a!r} != replay {b!r}"
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "book", "replay", lineterm="", n=1))
    if len(lines) <= 3 and a != b:  # one long line (figure JSON): show where it starts to differ
        i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return f"differs at character {i}: book ...{a[max(0, i - 80):i + 120]!r} != replay ...{b[max(0, i - 80):i + 120]!r}"
    return "\n".join(lines)[:width]


def _source(cell: dict) -> str:
    return _join(cell.get("source"))


def compare_notebooks(book: dict, replay: dict, *, skip_first_code_cell: bool = True) -> Comparison:
    """Compare two executed copies of one notebook, cell by cell (see the module docstring)."""
    result = Comparison()
    cells_a = [(i, c) for i, c in enumerate(book.get("cells", [])) if c.get("cell_type") == "code"]
    cells_b = [(i, c) for i, c in enumerate(replay.get("cells", [])) if c.get("cell_type") == "code"]
    if [_source(c).strip() for _, c in cells_a] != [_source(c).strip() for _, c in cells_b]:
        result.differences.append(Difference(-1, "", "the two notebooks have different code cells (was the book "
                                                     "built from other sources than the replay ran?)"))
        return result
    for n, ((_, a), (index, b)) in enumerate(zip(cells_a, cells_b)):  # index: in the source notebook
        head = (_source(a).strip().splitlines() or [""])[0][:70]
        if n == 0 and skip_first_code_cell:
            result.notes.append(f"cell {index}: the setup cell (pip's output on Colab) is not compared")
            continue
        _compare_cell(result, index, head, a, b, _equal_items)
    return result


def _equal_items(x: Item, y: Item) -> bool:
    return x.value == y.value


def _compare_cell(result: Comparison, index: int, head: str, a: dict, b: dict, same) -> None:
    """Compare one code cell of the book (``a``) with the same cell of the other run (``b``) by
    ``same(item_a, item_b)``, adding what differs to ``result``."""
    va, vb = cell_items(a), cell_items(b)
    items_a, items_b = va.items, vb.items
    if va.live_widget or vb.live_widget:
        keep = {"stdout", "stderr", "error"}
        items_a = [it for it in items_a if it.kind in keep]
        items_b = [it for it in items_b if it.kind in keep]
        result.notes.append(f"cell {index} ({head!r}): a live widget in the replay, its static equivalent in "
                            "the book: only stream text and errors compared")
    result.compared_items += len(items_a)
    kinds_a, kinds_b = [it.kind for it in items_a], [it.kind for it in items_b]
    if kinds_a != kinds_b:
        result.differences.append(Difference(index, head, f"outputs differ in kind: book {kinds_a}, replay {kinds_b}"
                                                          + _first_mismatch(items_a, items_b)))
        return
    for x, y in zip(items_a, items_b):
        if not same(x, y):
            result.differences.append(Difference(index, head, f"{x.kind}: {_diff(x.value, y.value)}"))


def _first_mismatch(a: list[Item], b: list[Item]) -> str:
    for x, y in zip(a, b):
        if x != y:
            return f"; first difference: {x.kind} {x.value[:200]!r} vs {y.kind} {y.value[:200]!r}"
    extra = a[len(b):] or b[len(a):]
    return f"; extra: {extra[0].kind} {extra[0].value[:200]!r}" if extra else ""


def glue_in_notebook(nb: dict) -> dict[str, dict]:
    """Values glued with MyST-NB in an executed notebook: ``{name: display data}`` (prefix removed)."""
    glued = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            scrapbook = (out.get("metadata") or {}).get("scrapbook")
            if scrapbook and scrapbook.get("name"):
                n = len(scrapbook.get("mime_prefix") or "")
                glued[scrapbook["name"]] = {k[n:]: v for k, v in (out.get("data") or {}).items()}
    return glued


def executed_from_cache(cache_dir: Path, source: Path) -> dict | None:
    """The executed copy of ``source`` that a build's jupyter-cache holds (matched by its code), or None.

    Prefer it to ``_build/jupyter_execute/<doc>.ipynb``: MyST-NB merges stream outputs for the page
    *in place* (``nb_merge_streams``) before it writes that copy, which then shows printed text twice.
    """
    cache_dir = Path(cache_dir)
    if not (cache_dir / "global.db").is_file():
        return None
    import nbformat
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_dir))
    try:
        record = cache.match_cache_notebook(nbformat.read(str(source), as_version=4))
    except KeyError:
        return None
    return json.loads(nbformat.writes(cache.get_cache_bundle(record.pk).nb))


def read_glue_log(path: Path) -> dict[str, dict]:
    """The replay's glue record: ``{name: display data}`` (the last call of a name wins)."""
    glued = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            glued[entry["name"]] = entry["data"]
    return glued


def read_book_glue(path: Path) -> dict[str, dict]:
    """The build's glue record (MyST-NB's ``<doc>.glue.json``): ``{name: display data}``."""
    if not Path(path).is_file():
        return {}
    return {name: out.get("data") or {} for name, out in json.loads(Path(path).read_text(encoding="utf-8")).items()}


def _same_item(x: Item, y: Item) -> bool:
    """Equal, or two glued floats that differ only in the last digits (relative 1e-12).

    A sum of the same numbers can round differently in its last bit under another numpy or BLAS
    (Colab's against the book's), e.g. 0.20628995341576814 and ...817; the page shows both alike.
    """
    if x == y:
        return True
    if x.kind != "text" or y.kind != "text":
        return False
    try:
        u, v = float(x.value), float(y.value)
    except ValueError:
        return False
    return math.isclose(u, v, rel_tol=1e-12, abs_tol=0.0)


def compare_glue(book: dict[str, dict], replay: dict[str, dict], names: set[str] | None = None,
                 same=None) -> list[str]:
    """Differences between two glue records (names missing on either side, or values that differ).

    ``names``: compare only these (default: every name either side glued); ``same(item_a, item_b)``:
    when two values count as equal (default: equal, or floats equal but for the last digits).
    """
    same = same or _same_item
    problems = []
    for name in sorted(set(book) | set(replay) if names is None else names):
        if name not in replay:
            problems.append(f"glue {name!r}: glued in the book, never in the replay")
        elif name not in book:
            problems.append(f"glue {name!r}: glued in the replay, not in the book")
        else:
            a, b = bundle_items(book[name]), bundle_items(replay[name])
            if not (len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))):
                problems.append(f"glue {name!r}: book {[i.value[:200] for i in a]} != replay {[i.value[:200] for i in b]}")
    return problems


# --- the replay against the book: portable cells, within a float tolerance ------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _numbers_close(a: str, b: str) -> bool:
    """Two printed numbers that may differ by one unit in the last printed digit (or 1e-5 relative);
    integers must be equal."""
    if not any(ch in a + b for ch in ".eE"):  # integers (counts, ids, head numbers): exactly
        return a == b
    try:
        u, v = float(a), float(b)
    except ValueError:
        return a == b

    def unit(t: str) -> float:
        mantissa, _, exp = t.lower().partition("e")
        decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
        return 10.0 ** (-decimals) * (10.0 ** int(exp) if exp else 1.0)
    return abs(u - v) <= max(unit(a), unit(b)) * 1.000001 or math.isclose(u, v, rel_tol=1e-5, abs_tol=1e-9)


def texts_close(a: str, b: str) -> bool:
    """Equal text apart from numbers that differ by float rounding (see :func:`_numbers_close`)."""
    if a == b:
        return True
    if _NUMBER.sub("#", a) != _NUMBER.sub("#", b):
        return False
    return all(_numbers_close(x, y) for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b)))


def _values_close(x, y) -> bool:
    if isinstance(x, bool) or isinstance(y, bool):
        return x == y
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6)
    if isinstance(x, str) and isinstance(y, str):
        return texts_close(x, y)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_values_close(u, v) for u, v in zip(x, y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_values_close(x[k], y[k]) for k in x)
    return x == y


def items_close(x: Item, y: Item) -> bool:
    """Two comparable items that agree within the float tolerance (figures: their data, numerically)."""
    if x.kind != y.kind:
        return False
    if x.kind == "figure":
        return _values_close(json.loads(x.value), json.loads(y.value))
    return texts_close(x.value, y.value)


def portable_cells(nb: dict) -> list[int]:
    """Indices of the cells tagged :data:`PORTABLE_TAG`."""
    return [i for i, c in enumerate(nb.get("cells", []))
            if c.get("cell_type") == "code" and PORTABLE_TAG in ((c.get("metadata") or {}).get("tags") or [])]


def portable_glue_names(book: dict, replay: dict) -> set[str]:
    """The names glued in the book by the cells the replayed source tags :data:`PORTABLE_TAG`
    (code cells matched by their order)."""
    code_a = [i for i, c in enumerate(book.get("cells", [])) if c.get("cell_type") == "code"]
    code_b = [i for i, c in enumerate(replay.get("cells", [])) if c.get("cell_type") == "code"]
    tagged = set(portable_cells(replay))
    return glue_names_of_cells(book, [a for a, b in zip(code_a, code_b) if b in tagged])


def glue_names_of_cells(nb: dict, cells: list[int]) -> set[str]:
    """The names glued (MyST-NB) by the given cells of an executed notebook."""
    names = set()
    for i in cells:
        for out in nb["cells"][i].get("outputs", []):
            scrapbook = (out.get("metadata") or {}).get("scrapbook") or {}
            if scrapbook.get("name"):
                names.add(scrapbook["name"])
    return names


def compare_portable(book: dict, replay: dict) -> Comparison:
    """Compare only the cells the book tags :data:`PORTABLE_TAG`, within the float tolerance.

    Code cells are matched by their order (a build's cached copy may hold the code cells alone).
    """
    result = Comparison()
    cells_a = [(i, c) for i, c in enumerate(book.get("cells", [])) if c.get("cell_type") == "code"]
    cells_b = [(i, c) for i, c in enumerate(replay.get("cells", [])) if c.get("cell_type") == "code"]
    if [_source(c).strip() for _, c in cells_a] != [_source(c).strip() for _, c in cells_b]:
        result.differences.append(Difference(-1, "", "the two notebooks have different code cells (was the book "
                                                     "built from other sources than the replay ran?)"))
        return result
    tagged = set(portable_cells(replay))  # the replay ran the current source: its tags are the source's
    for (i, a), (index, b) in zip(cells_a, cells_b):  # index: in the replayed (source) notebook
        if index not in tagged:
            continue
        head = (_source(a).strip().splitlines() or [""])[0][:70]
        _compare_cell(result, index, head, a, b, items_close)
    result.notes.append(f"{len(tagged)} cells tagged {PORTABLE_TAG!r} compared; {len(cells_a) - len(tagged)} other "
                        "code cells depend on seeds or the machine and are not")
    return result


def compare_glue_close(book: dict[str, dict], replay: dict[str, dict], names: set[str]) -> list[str]:
    """Like :func:`compare_glue`, for ``names`` only, within the float tolerance (:func:`items_close`)."""
    return compare_glue(book, replay, names, same=items_close)


def claim_notes(nb: dict) -> list[str]:
    """Every note an ``lmlab.claim`` printed in an executed notebook (a claim that did not hold)."""
    found = []
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            text = _join(out.get("text", "")) if out.get("output_type") == "stream" else \
                _join((out.get("data") or {}).get("text/plain", ""))
            for line in text.splitlines():
                if CLAIM_NOTE in line:
                    found.append(f"cell {i}: {line.strip()}")
    return found
