"""A class through nbgrader's exchange, without a hub: the README's classroom workflow, run in a
temporary course folder with a temporary exchange.

The instructor uses the command line as the README says (``make exercises``, ``nbgrader
release_assignment``, ``nbgrader collect``, ``make grade``, ``nbgrader generate_feedback``,
``nbgrader release_feedback``), with the course id and the exchange in a shared config file, as
``/etc/jupyter/nbgrader_config.py`` on a hub. The learners fetch, submit and fetch feedback the
way JupyterLab's Assignments tab does it (nbgrader's exchange classes, in this process), each with
their own home folder and nbgrader cache, as separate users on a server have:

- ``ada`` submits the solutions: full marks;
- ``cy`` solves part 1 and edits part 2's locked test into ``pass``: part 1's points only;
- ``ben`` fetches the assignment and never submits: no grade and no feedback.

Each learner must get their own feedback and nobody else's. One assignment only (the cheapest to
autograde): ``tests/test_grading.py`` grades every assignment's submissions.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_core.paths import jupyter_config_path
from nbgrader.apps.baseapp import NbGrader
from nbgrader.auth import Authenticator
from nbgrader.coursedir import CourseDirectory
from nbgrader.exchange import ExchangeFactory

from tests.test_grading import EXPECTED, ROOT, _submission, comparable, nbgrader

ASSIGNMENT = "ex06_meta_rl"
COURSE_ID = "recrl"


def make(target: str, course: Path) -> subprocess.CompletedProcess:
    """``make <target> COURSE_DIR=<course>``, run from the repository as an instructor would."""
    command = ["make", "--no-print-directory", target, f"COURSE_DIR={course}"]
    result = subprocess.run(
        [*command, f"PYTHON={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"make {target} failed:\n{result.stdout[-3000:]}"
    return result


class Learner:
    """One learner on the server: a home folder with their notebooks and their nbgrader cache."""

    def __init__(self, name: str, home: Path):
        self.name, self.home = name, home
        home.mkdir(parents=True)

    def _run(self, step: str) -> None:
        app = NbGrader()  # the config every user's server reads (the shared file)
        app.config_file_paths.extend(jupyter_config_path())
        app.load_cwd_config = False  # a learner's server starts in their home, not the course's
        app.load_config_file()
        config = app.config
        config.CourseDirectory.course_id = COURSE_ID
        config.CourseDirectory.assignment_id = ASSIGNMENT
        config.CourseDirectory.student_id = self.name  # on a hub: the user's login name
        config.Exchange.assignment_dir = str(self.home)
        config.Exchange.cache = str(self.home / ".local" / "nbgrader_cache")
        exchange = ExchangeFactory(config=config)
        action = getattr(exchange, step)(
            coursedir=CourseDirectory(config=config),
            authenticator=Authenticator(config=config),
            config=config,
        )
        action.start()

    @property
    def notebook(self) -> Path:
        return self.home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"

    def fetch(self) -> None:
        self._run("FetchAssignment")

    def submit(self) -> None:
        self._run("Submit")

    def fetch_feedback(self) -> list[Path]:
        self._run("FetchFeedback")
        return sorted((self.home / ASSIGNMENT / "feedback").glob("*/*.html"))


@pytest.fixture
def classroom(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A course folder with one assignment, an empty exchange, and the shared config that names
    them. Everyone's own Jupyter config folder (``JUPYTER_CONFIG_DIR``, normally ``~/.jupyter``)
    is an empty temporary one, so the tester's own settings are not read; the instructor's
    commands also read the course folder's ``nbgrader_config.py``. Site-wide config folders
    (``/etc/jupyter``, ``/usr/local/etc/jupyter``, the venv's ``etc/jupyter``) are read by
    everyone, as on a real server, and cannot be turned off without losing the shared file."""
    course, exchange, shared = tmp_path / "course", tmp_path / "exchange", tmp_path / "etc"
    (course / "solutions").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    exchange.mkdir()
    shared.mkdir()
    (shared / "nbgrader_config.py").write_text(
        f"c = get_config()  # noqa: F821\nc.CourseDirectory.course_id = {COURSE_ID!r}\n"
        f"c.Exchange.root = {str(exchange)!r}\n"
    )
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(shared))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "instructor-jupyter"))
    return course, exchange


def test_a_class_releases_submits_grades_and_gets_feedback(classroom, tmp_path):
    course, exchange = classroom
    make("exercises", course)
    nbgrader("release_assignment", ASSIGNMENT, cwd=course)
    released = exchange / COURSE_ID / "outbound" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert released.is_file(), "release_assignment put nothing in the exchange"
    assert "BEGIN SOLUTION" not in released.read_text()
    assert "BEGIN HIDDEN TESTS" not in released.read_text(), "the release shows the hidden tests"

    learners = {name: Learner(name, tmp_path / "home" / name) for name in ("ada", "ben", "cy")}
    for learner in learners.values():
        learner.fetch()
        assert comparable(learner.notebook) == comparable(released)
        assert "HIDDEN TESTS" not in learner.notebook.read_text(), f"{learner.name} sees them"
    for name in ("ada", "cy"):
        notebook = _submission(course, ASSIGNMENT, name)
        learners[name].notebook.write_text(json.dumps(notebook))
        learners[name].submit()

    nbgrader("collect", ASSIGNMENT, cwd=course)
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["ada", "cy"]

    graded = make("grade", course)
    assert f"autograding {ASSIGNMENT}: 2 submission(s)" in graded.stdout
    with open(course / "grades.csv") as f:
        grades = {row["student_id"]: row for row in csv.DictReader(f)}
    points = EXPECTED[ASSIGNMENT]["points"]
    expected = {"ada": sum(points.values())}
    expected["cy"] = sum(points[test] for test in EXPECTED[ASSIGNMENT]["on part 1"])
    assert {s: float(row["raw_score"]) for s, row in grades.items()} == expected
    assert {float(row["max_score"]) for row in grades.values()} == {sum(points.values())}

    nbgrader("generate_feedback", ASSIGNMENT, cwd=course)
    nbgrader("release_feedback", ASSIGNMENT, cwd=course)
    reports = {s: (course / "feedback" / s / ASSIGNMENT / f"{ASSIGNMENT}.html") for s in expected}
    for name, learner in learners.items():
        fetched = learner.fetch_feedback()
        if name not in expected:
            assert fetched == [], f"{name} never submitted but fetched feedback: {fetched}"
            continue
        assert len(fetched) == 1, f"{name} should fetch one report, got {fetched}"
        assert fetched[0].read_bytes() == reports[name].read_bytes(), f"{name} got another report"
        score = f"Score: {expected[name]:.1f} / {sum(points.values()):.1f}"
        assert score in fetched[0].read_text(), f"{name}'s report does not say {score}"
