"""Argument checks of the disentanglement_lib-comparable scores (named errors before any work is done)."""
from __future__ import annotations

import math
import numbers


def _int_at_least(name: str, value, low: int) -> int:
    """``value`` as an int >= ``low``, else a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _positive_float(name: str, value) -> float:
    """``value`` as a finite float > 0, else a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _nonnegative_float(name: str, value) -> float:
    """``value`` as a finite float >= 0, else a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
