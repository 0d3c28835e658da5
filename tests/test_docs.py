"""The teaching docs agree with what they describe: the generated parts of the syllabus and the
instructor notes are what ``make docs`` writes today, and the README's points and times are the
assignments' and the lessons' own."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def docs_script(name: str):
    """A script of ``docs/`` (not a package) imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_docs = docs_script("build_docs")


def test_generated_parts_are_up_to_date():
    for path in build_docs.DOCS:
        text = path.read_text(encoding="utf-8")
        assert build_docs.REGION.search(text), f"{path.name} has no generated region"
        assert build_docs.rebuild(text) == text, (
            f"docs/{path.name} is out of date with the lessons, the solutions or "
            "recrl_lib/grading.py: run `make docs` and commit it"
        )


def test_every_lesson_and_assignment_is_in_the_docs():
    syllabus = (ROOT / "docs" / "syllabus.md").read_text(encoding="utf-8")
    notes = (ROOT / "docs" / "instructor_notes.md").read_text(encoding="utf-8")
    for lesson in build_docs.lessons():
        assert f"### {lesson['number']} · " in syllabus
        for part in ("objectives", "prerequisites", "time"):
            assert lesson[part], f"{lesson['file']}: no {part} in its header cell"
        number = lesson["number"]
        assert f"**{number} · " in notes, f"no teaching notes for lesson {number}"
    for assignment in build_docs.assignments():
        assert f"### `{assignment['name']}`" in notes


def test_a_header_without_a_marker_reads_as_empty():
    whole = (
        "# 07 · A lesson\n\n**What you will learn**\n- one thing;\n- another.\n\n"
        "**Prerequisites:** lesson 06. **Time:** about 30 minutes to read; the code runs in about "
        "2 minutes (quick) or 7 (full) on a 2-core CPU."
    )
    parsed = build_docs.parse_header(whole)
    assert parsed["title"] == "A lesson"
    assert parsed["objectives"] == ["one thing", "another"]
    assert parsed["prerequisites"] == "lesson 06"
    assert parsed["time"].startswith("about 30 minutes to read")
    for marker, lost in [
        ("**What you will learn**", "objectives"),
        ("**Prerequisites:**", "prerequisites"),
        ("**Time:**", "time"),
    ]:
        assert not build_docs.parse_header(whole.replace(marker, "**Other**"))[lost], marker


def readme_times(time: str) -> tuple[str, str]:
    """A lesson header's time ("about 15 minutes to read; the code runs in about 2.5 minutes
    (quick) or 8 (full) ...") as the README's "read" and "run: quick / full" columns."""
    read = re.match(r"about (\d+) minutes to read; ", time)
    assert read, f"the time does not start 'about N minutes to read; ': {time!r}"
    runs = time[read.end() :]
    quick = r"the code runs in about (\d+(?:\.\d+)?|half a) minutes? \(quick"
    if runs.startswith("the code runs in seconds"):
        run = "seconds"
    elif both := re.match(rf"{quick} and full mode", runs):
        run = f"{both[1]} / {both[1]} min"
    elif each := re.match(rf"{quick}\) or (\d+(?:\.\d+)?)(?: minutes?)? \(full\)", runs):
        run = f"{each[1]} / {each[2]} min"
    else:
        raise AssertionError(f"cannot read the run time (quick / full) from {runs!r}")
    return f"{read[1]} min", run.replace("half a", "0.5")


def test_the_readme_times_are_the_lessons_headers():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d\d) \| `\w+` \|.*\| ([^|]+) \| ([^|]+) \|$", readme, re.M)
    listed = {number: (read.strip(), run.strip()) for number, read, run in rows}
    headers = {lesson["number"]: readme_times(lesson["time"]) for lesson in build_docs.lessons()}
    assert sorted(listed) == sorted(headers), "the README's lesson table lacks or adds a lesson"
    wrong = {
        n: f"README {listed[n][0]}, {listed[n][1]}; header {headers[n][0]}, {headers[n][1]}"
        for n in headers
        if listed[n] != headers[n]
    }
    assert not wrong, f"the README's read / run columns disagree with the lessons' headers: {wrong}"


def test_the_notes_quote_the_checks_messages():
    table = build_docs.check_messages()
    called = {c for a in build_docs.assignments() for t in a["tests"] for c in t["checks"]}
    assert called and called <= set(table), "an assignment calls a check grading.py lacks"
    assert all(table[check] for check in called), "a check with no message to quote"
    # one typical mistake per kind of message: a plain string, a dict of mistakes, an f-string
    quoted = (ROOT / "docs" / "instructor_notes.md").read_text(encoding="utf-8")
    assert "your target bootstraps after a terminated step: where discount is 0" in quoted
    assert "take the min of r·A and clip(r)·A, not the max" in quoted
    assert "the Huber loss is ½e² for |e| ≤ δ and δ(|e| − ½δ) beyond (δ = ‹delta›)" in quoted


def test_the_readme_points_are_the_assignments():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `(ex\d\d_\w+)` \|.*\| (\d+) \|$", readme, re.M))
    points = {a["name"]: a["points"] for a in build_docs.assignments()}
    assert {name: int(p) for name, p in listed.items()} == points
