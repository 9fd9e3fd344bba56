"""The evaluation driver (isa_lib.metrics.evaluate_model, the paper's numbers of Sec. 4): one encoding of the
grid shared by the MIG and the reconstruction term, with the same numbers as encoding twice."""
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
