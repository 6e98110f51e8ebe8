"""Shared helpers for the benchmarks: threads, machine description, alternating timed runs, results.

Every benchmark runs in one process with a fixed number of torch threads (2 by default, the course's
target machine), warms each contender up once, then alternates the contenders for ``--runs`` rounds
and reports medians. Raw results go to ``benchmarks/results/<name>.json`` with the machine's core
count and load average before and after, so a reader can tell an idle run from a loaded one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="a tiny, fast version (the test suite's smoke test)")
    p.add_argument("--runs", type=int, default=None, help="timed rounds after the warm-up (default 5; 1 with --tiny)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the warm-up run (only to check a script quickly; not for committed results)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the JSON (default benchmarks/results/<name>.json; with --tiny nothing "
                        "is written unless given)")
    return p


def setup(args: argparse.Namespace) -> None:
    import torch

    if args.runs is None:
        args.runs = 1 if args.tiny else 5
    if args.runs < 1:
        raise SystemExit(f"--runs must be >= 1, got {args.runs}")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1) if hasattr(torch, "set_num_interop_threads") else None


def _cpu_model() -> str:
    from lmlab.zoo import _cpu_name  # the processor's name, as the zoo's records give it

    return _cpu_name()


def machine() -> dict[str, Any]:
    """Cores, load average, CPU model and library versions."""
    import torch
    import transformers

    return {
        "cores": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu": _cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def alternate(contenders: dict[str, Callable[[], dict]], runs: int, warmup: bool = True) -> dict[str, list[dict]]:
    """Call each contender once to warm up, then ``runs`` rounds in alternating order.

    Each contender returns a dict of measurements (``seconds`` at least). Returns name -> list of them.
    """
    if warmup:
        for fn in contenders.values():
            fn()
    out: dict[str, list[dict]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(runs):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            out[name].append(contenders[name]())
    return out


def median(rows: list[dict], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e6:
            return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def write(name: str, args: argparse.Namespace, result: dict[str, Any], machine_before: dict[str, Any]) -> Path | None:
    """Write the JSON result (with the machine before and the load average after); returns the path."""
    out = args.out if args.out is not None else (None if args.tiny else RESULTS / f"{name}.json")
    after = os.getloadavg() if hasattr(os, "getloadavg") else None
    payload = {"benchmark": name, "tiny": bool(args.tiny), "runs": args.runs, "warmup": args.warmup,
               "machine": machine_before,
               "load_average_after": list(after) if after else None, **result}
    if out is None:
        return None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return out


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
