"""The papermill runner, the scale files and the command line (isa_lib.runner, isa_lib.cli)."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from isa_lib import cli, runner

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "data" / "tiny_chapter.py"


@pytest.fixture
def tiny(tmp_path):
    """A copy of the tiny chapter in a project-like layout, so outputs land in tmp_path."""
    (tmp_path / "notebooks" / "params").mkdir(parents=True)
    src = tmp_path / "notebooks" / TINY.name
    shutil.copy(TINY, src)
    shutil.copy(TINY.parent / "params" / "tiny_chapter.yml", tmp_path / "notebooks" / "params")
    return runner.Chapter(src)


def test_parameters_cell_is_read_with_its_defaults(tiny):
    assert runner.notebook_parameters(tiny.source) == {"scale": "small", "seed": 0, "n": 3, "fail": False}


def test_scale_then_overrides_are_applied_in_order(tiny):
    assert runner.resolve_parameters(tiny, "medium") == {"scale": "medium", "seed": 0, "n": 30, "fail": False}
    got = runner.resolve_parameters(tiny, "paper", {"n": 7, "seed": 2})
    assert got == {"scale": "paper", "seed": 2, "n": 7, "fail": False}


def test_unknown_parameter_is_rejected_by_name(tiny):
    with pytest.raises(runner.ParameterError, match=r"'betta'.*parameters are: scale, seed, n, fail"):
        runner.resolve_parameters(tiny, "small", {"betta": 4})


def test_unknown_parameter_in_a_scale_file_is_rejected(tiny):
    tiny.params_file.write_text("small: {}\nmedium: {n_steps: 5}\npaper: {}\n")
    with pytest.raises(runner.ParameterError, match=r"'n_steps'.*tiny_chapter.yml \[medium\]"):
        runner.resolve_parameters(tiny, "medium")


def test_wrong_type_and_unknown_scale_are_rejected(tiny):
    with pytest.raises(runner.ParameterError, match=r"'n'.*should be an int"):
        runner.resolve_parameters(tiny, "small", {"n": "many"})
    with pytest.raises(runner.ParameterError, match="unknown scale 'huge'"):
        runner.resolve_parameters(tiny, "huge")


def test_cli_values_are_parsed_as_yaml():
    assert runner.parse_cli_value("4") == 4
    assert runner.parse_cli_value("2.5") == 2.5
    assert runner.parse_cli_value("[1, 2]") == [1, 2]
    assert runner.parse_cli_value("cpu") == "cpu"


def test_run_writes_executed_notebook_with_injected_parameters(tiny):
    out = runner.run_chapter(tiny, "medium", {"seed": 5}, progress=False, threads=2)
    assert out == tiny.output() and out.exists()
    nb = json.loads(out.read_text())
    assert nb["metadata"]["papermill"]["parameters"]["n"] == 30
    assert runner.executed_scale(out) == "medium"
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])
    assert "scale=medium n=30" in text
    assert "threads=2" in text                                          # the kernel got the thread count
    shown = [c for c in nb["cells"] if "remove-cell" not in c["metadata"].get("tags", [])]
    assert sum("scale = " in "".join(c["source"]) for c in shown) == 1  # one parameters block: the injected one
    assert "run at scale `medium`" in "".join(shown[1]["source"])


def _executed_notebook(path, scale="medium", injected=True):
    """A notebook shaped like papermill's output (defaults cell, injected cell), made without a kernel."""
    import nbformat

    v4 = nbformat.v4
    cells = [v4.new_markdown_cell("# Title"),
             v4.new_code_cell('scale = "small"\nn = 3', metadata={"tags": ["parameters"]}),
             v4.new_code_cell(f'# Parameters\nscale = "{scale}"\nn = 30\n', metadata={"tags": ["injected-parameters"]}),
             v4.new_code_cell("print(n)")]
    nb = v4.new_notebook(cells=cells if injected else cells[:2] + cells[3:],
                         metadata={"papermill": {"parameters": {"scale": scale, "n": 30}}})
    nbformat.write(nb, str(path))
    return path


def test_present_parameters_hides_the_defaults_and_names_the_scale(tmp_path):
    path = _executed_notebook(tmp_path / "nb.ipynb", scale="large")
    assert runner.present_parameters(path) is True
    cells = json.loads(path.read_text())["cells"]
    tags = [c["metadata"].get("tags", []) for c in cells]
    assert tags == [[], ["parameters", "remove-cell"], [runner.SCALE_NOTE], ["injected-parameters"], []]
    assert "This page was run at scale `large`" in "".join(cells[2]["source"])
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert code == ['scale = "small"\nn = 3', '# Parameters\nscale = "large"\nn = 30\n', "print(n)"]  # sources kept
    before = path.read_text()
    assert runner.present_parameters(path) is True
    assert path.read_text() == before  # a second pass changes nothing (one note, one remove-cell tag)


def test_present_parameters_leaves_a_notebook_without_injected_parameters_alone(tmp_path):
    path = _executed_notebook(tmp_path / "nb.ipynb", injected=False)
    before = path.read_text()
    assert runner.present_parameters(path) is False
    assert path.read_text() == before


def test_the_committed_chapters_show_one_parameters_block_and_their_scale():
    for chapter in runner.chapters(ROOT):
        nb = json.loads(chapter.output(ROOT).read_text())
        shown = [c for c in nb["cells"] if "remove-cell" not in c["metadata"].get("tags", [])]
        params = [c for c in shown if {"parameters", "injected-parameters"} & set(c["metadata"].get("tags", []))]
        assert [c["metadata"]["tags"] for c in params] == [["injected-parameters"]], chapter.name
        note = shown[shown.index(params[0]) - 1]
        assert f"run at scale `{runner.executed_scale(chapter.output(ROOT))}`" in "".join(note["source"]), chapter.name


def test_failed_run_keeps_the_previous_result(tiny):
    out = runner.run_chapter(tiny, "small", progress=False)
    before = out.read_text()
    with pytest.raises(runner.NotebookError, match="asked to fail"):
        runner.run_chapter(tiny, "small", {"fail": True}, progress=False)
    assert out.read_text() == before
    assert out.with_suffix(".failed.ipynb").exists()


def test_a_killed_runs_temporary_notebook_is_removed_by_the_next_run(tiny):
    import os
    import subprocess
    import sys

    folder = tiny.output().parent
    folder.mkdir(parents=True, exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale = folder / f".{tiny.name}.{dead.stdout.strip()}.abc123.ipynb"   # its writer has exited
    legacy = folder / f".{tiny.name}.q8w7e6r5.ipynb"                      # from before pids were recorded
    live = folder / f".{tiny.name}.{os.getpid()}.zzz.ipynb"               # a run still in progress
    other = folder / ".another_chapter.1.x.ipynb"
    for f in (stale, legacy, live, other):
        f.write_text("{}")
    runner.run_chapter(tiny, "small", progress=False)
    assert not stale.exists() and not legacy.exists()
    assert live.exists() and other.exists()
    assert sorted(p.name for p in folder.glob(f".{tiny.name}.*")) == [live.name]   # the run's own file is gone


def test_a_larger_scale_result_is_not_replaced_without_force(tiny):
    runner.run_chapter(tiny, "medium", progress=False)
    with pytest.raises(runner.ParameterError, match="scale 'medium'"):
        runner.run_chapter(tiny, "small", progress=False)
    runner.run_chapter(tiny, "small", force=True, progress=False)
    assert runner.executed_scale(tiny.output()) == "small"


def test_cli_rejects_unknown_parameter_before_running(tiny, capsys):
    code = cli.main(["run", str(tiny.source), "-p", "betta", "4"])
    assert code == 2
    assert "unknown parameter(s) 'betta'" in capsys.readouterr().err
    assert not tiny.output().exists()


def test_cli_dry_run_prints_resolved_parameters(tiny, capsys):
    assert cli.main(["run", str(tiny.source), "--scale", "paper", "-p", "seed", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "n = 300" in out and "seed = 3" in out and "scale = 'paper'" in out
    assert not tiny.output().exists()


def test_cli_rejects_unknown_notebook(capsys):
    assert cli.main(["run", "99_no_such_chapter"]) == 2
    assert "matches no notebook" in capsys.readouterr().err


# The project's own chapters -------------------------------------------------------------------------

CHAPTERS = runner.chapters(ROOT)


def test_there_are_chapters():
    assert len(CHAPTERS) >= 1


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_chapter_scales_are_consistent(chapter):
    defaults = runner.notebook_parameters(chapter.source)
    assert "scale" in defaults and "seed" in defaults, "every chapter takes `scale` and an explicit `seed`"
    table = yaml.safe_load(chapter.params_file.read_text())
    assert set(table) == set(runner.SCALES)
    # The small scale is what CI and nbval run: it must be exactly the notebook's defaults.
    assert {**defaults, **table["small"]} == defaults
    for scale in runner.SCALES:
        assert runner.resolve_parameters(chapter, scale)["scale"] == scale


def test_table_of_contents_lists_every_chapter_and_nothing_else():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert sorted(files) == sorted(f"chapters/{c.name}" for c in CHAPTERS)
    assert (ROOT / "book" / "_toc.yml").resolve() == (ROOT / "_toc.yml").resolve()


def _all_outputs(nb: dict) -> str:
    """Every output of a notebook as text: streams, and the plain, Markdown and HTML forms of displays."""
    parts = []
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            parts.append("".join(o.get("text", "")))
            for kind in ("text/plain", "text/markdown", "text/html"):
                parts.append("".join(o.get("data", {}).get(kind, "")))
    return "\n".join(parts)


@pytest.mark.slow
def test_the_experiment_chapter_runs_several_seeds_and_a_custom_layout(tmp_path):
    """Chapter 05's non-default paths (nbval runs only its defaults): seeds, an ISA layout, exponents."""
    chapter = runner.find_chapter("05")
    out = runner.run_chapter(chapter, "small", {"seeds": [0, 1], "epochs": 1.0, "mig_samples": 200,
                                                "layout": [2, 2, 2, 2, 2], "p": 1.8}, output=tmp_path / "05.ipynb",
                             progress=False)
    text = _all_outputs(json.loads(out.read_text()))
    assert "subspaces [2, 2, 2, 2, 2], $p_0 = 2.1$, $p_i = 1.8$" in text
    assert "a latent of 10" in text and "mig_sem" in text and "<table" in text  # the seeds' tables as HTML
    assert "This page shows one seed" not in text


# Quiet, honest commands ------------------------------------------------------------------------------

ANNOTATED = """# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
scale = "small"
seed = 0
seeds: list[int] | None = None
rate: float | None = None

# %%
print(f"seeds={seeds} rate={rate}")
"""


def test_annotated_parameters_run_without_papermills_unknown_parameter_warning(tmp_path, caplog, capfd):
    """papermill cannot read `name: a | None = ...` and would warn that such a parameter is unknown; the runner
    has checked the names itself and drops that warning for them (and only for them), and the kernel talks
    over IPC, so ipykernel's "running over TCP without encryption" warning is gone too."""
    import logging

    (tmp_path / "notebooks" / "params").mkdir(parents=True)
    src = tmp_path / "notebooks" / "annotated.py"
    src.write_text(ANNOTATED)
    (tmp_path / "notebooks" / "params" / "annotated.yml").write_text(
        "small: {}\nmedium: {seeds: [1, 2]}\nlarge: {}\npaper: {}\n")
    chapter = runner.Chapter(src)
    with caplog.at_level(logging.INFO, logger="papermill"):
        out = runner.run_chapter(chapter, "medium", {"rate": 0.5}, progress=False)
    assert "seeds=[1, 2] rate=0.5" in _all_outputs(json.loads(out.read_text()))
    warned = [r.getMessage() for r in caplog.records if "unknown parameter" in r.getMessage()]
    assert warned == []
    assert "without encryption" not in capfd.readouterr().err


def test_the_warning_filter_drops_only_checked_names():
    import logging

    f = runner._KnownParameters(["seeds"])

    def record(msg):
        return logging.LogRecord("papermill", logging.WARNING, __file__, 1, msg, None, None)

    assert not f.filter(record("Passed unknown parameter: seeds"))
    assert f.filter(record("Passed unknown parameter: betta"))  # a name nobody checked is still reported
    assert f.filter(record("Executing notebook with kernel: python3"))


@pytest.mark.parametrize("scale", runner.SCALES)
def test_dry_run_of_the_experiment_chapter_shows_every_setting_at_every_scale(scale, capsys):
    """`--dry-run` prints the run the chapter would train, not the parameters cell's Nones: every field of
    the RunConfig resolved for the scale (e.g. large: 64 x 64 images, 512 hidden units, 4,320 steps)."""
    from isa_lib import experiments

    assert cli.main(["run", "05", "--scale", scale, "--dry-run"]) == 0
    out = capsys.readouterr().out
    want = experiments.config_for(scale, "dsprites", model="isa_vae")
    for field in ("epochs", "hidden", "image_size", "batch_size", "latent_dim", "layout", "p0", "p",
                  "mig_samples"):
        assert f"#   {field} = {getattr(want, field)!r}" in out, field
    assert f"#   steps = {want.steps!r}" in out
    assert "#   hidden = None" not in out and "#   epochs = None" not in out


def test_dry_run_of_a_scale_a_dataset_lacks_is_a_named_error(capsys):
    assert cli.main(["run", "05", "--scale", "small", "-p", "dataset", "faces3d", "--dry-run"]) == 2
    assert "faces3d has the 'large' (CPU) and 'paper' scales only" in capsys.readouterr().err


def test_dry_run_of_a_chapter_without_a_run_prints_its_parameters_only(tiny, capsys):
    assert cli.main(["run", str(tiny.source), "--dry-run"]) == 0
    assert "config_for" not in capsys.readouterr().out
