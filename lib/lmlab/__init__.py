"""lmlab: the small library behind "Transformer LMs: an interactive course".

Submodules are imported on first use (``lmlab.corpus``, ``lmlab.models``, ...), so ``import lmlab``
stays fast. In book builds (``LMLAB_BOOK=1``) importing lmlab also sets up plotly for the static site.
"""
from __future__ import annotations

import importlib

from .env import cache_dir, claim, device, generator, glue, in_book_build, progress, rng, seed_everything

__version__ = "0.1.0"

_SUBMODULES = {"env", "corpus", "texts", "tokenizers", "data", "models", "hub", "train", "zoo", "generate", "viz",
               "widgets", "exercises", "measure", "interpret", "geometry", "textstats", "experiments", "variants"}

__all__ = sorted(_SUBMODULES) + [
    "cache_dir", "claim", "device", "generator", "glue", "in_book_build", "progress", "rng", "seed_everything",
    "__version__",
]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lmlab' has no attribute {name!r}")
