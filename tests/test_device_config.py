"""get_device, seed_everything and the quick-mode flag."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from recrl_lib import budget, config, get_device, seed_everything


def test_default_device_follows_availability(monkeypatch):
    monkeypatch.delenv("RECRL_DEVICE", raising=False)
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else "mps"
        if torch.backends.mps.is_available()
        else "cpu"
    )
    assert get_device().type == expected


def test_device_override(monkeypatch):
    monkeypatch.setenv("RECRL_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv("RECRL_DEVICE", "tpu")
    with pytest.raises(ValueError, match="RECRL_DEVICE='tpu' is not a device"):
        get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error message")
def test_device_override_to_missing_cuda(monkeypatch):
    monkeypatch.setenv("RECRL_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
        get_device()


def test_seed_everything_repeats():
    def draw():
        return np.random.rand(3), torch.rand(3)  # noqa: NPY002 -- the global generator is the point

    seed_everything(7)
    a = draw()
    seed_everything(7)
    b = draw()
    np.testing.assert_array_equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)


def test_quick_flag_is_read_from_the_environment():
    code = "from recrl_lib import config; print(config.QUICK, config.budget(1, 2))"
    for value, expected in (("1", "True 1"), ("0", "False 2")):
        out = subprocess.run(
            [sys.executable, "-c", code], env={"RECRL_QUICK": value}, capture_output=True, text=True
        )
        assert out.stdout.strip() == expected, out.stderr
    bad = subprocess.run(
        [sys.executable, "-c", code], env={"RECRL_QUICK": "yes"}, capture_output=True, text=True
    )
    assert "RECRL_QUICK must be 0 or 1" in bad.stderr


def test_budget_matches_mode():
    assert budget("q", "f") == ("q" if config.QUICK else "f")


def test_the_cache_folder_follows_recrl_cache_dir(monkeypatch, tmp_path):
    from recrl_lib.config import cache_dir

    monkeypatch.setenv("RECRL_CACHE_DIR", str(tmp_path))
    assert cache_dir("worlds") == tmp_path / "worlds"
    monkeypatch.delenv("RECRL_CACHE_DIR")
    assert cache_dir("worlds").parts[-2:] == (".cache", "worlds")
