"""Fixtures shared by the book's tests."""
from pathlib import Path

import pytest

from isa_lib import runner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_book(tmp_path_factory) -> Path:
    """The project's book built once per session, strictly (any Sphinx warning fails), from the committed
    executed chapters into a temporary folder; returns its ``_build/html`` folder."""
    missing = [c.name for c in runner.chapters(ROOT) if not c.output(ROOT).exists()]
    assert not missing, f"chapters never executed (run `isa-vae run NAME`): {missing}"
    out = tmp_path_factory.mktemp("book")
    index = runner.build_book(ROOT, output_dir=out, quiet=True, strict=True)
    assert index.exists()
    return index.parent
