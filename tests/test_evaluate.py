"""The evaluation driver (isa_lib.metrics.evaluate_model, the paper's numbers of Sec. 4): one encoding of the
grid shared by the MIG and the reconstruction term, with the same numbers as encoding twice."""
import math

import pytest
import torch

from isa_lib import metrics as M
from isa_lib.datasets import load
from isa_lib.train import build_vae


def test_shared_posteriors_give_the_same_reconstruction_and_encode_once():
    data = load("dsprites", subgrid={"posX": [0, 31], "posY": [0, 15, 31], "orientation": [0, 20]})
    model = build_vae("mlp", 6, seed=0).eval()
    calls = []

    def encode(x):
        calls.append(len(x))
        return model.encoder(x)

    with torch.no_grad():
        mu, lv = M.encode_dataset(encode, data, batch_size=100)
        n_enc = len(calls)
        shared = M.reconstruction_log_likelihood(encode, model.decoder, data, batch_size=100, seed=3,
                                                 posteriors=(mu, lv))
        assert len(calls) == n_enc                     # no second pass of the encoder
        again = M.reconstruction_log_likelihood(encode, model.decoder, data, batch_size=100, seed=3)
        assert shared == again
        res = M.evaluate_model(encode, data, decode=model.decoder, n_samples=50, batch_size=100, seed=3,
                               mig_dtype=torch.float32)
    assert res["reconstruction"] == again
    assert sum(calls) == 3 * len(data)                 # the driver encoded the grid once
    assert res["mig_backend"] in ("native", "native+chebyshev", "torch")


def test_reconstruction_refuses_images_outside_the_unit_interval():
    enc = lambda x: (torch.zeros(len(x), 2), torch.zeros(len(x), 2))      # noqa: E731
    dec = lambda z: torch.zeros(len(z), 1, 4, 4)                           # noqa: E731
    ok = torch.randint(0, 2, (10, 1, 4, 4), dtype=torch.uint8)
    # a Bernoulli likelihood of zero logits: log 1/2 per pixel, whatever the binary image
    assert abs(M.reconstruction_log_likelihood(enc, dec, ok, max_value=1, batch_size=3) - 16 * math.log(0.5)) < 1e-5  # float32 pixels
    wrong = ok.clone()
    wrong[7, 0, 1, 1] = 255                                                # a 0/255 image read with max_value 1
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*max_value"):
        M.reconstruction_log_likelihood(enc, dec, wrong, max_value=1, batch_size=3)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        M.reconstruction_log_likelihood(enc, dec, ok.float() * 3, batch_size=3)
    assert M.reconstruction_log_likelihood(enc, dec, wrong, max_value=255, batch_size=3) < 0
