"""Encoders, decoders and the FactorVAE discriminator of the paper's App. A.4.

The paper uses the networks of Chen et al. (2018, beta-TCVAE) unchanged: an MLP pair for dSprites and a
convolutional pair for the 3-D data sets, with 64 x 64 single-channel images, a Gaussian posterior with
diagonal covariance and a Bernoulli likelihood on the pixels. The encoders return the posterior mean and
log-variance; the decoders return Bernoulli logits with the image's shape.
"""
from __future__ import annotations

import torch
from torch import nn

from .objectives import Outputs, reparameterize


class MLPEncoder(nn.Module):
    """4096 -> 1200 -> 1200 -> 2 * latent_dim, ReLU (App. A.4, dSprites). ``hidden`` and ``image_size``
    shrink it for tests and small-scale runs."""

    def __init__(self, latent_dim: int, channels: int = 1, image_size: int = 64, hidden: int = 1200):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * image_size * image_size, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


class MLPDecoder(nn.Module):
    """latent_dim -> 1200 -> 1200 -> 1200 -> 4096, tanh; returns Bernoulli logits (App. A.4)."""

    def __init__(self, latent_dim: int, channels: int = 1, image_size: int = 64, hidden: int = 1200):
        super().__init__()
        self.shape = (channels, image_size, image_size)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, channels * image_size * image_size),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(*z.shape[:-1], *self.shape)


def _conv_block(cin: int, cout: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU()]


def _deconv_block(cin: int, cout: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU()]


class ConvEncoder(nn.Module):
    """Four stride-2 4x4 convolutions (32, 32, 64, 64 channels), a 4x4 convolution to 512 and a 1x1
    convolution to 2 * latent_dim, batch norm and ReLU between (App. A.4, 3-D data sets; 64 x 64 input)."""

    def __init__(self, latent_dim: int, channels: int = 1):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            *_conv_block(channels, 32, 4, 2, 1),  # 32 x 32
            *_conv_block(32, 32, 4, 2, 1),  # 16 x 16
            *_conv_block(32, 64, 4, 2, 1),  # 8 x 8
            *_conv_block(64, 64, 4, 2, 1),  # 4 x 4
            *_conv_block(64, 512, 4, 1, 0),  # 1 x 1
            nn.Conv2d(512, 2 * latent_dim, 1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder` with transposed convolutions; returns Bernoulli logits."""

    def __init__(self, latent_dim: int, channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Unflatten(1, (latent_dim, 1, 1)),
            *_deconv_block(latent_dim, 512, 1, 1, 0),
            *_deconv_block(512, 64, 4, 1, 0),  # 4 x 4
            *_deconv_block(64, 64, 4, 2, 1),  # 8 x 8
            *_deconv_block(64, 32, 4, 2, 1),  # 16 x 16
            *_deconv_block(32, 32, 4, 2, 1),  # 32 x 32
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # 64 x 64
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.view(*batch, *out.shape[1:])


class Discriminator(nn.Module):
    """FactorVAE's total-correlation discriminator: six 1000-unit layers with LeakyReLU(0.2), two logits
    (App. A.4; Kim & Mnih 2018)."""

    def __init__(self, latent_dim: int, hidden: int = 1000, layers: int = 6):
        super().__init__()
        mods: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        mods.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*mods)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


ARCHITECTURES = {"mlp": (MLPEncoder, MLPDecoder), "conv": (ConvEncoder, ConvDecoder)}


def make_networks(architecture: str, latent_dim: int, channels: int = 1, **size) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder by name: ``"mlp"`` (dSprites) or ``"conv"`` (3-D faces, cars3d). ``size``
    (``hidden``, ``image_size``) applies to the MLP only: the convolutional pair is fixed at 64 x 64."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}")
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
    if size and architecture != "mlp":
        raise ValueError(f"{sorted(size)} apply to the 'mlp' architecture only")
    enc, dec = ARCHITECTURES[architecture]
    return enc(latent_dim, channels=channels, **size), dec(latent_dim, channels=channels, **size)


class VAE(nn.Module):
    """Encoder + decoder + prior module (``prior()`` returns a ``torch.distributions.Distribution``)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: nn.Module):
        super().__init__()
        self.encoder, self.decoder, self.prior = encoder, decoder, prior

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """One pass: posterior parameters, a reparameterised code and the decoder's logits."""
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar, generator)
        return Outputs(x, mu, logvar, z, self.decoder(z))


def module_device(fn) -> torch.device | None:
    """Where a network's parameters live (App. A.4 networks trained on a GPU stay there): the device of the
    first parameter when ``fn`` is a module that has one, else None (a plain function, no preference)."""
    if isinstance(fn, nn.Module):
        p = next(iter(fn.parameters()), None)
        return None if p is None else p.device
    return None
