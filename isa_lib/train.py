"""Training a VAE with any prior and objective (Sec. 4, App. A.3-A.4: Adam, lr 1e-3, batch 2048).

The trainer knows nothing of the prior or the objective: the model's prior module hands out a distribution
and the objective turns one minibatch into a loss and named terms. The whole data set stays on the
training device; one ``torch.Generator`` seeded from ``seed`` drives the data order and the
reparameterisation noise, so a seed gives the same numbers on a CPU, and a checkpoint (model, optimiser,
generator state, step) resumes exactly where the run stopped.
"""
from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import objectives as O
from .datasets._base import ImageRangeError
from .nets import VAE, Discriminator, make_networks
from .priors import make_prior


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: not plain tensors and numbers, or another configuration's."""


class CheckpointAheadError(CheckpointError):
    """A checkpoint of this run that is already past the step the caller asked to stop at: training cannot
    go back, so the caller trains afresh (and keeps the checkpoint for the longer run)."""


class TrainingError(RuntimeError):
    """Training produced a non-finite loss, term or gradient; names the step and the term."""


@dataclass
class TrainConfig:
    """Hyperparameters of one run (defaults: Table 1 of the paper, except the number of epochs)."""

    objective: str = "beta_vae"  # vae, beta_vae, beta_tcvae, factor_vae
    beta: float = 1.0
    gamma: float = 10.0  # FactorVAE's TC weight
    estimator: str = "mss"  # beta-TCVAE: "mss" or "mws"
    epochs: float = 20.0
    batch_size: int = 2048
    lr: float = 1e-3
    disc_lr: float = 1e-4  # FactorVAE's discriminator (Kim & Mnih 2018)
    disc_hidden: int = 1000
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # bfloat16 autocast of the forward pass and objective (CUDA; also works on a CPU)
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end)
    log_every: int = 50
    beta_warmup_steps: int = 0  # beta (FactorVAE: gamma) rises linearly from 0 over these steps; 0: off
    aggregate: str = "dense"  # beta-TCVAE: how the minibatch aggregate posterior is computed (O.AGGREGATE_KERNELS)

    def __post_init__(self):
        # Types as well as values: a "16" or 16.5 batch size, or epochs = 0 (which would train one step),
        # is named here, before any step changes a model.
        if self.objective not in O.OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {sorted(O.OBJECTIVES)}")
        if self.objective == "vae" and self.beta != 1.0:
            raise ValueError("objective 'vae' means beta = 1; use 'beta_vae' for other values")
        for name, positive in (("beta", False), ("gamma", False), ("epochs", True), ("lr", True),
                               ("disc_lr", True)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
                    or (positive and v == 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
        for name, low in (("batch_size", 2), ("disc_hidden", 1), ("seed", 0), ("log_every", 1),
                          ("checkpoint_every", 0), ("beta_warmup_steps", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.estimator not in ("mss", "mws"):
            raise ValueError(f"estimator must be 'mss' or 'mws', got {self.estimator!r}")
        O.check_aggregate(self.aggregate, self.device)
        if not isinstance(self.amp, bool):
            raise ValueError(f"amp must be True or False, got {self.amp!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string such as 'cpu' or 'cuda', got {self.device!r}")
        dev = self.device.split(":")[0]
        if dev not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device must be 'cpu', 'cuda[:i]' or 'mps', got {self.device!r}")
        if dev == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} asked for, but torch sees no CUDA device on this machine")


def build_vae(architecture: str, latent_dim: int, prior: str = "normal", seed: int = 0, channels: int = 1,
              net_size: dict | None = None, **prior_kw) -> VAE:
    """A VAE whose weights depend only on ``seed``: App. A.4 networks (``net_size``, e.g.
    ``{"hidden": 64, "image_size": 16}``, shrinks the MLP) and a prior from :func:`isa_lib.priors.make_prior`
    (e.g. ``prior="isa", sizes=[4] * 5, p0=2.1, exponents=2.2``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc, dec = make_networks(architecture, latent_dim, channels, **(net_size or {}))
        return VAE(enc, dec, make_prior(prior, latent_dim, **prior_kw))


def image_max_value(images: torch.Tensor, max_value: float | None = None) -> float:
    """The value that maps to 1: given (e.g. a dataset's ``max_value``), else 255 for uint8 images with any
    value above 1 (grey levels) and 1 otherwise (binary, or floats already in [0, 1]). Decided once for the
    whole set, never per batch (a dark batch of grey images would look binary)."""
    if max_value is not None:
        return float(max_value)
    return 255.0 if images.dtype == torch.uint8 and int(images.max()) > 1 else 1.0


def checked_max_value(images: torch.Tensor, max_value: float | None = None) -> float:
    """:func:`image_max_value`, after checking that every pixel divided by it lies in [0, 1] (finite, not
    negative, at most the maximum): the Bernoulli likelihood of App. A.4 needs values in [0, 1]. One pass
    over the images, before any step; an :class:`ImageRangeError` names the range found and the fix."""
    if max_value is not None and (isinstance(max_value, bool) or not isinstance(max_value, numbers.Real)
                                  or not math.isfinite(max_value) or max_value <= 0):
        raise ImageRangeError(f"max_value must be a finite number > 0 (the pixel value that maps to 1), "
                              f"got {max_value!r}")
    mv = image_max_value(images, max_value)
    if images.dtype == torch.bool or images.numel() == 0:
        return mv
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise ImageRangeError(f"images ({images.dtype}) contain NaN or infinite values; the Bernoulli decoder "
                              f"needs pixel values in [0, 1]")
    lo, hi = torch.aminmax(images)
    lo, hi = float(lo), float(hi)
    if lo < 0 or hi > mv:
        raise ImageRangeError(
            f"images ({images.dtype}) hold values in [{lo:g}, {hi:g}], but divided by max_value = {mv:g} they "
            f"must lie in [0, 1] (the Bernoulli decoder's range, App. A.4): scale them to [0, 1]"
            + (" or pass max_value (e.g. 255 for 8-bit grey levels)" if hi > mv and max_value is None else ""))
    return mv


def as_float_images(batch: torch.Tensor, max_value: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Images (N, [C,] H, W) as floats in [0, 1] with a channel axis."""
    if batch.dim() == 3:
        batch = batch[:, None]
    return batch.to(dtype) / max_value


def warmup_factor(cfg: TrainConfig, step: int | None) -> float:
    """The fraction of beta in force at ``step`` (0-based): min(1, step / beta_warmup_steps), 1 without a
    warm-up. A linear warm-up of the regulariser, as the authors' code offers (it is not stated whether the
    paper's runs used one)."""
    if not cfg.beta_warmup_steps or step is None:
        return 1.0
    return min(1.0, step / cfg.beta_warmup_steps)


def objective_on(out: O.Outputs, prior, cfg: TrainConfig, dataset_size: int,
                 discriminator: Discriminator | None = None, step: int | None = None):
    """The configured objective on one batch's outputs: (loss, terms). ``step`` applies the beta warm-up
    (:func:`warmup_factor`) to beta (Eq. 12; beta-TCVAE's TC weight, Eq. 3) or FactorVAE's gamma."""
    w = warmup_factor(cfg, step)
    if cfg.objective in ("vae", "beta_vae"):
        return O.elbo(out, prior, dataset_size, beta=cfg.beta * w)
    if cfg.objective == "beta_tcvae":
        return O.beta_tcvae(out, prior, dataset_size, beta=cfg.beta * w, estimator=cfg.estimator,
                            aggregate=cfg.aggregate)
    return O.factor_vae(out, prior, dataset_size, gamma=cfg.gamma * w, discriminator=discriminator)


def _batch(images: torch.Tensor, order: torch.Tensor | None, step: int, cfg: TrainConfig,
           generator: torch.Generator, max_value: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's minibatch (a fresh permutation at each epoch start) and the permutation in use."""
    n = len(images)
    pos = step % (n // cfg.batch_size)
    if pos == 0 or order is None:
        order = torch.randperm(n, generator=generator, device=images.device)
    return as_float_images(images[order[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]], max_value, dtype), order


#: What the finite-value watch looks at, in the order a failure is reported: network outputs first (a NaN
#: there poisons everything after it), then the loss and its terms, then the gradients.
OUTPUT_LABELS = (("mu", "mu from the encoder"), ("logvar", "logvar from the encoder"),
                 ("logits", "logits from the decoder"))


class FiniteWatch:
    """Finds non-finite network outputs, losses, terms and gradients without stopping the device.

    Each step adds a vector of flags computed on the device (``add``); :meth:`check`, called at log steps,
    before every checkpoint and at the end, reads them all back with one host-device synchronisation and
    raises a :class:`TrainingError` that names the first step, the run and the quantity that went wrong.
    Checking every value as it is made would synchronise the GPU several times per step. A NaN found late
    has not been saved: no checkpoint is written before a check passes.
    """

    def __init__(self):
        self._pending: list = []

    def add(self, step: int, labels: list[str], flags: torch.Tensor, values: dict | None = None,
            who: list[str] | None = None):
        """``flags[i]`` (bool, on the device; shape (Q,) or (Q, K) for K fused runs named by ``who``) says
        that everything labelled ``labels[i]`` is finite; ``values`` maps labels of scalars (shape () or
        (K,)) to the values the error message shows."""
        if flags.shape[0] != len(labels):
            raise ValueError(f"{len(labels)} labels for {flags.shape[0]} flags")
        self._pending.append((step, labels, flags, values, who))

    def check(self):
        if not self._pending:
            return
        ok = torch.stack([f.all() for _, _, f, _, _ in self._pending]).cpu()  # the one synchronisation
        pending, self._pending = self._pending, []
        for good, (step, labels, flags, values, who) in zip(ok.tolist(), pending):
            if good:
                continue
            flags = flags.cpu().reshape(len(labels), -1)
            run = int((~flags).any(0).nonzero()[0])
            i = int((~flags[:, run]).nonzero()[0])
            value = (values or {}).get(labels[i])
            shown = "" if value is None else f" ({value.detach().reshape(-1)[run].item()})"
            prefix = "" if who is None else who[run]
            raise TrainingError(f"{prefix}non-finite {labels[i]}{shown} at step {step}")


def _finite(t: torch.Tensor, runs: bool = False) -> torch.Tensor:
    """All-finite flag of a tensor, or one per run along its first axis (``runs``)."""
    f = torch.isfinite(t)
    return f.flatten(1).all(1) if runs else f.all()


def _grad_flags(named_grads: list, runs: bool = False) -> torch.Tensor:
    """One finite flag per gradient (per run with ``runs``), through max-norms: a NaN propagates into the
    max and an inf is the max, while huge finite gradients cannot overflow it (unlike a 2-norm)."""
    dims = 1 if runs else None
    return torch.isfinite(torch.stack([torch.linalg.vector_norm(g.flatten(1) if runs else g, float("inf"), dim=dims)
                                       for _, g in named_grads]))


def _watch_step(watch: FiniteWatch, step: int, outputs: dict, loss: torch.Tensor, terms: dict,
                named_grads: list, runs: bool = False, who: list[str] | None = None):
    """Queue one step's checks: outputs, loss and terms (with their values), gradients."""
    values = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}
    labels = [text for key, text in OUTPUT_LABELS if key in outputs] + list(values)
    flags = [_finite(outputs[key], runs) for key, _ in OUTPUT_LABELS if key in outputs]
    flags = torch.cat([torch.stack(flags), torch.isfinite(torch.stack(list(values.values())))])
    if named_grads:
        labels += [f"gradient of {name}" for name, _ in named_grads]
        flags = torch.cat([flags, _grad_flags(named_grads, runs)])
    watch.add(step, labels, flags, values, who)


def _check_interval(check_every: int | None, cfg: TrainConfig, device: torch.device) -> int:
    """Steps between reads of the :class:`FiniteWatch`: every step on a CPU, where reading costs nothing
    and the error comes before the optimiser applies a bad gradient; every log step on an accelerator."""
    every = (1 if device.type == "cpu" else cfg.log_every) if check_every is None else check_every
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"check_every must be an integer >= 1, got {check_every!r}")
    return every


def _autocast(cfg: TrainConfig, device: torch.device):
    """bfloat16 autocast of the forward pass and objective when ``cfg.amp`` (CUDA or CPU), else a no-op."""
    if not cfg.amp:
        return contextlib.nullcontext()
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"amp (bfloat16 autocast) is supported on cuda and cpu, not {device.type}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _check_images(model: VAE, images: torch.Tensor):
    """Images (N, [C,] H, W) of the size and channels the decoder makes, named before any step is taken."""
    if not isinstance(images, torch.Tensor) or images.dim() not in (3, 4):
        raise ValueError(f"images must be a tensor (N, [C,] H, W), got "
                         f"{type(images).__name__} of shape {tuple(getattr(images, 'shape', ()))}")
    was_training = model.decoder.training
    model.decoder.eval()            # batch norm in eval mode: the probe changes no running statistics
    try:
        with torch.no_grad():
            latent = model.prior().event_shape[0]
            w = next(model.parameters())
            probe = torch.zeros(1, latent, device=w.device, dtype=w.dtype)
            shape = tuple(model.decoder(probe).shape[1:])
    finally:
        model.decoder.train(was_training)
    got = tuple(images.shape[1:]) if images.dim() == 4 else (1, *images.shape[1:])
    if got != shape:
        raise ValueError(f"images of shape {got} (channels, height, width) do not match the network, which "
                         f"makes {shape}; build it with the data's image size and channels")


def total_steps(n: int, cfg: TrainConfig) -> int:
    """Number of optimiser steps of a run: epochs times the whole batches in one pass over n images."""
    if n < cfg.batch_size:
        raise ValueError(f"the data set ({n} images) is smaller than one batch ({cfg.batch_size})")
    return max(1, int(round(cfg.epochs * (n // cfg.batch_size))))


def _check_step(path, state: dict, total: int, max_steps: int | None) -> None:
    """The checkpoint's step: a whole number in [0, ``total``] (a run has ``total`` steps, so a larger one is
    not this run's: :class:`CheckpointError`); past where this call stops it cannot be resumed (training does
    not go back: :class:`CheckpointAheadError`, the checkpoint is kept for the longer run). A model is never
    scored as trained to a step its checkpoint cannot have reached."""
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint {path} has step {step!r}, not a whole number >= 0; it is not one of "
                              f"this trainer's checkpoints")
    if step > total:
        raise CheckpointError(f"checkpoint {path} is at step {step}, beyond the end of this run ({total} steps): "
                              f"it was not written by this run")
    stop = total if max_steps is None else min(total, max_steps)
    if step > stop:
        raise CheckpointAheadError(f"checkpoint {path} is at step {step}, past this call's stop at step {stop}")


def _need(state: dict, path, key: str, kinds, what: str):
    """``state[key]``, which must be of ``kinds``; else a :class:`CheckpointError` naming the key."""
    if key not in state:
        raise CheckpointError(f"checkpoint {path} has no {key!r} ({what}); it is not one of this trainer's "
                              f"checkpoints")
    value = state[key]
    if not isinstance(value, kinds):
        raise CheckpointError(f"checkpoint {path}: {key!r} ({what}) is a {type(value).__name__}, not a "
                              f"{' or '.join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))}")
    return value


def _check_tensors(path, key: str, saved: dict, expected: dict) -> None:
    """A saved state dict with the names, shapes and dtypes of ``expected`` (the model being trained): else the
    checkpoint belongs to another model (another prior, width or latent size) and is refused before any
    tensor is copied."""
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in saved.items()):
        raise CheckpointError(f"checkpoint {path}: {key!r} is not a mapping of names to tensors")
    missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    wrong = sorted(k for k in set(saved) & set(expected)
                   if saved[k].shape != expected[k].shape or saved[k].dtype != expected[k].dtype)
    if missing or extra or wrong:
        parts = [f"{label} {names[:4]}{' ...' if len(names) > 4 else ''}"
                 for label, names in (("missing", missing), ("unexpected", extra), ("of another shape or dtype", wrong))
                 if names]
        raise CheckpointError(f"checkpoint {path} was written for another model ({key}: {'; '.join(parts)})")


def _check_optimizer(path, key: str, saved, opt: torch.optim.Optimizer) -> None:
    """An optimiser state with this optimiser's parameter groups (and as many parameters in each)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("param_groups"), list) \
            or not isinstance(saved.get("state"), dict):
        raise CheckpointError(f"checkpoint {path}: {key!r} is not an optimiser state")
    ours = opt.state_dict()["param_groups"]
    theirs = saved["param_groups"]
    if len(theirs) != len(ours) or any(not isinstance(g, dict) or not isinstance(g.get("params"), list)
                                       or len(g["params"]) != len(o["params"]) for g, o in zip(theirs, ours)):
        raise CheckpointError(f"checkpoint {path}: {key!r} holds the optimiser of another model")


def _check_generator_state(path, key: str, g) -> None:
    if not isinstance(g, torch.Tensor) or g.dtype != torch.uint8 or g.dim() != 1:
        raise CheckpointError(f"checkpoint {path}: {key!r} is not a generator state (a 1-D uint8 tensor)")


def _check_order(path, key: str, order, n: int) -> None:
    """The data order saved mid-epoch: None, or a permutation of the n images (an index vector)."""
    if order is None:
        return
    if not isinstance(order, torch.Tensor) or order.dim() != 1 or order.dtype != torch.int64 or len(order) != n:
        raise CheckpointError(f"checkpoint {path}: {key!r} is not a data order of {n} images")


def _check_history(path, key: str, history, step: int) -> None:
    """Logged rows (dicts) whose steps do not pass the checkpoint's own step."""
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise CheckpointError(f"checkpoint {path}: {key!r} is not a list of logged rows")
    late = [h.get("step") for h in history if isinstance(h.get("step"), (int, float)) and h["step"] > step]
    if late:
        raise CheckpointError(f"checkpoint {path}: {key!r} logs step {late[-1]}, after the checkpoint's step {step}")


def model_fingerprint(models) -> str:
    """sha256 of what defines the model(s) besides their trained values, stored in checkpoints (``model_spec``)
    so that a checkpoint of another model with the same training configuration is refused: each module's kind
    and settings (``repr``: layer sizes, activations), its plain attributes (an ISA prior's p0, layout, bounds,
    learned or not), the names, shapes and dtypes of its state, and the values of the buffers that training
    leaves alone (an ISA prior's fixed exponents; batch-norm statistics, which training moves, are left out).
    The trained weights are not part of it: a resume replaces them, whatever the model started from."""
    import hashlib

    from torch.nn.modules.batchnorm import _BatchNorm

    h = hashlib.sha256()
    for model in models:
        h.update(repr(model).encode())
        for name, module in model.named_modules():
            plain = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"
                     and isinstance(v, (bool, int, float, str, tuple, list, type(None)))}
            h.update(f"|{name}|{type(module).__qualname__}|{sorted(plain.items())!r}".encode())
            for bname, buf in module.named_buffers(recurse=False):
                h.update(f"|{name}.{bname}|{buf.dtype}|{tuple(buf.shape)}".encode())
                if not isinstance(module, _BatchNorm) and buf.device.type != "meta" and buf.numel():
                    h.update(buf.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        for pname, prm in model.named_parameters():
            h.update(f"|{pname}|{prm.dtype}|{tuple(prm.shape)}".encode())
    return h.hexdigest()


def _restore_or_roll_back(job: "_Job", state: dict, path) -> None:
    """``job.restore(state)``; if it fails part-way (a state the checks above did not foresee), the job is put
    back as it was before (models, optimisers, generators) and a :class:`CheckpointError` says why, so a caller
    that discards the checkpoint trains from the true start, never from a half-loaded model."""
    backup = copy.deepcopy(job.snapshot(0))
    try:
        job.restore(state)
    except Exception as err:  # noqa: BLE001 - any failure to load is this checkpoint's fault
        job.restore(backup)
        raise CheckpointError(f"checkpoint {path} cannot be restored into this run ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None


def load_checkpoint(path, device=None) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, loaded with ``weights_only=True``: tensors, numbers,
    strings and containers only, so a crafted file cannot run code; anything else is a named error.

    Always loaded on the CPU, whatever device it was saved from (``device`` is accepted for older callers and
    not used): the trainer then moves each part where it belongs. The model's and optimisers' states move with
    ``load_state_dict``, the data order to the training device, and the generator states nowhere, since
    ``Generator.set_state`` takes a CPU byte tensor on every device (a state mapped to a GPU made a resume
    there fail)."""
    p = Path(path)
    if not p.is_file():
        what = "a directory" if p.is_dir() else "a dangling link" if p.is_symlink() else "missing or not a regular file"
        raise CheckpointError(f"checkpoint {path} is {what}, not a checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling refused, truncated or not a torch file
        raise CheckpointError(f"checkpoint {path} cannot be loaded as plain tensors and numbers "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds {type(state).__name__} data, not a checkpoint (a mapping "
                              f"with the configuration, step, model and optimiser states)")
    return state


def save_checkpoint(path: Path, state: dict):
    """Atomic write: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


class _Job:
    """What one optimiser step of a training run computes, for :func:`_fit`, which runs the loop that
    :func:`train` (one model, :class:`_SingleJob`) and :func:`train_many` (K fused models, :class:`_FusedJob`)
    share: resuming from a checkpoint, the finite-value watch, logging, checkpoints and the progress bar.

    A job holds its model(s), optimiser(s), generator(s), data order(s) and history (histories); ``runs`` says
    whether its losses and terms carry one value per fused run along their first axis."""

    runs = False
    who: list[str] | None = None

    def forward(self, step: int) -> tuple[torch.Tensor, dict, dict]:
        """The step's minibatch through the model(s) and objective: loss, terms, network outputs by name."""
        raise NotImplementedError

    def zero_grad(self):
        raise NotImplementedError

    def named_grads(self) -> list:
        raise NotImplementedError

    def update(self) -> dict:
        """The optimiser step(s) after a checked backward pass; returns terms to log beside the step's own."""
        raise NotImplementedError

    def log(self, step: int, loss: torch.Tensor, terms: dict) -> str:
        """Append the step's history row(s); returns the progress bar's postfix."""
        raise NotImplementedError

    def check_config(self, state: dict, path):
        """Raise :class:`CheckpointError` unless ``state`` was written with this job's configuration(s)."""
        raise NotImplementedError

    def check_state(self, state: dict, path):
        """Raise :class:`CheckpointError` unless every part of ``state`` fits this job (keys, types, the models'
        tensors, fingerprint and optimisers): checked before anything is restored."""
        raise NotImplementedError

    def restore(self, state: dict):
        raise NotImplementedError

    def snapshot(self, step: int) -> dict:
        raise NotImplementedError


def _fit(job: _Job, cfg: TrainConfig, device: torch.device, total: int, checkpoint, max_steps: int | None,
         progress: bool, check_every: int | None, desc: str):
    """The training loop of :func:`train` and :func:`train_many` (Sec. 4, App. A.3): resume from ``checkpoint``
    if it exists, then per step forward, backward, queue the finite checks (read before the optimiser step on a
    CPU, see :class:`FiniteWatch`), step the optimiser(s), log every ``cfg.log_every`` steps and at the end,
    checkpoint every ``cfg.checkpoint_every`` steps (each after a passed check) and at the end."""
    from tqdm.auto import tqdm

    step = 0
    if checkpoint is not None and (Path(checkpoint).exists() or Path(checkpoint).is_symlink()):
        state = load_checkpoint(checkpoint)
        job.check_config(state, checkpoint)
        _check_step(checkpoint, state, total, max_steps)
        job.check_state(state, checkpoint)
        _restore_or_roll_back(job, state, checkpoint)
        step = state["step"]
    autocast = _autocast(cfg, device)
    every = _check_interval(check_every, cfg, device)
    watch = FiniteWatch()
    stop = total if max_steps is None else min(total, max_steps)
    bar = tqdm(total=total, initial=step, disable=not progress, desc=desc)
    while step < stop:
        with autocast:
            loss, terms, outputs = job.forward(step)
        job.zero_grad()
        loss.sum().backward()
        _watch_step(watch, step, outputs, loss, terms, job.named_grads(), runs=job.runs, who=job.who)
        if every == 1:
            watch.check()  # before the optimiser step: the model(s) in memory stay at the last finite state
        extra = job.update()
        step += 1
        bar.update(1)
        log_now = step % cfg.log_every == 0 or step == total
        save_now = checkpoint is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0
        if log_now or save_now or step % every == 0 or step == stop:
            watch.check()
        if log_now:
            bar.set_postfix_str(job.log(step, loss, {**terms, **extra}), refresh=False)  # the bar's ETA is tqdm's
        if save_now:
            save_checkpoint(checkpoint, job.snapshot(step))
    bar.close()
    if checkpoint is not None:
        save_checkpoint(checkpoint, job.snapshot(step))


class _SingleJob(_Job):
    """One model (:func:`train`): its optimiser, FactorVAE's discriminator and optimiser, one generator."""

    def __init__(self, model: VAE, images: torch.Tensor, cfg: TrainConfig, device: torch.device, max_value: float):
        self.model, self.images, self.cfg, self.device, self.max_value = model, images, cfg, device, max_value
        self.n = len(images)
        self.dtype = next(model.parameters()).dtype
        self.generator = torch.Generator(device).manual_seed(cfg.seed)
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        self.disc, self.disc_opt = None, None
        if cfg.objective == "factor_vae":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                self.disc = Discriminator(model.prior().event_shape[0], hidden=cfg.disc_hidden).to(device)
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
        self.history, self.order, self.out = [], None, None
        self.spec = model_fingerprint([model] + ([self.disc] if self.disc is not None else []))

    def forward(self, step):
        x, self.order = _batch(self.images, self.order, step, self.cfg, self.generator, self.max_value, self.dtype)
        self.out = out = self.model(x, self.generator)
        loss, terms = objective_on(out, self.model.prior(), self.cfg, self.n, self.disc, step=step)
        return loss, terms, {"mu": out.mu, "logvar": out.logvar, "logits": out.logits}

    def zero_grad(self):
        self.opt.zero_grad(set_to_none=True)

    def named_grads(self):
        return [(name, p.grad) for name, p in self.model.named_parameters() if p.grad is not None]

    def update(self):
        self.opt.step()
        if self.disc is None:
            return {}
        half = len(self.out.z) // 2
        d_loss = O.discriminator_loss(self.disc, self.out.z[:half], self.out.z[half:], self.generator)
        self.disc_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.disc_opt.step()
        return {"disc_loss": d_loss.detach()}

    def log(self, step, loss, terms):
        self.history.append({"step": step, "loss": loss.item(), **{k: v.item() for k, v in terms.items()}})
        return f"loss={self.history[-1]['loss']:.2f}"

    def check_config(self, state, path):
        if _need(state, path, "config", dict, "the training configuration") != asdict(self.cfg):
            raise CheckpointError(f"checkpoint {path} was written with another configuration: {state['config']}")

    def check_state(self, state, path):
        spec = state.get("model_spec")   # absent in checkpoints written before it was recorded
        if spec is not None and spec != self.spec:
            raise CheckpointError(f"checkpoint {path} was written for another model with the same training "
                                  f"configuration (another prior, exponent, layout or network)")
        _check_tensors(path, "model", _need(state, path, "model", dict, "the model's weights"),
                       self.model.state_dict())
        _check_optimizer(path, "optimizer", _need(state, path, "optimizer", dict, "Adam's state"), self.opt)
        _check_generator_state(path, "generator", _need(state, path, "generator", torch.Tensor, "the generator"))
        _check_history(path, "history", _need(state, path, "history", list, "the logged rows"), state["step"])
        _check_order(path, "order", state.get("order"), self.n)
        if self.disc is not None:
            _check_tensors(path, "discriminator", _need(state, path, "discriminator", dict, "FactorVAE's "
                                                        "discriminator"), self.disc.state_dict())
            _check_optimizer(path, "disc_optimizer", state.get("disc_optimizer"), self.disc_opt)

    def restore(self, state):
        self.model.load_state_dict(state["model"])        # copied onto the parameters' device
        self.opt.load_state_dict(state["optimizer"])      # Adam moves its moments to the parameters' device
        self.generator.set_state(state["generator"])      # a CPU byte tensor (see load_checkpoint)
        self.history, self.order = state["history"], state["order"]
        if self.order is not None:
            self.order = self.order.to(self.device)
        if self.disc is not None:
            self.disc.load_state_dict(state["discriminator"])
            self.disc_opt.load_state_dict(state["disc_optimizer"])

    def snapshot(self, step):
        s = {"config": asdict(self.cfg), "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
             "generator": self.generator.get_state(), "step": step, "history": self.history, "order": self.order,
             "model_spec": self.spec}
        if self.disc is not None:
            s.update(discriminator=self.disc.state_dict(), disc_optimizer=self.disc_opt.state_dict())
        return s


def train(model: VAE, images: torch.Tensor, cfg: TrainConfig, checkpoint: str | Path | None = None,
          progress: bool = True, max_steps: int | None = None, max_value: float | None = None,
          check_every: int | None = None) -> list[dict]:
    """Train ``model`` on ``images`` (N, [C,] H, W) and return the logged history (one dict per log step).

    With ``checkpoint``, an existing file is resumed (model, optimisers, generator, step, history) and
    the file is rewritten every ``cfg.checkpoint_every`` steps and at the end. ``max_steps`` stops early
    (e.g. to test resumption); the schedule itself is fixed by ``cfg.epochs``. ``max_value`` maps pixel
    values to [0, 1] (see :func:`image_max_value`). Non-finite values raise a :class:`TrainingError` naming
    the step and the quantity; they are looked for every ``check_every`` steps (default: every step on a
    CPU, every log step on a GPU; see :class:`FiniteWatch`). The loop is :func:`_fit`, shared with
    :func:`train_many`.
    """
    device = torch.device(cfg.device)
    _check_images(model, images)
    model.to(device)
    images = images.to(device)
    total = total_steps(len(images), cfg)
    job = _SingleJob(model, images, cfg, device, checked_max_value(images, max_value))
    model.train()
    _fit(job, cfg, device, total, checkpoint, max_steps, progress, check_every, f"{cfg.objective} beta={cfg.beta}")
    return job.history


#: Fields that may differ between the fused runs of :func:`train_many`; everything else must agree.
PER_RUN_FIELDS = {"seed", "beta"}


def _check_fusable(models: list[VAE], cfgs: list[TrainConfig]):
    if len(models) != len(cfgs) or not models:
        raise ValueError(f"need one configuration per model, got {len(models)} models and {len(cfgs)} configs")
    shared = [{k: v for k, v in asdict(c).items() if k not in PER_RUN_FIELDS} for c in cfgs]
    for i, s in enumerate(shared[1:], 1):
        diff = sorted(k for k in s if s[k] != shared[0][k])
        if diff:
            raise ValueError(f"fused runs may differ only in {sorted(PER_RUN_FIELDS)}; run {i} differs in {diff}")
    if cfgs[0].objective == "factor_vae":
        raise ValueError("factor_vae needs a discriminator per run and is not fused; train each seed with train()")
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in models[0].modules()):
        raise ValueError("models with batch norm (the 'conv' architecture) are not fused; use train() per seed")
    names = [sorted(m.state_dict()) for m in models]
    shapes = [[tuple(t.shape) for t in m.state_dict().values()] for m in models]
    if any(n != names[0] for n in names) or any(s != shapes[0] for s in shapes):
        raise ValueError("fused models must have identical architectures and priors")


class _FusedJob(_Job):
    """K models as one batched computation (:func:`train_many`): stacked weights through ``torch.func.vmap``,
    one Adam over the stacked tensors (element-wise, so each model's update is its own), one generator and
    data order per model."""

    runs = True

    def __init__(self, models: list[VAE], images: torch.Tensor, cfgs: list[TrainConfig], device: torch.device,
                 max_value: float):
        from torch.func import functional_call, stack_module_state, vmap

        self.cfgs, self.images, self.device, self.max_value = cfgs, images, device, max_value
        self.n = len(images)
        self.params, self.buffers = stack_module_state(models)
        self.base = base = copy.deepcopy(models[0]).to("meta")
        self.sub = {part: {name[len(part) + 1:]: t for name, t in {**self.params, **self.buffers}.items()
                           if name.startswith(part + ".")} for part in ("encoder", "decoder", "prior")}
        self.functional_call = functional_call
        self.encode = vmap(lambda p, x: functional_call(base.encoder, p, (x,)))
        self.decode = vmap(lambda p, z: functional_call(base.decoder, p, (z,)))
        self.opt = torch.optim.Adam(list(self.params.values()), lr=cfgs[0].lr)
        self.gens = [torch.Generator(device).manual_seed(c.seed) for c in cfgs]
        self.latent_dim = models[0].prior().event_shape[0]
        self.dtype = next(iter(self.params.values())).dtype
        self.histories, self.orders = [[] for _ in cfgs], [None] * len(cfgs)
        self.who = [f"run {k} (seed {c.seed}): " for k, c in enumerate(cfgs)]
        self.spec = model_fingerprint(models)

    def forward(self, step):
        xs, eps = [], []
        for k in range(len(self.cfgs)):
            x, self.orders[k] = _batch(self.images, self.orders[k], step, self.cfgs[0], self.gens[k],
                                       self.max_value, self.dtype)
            xs.append(x)
            # Same draw, in the same order, as the reparameterisation inside VAE.forward in train().
            eps.append(torch.randn((len(x), self.latent_dim), generator=self.gens[k], device=self.device,
                                   dtype=self.dtype))
        x = torch.stack(xs)
        mu, logvar = self.encode(self.sub["encoder"], x)
        z = O.reparameterize(mu, logvar, eps=torch.stack(eps))   # float32 under autocast, as in train
        logits = self.decode(self.sub["decoder"], z)
        losses, all_terms = [], []
        for k, cfg in enumerate(self.cfgs):
            prior = self.functional_call(self.base.prior, {name: t[k] for name, t in self.sub["prior"].items()}, ())
            out = O.Outputs(x[k], mu[k], logvar[k], z[k], logits[k])
            loss_k, terms_k = objective_on(out, prior, cfg, self.n, step=step)
            losses.append(loss_k)
            all_terms.append(terms_k)
        terms = {name: torch.stack([t[name] for t in all_terms]) for name in all_terms[0]}
        return torch.stack(losses), terms, {"mu": mu, "logvar": logvar, "logits": logits}

    def zero_grad(self):
        self.opt.zero_grad(set_to_none=True)

    def named_grads(self):
        return [(name, t.grad) for name, t in self.params.items() if t.grad is not None]

    def update(self):
        self.opt.step()
        return {}

    def log(self, step, loss, terms):
        for k, h in enumerate(self.histories):
            h.append({"step": step, "loss": loss[k].item(), **{name: v[k].item() for name, v in terms.items()}})
        return f"mean_loss={sum(h[-1]['loss'] for h in self.histories) / len(self.histories):.2f}"

    def check_config(self, state, path):
        if _need(state, path, "configs", list, "the fused runs' configurations") != [asdict(c) for c in self.cfgs]:
            raise CheckpointError(f"checkpoint {path} was written with other configurations")

    def check_state(self, state, path):
        k = len(self.cfgs)
        spec = state.get("model_spec")
        if spec is not None and spec != self.spec:
            raise CheckpointError(f"checkpoint {path} was written for other models with the same training "
                                  f"configurations (another prior, exponent, layout or network)")
        _check_tensors(path, "params", _need(state, path, "params", dict, "the stacked weights"),
                       {name: t.detach() for name, t in self.params.items()})
        _check_optimizer(path, "optimizer", _need(state, path, "optimizer", dict, "Adam's state"), self.opt)
        for key, what in (("generators", "the generators"), ("histories", "the logged rows"),
                          ("orders", "the data orders")):
            if len(_need(state, path, key, list, what)) != k:
                raise CheckpointError(f"checkpoint {path}: {key!r} has {len(state[key])} entries for {k} runs")
        for i in range(k):
            _check_generator_state(path, f"generators[{i}]", state["generators"][i])
            _check_history(path, f"histories[{i}]", state["histories"][i], state["step"])
            _check_order(path, f"orders[{i}]", state["orders"][i], self.n)

    def restore(self, state):
        with torch.no_grad():
            for name, t in self.params.items():
                t.copy_(state["params"][name])            # copied onto the training device
        self.opt.load_state_dict(state["optimizer"])
        for g, s in zip(self.gens, state["generators"]):
            g.set_state(s)                                # CPU byte tensors (see load_checkpoint)
        self.histories = state["histories"]
        self.orders = [None if o is None else o.to(self.device) for o in state["orders"]]

    def snapshot(self, step):
        return {"configs": [asdict(c) for c in self.cfgs], "params": {k: v.detach() for k, v in self.params.items()},
                "optimizer": self.opt.state_dict(), "generators": [g.get_state() for g in self.gens], "step": step,
                "histories": self.histories, "orders": self.orders, "model_spec": self.spec}


def train_many(models: list[VAE], images: torch.Tensor, cfgs: list[TrainConfig],
               checkpoint: str | Path | None = None, progress: bool = True,
               max_steps: int | None = None, max_value: float | None = None,
               check_every: int | None = None) -> list[list[dict]]:
    """Train K independent models (seeds and betas may differ) as one batched computation.

    The encoder and decoder run once for all K models (``torch.func.vmap`` over their stacked
    weights), so small MLPs keep a GPU busy; each model keeps its own generator, data order and noise,
    and Adam is element-wise, so the result equals K calls of :func:`train` up to floating-point
    reduction order. The trained weights are written back into ``models``; returns one history per model.
    The loop (resume, checks, logging, checkpoints) is :func:`_fit`, shared with :func:`train`.
    """
    _check_fusable(models, cfgs)
    _check_images(models[0], images)
    cfg0 = cfgs[0]
    device = torch.device(cfg0.device)
    for m in models:
        m.to(device)
    images = images.to(device)
    total = total_steps(len(images), cfg0)
    job = _FusedJob(models, images, cfgs, device, checked_max_value(images, max_value))
    _fit(job, cfg0, device, total, checkpoint, max_steps, progress, check_every, f"{len(models)} x {cfg0.objective}")
    with torch.no_grad():
        for k, m in enumerate(models):
            m.load_state_dict({name: t[k] for name, t in {**job.params, **job.buffers}.items()})
    return job.histories
