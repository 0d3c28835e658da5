"""One reveal.js deck per lesson (``make slides``), executed so the figures are in it; offline.

The decks come from the lessons themselves through each cell's slide metadata
(``"slideshow": {"slide_type": ...}``): the title cell and each section's heading with its
theory and equations start a slide, each figure a sub-slide, each **Check**/**Claim** cell a
fragment on it, the rest of the prose goes to the speaker notes, and plumbing code is skipped.
Code is never shown, only what it draws and prints. ``--annotate`` fills in that metadata by these
rules where a cell has none (hand-set types are kept).

reveal.js 4.0.2 (what nbconvert 7's template is written for), MathJax 2.7.9 (its math macro uses
MathJax 2's API), require.js and jQuery (which the template loads) come from npm's registry once,
each checked against its pinned sha512, into ``.cache/slides/``, and are copied next to the decks
under ``build/slides/assets/``: the folder opens in a browser with no network, on a USB stick too.
``--fetch-assets`` only fetches them (``make test`` does, for the deck's test); each request times
out after ``NETWORK_TIMEOUT`` seconds, and a failure says why (npm's own error).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "slides"
OUT = ROOT / "build" / "slides"
TEMPLATE = Path(__file__).with_name("slides.html.j2")

# name, version, sha512 of the registry's tarball, the members kept (prefixes under package/)
ASSETS = {
    "reveal.js": (
        "4.0.2",
        "LWZSUenufF1gpD7npxJ7KfoQQFKgc1D6XrLTFgKlwWNP1BQ74hT48KONFWMAw+8R/QUeaScCLCLrBVHDfFIEiw==",
        ("dist/", "plugin/notes/", "LICENSE"),
    ),
    "mathjax": (
        "2.7.9",
        "NOGEDTIM9+MrsqnjPEjVGNx4q0GQxqm61yQwSK+/5S59i26wId5IC5gNu9/bu8+CCVl5p9G2IHcAl/wJa+5+BQ==",
        (
            "MathJax.js",
            "config/TeX-AMS_CHTML-full.js",
            "config/Safe.js",
            "jax/input/TeX/",
            "jax/output/CommonHTML/",
            "jax/element/",
            "extensions/",
            "fonts/HTML-CSS/TeX/woff/",
            "LICENSE",
        ),
    ),
    "requirejs": (
        "2.3.6",
        "ipEzlWQe6RK3jkzikgCupiTbTvm4S0/CAU5GlgptkN5SO6F3u0UD0K18wy6ErDqiCyP4J4YYe1HuAShvsxePLg==",
        ("require.js",),
    ),
    "jquery": (
        "3.5.1",
        "XwIBPqcMn57FxfT+Go5pzySnm4KWkT1Tv7gjrpT1srtf8Weynl6R273VJ5GjkRb51IzMp5nbaPjJXMWeju2MKg==",
        ("dist/jquery.min.js", "LICENSE.txt"),
    ),
}


# ----------------------------------------------------------------------------- assets


# Every network step is bounded, so that `make slides` (and the test that builds a deck) says why
# it cannot fetch instead of waiting on an unreachable registry.
NETWORK_TIMEOUT = 30  # seconds per request (npm's --fetch-timeout, urllib's timeout)
NPM_TIMEOUT = 90  # seconds for one whole `npm pack`


class AssetsUnavailable(SystemExit):
    """The assets are not cached and npm's registry could not be reached (not a broken pin)."""


def _tarball(name: str, version: str) -> bytes:
    """The package's tarball from npm's registry: with ``npm pack`` where npm is installed,
    else over HTTPS from the same address npm uses. Raises ``OSError`` or
    ``subprocess.SubprocessError`` (with npm's own stderr) when it cannot."""
    if shutil.which("npm"):
        with tempfile.TemporaryDirectory() as tmp:
            command = [
                "npm",
                "pack",
                f"{name}@{version}",
                "--pack-destination",
                tmp,
                "--loglevel=error",
            ]
            command += ["--fetch-retries=0", f"--fetch-timeout={NETWORK_TIMEOUT * 1000}"]
            command += ["--no-audit", "--no-fund", "--no-update-notifier"]
            try:
                subprocess.run(
                    command, check=True, capture_output=True, text=True, timeout=NPM_TIMEOUT
                )
            except subprocess.CalledProcessError as error:
                said = "; ".join(
                    line.strip()
                    for line in (error.stderr or "").splitlines()
                    if not re.fullmatch(
                        r"npm (error|ERR!)(\s+at .*|\s{2,}\w+: .*|\s*[{}]|)", line.strip()
                    )
                )[:1000]
                raise subprocess.SubprocessError(
                    f"`npm pack` exited with status {error.returncode}: {said or '(no output)'}"
                ) from error
            except subprocess.TimeoutExpired as error:
                raise subprocess.SubprocessError(
                    f"`npm pack` gave no tarball within {NPM_TIMEOUT} s"
                ) from error
            return next(Path(tmp).glob("*.tgz")).read_bytes()
    url = f"https://registry.npmjs.org/{name}/-/{name.split('/')[-1]}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT) as response:
        return response.read()


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], target: Path) -> None:
    """Extract regular files only, each inside ``target``: with tarfile's "data" filter where
    this Python has it (3.10.12+, 3.11.4+, 3.12+), else after checking every member's path."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(target, members=members, filter="data")
        return
    root = target.resolve()
    for member in members:
        path = (target / member.name).resolve()
        if not member.isfile() or member.name.startswith("/") or not path.is_relative_to(root):
            raise SystemExit(f"refusing to extract {member.name!r}: not a file inside {target}")
        member.mode &= 0o755  # no set-uid, set-gid or sticky bits, as the filter would
    tar.extractall(target, members=members)


def assets_cached(cache: Path = CACHE) -> bool:
    """Whether every asset is already under ``cache`` (so no network is needed)."""
    return all(
        (cache / f"{name}-{version}" / ".complete").is_file()
        for name, (version, _, _) in ASSETS.items()
    )


def fetch_assets(cache: Path = CACHE) -> Path:
    """reveal.js, MathJax, require.js and jQuery under ``cache`` (fetched once). Raises
    ``AssetsUnavailable`` when the registry cannot be reached, ``SystemExit`` on a bad tarball."""
    for name, (version, sha512, keep) in ASSETS.items():
        target = cache / f"{name}-{version}"
        if (target / ".complete").is_file():
            continue
        print(f"fetching {name}@{version} from npm's registry ...", flush=True)
        try:
            data = _tarball(name, version)
        except (OSError, subprocess.SubprocessError) as error:
            raise AssetsUnavailable(
                f"could not fetch {name}@{version} from npm's registry: {error}. The slides need "
                f"it once, then work offline: run `make slides` where the registry is reachable"
            ) from error
        digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != sha512:
            raise SystemExit(f"{name}@{version}: the tarball's sha512 is not the pinned one")
        shutil.rmtree(target, ignore_errors=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile() and m.name.removeprefix("package/").startswith(keep)
            ]
            for member in members:
                member.name = member.name.removeprefix("package/")
            _extract(tar, members, target)
        (target / ".complete").touch()
    return cache


def copy_assets(out: Path, cache: Path = CACHE) -> dict[str, str]:
    """The assets next to the decks; returns nbconvert's options pointing at them (relative)."""
    fetch_assets(cache)
    assets = out / "assets"
    for name, (version, _, _) in ASSETS.items():
        shutil.copytree(cache / f"{name}-{version}", assets / name, dirs_exist_ok=True)
    return {
        "SlidesExporter.reveal_url_prefix": "assets/reveal.js",
        "HTMLExporter.mathjax_url": "assets/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
        "HTMLExporter.require_js_url": "assets/requirejs/require.js",
        "HTMLExporter.jquery_url": "assets/jquery/dist/jquery.min.js",
    }


# ----------------------------------------------------------------------------- slide metadata

PLOTS = re.compile(r"\bplt\.|\bplotting\.|\bplot_\w+\(|\.plot\(|\bfig\b")
WIDGETS = re.compile(r"widgets\.|_explorer\(|interact\(")


def slide_type(cell: dict, index: int) -> str:
    """The rule's slide type for a cell (see the module's docstring)."""
    text = "".join(cell["source"]).lstrip()
    if index == 0 or (cell["cell_type"] == "markdown" and text.startswith("## ")):
        return "slide"
    if cell["cell_type"] == "markdown":
        return "fragment" if re.match(r"\*\*(Check|Claim)", text) else "notes"
    if PLOTS.search(text) and not WIDGETS.search(text) and index > 1:
        return "subslide"
    return "skip"


def annotate(path: Path) -> int:
    """Add the rule's slide type to each cell of a notebook that has none; returns how many."""
    raw = path.read_text(encoding="utf-8")
    notebook, added = json.loads(raw), 0
    for index, cell in enumerate(notebook["cells"]):
        if "slideshow" not in cell["metadata"]:
            cell["metadata"]["slideshow"] = {"slide_type": slide_type(cell, index)}
            added += 1
    if added:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return added


# ----------------------------------------------------------------------------- decks


def build(lessons: list[Path], out: Path = OUT, quick: bool = True) -> list[Path]:
    """Execute each lesson (quick mode unless told) and write its deck under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    options = copy_assets(out)
    env = {**os.environ, "RECRL_QUICK": "1" if quick else "0", "HF_HUB_OFFLINE": "1"}
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures as outputs (not Agg)
    decks = []
    for lesson in lessons:
        cells = json.loads(lesson.read_text(encoding="utf-8"))["cells"]
        if not any("slideshow" in c["metadata"] for c in cells):
            print(f"note: {lesson.name} has no slide metadata; annotate it with --annotate")
        command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "slides", "--execute"]
        command += ["--no-input", "--output-dir", str(out), str(lesson)]
        command += ["--ExecutePreprocessor.timeout=-1"]
        command += ["--ExecutePreprocessor.store_widget_state=False"]  # widgets need a CDN
        command += ["--SlidesExporter.reveal_scroll=True", "--SlidesExporter.reveal_number=c/t"]
        command += ["--SlidesExporter.reveal_theme=white"]  # its fonts are local; simple's are not
        command += [f"--template-file={TEMPLATE}"]
        command += [f"--{key}={value}" for key, value in options.items()]
        print(f"slides: {lesson.name} ({'quick' if quick else 'full'} mode)", flush=True)
        subprocess.run(command, check=True, env=env, cwd=lesson.parent)
        decks.append(out / f"{lesson.stem}.slides.html")
    links = "".join(
        f'<li><a href="{d.name}">{d.name.removesuffix(".slides.html")}</a></li>'
        for d in sorted(out.glob("*.slides.html"))
    )
    (out / "index.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>recrl slides</title></head>"
        f"<body><h1>recrl: the lessons' slides</h1><ol>{links}</ol></body></html>\n",
        encoding="utf-8",
    )
    return decks


def remote_references(deck: Path) -> list[str]:
    """Addresses a deck, or a style sheet it links, would load from the network: none, offline.
    (Links a reader may follow, ``<a href>``, are not loads.)"""
    load = r"""(?:<(?:script|link|img)[^>]*?(?:src|href)=|\bimport\b[^'"]*?|@import\s+url\()"""
    found = re.findall(load + r"""["']?(https?://[^"')\s]+)""", deck.read_text(encoding="utf-8"))
    for sheet in re.findall(r"""<link[^>]*?href=["']([^"':]+\.css)""", deck.read_text("utf-8")):
        path = deck.parent / sheet
        if path.is_file():
            found += re.findall(r"""@import\s+url\(["']?(https?://[^"')]+)""", path.read_text())
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers, e.g. 00 03 (default: all)")
    parser.add_argument("--full", action="store_true", help="execute in full mode")
    parser.add_argument("--annotate", action="store_true", help="add missing slide metadata")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--fetch-assets", action="store_true", help="only fetch reveal.js and MathJax (once)"
    )
    args = parser.parse_args(argv)
    if args.fetch_assets:
        print(f"slides' assets in {fetch_assets().relative_to(ROOT)}")
        return 0
    every = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    chosen = [p for p in every if not args.lessons or p.name[:2] in args.lessons]
    if not chosen:
        raise SystemExit(f"no lesson matches {args.lessons}")
    if args.annotate:
        for lesson in chosen:
            print(f"{lesson.name}: {annotate(lesson)} cells annotated")
        return 0
    build(chosen, args.out, quick=not args.full)
    print(f"open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
