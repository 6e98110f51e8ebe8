"""Slide decks from the chapters: reveal.js via nbconvert, every asset served locally.

    python tools/slides.py mark [NOTEBOOK ...]     # give cells without slide metadata a slide type
    python tools/slides.py check                   # every chapter cell has slide metadata (exit 1 if not)
    python tools/slides.py build [--executed DIR] [--out DIR]

``build`` turns the *executed* chapters of the last book build (``_build/jupyter_execute`` by default,
so figures are the book's own, interactive) into ``_build/html/slides/NN-name.html`` and copies the
assets beside them into ``_assets/``: reveal.js from ``slides/node_modules`` (pinned in
``slides/package.json``; ``npm ci --prefix slides`` installs it, ``make venv`` does that), plotly.js
from the plotly package and MathJax from the ``sphinx-mathjax-offline`` package. A lecturer can
present from that folder with no network (open the HTML file, or serve the folder).

Which cells become slides is cell metadata (``metadata.slideshow.slide_type``, as in Jupyter's own
"Slide Type" menu): ``slide``, ``subslide`` (a vertical slide), ``fragment`` (appears on the next
click), ``-`` (continues the current slide), ``skip`` or ``notes`` (speaker notes). ``mark`` fills in
cells that have none, by these rules, and never changes a type someone chose:

* the setup cell and other ``remove-cell`` cells, stubs, checkers and solutions: ``skip``;
* a markdown cell starting with a ``#``/``##`` heading: ``slide``; with ``###``: ``subslide``;
* a code cell: ``subslide`` (its output, often a figure, gets a slide of its own);
* "Try it" admonitions and "What to notice" paragraphs: ``fragment``;
* the aside for philosophers and cognitive scientists: ``subslide``;
* any other markdown: ``-``.

``build`` also makes every slide fit reveal.js's 1280 x 800 view without scrolling (:func:`fit_slides`):
a code cell of more than :data:`MAX_CODE_LINES` lines is cut, between statements, over several
vertical slides (its output on the last); an output that does not fit under its code gets a slide of its
own; a long markdown cell (a summary) is cut between paragraphs and list items; a cell that would push a
slide past the view starts the next vertical slide; figures are at most :data:`MAX_FIGURE_HEIGHT` px
high. Code wraps instead of running off the right edge. Text stays at 19 px or more (no shrinking).
``tests/test_slides.py`` measures every slide in Chromium.
"""
from __future__ import annotations

import argparse
import json
import posixpath
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import nbtools  # noqa: E402

SLIDE_TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}
#: reveal.js's view (CSS px); every slide must fit it.
VIEW_WIDTH, VIEW_HEIGHT = 1280, 800
#: The height a slide's content may be estimated at (the rest is reveal's margin and estimation slack).
BUDGET = 690
#: Code cells longer than this are cut over several slides (each piece at most MAX_CODE_LINES - 2).
MAX_CODE_LINES = 16
MAX_FIGURE_HEIGHT = 640
# Sizes of the deck's text (reveal.js's white theme and nbconvert's cell styles, measured in Chromium).
_CODE_LINE, _CODE_CHARS, _CODE_PAD = 22.8, 100, 24
_TEXT_LINE, _TEXT_CHARS, _PARAGRAPH = 26.0, 115, 30
_ITEM_LINE = 32.0
#: Extra CSS of every deck: code wraps, no In/Out prompts (room for code), no inner scroll bars.
DECK_CSS = """<style>
.reveal pre, .reveal pre code, .reveal .jp-OutputArea pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.reveal .jp-InputPrompt, .reveal .jp-OutputPrompt { display: none; }
.reveal .jp-RenderedHTMLCommon, .reveal .jp-RenderedMarkdown, .reveal .jp-OutputArea-output,
.reveal .jp-InputArea-editor, .reveal .jp-CodeMirrorEditor, .reveal .highlight { overflow: visible; }
</style>"""
TEMPLATE_DIR = ROOT / "slides" / "template"
REVEAL_DIR = ROOT / "slides" / "node_modules" / "reveal.js"


def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    """The chapters listed in ``_toc.yml`` (notebooks under ``chapters/``), in reading order."""
    return [p for p in nbtools.course_notebooks(root) if p.parent.name == "chapters"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def slide_types(nb: dict) -> list[str]:
    """The slide type the rules give each cell of a chapter notebook (see the module docstring)."""
    types: list[str] = []
    in_solution = in_exercises = False
    for cell in nb["cells"]:
        src = _source(cell).lstrip()
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] == "markdown":
            if src.startswith("## ") or src.startswith("# "):
                in_exercises = src.lower().startswith("## exercises")
        if "{solution-start}" in src:
            in_solution = True
        if "remove-cell" in tags or in_solution:
            kind = "skip"
        elif cell["cell_type"] == "code":
            kind = "skip" if in_exercises else "subslide"
        elif re.match(r"#{1,2} ", src):
            kind = "slide"
        elif src.startswith("### "):
            kind = "subslide"
        elif "{exercise}" in src:
            kind = "subslide"
        elif "Try it" in src.split("\n", 2)[0] or src.startswith("What to notice"):
            kind = "fragment"
        elif "philosophers and cognitive scientists" in src.split("\n", 2)[0]:
            kind = "subslide"
        else:
            kind = "-"
        if "{solution-end}" in src:
            in_solution = False
        types.append(kind)
    return types


def mark(path: Path, force: bool = False) -> int:
    """Write slide types into a notebook's cells that have none (all cells with ``force``); returns
    how many cells changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = 0
    for cell, kind in zip(nb["cells"], slide_types(nb)):
        meta = cell.setdefault("metadata", {})
        current = meta.get("slideshow", {}).get("slide_type")
        if current in SLIDE_TYPES and not force:
            continue
        if current != kind:
            meta["slideshow"] = {"slide_type": kind}
            changed += 1
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def problems(path: Path) -> list[str]:
    """Cells without a valid slide type, and decks that would have no slide at all."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    out = []
    kinds = []
    for i, cell in enumerate(nb["cells"]):
        kind = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
        kinds.append(kind)
        if kind not in SLIDE_TYPES:
            out.append(f"{path.name}: cell {i} has no slide type (run `python tools/slides.py mark`)")
    if "slide" not in kinds:
        out.append(f"{path.name}: no cell starts a slide")
    return out


def _mathjax_dir() -> Path:
    dist = metadata.distribution("sphinx-mathjax-offline")
    for f in dist.files or []:
        if str(f).endswith("static/mathjax/tex-chtml.js"):
            return Path(dist.locate_file(f)).parent
    raise FileNotFoundError("MathJax files of the sphinx-mathjax-offline package not found: pip install -r requirements.txt")


def copy_assets(out: Path) -> Path:
    """Copy reveal.js, plotly.js and MathJax into ``out/_assets``; returns that folder."""
    import plotly

    if not (REVEAL_DIR / "dist" / "reveal.js").exists():
        raise FileNotFoundError(f"reveal.js is not installed in {REVEAL_DIR}: run `npm ci --prefix slides` "
                                "(make venv does it)")
    assets = out / "_assets"
    if assets.exists():
        shutil.rmtree(assets)
    assets.mkdir(parents=True)
    shutil.copytree(REVEAL_DIR / "dist", assets / "reveal.js" / "dist")
    shutil.copytree(REVEAL_DIR / "plugin" / "notes", assets / "reveal.js" / "plugin" / "notes")
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", assets / "plotly.min.js")
    shutil.copytree(_mathjax_dir(), assets / "mathjax")
    return assets


# --- MyST in the decks ----------------------------------------------------------------------------------
# nbconvert renders plain Markdown: the chapters' MyST roles and directives are rewritten for the decks,
# with the book's own glued numbers and the bibliography's author-year names.

_ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`")
_FENCE_OPEN = re.compile(r"^\s*(`{3,}|:{3,})\s*\{([\w:-]+)\}\s*(.*)$")
_FENCE_CLOSE = re.compile(r"^\s*(`{3,}|:{3,})\s*$")
_OPTION = re.compile(r"^\s*:[\w-]+:.*$")
_TARGET = re.compile(r"^\s*\([\w.:-]+\)=\s*$")  # a MyST label line, "(ch02-heads)="
_NUMBER = re.compile(r"^(?:np\.\w+\()?(-?[\d.eE+-]+|nan|inf)\)?$")


def read_bib(path: Path = ROOT / "references.bib") -> dict[str, tuple[str, str]]:
    """``{key: (names, year)}`` from a BibTeX file: "Vaswani et al.", "Clark and Manning", "Elman"."""
    out = {}
    text = Path(path).read_text(encoding="utf-8") if Path(path).is_file() else ""
    for m in re.finditer(r"@\w+\{([^,\s]+),(.*?)\n\}", text, flags=re.S):
        key, body = m.group(1), m.group(2)
        author = re.search(r"\bauthor\s*=\s*\{(.*?)\},?\s*\n", body, flags=re.S)
        year = re.search(r"\byear\s*=\s*\{?(\d{4})", body)
        last = [a.split(",")[0].strip().strip("{}") if "," in a else a.strip().split()[-1].strip("{}")
                for a in re.split(r"\s+and\s+", author.group(1))] if author else [key]
        names = last[0] if len(last) == 1 else (" and ".join(last) if len(last) == 2 else f"{last[0]} et al.")
        out[key] = (names, year.group(1) if year else "n.d.")
    return out


def glue_text(data: dict, fmt: str = "") -> str:
    """A glued value (its display data) as ``{glue:text}`` writes it, with an optional format spec."""
    if "text/markdown" in data and not fmt:
        return _text(data["text/markdown"])
    plain = _text(data.get("text/plain", "")).strip()
    value: object = plain
    m = _NUMBER.match(plain)
    if m:
        num = float(m.group(1))
        value = int(num) if re.fullmatch(r"-?\d+", m.group(1)) else num
    elif len(plain) >= 2 and plain[0] == plain[-1] and plain[0] in "'\"":
        value = plain[1:-1]
    if fmt:
        try:
            return format(value, fmt)
        except (ValueError, TypeError):
            return str(value)
    return str(value)


def _text(v) -> str:
    return "".join(v) if isinstance(v, list) else str(v)


def _label(text: str) -> str:
    m = re.match(r"^(.*?)\s*<([^>]*)>$", text, flags=re.S)
    return m.group(1) if m else text


_LOCAL_LINK = re.compile(r"\]\((?!https?:|mailto:)([^)\s#]*)(#[^)\s]*)?\)")


def book_link(target: str, anchor: str, page: str) -> str:
    """Where a link of chapter ``page`` (``chapters/NN-name.html``) points from a deck in ``slides/``:
    the book's pages, since a deck holds neither the labels (``#fails-ch1``) nor the other pages."""
    if not target:
        return f"../{page}{anchor}"
    stem, dot, ext = target.rpartition(".")
    if dot and ext in ("ipynb", "md"):
        target = f"{stem}.html"
    return "../" + posixpath.normpath(posixpath.join(posixpath.dirname(page), target)) + anchor


def myst_to_markdown(source: str, glue: dict[str, dict], bib: dict[str, tuple[str, str]],
                     page: str = "") -> str:
    """One markdown cell's MyST, as plain Markdown for nbconvert: glued values written in, ``{term}``
    and ``{ref}`` as their text, citations as author-year, directives as a bold title; with ``page``
    (the chapter's page, ``chapters/NN-name.html``), links within the book point at the book's pages."""
    def role(m: re.Match) -> str:
        name, text = m.group(1), m.group(2)
        if name.startswith("glue"):
            key, _, fmt = text.partition(":")
            if key not in glue:
                return f"`{key}`"
            return glue_text(glue[key], fmt) if name != "glue:md" else glue_text(glue[key])
        if name.startswith("cite"):
            refs = [bib.get(k.strip(), (k.strip(), "")) for k in text.split(",")]
            if name == "cite:t":
                return "; ".join(f"{n} ({y})" for n, y in refs)
            return "(" + "; ".join(f"{n}, {y}" for n, y in refs) + ")"
        if name == "math":
            return f"${text}$"
        return _label(text)

    lines, out, after_open = source.split("\n"), [], False
    for line in lines:
        m = _FENCE_OPEN.match(line)
        if m:
            kind, title = m.group(2), m.group(3).strip()
            heading = {"exercise": "Exercise", "solution-start": "Solution"}.get(kind, "")
            shown = ": ".join(t for t in (heading, title) if t)
            out += [f"**{_ROLE.sub(role, shown)}**", ""] if shown else [""]
            after_open = True
            continue
        if after_open and _OPTION.match(line):
            continue
        after_open = False
        if _FENCE_CLOSE.match(line) or _TARGET.match(line):
            continue
        line = _ROLE.sub(role, line)
        if page:
            line = _LOCAL_LINK.sub(lambda m: f"]({book_link(m.group(1), m.group(2) or '', page)})", line)
        out.append(line)
    return "\n".join(out)


# --- fitting the slides to the view -----------------------------------------------------------------

def _kind(cell) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")


def _set_kind(cell, kind: str) -> None:
    cell.setdefault("metadata", {})["slideshow"] = {"slide_type": kind}


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _wrapped(lines: list[str], width: int) -> int:
    return sum(max(1, -(-len(line) // width)) for line in lines)


def markdown_height(text: str) -> float:
    """Estimated height (px) of a markdown cell on a slide."""
    h, paragraph = 0.0, []

    def flush():
        nonlocal h, paragraph
        if paragraph:
            h += _TEXT_LINE * _wrapped([" ".join(paragraph)], _TEXT_CHARS) + _PARAGRAPH
            paragraph = []

    in_math = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("$$"):
            flush()
            h += 0 if in_math else 70
            in_math = not in_math if stripped.count("$$") == 1 else in_math
            continue
        if in_math:
            continue
        if not stripped:
            flush()
        elif stripped.startswith("#"):
            flush()
            h += {1: 110, 2: 78, 3: 60}.get(len(stripped) - len(stripped.lstrip("#")), 50)
        elif re.match(r"([*+-]|\d+\.)\s", stripped):
            flush()
            h += _ITEM_LINE * _wrapped([stripped], _TEXT_CHARS - 6)
        elif stripped.startswith("|"):
            flush()
            h += 0 if set(stripped) <= set("|-: ") else 40
        elif paragraph or not line.startswith("  "):
            paragraph.append(stripped)
        else:  # a list item's continuation line
            h += _ITEM_LINE * _wrapped([stripped], _TEXT_CHARS - 6)
    flush()
    return h


def _figure_height(html_text: str) -> float:
    # the layout's height is the largest (table cells and markers have heights of their own)
    heights = [float(h) for h in re.findall(r'"height":\s*(\d+(?:\.\d+)?)', html_text)]
    h = min(max(heights), MAX_FIGURE_HEIGHT) if heights else 460.0
    return h + (70 if '"sliders"' in html_text or '"updatemenus"' in html_text else 0)


def output_height(out) -> float:
    """Estimated height (px) of one output on a slide."""
    kind = out.get("output_type")
    if kind == "stream":
        return _CODE_LINE * _wrapped(_text(out.get("text", "")).splitlines(), _CODE_CHARS) + _CODE_PAD
    if kind == "error":
        return _CODE_LINE * len(out.get("traceback", [])) + _CODE_PAD
    data = out.get("data", {})
    html_text = _text(data.get("text/html", ""))
    if "plotly" in html_text or "application/vnd.plotly.v1+json" in data:
        return _figure_height(html_text or json.dumps(data.get("application/vnd.plotly.v1+json", {}))) + 20
    if "<svg" in html_text:
        m = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', html_text)
        return (float(m.group(2)) * min(1.0, 1200 / float(m.group(1))) if m else 400.0) + 20
    if html_text:
        rows = html_text.count("<tr")
        return 40.0 * rows + 30 if rows else _TEXT_LINE * max(1, html_text.count("<br") + html_text.count("<p")) + 30
    if "image/png" in data or "image/jpeg" in data:
        meta = out.get("metadata", {}).get("image/png", {}) or {}
        return float(meta.get("height", 400)) + 20
    if "text/markdown" in data:
        return markdown_height(_text(data["text/markdown"]))
    if "text/plain" in data:
        return _CODE_LINE * _wrapped(_text(data["text/plain"]).splitlines(), _CODE_CHARS) + _CODE_PAD
    return 0.0


def code_height(source: str) -> float:
    lines = source.rstrip("\n").splitlines()
    return _CODE_LINE * _wrapped(lines, _CODE_CHARS) + _CODE_PAD if lines else 0.0


def cell_height(cell) -> float:
    if cell["cell_type"] == "markdown":
        return markdown_height(_source(cell))
    shown = not (_tags(cell) & {"remove-input", "hide-input"})
    return (code_height(_source(cell)) if shown else 0.0) + sum(
        output_height(o) for o in cell.get("outputs", []) if "remove-output" not in _tags(cell))


def _code_pieces(source: str, limit: int = MAX_CODE_LINES - 2) -> list[str]:
    """Cut code into pieces of at most ``limit`` lines, between top-level statements where it can."""
    import ast

    lines = source.rstrip("\n").split("\n")
    try:
        starts = sorted({node.lineno - 1 for node in ast.parse(source).body} | {len(lines)})
        # a comment or blank line just above a statement goes with it
        starts = [s for s in starts if s >= 0]
    except SyntaxError:
        starts = list(range(len(lines) + 1))
    cuts, begin = [0], 0
    for a, b in zip(starts, starts[1:]):
        if b - begin > limit and a > begin:
            cuts.append(a)
            begin = a
        while b - begin > limit:  # one statement longer than the limit: cut it by lines
            begin += limit
            cuts.append(begin)
    cuts = sorted(set(cuts)) + [len(lines)]
    pieces = ["\n".join(lines[a:b]).strip("\n") for a, b in zip(cuts, cuts[1:])]
    return [p for p in pieces if p.strip()]


def _markdown_pieces(text: str) -> list[str]:
    """Cut markdown between paragraphs and list items into pieces that each fit the budget."""
    blocks, current = [], []
    for line in text.split("\n"):
        starts_item = re.match(r"([*+-]|\d+\.)\s", line)
        if (not line.strip() or starts_item) and current:
            blocks.append("\n".join(current))
            current = []
        if line.strip():
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    heading = blocks[0] if blocks and blocks[0].startswith("#") else None
    pieces, piece = [], []
    for block in blocks:
        trial = "\n\n".join(piece + [block])
        if piece and markdown_height(trial) > BUDGET:
            pieces.append("\n\n".join(piece))
            piece = [f"{heading} (continued)"] if heading and len(heading) < 80 else []
        piece.append(block)
    if piece:
        pieces.append("\n\n".join(piece))
    return pieces


def fit_slides(nb) -> None:
    """Cut and re-type cells so that every slide's estimated height fits :data:`BUDGET` (in place)."""
    import copy

    count = 0

    def fresh(cell):
        """A copy of ``cell`` with an id of its own (nbformat wants ids unique)."""
        nonlocal count
        count += 1
        piece = copy.deepcopy(cell)
        if "id" in piece:
            piece["id"] = f"{str(cell['id'])[:50]}-s{count}"
        return piece

    cells, height = [], 0.0
    for cell in nb.cells:
        kind = _kind(cell)
        if "remove-cell" in _tags(cell) or kind in {"skip", "notes"}:
            cells.append(cell)
            continue
        pieces = [cell]
        if cell["cell_type"] == "code" and not (_tags(cell) & {"remove-input", "hide-input"}):
            chunks = _code_pieces(_source(cell)) if len(_source(cell).splitlines()) > MAX_CODE_LINES else []
            if len(chunks) > 1:
                pieces = []
                outputs = cell.outputs
                for j, chunk in enumerate(chunks):
                    piece = fresh(cell) if j else cell
                    piece.source = chunk
                    piece.outputs = outputs if j == len(chunks) - 1 else []
                    if j:
                        _set_kind(piece, "subslide")
                    pieces.append(piece)
            last = pieces[-1]
            if last.get("outputs") and cell_height(last) > BUDGET:
                # the outputs on slides of their own, as many to a slide as fit
                groups, group, h = [], [], 0.0
                for out in last.outputs:
                    oh = output_height(out)
                    if group and h + oh > BUDGET:
                        groups.append(group)
                        group, h = [], 0.0
                    group.append(out)
                    h += oh
                groups.append(group)
                if code_height(_source(last)) + sum(output_height(o) for o in groups[0]) <= BUDGET:
                    last.outputs, groups = groups[0], groups[1:]
                else:
                    last.outputs = []
                for group in groups:
                    shown = fresh(last)
                    shown.source = ""
                    shown.outputs = group
                    shown.metadata["tags"] = list(shown.metadata.get("tags", [])) + ["remove-input"]
                    _set_kind(shown, "subslide")
                    pieces.append(shown)
        elif cell["cell_type"] == "markdown" and markdown_height(_source(cell)) > BUDGET:
            texts = _markdown_pieces(_source(cell))
            pieces = []
            for j, text in enumerate(texts):
                piece = fresh(cell) if j else cell
                piece.source = text
                if j:
                    _set_kind(piece, "subslide")
                pieces.append(piece)
        for piece in pieces:
            h = cell_height(piece)
            if _kind(piece) in {"slide", "subslide"}:
                height = h
            elif height + h > BUDGET and height > 0:
                _set_kind(piece, "subslide")
                height = h
            else:
                height += h
            cells.append(piece)
    nb.cells = cells


def _cap_figures(nb) -> None:
    """Figures higher than MAX_FIGURE_HEIGHT are drawn at that height (plotly's layout height)."""
    def cap(m: re.Match) -> str:
        return f'"height": {MAX_FIGURE_HEIGHT}' if float(m.group(1)) > MAX_FIGURE_HEIGHT else m.group(0)

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/html" in data and "plotly" in _text(data["text/html"]):
                html_text = re.sub(r'"height":\s*(\d+(?:\.\d+)?)', cap, _text(data["text/html"]))
                data["text/html"] = re.sub(  # the figure div's own style height
                    r"height:\s*(\d+(?:\.\d+)?)px",
                    lambda m: f"height:{MAX_FIGURE_HEIGHT}px" if float(m.group(1)) > MAX_FIGURE_HEIGHT else m.group(0),
                    html_text)


def build_deck(executed: Path, out_file: Path) -> int:
    """One executed chapter to one reveal.js deck; returns the number of top-level slides."""
    import nbformat
    from nbconvert import SlidesExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    from traitlets.config import Config

    nb = nbformat.read(executed, as_version=4)
    glue_file = executed.with_suffix(".glue.json")
    glue = {k: v.get("data") or {} for k, v in json.loads(glue_file.read_text(encoding="utf-8")).items()} \
        if glue_file.is_file() else {}
    bib = read_bib()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = myst_to_markdown(_source(cell), glue, bib, page=f"chapters/{executed.stem}.html")
    _cap_figures(nb)
    fit_slides(nb)
    cfg = Config()
    cfg.TagRemovePreprocessor.enabled = True
    cfg.TagRemovePreprocessor.remove_cell_tags = {"remove-cell"}
    cfg.TagRemovePreprocessor.remove_input_tags = {"remove-input", "hide-input"}
    cfg.TagRemovePreprocessor.remove_all_outputs_tags = {"remove-output"}
    cfg.SlidesExporter.reveal_url_prefix = "_assets/reveal.js"
    cfg.SlidesExporter.reveal_theme = "white"   # its fonts ship with reveal.js (no font CDN)
    cfg.SlidesExporter.reveal_transition = "slide"
    cfg.SlidesExporter.reveal_number = "c/t"
    cfg.SlidesExporter.reveal_scroll = False   # every slide fits the view instead (fit_slides)
    cfg.SlidesExporter.reveal_width = str(VIEW_WIDTH)
    cfg.SlidesExporter.reveal_height = str(VIEW_HEIGHT)
    exporter = SlidesExporter(config=cfg, extra_template_basedirs=[str(TEMPLATE_DIR)],
                              template_name="lmlab-reveal")
    exporter.register_preprocessor(TagRemovePreprocessor(config=cfg), enabled=True)
    title = next((_source(c).lstrip("# ").split("\n", 1)[0] for c in nb.cells
                  if c.cell_type == "markdown" and _source(c).startswith("# ")), executed.stem)
    nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb)
    body = body.replace("</head>", DECK_CSS + "\n</head>", 1)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(body, encoding="utf-8")
    return body.count('<section>\n<section>') or body.count("<section")


def build(executed_dir: Path, out: Path) -> list[Path]:
    """Every chapter's deck into ``out``; returns the deck files."""
    copy_assets(out)
    decks = []
    for nb_path in chapter_notebooks():
        rel = nb_path.relative_to(ROOT)
        executed = executed_dir / rel
        if not executed.exists():
            raise FileNotFoundError(f"{executed} does not exist: build the book first (make book), or pass "
                                    "--executed with the folder of executed notebooks")
        deck = out / (nb_path.stem + ".html")
        build_deck(executed, deck)
        decks.append(deck)
    return decks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_mark = sub.add_parser("mark", help="give cells without slide metadata a slide type")
    p_mark.add_argument("notebooks", nargs="*", type=Path)
    p_mark.add_argument("--force", action="store_true", help="recompute every cell's type from the rules")
    sub.add_parser("check", help="every chapter cell has slide metadata")
    p_build = sub.add_parser("build", help="build the decks from executed chapters")
    p_build.add_argument("--executed", type=Path, default=ROOT / "_build" / "jupyter_execute")
    p_build.add_argument("--out", type=Path, default=ROOT / "_build" / "html" / "slides")
    args = parser.parse_args(argv)

    if args.command == "mark":
        for path in args.notebooks or chapter_notebooks():
            print(f"{path}: {mark(Path(path), force=args.force)} cells marked")
        return 0
    if args.command == "check":
        found = [p for nb in chapter_notebooks() for p in problems(nb)]
        print("\n".join(found) or "every chapter cell has a slide type")
        return 1 if found else 0
    decks = build(args.executed, args.out)
    for deck in decks:
        print(f"wrote {deck}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
