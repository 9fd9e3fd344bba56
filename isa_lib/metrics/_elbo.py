"""The two terms of the ELBO for a trained model (Eq. 1-3): the KL term split as in Eq. 3, and the
reconstruction term E_q[log p(x|z)], with the posteriors of a whole dataset."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..nets import module_device
from ..objectives import bernoulli_log_likelihood
from ._checks import _int_at_least
from ._inputs import _generator, _pick_device
from ._mixture import LOG_2PI, _check_n_samples, _draw_z, _log_mixture, _prepare, _subset


def _log_prior(log_prior_fn, z):
    fn = log_prior_fn.log_prob if hasattr(log_prior_fn, "log_prob") else log_prior_fn
    lp = fn(z)
    if lp.dim() == 2 and lp.shape == z.shape:
        return lp.sum(1), lp
    if lp.dim() != 1 or lp.shape[0] != z.shape[0]:
        raise ValueError(f"log_prior_fn returned shape {tuple(lp.shape)}; expected ({z.shape[0]},) or {tuple(z.shape)}")
    return lp, None


def elbo_decomposition(mu, logvar, log_prior_fn: Callable, n_samples: int | None = 10000, seed: int = 0,
                       generator: torch.Generator | None = None, sample_chunk: int = 256,
                       row_chunk: int = 4096, device=None, dtype=torch.float64) -> dict:
    """The KL term of the ELBO split as in Eq. 3 (Chen et al. 2018), for a trained model's posteriors.

    mu, logvar: (N, D) posteriors over the whole dataset, q(z) their mixture.  log_prior_fn: z (S, D) ->
    log p(z) (S,) (a torch Distribution's log_prob works) or per-latent (S, D) for a factorised prior.
    With S samples (z_s from the posterior of a random image n_s; all images if n_samples is None):
      index_code_mi      = E[log q(z|x) - log q(z)]
      total_correlation  = E[log q(z) - sum_j log q(z_j)]
      dimwise_kl         = E[sum_j log q(z_j) - log p(z)]  (= sum_j KL(q(z_j)||p(z_j)) for a factorised
                           prior; for any other prior Eq. 3 generalised, appendix "Equations")
      kl                 = their sum = E[log q(z|x) - log p(z)], the average KL(q(z|x)||p(z)).
    Also 'dimwise_kl_per_latent' when the prior returns per-latent terms.  Values in nats (float).
    """
    _check_n_samples(n_samples)
    mu, logvar = _prepare(mu, logvar, device, dtype)
    n, d = mu.shape
    gen = _generator(seed, generator)
    z = _draw_z(mu, logvar, gen)
    sel = _subset(n, n_samples, gen).to(mu.device)
    zs, ms, ls = z[sel], mu[sel], logvar[sel]
    log_qzx = (-0.5 * ((zs - ms) ** 2 * torch.exp(-ls) + ls + LOG_2PI)).sum(1)
    sc, rc = int(sample_chunk), int(row_chunk)
    log_qz = _log_mixture(zs, mu, logvar, [list(range(d))], sc, rc)[0]
    log_qzj = _log_mixture(zs, mu, logvar, [[j] for j in range(d)], sc, rc).T   # (S, D)
    log_pz, log_pzj = _log_prior(log_prior_fn, zs)
    log_pz = log_pz.to(dtype)
    out = {
        "index_code_mi": float((log_qzx - log_qz).mean()),
        "total_correlation": float((log_qz - log_qzj.sum(1)).mean()),
        "dimwise_kl": float((log_qzj.sum(1) - log_pz).mean()),
        "kl": float((log_qzx - log_pz).mean()),
        "n_samples": int(len(sel)),
    }
    if log_pzj is not None:
        out["dimwise_kl_per_latent"] = (log_qzj - log_pzj.to(dtype)).mean(0).double().cpu().numpy()
    return out


# --------------------------------------------------------------------------- reconstruction and models
def _images_and_scale(data, max_value):
    if hasattr(data, "images"):
        images = data.images
        if max_value is None:
            max_value = getattr(data, "max_value", None)
    else:
        images = data
    images = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if not images.is_floating_point():
        if max_value is None:
            raise ValueError("integer images need max_value (the value that maps to 1.0)")
    return images, (None if max_value is None else float(max_value))


def _device_for(device, module):
    """``device`` if given, else the device of ``module``'s parameters (an encoder trained on a GPU gets its
    batches there), else the CPU."""
    return _pick_device(module_device(module) if device is None else device)


def _check_not_empty(images) -> None:
    if images.dim() == 0 or images.shape[0] == 0:
        raise ValueError(f"the dataset has no images (images of shape {tuple(images.shape)})")


def _to_float(x: torch.Tensor, max_value, device) -> torch.Tensor:
    x = x.to(device)
    if not x.is_floating_point():
        return x.float().div_(max_value)
    return x.float() if max_value is None else x.float().div(max_value)


@torch.no_grad()
def encode_dataset(encode: Callable, data, batch_size: int = 1024, device=None, max_value=None):
    """Posterior (mu, logvar) of every image, in the dataset's order, as float32 CPU tensors.

    encode: images (B, C, H, W) float in [0, 1] -> (mu, logvar).  data: a dataset-like object with
    ``images`` (and ``max_value`` for uint8) or an image tensor.  ``device``: where the batches go (default:
    the encoder's parameters' device when it is a module, else the CPU).
    """
    batch_size = _int_at_least("batch_size", batch_size, 1)
    images, mv = _images_and_scale(data, max_value)
    _check_not_empty(images)
    dev = _device_for(device, encode)
    mus, lvs = [], []
    for s in range(0, images.shape[0], int(batch_size)):
        m, lv = encode(_to_float(images[s:s + int(batch_size)], mv, dev))
        mus.append(m.float().cpu())
        lvs.append(lv.float().cpu())
    return torch.cat(mus), torch.cat(lvs)


@torch.no_grad()
def reconstruction_log_likelihood(encode: Callable, decode: Callable, data, batch_size: int = 1024,
                                  n_samples: int = 1, seed: int = 0, device=None, max_value=None,
                                  posteriors=None) -> float:
    """E_{p(x)} E_{q(z|x)}[log p(x|z)] of a Bernoulli decoder (the paper's reconstruction quality, Sec. 4).

    decode: z -> logits shaped like the images.  ``n_samples`` draws z = mu + sigma eps per image (noise
    from a seeded CPU generator).  Returns nats per image, averaged over the dataset and the draws.
    ``posteriors``: the (mu, logvar) of every image, as :func:`encode_dataset` returns them with the same
    ``batch_size``, to skip encoding again (the evaluation driver shares them with the MIG; same numbers).
    ``device``: where the computation runs (default: the decoder's parameters' device, else the CPU).
    """
    batch_size = _int_at_least("batch_size", batch_size, 1)
    n_samples = _int_at_least("n_samples", n_samples, 1)
    images, mv = _images_and_scale(data, max_value)
    _check_not_empty(images)
    dev = _device_for(device, decode)
    gen = _generator(seed, None)
    # integer images are checked once, on their integers (a pass over the uint8 grid, not two over its floats)
    whole = not images.is_floating_point() and images.numel() > 0
    if whole and (float(images.min()) < 0 or float(images.max()) > mv):
        raise ValueError("images must lie in [0, 1] for a Bernoulli likelihood (check max_value)")
    total, count = 0.0, 0
    for s in range(0, images.shape[0], int(batch_size)):
        x = _to_float(images[s:s + int(batch_size)], mv, dev)
        if not whole and x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise ValueError("images must lie in [0, 1] for a Bernoulli likelihood (check max_value)")
        if posteriors is None:
            mu, lv = encode(x)
        else:
            mu, lv = (t[s:s + int(batch_size)].to(dev) for t in posteriors)
        for _ in range(int(n_samples)):
            eps = torch.randn(mu.shape, generator=gen).to(dev, mu.dtype)
            logits = decode(mu + torch.exp(0.5 * lv) * eps)
            total += float(bernoulli_log_likelihood(x, logits).double().sum())
        count += x.shape[0] * int(n_samples)
    return total / count
