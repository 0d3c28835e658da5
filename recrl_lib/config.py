"""Course-wide settings.

Quick mode (``RECRL_QUICK=1``) shrinks training budgets so the test suite fits a small
CI machine. It never skips a lesson or weakens what a lesson asserts.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
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


def cache_dir(kind: str) -> Path:
    """Where computed results are kept between runs (text vectors, fitted worlds):
    ``$RECRL_CACHE_DIR/<kind>``, by default ``.cache/<kind>`` in this repository."""
    root = os.environ.get("RECRL_CACHE_DIR") or Path(__file__).resolve().parents[1] / ".cache"
    return Path(root) / kind


def warn_unwritable_cache(path: Path, error: OSError) -> None:
    """A cache that cannot be written only costs time: say so once, and carry on."""
    warnings.warn(
        f"could not write the cache file {path} ({error}); results are recomputed next time. "
        "Set RECRL_CACHE_DIR to a writable folder to keep them.",
        stacklevel=3,
    )
