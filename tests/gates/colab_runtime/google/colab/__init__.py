"""A stand-in for Colab's ``google.colab`` package, for the Colab replay (tests/test_replay.py).

Importing it is how a chapter's setup cell knows it runs on Colab (it then installs ``lmlab``). It holds
nothing else of Colab; ``output`` has the one call notebooks commonly make for ipywidgets.
"""
from . import output  # noqa: F401

LMLAB_REPLAY_STUB = True
