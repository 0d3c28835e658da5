"""Course-wide settings.

Quick mode (``RECRL_QUICK=1``) shrinks training budgets so the test suite fits a small
CI machine. It never skips a lesson or weakens what a lesson asserts.
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")


def _read_quick() -> bool:
    value = os.environ.get("RECRL_QUICK", "0").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"RECRL_QUICK must be 0 or 1, got {value!r}")
    return value == "1"


QUICK: bool = _read_quick()


def budget(quick: T, full: T) -> T:
    """``quick`` in quick mode, else ``full``: ``n_steps = budget(2_000, 50_000)``."""
    return quick if QUICK else full
