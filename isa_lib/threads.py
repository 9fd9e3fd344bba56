"""How many threads torch uses for CPU work, for chapters, sweeps, the quick start and the tests.

torch's default is one intra-op thread per core. On a loaded 2-core machine two such processes spin
against each other: a small run took 620 ms per step with 2 threads against 35 ms with one. Measured
side by side (``benchmarks/bench_threads.py``, 2 cores): on the idle machine a second thread makes a
training step 28-30 % faster at the small and medium scales and 38 % at large; with two busy processes
beside it, it makes the step as fast (small), 2x slower (medium) and 7x slower (large). So the policy is
one thread for the ``small`` and ``medium`` networks (the quick start, the tests, most chapters), which
gives up at most 30 % on an idle machine to avoid losing 2x or more on a busy one; for other work, the
cores not already busy (cores minus the 1-minute load average, at least one). An explicit request wins,
then ``OMP_NUM_THREADS`` from the environment, then the policy.
"""
from __future__ import annotations

import contextlib
import os
import sys

#: Scales whose networks run on one thread (see the module docstring).
ONE_THREAD_SCALES = ("small", "medium")
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
    """Threads for one CPU process: ``requested``, else ``OMP_NUM_THREADS``, else 1 at the small and
    medium scales, else the idle cores (cores - 1-minute load, rounded, at least 1)."""
    if requested is not None:
        return _count(requested, "threads")
    if os.environ.get("OMP_NUM_THREADS"):
        return _count(os.environ["OMP_NUM_THREADS"], "OMP_NUM_THREADS")
    if scale in ONE_THREAD_SCALES:
        return 1
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
