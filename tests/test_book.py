"""The book pipeline end to end: chapters executed by papermill, rendered by Jupyter Book 1.x."""
import html
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isa_lib import cli, runner

ROOT = Path(__file__).resolve().parents[1]
PNG = re.compile(r'<img[^>]+src="([^"]+\.png)"')


def chapter_images(html_file: Path) -> list[Path]:
    """The PNG files an HTML page shows (myst-nb writes notebook figures as separate images)."""
    return [(html_file.parent / src).resolve() for src in PNG.findall(html_file.read_text())]


@pytest.mark.slow
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
    assert "these are the 'small' scale's numbers; the book's page of this chapter was run at scale 'medium'" in out
    assert runner.executed_scale(tmp_path / "_build" / "quickstart" / "01_main.ipynb") == "small"
    assert kept.read_text() == before  # the book's medium-scale chapter is untouched
    assert runner.executed_scale(tmp_path / "book" / "chapters" / "02_other.ipynb") == "small"
    for name in ("01_main", "02_other"):
        page = tmp_path / "_build" / "html" / "chapters" / f"{name}.html"
        images = chapter_images(page)
        assert images and all(p.exists() and p.read_bytes()[:4] == b"\x89PNG" for p in images)


@pytest.mark.slow
def test_the_project_book_builds_from_the_committed_executed_chapters(project_book):
    """`jupyter-book build book/` as the README names it (the build is the session fixture in conftest.py)."""
    for c in runner.chapters(ROOT):
        page = project_book / "chapters" / f"{c.name}.html"
        assert page.exists(), c.name
        nb = json.loads(c.output(ROOT).read_text())
        n_figures = sum("image/png" in o.get("data", {}) for cell in nb["cells"] for o in cell.get("outputs", []))
        assert n_figures >= 1, f"{c.name} shows no figure"
        assert len(chapter_images(page)) >= n_figures, f"{c.name}: the page lost figures"


# The commands the README names ----------------------------------------------------------------------

README = (ROOT / "README.md").read_text()


def _tool(name: str) -> str:
    """A command-line tool of this Python environment (next to the interpreter), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


@pytest.mark.slow
def test_plain_papermill_runs_a_chapter_as_the_readme_says(tmp_path):
    """The README's plain-papermill example, verbatim, run in a copy of the layout it names (notebooks/ with the
    chapter), and what it writes is git-ignored in the repository."""
    commands = ["jupytext --to ipynb notebooks/03_lp_nested_theory.py",
                "papermill notebooks/03_lp_nested_theory.ipynb notebooks/03_seed1.ipynb -p seed 1"]
    readme = " ".join(README.split())  # the README may break a command across lines
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "03_lp_nested_theory.py", tmp_path / "notebooks")
    for command in commands:
        assert f"`{command}`" in readme, f"the README no longer shows `{command}`; update this test with it"
        args = shlex.split(command)
        done = subprocess.run([_tool(args[0])] + args[1:], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}:\n{done.stderr[-3000:]}"
        assert "Passed unknown parameter" not in done.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "notebooks").glob("*.ipynb"))
    assert written == ["notebooks/03_lp_nested_theory.ipynb", "notebooks/03_seed1.ipynb"]
    if (ROOT / ".git").exists():  # both land where git does not see them
        ignored = subprocess.run(["git", "check-ignore", *written], cwd=ROOT, capture_output=True, text=True)
        assert sorted(ignored.stdout.split()) == written, ignored
    nb = json.loads((tmp_path / "notebooks" / "03_seed1.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"] == {"seed": 1}
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "seed = 1" in "".join(injected[0]["source"])
    defaults = runner.notebook_parameters(ROOT / "notebooks" / "03_lp_nested_theory.py")
    assert defaults["scale"] == "small"  # what the README says the run is: the small scale, seed 1
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3


@pytest.mark.slow
def test_pytest_runs_one_chapter_through_nbval_as_the_readme_says():
    """`python -m pytest notebooks/01_...py` collects the Jupytext chapter (conftest.py) and runs every cell."""
    command = ".venv/bin/python -m pytest notebooks/01_vi_bias_factor_analysis.py"
    assert f"`{command}`" in README
    chapter = ROOT / "notebooks" / "01_vi_bias_factor_analysis.py"
    import jupytext

    n_code = sum(c.cell_type == "code" for c in jupytext.read(chapter).cells)
    done = subprocess.run([sys.executable, "-m", "pytest", str(chapter), "-q"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and f"{n_code} passed" in done.stdout, done.stdout[-3000:]


@pytest.mark.slow
def test_chapter_06_tests_the_paper_scale_gpu_study_once_both_arms_share_seeds(tmp_path):
    """With both arms of the GPU study on shared seeds (a synthetic ISA-VAE arm made from the committed
    beta-VAE runs, MIG shifted per seed, in place of any committed one), the chapter shows the paired test and
    counts the claim in the verdicts under Holm's correction."""
    import pandas as pd

    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results, ignore=shutil.ignore_patterns("*.checkpoints", "gpu_session*"))
    gpu = pd.read_csv(results / "dsprites_paper_beta1.csv")
    beta = gpu[(gpu["status"] == "done") & (gpu["model"] == "beta_vae")]
    assert len(beta) >= 2          # the committed ISA-VAE arm, if any, is replaced by the synthetic one
    isa = beta.assign(model="isa_vae", p=2.2, config_hash=beta["config_hash"] + "i",
                      mig=beta["mig"] + 0.01 * np.arange(len(beta)))
    pd.concat([beta, isa]).to_csv(results / "synthetic_gpu.csv", index=False)
    out = runner.run_chapter(runner.find_chapter("06", ROOT), "small", output=tmp_path / "06.ipynb", progress=False,
                             overrides={"results_path": str(results), "gpu_study": "synthetic_gpu"})
    nb = json.loads(out.read_text())
    text = html.unescape("".join("".join(o.get("data", {}).get("text/html", ""))
                                 + "".join(o.get("data", {}).get("text/markdown", ""))
                                 for c in nb["cells"] for o in c.get("outputs", [])))
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert "Paired test at the paper's scale" in text
    assert f"{len(beta)} pairs" in text and "the paper's network and budget (GPU)" in text
    assert "Not yet a comparison" not in text


@pytest.mark.slow
def test_a_chapter_named_on_the_command_line_is_run_as_a_notebook_not_imported():
    """Chapter 06 reads ../results/ relative to notebooks/: imported as a module from the root it would fail."""
    chapter = ROOT / "notebooks" / "06_sweep_analysis.py"
    import jupytext

    n_code = sum(c.cell_type == "code" for c in jupytext.read(chapter).cells)
    done = subprocess.run([sys.executable, "-m", "pytest", str(chapter), "-q"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and f"{n_code} passed" in done.stdout and "error" not in done.stdout.lower(), \
        done.stdout[-3000:]


def test_the_readme_quick_start_is_what_ci_and_these_tests_run():
    """The README's two quick-start commands: install the book extra and run `isa-vae quickstart` (run above
    on a small project), then install the dev extra and run pytest (what .ci/run does on a clean clone)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2, block
    first, second = block
    assert '-e ".[book]"' in first and first.endswith(".venv/bin/isa-vae quickstart")
    assert '-e ".[dev]"' in second and second.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert '-e ".[dev]"' in ci and ci.strip().endswith(".venv/bin/python -m pytest")
    assert runner.find_chapter(cli.MAIN_CHAPTER).source.exists()


# The book's figures and tables (isa_lib.plots.style, .experiment, .tables) ----------------------------

def test_the_book_style_is_set_by_importing_the_plots_package():
    import matplotlib as mpl

    from isa_lib.plots import style

    mpl.rcParams["figure.figsize"] = (3.0, 2.0)
    style.use_book_style()
    assert tuple(mpl.rcParams["figure.figsize"])[0] == style.WIDTH
    assert mpl.rcParams["axes.prop_cycle"].by_key()["color"][:3] == list(style.OKABE_ITO[:3])
    assert style.fit(4.0, 2.0) == (style.WIDTH, style.WIDTH / 2) and style.fit(16.0, 4.0)[0] == style.WIDTH
    with pytest.raises(ValueError, match="positive"):
        style.fit(0.0, 1.0)
    assert max(map(len, style.wrap_title("word " * 40).split("\n"))) <= 72


def test_dominant_factor_follows_the_main_effect_not_one_odd_value():
    """A latent that rises with scale (3 values) and jumps at one edge position of 16: the range over position
    is the larger (1.5 against 1.0), the variance over scale is (0.17 against 0.13); the label says scale."""
    from isa_lib.plots.experiment import dominant_factor

    sizes = [1, 3, 16]
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, 3)
    mu = np.zeros((len(grid), 2))
    mu[:, 0] = 0.5 * grid[:, 1] + 1.5 * (grid[:, 2] == 15)
    mu[:, 1] = 0.1 * grid[:, 2]
    names = ["colour", "scale", "posX"]
    assert dominant_factor(mu, sizes, names, 0) == "scale"
    assert dominant_factor(mu, sizes, names, 1) == "posX"
    with pytest.raises(ValueError, match="no factor varies"):
        dominant_factor(mu[:1], [1, 1, 1], names, 0)


def test_traversal_plot_is_a_column_wide_with_square_images_and_checks_its_labels():
    import matplotlib

    matplotlib.use("Agg")
    from isa_lib.plots.experiment import traversal_plot
    from isa_lib.plots.style import WIDTH

    fig = traversal_plot(np.zeros((2, 7, 1, 8, 8)), [3, 5], np.linspace(-2.5, 2.5, 7), row_labels=["posX", "scale"])
    assert fig.get_size_inches()[0] == WIDTH
    box = fig.axes[0].get_position()
    w, h = box.width * fig.get_size_inches()[0], box.height * fig.get_size_inches()[1]
    assert w > 0.9 and abs(w - h) < 0.05            # about an inch, square: ~85 px an image in the column
    assert fig.axes[0].get_title() == "z = -2.5" and "scale" in fig.axes[7].get_ylabel()
    with pytest.raises(ValueError, match="2 dims and 3 values"):
        traversal_plot(np.zeros((2, 7, 1, 8, 8)), [3, 5], [0, 1, 2])


def test_results_tables_are_html_with_rounded_numbers_and_intervals():
    import pandas as pd

    from isa_lib.plots.tables import table

    df = pd.DataFrame({"claim": ["a long claim", "b"], "n_pairs": [5, 12], "difference": [0.031749, -0.5],
                       "t_ci_low": [-0.1316, -1.0], "t_ci_high": [0.195, 0.0], "p": [float("nan"), 1.0]})
    html = table(df, digits=3, intervals={"95 % t interval": ("t_ci_low", "t_ci_high")}, caption="Claims").to_html()
    assert "<table" in html and "<caption>Claims</caption>" in html
    assert "0.032" in html and "[-0.132, +0.195]" in html and "n pairs" in html and "t_ci_low" not in html
    assert ">1<" in html.replace(" ", "")                  # a whole number shown as one
    with pytest.raises(KeyError, match="no columns"):
        table(df, intervals={"x": ("lo", "hi")})
    with pytest.raises(TypeError):
        table([1, 2])


def test_followed_factors_names_every_factor_with_a_comparable_effect():
    """The size latent of a dSprites model also moves with position where the image's edge cuts the sprites:
    both are named, the larger first; a factor with a small effect is not."""
    from isa_lib.plots.experiment import followed_factors

    sizes = [1, 3, 16, 4]
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, 4)
    mu = (0.5 * grid[:, 1] + 1.5 * (grid[:, 2] == 15) + 0.01 * grid[:, 3])[:, None]
    names = ["colour", "scale", "posX", "orientation"]
    assert followed_factors(mu, sizes, names, 0) == ["scale", "posX"]
    assert followed_factors(mu, sizes, names, 0, share=0.9) == ["scale"]
    with pytest.raises(ValueError, match="share"):
        followed_factors(mu, sizes, names, 0, share=0.0)
