"""Helpers behind the book's quality gates (``tests/test_replay.py``, ``test_links.py``,
``test_accessibility.py``, ``test_page_weight.py``, ``test_dark_mode.py``).

Each gate's test and its planted-fault test call the same function from here:

* :mod:`gates.replay`: the Colab replay (a Colab-like Python runtime, every chapter executed with
  nbclient from a cold lmlab cache) and execution budgets;
* :mod:`gates.outputs`: normalising executed notebooks for the determinism comparison;
* :mod:`gates.links`: internal links, anchors and cross-references of a built site; external links;
* :mod:`gates.a11y`: axe-core on the article content and text alternatives of figures;
* :mod:`gates.weight`: page weight and where plotly.js and MathJax come from;
* :mod:`gates.contrast`: WCAG contrast of figure text in the theme's dark mode;
* :mod:`gates.sites`: tiny sites and notebooks for the planted-fault tests, and a local web server.
"""
