"""The instructors' round trip with nbgrader, in a temporary course folder: release the
assignments, collect five kinds of submission, autograde, export the grades.

Students, for each assignment:
- ``ada`` submits the solutions: full marks;
- ``ben`` submits the blank release: no marks, and the batch goes on;
- ``cy`` solves part 1 only and edits part 2's locked test into ``pass``: exactly the points
  that rest on part 1 alone — the edited test is caught (restored from the gradebook);
- ``dee`` (exercise 05) leaves an infinite loop in part 1 and solves the rest: the cell times
  out, the points that need part 1 are lost, everything else (hers and everyone's) is graded;
- ``eve`` (exercise 04) passes every visible test, but her TD target returns NaN when no action
  is valid after a terminated step: only the hidden tests catch it, so they must be restored
  and counted.

The solutions (``ada``) are graded with a CPU hog beside them (one busy process per core):
instructors grade batches on shared servers, and a correct student must not lose points because
the grader is busy. The other submissions' points do not depend on time, so they are graded
unloaded: the hog would only slow the rest of the suite.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cpu_load import cpu_hog

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
CELL_TIMEOUT = 30  # seconds; the course's own setting is longer (nbgrader_config.py)

EVE_TD_TARGET = """def td_target(returns, discount, next_q_online, next_q_target, next_valid,
              *, double=True):
    online = next_q_online.masked_fill(~next_valid, -float("inf"))
    target = next_q_target.masked_fill(~next_valid, -float("inf"))
    best = (online if double else target).argmax(1, keepdim=True)
    return returns + discount * target.gather(1, best).squeeze(1)  # 0 · (−inf) is NaN
"""
STUDENTS = {
    "ex03_q_learning": ["ada", "ben", "cy"],
    "ex04_dqn": ["ada", "ben", "cy", "eve"],
    # one endless loop shows the timeout (each costs CELL_TIMEOUT s of the suite), where losing
    # part 1 also costs a test that rests on both parts
    "ex05_ppo": ["ada", "ben", "cy", "dee"],
    "ex06_meta_rl": ["ada", "ben", "cy"],
    "ex07_evaluation": ["ada", "ben", "cy"],
    "ex08_offpolicy": ["ada", "ben", "cy"],
    "ex09_grpo": ["ada", "ben", "cy"],
    "ex10_feedback_loops": ["ada", "ben", "cy"],
}

EXPECTED = {
    "ex03_q_learning": {
        "part 1": "q_learning_update",
        "part 2 test": "test_sarsa_update",
        "points": {
            "test_q_learning_update": 2,
            "test_sarsa_update": 2,
            "test_bellman_backup": 2,
            "test_value_iteration": 1,
            "test_q_learning_policy": 2,
        },
        "on part 1": {"test_q_learning_update", "test_q_learning_policy"},
    },
    "ex04_dqn": {
        "part 1": "n_step_returns",
        "part 2 test": "test_td_target",
        "points": {
            "test_n_step_returns": 3,
            "test_td_target": 3,
            "test_huber_loss": 2,
            "test_n_step_on_replay": 1,
            "test_td_target_on_replay": 1,
            "test_your_dqn_learns": 1,
        },
        "on part 1": {"test_n_step_returns", "test_n_step_on_replay"},
    },
    "ex05_ppo": {
        "part 1": "gae",
        "part 2 test": "test_ppo_loss",
        "points": {
            "test_gae": 3,
            "test_ppo_loss": 3,
            "test_gae_on_rollout": 1,
            "test_your_ppo_learns": 1,
        },
        "on part 1": {"test_gae", "test_gae_on_rollout"},
        # training uses both parts: without part 1 it fails too
        "needs part 1": {"test_gae", "test_gae_on_rollout", "test_your_ppo_learns"},
    },
    "ex06_meta_rl": {
        "part 1": "reptile_update",
        "part 2 test": "test_reset_memory",
        "points": {
            "test_reptile_update": 3,
            "test_reset_memory": 2,
            "test_reptile_finds_the_centre": 1,
        },
        "on part 1": {"test_reptile_update", "test_reptile_finds_the_centre"},
    },
    "ex07_evaluation": {
        "part 1": "ndcg_at_k",
        "part 2 test": "test_ips",
        "points": {
            "test_ndcg_at_k": 3,
            "test_ips": 2,
            "test_snips": 2,
            "test_ips_is_unbiased": 1,
        },
        "on part 1": {"test_ndcg_at_k"},
    },
    "ex08_offpolicy": {
        "part 1": "topk_multiplier",
        "part 2 test": "test_corrected_loss",
        "points": {
            "test_topk_multiplier": 2,
            "test_corrected_loss": 3,
            "test_world_one": 1,
            "test_world_two": 1,
        },
        "on part 1": {"test_topk_multiplier"},
    },
    "ex09_grpo": {
        "part 1": "group_advantages",
        "part 2 test": "test_grpo_loss",
        "points": {
            "test_group_advantages": 2,
            "test_grpo_loss": 3,
            "test_sequence_log_likelihood": 2,
            "test_grpo_finds_the_best": 1,
        },
        "on part 1": {"test_group_advantages"},  # the known-optimum run needs parts 1 and 2
    },
    "ex10_feedback_loops": {
        "part 1": "gini",
        "part 2 test": "test_mean_pairwise_jaccard",
        "points": {
            "test_gini": 2,
            "test_mean_pairwise_jaccard": 2,
            "test_linucb_update": 2,
            "test_popularity_loop_concentrates": 1,
            "test_your_linucb_finds_the_best_arm": 1,
        },
        "on part 1": {"test_gini", "test_popularity_loop_concentrates"},
    },
}


def nbgrader(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # nbgrader runs alembic for its gradebook: the venv's scripts must be on the PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A fresh course folder with the assignments released, as an instructor starts."""
    root = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions", root / "solutions")
    for assignment in ASSIGNMENTS:
        nbgrader("generate_assignment", assignment, "--force", cwd=root)
    return root


def comparable(path: Path) -> list[dict]:
    """The cells of a notebook without what generation varies: checksums and cell ids."""
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        cell.pop("id", None)
        cell.get("metadata", {}).get("nbgrader", {}).pop("checksum", None)
    return cells


def test_every_assignment_has_a_source_and_a_release():
    assert ASSIGNMENTS == [
        "ex03_q_learning",
        "ex04_dqn",
        "ex05_ppo",
        "ex06_meta_rl",
        "ex07_evaluation",
        "ex08_offpolicy",
        "ex09_grpo",
        "ex10_feedback_loops",
    ]
    for assignment in ASSIGNMENTS:
        assert (ROOT / "solutions" / assignment / f"{assignment}.ipynb").is_file()
        assert (ROOT / "exercises" / assignment / f"{assignment}.ipynb").is_file()


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_are_what_nbgrader_releases_from_the_solutions(course, assignment):
    released = course / "exercises" / assignment / f"{assignment}.ipynb"
    committed = ROOT / "exercises" / assignment / f"{assignment}.ipynb"
    assert comparable(released) == comparable(committed), (
        f"exercises/{assignment} is out of date with solutions/{assignment}: run `make exercises`"
    )
    text = released.read_text()
    assert "### BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert "raise NotImplementedError()" in text


def _solution_code(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if "### " not in line)


def _submission(course: Path, assignment: str, student: str) -> dict:
    release = json.loads((course / "exercises" / assignment / f"{assignment}.ipynb").read_text())
    source = json.loads((course / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    solutions = {
        c["metadata"]["nbgrader"]["grade_id"]: _solution_code("".join(c["source"]))
        for c in source["cells"]
        if c["metadata"].get("nbgrader", {}).get("solution")
    }
    spec, notebook = EXPECTED[assignment], copy.deepcopy(release)
    for cell in notebook["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in solutions and student in ("ada", "dee", "eve"):
            cell["source"] = solutions[grade_id]
        if grade_id == "td_target" and student == "eve":
            cell["source"] = EVE_TD_TARGET
        if grade_id == spec["part 1"] and student == "cy":
            cell["source"] = solutions[grade_id]
        if grade_id == spec["part 1"] and student == "dee":
            cell["source"] = "while True:  # oops\n    pass\n" + solutions[grade_id]
        if grade_id == spec["part 2 test"] and student == "cy":
            cell["source"] = "pass  # the tests were too strict"
    return notebook


def test_the_round_trip_grades_every_student_exactly(course):
    timeout = f"--Execute.timeout={CELL_TIMEOUT}"
    for assignment in ASSIGNMENTS:
        for student in STUDENTS[assignment]:
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True)
            notebook = _submission(course, assignment, student)
            (folder / f"{assignment}.ipynb").write_text(json.dumps(notebook))
        # The solution runs every graded cell in full, so it is graded with every core busy:
        # a correct student must not lose points because the grader is loaded. The others'
        # points do not depend on time (blank, partial, a loop the timeout stops), so they are
        # graded after, unloaded, which keeps the hog from slowing the rest of the suite.
        with cpu_hog() as hogs:
            nbgrader("autograde", assignment, timeout, "--student", "ada", cwd=course)
            assert all(hog.poll() is None for hog in hogs), "the CPU hog stopped during grading"
        exclude = "--CourseDirectory.student_id_exclude=ada"
        nbgrader("autograde", assignment, timeout, exclude, cwd=course)
    nbgrader("export", "--to", "grades.csv", cwd=course)
    with open(course / "grades.csv") as f:
        grades = {(row["student_id"], row["assignment"]): row for row in csv.DictReader(f)}
    students = sorted({s for names in STUDENTS.values() for s in names})
    assert sorted(grades) == sorted((s, a) for s in students for a in ASSIGNMENTS)

    for assignment in ASSIGNMENTS:
        # ada's run is the solution notebook's test run (nbval does not run solutions/ again):
        # every code cell ran, and none raised, not only the graded ones
        graded = course / "autograded" / "ada" / assignment / f"{assignment}.ipynb"
        cells = [c for c in json.loads(graded.read_text())["cells"] if c["cell_type"] == "code"]
        assert all(c["execution_count"] for c in cells), f"a cell of {assignment} did not run"
        errors = [
            (i, o["ename"], o["evalue"])
            for i, c in enumerate(cells)
            for o in c["outputs"]
            if o["output_type"] == "error"
        ]
        assert not errors, f"the solution of {assignment} raised (code cell, error): {errors}"
    for assignment in ASSIGNMENTS:
        points = EXPECTED[assignment]["points"]
        spec = EXPECTED[assignment]
        on_part_1 = sum(points[g] for g in spec["on part 1"])
        needs_part_1 = sum(points[g] for g in spec.get("needs part 1", spec["on part 1"]))
        expected = {
            "ada": sum(points.values()),
            "ben": 0,
            "cy": on_part_1,
        }
        if "dee" in STUDENTS[assignment]:
            expected["dee"] = sum(points.values()) - needs_part_1
        if "eve" in STUDENTS[assignment]:
            expected["eve"] = sum(points.values()) - points["test_td_target"]
        for student, score in expected.items():
            row = grades[(student, assignment)]
            assert float(row["max_score"]) == sum(points.values())
            assert float(row["raw_score"]) == score, (student, assignment, row)
            graded = course / "autograded" / student / assignment / f"{assignment}.ipynb"
            assert graded.is_file(), f"{student}'s {assignment} was not autograded"
        if "dee" in STUDENTS[assignment]:
            graded = course / "autograded" / "dee" / assignment / f"{assignment}.ipynb"
            assert "CellTimeoutError" in graded.read_text()  # the loop was stopped, not waited for
        caught = (course / "autograded" / "cy" / assignment / f"{assignment}.ipynb").read_text()
        assert "the tests were too strict" not in caught  # the locked test cell was restored
