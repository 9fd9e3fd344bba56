"""Collect the Jupytext notebooks in notebooks/ for nbval, so `pytest` runs every chapter at its defaults.

nbval only collects ``.ipynb`` files; our chapters are percent-format ``.py`` files. They are read through
jupytext and otherwise handled by nbval unchanged (lax mode: a cell fails only if it raises). A
``notebooks/*.ipynb`` made from them (e.g. by jupytext for plain papermill) is not collected a second time.

The tests, and the notebook kernels they start, use one torch thread unless ``OMP_NUM_THREADS`` says
otherwise: the small networks gain nothing from more, and on a busy machine more threads than free cores
spin against each other (isa_lib.threads).
"""
import os
from pathlib import Path
from unittest import mock

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")   # before torch is imported by any test or kernel
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

NOTEBOOKS = Path(__file__).parent / "notebooks"
collect_ignore_glob = ["notebooks/*.ipynb", "notebooks/.ipynb_checkpoints/*"]


def _is_chapter(path) -> bool:
    return path.suffix == ".py" and path.parent == NOTEBOOKS and path.name[:1].isdigit()


def pytest_pycollect_makemodule(module_path, parent):
    """A chapter named on the command line (`pytest notebooks/06_...py`) is a notebook, not a test module:
    importing it would run the chapter outside its folder."""
    if _is_chapter(module_path):
        return _NotAModule.from_parent(parent, path=module_path)
    return None


class _NotAModule(pytest.File):
    def collect(self):
        return []


def pytest_collect_file(file_path, parent):
    if not _is_chapter(file_path):
        return None
    opt = parent.config.option
    if not (getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False)):
        return None
    return JupytextNotebook.from_parent(parent, path=file_path)


try:
    import jupytext
    import nbformat
    from nbval.plugin import IPyNbFile

    class JupytextNotebook(IPyNbFile):
        """An nbval notebook collector that reads a Jupytext source instead of ``.ipynb`` JSON."""

        def collect(self):
            with mock.patch.object(nbformat, "read", lambda path, as_version=4: jupytext.read(path)):
                yield from super().collect()

except ImportError:  # nbval or jupytext missing: notebooks are simply not collected
    pass
