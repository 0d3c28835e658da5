"""A disk cache of trained agents, so that a later lesson reuses what an earlier one trained.

An entry is keyed by a fingerprint of everything that decides the trained agent, as the caller
lists it (``agents.recipes`` lists: the network's structure, its initial weights and buffers,
the agent's config and the functions it trains with, the world, the simulator's config, the
seed, the budget, the user pool, the device) plus what no caller should have to list: the
source of ``recrl_lib``, the versions of torch and NumPy, the number of torch threads and the
machine's architecture. Same key, same agent: a hit loads its weights, its training history and
the global random generators as training left them.

Entries live in ``$RECRL_AGENT_CACHE_DIR`` (default ``cache_dir("agents")``), in one folder per
version of the library's source; saving removes the folders of other versions. Only tensors and
plain containers are stored (loaded with ``weights_only=True``). A file that cannot be read is
ignored with a warning; a folder that cannot be written only costs time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import random
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recrl_lib.config import cache_dir, warn_unwritable_cache


def _library_source() -> str:
    """A digest of every source file of ``recrl_lib``, read once, when this module is imported,
    so that it describes the code this process runs."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        if path.is_file() and not path.name.startswith("."):  # no editor lock files
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


LIBRARY_SOURCE = _library_source()


def _digest(value, h) -> None:
    """Feed ``value`` (tensors, dataclasses, mappings, sequences, scalars) into the hash ``h``."""
    if torch.is_tensor(value):
        t = value.detach().cpu().contiguous()
        h.update(f"tensor{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _digest({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, h)
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            h.update(str(key).encode())
            _digest(value[key], h)
    elif isinstance(value, list | tuple):
        h.update(f"seq{len(value)}".encode())
        for item in value:
            _digest(item, h)
    else:
        h.update(repr(value).encode())


def network_structure(network: torch.nn.Module) -> list:
    """What a state dict does not hold: every submodule's class and its plain settings
    (``window``, a head count, ...), so two networks with equal weights but another
    ``forward`` get two keys."""
    structure = []
    for name, module in network.named_modules():
        kind = type(module)
        settings = {
            key: value
            for key, value in vars(module).items()
            if not key.startswith("_")
            and key != "training"
            and isinstance(value, bool | int | float | str | type(None))
        }
        structure.append((name, kind.__module__, kind.__qualname__, settings))
    return structure


def function_id(function) -> str | None:
    """A stable name for a function the agent trains with (its module, name and byte code), or
    None where there is none (a ``functools.partial``, a callable object)."""
    function = getattr(function, "__func__", function)  # a bound method: its function
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    body = hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16]
    return f"{function.__module__}.{function.__qualname__}:{body}"


def entry_file(kind: str, key: list) -> Path:
    """Where the entry of an agent of ``kind`` with ``key`` lives."""
    h = hashlib.sha256()
    versions = [torch.__version__, np.__version__, torch.get_num_threads(), platform.machine()]
    _digest([kind, versions, key], h)
    return _root() / LIBRARY_SOURCE[:16] / f"{kind}-{h.hexdigest()[:24]}.pt"


def _root() -> Path:
    return Path(os.environ.get("RECRL_AGENT_CACHE_DIR") or cache_dir("agents"))


def _random_states() -> dict:
    kind, keys, position, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 -- global
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss]
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def _set_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def load(path: Path, hook: str | None = None) -> tuple[dict, pd.DataFrame] | None:
    """(state dict, history) of the entry at ``path``, with the global generators restored as
    training left them; None when there is no entry, or it was trained without ``hook`` (a
    diagnostic hook: its history lacks the hook's columns)."""
    try:
        if not path.is_file():
            return None
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file, an unreadable folder
        message = f"ignoring the unreadable cache file {path} ({error}); training again"
        warnings.warn(message, stacklevel=3)
        return None
    if hook is not None and entry["hook"] != hook:
        return None
    table = entry["history"]
    history = pd.DataFrame(table["data"], index=pd.Index(table["index"], name=table["index_name"]))
    history = history[table["columns"]]
    _set_random_states(entry["random"])
    return entry["state"], history


def save(path: Path, state: dict, history: pd.DataFrame, hook: str | None = None) -> None:
    """Keep an entry at ``path`` (atomically: two processes may train the same agent at once),
    and drop the folders of other versions of the library."""
    table = {
        "columns": [str(c) for c in history.columns],
        "data": {str(c): history[c].tolist() for c in history.columns},
        "index": history.index.tolist(),
        "index_name": history.index.name,
    }
    entry = {"state": state, "history": table, "hook": hook, "random": _random_states()}
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".part")
        os.close(handle)
        torch.save(entry, partial)
        os.replace(partial, path)
        partial = None
        for other in path.parent.parent.iterdir():
            if other.is_dir() and other != path.parent:
                shutil.rmtree(other, ignore_errors=True)
    except (OSError, RuntimeError) as error:  # torch.save's own writer raises RuntimeError
        warn_unwritable_cache(path, error)
    finally:
        if partial is not None and os.path.exists(partial):
            os.remove(partial)
