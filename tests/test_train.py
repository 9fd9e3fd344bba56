"""The trainer (isa_lib.train): determinism, resumption, NaN detection, learning on a tiny data set."""
import dataclasses

import pytest
import torch

from isa_lib.train import TrainConfig, TrainingError, build_vae, train, train_many


SMALL = {"hidden": 64, "image_size": 16}


def tiny_images(n=256, seed=0):
    """Squares at random positions in 16 x 16 binary images: something a VAE learns in a few steps."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(n, 16, 16, dtype=torch.uint8)
    pos = torch.randint(0, 12, (n, 2), generator=g)
    for i, (r, c) in enumerate(pos.tolist()):
        img[i, r:r + 4, c:c + 4] = 1
    return img


def vae(prior="normal", seed=0, **kw):
    return build_vae("mlp", 4, prior, seed=seed, net_size=SMALL, **kw)


def cfg(**kw):
    base = dict(objective="beta_vae", epochs=6, batch_size=64, lr=1e-3, seed=3, log_every=4)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("objective,prior", [("beta_vae", "normal"), ("beta_tcvae", "isa"), ("factor_vae", "normal")])
def test_a_few_steps_lower_the_loss(objective, prior):
    kw = dict(sizes=[2, 2], exponents=2.0, learn=True) if prior == "isa" else {}
    model = vae(prior, 0, **kw)
    hist = train(model, tiny_images(), cfg(objective=objective, beta=2.0, epochs=10, disc_hidden=64), progress=False)
    assert hist[-1]["recon"] > hist[0]["recon"] + 20  # nats per image
    assert all(k in hist[-1] for k in ("recon", "kl"))


def test_same_seed_same_numbers_and_other_seed_differs():
    a = train(vae(seed=1), tiny_images(), cfg(epochs=2), progress=False)
    b = train(vae(seed=1), tiny_images(), cfg(epochs=2), progress=False)
    c = train(vae(seed=1), tiny_images(), cfg(epochs=2, seed=4), progress=False)
    assert a == b
    assert a != c


def test_resume_from_checkpoint_continues_identically(tmp_path):
    images = tiny_images()
    full_model = vae("isa", 2, sizes=[2, 2], exponents=2.0, learn=True)
    full = train(full_model, images, cfg(objective="beta_tcvae", epochs=3), progress=False)
    ck = tmp_path / "run.pt"
    part_model = vae("isa", 2, sizes=[2, 2], exponents=2.0, learn=True)
    train(part_model, images, cfg(objective="beta_tcvae", epochs=3, checkpoint_every=5), ck, progress=False,
          max_steps=7)  # stops mid-epoch (4 steps per epoch)
    resumed_model = vae("isa", 99, sizes=[2, 2], exponents=2.0, learn=True)
    resumed = train(resumed_model, images, cfg(objective="beta_tcvae", epochs=3, checkpoint_every=5), ck,
                    progress=False)
    assert resumed == full
    for p, q in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    ck = tmp_path / "run.pt"
    train(vae(), tiny_images(), cfg(epochs=1), ck, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        train(vae(), tiny_images(), cfg(epochs=1, beta=4.0), ck, progress=False)


def test_nan_is_caught_with_the_step_and_the_term_and_the_last_checkpoint_survives(tmp_path):
    model = vae()
    ck = tmp_path / "run.pt"
    train(model, tiny_images(), cfg(epochs=1), ck, progress=False)
    good = ck.read_bytes()
    with torch.no_grad():
        model.encoder.net[-1].bias.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"non-finite mu from the encoder at step 0"):
        train(model, tiny_images(), cfg(epochs=1), tmp_path / "other.pt", progress=False)
    assert ck.read_bytes() == good


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match="unknown objective 'elbo2'"):
        TrainConfig(objective="elbo2")
    with pytest.raises(ValueError, match="beta"):
        TrainConfig(beta=float("nan"))
    with pytest.raises(ValueError, match="smaller than one batch"):
        train(vae(), tiny_images(16), cfg(batch_size=64), progress=False)


def fused_setup(prior="isa", seeds=(0, 1, 2), betas=(1.0, 2.0, 4.0), **cfg_kw):
    kw = dict(sizes=[2, 2], exponents=2.0, learn=True) if prior == "isa" else {}
    models = [vae(prior, s, **kw).double() for s in seeds]
    cfgs = [cfg(objective="beta_tcvae", seed=s, beta=b, epochs=2, **cfg_kw) for s, b in zip(seeds, betas)]
    return models, cfgs


def test_fused_training_equals_separate_training():
    images = tiny_images()
    models, cfgs = fused_setup()
    fused = train_many(models, images, cfgs, progress=False)
    for k, c in enumerate(cfgs):
        alone = vae("isa", c.seed, sizes=[2, 2], exponents=2.0, learn=True).double()
        hist = train(alone, images, c, progress=False)
        assert [h["step"] for h in hist] == [h["step"] for h in fused[k]]
        for a, b in zip(hist, fused[k]):
            for key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-7, abs=1e-7), (k, key)
        for (name, p), q in zip(alone.named_parameters(), models[k].parameters()):
            assert torch.allclose(p, q, rtol=1e-6, atol=1e-8), name
    # Different seeds and betas really gave different models.
    assert not torch.allclose(models[0].prior.exponents, models[2].prior.exponents)


def test_fused_resume_continues_identically(tmp_path):
    images = tiny_images()
    models, cfgs = fused_setup(checkpoint_every=3)
    full = train_many(models, images, cfgs, progress=False)
    part_models, cfgs2 = fused_setup(checkpoint_every=3)
    train_many(part_models, images, cfgs2, tmp_path / "k.pt", progress=False, max_steps=5)
    again, cfgs3 = fused_setup(seeds=(0, 1, 2), checkpoint_every=3)
    resumed = train_many(again, images, cfgs3, tmp_path / "k.pt", progress=False)
    assert resumed == full
    for m, r in zip(models, again):
        for p, q in zip(m.parameters(), r.parameters()):
            assert torch.equal(p, q)


def test_fusing_rejects_mismatched_runs():
    models, cfgs = fused_setup()
    cfgs[1] = cfg(objective="beta_tcvae", seed=1, lr=1e-2, epochs=2)
    with pytest.raises(ValueError, match=r"run 1 differs in \['lr'\]"):
        train_many(models, tiny_images(), cfgs, progress=False)
    with pytest.raises(ValueError, match="batch norm"):
        train_many([build_vae("conv", 4)], tiny_images(), [cfg(objective="beta_tcvae")], progress=False)


def test_pixel_scale_is_decided_once_for_the_whole_set():
    from isa_lib.train import as_float_images, image_max_value

    grey = torch.tensor([[[0, 1], [1, 0]], [[0, 200], [255, 3]]], dtype=torch.uint8)
    assert image_max_value(grey) == 255.0
    assert image_max_value(grey[:1]) == 1.0  # a dark batch alone would look binary: hence once per set
    assert image_max_value(grey[:1], max_value=255) == 255.0
    assert torch.allclose(as_float_images(grey, 255.0)[1, 0], torch.tensor([[0, 200 / 255], [1.0, 3 / 255]]))


def test_a_non_finite_gradient_is_named_and_a_huge_finite_one_is_not_an_error():
    from isa_lib.train import FiniteWatch, _watch_step

    one, out = torch.tensor(1.0), {"mu": torch.zeros(2, 2)}
    watch = FiniteWatch()
    _watch_step(watch, 3, out, one, {"kl": one}, [("w", torch.full((4,), 1e30))])  # a 2-norm would overflow
    watch.check()
    _watch_step(watch, 3, out, one, {}, [("w", torch.ones(2)), ("b", torch.tensor([0.0, float("inf")]))])
    with pytest.raises(TrainingError, match="non-finite gradient of b at step 3"):
        watch.check()
    # Fused runs: flags per run; the message names the run, the term and its value.
    kl = torch.tensor([0.5, float("nan")])
    _watch_step(watch, 0, {"mu": torch.zeros(2, 3, 2)}, torch.ones(2), {"kl": kl}, [("w", torch.ones(2, 5))],
                runs=True, who=["run 0: ", "run 1: "])
    with pytest.raises(TrainingError, match=r"run 1: non-finite kl \(nan\) at step 0"):
        watch.check()


class NaNAt(torch.nn.Module):
    """Wraps an encoder and makes its output NaN from the ``at``-th call on (step ``at`` of a training run)."""

    def __init__(self, encoder, at):
        super().__init__()
        self.encoder, self.at, self.calls = encoder, at, 0

    def forward(self, x):
        mu, logvar = self.encoder(x)
        self.calls += 1
        return (mu * float("nan"), logvar) if self.calls > self.at else (mu, logvar)


def test_a_late_check_names_the_first_bad_step_and_never_saves_it(tmp_path):
    """Checks every 100 steps (as on a GPU): a NaN at step 7 is reported as step 7, and the checkpoint
    due at step 10 is not written, because a check comes before every save."""
    model = vae()
    model.encoder = NaNAt(model.encoder, at=7)
    ck = tmp_path / "run.pt"
    with pytest.raises(TrainingError, match=r"non-finite mu from the encoder at step 7"):
        train(model, tiny_images(), cfg(checkpoint_every=5, log_every=100), ck, progress=False, check_every=100)
    assert torch.load(ck, weights_only=True)["step"] == 5
    with pytest.raises(ValueError, match="check_every"):
        train(vae(), tiny_images(), cfg(), progress=False, check_every=0)


def count_host_reads(monkeypatch):
    """Counts the ways a tensor's value reaches Python (each one a host-device synchronisation on a GPU),
    leaving out torch.optim, whose Adam step counters live on the host."""
    reads = []
    for name in ("item", "__bool__", "__float__", "__int__", "tolist", "cpu", "numpy"):
        orig = getattr(torch.Tensor, name)

        def spy(self, *a, _orig=orig, _name=name, **k):
            import sys
            if "torch/optim" not in sys._getframe(1).f_code.co_filename:
                reads.append(_name)
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, spy)
    return reads


@pytest.mark.parametrize("objective,prior,learn", [("beta_tcvae", "normal", False), ("beta_vae", "isa", False),
                                                   ("beta_tcvae", "isa", True)])
def test_training_steps_do_not_read_device_values_between_checks(monkeypatch, objective, prior, learn):
    """Between two reads of the finite-value watch a step launches work and reads nothing back: 20 more
    steps cost exactly one more check (a .cpu() and a .tolist()), alone or fused."""
    kw = dict(sizes=[2, 2], exponents=2.2, learn=learn) if prior == "isa" else {}
    reads = count_host_reads(monkeypatch)
    c = cfg(objective=objective, epochs=20, log_every=1000)
    counts = {}
    for steps in (20, 40):
        del reads[:]
        train(vae(prior, 0, **kw), tiny_images(), c, progress=False, max_steps=steps, check_every=20)
        counts[steps] = len(reads)
    assert counts[40] - counts[20] == 2, (counts, reads)
    fused = {}
    for steps in (20, 40):
        del reads[:]
        train_many([vae(prior, s, **kw) for s in (0, 1)], tiny_images(), [c, cfg(objective=objective, epochs=20,
                   log_every=1000, seed=4)], progress=False, max_steps=steps, check_every=20)
        fused[steps] = len(reads)
    assert fused[40] - fused[20] == 2, (fused, reads)


def test_bfloat16_autocast_trains_on_the_cpu():
    """``amp=True`` runs the forward pass and objective in bfloat16 autocast (the GPU sweep's --amp); on a
    CPU too, so the path is tested here: it learns, and its numbers differ from float32's."""
    hist = train(vae(), tiny_images(), cfg(amp=True, epochs=10), progress=False)
    ref = train(vae(), tiny_images(), cfg(epochs=10), progress=False)
    assert hist[-1]["recon"] > hist[0]["recon"] + 20
    assert abs(hist[-1]["recon"] - ref[-1]["recon"]) < 5.0
    assert hist[-1]["loss"] != ref[-1]["loss"]
    fused = train_many([vae("isa", s, sizes=[2, 2], exponents=2.2) for s in (0, 1)], tiny_images(),
                       [cfg(amp=True, epochs=10, seed=s) for s in (0, 1)], progress=False)
    assert all(h[-1]["recon"] > h[0]["recon"] + 20 for h in fused)


def test_beta_warmup_rises_linearly_from_zero_alone_and_fused():
    """beta_warmup_steps = W: the KL (or TC) weight at 0-based step t is beta * min(1, t / W)."""
    images = tiny_images()
    warm = cfg(beta=4.0, beta_warmup_steps=8, log_every=1, epochs=3)        # 12 steps of batch 64
    hist = train(vae(seed=2), images, warm, progress=False)
    for row in hist:                      # row "step" s was logged after the step with 0-based index s - 1
        w = min(1.0, (row["step"] - 1) / 8)
        assert row["loss"] == pytest.approx(-row["recon"] + 4.0 * w * row["kl"], rel=1e-5, abs=1e-4)
    # step 0 runs at beta = 0 exactly: one step equals one step of a beta = 0 run, weight for weight
    a, b = vae(seed=2), vae(seed=2)
    train(a, images, warm, progress=False, max_steps=1)
    train(b, images, cfg(beta=0.0, log_every=1, epochs=3), progress=False, max_steps=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    # after the warm-up the run differs from one without it, and fused training applies it per step too
    plain = train(vae(seed=2), images, cfg(beta=4.0, log_every=1, epochs=3), progress=False)
    assert plain[-1]["loss"] != hist[-1]["loss"]
    models = [vae(seed=2).double(), vae(seed=3).double()]
    fused = train_many(models, images, [dataclasses.replace(warm, seed=s) for s in (3, 4)], progress=False)
    sep = [train(vae(seed=s).double(), images, dataclasses.replace(warm, seed=t), progress=False)
           for s, t in ((2, 3), (3, 4))]
    for f, s in zip(fused, sep):
        assert [r["loss"] for r in f] == pytest.approx([r["loss"] for r in s], rel=1e-9)
    with pytest.raises(ValueError, match="beta_warmup_steps"):
        TrainConfig(beta_warmup_steps=-1)
    with pytest.raises(ValueError, match="beta_warmup_steps"):
        TrainConfig(beta_warmup_steps=2.5)


def test_a_crafted_checkpoint_never_runs_code(tmp_path):
    sentinel = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    ck = tmp_path / "ck.pt"
    torch.save({"config": Payload(), "step": 0}, ck)
    for run in (lambda: train(vae(), tiny_images(), cfg(epochs=1), checkpoint=ck, progress=False),
                lambda: train_many([vae(), vae(seed=1)], tiny_images(), [cfg(epochs=1), cfg(epochs=1, seed=4)],
                                   checkpoint=ck, progress=False)):
        with pytest.raises(ValueError, match=f"checkpoint {ck} cannot be loaded"):
            run()
        assert not sentinel.exists()


@pytest.mark.parametrize("kw,message", [
    (dict(batch_size="16"), "batch_size must be an integer >= 2, got '16'"),
    (dict(batch_size=16.5), "batch_size must be an integer >= 2, got 16.5"),
    (dict(epochs=0), "epochs must be a finite number > 0, got 0"),
    (dict(log_every=0), "log_every must be an integer >= 1, got 0"),
    (dict(seed=1.5), "seed must be an integer >= 0, got 1.5"),
    (dict(lr=float("nan")), "lr must be a finite number > 0"),
    (dict(beta=True), "beta must be a finite number >= 0, got True"),
    (dict(estimator="mcs"), "estimator must be 'mss' or 'mws'"),
    (dict(device="tpu"), "device must be 'cpu', 'cuda[:i]' or 'mps'"),
])
def test_train_config_names_bad_types_and_values(kw, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**kw)
    assert message in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_cuda_without_a_gpu_is_named():
    with pytest.raises(ValueError, match="no CUDA device"):
        TrainConfig(device="cuda")


def test_images_that_do_not_fit_the_network_are_named_before_any_step():
    model = vae()                                  # a 16 x 16 network
    before = [p.detach().clone() for p in model.parameters()]
    wrong = torch.zeros(128, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"images of shape \(1, 32, 32\).*makes \(1, 16, 16\)"):
        train(model, wrong, cfg(), progress=False)
    with pytest.raises(ValueError, match="do not match the network"):
        train_many([model, vae(seed=1)], wrong, [cfg(), cfg(seed=4)], progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # nothing was trained
