"""A CPU hog for grading under load: one busy process per core, like other users' jobs on a
shared grading server. Used by the grading round trip and by ``bench/grading_margin.py``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

# Normal priority (niceness 0), like another user's job: a nice'd loop would only soak up idle
# time and prove nothing. Each loop runs in a session of its own, as another user's job would:
# with Linux's autogroup scheduling (sched_autogroup_enabled) a kernel, which jupyter starts in
# its own session, would otherwise get a whole core while the loops shared the test's group.
# A loop ends itself when its parent is gone (checked every ~10⁶ iterations), so a crashed or
# killed run leaves no busy loop behind.
BUSY_LOOP = """import os
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def cpu_hog(processes: int | None = None):
    """``processes`` busy loops (default: one per usable core) for the ``with`` block; always
    killed. Yields the processes, so a caller can check they were busy throughout."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP], start_new_session=True)
        for _ in range(processes or usable_cores())
    ]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def probe_seconds() -> float:
    """Wall seconds of a fixed CPU-bound loop run in a session of its own, like a kernel: the
    slow-down a hog causes is ``probe_seconds()`` under it over ``probe_seconds()`` without."""
    code = (
        "import time; t = time.perf_counter(); sum(range(30_000_000)); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, start_new_session=True
    )
    return float(out.stdout)
