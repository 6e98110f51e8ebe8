"""Execute one notebook with nbclient inside the Colab replay runtime; write it back with a timing record.

Run by :mod:`gates.replay` with the replay runtime's Python (not imported by the tests: it needs only
nbclient and nbformat, which that runtime has)::

    python replay_driver.py NOTEBOOK OUTPUT.ipynb RESULT.json --kernel NAME --cwd DIR --timeout SECONDS

The result records the wall time of the whole execution (kernel start and the setup cell's install
included, as a student on Colab waits for them), the CPU time the kernel and its children used, the
load average seen while it ran, and the first error (cell index, exception name and value).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("output")
    parser.add_argument("result")
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(args.notebook, as_version=4)
    client = NotebookClient(nb, timeout=args.timeout, kernel_name=args.kernel, allow_errors=False,
                            record_timing=True, resources={"metadata": {"path": args.cwd}})
    loads = [os.getloadavg()[0]]
    done = threading.Event()

    def sample_load() -> None:
        while not done.wait(2.0):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample_load, daemon=True)
    sampler.start()
    error = None
    cpu0, start = _cpu_children(), time.monotonic()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        error = {"type": type(err).__name__, "ename": getattr(err, "ename", type(err).__name__),
                 "evalue": str(getattr(err, "evalue", err))[:2000], "cell": None}
    except Exception as err:  # kernel did not start, ...
        error = {"type": type(err).__name__, "ename": type(err).__name__, "evalue": str(err)[:2000], "cell": None}
    seconds = time.monotonic() - start
    done.set()
    loads.append(os.getloadavg()[0])
    cpu = _cpu_children() - cpu0
    if error is not None:
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        failing = [i for i in code if any(o.get("output_type") == "error" for o in nb.cells[i].get("outputs", []))]
        ran = [i for i in code if nb.cells[i].get("execution_count") is not None]
        error["cell"] = failing[0] if failing else (ran[-1] if ran else None)
    nbformat.write(nb, args.output)
    record = {"seconds": seconds, "cpu_seconds": cpu, "load_start": loads[0], "load_max": max(loads),
              "load_end": loads[-1], "cpus": os.cpu_count(), "error": error}
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
