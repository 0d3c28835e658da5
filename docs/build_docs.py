"""Fill the generated parts of the syllabus and the instructor notes (``make docs``).

The teaching docs are hand-written Markdown with generated regions between
``<!-- BEGIN GENERATED <key> -->`` and ``<!-- END GENERATED -->``; this script rewrites only those,
from the sources they describe, so that they cannot drift from them:

- ``lessons``: each lesson's title, what it teaches, prerequisites and time, read from the
  header cell of ``notebooks/NN_*.ipynb``, and the exercise that goes with it;
- ``exercises``: each assignment's graded tests and points, from the nbgrader metadata of
  ``solutions/<assignment>/<assignment>.ipynb``;
- ``assignments``: per assignment, what learners write, the graded tests, and what the checks
  tell a learner: the messages of the ``recrl_lib.grading`` checks its tests call (read from
  the module's source: each ``_fail(...)`` and each typical mistake the check tells apart) and
  the messages of the tests' own assertions.

``python docs/build_docs.py`` rewrites the files; ``--check`` only says which are out of date
(exit status 1). Standard library only: nothing is imported from the course or run.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import sys
import textwrap
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "syllabus.md", ROOT / "docs" / "instructor_notes.md"]
GRADING = ROOT / "recrl_lib" / "grading.py"
REGION = re.compile(
    r"(<!-- BEGIN GENERATED (?P<key>[\w ]+?) -->\n)(?P<body>.*?)(<!-- END GENERATED -->)", re.S
)


# ----------------------------------------------------------------------------- sources


def _cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        cell["text"] = "".join(cell["source"])
    return cells


LEARN, PREREQUISITES, TIME = "**What you will learn**", "**Prerequisites:**", "**Time:**"


def _between(text: str, start: str, end: str | None = None) -> str:
    """The text after the marker ``start`` up to ``end`` (or the end): "" when a marker is
    missing or out of order, so that a header without one reads as empty, not as itself."""
    _, found, rest = text.partition(start)
    if not found:
        return ""
    if end is None:
        return rest
    inside, found, _ = rest.partition(end)
    return inside if found else ""


def parse_header(header: str) -> dict:
    """A lesson header cell's title, objectives, prerequisites and time (each empty if its
    marker is missing: ``**What you will learn**``, ``**Prerequisites:**``, ``**Time:**``)."""
    title = header.splitlines()[0].lstrip("# ").strip() if header.strip() else ""
    learn = _between(header, LEARN, PREREQUISITES)
    objectives = [
        " ".join(item.split()) for item in re.split(r"\n- ", "\n" + learn.strip()) if item.strip()
    ]
    prerequisites = _between(header, PREREQUISITES, TIME)
    time = _between(header, TIME) if prerequisites else ""
    return {
        "title": title.split("·", 1)[-1].strip(),
        "objectives": [o.rstrip(";.") for o in objectives],
        "prerequisites": " ".join(prerequisites.split()).rstrip("."),
        "time": " ".join(time.split()).rstrip("."),
    }


def lessons() -> list[dict]:
    """Each lesson's number, file, title, objectives, prerequisites and time, from its header."""
    found = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        header = _cells(path)[0]["text"]
        found.append({"number": path.name[:2], "file": f"notebooks/{path.name}"})
        found[-1].update(parse_header(header))
    if not found:
        raise SystemExit("no lessons found under notebooks/")
    return found


def assignments() -> list[dict]:
    """Each assignment's lesson, solution functions and graded tests, from its source notebook."""
    found = []
    for folder in sorted((ROOT / "solutions").glob("ex[0-9][0-9]_*")):
        notebook = folder / f"{folder.name}.ipynb"
        if not notebook.is_file():
            continue
        functions, tests = [], []
        for cell in _cells(notebook):
            meta = cell["metadata"].get("nbgrader", {})
            if meta.get("solution") and cell["cell_type"] == "code":
                tree = ast.parse(cell["text"])
                functions += [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
            if meta.get("grade") and cell["cell_type"] == "code":
                tests.append(
                    {
                        "name": meta["grade_id"],
                        "points": meta.get("points", 0),
                        "checks": re.findall(r"grading\.(check_\w+)", cell["text"]),
                        "has_hidden": "### BEGIN HIDDEN TESTS" in cell["text"],
                        "hidden": _edge_cases(_hidden(cell["text"])),
                        "asserts": _assert_messages(_visible(cell["text"])),
                    }
                )
        if not tests:
            raise SystemExit(f"{notebook.relative_to(ROOT)} has no graded test cell")
        found.append(
            {
                "name": folder.name,
                "lesson": folder.name[2:4],
                "functions": functions,
                "tests": tests,
                "points": sum(t["points"] for t in tests),
            }
        )
    return found


def _text(node: ast.expr) -> str | None:
    """A string literal or f-string, its run-time values shown as ‹the expression›."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) else f"‹{ast.unparse(v.value)}›"
            for v in node.values
        )
    return None


def _tidy(message: str) -> str:
    message = " ".join(message.split())
    return re.sub(r"\s*‹where›$", "", message)  # the inputs it failed on, said at run time


def _hidden(source: str) -> str:
    """The hidden tests of a test cell (nbgrader strips them from the release)."""
    blocks = re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", source, re.S)
    return "\n".join(textwrap.dedent(b) for b in blocks)


def _visible(source: str) -> str:
    return re.sub(r"### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS\n?", "", source, flags=re.S)


def _edge_cases(source: str) -> list[str]:
    """What hidden tests check: their assertions' messages and their comments."""
    if not source.strip():
        return []
    comments, last_row = [], -1
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        text, row = token.string.lstrip("# ").strip(), token.start[0]
        if comments and row == last_row + 1 and token.line.lstrip().startswith("#"):
            comments[-1] += " " + text  # a comment continued on its own line
        elif text:
            comments.append(text)
        last_row = row
    return list(dict.fromkeys(_assert_messages(source) + comments))


def _assert_messages(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax in a test cell: no messages to read
        return []
    messages = (_text(n.msg) for n in ast.walk(tree) if isinstance(n, ast.Assert) and n.msg)
    return [_tidy(m) for m in messages if m]


def check_messages() -> dict[str, list[str]]:
    """``{check_name: [message, ...]}`` for every public ``check_*`` in ``recrl_lib.grading``:
    the messages of its ``_fail`` calls and of its tables of typical mistakes (dicts keyed by
    message), including those of the ``_check_*`` helpers it calls, in source order."""
    tree = ast.parse(GRADING.read_text(encoding="utf-8"))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def messages(name: str, seen: set[str]) -> list[str]:
        found = []  # (line, column, messages): sorted into source order at the end
        for node in ast.walk(functions[name]):
            where = (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called = node.func.id
                if called == "_fail" and node.args and _text(node.args[0]) is not None:
                    found.append((*where, [_text(node.args[0])]))
                elif called.startswith("_check") and called in functions and called not in seen:
                    found.append((*where, messages(called, seen | {called})))
            if isinstance(node, ast.Dict):
                keys = [_text(k) for k in node.keys if k is not None]
                found.append((*where, [k for k in keys if k and " " in k]))
        return [message for *_, group in sorted(found) for message in group]

    table = {}
    for name in functions:
        if name.startswith("check_"):
            table[name] = list(dict.fromkeys(_tidy(m) for m in messages(name, {name})))
    return table


# ----------------------------------------------------------------------------- regions


def _exercise_of(lesson: str, found: list[dict]) -> dict | None:
    return next((a for a in found if a["lesson"] == lesson), None)


def render_lessons() -> str:
    found, out = assignments(), []
    for lesson in lessons():
        missing = [k for k in ("objectives", "prerequisites", "time") if not lesson[k]]
        if missing:
            raise SystemExit(
                f"{lesson['file']}: its header cell lacks {', '.join(missing)} "
                f"(markers {LEARN}, {PREREQUISITES}, {TIME}, in that order)"
            )
        out.append(f"### {lesson['number']} · {lesson['title']}\n")
        out.append(
            f"`{lesson['file']}` · **prerequisites:** {lesson['prerequisites']} · "
            f"**time:** {lesson['time']}.\n"
        )
        out.append("What you will learn:\n")
        out += [f"- {objective};" for objective in lesson["objectives"][:-1]]
        out.append(f"- {lesson['objectives'][-1]}.\n")
        exercise = _exercise_of(lesson["number"], found)
        if exercise:
            out.append(f"**Exercise:** `{exercise['name']}`, {exercise['points']} points.\n")
        else:
            out.append("**Exercise:** none; the lesson's Check cells are the self-test.\n")
    return "\n".join(out)


def render_exercises() -> str:
    out = ["| assignment | lesson | learners write | graded tests (points) | points |"]
    out.append("|---|---|---|---|---|")
    for a in assignments():
        tests = ", ".join(f"`{t['name']}` ({t['points']})" for t in a["tests"])
        functions = ", ".join(f"`{f}`" for f in a["functions"])
        out.append(f"| `{a['name']}` | {a['lesson']} | {functions} | {tests} | {a['points']} |")
    total = sum(a["points"] for a in assignments())
    out.append(f"| all | | | | {total} |")
    return "\n".join(out) + "\n"


def render_assignments() -> str:
    table, out = check_messages(), []
    for a in assignments():
        out.append(f"### `{a['name']}` · lesson {a['lesson']} · {a['points']} points\n")
        out.append("Learners write " + ", ".join(f"`{f}`" for f in a["functions"]) + ".\n")
        out.append("| graded test | points | calls | hidden tests |")
        out.append("|---|---|---|---|")
        for t in a["tests"]:
            checks = ", ".join(f"`grading.{c}`" for c in dict.fromkeys(t["checks"])) or "—"
            hidden = "yes" if t["has_hidden"] else "—"
            out.append(f"| `{t['name']}` | {t['points']} | {checks} | {hidden} |")
        out.append(
            "\nWhat the checks tell a learner, in the order they test (‹…› is filled in at run "
            "time with the learner's values):\n"
        )
        said: dict[tuple[str, ...], list[str]] = {}  # messages -> the checks that say them
        for t in a["tests"]:
            for check in dict.fromkeys(t["checks"]):
                if check not in table:
                    raise SystemExit(f"{a['name']} calls grading.{check}, which does not exist")
                said.setdefault(tuple(table[check]), []).append(f"`{check}`")
            for kind, what in (("asserts", "own asserts"), ("hidden", "hidden tests (edge cases)")):
                if t[kind]:
                    said.setdefault(tuple(t[kind]), []).append(f"`{t['name']}`'s {what}")
        for messages, sayers in said.items():
            out.append(f"- {', '.join(dict.fromkeys(sayers))}:")
            out += [f"  - {m}" for m in messages]
        out.append("")
    return "\n".join(out)


RENDER = {"lessons": render_lessons, "exercises": render_exercises}
RENDER["assignments"] = render_assignments


def rebuild(text: str) -> str:
    """``text`` with each generated region rendered afresh."""

    def fill(match: re.Match) -> str:
        key = match["key"]
        if key not in RENDER:
            raise SystemExit(f"unknown generated region {key!r}: known are {sorted(RENDER)}")
        return f"{match[1]}\n{RENDER[key]().rstrip()}\n\n{match[4]}"

    return REGION.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    stale = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        fresh = rebuild(text)
        if fresh != text:
            stale.append(path.relative_to(ROOT).as_posix())
            if not args.check:
                path.write_text(fresh, encoding="utf-8")
    if args.check and stale:
        print(f"out of date with the lessons, solutions or checks: {stale}; run `make docs`")
        return 1
    print(("rewrote " if stale else "up to date: ") + ", ".join(stale or [str(len(DOCS))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
