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

    >>> device("cpu")
    device(type='cpu')
    """
    import torch

    if prefer is not None:
        if prefer not in {"cpu", "cuda", "mps"} and not str(prefer).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {prefer!r}")
        dev = torch.device(prefer)
    elif torch.cuda.is_available():
        dev = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        dev = torch.device("mps")
    else:
        dev = torch.device("cpu")
    if verbose:
        print(f"lmlab: using {describe_device(dev)}")
    return dev


def describe_device(dev=None) -> str:
    """A one-line description of a device, e.g. ``'the CPU (2 threads)'``."""
    import torch

    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda":
        return f"CUDA GPU {torch.cuda.get_device_name(dev)}"
    if dev.type == "mps":
        return "Apple GPU (MPS)"
    return f"the CPU ({torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random number generators."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- chapters: glue numbers into prose, guard the claims the prose makes -------------------------

def glue(name: str, value: Any, display: bool = False) -> Any:
    """Make ``value`` available to the prose as ``{glue:text}`name```; returns ``value``.

    Uses MyST-NB's ``glue`` when it is installed (book builds, local Jupyter); on Colab, which has no
    MyST-NB, it shows the value when ``display`` is true and otherwise does nothing.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue name must be an identifier-like string, got {name!r}")
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
