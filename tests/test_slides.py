"""``make slides`` for one lesson (00, the cheapest to execute): the deck opens in headless
Chromium with the network cut off, reveal.js runs, and every figure the lesson draws is on a
slide and drawn; a screenshot of a figure slide lands in ``build/browser/``.

Also: every lesson has slide metadata for the title, each section and its figures and checks.
The browser part skips like ``tests/test_lab.py`` where Chromium or Playwright is missing, and
where reveal.js and MathJax are not cached and npm's registry cannot be reached (``make test``
fetches them first, ``make slides-assets``; here each try is bounded by
``build_slides.NETWORK_TIMEOUT``, so the test never waits long on the network).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_docs import docs_script
from tests.test_lab import SCREENSHOTS, _browser

ROOT = Path(__file__).resolve().parents[1]
LESSON = "00"


build_slides = docs_script("build_slides")
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.name[:2])
def test_every_lesson_has_slides_for_its_sections(lesson):
    cells = json.loads(lesson.read_text(encoding="utf-8"))["cells"]
    types = [c["metadata"].get("slideshow", {}).get("slide_type") for c in cells]
    assert all(types), (
        f"{lesson.name}: cells without a slide type (docs/build_slides.py --annotate)"
    )
    assert types[0] == "slide", "the title cell opens the deck"
    for cell, kind in zip(cells, types):
        if cell["cell_type"] == "markdown" and "".join(cell["source"]).startswith("## "):
            assert kind == "slide", f"a section heading is not a slide: {cell['source'][0]!r}"
    figures = [
        kind
        for cell, kind in zip(cells, types)
        if cell["cell_type"] == "code" and build_slides.PLOTS.search("".join(cell["source"]))
    ]
    assert set(figures) - {"skip", "notes"}, "no figure of the lesson is in its deck"


def test_make_slides_builds_a_deck_that_shows_its_figures_offline(tmp_path):
    sync_playwright, _, chromium = _browser()
    try:
        build_slides.fetch_assets()  # a no-op once cached (make test's slides-assets step)
    except build_slides.AssetsUnavailable as reason:
        pytest.skip(str(reason))
    out = tmp_path / "slides"
    result = subprocess.run(
        ["make", "--no-print-directory", "slides", f"LESSONS={LESSON}"]
        + [f"SLIDES_FLAGS=--out={out}", f"PYTHON={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # lesson 00 runs in seconds; the assets are cached: nothing to wait for
    )
    assert result.returncode == 0, (
        f"make slides failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    )
    deck = next(out.glob(f"{LESSON}_*.slides.html"))
    assert build_slides.remote_references(deck) == [], "the deck loads something from the network"
    cells = json.loads(next((ROOT / "notebooks").glob(f"{LESSON}_*.ipynb")).read_text())["cells"]
    figures = sum(c["metadata"]["slideshow"]["slide_type"] == "subslide" for c in cells)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    requested, errors = [], []
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.route(re.compile(r"^https?://"), lambda route: route.abort())  # no network
        page.on("request", lambda r: requested.append(r.url) if r.url.startswith("http") else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            page.goto(deck.as_uri())
            page.locator(".reveal.ready").wait_for(state="attached", timeout=30_000)
            # the template loads reveal.js with require.js: get hold of it as the deck does
            total = page.evaluate(
                "() => new Promise(done => require(['assets/reveal.js/dist/reveal.js'], R => {"
                " window.deck = R; done(R.getTotalSlides()); }))"
            )
            assert total >= figures + 1, f"{total} slides for the title and {figures} figures"
            images = page.locator(".reveal .slides img")
            assert images.count() >= figures, f"{images.count()} images for {figures} figure slides"
            # go to the first figure's slide, as a presenter would, and see it drawn
            page.evaluate(
                "() => { const i = deck.getIndices("
                "document.querySelector('.reveal .slides img').closest('section'));"
                " deck.slide(i.h, i.v || 0); }"
            )
            page.wait_for_timeout(1000)  # the slide transition
            shown = page.locator(".reveal .slides section.present img").first
            assert shown.is_visible(), "the figure's slide is current but its image is not visible"
            width = shown.evaluate("img => img.naturalWidth")
            assert width > 100, f"the figure was not drawn (natural width {width})"
        finally:
            page.screenshot(path=str(SCREENSHOTS / f"slides_{LESSON}.png"))
            browser.close()
    assert requested == [], f"the deck asked the network for {requested}"
    assert errors == [], f"the deck's scripts raised: {errors}"
