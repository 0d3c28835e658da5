"""How long ``make grade`` takes for a class: 20 submissions of one assignment, graded by the
Makefile's own recipe in a temporary course folder, total and per submission.

    nice -n 10 env HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/grade_class.py

The course folder is what an instructor keeps (``nbgrader_config.py``, with the course's own cell
timeout, and ``solutions/<assignment>``); ``make exercises COURSE_DIR=...`` releases the assignment
and makes the gradebook (not timed), then the class submits:

- 18 students submit the solution (``tests/test_grading.py``'s ``ada``): full marks each;
- ``looper`` leaves an endless loop in part 1 (its ``dee``): the cell is stopped after the
  course's ``Execute.timeout`` and only the points that need part 1 are lost;
- ``crasher`` kills the kernel in part 1 (``os._exit``, as a segfault in native code would): the
  notebook cannot be graded, and that student alone gets no points.

``make grade COURSE_DIR=...`` is timed as a whole, and each submission from the moment nbgrader
starts it to the next one's start (read from its log as it streams). Then every student's grade
in ``grades.csv`` is checked. The target's exit status is printed too: it is 1 when nbgrader
reported a problem (the crash), after grading everyone.

Measured once on the shared 2-core development machine (CPU only, run at ``nice -n 10`` beside
other jobs, load average about 2), ``ex06_meta_rl`` (the assignment of ``tests/test_exchange.py``),
20 submissions: ``make grade`` took 141 s in all, 7.0 s per submission. A correct submission took
3.8 s on average (3.4–4.9 s), most of it a kernel starting; the endless loop 63 s (the course's
60 s cell timeout, then the rest of the notebook: 2 of 6 points); the kernel crash 3.3 s (0
points); the rest (make's checks, the gradebook, the export) 5.6 s. Every student's grade was
the expected one, and ``make grade`` exited with status 2 (nbgrader reported the crash) after
grading everyone and writing ``grades.csv``. So a class costs about 4 s per submission of this
assignment plus one cell timeout per endless loop; heavier assignments (training cells) cost more
per submission: ``bench/grading_margin.py`` times their slowest cells.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.test_grading import EXPECTED, _submission  # noqa: E402

CRASH = "import os\nos._exit(1)  # the kernel dies, as a segfault in native code would make it\n"


def make(target: str, course: Path, log=None) -> tuple[int, list[tuple[float, str]]]:
    """``make <target> COURSE_DIR=<course>`` from the repository; its exit status and its output's
    lines, each with the seconds since the start at which it arrived."""
    command = ["make", "--no-print-directory", target, f"COURSE_DIR={course}"]
    command.append(f"PYTHON={sys.executable}")
    start, lines = time.perf_counter(), []
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        for line in process.stdout:
            lines.append((time.perf_counter() - start, line.rstrip()))
            if log:
                print(f"  {lines[-1][0]:7.1f} s  {line.rstrip()}", file=log, flush=True)
    return process.returncode, lines


def class_of(course: Path, assignment: str, students: int) -> dict[str, float]:
    """Write the class's submissions into ``course/submitted``; the points each should get."""
    spec = EXPECTED[assignment]
    points = spec["points"]
    full = sum(points.values())
    expected = {}
    for i in range(1, students - 1):
        expected[f"student{i:02d}"] = (_submission(course, assignment, "ada"), full)
    needs_part_1 = sum(points[g] for g in spec.get("needs part 1", spec["on part 1"]))
    expected["looper"] = (_submission(course, assignment, "dee"), full - needs_part_1)
    crashed = _submission(course, assignment, "ada")
    for cell in crashed["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == spec["part 1"]:
            cell["source"] = CRASH + cell["source"]
    expected["crasher"] = (crashed, 0)
    for student, (notebook, _) in expected.items():
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        (folder / f"{assignment}.ipynb").write_text(json.dumps(notebook))
    return {student: score for student, (_, score) in expected.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="ex06_meta_rl", choices=sorted(EXPECTED))
    parser.add_argument("--students", type=int, default=20, help="submissions (3 or more)")
    parser.add_argument("--verbose", action="store_true", help="print make grade's log")
    args = parser.parse_args(argv)
    if args.students < 3:
        parser.error("--students must be 3 or more (a correct one, the loop and the crash)")
    assignment = args.assignment
    with tempfile.TemporaryDirectory(prefix="recrl-class-") as tmp:
        course = Path(tmp) / "class"
        (course / "solutions").mkdir(parents=True)
        shutil.copy(ROOT / "nbgrader_config.py", course)
        shutil.copytree(ROOT / "solutions" / assignment, course / "solutions" / assignment)
        status, lines = make("exercises", course)
        if status:
            raise SystemExit("make exercises failed:\n" + "\n".join(line for _, line in lines))
        expected = class_of(course, assignment, args.students)
        timeout = re.search(
            r"c\.Execute\.timeout = (\d+)", (course / "nbgrader_config.py").read_text()
        )
        print(
            f"make grade, {assignment}: {len(expected)} submissions "
            f"({len(expected) - 2} correct, one endless loop, one kernel crash); "
            f"cell timeout {timeout[1] if timeout else '?'} s"
        )

        start = time.perf_counter()
        status, lines = make("grade", course, log=sys.stdout if args.verbose else None)
        total = time.perf_counter() - start

        # each submission's share: from nbgrader starting it ("Creating/updating student with ID
        # '<student>'") to the next one's start; the last one's ends with autograde's last line
        started = {}
        for at, line in lines:
            found = re.search(r"Creating/updating student with ID '([^']+)'", line)
            if found and found[1] in expected:
                started.setdefault(found[1], at)
        finished = max(at for at, line in lines if line.startswith("[AutogradeApp"))
        order = sorted(started, key=started.get)
        ends = [started[s] for s in order[1:]] + [finished]
        took = {s: end - started[s] for s, end in zip(order, ends)}

        with open(course / "grades.csv") as f:
            grades = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(f)}
        wrong = {s: (grades.get(s), want) for s, want in expected.items() if grades.get(s) != want}

        correct = [took[s] for s in took if s.startswith("student")]
        per = total / len(expected)
        print(
            f"total {total:.0f} s, {per:.1f} s per submission (make grade's exit status {status})"
        )
        if correct:
            print(
                f"  a correct submission: {sum(correct) / len(correct):.1f} s on average "
                f"({min(correct):.1f}–{max(correct):.1f})"
            )
        for student in ("looper", "crasher"):
            if student in took:
                print(f"  {student}: {took[student]:.1f} s, {grades.get(student)} points")
        overhead = total - sum(took.values())
        print(f"  the rest (make's checks, the gradebook, the export): {overhead:.1f} s")
        full = sum(EXPECTED[assignment]["points"].values())
        print(
            f"grades: {sum(g == full for g in grades.values())} of {len(expected)} with full marks "
            f"({full}); " + ("every student's grade is the expected one" if not wrong else "")
        )
        if wrong:
            print("\n".join(line for _, line in lines[-60:]))
            raise SystemExit(f"unexpected grades (got, expected): {wrong}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
