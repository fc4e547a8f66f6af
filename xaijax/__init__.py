"""xaijax: explaining machine-learning models in JAX, compiled and batched.

The public API at a glance. Every explainer has one signature,
``explainer(model, X, [reference], *, targets=None, key=..., batch_size=None, mesh=None,
**options) -> Explanation`` (see the README's "explainer contract" section); ``xaijax.core``
holds the mechanisms they share, ``xaijax.metrics`` and ``xaijax.plots`` read their results.
The CAM family's general form is ``xaijax.cam.cam(features, head, images, weighting=...)``.
"""

from xaijax import core, perturbation, propagation
from xaijax.core.batching import DEFAULT_BATCH_SIZE, default_batch_size, evaluate, instance_mesh
from xaijax.core.compile_cache import (
    compile_cache_dir,
    disable_compile_cache,
    enable_compile_cache,
)
from xaijax.core.explanation import KINDS, Explanation
from xaijax.core.lstsq import Surrogate, fit_surrogate, lars_active_set, weighted_lstsq
from xaijax.core.masking import patch_groups, superpixel_groups
from xaijax.core.model import as_model, host_model
from xaijax.core.registry import clear_caches, explainers
from xaijax.gradients import (
    expected_gradients,
    gradient_x_input,
    integrated_gradients,
    layer_gradient_x_input,
    layer_integrated_gradients,
    noise_tunnel,
    saliency,
    smoothgrad,
)
from xaijax.lime import (
    TabularStats,
    fit_discretizer,
    get_image_and_mask,
    lime_image,
    lime_tabular,
    lime_text,
    submodular_pick,
)
from xaijax.perturbation import feature_ablation, occlusion, rise
from xaijax.propagation import deep_lift, lrp
from xaijax.shapley import (
    Background,
    UnsupportedPrimitiveError,
    coalition_plan,
    deep_shap,
    exact_shapley,
    kernel_shap,
    kmeans,
    linear_shap,
    max_shap,
    max_shapley_pairs,
    partition_shap,
    permutation_shap,
    shapley_interactions,
    shapley_kernel_weights,
)

__version__ = "0.1.0"

# Imported on first use (``xj.grad_cam``, ``from xaijax import ProtoPNet``, ``import
# xaijax.cam``), so that a command explaining a scikit-learn model pays for none of them:
# ProtoPNet and the transformer tools (built on Flax NNX, whose import costs about half a
# second), the CAM family and Tree SHAP (which explain no tabular ``f(X)``), the metrics, the
# plots and the maskers. ``xaijax.explainers()`` imports the ones holding explainers, so its
# list is complete.
_FAMILIES = {
    "xaijax.cam": (
        "ablation_cam",
        "eigen_cam",
        "eigen_grad_cam",
        "full_grad",
        "grad_cam",
        "grad_cam_plus_plus",
        "guided_backprop",
        "guided_grad_cam",
        "hires_cam",
        "kpca_cam",
        "layer_cam",
        "score_cam",
        "with_guided_relu",
        "xgrad_cam",
    ),
    "xaijax.protopnet": (
        "ProtoPNet",
        "ProtoPNetConfig",
        "TrainConfig",
        "explain_prototypes",
        "train_protopnet",
    ),
    "xaijax.transformers": (
        "attention_rollout",
        "contrastive_target",
        "generation_attribution",
        "next_token_target",
    ),
    "xaijax.trees": ("TreeEnsemble", "tree_ensemble", "tree_shap"),
}
_LAZY = {name: (module, name) for module, names in _FAMILIES.items() for name in names}
_LAZY.update(
    {
        sub: (f"xaijax.{sub}", None)
        for sub in ("cam", "maskers", "metrics", "plots", "transformers", "trees")
    }
)
core.registry.defer(*sorted(_FAMILIES))


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'xaijax' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    # results, models, the contract
    "DEFAULT_BATCH_SIZE",
    "Explanation",
    "KINDS",
    "as_model",
    "clear_caches",
    "cam",
    "compile_cache_dir",
    "disable_compile_cache",
    "enable_compile_cache",
    "core",
    "maskers",
    "metrics",
    "perturbation",
    "plots",
    "propagation",
    "transformers",
    "trees",
    "default_batch_size",
    "evaluate",
    "explainers",
    "host_model",
    # many devices
    "instance_mesh",
    # ProtoPNet
    "ProtoPNet",
    "ProtoPNetConfig",
    "TrainConfig",
    "explain_prototypes",
    "train_protopnet",
    # Shapley values
    "Background",
    "UnsupportedPrimitiveError",
    "coalition_plan",
    "deep_shap",
    "exact_shapley",
    "kernel_shap",
    "kmeans",
    "linear_shap",
    "max_shap",
    "max_shapley_pairs",
    "partition_shap",
    "permutation_shap",
    "shapley_interactions",
    "shapley_kernel_weights",
    # Tree SHAP
    "TreeEnsemble",
    "tree_ensemble",
    "tree_shap",
    # feature groups
    "patch_groups",
    "superpixel_groups",
    # LIME
    "TabularStats",
    "fit_discretizer",
    "get_image_and_mask",
    "lime_image",
    "lime_tabular",
    "lime_text",
    "submodular_pick",
    # Grad-CAM family and gradients
    "ablation_cam",
    "attention_rollout",
    "eigen_cam",
    "eigen_grad_cam",
    "full_grad",
    "expected_gradients",
    "grad_cam",
    "grad_cam_plus_plus",
    "gradient_x_input",
    "guided_backprop",
    "guided_grad_cam",
    "hires_cam",
    "kpca_cam",
    "integrated_gradients",
    "layer_cam",
    "layer_gradient_x_input",
    "layer_integrated_gradients",
    "noise_tunnel",
    # transformers
    "contrastive_target",
    "generation_attribution",
    "next_token_target",
    "saliency",
    "score_cam",
    "smoothgrad",
    "with_guided_relu",
    "xgrad_cam",
    # propagation rules
    "deep_lift",
    "lrp",
    # perturbation
    "feature_ablation",
    "occlusion",
    "rise",
    # surrogate fits
    "Surrogate",
    "fit_surrogate",
    "lars_active_set",
    "weighted_lstsq",
]
