"""Device paths checked on a CPU-only machine (no line of the CUDA path is exercised here otherwise).

Two stand-ins for an accelerator:

- the ``meta`` device: tensors with shapes and dtypes but no data. An op that meets a meta tensor and a CPU
  tensor of one or more dimensions fails, as it would with a CUDA tensor; reading a value (``.item()``,
  ``bool(t)``, ``.cpu()``) fails too, so a host-device synchronisation inside a step is found as well.
- :class:`DeviceGuard`, a dispatch mode that is stricter than CUDA: it refuses every op whose tensor arguments
  lie on more than one device, 0-d CPU tensors included (CUDA lets those through as scalars, at the cost of
  a copy per op), except the copies that move a tensor on purpose (``.to``).

Every public computation of a training step runs here on meta inputs under the guard: prior ``log_prob``
and ``sample`` (Eq. 5-11, Alg. 1), each objective (Eq. 1-3, 12, FactorVAE), the training step fused and
unfused, and the checkpoint loaded for a resume. Any tensor created on the wrong device fails in CI.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from isa_lib import objectives as O
from isa_lib.lpnested import ISA, LpNested, PGeneralizedNormal, isa_tree, log_lp_nested_norm, log_radial_density
from isa_lib.priors import ISAPrior, NormalPrior, make_prior

META = torch.device("meta")
#: Ops that take tensors on two devices by design: copies that move a tensor between devices.
COPIES = {"aten._to_copy.default", "aten.copy_.default", "aten._copy_from.default",
          "aten._copy_from_and_resize.default", "aten.lift_fresh.default"}


class DeviceMismatch(AssertionError):
    pass


class DeviceGuard(TorchDispatchMode):
    """Fails any op whose tensor arguments lie on more than one device (0-d CPU tensors included)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if str(func) not in COPIES:
            flat, _ = tree_flatten((args, kwargs))
            devices = {t.device for t in flat if isinstance(t, torch.Tensor)}
            if len(devices) > 1:
                shapes = [(tuple(t.shape), str(t.device)) for t in flat if isinstance(t, torch.Tensor)]
                raise DeviceMismatch(f"{func} mixes devices {sorted(map(str, devices))}: {shapes}")
        return func(*args, **kwargs)


def test_the_guard_catches_a_cpu_scalar_in_a_meta_computation():
    """The guard is stricter than the meta device itself, which lets a 0-d CPU tensor through."""
    z = torch.ones(3, device=META)
    assert (z * torch.tensor(2.0)).device == META          # meta (and CUDA) accept it ...
    with pytest.raises(DeviceMismatch, match="mixes devices"), DeviceGuard():
        z * torch.tensor(2.0)                               # ... the guard does not
    with DeviceGuard():
        assert (z * 2.0).device == META and torch.tensor(2.0).to(META).device == META   # numbers and moves pass


def meta_z(b=5, n=6, dtype=torch.float32):
    return torch.empty(b, n, device=META, dtype=dtype)


# ------------------------------------------------------------------ distributions (Eq. 5-11, Alg. 1)
@pytest.mark.parametrize("make", [
    lambda: ISA(2.1, [3, 3], [2.2, 1.5], validate_args=False),            # equal sizes: the batched path
    lambda: ISA(2.1, [2, 4], [2.2, 1.5], validate_args=False),            # the general tree
    lambda: ISA(2.1, [3, 3], 2.2, scale=1.5, validate_args=False),        # the README's usage: plain floats
    lambda: LpNested(isa_tree(2.1, [2, 4], [2.2, 1.5]), validate_args=False),
    lambda: PGeneralizedNormal(1.3, 6, validate_args=False),
], ids=["isa-equal", "isa-unequal", "isa-floats-scale", "lpnested", "pgn"])
def test_plain_float_distributions_compute_on_the_device_of_their_input(make):
    """Plain-float exponents are made on the value's device, never mixed in from the CPU (the ISA fast path
    multiplied a CPU exponent vector by the device tensor: ``ISA(...).log_prob(z.cuda())`` failed)."""
    d = make()
    z = meta_z()
    with DeviceGuard():
        for out in (d.log_prob(z), d.log_norm(z), d.radial_energy(z), d.log_prob(meta_z(dtype=torch.float64))):
            assert out.device == META and out.shape == (5,)
        assert d.log_normaliser(torch.float32, META).device == META


def test_tensor_parameters_follow_the_value_and_sample_to_their_device():
    p0 = torch.tensor(2.1, device=META)
    ps = torch.tensor([2.2, 1.5], device=META)
    d = ISA(p0, [3, 3], ps, validate_args=False)
    with DeviceGuard():
        assert d.log_prob(meta_z()).device == META
        assert d.subspace_log_norms(meta_z()).shape == (5, 2)
        x = d.sample((7,))
        assert x.device == META and x.shape == (7, 6)
        assert d.mean.device == META and d.scale.device == META
    assert log_lp_nested_norm(meta_z(n=3), (2.0, [1, (1.5, [2])])).device == META
    # parameters held as CPU tensors (the scale too) are moved to the value's device, not mixed in
    for sizes in ([3, 3], [2, 4]):
        d = ISA(torch.tensor(2.1), sizes, torch.tensor([2.2, 1.5]), scale=torch.tensor(1.5), validate_args=False)
        with DeviceGuard():
            for out in (d.log_prob(meta_z()), d.radial_energy(meta_z())):
                assert out.device == META and out.shape == (5,)
            assert d.log_normaliser(torch.float32, META).device == META
    with DeviceGuard():
        assert log_radial_density(torch.empty(4, device=META), 6, 2.1).device == META


@pytest.mark.parametrize("prior", [
    NormalPrior(6),
    ISAPrior(2.1, [3, 3], 2.2),
    ISAPrior(2.1, [3, 3], [2.0, 2.5], learn=True),
    ISAPrior(2.1, [2, 4], 2.2, scale=1.5),
], ids=["normal", "isa-fixed", "isa-learned", "isa-unequal-scale"])
def test_priors_follow_to_device(prior):
    """A prior module moved with ``.to(device)`` hands out a distribution whose log_prob and sample stay there."""
    prior = prior.to(META)
    with DeviceGuard():
        dist = prior()
        assert dist.log_prob(meta_z()).device == META
        assert dist.sample((4,)).device == META


# ------------------------------------------------------------------ objectives (Eq. 1-3, 12; FactorVAE)
def meta_outputs(b=8, d=6):
    return O.Outputs(torch.empty(b, 1, 4, 4, device=META), torch.empty(b, d, device=META),
                     torch.empty(b, d, device=META), torch.empty(b, d, device=META),
                     torch.empty(b, 1, 4, 4, device=META))


@pytest.mark.parametrize("name", ["normal", "isa"])
@pytest.mark.parametrize("objective", [
    "elbo", "beta_tcvae-mss", "beta_tcvae-mws", "factor_vae", "beta_tcvae-streamed",
])
def test_objectives_run_on_the_device_of_their_outputs(name, objective):
    from isa_lib.nets import Discriminator

    prior = make_prior(name, 6, sizes=[3, 3]).to(META)
    out = meta_outputs()
    disc = Discriminator(6, hidden=8, layers=2).to(META)
    with DeviceGuard():
        if objective == "elbo":
            loss, terms = O.elbo(out, prior(), 1000, beta=4.0)
        elif objective == "factor_vae":
            loss, terms = O.factor_vae(out, prior(), 1000, gamma=10.0, discriminator=disc)
            assert O.discriminator_loss(disc, out.z, out.z).device == META
        else:
            _, est = objective.split("-")
            kw = {"aggregate": "streamed"} if est == "streamed" else {"estimator": est}
            loss, terms = O.beta_tcvae(out, prior(), 1000, beta=6.0, **kw)
        assert loss.device == META and all(t.device == META for t in terms.values())
        assert O.reparameterize(out.mu, out.logvar).device == META
        assert O.permute_dims(out.z).device == META


@pytest.mark.parametrize("block", [3, 32])
def test_the_streamed_aggregate_runs_forward_and_backward_without_reading_a_value(block):
    """Eq. 3's aggregate posterior streamed on the meta device: the underflow fallback is selected with
    torch.where there (a read of its mask would fail on meta, as it would synchronise a GPU every step)."""
    from isa_lib.aggregate_posterior import log_aggregate

    z, mu, logvar = (torch.empty(8, 6, device=META, requires_grad=True) for _ in range(3))
    logw = O.aggregate_log_weights(8, 1000, "mss").to(META)
    with DeviceGuard():
        joint, marg = log_aggregate(z, mu, logvar, logw, block=block)
        (joint.sum() + marg.sum()).backward()
    assert joint.shape == (8,) and marg.shape == (8, 6)
    assert all(t.grad.device == META and t.grad.shape == (8, 6) for t in (z, mu, logvar))


# ------------------------------------------------------------------ a training step, fused and unfused, and a resume
SMALL = {"hidden": 16, "image_size": 8}


@pytest.fixture
def cpu_generators_on_meta(monkeypatch):
    """torch.Generator("meta") does not exist; a CPU generator drives meta ops (randperm, randn) instead. The
    trainer makes its generators on the training device, so on CUDA they are CUDA generators."""
    import torch.distributed.tensor  # noqa: F401 - imported lazily by the trainer, it annotates with torch.Generator
    make = torch.Generator
    monkeypatch.setattr(torch, "Generator", lambda device="cpu": make("cpu" if str(device) == "meta" else device))


def _train_cfg(**kw):
    from isa_lib.train import TrainConfig

    base = dict(objective="beta_vae", epochs=2, batch_size=32, seed=1, log_every=1, checkpoint_every=1)
    return TrainConfig(**{**base, **kw})


def _step(job, step):
    """One step of the loop in isa_lib.train._fit, everything but the reads of values (logging, checks)."""
    from isa_lib.train import FiniteWatch, _watch_step

    loss, terms, outputs = job.forward(step)
    job.zero_grad()
    loss.sum().backward()
    _watch_step(FiniteWatch(), step, outputs, loss, terms, job.named_grads(), runs=job.runs, who=job.who)
    job.update()
    return loss


def _job(fused, objective, prior, device):
    from isa_lib.train import _FusedJob, _SingleJob, build_vae

    kw = {"sizes": [2, 2], "exponents": [2.2, 1.8]} if prior == "isa" else {}
    models = [build_vae("mlp", 4, prior, seed=s, net_size=SMALL, **kw).to(device) for s in (0, 1)]
    images = (torch.rand(128, 8, 8) > 0.5).to(torch.uint8).to(device)
    if fused:
        return _FusedJob(models, images, [_train_cfg(objective=objective, seed=s) for s in (0, 1)], device, 1.0)
    return _SingleJob(models[0], images, _train_cfg(objective=objective), device, 1.0)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")   # meta parameters hold no values
@pytest.mark.parametrize("fused", [False, True], ids=["train", "train_many"])
@pytest.mark.parametrize("objective,prior", [("beta_vae", "normal"), ("beta_vae", "isa"), ("beta_tcvae", "isa"),
                                             ("factor_vae", "normal")])
def test_a_training_step_and_a_resume_stay_on_the_device(fused, objective, prior, tmp_path, cpu_generators_on_meta):
    """Two steps of train() / train_many()'s loop on the meta device under the guard, then a checkpoint written
    by a CPU run restored into a meta job (what a GPU resume does) and one more step: the data order, the
    optimiser's moments and the generator state all end up where the step uses them."""
    from isa_lib.train import load_checkpoint, save_checkpoint

    if fused and objective == "factor_vae":
        pytest.skip("factor_vae is not fused")
    job = _job(fused, objective, prior, META)
    with DeviceGuard():
        for step in range(2):
            assert _step(job, step).device == META
    cpu = _job(fused, objective, prior, torch.device("cpu"))
    for step in range(3):
        _step(cpu, step)
    save_checkpoint(tmp_path / "c.pt", cpu.snapshot(3))
    state = load_checkpoint(tmp_path / "c.pt", META)
    resumed = _job(fused, objective, prior, META)
    with DeviceGuard():
        resumed.restore(state)
        assert _step(resumed, 3).device == META   # step 3 is in the second epoch: the restored order is used
    orders = resumed.orders if fused else [resumed.order]
    assert all(o.device == META for o in orders)


class HostToDevice(DeviceGuard):
    """The device guard, plus a count of the copies of host data to the device inside the mode (on CUDA each
    is a blocking copy: the host waits for the GPU's queue, and cannot run ahead of it)."""

    def __init__(self):
        super().__init__()
        self.copies = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        dst = kwargs.get("device")
        if (str(func) == "aten._to_copy.default" and tensors and tensors[0].device.type == "cpu"
                and dst is not None and torch.device(dst) == META):
            self.copies.append(tuple(tensors[0].shape))
        return super().__torch_dispatch__(func, types, args, kwargs)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
@pytest.mark.parametrize("fused", [False, True], ids=["train", "train_many"])
def test_a_training_step_of_an_isa_vae_copies_nothing_from_the_host(fused, cpu_generators_on_meta, monkeypatch):
    """The ISA prior's scale (a plain number) and subspace sizes were made into device tensors at every
    log_prob (three blocking copies per run per step: 30 per fused step of ten runs); a step of the paper's
    layout (equal sizes) now copies nothing from the host, like a step of the Gaussian prior."""
    made = []
    new_tensor = torch.Tensor.new_tensor

    def spy(self, data, *a, **k):
        if self.device == META and not isinstance(data, torch.Tensor):
            made.append(data)
        return new_tensor(self, data, *a, **k)

    monkeypatch.setattr(torch.Tensor, "new_tensor", spy)
    job = _job(fused, "beta_tcvae", "isa", META)
    job.forward(0)                                     # the epoch's data order, drawn once per epoch
    with HostToDevice() as mode:
        _step(job, 1)
    assert mode.copies == [] and made == []


def test_checkpoints_load_on_the_cpu_whatever_the_device(tmp_path):
    """Generator.set_state takes a CPU byte tensor on every device: a checkpoint mapped to the training device
    (as before) could not be resumed there. Everything loads on the CPU; the trainer moves it."""
    from isa_lib.train import build_vae, load_checkpoint, train

    ckpt = tmp_path / "c.pt"
    images = (torch.rand(64, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).to(torch.uint8)
    train(build_vae("mlp", 4, net_size=SMALL), images, _train_cfg(epochs=1), checkpoint=ckpt, progress=False)
    state = load_checkpoint(ckpt, META)
    assert state["generator"].device.type == "cpu" and state["generator"].dtype == torch.uint8
    assert all(t.device.type == "cpu" for t in state["model"].values())
    torch.Generator().set_state(state["generator"])


# ------------------------------------------------------------------ the MIG (Sec. 4; Chen et al. 2018)
class HostReads(DeviceGuard):
    """The device guard, plus: a read of a meta tensor's value (``bool``, ``.item()``) or a copy of one to the
    host (``.cpu()``) is recorded and answered (False / 0, zeros) instead of failing, so that a computation
    that ends on the host (the MIG ends in NumPy) runs on meta whole; and the ops that made CPU tensors are
    counted, so that a computation that left the device is seen."""

    def __init__(self):
        super().__init__()
        self.reads, self.cpu_ops = [], set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        on_meta = any(t.device == META for t in tensors)
        if on_meta and str(func) == "aten._local_scalar_dense.default":
            self.reads.append(("value", tuple(tensors[0].shape)))
            return False if tensors[0].dtype == torch.bool else 0
        if on_meta and str(func) == "aten._to_copy.default" and torch.device(kwargs.get("device", META)).type == "cpu":
            self.reads.append(("copy", tuple(tensors[0].shape)))
            return torch.zeros(tensors[0].shape, dtype=kwargs.get("dtype") or tensors[0].dtype)
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if any(isinstance(o, torch.Tensor) and o.device.type == "cpu" for o in tree_flatten(out)[0]):
            self.cpu_ops.add(str(func).split(".")[1])
        return out


#: What the MIG computes on the CPU by design: the checks of its inputs (before they move), the noise and the
#: subsets drawn with the CPU generator (then moved: the same numbers on every device), and the per-factor
#: sums of the entropies that came back to the host. No mixture sum (exp2, addcmul, log2, logsumexp) is here.
MIG_HOST_OPS = {"abs", "ne", "eq", "mul", "all", "max", "min", "detach",          # _check_resolvable, inputs
                "randn", "randperm", "arange",                                    # _draw_z, _subset
                "zeros", "select", "slice", "div", "add_", "copy_"}               # h_cond on the host


@pytest.mark.parametrize("groups", [None, [[0], [1, 2]], [[0, 2], [1]]], ids=["latents", "mixed", "pairs"])
def test_the_mig_computes_its_mixture_sums_on_the_device_of_the_posteriors(groups):
    """mig_chen's torch backend with device="meta": every mixture sum (the entropies H(z_g) and H(z_g | v_k)
    of Chen et al.'s estimator) runs on the device under the mismatch guard; the only values that come back to
    the host are one flag per group size and pass (the underflow check) and the (G,) entropies of each pass."""
    from isa_lib.metrics import mig_chen

    g = torch.Generator().manual_seed(0)
    mu = torch.randn(12, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(12, 3, generator=g, dtype=torch.float64) - 2.0
    ng = 3 if groups is None else 2
    sizes = {1} if groups is None else {len(x) for x in groups}
    for dtype in (torch.float64, torch.float32):
        with HostReads() as h:
            res = mig_chen(mu, logvar, (3, 4), n_samples=5, device="meta", backend="torch", dtype=dtype,
                           groups=groups)
        passes = 1 + 3 + 4                       # H(z_g), then each value of each factor
        assert h.reads.count(("copy", (ng,))) == passes and len([r for r in h.reads if r[0] == "copy"]) == passes
        assert h.reads.count(("value", ())) == passes * len(sizes) == len(h.reads) - passes
        assert h.cpu_ops <= MIG_HOST_OPS, h.cpu_ops - MIG_HOST_OPS
        assert res.mutual_info.shape == (2, ng) and res.info["backend"] == "torch"


def test_the_mixture_entropy_and_its_fallback_stay_on_the_device():
    """mixture_entropy on meta, and the running-maximum recomputation of samples far from every posterior
    (_log2_sum_exact) and the streamed sums themselves on meta tensors, under the guard."""
    from isa_lib.metrics._mixture import _log2_sum_exact, _log_mixture, _torch_sums, mixture_entropy

    mu, logvar = torch.zeros(10, 4), torch.full((10, 4), -1.0)
    with HostReads() as h:
        ent = mixture_entropy(mu, logvar, n_samples=6, device="meta", dtype=torch.float32, backend="torch",
                              groups=[[0, 1], [2], [3]])
    assert ent.shape == (3,) and h.reads == [("value", ()), ("value", ()), ("copy", (3,))]
    assert h.cpu_ops <= MIG_HOST_OPS
    with DeviceGuard():
        zs, m = torch.empty(2, 5, device=META), torch.empty(2, 7, device=META)
        a, c = torch.empty(2, 7, device=META), torch.empty(7, device=META)
        assert _log2_sum_exact(zs, m, a, c, row_chunk=3).device == META
        acc = torch.zeros(3, 5, dtype=torch.float64, device=META)
        _torch_sums(torch.empty(3, 2, 5, device=META), torch.empty(3, 2, 7, device=META),
                    torch.empty(3, 2, 7, device=META), torch.empty(3, 7, device=META), -125.0, acc, 2, 3)
        z = torch.empty(5, 4, device=META, dtype=torch.float64)
        with pytest.raises(RuntimeError, match="meta"):        # the underflow check reads one flag per group size
            _log_mixture(z, torch.empty(7, 4, device=META, dtype=torch.float64),
                         torch.empty(7, 4, device=META, dtype=torch.float64), [[0], [1, 2], [3]], 4, 3)
