"""Results tables for the book's pages: a :class:`pandas.DataFrame` shown as an HTML table (which the book's
style sheet wraps to the text column) instead of a block of fixed-width text that scrolls sideways."""
from __future__ import annotations

import numbers

import pandas as pd


def table(df: pd.DataFrame, digits: int = 3, caption: str | None = None, columns: dict | None = None,
          intervals: dict | None = None):
    """``df`` as a styled HTML table: numbers rounded to ``digits`` decimals (whole numbers as integers, NaN as
    an empty cell) and kept on one line, text columns wrapped, the index hidden unless it carries labels,
    column names renamed by ``columns`` and otherwise with ``_`` and ``.`` shown as spaces (so that headers wrap
    at word breaks), ``caption`` above. Display it (``display(table(df))``); the notebook stores it as
    text/html, which Jupyter Book renders. ``intervals`` maps a new column name to a pair of columns (low, high)
    shown together as ``[low, high]`` in the low column's place: half the width of two columns."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"table() takes a pandas DataFrame, not {type(df).__name__}")
    if digits < 0:
        raise ValueError(f"digits must be >= 0, got {digits}")
    shown = df.copy()
    for name, (lo, hi) in (intervals or {}).items():
        if lo not in shown or hi not in shown:
            raise KeyError(f"interval {name!r}: no columns {lo!r} and {hi!r} in {list(shown.columns)}")
        text = [f"[{a:+.{digits}f}, {b:+.{digits}f}]" for a, b in zip(shown[lo], shown[hi])]
        shown.insert(list(shown.columns).index(lo), name, text)
        shown = shown.drop(columns=[lo, hi])
    shown = shown.rename(columns=columns or {})
    if isinstance(shown.columns, pd.MultiIndex):
        shown.columns = [" ".join(str(c) for c in col if str(c)) for col in shown.columns]
    named_index = any(n is not None for n in shown.index.names)
    shown = shown.reset_index(drop=not named_index)  # also makes the rows unique (Styler needs that)
    keep = set((columns or {}).values()) | set(intervals or {})
    shown.columns = [c if c in keep else str(c).replace("_", " ").replace(".", " ") for c in shown.columns]
    if shown.columns.has_duplicates:
        raise ValueError(f"column names collide once '_' and '.' are spaces: {list(shown.columns)}")
    text_columns = [c for c in shown.columns if not pd.api.types.is_numeric_dtype(shown[c])
                    and not all(isinstance(v, numbers.Number) or v is None for v in shown[c])]

    def fmt(v):
        if v is None or (isinstance(v, float) and v != v):
            return ""
        if isinstance(v, bool):
            return str(v)
        if isinstance(v, numbers.Integral):
            return f"{v:,}" if abs(v) >= 10000 else str(v)
        if isinstance(v, numbers.Real):
            if float(v).is_integer() and abs(v) < 1e6:
                return str(int(v))
            return f"{v:.{digits}f}"
        return str(v)

    styler = shown.style.format(fmt).hide(axis="index").set_properties(**{"white-space": "nowrap"})
    if text_columns:
        styler = styler.set_properties(subset=text_columns, **{"white-space": "normal", "min-width": "4em", "text-align": "left"})
    if caption:
        styler = styler.set_caption(caption)
    return styler
