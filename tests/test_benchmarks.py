"""Smoke test: every benchmark runs once at a tiny size and writes its JSON (no timing assertions)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = ["train_throughput.py", "generation.py", "nanogpt_recipe.py", "zoo_gaps.py", "live_panel.py"]


def test_every_benchmark_script_is_covered():
    on_disk = {p.name for p in BENCH.glob("*.py")} - {"common.py"}
    assert on_disk == set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_tiny(script, tmp_path):
    out = tmp_path / "result.json"
    env = {**os.environ, "LMLAB_CACHE": str(tmp_path / "cache"), "PYTHONHASHSEED": "0"}
    env.pop("LMLAB_BOOK", None)
    args = [sys.executable, str(BENCH / script), "--tiny", "--threads", "1", "--out", str(out)]
    if script == "nanogpt_recipe.py":
        corpus = tmp_path / "corpus.txt"
        corpus.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 400)
        args += ["--data", str(corpus)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "|" in proc.stdout  # the table
    result = json.loads(out.read_text())
    assert result["tiny"] is True and result["runs"] == 1
    assert result["machine"]["cores"] >= 1 and len(result["machine"]["load_average"]) == 3
    assert result["machine"]["torch_threads"] == 1 and len(result["load_average_after"]) == 3
    if script == "train_throughput.py":
        (shape,) = result["shapes"].values()
        assert shape["ratio"] > 0 and set(shape["median_tokens_per_second"]) == {"lmlab", "GPT2LMHeadModel"}
    elif script == "generation.py":
        assert result["positions_processed"]["lmlab, cache"] < result["positions_processed"]["lmlab, recompute"]
        assert all(result["same_tokens_as_lmlab_cache"].values())
    elif script == "nanogpt_recipe.py":
        assert set(result["variants"]) == {"learned", "rotary"} and result["config"]["bias"] is False
        assert all(v["val_loss"] > 0 for v in result["variants"].values())
    elif script == "live_panel.py":
        assert set(result["panels"]) == {"attention", "generation"}
        assert all(p["median_first_answer_s"] > 0 and p["keystrokes"] > 0 for p in result["panels"].values())
    else:
        assert set(result["models"]) == {"toy-gpt-tiny", "toy-bert-tiny", "toy-char-tiny"}
        assert all(m["held_out_words"] > 0 for m in result["models"].values())
