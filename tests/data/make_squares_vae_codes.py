"""Makes tests/data/squares_vae_codes.npz, the posteriors of a small trained VAE that
tests/test_conformance.py scores with isa_lib's metrics and disent's.

A beta-VAE (beta = 1; App. A.4 MLP shrunk to 64 hidden units on 16 x 16 images, 5 latents, seed 0) trained
for 1,500 epochs (13,500 steps of 32 images, Adam 1e-3; 91 s on one CPU thread, torch 2.13.0) on the 300
images of tests/test_conformance.squares_grid (one square: side 4, 5 or 6, top-left row and column 0..9).
It ends with KL 4.2 nats and one active latent (the other four collapsed to standard deviation ~0.03 of
their means): the posterior of a real trained model, collapsed latents included.  Stored: encoder means
``mu`` and log-variances ``logvar`` (300, 5) and factor classes ``classes`` (300, 3).

Run from the repository root: .venv/bin/python tests/data/make_squares_vae_codes.py
"""
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from isa_lib.train import TrainConfig, build_vae, train  # noqa: E402
from test_conformance import squares_grid  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    img, cl = squares_grid()
    model = build_vae("mlp", 5, seed=0, net_size={"hidden": 64, "image_size": 16})
    train(model, img, TrainConfig(objective="beta_vae", beta=1.0, epochs=1500.0, batch_size=32, lr=1e-3, seed=0,
                                  log_every=500), progress=False)
    model.eval()
    with torch.no_grad():
        mu, logvar = model.encoder(img.float())
    np.savez_compressed(ROOT / "tests" / "data" / "squares_vae_codes.npz", mu=mu.double().numpy(),
                        logvar=logvar.double().numpy(), classes=cl)
