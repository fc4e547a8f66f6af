"""The shared mechanisms every explainer family is built from, and nothing method-specific.

=============== =================================================================================
module          what it holds
=============== =================================================================================
explanation     :class:`Explanation`, its kinds and their invariants, shap-style indexing
model           adapters: JAX functions, ``(apply_fn, params)`` pairs, NNX and pytree modules,
                host (NumPy) callables through ``pure_callback``
compile_cache   compiled programs kept on disk between processes (JAX's persistent cache)
batching        the chunked evaluator (``batch_size`` model rows), the instance loop, sharding
                over a device mesh, the backend's default ``batch_size``
targets         the one ``targets`` argument: ``None``, an int, ``(n,)`` ints or a callable
contract        the way in (single-vs-batch rule, keys, option checks) and out (finite checks,
                packing the Explanation)
masking         feature groups, maskers (what a hidden feature becomes), weighted backgrounds,
                coalition scoring, segment masks
hierarchy       feature hierarchies (linkage matrices) for Owen values: checks, shap's image
                halving, correlation clustering, token spans
inpainting      harmonic and biharmonic inpainting (conjugate gradients), for inpaint maskers
lstsq           weighted least squares and the surrogate fit shared by Kernel SHAP and LIME
layers          a model cut at one layer (CAMs, layer attributions)
interpreter     jaxpr re-evaluation with per-primitive rules (Deep SHAP, guided backprop)
propagation     DeepLIFT's rules per primitive (rescale, RevealCancel, Max SHAP), shared by Deep
                SHAP and DeepLIFT; LRP's rules attach to the same primitive kinds
progress        the one progress line (training epochs, explained rows)
random          fast random bits for samplers
registry        every public explainer and what it needs
=============== =================================================================================

Method families (``shapley``, ``lime``, ``gradients``, ``cam``, ``perturbation``,
``propagation``, ``protopnet``) import ``core`` and never each other; ``metrics`` and ``plots`` read
:class:`Explanation` objects and import no family. ``tests/test_layering.py`` checks both rules.
"""

from xaijax.core.batching import (
    DEFAULT_BATCH_SIZE,
    check_mesh,
    default_batch_size,
    evaluate,
    instance_mesh,
    map_instances,
    map_row_chunks,
    over_instances,
)
from xaijax.core.compile_cache import (
    compile_cache_dir,
    disable_compile_cache,
    enable_compile_cache,
)
from xaijax.core.explanation import KINDS, Explanation, require_kind
from xaijax.core.model import Model, as_model, float_dtype, host_model
from xaijax.core.registry import ExplainerInfo, clear_caches, explainer, explainers
from xaijax.core.targets import TargetSpec, resolve_targets, select_outputs, target_scores

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ExplainerInfo",
    "Explanation",
    "KINDS",
    "Model",
    "TargetSpec",
    "as_model",
    "check_mesh",
    "clear_caches",
    "compile_cache_dir",
    "default_batch_size",
    "disable_compile_cache",
    "enable_compile_cache",
    "evaluate",
    "explainer",
    "explainers",
    "float_dtype",
    "host_model",
    "instance_mesh",
    "map_instances",
    "map_row_chunks",
    "over_instances",
    "require_kind",
    "resolve_targets",
    "select_outputs",
    "target_scores",
]
