"""The book's one figure style, set once when :mod:`isa_lib.plots` is imported.

A figure of the book is drawn :data:`WIDTH` inches wide at :data:`DPI`, i.e. a little wider than the text
column of the built book at a 1280 px window (688 px for a cell's output), so the browser scales it down to
the column rather than leaving it narrower: the fonts below are chosen so that, scaled to the column, body
text renders at about 13 px and tick labels at about 11 px. Colours are Okabe & Ito's colour-blind safe
palette ("Color Universal Design", 2008), the one qualitative palette of every figure.
"""
from __future__ import annotations

import matplotlib as mpl
from cycler import cycler

#: Width of a book figure in inches (a full text column); heights vary with the figure.
WIDTH = 8.0
#: Pixels per inch of the notebook's inline PNGs: WIDTH * DPI = 800 px, scaled to the column.
DPI = 100

#: Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies, and in grey.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

#: Diverging colour map for signed quantities (a latent's mean), red-blue, readable without red-green.
DIVERGING = "RdBu_r"

#: Text sizes in points at WIDTH inches (about 13 px and 11 px once scaled to the column).
FONT = 11.5
SMALL = 10.0

BOOK_RC = {
    "figure.figsize": (WIDTH, 0.55 * WIDTH),
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.constrained_layout.use": False,
    "font.size": FONT,
    "axes.titlesize": FONT,
    "axes.labelsize": FONT,
    "figure.titlesize": FONT + 1,
    "xtick.labelsize": SMALL,
    "ytick.labelsize": SMALL,
    "legend.fontsize": SMALL,
    "legend.title_fontsize": SMALL,
    "legend.framealpha": 0.85,
    "legend.loc": "best",
    "axes.prop_cycle": cycler(color=list(OKABE_ITO)),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "image.cmap": "viridis",
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
}


def use_book_style() -> None:
    """Apply :data:`BOOK_RC` to matplotlib (idempotent). Called when :mod:`isa_lib.plots` is imported."""
    mpl.rcParams.update(BOOK_RC)


def figsize(height_ratio: float) -> tuple[float, float]:
    """A full-column figure: ``WIDTH`` inches wide and ``height_ratio * WIDTH`` high."""
    if not height_ratio > 0:
        raise ValueError(f"height_ratio must be positive, got {height_ratio!r}")
    return (WIDTH, height_ratio * WIDTH)


def fit(width: float, height: float) -> tuple[float, float]:
    """A figure drawn for ``width`` x ``height`` inches, rescaled to a full column (``WIDTH`` wide) with the same
    aspect, so that it fills the column instead of being shrunk (too wide) or left narrow (too small)."""
    if not (width > 0 and height > 0):
        raise ValueError(f"figure size must be positive, got {width!r} x {height!r}")
    return (WIDTH, height * WIDTH / width)


def colour(i: int) -> str:
    """The i-th colour of the book's palette (cycling)."""
    return OKABE_ITO[int(i) % len(OKABE_ITO)]


def wrap_title(title: str, width: int = 72) -> str:
    """A title broken into lines that fit a full-column figure: a long one-line title would make the saved
    figure (cropped to its contents) wider than the column, and the browser would shrink everything in it."""
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in str(title).split("\n"))
