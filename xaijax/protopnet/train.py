"""Training ProtoPNet in the paper's stages: warm-up, joint, push, last layer; checkpoints.

Stages follow the reference code's ``main.py``: for ``warm_epochs`` only the add-on layers and the
prototypes learn (backbone frozen); then backbone, add-on layers and prototypes learn jointly with
per-group learning rates decayed stepwise; at push epochs every prototype is projected onto a
training patch of its class and the last layer alone is optimised for ``last_layer_iterations``
epochs. Groups and freezing are one ``optax.multi_transform`` per stage. Every stage runs the
zoo's compiled epoch (:func:`xaijax.zoo.training.epoch_runner`), whose metrics stay on the device
until the epoch's record is written, and checkpoints use the zoo's format.

References:
    Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
    NeurIPS 2019, Sec. 2.2; reference code ``main.py``, ``settings.py``, ``train_and_test.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from xaijax.protopnet.losses import LossCoefficients, cross_entropy, protopnet_loss
from xaijax.protopnet.model import PlainCNN, ProtoPNet, ProtoPNetConfig
from xaijax.protopnet.push import PushResult, push
from xaijax.zoo import training as zoo_training
from xaijax.zoo.training import Progress, epoch_runner, evaluate_batches

__all__ = [
    "TrainConfig",
    "TrainState",
    "TrainResult",
    "parameter_groups",
    "stage_optimizer",
    "init_state",
    "train_protopnet",
    "train_plain_cnn",
    "train_last_layer",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
]

GROUPS = ("features", "add_on", "prototypes", "last_layer")
STAGES = ("warm", "joint", "last")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Schedule and optimiser settings; defaults are the reference ``settings.py``.

    Args:
        epochs: training epochs (warm-up + joint); the paper trains 1000 with a pretrained backbone.
        warm_epochs: epochs with the backbone frozen.
        batch_size: images per step (the paper's 80).
        warm_lr: learning rates of ``add_on`` and ``prototypes`` during warm-up.
        joint_lr: learning rates of ``features``, ``add_on``, ``prototypes`` in the joint stage.
            The reference's 1e-4 for ``features`` is for ImageNet-pretrained features; a backbone
            trained from scratch, as every backbone here is, needs more (the command's schedules,
            ``xaijax.cli.protopnet.QUICK`` and ``FULL``, use 5e-3 throughout).
        joint_step_size, joint_gamma: the joint rates are multiplied by ``gamma`` every
            ``step_size`` joint epochs (``StepLR``).
        last_layer_lr: learning rate of the last layer in the last-layer stage.
        weight_decay: L2 decay of ``features`` and ``add_on`` (coupled with Adam, as in torch).
        push_start, push_every: push at epochs ``push_start + k * push_every``.
        final_push: also push after the last epoch, so the trained model's prototypes are always
            training patches (the reference only pushes on its schedule).
        last_layer_iterations: last-layer-only epochs after each push.
        push_batch_size: images per batch in the push scan.
        coefficients: loss weights.
    """

    epochs: int = 20
    warm_epochs: int = 5
    batch_size: int = 80
    warm_lr: tuple[float, float] = (3e-3, 3e-3)
    joint_lr: tuple[float, float, float] = (1e-4, 3e-3, 3e-3)
    joint_step_size: int = 5
    joint_gamma: float = 0.1
    last_layer_lr: float = 1e-4
    weight_decay: float = 1e-3
    push_start: int = 10
    push_every: int = 10
    final_push: bool = True
    last_layer_iterations: int = 20
    push_batch_size: int = 64
    coefficients: LossCoefficients = LossCoefficients()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the setting that is out of range."""
        for name in ("epochs", "batch_size", "joint_step_size", "push_every", "push_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        for name in ("warm_epochs", "push_start", "last_layer_iterations"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be non-negative; got {getattr(self, name)}")
        if len(self.warm_lr) != 2 or len(self.joint_lr) != 3:
            raise ValueError("warm_lr needs 2 rates (add_on, prototypes); joint_lr needs 3")
        if not 0 < self.joint_gamma <= 1:
            raise ValueError(f"joint_gamma must be in (0, 1]; got {self.joint_gamma}")

    def is_push_epoch(self, epoch: int) -> bool:
        scheduled = epoch >= self.push_start and (epoch - self.push_start) % self.push_every == 0
        return scheduled or (self.final_push and epoch == self.epochs - 1)


class TrainState(NamedTuple):
    """What a run needs to resume: parameters, other variables, optimiser states, epoch, key."""

    params: nnx.State
    rest: nnx.State
    opt_states: dict
    epoch: int
    key: jax.Array


class TrainResult(NamedTuple):
    """Per-epoch metrics (list of dicts, as logged) and the last push (or None)."""

    history: list
    push: PushResult | None


def _group_of(path) -> str:
    first = path[0]
    name = getattr(first, "key", getattr(first, "name", None))
    name = str(name)
    if name in ("features", "add_on", "prototypes", "last_layer", "head", "head_bias"):
        return "last_layer" if name.startswith("head") else name
    raise ValueError(f"parameter {jax.tree_util.keystr(path)} belongs to no group")


def parameter_groups(params):
    """The group name (``features``, ``add_on``, ``prototypes``, ``last_layer``) of every leaf."""
    return jax.tree_util.tree_map_with_path(lambda p, _: _group_of(p), params)


def _adam(lr, weight_decay=0.0):
    # torch.optim.Adam(weight_decay=...) adds decay to the gradient before Adam (coupled L2).
    if weight_decay:
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))
    return optax.adam(lr)


def stage_optimizer(stage: str, config: TrainConfig, steps_per_epoch: int):
    """``optax.multi_transform`` over the parameter groups for ``stage`` (frozen groups get zero).

    Args:
        stage: ``"warm"``, ``"joint"`` or ``"last"``.
        config: the training settings.
        steps_per_epoch: optimiser steps per epoch (for the joint step decay).

    Returns:
        An ``optax.GradientTransformation`` taking the ``nnx.Param`` state.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}; got {stage!r}")
    wd = config.weight_decay
    frozen = optax.set_to_zero()
    if stage == "warm":
        txs = {
            "features": frozen,
            "add_on": _adam(config.warm_lr[0], wd),
            "prototypes": _adam(config.warm_lr[1]),
            "last_layer": frozen,
        }
    elif stage == "joint":

        def decayed(lr):
            return optax.exponential_decay(
                lr,
                transition_steps=config.joint_step_size * steps_per_epoch,
                decay_rate=config.joint_gamma,
                staircase=True,
            )

        txs = {
            "features": _adam(decayed(config.joint_lr[0]), wd),
            "add_on": _adam(decayed(config.joint_lr[1]), wd),
            "prototypes": _adam(decayed(config.joint_lr[2])),
            "last_layer": frozen,
        }
    else:
        txs = {g: frozen for g in GROUPS[:3]} | {"last_layer": _adam(config.last_layer_lr)}
    return optax.multi_transform(txs, parameter_groups)


def _check_data(images, labels, model_config: ProtoPNetConfig, name: str):
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    s, c = model_config.img_size, model_config.in_channels
    if images.ndim != 4 or images.shape[1:] != (s, s, c):
        raise ValueError(f"{name} images must have shape (n, {s}, {s}, {c}); got {images.shape}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"{name} labels must have shape ({images.shape[0]},); got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= model_config.num_classes):
        raise ValueError(f"{name} labels must lie in [0, {model_config.num_classes})")
    if not np.isfinite(images).all():
        raise ValueError(f"{name} images contain NaN or inf")
    return images, labels.astype(np.int32)


# ----------------------------------------------------------------------------- compiled epochs
def _protopnet_terms(graphdef, params, rest, x, y, coefficients):
    model = nnx.merge(graphdef, params, rest)
    logits, min_d, _ = model.forward(x)
    return protopnet_loss(
        logits,
        min_d,
        y,
        model.last_layer[...],
        model.class_identity[...],
        max_dist=float(model.config.prototype_depth),
        coefficients=coefficients,
    )


def _plain_terms(graphdef, params, rest, x, y, coefficients):
    logits = nnx.merge(graphdef, params, rest)(x)
    ce = cross_entropy(logits, y)
    acc = jnp.mean((jnp.argmax(logits, axis=-1) == y).astype(jnp.float32))
    return {"total": ce, "cross_entropy": ce, "accuracy": acc}


def _as_dict(terms):
    return terms._asdict() if hasattr(terms, "_asdict") else dict(terms)


def _runner(graphdef, tx, terms_fn, coefficients):
    def loss_fn(params, rest, x, y):
        terms = _as_dict(terms_fn(graphdef, params, rest, x, y, coefficients))
        return terms["total"], (terms, rest)

    return epoch_runner(loss_fn, tx)


# Compiled epochs are cached on (graph, settings): a resumed or repeated run with the same
# architecture and schedule reuses the compilation instead of tracing again.
@functools.lru_cache(maxsize=16)
def _stage_runner(graphdef, config, steps_per_epoch, stage):
    tx = stage_optimizer(stage, config, steps_per_epoch)
    return _runner(graphdef, tx, _protopnet_terms, config.coefficients)


@functools.lru_cache(maxsize=16)
def _make_eval(graphdef, terms_fn, coefficients):
    @jax.jit
    def batch_terms(params, rest, x, y):
        return _as_dict(terms_fn(graphdef, params, rest, x, y, coefficients))

    return batch_terms


def evaluate(model, images, labels, *, batch_size: int = 128, coefficients=None):
    """Mean loss terms and accuracy of a :class:`ProtoPNet` or :class:`PlainCNN` on a data set.

    Returns:
        A dict of floats (``accuracy``, ``cross_entropy``, ...).
    """
    coefficients = LossCoefficients() if coefficients is None else coefficients
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    terms_fn = _protopnet_terms if isinstance(model, ProtoPNet) else _plain_terms
    fn = _make_eval(graphdef, terms_fn, coefficients)
    return _evaluate(fn, params, rest, images, labels, batch_size)


def _evaluate(eval_fn, params, rest, images, labels, batch_size):
    # Batch means weighted by batch size; a short last batch costs one extra trace.
    return evaluate_batches(
        lambda x, y: eval_fn(params, rest, x, y),
        jnp.asarray(images),
        jnp.asarray(labels),
        batch_size=batch_size,
    )


def _log(path, record):
    if path is not None:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(directory, state: TrainState, metadata: dict | None = None) -> Path:
    """Write ``state`` to ``directory/checkpoint.npz`` (+ ``checkpoint.json``, for people).

    The format is the zoo's (:func:`xaijax.zoo.training.save_checkpoint`): parameters, other
    variables and optimiser states keyed by their pytree paths, with the epoch, the run's key
    and ``metadata`` in the same file, replaced atomically.

    Returns:
        The directory.
    """
    directory = Path(directory)
    meta = dict(metadata or {})
    meta.update(epoch=int(state.epoch), key=np.asarray(jax.random.key_data(state.key)).tolist())
    tree = {"params": state.params, "rest": state.rest, "opt_states": state.opt_states}
    zoo_training.save_checkpoint(directory / "checkpoint", tree, meta)
    return directory


def load_checkpoint(directory, template: TrainState) -> tuple[TrainState, dict]:
    """Read a checkpoint into the structure of ``template`` (a freshly initialised state).

    Raises:
        ValueError: if the checkpoint does not match the template's structure or shapes.
    """
    directory = Path(directory)
    tree = {"params": template.params, "rest": template.rest, "opt_states": template.opt_states}
    tree, meta = zoo_training.load_checkpoint(directory / "checkpoint", tree)
    key = jax.random.wrap_key_data(jnp.asarray(meta["key"], jnp.uint32))
    state = TrainState(tree["params"], tree["rest"], tree["opt_states"], int(meta["epoch"]), key)
    return state, meta


def init_state(model, config: TrainConfig, *, key, steps_per_epoch: int, stages=STAGES):
    """The starting :class:`TrainState` of ``model`` (optimiser states of every stage)."""
    _, params, rest = nnx.split(model, nnx.Param, ...)
    opt_states = {s: stage_optimizer(s, config, steps_per_epoch).init(params) for s in stages}
    return TrainState(params, rest, opt_states, 0, key)


# ----------------------------------------------------------------------------- training
def train_protopnet(
    model: ProtoPNet,
    train_images,
    train_labels,
    test_images=None,
    test_labels=None,
    *,
    config: TrainConfig = TrainConfig(),
    key,
    out_dir=None,
    resume: bool = False,
    stop_after: int | None = None,
    verbose: bool = True,
) -> TrainResult:
    """Train ``model`` in place with the paper's stages; log metrics and checkpoint every epoch.

    Args:
        model: a :class:`ProtoPNet` (its parameters are replaced by the trained ones).
        train_images, train_labels: ``(N, H, W, C)`` and ``(N,)``.
        test_images, test_labels: optional held-out set evaluated after every stage.
        config: the schedule.
        key: a JAX key; epoch ``e`` shuffles with ``fold_in(key, e)``, so a resumed run
            reproduces an uninterrupted one exactly.
        out_dir: if given, ``metrics.jsonl`` gets one line per epoch/stage and ``checkpoint.*``
            is rewritten after each epoch.
        resume: continue from the checkpoint in ``out_dir`` (its key and epoch win).
        stop_after: stop once this many epochs are done (to interrupt a run; for tests).
        verbose: draw a progress line on stderr.

    Returns:
        :class:`TrainResult` (history of logged records, the last push).

    References:
        Chen et al. NeurIPS 2019; reference ``main.py`` (stages and push schedule).
    """
    if not isinstance(model, ProtoPNet):
        raise ValueError(f"model must be a ProtoPNet; got {type(model).__name__}")
    config.validate()
    mcfg = model.config
    X, y = _check_data(train_images, train_labels, mcfg, "train")
    has_test = test_images is not None
    if has_test:
        Xt, yt = _check_data(test_images, test_labels, mcfg, "test")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir (where the checkpoint is)")
    batch_size = min(config.batch_size, X.shape[0])
    steps_per_epoch = X.shape[0] // batch_size
    graphdef, _, _ = nnx.split(model, nnx.Param, ...)
    state = init_state(model, config, key=key, steps_per_epoch=steps_per_epoch)
    out = Path(out_dir) if out_dir is not None else None
    log_path = None
    history, last_push = [], None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        log_path = out / "metrics.jsonl"
        if resume and (out / "checkpoint.npz").exists():
            state, meta = load_checkpoint(out, state)
            for name, cfg in (("model_config", mcfg), ("config", config)):
                saved = meta.get("train_config" if name == "config" else name)
                if saved is not None and saved != _config_dict(cfg):
                    raise ValueError(
                        f"{name} differs from the one the checkpoint in {out} was trained with"
                    )
            if meta.get("push") is not None:
                last_push = PushResult(**{k: np.asarray(v) for k, v in meta["push"].items()})
        elif log_path.exists():
            log_path.unlink()  # a fresh run (or nothing to resume) starts a fresh log
    runners = {s: _stage_runner(graphdef, config, steps_per_epoch, s) for s in STAGES}
    eval_fn = _make_eval(graphdef, _protopnet_terms, config.coefficients)
    params, rest, opt_states = state.params, state.rest, dict(state.opt_states)
    run_key = state.key
    X_dev, y_dev = jnp.asarray(X), jnp.asarray(y)
    bar = Progress(
        config.epochs, unit="epochs", stream=sys.stderr if verbose else None, done=state.epoch
    )

    def record(epoch, stage, train_terms, extra=None):
        # One host sync per record (per epoch and stage): the step metrics stayed on the device.
        rec = {"epoch": epoch, "stage": stage}
        rec |= {f"train_{k}": float(v) for k, v in jax.device_get(train_terms).items()}
        if has_test:
            test = _evaluate(eval_fn, params, rest, Xt, yt, 128)
            rec |= {f"test_{k}": v for k, v in test.items()}
        rec |= extra or {}
        history.append(rec)
        _log(log_path, rec)
        return rec

    def show(count, label, rec):
        shown = {k[6:]: v for k, v in rec.items() if k in ("train_total", "train_accuracy")}
        if has_test:
            shown["test_accuracy"] = rec["test_accuracy"]
        bar.update(count, metrics=shown, label=label)

    last_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    for epoch in range(state.epoch, last_epoch):
        epoch_key = jax.random.fold_in(run_key, epoch)
        stage = "warm" if epoch < config.warm_epochs else "joint"
        params, rest, opt_states[stage], terms = runners[stage](
            params, rest, opt_states[stage], X_dev, y_dev, epoch_key, batch_size=batch_size
        )
        rec = record(epoch, stage, terms)
        show(0 if config.is_push_epoch(epoch) else 1, stage, rec)
        if config.is_push_epoch(epoch):
            nnx.update(model, params, rest)
            last_push = push(model, X, y, batch_size=config.push_batch_size)
            _, params, rest = nnx.split(model, nnx.Param, ...)
            record(epoch, "push", {}, {"push_distance_mean": float(last_push.distances.mean())})
            for it in range(config.last_layer_iterations):
                params, rest, opt_states["last"], terms = runners["last"](
                    params,
                    rest,
                    opt_states["last"],
                    X_dev,
                    y_dev,
                    jax.random.fold_in(epoch_key, it + 1),
                    batch_size=batch_size,
                )
            if config.last_layer_iterations:
                rec = record(epoch, "last", terms)
            show(1, "push+last", rec)
        if out is not None:
            push_meta = (
                None
                if last_push is None
                else {k: np.asarray(v).tolist() for k, v in last_push._asdict().items()}
            )
            save_checkpoint(
                out,
                TrainState(params, rest, opt_states, epoch + 1, run_key),
                {
                    "model_config": _config_dict(mcfg),
                    "train_config": _config_dict(config),
                    "push": push_meta,
                },
            )
    bar.close()
    nnx.update(model, params, rest)
    return TrainResult(history, last_push)


def _config_dict(cfg):
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def train_last_layer(
    model: ProtoPNet,
    train_images,
    train_labels,
    *,
    config: TrainConfig = TrainConfig(),
    key,
    iterations: int | None = None,
) -> list[dict]:
    """Optimise only the last layer of ``model`` in place (the stage after push and pruning).

    Args:
        model: a :class:`ProtoPNet` (e.g. the one :func:`~xaijax.protopnet.prune_prototypes`
            returned).
        train_images, train_labels: ``(N, H, W, C)`` and ``(N,)``.
        config: the schedule: ``batch_size``, ``last_layer_lr`` and the loss coefficients.
        key: a JAX key; iteration ``i`` shuffles with ``fold_in(key, i)``.
        iterations: epochs of last-layer optimisation (``None``: ``last_layer_iterations``).

    Returns:
        The mean training terms of every epoch (list of dicts of floats).

    References:
        Chen et al. NeurIPS 2019, Sec. 2.2 (last-layer convex optimisation); reference
        ``run_pruning.py`` (last layer optimised again after pruning).

    Example:
        >>> import jax, numpy as np
        >>> from xaijax.protopnet.model import ProtoPNetConfig
        >>> cfg = ProtoPNetConfig(img_size=24, num_classes=2, num_prototypes=2, channels=(4, 4))
        >>> net = ProtoPNet(cfg, key=jax.random.key(0))
        >>> X, y = np.zeros((4, 24, 24, 3)), np.array([0, 1, 0, 1])
        >>> tcfg = TrainConfig(batch_size=2)
        >>> hist = train_last_layer(net, X, y, config=tcfg, key=jax.random.key(1), iterations=1)
        >>> sorted(hist[0])[:2]
        ['accuracy', 'cluster']
    """
    if not isinstance(model, ProtoPNet):
        raise ValueError(f"model must be a ProtoPNet; got {type(model).__name__}")
    config.validate()
    iterations = config.last_layer_iterations if iterations is None else int(iterations)
    if iterations < 0:
        raise ValueError(f"iterations must be non-negative; got {iterations}")
    X, y = _check_data(train_images, train_labels, model.config, "train")
    batch_size = min(config.batch_size, X.shape[0])
    steps_per_epoch = X.shape[0] // batch_size
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = stage_optimizer("last", config, steps_per_epoch).init(params)
    run = _stage_runner(graphdef, config, steps_per_epoch, "last")
    params, rest, history = _run_epochs(
        run, params, rest, opt_state, X, y, key, iterations, batch_size
    )
    nnx.update(model, params, rest)
    return history


def train_plain_cnn(
    model: PlainCNN,
    train_images,
    train_labels,
    *,
    config: TrainConfig = TrainConfig(),
    key,
    verbose: bool = True,
):
    """Train the baseline CNN in place the same way: same epochs, batches, shuffles, Adam rates.

    The backbone uses the joint ``features`` rate (step-decayed, with weight decay) and the
    linear head the warm-up ``add_on`` rate; returns the per-epoch mean training terms.
    """
    config.validate()
    X, y = _check_data(train_images, train_labels, model.config, "train")
    batch_size = min(config.batch_size, X.shape[0])
    steps_per_epoch = X.shape[0] // batch_size
    tx = optax.multi_transform(
        {
            "features": _adam(
                optax.exponential_decay(
                    config.joint_lr[0],
                    config.joint_step_size * steps_per_epoch,
                    config.joint_gamma,
                    staircase=True,
                ),
                config.weight_decay,
            ),
            "last_layer": _adam(config.warm_lr[0]),
        },
        parameter_groups,
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)
    run = _runner(graphdef, tx, _plain_terms, None)
    bar = Progress(
        config.epochs, unit="epochs", label="cnn", stream=sys.stderr if verbose else None
    )
    params, rest, history = _run_epochs(
        run, params, rest, opt_state, X, y, key, config.epochs, batch_size, bar if verbose else None
    )
    bar.close()
    nnx.update(model, params, rest)
    return history


def _run_epochs(run, params, rest, opt_state, X, y, key, epochs, batch_size, bar=None):
    """``epochs`` compiled epochs of ``run`` (epoch ``e`` shuffles with ``fold_in(key, e)``);
    the terms stay on the device except for ``bar`` (one host sync per epoch to draw it).
    Returns the parameters, the other state and the per-epoch mean terms as floats."""
    X_dev, y_dev = jnp.asarray(X), jnp.asarray(y)
    history = []
    for epoch in range(epochs):
        params, rest, opt_state, terms = run(
            params,
            rest,
            opt_state,
            X_dev,
            y_dev,
            jax.random.fold_in(key, epoch),
            batch_size=batch_size,
        )
        history.append(terms)
        if bar is not None:
            bar.update(1, metrics=jax.device_get(terms))
    return params, rest, [{k: float(v) for k, v in t.items()} for t in jax.device_get(history)]
