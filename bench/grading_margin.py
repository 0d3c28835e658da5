"""How close each assignment's slowest cell comes to the grader's cell timeout, idle and with
every core kept busy by another process (a shared grading server), side by side in one run.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/grading_margin.py

Each solution notebook (``solutions/<assignment>``, what a fully correct student submits) is
executed three times with nbclient, as ``nbgrader autograde`` does: once to warm the disk
caches (not counted), then on the idle machine, then beside ``tests.cpu_load.cpu_hog``.
Printed first: how much the hog slows a CPU-bound probe (about 1.5× on 2 cores); then per
assignment the slowest cell's seconds each time, the load's slow-down (loaded / idle), and the
margin (the slowest loaded cell / the course's ``Execute.timeout`` in nbgrader_config.py).
A margin well below 1 is what keeps a correct student's grade independent of the grader's load.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.cpu_load import cpu_hog, probe_seconds  # noqa: E402

COURSE_TIMEOUT = 60  # seconds a cell may take: nbgrader_config.py's c.Execute.timeout


def cell_seconds(path: Path) -> list[float]:
    """Wall seconds of every code cell of the notebook at ``path``, executed in its folder."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=10 * COURSE_TIMEOUT,
        record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    seconds = []
    for cell in notebook.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in timing:
            start = datetime.fromisoformat(timing["iopub.execute_input"].rstrip("Z"))
            end = datetime.fromisoformat(timing["shell.execute_reply"].rstrip("Z"))
            seconds.append((end - start).total_seconds())
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", help="default: every folder in solutions/")
    args = parser.parse_args()
    names = args.assignments or sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    idle_probe = probe_seconds()
    with cpu_hog():
        loaded_probe = probe_seconds()
    print(f"the hog slows a CPU-bound probe {loaded_probe / idle_probe:.2f}×", flush=True)
    rows = []
    for name in names:
        path = ROOT / "solutions" / name / f"{name}.ipynb"
        cell_seconds(path)  # warm-up: imports and data read from disk once
        idle = cell_seconds(path)
        with cpu_hog() as hogs:
            loaded = cell_seconds(path)
            assert all(hog.poll() is None for hog in hogs), "the CPU hog stopped"
        rows.append(
            {
                "assignment": name,
                "slowest cell, idle (s)": max(idle),
                "slowest cell, loaded (s)": max(loaded),
                "slow-down (loaded / idle)": max(loaded) / max(idle),
                f"margin (loaded / {COURSE_TIMEOUT} s timeout)": max(loaded) / COURSE_TIMEOUT,
            }
        )
        print(pd.DataFrame(rows[-1:]).set_index("assignment").round(2).to_string(), flush=True)
    print()
    print(pd.DataFrame(rows).set_index("assignment").round(2).to_string())


if __name__ == "__main__":
    main()
