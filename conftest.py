"""Collect the Jupytext notebooks in notebooks/ for nbval, so `pytest` runs every chapter at its defaults.

nbval only collects ``.ipynb`` files; our chapters are percent-format ``.py`` files. They are read through
jupytext and otherwise handled by nbval unchanged (lax mode: a cell fails only if it raises).
"""
from pathlib import Path
from unittest import mock

NOTEBOOKS = Path(__file__).parent / "notebooks"


def pytest_collect_file(file_path, parent):
    if file_path.suffix != ".py" or file_path.parent != NOTEBOOKS or not file_path.name[:1].isdigit():
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
