"""The book pipeline end to end: chapters executed by papermill, rendered by Jupyter Book 1.x."""
import json
import re
import shutil
from pathlib import Path


from isa_lib import cli, runner

ROOT = Path(__file__).resolve().parents[1]
PNG = re.compile(r'<img[^>]+src="([^"]+\.png)"')


def chapter_images(html_file: Path) -> list[Path]:
    """The PNG files an HTML page shows (myst-nb writes notebook figures as separate images)."""
    return [(html_file.parent / src).resolve() for src in PNG.findall(html_file.read_text())]


def test_quickstart_runs_the_main_job_and_builds_a_book_showing_the_figures(tmp_path, monkeypatch, capsys):
    # A two-chapter project with the real configuration: chapter 01 is the main job and already has an
    # executed notebook (which the quick start must keep), chapter 02 was never executed.
    (tmp_path / "notebooks" / "params").mkdir(parents=True)
    (tmp_path / "book" / "chapters").mkdir(parents=True)
    src = Path(__file__).parent / "data"
    for name in ("01_main", "02_other"):
        shutil.copy(src / "tiny_chapter.py", tmp_path / "notebooks" / f"{name}.py")
        shutil.copy(src / "params" / "tiny_chapter.yml", tmp_path / "notebooks" / "params" / f"{name}.yml")
    shutil.copy(ROOT / "_config.yml", tmp_path)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n"
                                       "  - file: chapters/01_main\n  - file: chapters/02_other\n")
    (tmp_path / "book" / "_toc.yml").symlink_to("../_toc.yml")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n\nText.\n")
    monkeypatch.setenv("ISA_VAE_ROOT", str(tmp_path))
    kept = runner.run_chapter(runner.find_chapter("01_main", tmp_path), "medium", progress=False)
    before = kept.read_text()

    assert cli.main(["quickstart", "--main", "01_main"]) == 0
    out = capsys.readouterr().out
    assert "running the main experiment, 01_main, at scale 'small'" in out and "book built" in out
    assert runner.executed_scale(tmp_path / "_build" / "quickstart" / "01_main.ipynb") == "small"
    assert kept.read_text() == before  # the book's medium-scale chapter is untouched
    assert runner.executed_scale(tmp_path / "book" / "chapters" / "02_other.ipynb") == "small"
    for name in ("01_main", "02_other"):
        page = tmp_path / "_build" / "html" / "chapters" / f"{name}.html"
        images = chapter_images(page)
        assert images and all(p.exists() and p.read_bytes()[:4] == b"\x89PNG" for p in images)


def test_the_project_book_builds_from_the_committed_executed_chapters(project_book):
    """`jupyter-book build book/` as the README names it (the build is the session fixture in conftest.py)."""
    for c in runner.chapters(ROOT):
        page = project_book / "chapters" / f"{c.name}.html"
        assert page.exists(), c.name
        nb = json.loads(c.output(ROOT).read_text())
        n_figures = sum("image/png" in o.get("data", {}) for cell in nb["cells"] for o in cell.get("outputs", []))
        assert n_figures >= 1, f"{c.name} shows no figure"
        assert len(chapter_images(page)) >= n_figures, f"{c.name}: the page lost figures"
