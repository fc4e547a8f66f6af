"""Evaluation metrics for attributions: faithfulness, localisation, complexity, randomisation.

============== ==================================================================================
module         metrics
============== ==================================================================================
faithfulness   :func:`deletion_auc`, :func:`insertion_auc` (RISE), :func:`surrogate_fidelity`
perturbation   Quantus's faithfulness metrics: :func:`faithfulness_correlation`,
               :func:`faithfulness_estimate`, :func:`monotonicity`,
               :func:`monotonicity_correlation`, :func:`pixel_flipping`,
               :func:`region_perturbation`, :func:`selectivity`, :func:`sensitivity_n`,
               :func:`irof`, :func:`road`, :func:`infidelity`,
               :func:`sufficiency`
localisation   :func:`pointing_game`, :func:`energy_in_mask`
axiomatic      :func:`local_accuracy_gap`
complexity     :func:`sparseness` (Gini), :func:`complexity` (entropy)
randomisation  :func:`spearman`, :func:`cascading_randomization` (the model-parameter test)
============== ==================================================================================

Metrics read :class:`~xaijax.core.explanation.Explanation` objects (or plain arrays of
attributions) and import no explainer family. A metric that evaluates a model takes the
explainers' arguments: ``targets`` (``None``, an int, ``(n,)`` ints or a callable on the model's
outputs) and ``batch_size`` (model rows evaluated at once; ``None`` for the backend's default),
and its result does not depend on ``batch_size``.
"""

from xaijax.metrics.axiomatic import local_accuracy_gap
from xaijax.metrics.complexity import complexity, sparseness
from xaijax.metrics.faithfulness import (
    Curve,
    deletion_auc,
    gaussian_blur,
    insertion_auc,
    surrogate_fidelity,
)
from xaijax.metrics.localisation import energy_in_mask, pointing_game
from xaijax.metrics.perturbation import (
    faithfulness_correlation,
    faithfulness_estimate,
    infidelity,
    irof,
    monotonicity,
    monotonicity_correlation,
    pixel_flipping,
    region_perturbation,
    road,
    selectivity,
    sensitivity_n,
    sufficiency,
)
from xaijax.metrics.randomisation import cascading_randomization, spearman

__all__ = [
    "Curve",
    "deletion_auc",
    "insertion_auc",
    "pointing_game",
    "energy_in_mask",
    "local_accuracy_gap",
    "surrogate_fidelity",
    "faithfulness_correlation",
    "faithfulness_estimate",
    "monotonicity",
    "monotonicity_correlation",
    "pixel_flipping",
    "region_perturbation",
    "selectivity",
    "sensitivity_n",
    "road",
    "infidelity",
    "irof",
    "sufficiency",
    "sparseness",
    "complexity",
    "spearman",
    "cascading_randomization",
    "gaussian_blur",
]
