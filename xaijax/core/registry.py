"""Every public explainer, with what it needs: the contract suite and the CLI read this list.

An explainer registers itself with the :func:`explainer` decorator, which records its metadata and
returns the function unchanged. ``tests/contract/`` runs over every registered explainer (and
fails for one that has no test case), and ``xaijax explain`` offers every tabular one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

__all__ = ["ExplainerInfo", "defer", "explainer", "explainers", "register_cache", "clear_caches"]

_REGISTRY: dict[str, ExplainerInfo] = {}
_CACHES: list = []
_DEFERRED: list[str] = []  # modules whose explainers register when first imported


@dataclasses.dataclass(frozen=True)
class ExplainerInfo:
    """What an explainer is and what it needs.

    Attributes:
        name: the public name (``xaijax.<name>``).
        fn: the function.
        kind: the :class:`~xaijax.core.explanation.Explanation` kind it returns.
        inputs: ``"any"`` (rows, images, ...), ``"tabular"`` (rows ``(M,)``), ``"image"``
            (``(H, W, C)``) or ``"text"`` (strings).
        reference: the name of its reference argument (``"background"``,
            ``"training_data"``), or ``None``.
        random: whether it takes ``key``.
        needs_jax: whether the model must be a JAX model, differentiated or re-interpreted (no
            host models).
        model_form: ``"model"`` (``f(X)``), ``"layer"`` (``features, head`` or a module and a
            layer path), ``"module"`` (a Flax NNX module the explainer walks for its layers, e.g.
            FullGrad), ``"coefficients"`` (``coef, intercept``), ``"protopnet"`` (a trained
            :class:`~xaijax.protopnet.ProtoPNet`, whose own prototypes are the evidence) or
            ``"attention"`` (an NNX transformer whose attention weights are submodule outputs)
            or ``"tree"`` (a fitted tree ensemble: scikit-learn or XGBoost).
    """

    name: str
    fn: Callable
    kind: str
    inputs: str = "any"
    reference: str | None = None
    random: bool = False
    needs_jax: bool = False
    model_form: str = "model"


def explainer(
    *,
    kind: str,
    inputs: str = "any",
    reference: str | None = None,
    random: bool = False,
    needs_jax: bool = False,
    model_form: str = "model",
):
    """Register the decorated function as a public explainer (returned unchanged)."""

    def register(fn: Callable) -> Callable:
        _REGISTRY[fn.__name__] = ExplainerInfo(
            fn.__name__, fn, kind, inputs, reference, random, needs_jax, model_form
        )
        return fn

    return register


def explainers(*, deferred: bool = True) -> dict[str, ExplainerInfo]:
    """Every registered explainer by name (import :mod:`xaijax` first to register them all).

    Modules the package imports only on first use (:func:`defer`) are imported here, so the list
    is complete; ``deferred=False`` lists only those already imported (what the command line
    does for tabular models: the deferred modules hold none).

    Example:
        >>> import xaijax
        >>> explainers()["kernel_shap"].kind
        'additive'
    """
    import importlib

    while deferred and _DEFERRED:
        importlib.import_module(_DEFERRED.pop())
    return dict(_REGISTRY)


def defer(*modules: str) -> None:
    """Name modules that register explainers but are imported on first use, not with the
    package (they need Flax, whose import costs half a second a command need not pay);
    :func:`explainers` imports them."""
    _DEFERRED.extend(modules)


def register_cache(cache):
    """Register a module-level cache (a dict, or a ``functools.cache``'d function) so that
    :func:`clear_caches` empties it; returns it unchanged."""
    _CACHES.append(cache)
    return cache


def clear_caches() -> None:
    """Empty every cache xaijax keeps between calls, and JAX's compilation caches.

    xaijax memoises a few pure computations across calls (coalition plans, shape probes, weight
    tables); nothing in them depends on data, but this frees their memory and forces everything
    to be rebuilt (e.g. after changing ``XAIJAX_HOST_THREADS``).

    Example:
        >>> clear_caches()
    """
    import jax

    for cache in _CACHES:
        (cache.cache_clear if hasattr(cache, "cache_clear") else cache.clear)()
    jax.clear_caches()
