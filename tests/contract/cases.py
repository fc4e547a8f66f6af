"""Small models and inputs for every public explainer, chosen by what the registry says it needs.

A new explainer joins the contract suite by registering itself (``@xaijax.core.explainer``):
its case is built from its metadata (the model form, the inputs, the reference argument), so it
needs no entry here unless it needs other sizes (``OPTIONS``) or a new model form
(:func:`case_for` raises for an unknown form, which fails the suite until a case is added).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.registry import ExplainerInfo

N, M, K = 3, 4, 3  # instances, features, outputs
H = W = 8  # image size
_rng = np.random.default_rng(0)
X_TAB = _rng.normal(size=(N, M)).astype(np.float32)
BACKGROUND = _rng.normal(size=(6, M)).astype(np.float32)
TRAINING = _rng.normal(size=(40, M)).astype(np.float32)
W1 = jnp.asarray(_rng.normal(size=(M, 8)) / 2, jnp.float32)
W2 = jnp.asarray(_rng.normal(size=(8, K)), jnp.float32)
IMAGES = _rng.uniform(size=(N, H, W, 3)).astype(np.float32)
IMAGE_BG = _rng.uniform(size=(4, H, W, 3)).astype(np.float32)
CONV = jnp.asarray(_rng.normal(size=(3, 3, 3, 4)) / 3, jnp.float32)
HEAD = jnp.asarray(_rng.normal(size=(4, K)), jnp.float32)
TEXTS = ["a good film", "a bad and dull film", "good acting but bad plot"]
COEF = _rng.normal(size=(M, K)).astype(np.float32)
INTERCEPT = _rng.normal(size=(K,)).astype(np.float32)


def mlp(X):
    """A smooth tabular model ``(n, 4) -> (n, 3)``."""
    return jax.nn.softmax(jnp.tanh(X @ W1) @ W2, axis=-1)


def relu_mlp(X):
    return jax.nn.relu(X @ W1) @ W2


def conv_features(X):
    dn = jax.lax.conv_dimension_numbers(X.shape, CONV.shape, ("NHWC", "HWIO", "NHWC"))
    return jax.nn.relu(jax.lax.conv_general_dilated(X, CONV, (1, 1), "SAME", dimension_numbers=dn))


def conv_head(A):
    return A.mean(axis=(1, 2)) @ HEAD


def cnn(X):
    return conv_head(conv_features(X))


def text_classifier(docs):
    """A host model on strings: P(positive) from counts of 'good' and 'bad'."""
    score = np.array([d.count("good") - d.count("bad") for d in docs], np.float32)
    p = 1 / (1 + np.exp(-score))
    return np.stack([1 - p, p], axis=1)


# Sizes that keep each explainer fast (samples, steps, ...); everything else is the default.
OPTIONS: dict[str, dict] = {
    "kernel_shap": {"num_samples": 8},  # fewer than the 14 coalitions: sampled, so keyed
    "permutation_shap": {"num_permutations": 2},
    "lime_tabular": {"num_samples": 64},
    "lime_image": {"num_samples": 32, "segments": np.repeat(np.arange(4), 16).reshape(H, W)},
    "lime_text": {"num_samples": 32},
    "smoothgrad": {"num_samples": 4},
    "integrated_gradients": {"num_steps": 8},
    "layer_integrated_gradients": {"num_steps": 8},
    "expected_gradients": {"num_samples": 8},
    "score_cam": {},
    "ablation_cam": {},
    "occlusion": {"window": (2,)},
    "rise": {"num_masks": 16, "cell_size": 4},
    # 8 of the full recursion's 10 + 2 evaluations: the budgeted best-first queue runs.
    "partition_shap": {"max_evals": 8},
    # Sampled (two permutations), so keyed; k-SII is efficient, so the invariant is checked.
    "shapley_interactions": {"method": "permutation", "index": "k-SII", "budget": 32},
}
# Closed forms with no model to compose a callable target with, and ProtoPNet (whose evidence is
# per class): a callable target is refused with a TypeError.
# NaN in X is a missing value these explainers route as the model does, not bad input.
ACCEPTS_MISSING = {"tree_shap"}
NO_CALLABLE_TARGETS = {"linear_shap", "max_shap", "explain_prototypes", "tree_shap"}
PROTO_IMAGES = _rng.uniform(size=(N, 24, 24, 3)).astype(np.float32)


def _protopnet():
    from xaijax.protopnet import ProtoPNet, ProtoPNetConfig

    config = ProtoPNetConfig(img_size=24, num_classes=K, num_prototypes=6, channels=(4, 4))
    return ProtoPNet(config, key=jax.random.key(0))


def _conv_module():
    """A small NNX CNN (conv with bias -> ReLU -> mean -> dense) for explainers that walk a
    module (FullGrad); the same computation as :func:`cnn` with a zero conv bias."""
    from flax import nnx

    class ConvNet(nnx.Module):
        def __init__(self):
            rngs = nnx.Rngs(0)
            self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
            self.conv.kernel = nnx.Param(CONV)
            self.conv.bias = nnx.Param(jnp.full((4,), 0.1, jnp.float32))
            self.fc = nnx.Linear(4, K, use_bias=False, rngs=rngs)
            self.fc.kernel = nnx.Param(HEAD)

        def __call__(self, x):
            return self.fc(jax.nn.relu(self.conv(x)).mean(axis=(1, 2)))

    return ConvNet()


def _wrap_module(module, wrap):
    """An NNX module computing ``wrap(module.__call__)``: the wrapped module stays a submodule,
    so its layers are still found by walking."""
    from flax import nnx

    class Wrapped(nnx.Module):
        def __init__(self):
            self.inner = module

        def __call__(self, x):
            return wrap(self.inner)(x)

    return Wrapped()


# Explainers whose tabular case uses the ReLU network (DeepLIFT's rules are exact there).
RELU = {"deep_shap", "deep_lift"}


def _token_transformer():
    """A tiny NNX transformer over the M tabular features as tokens (a Linear(1, d) embedding
    of each value, learned positions, one zoo block): attention ``blocks/0/attn/weights``."""
    from flax import nnx

    from xaijax.zoo.nets import module_list
    from xaijax.zoo.transformers import TransformerBlock

    class TokenTransformer(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Linear(1, 8, rngs=rngs)
            self.pos = nnx.Param(jax.random.normal(jax.random.key(1), (1, M, 8)) * 0.3)
            self.blocks = module_list([TransformerBlock(8, 2, 16, rngs=rngs)])
            self.head = nnx.Linear(8, K, rngs=rngs)

        def __call__(self, X):
            if X.ndim != 2 or X.shape[1] != M:
                raise ValueError(f"X must be (n, {M}); got {X.shape}")
            x = self.embed(X[..., None]) + self.pos[...]
            for block in self.blocks:
                x = block(x)
            return self.head(x[:, 0])

    return TokenTransformer(nnx.Rngs(0))


def _then(inner, post):
    """An NNX module applying ``post`` to ``inner``'s outputs (the attention case's ``wrapped``
    model: the attention layers keep their paths, under ``inner/``)."""
    from flax import nnx

    class Then(nnx.Module):
        def __init__(self):
            self.inner = inner

        def __call__(self, X):
            return post(self.inner(X))

    return Then()


# Explainers whose tabular case uses the ReLU network (Deep SHAP's rules are exact there).
RELU = {"deep_shap"}


@dataclasses.dataclass(frozen=True)
class Case:
    """How to call one explainer on a batch, and what the model computes (for invariants).

    ``make(model, X, **options)`` calls the explainer; ``model`` is the case's model (a function,
    ``(features, head)`` for layer methods, ``None`` where the explainer has its own).
    """

    name: str
    info: ExplainerInfo
    X: Any  # the batch of N instances (strings for text)
    model: Any
    make: Callable[..., Any]
    outputs: Callable[[Any], np.ndarray] | None  # the model's outputs (n, K) on a batch
    num_outputs: int

    @property
    def random(self) -> bool:
        return self.info.random

    def call(self, X, **options):
        return self.make(self.model, X, **{**OPTIONS.get(self.name, {}), **options})

    def call_with(self, model, X, **options):
        return self.make(model, X, **{**OPTIONS.get(self.name, {}), **options})

    def single(self, i: int = 0):
        return self.X[i]

    def batch_of_one(self, i: int = 0):
        return self.X[i : i + 1]

    def wrapped(self, wrap: Callable):
        """The case's model with ``wrap`` applied to its output function (a layer model's head)."""
        if self.info.model_form == "layer":
            features, head = self.model
            return features, wrap(head)
        if self.info.model_form == "module":
            return _wrap_module(self.model, wrap)
        if self.info.model_form == "attention":
            return _then(self.model, wrap(lambda y: y))
        return wrap(self.model)


def _partition_masker():
    """Background rows with a hierarchy over the M features: ((0, 1), (2, 3))."""
    from xaijax.maskers import partition

    Z = np.array([[0, 1, 1.0, 2], [2, 3, 1.0, 2], [4, 5, 2.0, 4]])
    return partition(BACKGROUND, clustering=Z)


def case_for(info: ExplainerInfo) -> Case:
    """The contract case of a registered explainer, from its metadata."""
    fn, name = info.fn, info.name
    if info.model_form == "coefficients":
        return Case(
            name,
            info,
            X_TAB,
            None,
            lambda _, X, **kw: fn(COEF, INTERCEPT, X, BACKGROUND, **kw),
            lambda X: np.asarray(X) @ COEF + INTERCEPT,
            K,
        )
    if info.model_form == "none":
        return Case(
            name,
            info,
            X_TAB,
            None,
            lambda _, X, **kw: fn(X, BACKGROUND, **kw),
            lambda X: np.asarray(X).max(axis=1),
            1,
        )
    if info.model_form == "layer":
        return Case(
            name,
            info,
            IMAGES,
            (conv_features, conv_head),
            lambda m, X, **kw: fn(m[0], m[1], X, **kw),
            lambda X: np.asarray(cnn(jnp.asarray(X))),
            K,
        )
    if info.model_form == "module":
        net = _conv_module()
        return Case(
            name,
            info,
            IMAGES,
            net,
            lambda m, X, **kw: fn(m, X, **kw),
            lambda X: np.asarray(net(jnp.asarray(X))),
            K,
        )
    if info.model_form == "attention":
        net = _token_transformer()
        return Case(
            name,
            info,
            X_TAB,
            net,
            lambda m, X, **kw: fn(m, X, **kw),
            lambda X: np.asarray(net(jnp.asarray(X))),
            K,
        )
    if info.model_form == "protopnet":
        net = _protopnet()
        return Case(
            name,
            info,
            PROTO_IMAGES,
            net,
            lambda m, X, **kw: fn(m, X, **kw),
            lambda X: np.asarray(net(jnp.asarray(X))),
            K,
        )
    if info.model_form == "tree":
        from sklearn.ensemble import RandomForestClassifier

        labels = np.digitize(TRAINING[:, 0], np.quantile(TRAINING[:, 0], [1 / 3, 2 / 3]))
        forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)
        forest.fit(TRAINING, labels)
        return Case(
            name,
            info,
            X_TAB,
            None,  # the fitted forest is not a function to wrap
            lambda _, X, **kw: fn(forest, X, **kw),
            lambda X: forest.predict_proba(np.asarray(X, np.float64)),
            K,
        )
    if info.model_form != "model":
        raise NotImplementedError(
            f"{name}: no contract case for model_form={info.model_form!r}; add one in "
            "tests/contract/cases.py"
        )
    if info.inputs == "text":
        return Case(
            name,
            info,
            np.array(TEXTS, dtype=object),
            text_classifier,
            lambda m, X, **kw: fn(m, list(X) if np.ndim(X) else X, **kw),
            lambda X: text_classifier(list(X)),
            2,
        )
    if info.inputs == "image":
        model = cnn
        reference = {"background": IMAGE_BG, "training_data": IMAGE_BG}.get(info.reference)
        X = IMAGES
    else:
        model = relu_mlp if name in RELU else mlp
        reference = {
            "background": BACKGROUND,
            "training_data": TRAINING,
            "masker": _partition_masker(),
        }.get(info.reference)
        X = X_TAB
    if info.reference is not None and reference is None:
        raise NotImplementedError(f"{name}: no contract data for reference {info.reference!r}")

    def make(m, X, **kw):
        return fn(m, X, reference, **kw) if reference is not None else fn(m, X, **kw)

    return Case(name, info, X, model, make, lambda X: np.asarray(model(jnp.asarray(X))), K)
