"""Where the course runs: build mode, cache folder, device, seeds, glue and claims, progress bars.

The book's build command sets one environment variable, ``LMLAB_BOOK=1``. In that *build mode*

* plotly figures are emitted for the static site (plotly.js is served once by the site, not inlined);
* progress bars print one plain line when they finish (a live widget would freeze in the page);
* live ipywidgets front-ends show their static plotly equivalent instead;
* :func:`claim` turns every claim the prose makes into an assertion that fails the build.

Outside build mode (Colab, Jupyter, scripts) everything is live and claims only print a note.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any, Iterable

BUILD_ENV = "LMLAB_BOOK"
CACHE_ENV = "LMLAB_CACHE"
BOOK_RENDERER = "lmlab_book"


def in_book_build() -> bool:
    """True while the book is being built (``LMLAB_BOOK=1``)."""
    return os.environ.get(BUILD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def cache_dir(*parts: str) -> Path:
    """The lmlab cache folder (``~/.cache/lmlab``, or ``$LMLAB_CACHE``), created on demand.

    Extra ``parts`` name a subfolder, e.g. ``cache_dir("zoo")``.
    """
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "lmlab")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def device(prefer: str | None = None, verbose: bool = False):
    """Pick a torch device: CUDA, then Apple MPS, then the CPU (or ``prefer`` if given).

    Asking for a device this machine does not have (``"cuda"`` without a GPU, ``"cuda:3"`` with two,
    ``"mps"`` off a Mac) raises a ``ValueError`` that says which devices are there.

    >>> device("cpu")
    device(type='cpu')
    """
    import torch

    if prefer is not None:
        if isinstance(prefer, torch.device):
            prefer = str(prefer)
        if not isinstance(prefer, str) or not (prefer in {"cpu", "cuda", "mps"} or
                                               (prefer.startswith("cuda:") and prefer[5:].isdigit())):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {prefer!r}")
        dev = torch.device(prefer)
        if dev.type != "cpu" and not _device_available(dev):
            raise ValueError(f"device {prefer!r} is not available on this machine; available: "
                             f"{', '.join(available_devices())} (pass one of them, or None for the best)")
    elif torch.cuda.is_available():
        dev = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        dev = torch.device("mps")
    else:
        dev = torch.device("cpu")
    if verbose:
        print(f"lmlab: using {describe_device(dev)}")
    return dev


def _device_available(dev) -> bool:
    import torch

    if dev.type == "cuda":
        return torch.cuda.is_available() and (dev.index is None or dev.index < torch.cuda.device_count())
    if dev.type == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return dev.type == "cpu"


def available_devices() -> list[str]:
    """The device names this machine offers, e.g. ``['cpu']`` or ``['cpu', 'cuda', 'cuda:0']``."""
    import torch

    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def model_device(model) -> "torch.device":
    """The device a model's parameters live on (the CPU for a model without parameters)."""
    import torch

    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def to_model_device(model, *tensors):
    """Move ``tensors`` (ids, masks, inputs) to ``model``'s device; returns one tensor or a tuple.

    Every public lmlab function that takes ids or tensors for a model passes them through here, so a
    chapter written for the CPU runs unchanged with the model on a GPU. Non-tensors pass through.
    """
    import torch

    dev = model_device(model)
    moved = tuple(t.to(dev) if isinstance(t, torch.Tensor) and t.device != dev else t for t in tensors)
    return moved[0] if len(moved) == 1 else moved


def describe_device(dev=None) -> str:
    """A one-line description of a device, e.g. ``'the CPU (2 threads)'``."""
    import torch

    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda":
        return f"CUDA GPU {torch.cuda.get_device_name(dev)}"
    if dev.type == "mps":
        return "Apple GPU (MPS)"
    return f"the CPU ({torch.get_num_threads()} threads)"


# --- seeds -------------------------------------------------------------------------------------------
# Bit-equality holds only on one machine, so what a chapter trains or samples must say the same for
# other seeds too. LMLAB_SEED_OFFSET=k shifts every seed a reader passes to lmlab by k (the Colab replay
# runs with k = 1): a claim that held only for seed 0 then fails there. Fixed inputs (the zoo's training
# data and held-out sentences, the exercise checkers' hidden cases) are made inside fixed_seeds().

SEED_OFFSET_ENV = "LMLAB_SEED_OFFSET"
SEED_MAX = 2**63 - 1  # seeds are ints in 0..SEED_MAX: torch, numpy and Python all accept them
_FIXED = False


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` if it is an int in ``0..2**63 - 1``; otherwise a ``TypeError``/``ValueError`` naming it."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"{name} must be an int in 0..{SEED_MAX} (2**63 - 1), got {seed!r}")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{name} must be an int in 0..{SEED_MAX} (2**63 - 1), got {seed}")
    return seed


def seed_offset() -> int:
    """The seed offset from ``$LMLAB_SEED_OFFSET`` (0 when unset, and inside :func:`fixed_seeds`)."""
    if _FIXED:
        return 0
    raw = os.environ.get(SEED_OFFSET_ENV, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{SEED_OFFSET_ENV} must be an integer (e.g. 1), got {raw!r}") from None


def seeded(seed: Any, name: str = "seed") -> int:
    """The seed lmlab actually uses for a seed a reader passed: ``seed + seed_offset()`` (wrapped into
    range). Every public lmlab function with a ``seed`` argument calls this."""
    return (check_seed(seed, name) + seed_offset()) % (SEED_MAX + 1)


class fixed_seeds:
    """Context manager: inside it the seed offset is 0 (for fixed inputs, not the reader's experiments)."""

    def __enter__(self):
        global _FIXED
        self._old, _FIXED = _FIXED, True
        return self

    def __exit__(self, *exc):
        global _FIXED
        _FIXED = self._old
        return False


def seed_everything(seed: int) -> int:
    """Seed Python's, NumPy's and torch's random number generators with ``seeded(seed)``; returns it."""
    actual = seeded(seed)
    import numpy as np
    import torch

    random.seed(actual)
    np.random.seed(actual % 2**32)
    torch.manual_seed(actual)
    return actual


def generator(seed: int, device=None) -> "torch.Generator":
    """A torch random generator seeded with ``seeded(seed)``: ``torch.Generator().manual_seed(...)``
    that honours the seed offset. Pass it as ``generator=`` to ``torch.randn``, ``torch.multinomial``, ..."""
    import torch

    return torch.Generator(device=device or "cpu").manual_seed(seeded(seed))


def rng(seed: int) -> "np.random.Generator":
    """A NumPy random generator seeded with ``seeded(seed)``: ``np.random.default_rng(...)`` that honours
    the seed offset."""
    import numpy as np

    return np.random.default_rng(seeded(seed))


# --- chapters: glue numbers into prose, guard the claims the prose makes -------------------------

def glue(name: str, value: Any, display: bool = False) -> Any:
    """Make ``value`` available to the prose as ``{glue:text}`name```; returns ``value``.

    Uses MyST-NB's ``glue`` when it is installed (book builds, local Jupyter); on Colab, which has no
    MyST-NB, it shows the value when ``display`` is true and otherwise does nothing.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue name must be an identifier-like string, got {name!r}")
    # A NumPy or torch scalar becomes a plain Python number: NumPy 2 writes np.float64(1.2) as its
    # text, which MyST-NB cannot format with a spec such as {glue:text}`name:.2f`.
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()
    try:
        from myst_nb import glue as _glue
    except ImportError:
        if display:
            from IPython.display import display as _display

            _display(value)
        return value
    _glue(name, value, display=display)
    return value


class ClaimError(AssertionError):
    """A claim made in a chapter's prose did not hold for the computed numbers."""


def claim(condition: bool, message: str) -> bool:
    """Guard a claim the prose makes about computed numbers.

    In build mode a false claim raises :class:`ClaimError`, so the build fails instead of the book
    saying something untrue. Elsewhere (Colab, Jupyter) it prints a short note when the claim does not
    hold for your run (you may have changed a value), and returns the truth value.
    """
    ok = bool(condition)
    if not ok:
        if in_book_build():
            raise ClaimError(f"claim does not hold: {message}")
        print(f"Note: with your settings this no longer holds: {message}")
    return ok


# --- progress bars ------------------------------------------------------------------------------

def progress(iterable: Iterable | None = None, total: int | None = None, desc: str | None = None, **kwargs):
    """A progress bar: live (``tqdm.auto``) in notebooks, one plain line at the end in book builds.

    Use like ``tqdm``: ``for step in progress(range(n), desc="training"): ...`` and
    ``bar.set_postfix(loss=...)``.
    """
    if in_book_build():
        return _PlainBar(iterable, total=total, desc=desc, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, **kwargs)


def _plain_bar_class():
    from tqdm.std import tqdm

    class PlainBar(tqdm):
        """A tqdm bar that draws nothing while running and prints its final state once, as text."""

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("ascii", True)
            kwargs.setdefault("ncols", 80)
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 (closed in close())
            super().__init__(*args, **kwargs)

        def close(self):
            if not self.disable and not getattr(self, "_lmlab_printed", False):
                self._lmlab_printed = True
                print(self.__str__(), flush=True)
            devnull = getattr(self, "fp", None)  # a disabled bar never opened one
            super().close()
            try:
                devnull.close()
            except Exception:
                pass

    return PlainBar


def _PlainBar(*args, **kwargs):  # noqa: N802 (a factory that reads like a class)
    return _plain_bar_class()(*args, **kwargs)


# --- plotly in the static book -------------------------------------------------------------------

def _register_book_renderer() -> None:
    """Register the plotly renderer for book builds and make it the default.

    It writes a ``<div>`` and a script that calls ``Plotly.newPlot``; plotly.js itself is loaded once
    per page from the site's ``_static`` folder (see ``_ext/course.py``), never inlined or fetched
    from a CDN. (plotly's own ``HtmlRenderer`` also adds a MathJax ``<script>`` from a CDN to every
    figure; this one does not: the site serves its own MathJax.)
    """
    import plotly.io as pio
    from plotly.io._base_renderers import HtmlRenderer

    class BookRenderer(HtmlRenderer):
        def __init__(self):
            super().__init__(connected=False, full_html=False, global_init=False, include_plotlyjs=False)

        def to_mimebundle(self, fig_dict):
            html = pio.to_html(
                fig_dict,
                config=self.config,
                auto_play=self.auto_play,
                include_plotlyjs=False,
                include_mathjax=False,
                full_html=False,
                animation_opts=self.animation_opts,
                default_width="100%",
                default_height=525,
                validate=False,
            )
            alt = ((fig_dict.get("layout") or {}).get("meta") or {}).get("alt")
            if isinstance(alt, str) and alt:
                import html as _html

                html = (f'<div class="lmlab-figure" role="figure" aria-label="{_html.escape(alt, quote=True)}">'
                        f"{html}</div>")
            return {"text/html": html}

    pio.renderers[BOOK_RENDERER] = BookRenderer()
    pio.renderers.default = BOOK_RENDERER


if in_book_build():
    try:
        _register_book_renderer()
    except ImportError:  # plotly missing: nothing to configure
        pass
