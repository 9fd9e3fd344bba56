"""Latent inspection (isa_lib.latents) and the App. A.5 figures (isa_lib.plots.experiment)."""
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from isa_lib import latents
from isa_lib.metrics import grid_classes
from isa_lib.plots.experiment import dsprites_latent_plot, factor_response_plot, traversal_plot

SIZES = (1, 3, 2, 4, 5, 5)  # dSprites factor order on a small grid


def code_from_factors():
    """z0 = posX, z1 = scale + shape, z2 = constant noise-free 0, z3 = orientation."""
    c = grid_classes(SIZES).astype(float)
    return np.stack([c[:, 4], c[:, 2] + 10 * c[:, 1], np.zeros(len(c)), c[:, 3]], 1)


def test_factor_means_recover_the_coded_factors():
    mu = code_from_factors()
    pos = latents.factor_means(mu, SIZES, [4, 5])
    assert pos.shape == (5, 5, 4)
    assert np.allclose(pos[:, :, 0], np.arange(5)[:, None])  # varies with x, not with y
    by_scale = latents.factor_means(mu, SIZES, [1, 2])
    assert np.allclose(by_scale[:, :, 1], np.arange(2)[None, :] + 10 * np.arange(3)[:, None])
    # the order of `keep` sets the order of the axes
    assert np.allclose(latents.factor_means(mu, SIZES, [2, 1])[..., 1], by_scale[..., 1].T)


def test_active_dims_orders_by_variance_and_drops_constant_latents():
    mu = code_from_factors()
    assert list(latents.active_dims(mu)) == [1, 0, 3]


class OnAccelerator(torch.Tensor):
    """A code as a GPU hands it out: NumPy cannot read it until ``.cpu()`` (a plain CPU tensor) is called."""

    def __array__(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first")

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first")

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor).clone()


def test_codes_on_an_accelerator_or_requiring_grad_are_read_through_the_cpu():
    """active_dims and factor_means (and the figures built on them) take the codes where a model left them:
    on a GPU, or still attached to the graph."""
    mu = torch.as_tensor(code_from_factors())
    ref_active, ref_means = latents.active_dims(mu), latents.factor_means(mu, SIZES, [4, 5])
    for code in (mu.clone().as_subclass(OnAccelerator), mu.clone().requires_grad_()):
        assert list(latents.active_dims(code)) == list(ref_active)
        assert np.array_equal(latents.factor_means(code, SIZES, [4, 5]), ref_means)
    with pytest.raises(TypeError, match="Use Tensor.cpu"):
        np.asarray(mu.clone().as_subclass(OnAccelerator))        # the stand-in does refuse


def test_traversal_hands_the_decoder_its_codes_on_the_decoder_s_device():
    """A start code read on the CPU, a decoder whose parameters are on a GPU ("meta" stands in): the codes
    go to the decoder's device (chapter 06's retraining failed with "Expected all tensors to be on the same
    device"); a plain function gets them where they are."""
    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, device="meta"))
            self.seen = []

        def forward(self, z):
            self.seen.append(z.device.type)
            return torch.zeros(len(z), 1, 2, 2)

    dec = Decoder()
    assert latents.traversal(dec, torch.zeros(3), dims=[0, 2], values=[-1.0, 1.0]).shape == (2, 2, 1, 2, 2)
    assert dec.seen == ["meta", "meta"]
    seen = []
    latents.traversal(lambda z: (seen.append(z.device.type), torch.zeros(len(z), 1, 2, 2))[1], torch.zeros(3),
                      dims=[1], values=[0.0])
    assert seen == ["cpu"]


def test_traversal_changes_only_the_moved_latent():
    decode = lambda z: z[:, :1, None, None].expand(-1, 1, 2, 2) * 0 + z.sum(1)[:, None, None, None]
    imgs = latents.traversal(decode, torch.zeros(3), dims=[0, 2], values=[-1.0, 0.0, 1.0])
    assert imgs.shape == (2, 3, 1, 2, 2)
    assert np.allclose(imgs[0, :, 0, 0, 0], 1 / (1 + np.exp(-np.array([-1.0, 0.0, 1.0]))))


def test_figures_are_made_and_bad_inputs_named():
    mu = code_from_factors()
    values = [np.array([1.0]), np.arange(3), np.linspace(0.5, 1, 2), np.linspace(0, 2 * np.pi, 4),
              np.linspace(0, 1, 5), np.linspace(0, 1, 5)]
    fig = dsprites_latent_plot(mu, SIZES, values, dims=[0, 1, 3], title="test")
    assert len(fig.axes) == 9
    fig = traversal_plot(np.zeros((2, 3, 1, 4, 4)), [0, 2], [-1, 0, 1])
    assert len(fig.axes) == 6
    with pytest.raises(ValueError, match="rows"):
        latents.factor_means(mu[:-1], SIZES, [4])
    with pytest.raises(ValueError, match="inactive"):
        dsprites_latent_plot(mu, SIZES, values, dims=[])
    # the generic reading: a column per varying factor (colour, with one class, is left out)
    names = ["color", "shape", "scale", "orientation", "posX", "posY"]
    fig = factor_response_plot(mu, SIZES, values, names, dims=[0, 3])
    assert len(fig.axes) == 2 * 5 and fig.axes[0].get_title() == "shape"
    line = fig.axes[5 + 2].lines[0]            # z3 against orientation: its coded factor, a rising line
    assert np.allclose(line.get_ydata(), np.arange(4))
    assert np.allclose(fig.axes[3].lines[0].get_ydata(), np.arange(5))   # z0 against posX
    assert np.allclose(fig.axes[4].lines[0].get_ydata(), 2.0)          # z0 is flat in posY (mean of 0..4)
    with pytest.raises(ValueError, match="inactive"):
        factor_response_plot(mu, SIZES, values, names, dims=[])


def test_start_index_is_a_large_centred_heart():
    c = grid_classes(SIZES)
    i = latents.dsprites_start_index(c, SIZES)
    assert list(c[i]) == [0, 2, 1, 0, 2, 2]


def test_centre_index_is_the_middle_of_every_factor():
    c = grid_classes(SIZES)
    i = latents.centre_index(c, SIZES)
    assert list(c[i]) == [0, 1, 0, 1, 2, 2]  # middle classes (ties go to the lower class)
    with pytest.raises(ValueError, match="factor_classes"):
        latents.centre_index(c[:, :3], SIZES)
