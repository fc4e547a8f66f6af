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
localisation   :func:`pointing_game`, :func:`energy_in_mask`, :func:`attribution_localisation`,
               :func:`top_k_intersection`, :func:`relevance_rank_accuracy`,
               :func:`relevance_mass_accuracy`, :func:`auc`, :func:`focus`
axiomatic      :func:`local_accuracy_gap`, :func:`completeness`, :func:`non_sensitivity`,
               :func:`input_invariance`
complexity     :func:`sparseness` (Gini), :func:`complexity` (entropy),
               :func:`effective_complexity`
robustness     :func:`max_sensitivity`, :func:`avg_sensitivity`, :func:`local_lipschitz_estimate`,
               :func:`continuity`, :func:`consistency`, :func:`relative_input_stability`,
               :func:`relative_output_stability`, :func:`relative_representation_stability`
randomisation  :func:`spearman`, :func:`ssim`, :func:`cascading_randomization` (the model-parameter
               test), :func:`mprt`, :func:`smooth_mprt`, :func:`efficient_mprt`,
               :func:`random_logit`
============== ==================================================================================

:func:`evaluate_explainers` scores a dict of explainers by a list of metrics in one
:class:`MetricTable` (explainer x metric, mean and spread over instances).

Metrics read :class:`~xaijax.core.explanation.Explanation` objects (or plain arrays of
attributions) and import no explainer family. A metric that evaluates a model takes the
explainers' arguments: ``targets`` (``None``, an int, ``(n,)`` ints or a callable on the model's
outputs) and ``batch_size`` (model rows evaluated at once; ``None`` for the backend's default),
and its result does not depend on ``batch_size``. Robustness and randomisation metrics take the
explainer itself, ``explainer(model, X, targets=...)``, and re-run it (compiled when it traces).
"""

from xaijax.metrics.axiomatic import (
    completeness,
    input_invariance,
    local_accuracy_gap,
    non_sensitivity,
)
from xaijax.metrics.complexity import complexity, effective_complexity, sparseness
from xaijax.metrics.faithfulness import (
    Curve,
    deletion_auc,
    gaussian_blur,
    insertion_auc,
    surrogate_fidelity,
)
from xaijax.metrics.localisation import (
    attribution_localisation,
    auc,
    energy_in_mask,
    focus,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
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
from xaijax.metrics.randomisation import (
    LayerScores,
    cascading_randomization,
    efficient_mprt,
    mprt,
    random_logit,
    smooth_mprt,
    spearman,
    ssim,
)
from xaijax.metrics.robustness import (
    avg_sensitivity,
    consistency,
    continuity,
    local_lipschitz_estimate,
    max_sensitivity,
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
)
from xaijax.metrics.table import MetricTable, evaluate_explainers

__all__ = [
    "evaluate_explainers",
    "MetricTable",
    "Curve",
    "deletion_auc",
    "insertion_auc",
    "pointing_game",
    "energy_in_mask",
    "attribution_localisation",
    "top_k_intersection",
    "relevance_rank_accuracy",
    "relevance_mass_accuracy",
    "auc",
    "focus",
    "local_accuracy_gap",
    "completeness",
    "non_sensitivity",
    "input_invariance",
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
    "effective_complexity",
    "spearman",
    "cascading_randomization",
    "gaussian_blur",
    "max_sensitivity",
    "avg_sensitivity",
    "local_lipschitz_estimate",
    "continuity",
    "consistency",
    "relative_input_stability",
    "relative_output_stability",
    "relative_representation_stability",
    "LayerScores",
    "ssim",
    "mprt",
    "smooth_mprt",
    "efficient_mprt",
    "random_logit",
]
