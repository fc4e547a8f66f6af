"""Randomisation: do the attributions change when the model or the class they explain does?

The model-parameter randomisation tests re-initialise the layers of an NNX module
(:func:`cascading_randomization` for a function of the module; :func:`mprt`, :func:`smooth_mprt`
and :func:`efficient_mprt` for an explainer ``explainer(model, X, targets=...)``), and
:func:`random_logit` explains a random other class. The explainer runs compiled over all
instances, once per layer, when it traces (:mod:`xaijax.metrics.explaining`).
"""

# jaxtyping shape strings such as "n ..." are not Python expressions:

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core.contract import check_choice, check_int, check_number, instance_keys
from xaijax.core.explanation import Explanation
from xaijax.core.model import is_nnx_module
from xaijax.metrics.attributions import attribution_array
from xaijax.metrics.explaining import (
    Phase,
    Setup,
    explained_model,
    prepare_attributions,
    rows_runner,
    run_rows,
    setup,
)

__all__ = [
    "spearman",
    "ssim",
    "cascading_randomization",
    "LayerScores",
    "mprt",
    "smooth_mprt",
    "efficient_mprt",
    "random_logit",
]


def spearman(
    a: Float[ArrayLike, "n ..."] | Explanation, b: Float[ArrayLike, "n ..."] | Explanation
) -> Float[np.ndarray, " n"]:
    """Spearman rank correlation between rows of ``a`` and ``b`` (flattened), ties averaged.

    Args:
        a: ``(n, ...)`` attributions (a 1-D array is one instance) or a one-output Explanation.
        b: the same shape as ``a``.

    Returns:
        ``(n,)`` correlations in [-1, 1]; 0 where a row is constant.

    Example:
        >>> spearman([[1.0, 2.0, 3.0]], [[10.0, 20.0, 15.0]]).tolist()
        [0.5]
    """
    a, b = attribution_array(a, "a"), attribution_array(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}")
    a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a[None]
    b = b.reshape(a.shape)
    return np.asarray(_spearman(jnp.asarray(a), jnp.asarray(b)))


def _order_keys(x):
    """Integers in the order of the floats ``x`` (``-0.0`` equal to ``0.0``; no NaN)."""
    x = jnp.where(x == 0, jnp.zeros_like(x), x)
    itype = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[x.dtype.itemsize]
    k = jax.lax.bitcast_convert_type(x, itype)
    # Negative floats count down in their bits: flipping all but the sign bit reverses them.
    return jnp.where(k < 0, k ^ jnp.iinfo(itype).max, k)


def _average_ranks(x):
    # Ranks of the integer keys: XLA's CPU sort takes 0.13 s on 256 x 3,072 float32 entries
    # (the maps of one MPRT layer) and 0.02 s on int32, which made the ranks cost more than
    # the gradients.
    k = _order_keys(x)
    s = jnp.sort(k)
    lo = jnp.searchsorted(s, k, side="left")
    hi = jnp.searchsorted(s, k, side="right")
    return 0.5 * (lo + hi - 1).astype(x.dtype)


@jax.jit
def _spearman(a, b):
    def one(x, y):
        rx, ry = _average_ranks(x), _average_ranks(y)
        rx, ry = rx - rx.mean(), ry - ry.mean()
        denom = jnp.sqrt((rx * rx).sum() * (ry * ry).sum())
        return jnp.where(denom > 0, (rx * ry).sum() / jnp.where(denom > 0, denom, 1.0), 0.0)

    return jax.vmap(one)(a, b)


def _path_name(path) -> tuple:
    out = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append(getattr(k, attr))
                break
        else:
            out.append(str(k))
    return tuple(out)


def cascading_randomization(
    module, explain: Callable[[Any], Any], *, key, layers: Sequence[tuple] | None = None
) -> dict:
    """The model-parameter randomisation test: re-initialise layers from the top, cumulatively.

    For ``k = 1..L`` the top ``k`` layers of a copy of ``module`` (an NNX module) get fresh random
    weights (kernels LeCun-normal, biases 0, scales 1), ``explain(copy)`` recomputes the maps, and
    their Spearman rank correlation with the original maps is recorded, with and without absolute
    values. A method whose maps stay similar as the model is destroyed does not explain the model.

    Args:
        module: a Flax NNX module (left unchanged).
        explain: ``explain(module) -> (n, ...)`` attribution maps (or a one-output
            Explanation).
        key: a ``jax.random.key``.
        layers: paths of the layers in order from the output down, e.g. ``[("out",), ("hidden",
            1)]``; default every parameter-holding layer, last-defined first.

    Returns:
        ``{"layers": [names...], "spearman": (L, n), "spearman_abs": (L, n)}``.

    References:
        Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.

    Example:
        >>> import jax, numpy as np
        >>> from flax import nnx
        >>> net = nnx.Sequential(nnx.Linear(3, 8, rngs=nnx.Rngs(0)), nnx.relu,
        ...                      nnx.Linear(8, 1, rngs=nnx.Rngs(1)))
        >>> X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
        >>> grads = lambda m: jax.vmap(jax.grad(lambda x: m(x[None])[0, 0]))(X)
        >>> res = cascading_randomization(net, grads, key=jax.random.key(0))
        >>> res["layers"], res["spearman"].shape
        (['layers/2', 'layers/0'], (2, 5))
    """
    plan = _layer_plan(module, layers, key=key)
    original = attribution_array(explain(module), "explain(module)")
    rho, rho_abs = [], []
    for _, state in plan.states("top_down"):
        maps = attribution_array(explain(plan.merge(state)), "explain(module)")
        rho.append(spearman(original, maps))
        rho_abs.append(spearman(np.abs(original), np.abs(maps)))
    layers = plan.layers
    return {
        "layers": ["/".join(map(str, layer)) for layer in layers],
        "spearman": np.stack(rho),
        "spearman_abs": np.stack(rho_abs),
    }


def _value_of(leaf):
    return leaf.value if hasattr(leaf, "value") else leaf


def _replace_value(leaf, value):
    if hasattr(leaf, "replace"):
        return leaf.replace(value)
    return value


# -- layers of an NNX module, randomised --------------------------------------------------------
def _fresh(path: tuple, value, key):
    """A re-initialised parameter: kernels LeCun-normal, biases 0, scales 1."""
    value = jnp.asarray(value)
    if value.ndim >= 2:
        fan_in = int(np.prod(value.shape[:-1]))
        return jax.random.normal(key, value.shape, value.dtype) / np.sqrt(fan_in)
    return jnp.ones_like(value) if path[-1] == "scale" else jnp.zeros_like(value)


class _LayerPlan:
    """An NNX module's parameter-holding layers and their re-initialised parameters.

    ``layers`` run from the output down (the last-defined layer first); a layer is the path of
    the module that holds the parameters. ``states(order)`` yields ``(layer, parameters)`` with
    one more layer randomised at each step (``"top_down"``: from the output; ``"bottom_up"``:
    from the input) or only that layer (``"independent"``, in bottom-up order as Quantus).
    """

    def __init__(self, module, layers, *, key, init=None, name="module"):
        from flax import nnx

        if not is_nnx_module(module):
            raise TypeError(
                f"{name} must be a Flax NNX module (its layers are re-initialised); got "
                f"{type(module).__name__}"
            )
        key = instance_keys(key, None)
        if init is not None and not callable(init):
            raise TypeError(
                "init must be a function (path, value, key) -> new value; got "
                f"{type(init).__name__}"
            )
        self.graphdef, self.params, self.rest = nnx.split(module, nnx.Param, ...)
        leaves = jax.tree_util.tree_flatten_with_path(self.params)[0]
        # Some Flax versions end a parameter's path in the Variable's "value" field; drop it.
        names = [n[:-1] if n[-1] == "value" else n for n in (_path_name(p) for p, _ in leaves)]
        if layers is None:
            layers = []
            for path in names:
                if path[:-1] not in layers:
                    layers.append(path[:-1])
            layers = layers[::-1]
        layers = [tuple(layer) for layer in layers]
        if not layers:
            raise ValueError(f"{name} has no parameters to randomise")
        for layer in layers:
            if not any(path[: len(layer)] == layer for path in names):
                raise ValueError(
                    f"layers: no parameters under {layer}; parameter paths are {names}"
                )
        self.layers, self.names = layers, names
        self.leaves = [leaf for _, leaf in leaves]
        self.treedef = jax.tree_util.tree_structure(self.params)
        self.keys = jax.random.split(key, len(names))
        self.init = init or _fresh

    def layer_names(self, layers) -> list[str]:
        return ["/".join(map(str, layer)) for layer in layers]

    def merge(self, params):
        from flax import nnx

        return nnx.merge(self.graphdef, params, self.rest)

    def _randomise(self, current, layer):
        for j, path in enumerate(self.names):
            if path[: len(layer)] == layer:
                new = jnp.asarray(self.init(path, _value_of(current[j]), self.keys[j]))
                old = _value_of(current[j])
                if new.shape != np.shape(old):
                    raise ValueError(
                        f"init returned shape {new.shape} for {path} of shape {np.shape(old)}"
                    )
                current[j] = _replace_value(current[j], new.astype(jnp.asarray(old).dtype))
        return current

    def order(self, layer_order: str) -> list[tuple]:
        return self.layers if layer_order == "top_down" else self.layers[::-1]

    def states(self, layer_order: str = "top_down"):
        current = list(self.leaves)
        for layer in self.order(layer_order):
            if layer_order == "independent":
                current = list(self.leaves)
            current = self._randomise(current, layer)
            yield layer, jax.tree_util.tree_unflatten(self.treedef, current)


def _layer_plan(module, layers, *, key, init=None):
    return _LayerPlan(module, layers, key=key, init=init)


# -- similarities of attribution maps -------------------------------------------------------------
def _pearson(a, b):
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = jnp.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return jnp.where(denom > 0, (a * b).sum(axis=1) / jnp.where(denom > 0, denom, 1.0), 0.0)


def _window_mean(x, size):
    """Means over every full window of ``size`` entries along axis 1 (``(r, m - size + 1)``)."""
    # A sum of shifted slices, not a difference of cumulative sums: that loses the small
    # variances of smooth maps to cancellation in float32.
    m = x.shape[1] - size + 1
    return sum(x[:, w : w + m] for w in range(size)) / size


def ssim(a, b, *, win_size: int = 7):
    """The structural similarity of flattened maps, row by row, as scikit-image computes it.

    Quantus's default similarity for the random logit test: ``skimage.metrics.
    structural_similarity`` of the two flattened maps (a 1-D signal) with a ``win_size``
    uniform window, sample covariances, ``K1 = 0.01``, ``K2 = 0.03`` and the data range of
    both maps together, averaged over the windows that fit (scikit-image's crop).

    Args:
        a, b: ``(r, m)`` maps, ``m >= win_size``.
        win_size: the odd window length.

    Returns:
        ``(r,)`` similarities in [-1, 1].

    References:
        Wang et al., "Image Quality Assessment: From Error Visibility to Structural
        Similarity", IEEE TIP 2004.

    Example:
        >>> import numpy as np
        >>> x = np.arange(10.0)[None]
        >>> float(ssim(x, x)[0])
        1.0
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape[1] < win_size:
        raise ValueError(
            f"ssim needs maps of at least win_size={win_size} entries; got {a.shape[1]}"
        )
    both = jnp.concatenate([a, b], axis=1)
    R = both.max(axis=1, keepdims=True) - both.min(axis=1, keepdims=True)
    C1, C2 = (0.01 * R) ** 2, (0.03 * R) ** 2
    cov_norm = win_size / (win_size - 1)
    ux, uy = _window_mean(a, win_size), _window_mean(b, win_size)
    vx = cov_norm * (_window_mean(a * a, win_size) - ux * ux)
    vy = cov_norm * (_window_mean(b * b, win_size) - uy * uy)
    vxy = cov_norm * (_window_mean(a * b, win_size) - ux * uy)
    S = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux**2 + uy**2 + C1) * (vx + vy + C2))
    return S.mean(axis=1)


_pearson_jit = jax.jit(_pearson)
_ssim_jit = jax.jit(ssim)


def _similarity(similarity_func):
    if callable(similarity_func):
        return similarity_func
    name = check_choice("similarity_func", similarity_func, ("spearman", "pearson", "ssim"))
    return {"spearman": _spearman, "pearson": _pearson_jit, "ssim": _ssim_jit}[name]


# -- model parameter randomisation tests ----------------------------------------------------------
class LayerScores(NamedTuple):
    """Scores per randomised layer: ``layers`` (names, in the order randomised) and
    ``scores (L, n)``, one row per layer, one column per instance."""

    layers: list[str]
    scores: np.ndarray


def _check_order(layer_order):
    return check_choice("layer_order", layer_order, ("top_down", "bottom_up", "independent"))


def _explanations(s: Setup, explainer, plan, *, normalise, absolute, rows=None):
    """``explain(state) -> (n, m)``: the prepared attributions of ``X`` for a parameter state,
    compiled once for every state when the explainer traces. ``rows`` (``(make, per_instance)``)
    replaces the plain inputs by ``per_instance`` rows per instance, averaged (SmoothGrad)."""
    n = s.X.shape[0]
    make, per = rows or ((lambda r, ops: ops["X"][r]), 1)

    def score(r, x, a, ops):
        return a if per > 1 else prepare_attributions(a, normalise=normalise, absolute=absolute)

    ops = dict(X=jnp.asarray(s.X), keys=s.keys, scale=s.scale)
    targets = np.repeat(s.targets, per) if isinstance(s.targets, np.ndarray) else s.targets
    phase = Phase(n * per, make, score, targets)
    graphdef = plan.graphdef

    def model_of(p):  # the parameters and the rest of the state, both traced
        from flax import nnx

        return nnx.merge(graphdef, *p)

    run = rows_runner(
        explainer, model_of, (plan.params, plan.rest), ops, [phase], batch_size=s.batch_size,
        cache_key=("explanations", graphdef, per, normalise, absolute),
    )  # fmt: skip

    def explain(params):
        ((a, finite),) = run((params, plan.rest), ops)
        if not np.all(finite):
            raise ValueError("explainer returned NaN or inf attributions")
        if per > 1:
            a = jnp.asarray(a).reshape(n, per, -1).mean(axis=1)
            a = prepare_attributions(a, normalise=normalise, absolute=absolute)
        return jnp.asarray(a)

    return explain


class _RandSetup(NamedTuple):
    X: np.ndarray
    targets: Any
    batch_size: int
    keys: Any
    scale: Any


def _rand_setup(model, X, explainer, targets, batch_size):
    if not is_nnx_module(model):
        raise TypeError(
            "model must be a Flax NNX module: randomisation tests re-initialise its layers; got "
            f"{type(model).__name__}"
        )
    return setup(model, X, explainer, targets, batch_size)


def _mprt_like(
    model, X, explainer, *, targets, key, batch_size, layers, init, layer_order,
    similarity_func, normalise, abs, return_average_correlation, return_last_correlation,
    skip_layers, smooth=None,
):  # fmt: skip
    layer_order = _check_order(layer_order)
    if return_average_correlation and return_last_correlation:
        raise ValueError(
            "return_average_correlation and return_last_correlation cannot both be True"
        )
    if return_average_correlation and skip_layers:
        raise ValueError("return_average_correlation needs every layer: set skip_layers=False")
    similarity = _similarity(similarity_func)
    s = _rand_setup(model, X, explainer, targets, batch_size)
    key = instance_keys(key, None)
    plan_key, noise_key = jax.random.split(key)
    plan = _LayerPlan(model, layers, key=plan_key, init=init, name="model")
    n = s.X.shape[0]
    rows = None
    if smooth is not None:
        nr_samples, magnitude = smooth
        Xf = s.X.reshape(n, -1)
        scale = magnitude * (Xf.max(axis=1) - Xf.min(axis=1))

        def make(r, ops):
            i, k = r // nr_samples, r % nr_samples
            x = ops["X"][i]
            noise = jax.vmap(
                lambda kk, j: jax.random.normal(jax.random.fold_in(kk, j), x.shape[1:], x.dtype)
            )(ops["keys"][i], k)
            # The last sample is the input itself, as Quantus's smooth MPRT.
            keep = (k < nr_samples - 1).astype(x.dtype) * ops["scale"][i]
            return x + keep.reshape((-1,) + (1,) * (x.ndim - 1)) * noise

        rows = (make, nr_samples)
        keys, scale = instance_keys(noise_key, n), jnp.asarray(scale)
    else:
        keys, scale = None, None
    rs = _RandSetup(s.X, s.targets, s.batch_size, keys, scale)
    explain = _explanations(rs, explainer, plan, normalise=normalise, absolute=abs, rows=rows)
    original = explain(plan.params)
    names, scores = [], []
    order = plan.order(layer_order)
    for step, (layer, params) in enumerate(plan.states(layer_order)):
        if skip_layers and step + 1 < len(order):
            continue
        names.append("/".join(map(str, layer)))
        scores.append(np.asarray(similarity(original, explain(params)), np.float64))
    scores = np.stack(scores)
    if return_average_correlation:
        out = scores.mean(axis=0)
    elif return_last_correlation:
        out = scores[-1]
    else:
        return LayerScores(names, scores[:, 0] if s.single else scores)
    return out[0] if s.single else out


_COMMON_ARGS = """model: a Flax NNX module (its parameters are re-initialised; it is left
            unchanged), ``X -> (n,)`` or ``(n, K)``.
        X: ``(n, ...)`` inputs (or one input).
        explainer: ``explainer(model, X, targets=...) -> (n, ...)`` attributions or an
            Explanation, e.g. ``xj.saliency``; it gets the randomised modules. A JAX function
            of the module and ``X`` runs compiled, once for all layers.
        targets: ``None`` (the class the original model predicts), an int, ``(n,)`` ints or a
            callable on the outputs.
        key: a ``jax.random.key``: the new parameters (and any noise).
        batch_size: explainer rows per chunk; ``None`` for the default.
        layers: the layers' paths from the output down, e.g. ``[("out",), ("hidden", 1)]``;
            default every parameter-holding layer, last-defined first.
        init: ``(path, value, key) -> new value`` for one parameter; default LeCun-normal
            kernels, zero biases and unit scales."""


def mprt(
    model,
    X: Float[ArrayLike, "n ..."],
    explainer: Callable,
    *,
    targets=None,
    key=None,
    batch_size: int | None = None,
    layers: Sequence[tuple] | None = None,
    init: Callable | None = None,
    layer_order: str = "top_down",
    similarity_func: str | Callable = "spearman",
    normalise: bool = True,
    abs: bool = True,
    return_average_correlation: bool = False,
    return_last_correlation: bool = False,
    skip_layers: bool = False,
):
    """The model parameter randomisation test (MPRT): attributions of a progressively
    randomised model compared with the original ones.

    Layer by layer (``layer_order="top_down"``: from the output, cumulatively, Adebayo et al.'s
    cascading test; ``"bottom_up"``; ``"independent"``: one layer at a time) the parameters
    are re-initialised, the explainer re-run, and each map compared with the original one by
    ``similarity_func``. A method whose maps stay similar as the model is destroyed does not
    explain the model: low similarity is better.

    Args:
        {common}
        layer_order: ``"top_down"``, ``"bottom_up"`` or ``"independent"``.
        similarity_func: ``"spearman"`` (default, as Quantus), ``"pearson"``, ``"ssim"`` or a
            JAX function ``(a (n, m), b (n, m)) -> (n,)`` of flattened maps.
        normalise: divide each map by its largest magnitude (per instance; Quantus divides by
            the largest of the whole batch).
        abs: compare absolute maps (after ``normalise``).
        return_average_correlation: return the mean over the randomised layers, ``(n,)``.
            Quantus 0.6 also averages in its ``"original"`` entry (the unrandomised model's
            similarity with itself, 1) because it skips a key named ``"orig"``; here only the
            randomised layers count, as in Hedström et al.
        return_last_correlation: return the fully randomised model's similarity, ``(n,)``.
        skip_layers: compute only the last step (the fully randomised model).

    Returns:
        A :class:`LayerScores` ``(layers, scores (L, n))``, or ``(n,)`` with
        ``return_average_correlation`` or ``return_last_correlation``.

    References:
        Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.

    Example:
        >>> import jax, numpy as np
        >>> from flax import nnx
        >>> net = nnx.Sequential(nnx.Linear(3, 8, rngs=nnx.Rngs(0)), nnx.relu,
        ...                      nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
        >>> grad = lambda m, X, targets: jax.vmap(jax.grad(lambda x, t: m(x[None])[0, t]))(
        ...     X, targets)
        >>> X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
        >>> res = mprt(net, X, grad, key=jax.random.key(0))
        >>> res.layers, res.scores.shape
        (['layers/2', 'layers/0'], (2, 5))
    """
    return _mprt_like(
        model, X, explainer, targets=targets, key=key, batch_size=batch_size, layers=layers,
        init=init, layer_order=layer_order, similarity_func=similarity_func,
        normalise=normalise, abs=abs, return_average_correlation=return_average_correlation,
        return_last_correlation=return_last_correlation, skip_layers=skip_layers,
    )  # fmt: skip


def smooth_mprt(
    model,
    X: Float[ArrayLike, "n ..."],
    explainer: Callable,
    *,
    targets=None,
    key=None,
    batch_size: int | None = None,
    layers: Sequence[tuple] | None = None,
    init: Callable | None = None,
    layer_order: str = "bottom_up",
    nr_samples: int = 50,
    noise_magnitude: float = 0.1,
    similarity_func: str | Callable = "spearman",
    normalise: bool = True,
    abs: bool = True,
    return_average_correlation: bool = False,
    return_last_correlation: bool = False,
    skip_layers: bool = False,
):
    """Smooth MPRT (sMPRT): the MPRT on attributions averaged over noisy copies of the input.

    Each map is the mean of the explainer's maps on ``nr_samples`` inputs ``x + eps``, ``eps ~
    N(0, sigma^2)`` with ``sigma = noise_magnitude * (max x - min x)`` per instance, the last
    sample noise-free (as Quantus); the same noise serves every layer. Maps are normalised by
    the root of their mean square (Binder et al.'s second-moment normalisation) before the
    comparison. Otherwise as :func:`mprt`, bottom-up by default.

    Args:
        {common}
        layer_order, similarity_func, abs, return_average_correlation,
            return_last_correlation, skip_layers: as :func:`mprt`.
        nr_samples: noisy inputs per map (``nr_samples - 1`` noisy, one clean).
        noise_magnitude: the noise level relative to the input's range.
        normalise: the second-moment normalisation, per instance (Quantus's divides by the
            whole batch's second moment, which its ``normalise_func_kwargs`` cannot change).

    Returns:
        As :func:`mprt`.

    References:
        Hedström et al., "Sanity Checks Revisited: An Exploration to Repair the Model Parameter
        Randomisation Test", XAI in Action workshop, NeurIPS 2023.

    Example:
        >>> import jax, numpy as np
        >>> from flax import nnx
        >>> net = nnx.Sequential(nnx.Linear(3, 8, rngs=nnx.Rngs(0)), nnx.relu,
        ...                      nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
        >>> grad = lambda m, X, targets: jax.vmap(jax.grad(lambda x, t: m(x[None])[0, t]))(
        ...     X, targets)
        >>> X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
        >>> smooth_mprt(net, X, grad, key=jax.random.key(0), nr_samples=4,
        ...             return_last_correlation=True).shape
        (5,)
    """
    nr_samples = check_int("nr_samples", nr_samples)
    noise_magnitude = check_number("noise_magnitude", noise_magnitude)
    return _mprt_like(
        model, X, explainer, targets=targets, key=key, batch_size=batch_size, layers=layers,
        init=init, layer_order=layer_order, similarity_func=similarity_func,
        normalise="second_moment" if normalise else False, abs=abs,
        return_average_correlation=return_average_correlation,
        return_last_correlation=return_last_correlation, skip_layers=skip_layers,
        smooth=(nr_samples, noise_magnitude),
    )  # fmt: skip


def _entropy(a, n_bins):
    """Shannon entropy (nats) of the histogram of each row, ``n_bins`` bins over its range."""
    out = np.empty(len(a))
    for i, row in enumerate(np.asarray(a, np.float64)):
        hist, _ = np.histogram(row, bins=n_bins)
        p = hist[hist > 0] / hist.sum()
        out[i] = -(p * np.log(p)).sum()
    return out


def efficient_mprt(
    model,
    X: Float[ArrayLike, "n ..."],
    explainer: Callable,
    *,
    targets=None,
    key=None,
    batch_size: int | None = None,
    layers: Sequence[tuple] | None = None,
    init: Callable | None = None,
    n_bins: int = 100,
    normalise: bool = False,
    abs: bool = False,
):
    """Efficient MPRT (eMPRT): the relative rise in the complexity of the maps when every
    layer is randomised.

    The score is ``(H(a') - H(a)) / H(a)``, ``H`` the discrete entropy of a map's histogram
    (``n_bins`` bins over its range, Quantus's default when no binning rule is given), ``a``
    the original map and ``a'`` that of the fully randomised model. A faithful explanation of
    a trained model is simpler than one of a random model: higher is better.

    Args:
        {common}
        n_bins: histogram bins.
        normalise: the second-moment normalisation first (it does not change a histogram's
            entropy; kept for Quantus's option).
        abs: histogram the absolute maps.

    Returns:
        ``(n,)`` scores (a 0-d array for one input).

    References:
        Hedström et al., "Sanity Checks Revisited: An Exploration to Repair the Model Parameter
        Randomisation Test", XAI in Action workshop, NeurIPS 2023.

    Example:
        >>> import jax, numpy as np
        >>> from flax import nnx
        >>> net = nnx.Sequential(nnx.Linear(16, 8, rngs=nnx.Rngs(0)), nnx.relu,
        ...                      nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
        >>> grad = lambda m, X, targets: jax.vmap(jax.grad(lambda x, t: m(x[None])[0, t]))(
        ...     X, targets)
        >>> X = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
        >>> efficient_mprt(net, X, grad, key=jax.random.key(0), n_bins=10).shape
        (5,)
    """
    n_bins = check_int("n_bins", n_bins)
    s = _rand_setup(model, X, explainer, targets, batch_size)
    plan = _LayerPlan(model, layers, key=key, init=init, name="model")
    rs = _RandSetup(s.X, s.targets, s.batch_size, None, None)
    norm = "second_moment" if normalise else False
    explain = _explanations(rs, explainer, plan, normalise=norm, absolute=abs)
    original = _entropy(explain(plan.params), n_bins)
    *_, (_, randomised) = plan.states("bottom_up")
    scores = (_entropy(explain(randomised), n_bins) - original) / original
    return scores[0] if s.single else scores


def random_logit(
    model,
    X: Float[ArrayLike, "n ..."],
    explainer: Callable,
    *,
    targets=None,
    key=None,
    batch_size: int | None = None,
    similarity_func: str | Callable = "ssim",
    normalise: bool = True,
    abs: bool = False,
):
    """The random logit test: the map for the explained class against the map for a random
    other class.

    For each instance a class ``c' != c`` is drawn uniformly (``c`` the explained class) and
    the two maps are compared by ``similarity_func`` (default SSIM of the flattened maps, as
    Quantus). A class-discriminative explanation gives dissimilar maps: lower is better.

    Args:
        model: any model (JAX function, NNX module, host callable) with ``K >= 2`` outputs.
        X: ``(n, ...)`` inputs (or one input).
        explainer: ``explainer(model, X, targets=...)``, as :func:`mprt`.
        targets: ``None`` (the predicted class) or ints: the explained class ``c``.
        key: a ``jax.random.key`` or ``(n,)`` keys: the random classes.
        batch_size: explainer rows per chunk.
        similarity_func: ``"ssim"``, ``"spearman"``, ``"pearson"`` or a JAX function
            ``(a (n, m), b (n, m)) -> (n,)``.
        normalise, abs: as :func:`mprt` (Quantus's defaults: normalised, signed).

    Returns:
        ``(n,)`` similarities (a 0-d array for one input).

    References:
        Sixt, Granz and Landgraf, "When Explanations Lie: Why Many Modified BP Attributions
        Fail", ICML 2020.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> W = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)
        >>> f = lambda X: X @ W
        >>> grad = lambda f, X, targets: jax.vmap(jax.grad(lambda x, t: f(x[None])[0, t]))(
        ...     X, targets)
        >>> X = np.ones((4, 8), np.float32)
        >>> random_logit(f, X, grad, key=jax.random.key(0)).shape
        (4,)
    """
    if callable(targets) and not isinstance(targets, (np.ndarray, jax.Array)):
        raise TypeError("targets must be None, an int or (n,) ints for random_logit (a class)")
    similarity = _similarity(similarity_func)
    s = setup(model, X, explainer, targets, batch_size)
    if s.model.num_outputs is None or s.model.num_outputs < 2:
        raise ValueError(
            f"model must have K >= 2 outputs for random_logit; its output shape is "
            f"{s.model.output_shape}"
        )
    K = s.model.num_outputs
    n = s.X.shape[0]
    keys = instance_keys(key, n)
    c = np.asarray(s.targets)
    offset = np.asarray(jax.vmap(lambda k: jax.random.randint(k, (), 1, K))(keys))
    other = ((c + offset) % K).astype(np.int32)

    # Both classes' maps in one pass: rows 0..n-1 explain c, rows n..2n-1 the other class.
    model_of, params, model_key = explained_model(s)
    (a,), finite = run_rows(
        explainer,
        model_of,
        params,
        total=2 * n,
        batch_size=s.batch_size,
        make=lambda r, x: x[r % n],
        score=lambda r, x, a, o: (prepare_attributions(a, normalise=normalise, absolute=abs),),
        operands=jnp.asarray(s.X),
        targets=np.concatenate([c, other]).astype(np.int32),
        cache_key=("random_logit", normalise, abs, model_key),
    )
    if not np.all(finite):
        raise ValueError("explainer returned NaN or inf attributions")
    a = jnp.asarray(a)
    scores = np.asarray(similarity(a[:n], a[n:]), np.float64)
    return scores[0] if s.single else scores


for _fn in (mprt, smooth_mprt, efficient_mprt):
    _fn.__doc__ = _fn.__doc__.replace("{common}", _COMMON_ARGS)
