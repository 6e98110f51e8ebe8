"""What the reader sees is teaching: checks on the notebooks' syntax trees and cell metadata (issues 22, 23).

"Visible" cell: a cell whose input the rendered book shows, a ``hide-input`` / ``hide-cell`` toggle
included (tags ``remove-cell`` and ``remove-input`` hide the input). Every function below takes a
notebook as plain JSON (``nbtools.load``) and returns a list of problems, one readable line each
(empty: fine), so the test (``tests/test_teaching.py``) and its planted fault call the same code.

* :func:`bookkeeping_problems` (a): no visible cell calls or imports ``claim`` or ``glue``.
* :func:`undefined_name_problems` (b): every name a visible cell reads is defined (assigned, imported,
  a ``def``/``class``, a loop or ``with`` target) in a visible cell above it or earlier in the same cell,
  or is a builtin / IPython name. Function and lambda bodies are checked against everything the cell
  has defined by its end; comprehension and function scopes are followed.
* :func:`bare_bool_problems` (c, static): no visible cell ends with an expression that displays a bare
  boolean (a comparison, ``not``, ``and``/``or`` of those, ``True``/``False``, ``isinstance(...)``,
  ``torch.allclose(...)``, ``x.all()``, ...). :func:`bool_output_problems` (c, executed): no executed
  visible cell shows ``True``/``False`` (``tensor(True)``, ``np.True_``) as its result or as a printed
  line on its own.
* :func:`crossref_problems` (d): no hand-typed number in a cross-reference in markdown ("exercise 3",
  "Exercise 5's", "section 2", "figure 4", "table 1", "equation 2", "§2"), link text included.
* :func:`dropdown_problems` (e): after the first visible call in a notebook of each function of
  :data:`EXPERIMENT_CALLS`, the next cell the book shows is markdown with a non-empty
  ``{dropdown} What does this do?``.
* :func:`tier_problems` (f): every exercise title ends with ``(warm-up)``, ``(core)`` or ``(stretch)``;
  a notebook's first exercise is ``(warm-up)``.
* :func:`form_problems` (g): every ``remove-cell`` code cell (the setup cell aside: its text is
  ``nbtools``'s) starts with ``# @title ...`` and has ``"cellView": "form"`` in its metadata.
* :func:`fails_label_problems` (h): chapter N has a ``(fails-chN)=`` label just above a heading.
"""
from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

#: lmlab functions that run an experiment (train, ablate, probe, select, compare), as ``module.func``
#: (``ex`` is ``lmlab.experiments``). A call matches on ``module.func(``, ``lmlab.module.func(``, or a
#: name imported from the module (``from lmlab.measure import evaluate``).
EXPERIMENT_CALLS = (
    "measure.fit_ngrams", "measure.evaluate", "measure.comparison_table", "measure.exact_score",
    "measure.unseen_rates",
    "interpret.find_head", "interpret.head_ablation_effects", "interpret.ablated_margins",
    "interpret.rank_collapse", "interpret.fit_position_rule", "interpret.compare_attributions",
    "interpret.neuron_contributions", "interpret.head_accuracy",
    "geometry.probe_layers", "geometry.analogy_accuracy", "geometry.separation_by_layer",
    "geometry.neighborhood_preservation", "geometry.offset_parallelism", "geometry.random_analogy_baseline",
    "geometry.cooccurrence_embeddings", "geometry.neighbor_agreement", "geometry.centroid_distance_correlation",
    "textstats.compare_strategies", "textstats.slot_comparison", "textstats.sample_stats",
    "ex.lottery_ticket", "ex.train_seeds", "ex.compute_sweep", "ex.copy_probe", "ex.loss_decomposition",
    "ex.repeat_loss",
    "variants.compare", "variants.agreement_probe", "variants.order_probe", "variants.copy_probe",
    "variants.finetune_comparison", "variants.induction_scores", "variants.logit_attribution",
    "variants.attention_by_offset", "variants.verb_number_preference",
    "train.train",
)
_MODULE_ALIASES = {"ex": "experiments"}

REMOVED_INPUT = {"remove-cell", "remove-input"}
#: Names a notebook may read without defining them (IPython's namespace).
IPYTHON_NAMES = {"display", "get_ipython", "In", "Out", "_", "__", "___", "_ih", "_oh", "_i", "_ii", "_iii",
                 "exit", "quit", "__name__", "__builtins__", "__doc__"}
ALWAYS_DEFINED = set(dir(builtins)) | IPYTHON_NAMES
TIERS = ("(warm-up)", "(core)", "(stretch)")


# --- cells -----------------------------------------------------------------------------------------

def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def is_visible(cell: dict) -> bool:
    """A code cell whose input the book shows (hide-input and hide-cell toggles count as shown)."""
    return cell.get("cell_type") == "code" and not (tags(cell) & REMOVED_INPUT)


def is_shown(cell: dict) -> bool:
    """Any cell the reader meets in the book: markdown, or code that is not removed whole."""
    return cell.get("cell_type") == "markdown" or (cell.get("cell_type") == "code" and "remove-cell" not in tags(cell))


def python_of(cell: dict) -> str:
    """The cell's code as Python: IPython magics and shell escapes become ``pass`` (a cell magic, all of it)."""
    text = source(cell)
    if text.lstrip().startswith("%%"):
        return ""
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass"
        lines.append(line)
    return "\n".join(lines)


def parse(cell: dict) -> ast.Module | None:
    try:
        return ast.parse(python_of(cell))
    except SyntaxError:
        return None


def _where(i: int, cell: dict) -> str:
    first = source(cell).strip().splitlines()[:1]
    return f"cell {i} ({first[0][:60]!r})" if first else f"cell {i}"


# --- (a) bookkeeping -------------------------------------------------------------------------------

BOOKKEEPING = {"claim", "glue"}


def dotted_name(node: ast.AST) -> str | None:
    """``"a.b.c"`` for a name or a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def bookkeeping_problems(nb: dict) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if not is_visible(cell) or (tree := parse(cell)) is None:
            continue
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = dotted_name(node.func)
                if name and name.split(".")[-1] in BOOKKEEPING:
                    found.add(f"calls {name}()")
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name in BOOKKEEPING:
                        found.add(f"imports {alias.name} from {node.module}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[-1] in BOOKKEEPING:
                        found.add(f"imports {alias.name}")
        if found:
            problems.append(f"{_where(i, cell)} is visible and {', '.join(sorted(found))}: "
                            "move the bookkeeping to a remove-cell cell")
    return problems


# --- (b) names used before they are defined in a visible cell --------------------------------------

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _own_nodes(node: ast.AST):
    """Nodes of ``node``'s own scope, in source order, without descending into nested scopes (a nested
    scope is yielded itself; its decorators, defaults and bases belong to this scope and are walked)."""
    for child in ast.iter_child_nodes(node):
        yield child
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in child.decorator_list + child.args.defaults + [d for d in child.args.kw_defaults if d]:
                yield sub
                yield from _own_nodes(sub)
        elif isinstance(child, ast.Lambda):
            for sub in child.args.defaults + [d for d in child.args.kw_defaults if d]:
                yield sub
                yield from _own_nodes(sub)
        elif isinstance(child, ast.ClassDef):
            for sub in child.decorator_list + child.bases + [k.value for k in child.keywords]:
                yield sub
                yield from _own_nodes(sub)
        elif isinstance(child, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            first = child.generators[0].iter  # evaluated in the enclosing scope
            yield first
            yield from _own_nodes(first)
        else:
            yield from _own_nodes(child)


def _bound_names(node: ast.AST) -> set[str]:
    """Names a statement (or scope body) binds in its own scope: targets, imports, defs, except-as."""
    out: set[str] = set()
    for n in [node, *_own_nodes(node)]:
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n is not node:
            out.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            for alias in n.names:
                if alias.name != "*":
                    out.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            out.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            out.add(n.rest)
    return out


def _scope_locals(scope: ast.AST) -> set[str]:
    """The names local to a function, lambda, class or comprehension scope."""
    if isinstance(scope, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        out = set()
        for gen in scope.generators:
            out |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
        return out
    out = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = scope.args
        for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
            out.add(arg.arg)
    declared_global = {name for n in _own_nodes(scope) if isinstance(n, ast.Global) for name in n.names}
    return (out | _bound_names(scope)) - declared_global


def _free_reads(scope: ast.AST, enclosing: frozenset[str] = frozenset()) -> list[ast.Name]:
    """Names read inside a nested scope (and its own nested scopes) that none of them binds."""
    bound = enclosing | _scope_locals(scope)
    nodes = list(_own_nodes(scope))
    if isinstance(scope, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        first = scope.generators[0].iter
        skip = {id(n) for n in ast.walk(first)}  # the first iterable is the enclosing scope's
        nodes = [n for n in nodes if id(n) not in skip]
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
        outer = set()
        for sub in ([*scope.decorator_list] if hasattr(scope, "decorator_list") else []) + \
                (list(scope.args.defaults) + [d for d in scope.args.kw_defaults if d] if hasattr(scope, "args") else []) + \
                (list(scope.bases) + [k.value for k in scope.keywords] if isinstance(scope, ast.ClassDef) else []):
            outer |= {id(n) for n in ast.walk(sub)}
        nodes = [n for n in nodes if id(n) not in outer]
    reads = []
    for n in nodes:
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in bound:
            reads.append(n)
        elif isinstance(n, _SCOPES):
            reads += _free_reads(n, frozenset(bound))
    return reads


def _statement_reads(stmt: ast.stmt) -> tuple[list[ast.Name], list[ast.Name]]:
    """(reads now, reads later) of a module-level statement: names read at module scope when it runs,
    and names read by the bodies of the functions and lambdas it defines (run later)."""
    now, later = [], []
    for n in _own_nodes(_module(stmt)):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            now.append(n)
        elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
            now.append(n.target)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            later += _free_reads(n)
        elif isinstance(n, (ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            now += _free_reads(n)
    return now, later


def _module(stmt: ast.stmt) -> ast.Module:
    return ast.Module(body=[stmt], type_ignores=[])


def undefined_name_problems(nb: dict) -> list[str]:
    problems = []
    defined: set[str] = set()
    star_import = False
    for i, cell in enumerate(nb.get("cells", [])):
        if not is_visible(cell):
            continue
        tree = parse(cell)
        if tree is None:
            problems.append(f"{_where(i, cell)} is not valid Python")
            continue
        missing: dict[str, int] = {}
        deferred: list[ast.Name] = []
        for stmt in tree.body:
            now, later = _statement_reads(stmt)
            own = _bound_names(_module(stmt))
            # an assignment's own targets do not define the names its right-hand side reads
            if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                own = set()
            for n in now:
                if n.id not in defined and n.id not in own and n.id not in ALWAYS_DEFINED:
                    missing.setdefault(n.id, n.lineno)
            deferred += later
            defined |= _bound_names(_module(stmt))
            defined |= {name for n in ast.walk(stmt) if isinstance(n, ast.Global) for name in n.names}
            if any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(stmt)):
                star_import = True
        for n in deferred:
            if n.id not in defined and n.id not in ALWAYS_DEFINED:
                missing.setdefault(n.id, n.lineno)
        if missing and not star_import:
            names = ", ".join(f"{name} (line {line})" for name, line in sorted(missing.items(), key=lambda x: x[1]))
            problems.append(f"{_where(i, cell)} uses names no visible cell above defines: {names}")
    return problems


# --- (c) bare booleans -----------------------------------------------------------------------------

_BOOL_CALLS = {"isinstance", "issubclass", "hasattr", "callable", "all", "any", "allclose", "isclose",
               "array_equal", "equal", "is_tensor", "startswith", "endswith", "issubset", "issuperset",
               "isdisjoint", "isdigit", "isalpha", "exists", "is_file", "is_dir", "bool"}


def _is_bool_expr(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, bool)
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return True
    if isinstance(node, ast.BoolOp):
        return all(_is_bool_expr(v) for v in node.values)
    if isinstance(node, ast.Call):
        name = dotted_name(node.func) or (node.func.attr if isinstance(node.func, ast.Attribute) else None)
        return bool(name) and name.split(".")[-1] in _BOOL_CALLS
    return False


def bare_bool_problems(nb: dict) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if not is_visible(cell) or (tree := parse(cell)) is None or not tree.body:
            continue
        last = tree.body[-1]
        if isinstance(last, ast.Expr) and _is_bool_expr(last.value):
            problems.append(f"{_where(i, cell)} ends with a boolean expression "
                            f"({ast.unparse(last.value)[:60]!r}), which the book shows as a bare True/False")
    return problems


_BOOL_TEXT = re.compile(r"(np\.)?(True|False)_?|tensor\((True|False)\)|array\((True|False)\)")


def bool_output_problems(nb: dict) -> list[str]:
    """On an executed notebook: visible code cells whose result, or a printed line, is a bare boolean."""
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if not is_visible(cell) or "remove-output" in tags(cell):
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind in ("execute_result", "display_data"):
                text = source({"source": out.get("data", {}).get("text/plain", "")}).strip()
                if _BOOL_TEXT.fullmatch(text):
                    problems.append(f"{_where(i, cell)} displays {text}")
            elif kind == "stream":
                lines = [line.strip() for line in source({"source": out.get("text", "")}).splitlines()]
                bare = [line for line in lines if _BOOL_TEXT.fullmatch(line)]
                if bare:
                    problems.append(f"{_where(i, cell)} prints a line that is only {bare[0]}")
    return problems


# --- (d) hand-typed cross-reference numbers ---------------------------------------------------------

_CROSSREF = re.compile(
    r"(?<![\w-])(?:exercises?|sections?|figures?|figs?\.|tables?|equations?|eqs?\.)"
    r"(?:\s|&nbsp;|~)+\d+|§\s*\d+", re.IGNORECASE)


def _prose(markdown: str) -> str:
    """Markdown without code fences (not directives), inline code that is not a role's text, and math."""
    text = re.sub(r"^(```+|~~~+)(?!\{)[^\n]*\n.*?^\1\s*$", "", markdown, flags=re.S | re.M)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    # a role's text stays (link text counts), plain inline code goes
    text = re.sub(r"(\{[^{}\s]+\})?(`+)(.+?)\2", lambda m: f" {m.group(3)} " if m.group(1) else " ", text)
    return re.sub(r"(?<!\\)\$[^$\n]+\$", "", text)


def crossref_text_problems(markdown: str, where: str = "") -> list[str]:
    problems = []
    for m in _CROSSREF.finditer(_prose(markdown)):
        problems.append(f"{where}: hand-typed cross-reference number {m.group(0)!r}: use {{numref}} on the "
                        "exercise's label, or a named link to a (label)= target")
    return problems


def crossref_problems(nb: dict) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "markdown":
            problems += crossref_text_problems(source(cell), _where(i, cell))
    return problems


# --- (e) "What does this do?" after the first use of an experiment ----------------------------------

def _import_map(tree: ast.AST, names: dict[str, str]) -> None:
    """Record what imported names stand for, as dotted names without the leading ``lmlab.``."""
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                if a.asname:
                    names[a.asname] = _strip_lmlab(a.name)
        elif isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == "lmlab":
            base = _strip_lmlab(n.module)
            for a in n.names:
                names[a.asname or a.name] = f"{base}.{a.name}" if base else a.name


def _strip_lmlab(dotted: str) -> str:
    return dotted[len("lmlab."):] if dotted.startswith("lmlab.") else ("" if dotted == "lmlab" else dotted)


def _canonical(name: str) -> str:
    module, _, func = name.rpartition(".")
    return f"{_MODULE_ALIASES.get(module, module)}.{func}"


_EXPERIMENTS = {_canonical(name) for name in EXPERIMENT_CALLS}


def experiment_calls(tree: ast.AST, names: dict[str, str]) -> list[str]:
    """The EXPERIMENT_CALLS functions a cell calls (canonical ``module.func`` names), in order."""
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and (dotted := dotted_name(n.func)):
            head, _, rest = dotted.partition(".")
            if head in names:
                dotted = names[head] + ("." + rest if rest else "")
            dotted = _strip_lmlab(dotted)
            parts = dotted.split(".")
            if len(parts) >= 2:
                key = _canonical(".".join(parts[-2:]))
                if key in _EXPERIMENTS and key not in found:
                    found.append(key)
    return found


_DROPDOWN = re.compile(r"^(?P<fence>```+|:::+)\{dropdown\}[ \t]+What does this do\?[ \t]*\n(?P<body>.*?)^(?P=fence)[ \t]*$",
                       re.S | re.M)


def has_explainer(markdown: str) -> bool:
    for m in _DROPDOWN.finditer(markdown):
        body = [line for line in m.group("body").splitlines() if not re.match(r"^:[\w-]+:", line.strip())]
        if "".join(body).strip():
            return True
    return False


def dropdown_problems(nb: dict) -> list[str]:
    problems = []
    names: dict[str, str] = {}
    seen: set[str] = set()
    cells = nb.get("cells", [])
    for i, cell in enumerate(cells):
        if not is_visible(cell) or (tree := parse(cell)) is None:
            continue
        _import_map(tree, names)
        new = [f for f in experiment_calls(tree, names) if f not in seen]
        if not new:
            continue
        seen |= set(new)
        following = next((c for c in cells[i + 1:] if is_shown(c)), None)
        if following is None or following.get("cell_type") != "markdown" or not has_explainer(source(following)):
            problems.append(f"{_where(i, cell)} is the first visible use of {', '.join(new)}: the next cell the book "
                            "shows must be markdown with a non-empty ':::{dropdown} What does this do?'")
    return problems


# --- (f) exercise tiers ----------------------------------------------------------------------------

_EXERCISE = re.compile(r"^(```+|:::+)\{(exercise|exercise-start)\}[ \t]*(?P<title>[^\n]*)$", re.M)


def exercise_titles(nb: dict) -> list[tuple[int, str]]:
    return [(i, m.group("title").strip()) for i, cell in enumerate(nb.get("cells", []))
            if cell.get("cell_type") == "markdown" for m in _EXERCISE.finditer(source(cell))]


def tier_problems(nb: dict) -> list[str]:
    problems = []
    titles = exercise_titles(nb)
    for i, title in titles:
        if not title.endswith(TIERS):
            problems.append(f"cell {i}: exercise title {title!r} does not end with one of {', '.join(TIERS)}")
    if titles and not titles[0][1].endswith("(warm-up)"):
        problems.append(f"cell {titles[0][0]}: the first exercise ({titles[0][1]!r}) is not a (warm-up)")
    return problems


# --- (g) removed cells are Colab forms --------------------------------------------------------------

def form_problems(nb: dict) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code" or "remove-cell" not in tags(cell):
            continue
        first = (source(cell).splitlines() or [""])[0]
        if not re.match(r"#\s*@title\s+\S", first):
            problems.append(f"{_where(i, cell)}: a removed cell must start with '# @title <what it does>'")
        elif cell.get("metadata", {}).get("cellView") != "form":
            problems.append(f"{_where(i, cell)}: needs metadata \"cellView\": \"form\" (python tools/forms.py)")
    return problems


# --- (h) the "Where it fails" label -----------------------------------------------------------------

def chapter_number(path: str | Path) -> int | None:
    m = re.match(r"(\d+)-", Path(path).name)
    return int(m.group(1)) if m and Path(path).parent.name == "chapters" else None


def fails_label_problems(nb: dict, number: int) -> list[str]:
    label = re.compile(r"^\(fails-ch" + str(number) + r"\)=[ \t]*\n+#+ ", re.M)
    if any(cell.get("cell_type") == "markdown" and label.search(source(cell)) for cell in nb.get("cells", [])):
        return []
    return [f"no '(fails-ch{number})=' label on its own line just above the 'Where it fails' heading"]


# --- all static checks ------------------------------------------------------------------------------

CHECKS = {
    "bookkeeping": bookkeeping_problems,
    "undefined names": undefined_name_problems,
    "bare booleans": bare_bool_problems,
    "cross-references": crossref_problems,
    "experiment dropdowns": dropdown_problems,
    "exercise tiers": tier_problems,
    "colab forms": form_problems,
}


def all_problems(nb: dict, path: str | Path = "") -> dict[str, list[str]]:
    """Every static check on one notebook (the fails label for chapters only): {check: problems}."""
    out = {name: check(nb) for name, check in CHECKS.items()}
    number = chapter_number(path)
    if number is not None:
        out["fails label"] = fails_label_problems(nb, number)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python tests/gates/teaching.py NOTEBOOK...``: print every problem; exit 1 if any."""
    import json
    import sys

    paths = argv if argv is not None else sys.argv[1:]
    bad = 0
    for path in paths:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        for name, problems in all_problems(nb, path).items():
            for p in problems:
                print(f"{path} [{name}] {p}")
                bad += 1
    print(f"{bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
