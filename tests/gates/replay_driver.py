"""Execute one notebook with nbclient inside the Colab replay runtime; write it back with a timing record.

Run by :mod:`gates.replay` with the replay runtime's Python (not imported by the tests: it needs only
nbclient and nbformat, which that runtime has)::

    python replay_driver.py NOTEBOOK OUTPUT.ipynb RESULT.json --kernel NAME --cwd DIR --timeout SECONDS [--hub DIR]

The result records the wall time of the whole execution (kernel start and the setup cell's install
included, as a student on Colab waits for them), the CPU time the kernel and its children used, the
load average seen while it ran, the first error (cell index, exception name and value), each code
cell's seconds (``cell_seconds``, by cell index) and the indices of the ``colab-only`` cells.

``--hub DIR`` serves the loopback stand-in hub written by ``hub_standin.py build DIR`` from this process
(it runs inside the replay's network namespace, where the kernel can reach it), points ``HF_ENDPOINT``
and ``LMLAB_REPLAY_URL_MAP`` at it, and executes the ``colab-only`` cells: their ``skip-execution`` tag
(which nbclient honours) is dropped for the run. The record then also holds ``hub_requests`` (what was
fetched). Without ``--hub`` those cells are skipped, as in the book build.
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


def _cell_seconds(cell) -> float | None:
    """Seconds from the cell's execute_input to its execute_reply (nbclient's record_timing)."""
    from datetime import datetime

    timing = (cell.get("metadata") or {}).get("execution") or {}
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return round((parse(end) - parse(start)).total_seconds(), 3)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("output")
    parser.add_argument("result")
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--hub", default=None, help="folder written by hub_standin.py build: serve it, run colab-only cells")
    args = parser.parse_args()

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(args.notebook, as_version=4)
    colab_only = [i for i, c in enumerate(nb.cells) if "colab-only" in (c.metadata.get("tags") or [])]
    hub_log = None
    if args.hub:
        import hub_standin  # beside this file

        hub_log = os.path.join(os.path.dirname(os.path.abspath(args.result)), "hub-requests.jsonl")
        open(hub_log, "w").close()
        _server, url = hub_standin.serve(args.hub, log_path=hub_log)
        os.environ["HF_ENDPOINT"] = url  # the kernel inherits it: transformers, huggingface_hub and lmlab.hub
        os.environ["LMLAB_REPLAY_URL_MAP"] = json.dumps(hub_standin.url_map(args.hub, url))
        for i in colab_only:
            tags = nb.cells[i].metadata.get("tags") or []
            nb.cells[i].metadata["tags"] = [t for t in tags if t != "skip-execution"]
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
    if args.hub:  # the saved copy keeps the cells' tags as they are in the source
        for i in colab_only:
            tags = nb.cells[i].metadata.get("tags") or []
            if "skip-execution" not in tags:
                nb.cells[i].metadata["tags"] = [*tags, "skip-execution"]
    nbformat.write(nb, args.output)
    requests = []
    if hub_log and os.path.exists(hub_log):
        with open(hub_log, encoding="utf-8") as f:
            requests = [json.loads(line) for line in f if line.strip()]
    record = {"seconds": seconds, "cpu_seconds": cpu, "load_start": loads[0], "load_max": max(loads),
              "load_end": loads[-1], "cpus": os.cpu_count(), "error": error,
              "cell_seconds": {str(i): _cell_seconds(c) for i, c in enumerate(nb.cells)
                               if c.cell_type == "code" and _cell_seconds(c) is not None},
              "colab_only": colab_only, "colab_only_ran": bool(args.hub), "hub_requests": requests}
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
