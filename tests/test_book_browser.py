"""The built book in a real browser, offline: headless Chromium (the system's) driven by Playwright opens
every chapter page from file:// with every non-file request refused, in a 1280 px wide window, and checks
what a reader would see: formulas typeset, no errors, figures as wide as the text column, nothing that
scrolls sideways (code folded away by a ``hide-input`` tag is not shown, so it does not count), and
traversal images large enough to see the sprite."""
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
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
        // the prose a reader sees (paragraphs, list items, table cells; code excluded)
        prose: Array.from(document.querySelectorAll('article p, article li, article td, article th'))
                    .filter(e => e.offsetParent !== null && !e.closest('pre, code')).map(e => e.innerText),
    };
}"""

#: Inline TeX left as typed (a ``$...$`` that no parser turned into a formula, e.g. in a Markdown output
#: rendered as CommonMark): a dollar, a TeX-looking body without spaces at its ends, a dollar.
RAW_INLINE_TEX = re.compile(r"\$[^\s$][^$\n]*?[\\_^{}=][^$\n]*?[^\s$]\$")

#: The reader's window: a laptop-sized browser.
VIEWPORT = {"width": 1280, "height": 900}
#: A figure is drawn at least this share of the text column wide (isa_lib.plots.style draws them wider).
MIN_FIGURE_SHARE = 0.8
#: Each image of a traversal (cells tagged ``traversal``) is shown at least this many CSS pixels wide.
MIN_SPRITE_PX = 64

#: The layout a reader sees at VIEWPORT: the text column (the widest paragraph), each figure's rendered and
#: natural width, the elements that scroll sideways, and the traversal figures.
LAYOUT_FACTS = """() => {
    const visible = e => e.offsetParent !== null && e.getClientRects().length > 0;
    const column = Math.max(...Array.from(document.querySelectorAll('article p')).map(p => p.getBoundingClientRect().width));
    const figures = Array.from(document.querySelectorAll('div.cell_output img')).filter(visible).map(img => ({
        src: img.currentSrc || img.src, shown: img.getBoundingClientRect().width, natural: img.naturalWidth}));
    const scrolling = Array.from(document.querySelectorAll('article *')).filter(e => {
        const o = getComputedStyle(e).overflowX;
        return visible(e) && (o === 'auto' || o === 'scroll') && e.scrollWidth > e.clientWidth + 1;
    }).map(e => `${e.tagName.toLowerCase()}.${String(e.className).split(' ')[0]} (${e.scrollWidth} px in ${e.clientWidth} px): `
                + (e.innerText || '').slice(0, 60));
    const traversals = Array.from(document.querySelectorAll('div.tag_traversal div.cell_output img')).filter(visible)
        .map(img => ({src: img.currentSrc || img.src, shown: img.getBoundingClientRect().width, natural: img.naturalWidth}));
    return {column, figures, scrolling, traversals, page: document.documentElement.scrollWidth, window: innerWidth};
}"""


def sprite_width(png: Path, dark: int = 60, min_run: int = 16) -> float:
    """The natural width in pixels of the images of a traversal figure (a grid of dark-background tiles on
    white, a few pixels apart): in each pixel row that crosses at least two runs of dark pixels ``min_run``
    or longer (a row through the grid, not through the text), the longest run; the most common of these. A
    row through a sprite splits its tile, but most rows of a tile pass over its background only."""
    from PIL import Image

    grey = np.asarray(Image.open(png).convert("L"), dtype=np.int16)
    longest = []
    for row in grey < dark:
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
        runs = [b - a for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_run]
        if len(runs) >= 2:
            longest.append(max(runs))
    if not longest:
        raise ValueError(f"{png}: no grid of dark tiles found")
    values, counts = np.unique(longest, return_counts=True)
    return float(values[np.argmax(counts)])


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


def test_sprite_width_measures_the_tiles_of_a_traversal_figure(tmp_path):
    """The measuring stick of the traversal check, on a drawn grid: 2 rows of 5 black 70 px tiles 4 px apart,
    some with a white sprite inside, on white; also when the tiles are 40 px (a figure that fails)."""
    from PIL import Image

    for tile in (70, 40):
        img = np.full((2 * tile + 30, 5 * (tile + 4) + 50), 255, np.uint8)
        for r in range(2):
            for c in range(5):
                y, x = 20 + r * (tile + 4), 40 + c * (tile + 4)
                img[y:y + tile, x:x + tile] = 0
                img[y + tile // 3:y + tile // 2, x + tile // 3 + c:x + tile // 2 + c] = 255  # the sprite
        Image.fromarray(img).save(tmp_path / "grid.png")
        assert sprite_width(tmp_path / "grid.png") == tile


@pytest.mark.slow  # builds the whole book (conftest.project_book) and starts a browser
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_a_chapter_page_reads_well_offline(chapter, project_book, browser, screenshots):
    page_file = project_book / "chapters" / f"{chapter.name}.html"
    context = browser.new_context(viewport=VIEWPORT)
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
        layout = page.evaluate(LAYOUT_FACTS)
        text = facts["text"]
        scale = runner.executed_scale(chapter.output(ROOT))
        problems = {
            "requests outside the book": refused,
            "console errors": console,
            "images not shown": facts["broken_images"],
            "raw TeX left in the text": [m for m in ("\\(", "\\[", "$$") if m in text]
                                        + [m for p in facts["prose"] for m in RAW_INLINE_TEX.findall(p)],
            "formulas not typeset": facts["untypeset"] or (facts["math"] > 0 and facts["typeset"] == 0),
            "TeX errors": facts["tex_errors"],
            "error outputs": facts["error_outputs"] + text.count("Traceback (most recent call last)"),
            "no sentence naming the scale": f"This page was run at scale {scale}" not in text,
            "parameter blocks shown (want 1)": len(re.findall(r'^scale = "', text, re.M)) != 1,
            "the page scrolls sideways": layout["page"] > layout["window"],
            "elements that scroll sideways": layout["scrolling"],
            f"figures narrower than {MIN_FIGURE_SHARE:.0%} of the {layout['column']:.0f} px column": [
                f"{Path(f['src']).name}: {f['shown']:.0f} px" for f in layout["figures"]
                if f["shown"] < MIN_FIGURE_SHARE * layout["column"]],
            f"traversal images under {MIN_SPRITE_PX} px": [
                f"{Path(t['src']).name}: {w:.0f} px" for t in layout["traversals"]
                if (w := sprite_width(Path(unquote(urlparse(t["src"]).path))) * t["shown"] / t["natural"])
                < MIN_SPRITE_PX],
        }
        problems = {k: v for k, v in problems.items() if v}
        if problems:
            shot = screenshots / f"{chapter.name}.png"
            page.screenshot(path=str(shot), full_page=True)
            pytest.fail(f"{chapter.name}: {problems} (screenshot: {shot})")
        assert facts["images"] >= 1 and scale is not None
        if chapter.name.startswith(("04", "05")):  # the chapters with traversals of sprites
            assert layout["traversals"], f"{chapter.name}: no cell tagged 'traversal' with a figure"
    finally:
        context.close()
