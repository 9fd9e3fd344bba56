"""Disentanglement metrics and the ELBO decomposition (paper Sec. 4, Eq. 3).

The paper measures disentanglement with the mutual information gap (MIG) of
Chen et al. (2018, "Isolating sources of disentanglement in VAEs", the
paper's ref. [6]) and reconstruction quality with E_q(z|x)[log p(x|z)].
Implementations in the field differ (encoder means versus samples, which
factors count, normalisation); this module states each choice.

Everything works on arrays, so no model is needed:

* :func:`mig_chen` - Chen et al.'s sampling estimator, from posterior means and
  log-variances of every image of the full factor grid (C order over
  ``factor_sizes``) plus the factor sizes; optionally grouped over subspaces
  (ISA layouts, :func:`groups_from_layout`).
* :func:`mig_histogram`, :func:`dci`, :func:`sap`, :func:`factorvae_score`,
  :func:`betavae_score`, :func:`modularity`, :func:`explicitness`, :func:`mig_sup` -
  the metrics of the wider literature, from codes (e.g. encoder means) and
  factor classes (:func:`grid_classes` makes those of a full grid), with
  disentanglement_lib's definitions (Locatello et al. 2019) as the defaults of
  :func:`dci` (gradient-boosted-tree importances, Eastwood & Williams 2018) and
  :func:`sap` (LinearSVC for discrete factors, Kumar et al. 2018), this library's
  earlier rules by name (``importance="lasso"``; ``mode="regression"`` or
  ``classifier="nearest_mean"``), all checked against disent in
  tests/test_conformance.py.
* :func:`gaussian_total_correlation`, :func:`gaussian_wasserstein_correlation`,
  :func:`mutual_info_score` (:func:`unsupervised_scores`: all of them) - scores
  of a code alone, without factors.
* :func:`elbo_decomposition` (Eq. 3) from means, log-variances and any
  ``log p(z)`` callable.

and for a model: :func:`encode_dataset`, :func:`reconstruction_log_likelihood`,
:func:`evaluate_model` (``scores=[...]`` adds any of :data:`SCORES` through :func:`score_codes`).

Estimator of Chen et al. (all densities diagonal Gaussian, q(z) the mixture
of the posteriors of all N images):  one sample z_n ~ q(z|x_n) is drawn per
image; H(z_j) = -mean_s log (1/N sum_n q(z_sj|x_n)) over a random subset of
``n_samples`` of those samples; H(z_j|v_k) = mean over the values v of factor
k of the same estimator restricted to the images with v_k = v (a strided slice
of the C-ordered grid); I = H(z_j) - H(z_j|v_k) is sorted over j, clamped at
0, and the gap of the two largest is divided by log |V_k| (the entropy of a
uniform grid factor) and averaged over the factors that count (MIG_FACTORS).
The sums over images are streamed in blocks (the log-densities of a block
from z - mu directly, then a log-sum-exp with a fixed shift, summed in float64
across blocks), so memory is bounded by about ``2 * sample_chunk * row_chunk``
numbers (times the number of groups on a GPU) and results do not depend on the
chunking beyond rounding.  The
default ``dtype=torch.float64`` is the reference; ``torch.float32`` runs the
same estimator on the same samples 2-3x faster and agrees with it to
~1e-7 nats on trained-like posteriors (tests/test_metrics.py).

One module per metric family, with the shared input checks in one place: ``_inputs`` (factors that count,
shapes, seeds), ``_mixture`` (the streamed aggregate posterior), ``_mig`` (Chen MIG, grouped MIG),
``_mig_histogram``, ``_dci``, ``_sap``, ``_factorvae``, ``_betavae``, ``_modularity`` (modularity,
explicitness), ``_mig_sup``, ``_unsupervised``, ``_binned`` (their shared histogram MI), ``_checks``
(their argument checks), ``_scores`` (scores by name), ``_elbo`` (Eq. 3 decomposition, reconstruction) and
``_evaluate`` (the driver). Import from the package: ``from isa_lib import metrics; metrics.mig_chen(...)``.
The estimators of Eq. 3 and the MIG are written out in the book's appendix "Equations"; its section 9 lists
the literature's metrics with the implementation each was checked against (tests/test_conformance.py).
"""
from __future__ import annotations

from ._betavae import betavae_score
from ._dci import dci, dci_scores
from ._elbo import elbo_decomposition, encode_dataset, reconstruction_log_likelihood
from ._evaluate import evaluate_model
from ._factorvae import factorvae_score
from ._inputs import FACTOR_NAMES, MIG_FACTORS, grid_classes, groups_from_layout, resolve_factors
from ._mig import MIGResult, mig_chen
from ._mig_histogram import mig_histogram
from ._mig_sup import mig_sup
from ._mixture import mixture_entropy
from ._modularity import explicitness, modularity
from ._sap import sap
from ._scores import SCORES, score_codes
from ._unsupervised import (gaussian_total_correlation, gaussian_wasserstein_correlation, mutual_info_score,
                            unsupervised_scores)

__all__ = [
    "MIG_FACTORS", "FACTOR_NAMES", "MIGResult", "resolve_factors", "grid_classes", "groups_from_layout",
    "mixture_entropy", "mig_chen", "mig_histogram", "dci", "dci_scores", "sap", "factorvae_score",
    "betavae_score", "modularity", "explicitness", "mig_sup", "gaussian_total_correlation",
    "gaussian_wasserstein_correlation", "mutual_info_score", "unsupervised_scores", "SCORES", "score_codes",
    "elbo_decomposition", "encode_dataset",
    "reconstruction_log_likelihood", "evaluate_model",
]
