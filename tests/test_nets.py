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
