"""How many threads torch uses for CPU work, for chapters, sweeps, the quick start and the tests.

The thread count is part of a run's numbers: torch splits a matrix product's sums between its threads, so
the same seed trained on one thread and on two ends in different weights (30 steps at the ``large`` scale:
the sum of the weights differs in the 7th digit; a few thousand steps on, that is another training run). So
the old default, the idle cores at ``large``, made a chapter's numbers depend on the machine's load. Now
the default never depends on the machine or its load: one thread, at every scale, and a run is repeated
digit for digit (the sweeps' runs are one thread per CPU they hold). More threads are a choice (``--threads N``
or ``OMP_NUM_THREADS``), faster and with other numbers: measured side by side (``benchmarks/bench_threads.py``,
2 cores), on the idle machine a second thread makes a training step 28-30 % faster at the small and medium
scales and 38 % at large; beside two busy processes it makes the step as fast (small), 2x slower (medium) and
7x slower (large). Work whose numbers do not depend on threads (the native MIG kernel's sums are fixed-order)
may take the idle cores, :func:`idle_cores`. An explicit request wins, then ``OMP_NUM_THREADS`` from the
environment, then one.
"""
from __future__ import annotations

import contextlib
import os
import sys

_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _count(value, origin: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{origin} must be a whole number of threads >= 1, got {value!r}")
    return n


def choose(scale: str | None = None, requested: int | None = None) -> int:
    """Threads for one CPU process that trains: ``requested``, else ``OMP_NUM_THREADS``, else 1 at every
    scale (the thread count changes the numbers; see the module docstring). ``scale`` is accepted for the
    callers that name it and does not change the answer."""
    if requested is not None:
        return _count(requested, "threads")
    if os.environ.get("OMP_NUM_THREADS"):
        return _count(os.environ["OMP_NUM_THREADS"], "OMP_NUM_THREADS")
    return 1


def idle_cores(requested: int | None = None) -> int:
    """Threads for work whose numbers do not depend on the thread count (scoring with the native MIG kernel,
    benchmarks): ``requested``, else the cores not already busy (cores - 1-minute load, rounded, at least 1)."""
    if requested is not None:
        return _count(requested, "threads")
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        load = 0.0
    return max(1, min(cores, round(cores - load)))


def use(n: int) -> None:
    """Set torch's intra-op threads in this process (if torch is loaded) and for the processes it starts."""
    n = _count(n, "threads")
    for k in _ENV:
        os.environ[k] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


@contextlib.contextmanager
def for_children(n: int):
    """``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = n for processes started inside the block (a kernel)."""
    n = _count(n, "threads")
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update({k: str(n) for k in _ENV})
    try:
        yield n
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
