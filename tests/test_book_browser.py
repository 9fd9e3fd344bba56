"""The built book in a real browser, offline: headless Chromium (the system's) driven by Playwright opens
every chapter page from file:// with every non-file request refused, and checks what a reader would see."""
import re
import shutil
from pathlib import Path

import pytest

from isa_lib import runner

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = runner.chapters(ROOT)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")  # the Debian package's is /usr/bin/chromium

#: What the page shows once MathJax is done (``mjx-merror`` is MathJax's box for TeX it could not parse).
PAGE_FACTS = """async () => {
    const math = document.querySelectorAll('.math').length;
    if (math && window.MathJax && MathJax.startup) { await MathJax.startup.promise; }
    await Promise.all(Array.from(document.images, img => img.decode().catch(() => null)));
    return {
        math: math,
        typeset: document.querySelectorAll('mjx-container').length,
        untypeset: Array.from(document.querySelectorAll('.math')).filter(e => !e.querySelector('mjx-container')).length,
        tex_errors: document.querySelectorAll('mjx-merror').length,
        broken_images: Array.from(document.images).filter(img => !(img.complete && img.naturalWidth > 0))
                            .map(img => img.getAttribute('src')),
        images: document.images.length,
        error_outputs: document.querySelectorAll('.output.traceback, .output_error, .output.error').length,
        text: document.body.innerText,
    };
}"""


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module; skipped only when Playwright or a Chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')")
    exe = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if exe is None:
        pytest.skip("no system Chromium found (apt-get install chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])  # CI runs as root
        yield b
        b.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where a failing page's screenshot goes."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_a_chapter_page_reads_well_offline(chapter, project_book, browser, screenshots):
    page_file = project_book / "chapters" / f"{chapter.name}.html"
    context = browser.new_context()
    refused, console = [], []

    def offline(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(f"uncaught: {e}"))
    try:
        page.goto(page_file.as_uri(), wait_until="load")
        facts = page.evaluate(PAGE_FACTS)
        text = facts["text"]
        scale = runner.executed_scale(chapter.output(ROOT))
        problems = {
            "requests outside the book": refused,
            "console errors": console,
            "images not shown": facts["broken_images"],
            "raw TeX left in the text": [m for m in ("\\(", "\\[", "$$") if m in text],
            "formulas not typeset": facts["untypeset"] or (facts["math"] > 0 and facts["typeset"] == 0),
            "TeX errors": facts["tex_errors"],
            "error outputs": facts["error_outputs"] + text.count("Traceback (most recent call last)"),
            "no sentence naming the scale": f"This page was run at scale {scale}" not in text,
            "parameter blocks shown (want 1)": len(re.findall(r'^scale = "', text, re.M)) != 1,
        }
        problems = {k: v for k, v in problems.items() if v}
        if problems:
            shot = screenshots / f"{chapter.name}.png"
            page.screenshot(path=str(shot), full_page=True)
            pytest.fail(f"{chapter.name}: {problems} (screenshot: {shot})")
        assert facts["images"] >= 1 and scale is not None
    finally:
        context.close()
