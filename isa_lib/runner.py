"""Run the book's chapters: Jupytext notebooks executed with papermill at a named scale.

A chapter is a Jupytext percent-format file ``notebooks/NN_name.py`` with one cell tagged ``parameters``
(plain assignments whose defaults are the ``small`` scale) and a file ``notebooks/params/NN_name.yml`` that
maps each scale (``small``, ``medium``, ``large``, ``paper``) to parameter values. Scales are parameter sets, not code
paths. The executed notebook is written to ``book/chapters/NN_name.ipynb``, where the book picks it up.

papermill injects any parameter name it is given, so a typo (``-p betta 4``) would silently run the
defaults; :func:`resolve_parameters` rejects names the parameters cell does not define, before any kernel
starts.
"""
from __future__ import annotations

import ast
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from ._procs import pid_alive

#: Scales in increasing order of cost; every chapter defines all three.
SCALES = ("small", "medium", "large", "paper")  # ordered: a result is not replaced by a smaller scale's


class ParameterError(ValueError):
    """A parameter name, value or scale that the notebook does not accept."""


class NotebookError(RuntimeError):
    """A notebook failed to execute; the previous executed notebook (if any) is kept."""


def project_root() -> Path:
    """The repository root: ``$ISA_VAE_ROOT``, else the working directory or the package's parent,
    whichever holds ``notebooks/`` and ``_toc.yml``."""
    candidates = [os.environ.get("ISA_VAE_ROOT"), os.getcwd(), Path(__file__).resolve().parents[1]]
    for c in candidates:
        if c and (Path(c) / "notebooks").is_dir() and (Path(c) / "_toc.yml").is_file():
            return Path(c).resolve()
    raise FileNotFoundError(
        "cannot find the isa-vae project root (a folder with notebooks/ and _toc.yml); "
        "run from the repository or set ISA_VAE_ROOT"
    )


@dataclass(frozen=True)
class Chapter:
    """One notebook of the book: its Jupytext source, scale file and executed output."""

    source: Path

    @property
    def name(self) -> str:
        return self.source.stem

    @property
    def params_file(self) -> Path:
        return self.source.parent / "params" / f"{self.name}.yml"

    def output(self, root: Path | None = None) -> Path:
        root = root or self.source.parent.parent
        return root / "book" / "chapters" / f"{self.name}.ipynb"


def chapters(root: Path | None = None) -> list[Chapter]:
    """All chapters, in file-name order (which is book order)."""
    root = root or project_root()
    return [Chapter(p) for p in sorted((root / "notebooks").glob("[0-9]*.py"))]


def find_chapter(name: str, root: Path | None = None) -> Chapter:
    """A chapter by path, full name (``03_lp_nested_theory``) or unique prefix (``03``)."""
    p = Path(name)
    if p.suffix == ".py" and p.is_file():
        return Chapter(p.resolve())
    known = chapters(root)
    exact = [c for c in known if c.name == p.stem]
    matches = exact or [c for c in known if c.name.startswith(p.stem)]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(c.name for c in known) or "(none)"
    what = "is ambiguous" if matches else "matches no notebook"
    raise ParameterError(f"notebook {name!r} {what}; known notebooks: {names}")


def read_notebook(path: Path):
    """The notebook object of a Jupytext source (papermill reads only .ipynb, but accepts objects)."""
    import jupytext

    return jupytext.read(path)


def notebook_parameter_specs(path: Path) -> dict[str, tuple[Any, ast.expr | None]]:
    """Each parameter of the cell tagged ``parameters``: its default and its annotation (``name: type =
    literal``; a parameter whose default is None must be annotated, e.g. ``seeds: list[int] | None = None``)."""
    nb = read_notebook(path)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    params: dict[str, tuple[Any, ast.expr | None]] = {}
    for node in ast.parse(cells[0].source).body:
        plain = isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        annotated = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None
        if not (plain or annotated):
            raise ParameterError(
                f"{path}: the parameters cell may hold only 'name = literal' or 'name: type = literal' lines, "
                f"found {ast.unparse(node)!r}"
            )
        name = node.targets[0].id if plain else node.target.id
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise ParameterError(
                f"{path}: parameter {name!r} must have a literal default, not {ast.unparse(node.value)!r}"
            ) from None
        annotation = None if plain else node.annotation
        if annotation is not None:
            _check_annotation(path, name, annotation)
            if not _accepts(annotation, default):
                raise ParameterError(f"{path}: parameter {name!r}: default {default!r} is not a "
                                     f"{ast.unparse(annotation)}")
        elif default is None:
            raise ParameterError(f"{path}: parameter {name!r} defaults to None: give its type, e.g. "
                                 f"'{name}: int | None = None'")
        params[name] = (default, annotation)
    return params


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and default values of the cell tagged ``parameters`` (literal assignments only)."""
    return {name: default for name, (default, _) in notebook_parameter_specs(path).items()}


_TYPES = {"int", "float", "str", "bool", "list", "dict"}


def _check_annotation(path, name: str, node: ast.expr) -> None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        _check_annotation(path, name, node.left)
        _check_annotation(path, name, node.right)
    elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "list":
        _check_annotation(path, name, node.slice)
    elif not ((isinstance(node, ast.Name) and node.id in _TYPES)
              or (isinstance(node, ast.Constant) and node.value is None)):
        raise ParameterError(f"{path}: parameter {name!r}: annotation {ast.unparse(node)!r} is not one of "
                             f"{', '.join(sorted(_TYPES))}, None, list[...] or a union of them with |")


def _accepts(node: ast.expr, value: Any) -> bool:
    """Whether ``value`` is of the annotated type (int is not float's bool; float takes finite ints too)."""
    if isinstance(node, ast.BinOp):
        return _accepts(node.left, value) or _accepts(node.right, value)
    if isinstance(node, ast.Constant):
        return value is None
    if isinstance(node, ast.Subscript):
        return isinstance(value, list) and all(_accepts(node.slice, v) for v in value)
    kind = node.id
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, {"str": str, "list": list, "dict": dict}[kind])


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _annotation_of(default: Any) -> ast.expr:
    """The type an unannotated parameter has: its default's (a float default also takes ints)."""
    kind = "bool" if isinstance(default, bool) else type(default).__name__
    return ast.Name(kind if kind in _TYPES else "str")


def scale_parameters(chapter: Chapter, scale: str) -> dict[str, Any]:
    """The values a scale sets, from ``notebooks/params/<name>.yml``."""
    if scale not in SCALES:
        raise ParameterError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    if not chapter.params_file.is_file():
        raise ParameterError(f"{chapter.name}: scale file {chapter.params_file} is missing")
    table = yaml.safe_load(chapter.params_file.read_text()) or {}
    if not isinstance(table, dict) or scale not in table:
        raise ParameterError(f"{chapter.params_file}: no entry for scale {scale!r}")
    return dict(table[scale] or {})


def resolve_parameters(
    chapter: Chapter, scale: str = "small", overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, then the scale's values, then the user's overrides; unknown names are an error.

    Only the values that differ from the notebook's defaults need injecting, but the whole set is
    returned so that the executed notebook records exactly what it ran with.
    """
    specs = notebook_parameter_specs(chapter.source)
    defaults = {name: default for name, (default, _) in specs.items()}
    resolved = dict(defaults)
    for origin, values in ((f"scale file {chapter.params_file.name} [{scale}]", scale_parameters(chapter, scale)),
                           ("the command line", dict(overrides or {}))):
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            raise ParameterError(
                f"{chapter.name}: unknown parameter(s) {', '.join(map(repr, unknown))} from {origin}; "
                f"the notebook's parameters are: {', '.join(defaults)}"
            )
        for name, value in values.items():
            default, annotation = specs[name]
            want = annotation if annotation is not None else _annotation_of(default)
            if not _accepts(want, value):
                raise ParameterError(
                    f"{chapter.name}: parameter {name!r} from {origin} should be {_a(ast.unparse(want))} "
                    f"(finite, if a number; default {default!r}), got {value!r}"
                )
            resolved[name] = value
    if "scale" in defaults:
        resolved["scale"] = scale
    return resolved


#: Parameters that make a chapter an experiment chapter (chapter 05): they name the run it trains.
RUN_PARAMETERS = ("scale", "dataset", "model")


def run_settings(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run an experiment chapter trains with these (resolved) parameters, every field filled in: what
    :func:`isa_lib.experiments.config_for` makes of them, as the notebook builds it (a parameter left at None
    takes the scale's value: Tables 1-2 at ``paper``, the CPU scales of :func:`~isa_lib.experiments.scale_defaults`
    otherwise). None for a chapter whose parameters do not name a run (no ``scale``, ``dataset`` and ``model``).
    The parameters' values are not otherwise checked here (the notebook's own call does that)."""
    if not all(name in params for name in RUN_PARAMETERS):
        return None
    import dataclasses

    from . import experiments

    fields = {f.name for f in dataclasses.fields(experiments.RunConfig)} - {"dataset"}
    given = {k: v for k, v in params.items() if k in fields}
    config = experiments.config_for(params["scale"], params["dataset"], **given)
    settings = dataclasses.asdict(config)
    settings.update(n_images=config.n_images, steps=config.steps)
    return settings


def parse_cli_value(text: str, name: str = "") -> Any:
    """A ``-p name value`` value as YAML (``4`` -> int, ``[1, 2]`` -> list, ``cpu`` -> str)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = f" for parameter {name!r}" if name else ""
        raise ParameterError(f"value {text!r}{where} is not valid YAML ({str(err).splitlines()[0]})") from None


def executed_scale(path: Path) -> str | None:
    """The scale an executed notebook was run at (from papermill's metadata); None if it is missing."""
    try:
        meta = json.loads(Path(path).read_text())["metadata"]
        return meta.get("papermill", {}).get("parameters", {}).get("scale")
    except (OSError, ValueError, KeyError):
        return None


SCALE_NOTE = "run-scale"  # tag (and id) of the markdown cell that :func:`present_parameters` writes


def present_parameters(path: Path) -> bool:
    """Show readers one parameters block in an executed notebook: tag the defaults cell ``remove-cell``
    (Jupyter Book drops it) and put before papermill's injected cell a sentence naming the scale the notebook
    was run at. Cell metadata and that one markdown cell only; nothing is re-run. Repeatable; does nothing
    and returns False when papermill injected no parameters."""
    import nbformat

    def tagged(cell, tag):
        return tag in cell.metadata.get("tags", [])

    nb = nbformat.read(str(path), as_version=4)
    if not any(tagged(c, "injected-parameters") for c in nb.cells):
        return False
    for cell in nb.cells:
        if tagged(cell, "parameters") and not tagged(cell, "remove-cell"):
            cell.metadata["tags"] = list(cell.metadata.get("tags", [])) + ["remove-cell"]
    nb.cells = [c for c in nb.cells if not tagged(c, SCALE_NOTE)]
    scale = nb.metadata.get("papermill", {}).get("parameters", {}).get("scale")
    if scale is not None:
        note = nbformat.v4.new_markdown_cell(
            f"This page was run at scale `{scale}`, with the parameters below (papermill put them in place of "
            "the notebook's defaults).", metadata={"tags": [SCALE_NOTE]})
        if nb.nbformat_minor >= 5:
            note["id"] = SCALE_NOTE  # fixed, so that a repeated call writes the same file
        else:
            note.pop("id", None)  # cell ids came with nbformat 4.5
        at = next(i for i, c in enumerate(nb.cells) if tagged(c, "injected-parameters"))
        nb.cells.insert(at, note)
    nbformat.write(nb, str(path))
    return True


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Delete the temporary notebooks ``.<name>.<pid>.*.ipynb`` that a killed chapter run left in ``folder``
    (its process is gone); a run still in progress, whose process is alive, keeps its file. Returns what was
    deleted."""
    removed = []
    for path in Path(folder).glob(f".{name}.*.ipynb"):
        pid = path.name[len(name) + 2:].split(".", 1)[0]
        if pid.isdigit() and pid_alive(int(pid)):
            continue
        path.unlink(missing_ok=True)  # a dead writer's, or one from before pids were recorded
        removed.append(path)
    return removed


class _KnownParameters:
    """A :mod:`logging` filter for papermill's logger that drops its "Passed unknown parameter: NAME" warning
    for names :func:`resolve_parameters` has already checked against the parameters cell: papermill's own
    reading of that cell skips annotated lines such as ``seeds: list[int] | None = None`` (its pattern has no
    ``|``), so it calls every such parameter unknown although the notebook defines it."""

    PREFIX = "Passed unknown parameter: "

    def __init__(self, known):
        self.known = set(known)

    def filter(self, record) -> bool:
        message = record.getMessage()
        return not (message.startswith(self.PREFIX) and message[len(self.PREFIX):].strip() in self.known)


def _ipc_kernel_manager():
    """A kernel manager class whose kernel talks over local IPC sockets instead of TCP on 127.0.0.1: the
    kernel is on this machine anyway, and ipykernel then has no reason to warn "Kernel is running over TCP
    without encryption". Falls back to TCP (None) where Unix sockets are missing (Windows)."""
    if os.name != "posix":
        return None
    from jupyter_client import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            from jupyter_core.paths import jupyter_runtime_dir

            runtime = jupyter_runtime_dir()
            os.makedirs(runtime, exist_ok=True)
            self.transport = "ipc"
            # the socket files are "<ip>-<port>"; jupyter_client deletes them when the kernel is shut down
            self.ip = os.path.join(runtime, f"isa-vae-{os.getpid()}-{id(self):x}")

    return IPCKernelManager


def run_chapter(
    chapter: Chapter,
    scale: str = "small",
    overrides: Mapping[str, Any] | None = None,
    output: Path | None = None,
    force: bool = False,
    progress: bool = True,
    threads: int | None = None,
) -> Path:
    """Execute a chapter with papermill and write the executed ``.ipynb`` (book/chapters/ by default).

    The notebook runs in its own folder (as under nbval). It is executed into a temporary file that
    replaces the output only on success, so a failure never destroys an earlier result; the failed
    notebook is kept beside it as ``<name>.failed.ipynb`` for inspection; the temporary files of killed
    runs are deleted at the next run (:func:`remove_stale_temporaries`). Unless ``force``, a result
    made at a larger scale is not overwritten by a smaller one. The page shows one parameters block, the
    injected one, and names its scale (:func:`present_parameters`). The kernel uses ``threads`` torch threads
    (default :func:`isa_lib.threads.choose`: one, so that a seed repeats its numbers); ``progress`` shows
    papermill's bar (cells done, elapsed, remaining).
    """
    import papermill

    from . import threads as _threads

    params = resolve_parameters(chapter, scale, overrides)
    output = Path(output) if output else chapter.output()
    previous = executed_scale(output)
    if (not force and previous in SCALES and scale in SCALES
            and SCALES.index(previous) > SCALES.index(scale)):
        raise ParameterError(
            f"{output} holds a run at scale {previous!r}; refusing to replace it with scale {scale!r} "
            "(use --force to replace it)"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output.parent, chapter.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{chapter.name}.{os.getpid()}.", suffix=".ipynb", dir=output.parent)
    os.close(fd)
    # A non-interactive MPLBACKEND (e.g. Agg) inherited by the kernel would stop figures reaching the
    # notebook; the kernel's inline backend is wanted here.
    saved_backend = os.environ.pop("MPLBACKEND", None)
    quiet = _KnownParameters(params)
    papermill_log = logging.getLogger("papermill")
    papermill_log.addFilter(quiet)
    manager = _ipc_kernel_manager()
    try:
        with _threads.for_children(_threads.choose(scale, threads)):
            papermill.execute_notebook(
                read_notebook(chapter.source),
                tmp,
                parameters=params,
                kernel_name="python3",
                cwd=str(chapter.source.parent),
                progress_bar=progress,
                **({"kernel_manager_class": manager} if manager is not None else {}),
            )
    except Exception as err:
        failed = output.with_suffix(".failed.ipynb")
        os.replace(tmp, failed)
        raise NotebookError(
            f"{chapter.name} failed at scale {scale!r}: {err}\n(executed notebook kept in {failed})"
        ) from err
    finally:
        papermill_log.removeFilter(quiet)
        if saved_backend is not None:
            os.environ["MPLBACKEND"] = saved_backend
    present_parameters(Path(tmp))
    os.replace(tmp, output)
    output.with_suffix(".failed.ipynb").unlink(missing_ok=True)
    return output


def jupyter_book_command() -> list[str]:
    """The ``jupyter-book`` of this Python environment (next to the interpreter), else from PATH."""
    local = Path(sys.executable).parent / "jupyter-book"
    exe = str(local) if local.exists() else shutil.which("jupyter-book")
    if exe is None:
        raise FileNotFoundError("jupyter-book is not installed; pip install -e '.[book]'")
    return [exe]


def build_book(root: Path | None = None, output_dir: Path | None = None, quiet: bool = False,
               strict: bool = False) -> Path:
    """``jupyter-book build book/`` (stored outputs only; ``execute_notebooks: off``). Returns index.html.

    Jupyter Book 1.x writes next to the ``_config.yml`` it found, i.e. ``<root>/_build/html``. ``strict``
    turns every Sphinx warning (a broken reference, bad math, a missing page) into an error.
    """
    root = root or project_root()
    cmd = jupyter_book_command() + ["build", str(root / "book")]
    if output_dir is not None:
        cmd += ["--path-output", str(output_dir)]
    if quiet:
        cmd += ["--quiet"]
    if strict:
        cmd += ["--all", "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True, cwd=root)
    return Path(output_dir or root) / "_build" / "html" / "index.html"
