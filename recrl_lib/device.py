"""Where tensors live, and how to make runs repeatable."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

_KNOWN = ("cpu", "cuda", "mps")


def get_device() -> torch.device:
    """The device every tensor in the course follows: cuda > mps > cpu.

    Set the environment variable ``RECRL_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``)
    to override the choice.
    """
    requested = os.environ.get("RECRL_DEVICE", "").strip()
    if requested:
        kind = requested.split(":", 1)[0]
        if kind not in _KNOWN:
            raise ValueError(
                f"RECRL_DEVICE={requested!r} is not a device this course knows. "
                f"Use one of {', '.join(_KNOWN)} (optionally with an index, e.g. cuda:1), "
                "or unset RECRL_DEVICE to pick automatically."
            )
        if kind == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"RECRL_DEVICE={requested!r} but torch sees no CUDA GPU. "
                "Unset RECRL_DEVICE or set it to cpu."
            )
        if kind == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(
                f"RECRL_DEVICE={requested!r} but MPS is not available. "
                "Unset RECRL_DEVICE or set it to cpu."
            )
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices) with ``seed``."""
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- code that uses the global generator
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too
