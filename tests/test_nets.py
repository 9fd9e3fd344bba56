"""Networks of App. A.4 (isa_lib.nets): shapes, parameter counts, and a clear error for a bad name."""
import pytest
import torch

from isa_lib import nets


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_encoder_decoder_shapes(arch):
    torch.manual_seed(0)
    enc, dec = nets.make_networks(arch, latent_dim=10)
    x = torch.rand(3, 1, 64, 64)
    mu, logvar = enc(x)
    assert mu.shape == logvar.shape == (3, 10)
    assert dec(mu).shape == (3, 1, 64, 64)


def test_mlp_sizes_follow_appendix_a4():
    enc, dec = nets.make_networks("mlp", latent_dim=10)
    enc_linear = [m for m in enc.modules() if isinstance(m, torch.nn.Linear)]
    dec_linear = [m for m in dec.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in enc_linear] == [(4096, 1200), (1200, 1200), (1200, 20)]
    assert [(m.in_features, m.out_features) for m in dec_linear] == [
        (10, 1200), (1200, 1200), (1200, 1200), (1200, 4096)]


def test_discriminator_outputs_two_logits():
    d = nets.Discriminator(10)
    assert d(torch.zeros(4, 10)).shape == (4, 2)
    assert sum(isinstance(m, torch.nn.Linear) for m in d.modules()) == 7


def test_bad_architecture_and_latent_size():
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        nets.make_networks("resnet", 10)
    with pytest.raises(ValueError, match="latent_dim"):
        nets.make_networks("mlp", 0)


def _layers(module):
    """(kind, sizes) of every layer in order: weights with their shapes, activations with their parameters."""
    out = []
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            out.append(("linear", m.in_features, m.out_features))
        elif isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            kind = "conv" if isinstance(m, torch.nn.Conv2d) and not isinstance(m, torch.nn.ConvTranspose2d) else "deconv"
            out.append((kind, m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0]))
        elif isinstance(m, torch.nn.BatchNorm2d):
            out.append(("bn", m.num_features))
        elif isinstance(m, torch.nn.ReLU):
            out.append(("relu",))
        elif isinstance(m, torch.nn.Tanh):
            out.append(("tanh",))
        elif isinstance(m, torch.nn.LeakyReLU):
            out.append(("leaky", m.negative_slope))
    return out


def test_mlp_layers_and_activations_follow_appendix_a4():
    """App. A.4 (the networks of Chen et al. 2018 for dSprites): encoder 4096-1200-1200-2d with ReLU, decoder
    d-1200-1200-1200-4096 with tanh, no activation after the last layer (mean/log-variance and logits)."""
    enc, dec = nets.make_networks("mlp", latent_dim=10)
    assert _layers(enc) == [("linear", 4096, 1200), ("relu",), ("linear", 1200, 1200), ("relu",),
                            ("linear", 1200, 20)]
    assert _layers(dec) == [("linear", 10, 1200), ("tanh",), ("linear", 1200, 1200), ("tanh",),
                            ("linear", 1200, 1200), ("tanh",), ("linear", 1200, 4096)]
    # the encoder's output is split into the mean (first half) and the log-variance (second half)
    x = torch.rand(2, 1, 64, 64)
    raw = enc.net(x)
    mu, logvar = enc(x)
    assert torch.equal(mu, raw[:, :10]) and torch.equal(logvar, raw[:, 10:])


def test_conv_layers_and_activations_follow_appendix_a4():
    """App. A.4 (3-D data sets): 4x4 stride-2 convolutions with 32, 32, 64, 64 channels, a 4x4 convolution to 512
    and a 1x1 convolution to 2d, batch norm and ReLU after each hidden layer; the decoder mirrors it with
    transposed convolutions and ends in logits (no batch norm, no activation)."""
    enc, dec = nets.make_networks("conv", latent_dim=10)
    block = lambda kind, cin, cout, k, s, p: [(kind, cin, cout, k, s, p), ("bn", cout), ("relu",)]
    assert _layers(enc) == (block("conv", 1, 32, 4, 2, 1) + block("conv", 32, 32, 4, 2, 1)
                            + block("conv", 32, 64, 4, 2, 1) + block("conv", 64, 64, 4, 2, 1)
                            + block("conv", 64, 512, 4, 1, 0) + [("conv", 512, 20, 1, 1, 0)])
    assert _layers(dec) == (block("deconv", 10, 512, 1, 1, 0) + block("deconv", 512, 64, 4, 1, 0)
                            + block("deconv", 64, 64, 4, 2, 1) + block("deconv", 64, 32, 4, 2, 1)
                            + block("deconv", 32, 32, 4, 2, 1) + [("deconv", 32, 1, 4, 2, 1)])


def test_discriminator_layers_follow_kim_and_mnih():
    """FactorVAE's discriminator (App. A.4; Kim & Mnih 2018): six 1000-unit layers, LeakyReLU(0.2), two logits."""
    d = nets.Discriminator(10)
    hidden = [("linear", 10, 1000), ("leaky", 0.2)] + [("linear", 1000, 1000), ("leaky", 0.2)] * 5
    assert _layers(d) == hidden + [("linear", 1000, 2)]
