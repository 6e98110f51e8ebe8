"""lmlab.env: build mode, claims, cache folder, devices, progress bars and the book's plotly renderer."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from lmlab import env


def run_python(code: str, **extra_env) -> subprocess.CompletedProcess:
    import os

    e = dict(os.environ)
    e.pop("LMLAB_BOOK", None)
    e.update(extra_env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e,
                          timeout=120)


def test_build_mode_switch(monkeypatch):
    monkeypatch.delenv("LMLAB_BOOK", raising=False)
    assert not env.in_book_build()
    for on in ("1", "true", "yes"):
        monkeypatch.setenv("LMLAB_BOOK", on)
        assert env.in_book_build()
    monkeypatch.setenv("LMLAB_BOOK", "0")
    assert not env.in_book_build()


def test_claims_fail_the_build_but_only_warn_elsewhere(monkeypatch, capsys):
    monkeypatch.setenv("LMLAB_BOOK", "1")
    assert env.claim(True, "fine")
    with pytest.raises(env.ClaimError, match="claim does not hold: two is less than one"):
        env.claim(2 < 1, "two is less than one")
    monkeypatch.delenv("LMLAB_BOOK")
    assert env.claim(2 < 1, "two is less than one") is False
    assert "no longer holds: two is less than one" in capsys.readouterr().out


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "c"))
    path = env.cache_dir("zoo")
    assert path == tmp_path / "c" / "zoo" and path.is_dir()


def test_device_choice_and_validation():
    assert env.device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got 'tpu'"):
        env.device("tpu")
    assert "CPU" in env.describe_device("cpu") or "GPU" in env.describe_device("cpu")


def test_seed_everything_validates_and_repeats():
    import torch

    env.seed_everything(3)
    a = torch.rand(3)
    env.seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(TypeError, match="seed must be an int"):
        env.seed_everything("3")


def test_glue_rejects_bad_names_and_returns_the_value():
    with pytest.raises(ValueError, match="identifier-like"):
        env.glue("not a name", 1)
    assert env.glue("a_value", 1.5) == 1.5


def test_glue_stores_numpy_and_torch_scalars_as_python_numbers():
    """MyST-NB formats {glue:text}`x:.2f` from the text/plain it stored; NumPy 2's 'np.float64(1.2)' fails."""
    import numpy as np
    import torch

    for value, kind in ((np.float64(1.25), float), (np.int64(3), int), (torch.tensor(0.5), float)):
        out = env.glue("a_value", value)
        assert type(out) is kind and out == float(value)
    array = np.arange(3)
    assert env.glue("an_array", array) is array  # arrays pass through unchanged


def test_progress_is_plain_text_in_book_builds():
    out = run_python("""
        import lmlab
        bar = lmlab.progress(range(50), desc="training")
        for i in bar:
            bar.set_postfix(loss=0.5)
        print("done")
    """, LMLAB_BOOK="1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("training: 100%") and "50/50" in lines[0] and "loss=0.5" in lines[0]
    assert lines[1] == "done" and "\r" not in out.stdout and out.stderr == ""
    quiet = run_python("""
        import lmlab
        for i in lmlab.progress(range(5), disable=True):
            pass
        print("quiet")
    """, LMLAB_BOOK="1")
    assert quiet.returncode == 0 and quiet.stdout == "quiet\n", quiet.stderr


def test_book_renderer_serves_figures_without_plotlyjs_and_with_their_alt_text():
    out = run_python("""
        import lmlab, plotly.io as pio
        from lmlab import viz
        fig = viz.next_token_bars({"dog": 0.75, "cat": 0.25})
        print(pio.renderers.default)
        print(pio.renderers[pio.renderers.default].to_mimebundle(fig.to_dict())["text/html"])
    """, LMLAB_BOOK="1")
    assert out.returncode == 0, out.stderr
    default, html = out.stdout.split("\n", 1)
    assert default == env.BOOK_RENDERER
    assert html.startswith('<div class="lmlab-figure" role="figure" aria-label="Bar chart')
    assert "Plotly.newPlot" in html and len(html) < 50_000  # plotly.js itself is not inlined
    assert "cdn" not in html.lower() and "mathjax" not in html.lower()
    live = run_python("import lmlab, plotly.io as pio; print(pio.renderers.default)")
    assert live.stdout.strip() != env.BOOK_RENDERER  # outside build mode plotly chooses (Colab: 'colab')
