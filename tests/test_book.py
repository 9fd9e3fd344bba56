"""The book pipeline end to end: chapters executed by papermill, rendered by Jupyter Book 1.x."""
import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from isa_lib import cli, runner

ROOT = Path(__file__).resolve().parents[1]
PNG = re.compile(r'<img[^>]+src="([^"]+\.png)"')


def chapter_images(html_file: Path) -> list[Path]:
    """The PNG files an HTML page shows (myst-nb writes notebook figures as separate images)."""
    return [(html_file.parent / src).resolve() for src in PNG.findall(html_file.read_text())]


def test_quickstart_runs_chapters_and_builds_a_book_showing_their_figures(tmp_path, monkeypatch, capsys):
    # A one-chapter project with the real configuration.
    (tmp_path / "notebooks" / "params").mkdir(parents=True)
    (tmp_path / "book").mkdir()
    src = Path(__file__).parent / "data"
    shutil.copy(src / "tiny_chapter.py", tmp_path / "notebooks" / "01_tiny.py")
    shutil.copy(src / "params" / "tiny_chapter.yml", tmp_path / "notebooks" / "params" / "01_tiny.yml")
    shutil.copy(ROOT / "_config.yml", tmp_path)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapters/01_tiny\n")
    (tmp_path / "book" / "_toc.yml").symlink_to("../_toc.yml")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n\nText.\n")
    monkeypatch.setenv("ISA_VAE_ROOT", str(tmp_path))

    assert cli.main(["quickstart"]) == 0
    assert "book built" in capsys.readouterr().out
    page = tmp_path / "_build" / "html" / "chapters" / "01_tiny.html"
    assert page.exists()
    images = chapter_images(page)
    assert images and all(p.exists() and p.read_bytes()[:4] == b"\x89PNG" for p in images)


def test_the_project_book_builds_from_the_committed_executed_chapters(tmp_path):
    chapters = runner.chapters(ROOT)
    missing = [c.name for c in chapters if not c.output(ROOT).exists()]
    assert not missing, f"chapters never executed (run `isa-vae run NAME`): {missing}"
    index = runner.build_book(ROOT, output_dir=tmp_path, quiet=True, strict=True)
    assert index.exists()
    for c in chapters:
        page = tmp_path / "_build" / "html" / "chapters" / f"{c.name}.html"
        assert page.exists(), c.name
        nb = json.loads(c.output(ROOT).read_text())
        n_figures = sum("image/png" in o.get("data", {}) for cell in nb["cells"] for o in cell.get("outputs", []))
        assert n_figures >= 1, f"{c.name} shows no figure"
        assert len(chapter_images(page)) >= n_figures, f"{c.name}: the page lost figures"
