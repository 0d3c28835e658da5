"""A CPU hog for grading under load: one busy process per core, like other users' jobs on a
shared grading server. Used by the grading round trip and by ``bench/grading_margin.py``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

# Normal priority (niceness 0), like another user's job: a nice'd loop would only soak up idle
# time and prove nothing. It ends itself when its parent is gone (checked every ~10⁶
# iterations), so a crashed or killed run leaves no busy loop behind.
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
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        for _ in range(processes or usable_cores())
    ]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
