"""Plotting helpers of the book: functions that take arrays or library objects and return figures.

Importing this package applies the book's figure style once (:mod:`isa_lib.plots.style`: full-column
sizes, legible fonts at that width, the Okabe-Ito colour-blind safe palette)."""
from .style import use_book_style

use_book_style()
