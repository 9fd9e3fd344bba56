"""Running and scoring: the data of a run, its model and training configuration, :func:`run_group` (runs
that differ only in seed and beta, fused when possible) and :func:`run_one` (Sec. 4).

Reduced image sizes are made by averaging pixel blocks (dSprites stays exact: a block's pixel count, stored
as uint8, with ``max_value`` the block area), so the reconstruction term is then in nats per reduced image.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import platform
import subprocess
import time
import traceback
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .config import RunConfig

_DATA_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()


def _reduce_images(ds, size: int):
    """A copy of ``ds`` with images averaged over (64/size)^2 blocks (binary images stay exact)."""
    import torch
    import torch.nn.functional as F
    from ..datasets import GroundTruthDataset

    images = ds.images
    if images.shape[-1] == size:
        return ds
    f = images.shape[-1] // size
    exact = ds.max_value == 1 and f * f <= 255
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for s in range(0, images.shape[0], 8192):  # chunks: the full dSprites set would be 12 GB as floats
        block = F.avg_pool2d(images[s:s + 8192].float(), f)
        out[s:s + 8192] = torch.round(block * (f * f) if exact else block * (255.0 / ds.max_value)).to(torch.uint8)
    return GroundTruthDataset(ds.name, out, ds.factor_names, ds.factor_sizes, ds.factor_values,
                              max_value=float(f * f) if exact else 255.0, source=f"{ds.source}@{size}px")


def load_data(config: RunConfig, cache=None):
    """The run's dataset (sub-grid, reduced image size), kept in a small per-process cache so a worker
    that runs several groups does not rebuild it."""
    from .. import datasets

    key = (config.dataset, config.subgrid, config.image_size, config.data_version,
           None if cache is None else str(cache))
    if key in _DATA_CACHE:
        _DATA_CACHE.move_to_end(key)
        return _DATA_CACHE[key]
    ds = datasets.load(config.dataset, subgrid=config.subgrid_dict(), seed=0, cache=cache,
                       version=config.data_version)
    ds = _reduce_images(ds, config.image_size)
    _DATA_CACHE[key] = ds
    while len(_DATA_CACHE) > 2:
        _DATA_CACHE.popitem(last=False)
    return ds


# ---------------------------------------------------------------------------------------------- runs
def _train_config(c: RunConfig, n_images: int):
    from ..train import TrainConfig

    spec = c.spec
    # About 100 logged points per run, whatever its length: enough for the notebook's curves.
    log_every = max(1, c.steps // 100)
    return TrainConfig(objective=spec.objective, beta=c.beta if spec.objective != "factor_vae" else 1.0,
                       gamma=c.beta if spec.objective == "factor_vae" else 10.0,
                       estimator=c.estimator or "mss", epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                       disc_hidden=c.disc_hidden or 1000, seed=c.seed, device=c.device, amp=c.amp,
                       log_every=log_every, beta_warmup_steps=c.beta_warmup_steps, aggregate=c.aggregate)


def build_model(c: RunConfig, channels: int = 1):
    """The VAE of a configuration; its weights depend only on ``c.seed``."""
    from ..train import build_vae

    spec = c.spec
    net = {"hidden": c.hidden, "image_size": c.image_size} if c.architecture == "mlp" else None
    kw = {}
    if spec.prior == "isa":
        kw = dict(sizes=list(c.layout), p0=c.p0, exponents=c.p_init if spec.learn else c.p, learn=spec.learn)
    return build_vae(c.architecture, c.latent_dim, prior=spec.prior, seed=c.seed, channels=channels,
                     net_size=net, **kw)


def _jsonable(x):
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None  # JSON has no NaN; None says "not a number"
    if hasattr(x, "item") and callable(x.item):
        return _jsonable(x.item())
    return x


def evaluate(model, data, c: RunConfig, history: list[dict]) -> dict:
    """The paper's numbers for a trained model (Sec. 4): Chen MIG (and per factor), E_q[log p(x|z)] in nats
    per image, the last logged loss terms, and the exponents of a learned-exponent model."""
    import torch
    from ..metrics import evaluate_model

    model.eval()
    t, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        res = evaluate_model(model.encoder, data, decode=model.decoder, n_samples=c.mig_samples, seed=c.seed,
                             device=c.device, batch_size=1024, mig_dtype=getattr(torch, c.mig_dtype))
    names = [data.factor_names[k] for k in res["mig_factors"]]
    bad = [k for k in ("mig", "reconstruction") if not math.isfinite(float(res[k]))]
    if bad:  # stored as 'done' it would read as a missing number; it is a failed run
        raise ValueError(f"run {c.short()}: the evaluation gave a non-finite {' and '.join(bad)} "
                         f"({', '.join(f'{k}={float(res[k])}' for k in bad)})")
    out = {"mig": float(res["mig"]),
           "mig_per_factor": dict(zip(names, np.asarray(res["mig_per_factor"], dtype=float).tolist())),
           "reconstruction": float(res["reconstruction"]),
           "final": dict(history[-1]) if history else {},
           "history": history,
           "n_images": len(data), "steps": c.steps, "mig_dtype": res["mig_dtype"],
           "mig_backend": res["mig_backend"]}
    if c.budget_fraction != 1.0:  # a prefix of its lineage's training: where it stopped
        out.update(budget_fraction=c.budget_fraction, train_steps=c.train_steps, images_seen=c.images_seen)
    if c.spec.prior == "isa":
        exps = model.prior.exponents.detach().cpu().double().numpy()
        out["exponents"] = exps.tolist()
        out["exponents_sorted"] = np.sort(exps).tolist()
    out["eval_s"] = time.perf_counter() - t
    out["eval_cpu_s"] = time.process_time() - cpu
    return _jsonable(out)


def checkpoint_folder(ledger_path) -> Path:
    """The folder where a sweep on this ledger keeps its training checkpoints: ``<ledger>.checkpoints``."""
    return Path(str(ledger_path) + ".checkpoints")


def checkpoint_path(folder, configs: Sequence[RunConfig], fused: bool) -> Path:
    """Where the training of ``configs`` (one fused call, or one run alone) keeps its checkpoint: a name
    made from the hashes of the runs' lineages (:meth:`RunConfig.lineage`), so a resumed sweep that forms
    the same group finds it, and a run at a larger ``budget_fraction`` continues the training of a smaller one."""
    key = hashlib.sha1("|".join(sorted(c.lineage().config_hash() for c in configs)).encode()).hexdigest()[:16]
    return Path(folder) / f"{key}.{'fused' if fused else 'alone'}.pt"


def finished_checkpoints(ledger_path):
    """(config, metrics, checkpoint) of each finished run of a ledger, in the order they finished, whose own
    lineage's checkpoint is still there at the run's step (the sweep keeps it until the lineage's whole
    budget is done): a trained model to re-score without training it again.  Reads the ledger read-only."""
    import json
    import sqlite3

    from ..train import load_checkpoint

    folder = checkpoint_folder(ledger_path)
    con = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    try:
        rows = con.execute("select config, metrics from runs where status = 'done' order by finished").fetchall()
    finally:
        con.close()
    for cfg, met in rows:
        c = RunConfig.from_dict(json.loads(cfg))
        path = checkpoint_path(folder, [c.lineage()], False)
        if path.exists():
            state = load_checkpoint(path, "cpu")
            if state.get("step") == c.train_steps:
                yield c, json.loads(met), state


def note_checkpoint(path: Path, configs: Sequence[RunConfig]) -> None:
    """Write ``<checkpoint>.runs`` (the hashes of the runs' lineages, :meth:`RunConfig.lineage`) beside a
    checkpoint, for :func:`remove_checkpoints`: it is kept until the runs at the whole budget are finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".runs").write_text("\n".join(c.lineage().config_hash() for c in configs) + "\n")


def remove_checkpoints(folder, finished: set[str]) -> int:
    """Delete the checkpoints in ``folder`` whose runs are all in ``finished`` (their results are stored);
    returns how many were deleted."""
    n = 0
    for note in Path(folder).glob("*.runs") if Path(folder).is_dir() else []:
        try:
            hashes = set(note.read_text().split())
        except OSError:
            continue
        if hashes <= finished:
            note.with_suffix(".pt").unlink(missing_ok=True)
            note.unlink(missing_ok=True)
            n += 1
    return n


def checkpoint_interval(c: RunConfig, fraction: float = 0.1) -> int:
    """Steps between a sweep run's checkpoints: a kill loses at most ``fraction`` of its training."""
    return max(1, math.ceil(c.steps * fraction))


def _train_models(configs: list[RunConfig], data, fused: bool, max_steps: int | None = None,
                  checkpoint_dir=None):
    """Build and train the models of a group: one train_many call, or train per run. With
    ``checkpoint_dir``, training checkpoints every :func:`checkpoint_interval` steps and resumes from an
    existing checkpoint exactly (same numbers as uninterrupted training)."""
    from ..train import train, train_many

    channels = data.images.shape[1]
    models = [build_model(c, channels) for c in configs]
    cfgs = [_train_config(c, len(data)) for c in configs]
    stops = {c.train_steps for c in configs}
    if len(stops) != 1:
        raise ValueError(f"runs trained together must stop at one step, got {sorted(stops)}")
    stop = stops.pop()
    max_steps = stop if max_steps is None else min(stop, max_steps)
    if checkpoint_dir is not None:
        every = min(checkpoint_interval(c) for c in configs)
        cfgs = [dataclasses.replace(cfg, checkpoint_every=every) for cfg in cfgs]
    kw = dict(progress=False, max_value=data.max_value, max_steps=max_steps)

    def ckpt(members: list[RunConfig], together: bool) -> Path | None:
        if checkpoint_dir is None:
            return None
        path = checkpoint_path(checkpoint_dir, members, together)
        note_checkpoint(path, members)
        return path

    if fused and len(configs) > 1:
        path = ckpt(configs, True)
        hists = _resuming(lambda p: train_many(models, data.images, cfgs, checkpoint=p, **kw), path)
    else:
        hists = []
        for m, cfg, c in zip(models, cfgs, configs):
            path = ckpt([c], False)
            hists.append(_resuming(lambda p: train(m, data.images, cfg, checkpoint=p, **kw), path))
    return models, hists


class CheckpointDiscardedWarning(UserWarning):
    """A sweep's training checkpoint could not be resumed (not a checkpoint file, another model's, a step beyond
    the run's end, ...): it was discarded and the training started afresh. The message names the file and why."""


def discard_checkpoint(ckpt: Path, why: BaseException) -> bool:
    """Put a checkpoint that cannot be resumed out of the way, with a :class:`CheckpointDiscardedWarning`: a file
    (or link) is deleted; anything else at its path (a directory) is moved aside to ``<name>.discarded-<time>``,
    its contents kept. Returns False if the path could not be cleared (then train without checkpoints)."""
    p = Path(ckpt)
    try:
        if p.is_dir() and not p.is_symlink():
            aside = p.with_name(f"{p.name}.discarded-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            os.replace(p, aside)
            where = f"moved aside to {aside}"
        else:
            p.unlink(missing_ok=True)
            where = "deleted"
        ok = True
    except OSError as err:
        where, ok = f"could not be removed ({err}); this run trains without checkpoints", False
    warnings.warn(f"checkpoint discarded ({where}), training starts afresh: {why}", CheckpointDiscardedWarning,
                  stacklevel=3)
    return ok


def _resuming(fit: Callable, ckpt: Path | None):
    """``fit(ckpt)``; a checkpoint it cannot resume (not a checkpoint file, a list or a mapping without its
    parts, written by other code, settings or another model, a step beyond the run's end) is discarded with a
    :class:`CheckpointDiscardedWarning` (:func:`discard_checkpoint`) and the training starts afresh, which
    gives the same numbers as an uninterrupted run: nothing of the refused file reaches the model (the trainer
    checks it whole before restoring any part). A checkpoint already past the run's stop but within its
    lineage (e.g. a 1/8 run retried after the 1/4 run) is kept for the lineage, and this run trains from the
    start without checkpoints."""
    from ..train import CheckpointAheadError, CheckpointError

    try:
        return fit(ckpt)
    except CheckpointAheadError:
        return fit(None)
    except CheckpointError as err:
        if ckpt is None:
            raise
        return fit(ckpt if discard_checkpoint(ckpt, err) else None)


@dataclasses.dataclass(frozen=True)
class TaskTiming:
    """What a task of a group costs (:func:`task_timing`): ``setup_s`` once per task (building the models,
    moving the images to the device), ``step_s`` per optimiser step of the group, and ``eval_s`` per run
    scored (None when not measured)."""
    setup_s: float
    step_s: float
    eval_s: float | None = None

    def predict(self, steps: int, runs: int) -> float:
        """Seconds a task of ``runs`` runs trained for ``steps`` steps and then scored should take."""
        return self.setup_s + self.step_s * steps + (self.eval_s or 0.0) * runs


def task_timing(configs: Sequence[RunConfig], steps: int = 10, cache=None, score: bool = False) -> TaskTiming:
    """The cost of training a group as :func:`run_group` would (fused when it can), nothing recorded: after
    a one-step warm-up (allocations, kernel selection), ``steps`` and ``2 * steps`` steps are timed, so
    that the per-step time is their difference and the rest of a call (the models built, the images moved to
    the device: seconds at paper scale, every task) is ``setup_s``, paid once and not multiplied by a run's
    thousands of steps. ``score``: also time one evaluation (:func:`evaluate`, the paper's numbers) of the
    first run's model, the cost a task adds per run after training. A sweep with a time budget predicts a
    task's duration with it before starting the task (:meth:`TaskTiming.predict`)."""
    import torch

    configs = list(configs)
    if len({c.fuse_key() for c in configs}) != 1:
        raise ValueError("task_timing needs configurations that differ only in seed and beta")
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    data = load_data(configs[0], cache)
    fused = configs[0].fusable and len(configs) > 1
    device = torch.device(configs[0].device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(n):
        sync()
        t = time.perf_counter()
        models, _ = _train_models(configs, data, fused, max_steps=n)
        sync()
        return time.perf_counter() - t, models

    timed(1)                                               # warm-up: the first allocations and transfer
    t1, _ = timed(steps)
    t2, models = timed(2 * steps)
    step_s = max(t2 - t1, 0.0) / steps                     # one step of the group: every run advanced by one
    setup_s = max(t1 - step_s * steps, 0.0)
    eval_s = None
    if score:
        sync()
        t = time.perf_counter()
        evaluate(models[0], data, configs[0], [])
        sync()
        eval_s = time.perf_counter() - t
    return TaskTiming(setup_s, step_s, eval_s)


def seconds_per_step(configs: Sequence[RunConfig], steps: int = 10, cache=None) -> float:
    """Wall-clock seconds per optimiser step of a group trained as :func:`run_group` would (fused when it
    can), the setup of a call left out (:func:`task_timing`'s ``step_s``); nothing is recorded."""
    return task_timing(configs, steps, cache).step_s


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}\n\n{''.join(traceback.format_exception(err))}"


def _matmul_precision() -> str:
    """torch's float32 matmul precision ('highest'; 'high' allows TF32 on a GPU), recorded with each run."""
    import torch

    return torch.get_float32_matmul_precision()


def _train_and_score(configs: list[RunConfig], idx: list[int], data, fused: bool, load_s: float,
                     finish: Callable, checkpoint_dir=None) -> None:
    """Train the runs ``idx`` of a group (one fused call, or alone) and score each; ``finish(i, status, ...)``
    records run i's outcome. A failure of training itself is raised to the caller, one of scoring is recorded."""
    # wall seconds, and the process's CPU seconds (what a shared machine inflates less: the evaluation's share
    # of a run is compared in both)
    t, cpu = time.perf_counter(), time.process_time()
    models, hists = _train_models([configs[i] for i in idx], data, fused, checkpoint_dir=checkpoint_dir)
    train_s, train_cpu_s = time.perf_counter() - t, time.process_time() - cpu
    for j, i in enumerate(idx):
        try:
            m = evaluate(models[j], data, configs[i], hists[j])
            m["timings"] = {"load_s": load_s, "train_s": train_s, "train_s_per_run": train_s / len(idx),
                            "train_cpu_s": train_cpu_s, "eval_s": m.pop("eval_s"),
                            "eval_cpu_s": m.pop("eval_cpu_s"), "fused": len(idx),
                            "float32_matmul": _matmul_precision()}
            m["versions"] = versions()
            finish(i, "done", metrics=m, model=models[j], data=data)
        except Exception as err:  # noqa: BLE001
            finish(i, "failed", error=_error_text(err))


def run_group(configs: Sequence[RunConfig], on_result: Callable[[dict], None] | None = None, cache=None,
              return_models: bool = False, checkpoint_dir=None) -> list[dict]:
    """Train and score runs that differ only in seed and beta, fused into one :func:`train_many` call
    when possible (MLP, not FactorVAE); otherwise one :func:`train` per run. Runs whose ``fused`` field is
    K > 1 (planned by a sweep, :func:`isa_lib.experiments.sweeps.assign_fusion`) must come as their whole group
    of K; runs with ``fused`` 1 given together are fused here too (their hashes then do not say so: a sweep
    never does this, it trains such runs one per call).

    Returns one outcome per configuration, in order: ``{"config_hash", "status": "done"|"failed",
    "metrics", "error", "duration"}`` (plus ``model`` and ``data`` with ``return_models``).
    ``on_result(outcome)`` is called as soon as each run is finished. If a fused training fails (say one
    beta diverges), every run of the group is retrained on its own, so only the failing one is lost.
    With ``checkpoint_dir``, training checkpoints there and resumes from what it finds
    (:func:`checkpoint_path`); the caller deletes the files once the outcomes are stored.
    """
    configs = list(configs)
    if not configs:
        return []
    keys = {c.fuse_key() for c in configs}
    if len(keys) != 1:
        raise ValueError("run_group needs configurations that differ only in seed and beta; use plan_groups")
    planned = configs[0].fused
    if planned > 1 and planned != len(configs):
        raise ValueError(f"run_group: runs planned for a fused group of {planned} (their fused field, part of their "
                         f"hash) were given {len(configs)} at a time; train the whole group")
    t0 = time.perf_counter()
    outcomes: list[dict | None] = [None] * len(configs)

    def finish(i: int, status: str, metrics=None, error=None, model=None, data=None):
        o = {"config_hash": configs[i].config_hash(), "status": status, "metrics": metrics, "error": error,
             "duration": time.perf_counter() - t0}
        if return_models:
            o.update(model=model, data=data)
        outcomes[i] = o
        if on_result is not None:
            on_result({k: v for k, v in o.items() if k not in ("model", "data")})

    try:
        t = time.perf_counter()
        data = load_data(configs[0], cache)
        load_s = time.perf_counter() - t
    except Exception as err:  # noqa: BLE001 - a run's failure is data for the ledger
        for i in range(len(configs)):
            finish(i, "failed", error=_error_text(err))
        return outcomes

    idx = list(range(len(configs)))
    fused = configs[0].fusable and len(configs) > 1
    if fused:
        try:
            _train_and_score(configs, idx, data, True, load_s, finish, checkpoint_dir)
            return outcomes
        except Exception:  # noqa: BLE001 - retry one by one below so that only the culprit fails
            pass
    for i in idx:
        if outcomes[i] is not None:
            continue
        try:
            _train_and_score(configs, [i], data, False, load_s, finish, checkpoint_dir)
        except Exception as err:  # noqa: BLE001
            finish(i, "failed", error=_error_text(err))
    return outcomes


def run_one(config: RunConfig, return_model: bool = False, cache=None):
    """Train and score one configuration; returns its metrics (JSON-able dict), or with ``return_model``
    ``(metrics, model, dataset)`` for the experiment notebook's plots. Raises if the run fails."""
    (o,) = run_group([config], cache=cache, return_models=True)
    if o["status"] != "done":
        raise RuntimeError(f"run {config.short()} failed: {o['error']}")
    return (o["metrics"], o["model"], o["data"]) if return_model else o["metrics"]


def _git_commit(package: Path | None = None) -> str | None:
    """The commit of the checkout holding ``package`` (default: isa_lib), with "+dirty" when tracked files of
    ``package`` have uncommitted changes; None outside a git checkout."""
    package = Path(package) if package is not None else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True, timeout=5)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                               cwd=package, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


#: The commit of the code this process imported, read once at import: a sweep's worker keeps the code it
#: imported while the checkout moves on, so reading HEAD when a row is written (as rows before this did)
#: can name a later commit than the one that trained the run.
IMPORTED_COMMIT = _git_commit()


def versions() -> dict:
    """python, torch, isa_lib versions and the git commit of the code this process imported
    (:data:`IMPORTED_COMMIT`; "+dirty" when isa_lib had uncommitted changes)."""
    import torch
    from .. import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "isa_lib": __version__,
            "git_commit": IMPORTED_COMMIT}
