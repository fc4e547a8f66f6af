"""Training ProtoPNet in the paper's stages: warm-up, joint, push, last layer; checkpoints; the CLI.

Stages follow the reference code's ``main.py``: for ``warm_epochs`` only the add-on layers and the
prototypes learn (backbone frozen); then backbone, add-on layers and prototypes learn jointly with
per-group learning rates decayed stepwise; at push epochs every prototype is projected onto a
training patch of its class and the last layer alone is optimised for ``last_layer_iterations``
epochs. Groups and freezing are one ``optax.multi_transform`` per stage.

References:
    Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
    NeurIPS 2019, Sec. 2.2; reference code ``main.py``, ``settings.py``, ``train_and_test.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
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

__all__ = [
    "TrainConfig",
    "TrainState",
    "TrainResult",
    "parameter_groups",
    "stage_optimizer",
    "init_state",
    "train_protopnet",
    "train_plain_cnn",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
    "main",
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


# ----------------------------------------------------------------------------- compiled steps
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


def _make_step(graphdef, tx, terms_fn, coefficients):
    def loss_fn(params, rest, x, y):
        terms = _as_dict(terms_fn(graphdef, params, rest, x, y, coefficients))
        return terms["total"], terms

    @jax.jit
    def step(params, rest, opt_state, x, y):
        grads, terms = jax.grad(loss_fn, has_aux=True)(params, rest, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, terms

    return step


# Compiled steps are cached on (graph, settings): a resumed or repeated run with the same
# architecture and schedule reuses the compilation instead of tracing again.
@functools.lru_cache(maxsize=16)
def _stage_step(graphdef, config, steps_per_epoch, stage):
    tx = stage_optimizer(stage, config, steps_per_epoch)
    return _make_step(graphdef, tx, _protopnet_terms, config.coefficients)


@functools.lru_cache(maxsize=16)
def _make_eval(graphdef, terms_fn, coefficients):
    @jax.jit
    def batch_terms(params, rest, x, y, weight):
        terms = _as_dict(terms_fn(graphdef, params, rest, x, y, coefficients))
        return {k: v * weight for k, v in terms.items()}

    return batch_terms


def evaluate(model, images, labels, *, batch_size: int = 128, coefficients=None):
    """Mean loss terms and accuracy of a :class:`ProtoPNet` or :class:`PlainCNN` on a data set.

    Returns:
        A dict of floats (``accuracy``, ``cross_entropy``, ...).
    """
    coefficients = LossCoefficients() if coefficients is None else coefficients
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    terms_fn = _protopnet_terms if isinstance(model, ProtoPNet) else _plain_terms
    return _evaluate(
        _make_eval(graphdef, terms_fn, coefficients), params, rest, images, labels, batch_size
    )


def _evaluate(eval_fn, params, rest, images, labels, batch_size):
    # Loss terms are batch means weighted by batch size; a short last batch costs one extra trace.
    n = images.shape[0]
    sums = {}
    for start in range(0, n, batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        out = eval_fn(params, rest, x, y, float(x.shape[0]))
        sums = {k: sums.get(k, 0.0) + float(v) for k, v in out.items()}
    return {k: v / n for k, v in sums.items()}


# ----------------------------------------------------------------------------- progress and logs
class _Progress:
    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.t0 = time.time()

    def update(self, label, i, total, terms):
        if not self.verbose:
            return
        width = 20
        filled = int(width * i / total)
        parts = " ".join(f"{k[:4]}={v:.3f}" for k, v in terms.items() if k != "total")
        sys.stderr.write(
            f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {i}/{total} {parts} "
            f"({time.time() - self.t0:.0f}s)"
        )
        if i == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _log(path, record):
    if path is not None:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _run_epoch(step, params, rest, opt_state, images, labels, key, batch_size, progress, label):
    n = images.shape[0]
    batch_size = min(batch_size, n)
    num_batches = n // batch_size
    order = np.asarray(jax.random.permutation(key, n))
    sums = {}
    for b in range(num_batches):
        idx = order[b * batch_size : (b + 1) * batch_size]
        params, opt_state, terms = step(params, rest, opt_state, images[idx], labels[idx])
        terms = {k: float(v) for k, v in terms.items()}
        sums = {k: sums.get(k, 0.0) + v for k, v in terms.items()}
        progress.update(label, b + 1, num_batches, {k: v / (b + 1) for k, v in sums.items()})
    return params, opt_state, {k: v / num_batches for k, v in sums.items()}


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(directory, state: TrainState, metadata: dict | None = None) -> Path:
    """Write ``state`` as ``checkpoint.npz`` (flattened leaves) and ``checkpoint.json`` (metadata).

    Returns:
        The directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree_util.tree_leaves((state.params, state.rest, state.opt_states))
    arrays = {f"leaf_{i:05d}": np.asarray(v) for i, v in enumerate(leaves)}
    tmp = directory / "checkpoint.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(directory / "checkpoint.npz")
    meta = dict(metadata or {})
    meta.update(
        epoch=int(state.epoch),
        key=np.asarray(jax.random.key_data(state.key)).tolist(),
        num_leaves=len(leaves),
    )
    (directory / "checkpoint.json").write_text(json.dumps(meta, indent=1))
    return directory


def load_checkpoint(directory, template: TrainState) -> tuple[TrainState, dict]:
    """Read a checkpoint into the structure of ``template`` (a freshly initialised state).

    Raises:
        ValueError: if the checkpoint does not match the template's structure or shapes.
    """
    directory = Path(directory)
    meta = json.loads((directory / "checkpoint.json").read_text())
    tree = (template.params, template.rest, template.opt_states)
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    with np.load(directory / "checkpoint.npz") as data:
        loaded = [data[f"leaf_{i:05d}"] for i in range(meta["num_leaves"])]
    if len(loaded) != len(leaves) or any(
        np.shape(a) != np.shape(b) for a, b in zip(loaded, leaves, strict=True)
    ):
        raise ValueError(f"directory {directory} holds a checkpoint of a different model or config")
    params, rest, opt_states = jax.tree_util.tree_unflatten(
        treedef,
        [jnp.asarray(a, dtype=np.asarray(b).dtype) for a, b in zip(loaded, leaves, strict=True)],
    )
    key = jax.random.wrap_key_data(jnp.asarray(meta["key"], jnp.uint32))
    return TrainState(params, rest, opt_states, meta["epoch"], key), meta


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
    steps = {s: _stage_step(graphdef, config, steps_per_epoch, s) for s in STAGES}
    eval_fn = _make_eval(graphdef, _protopnet_terms, config.coefficients)
    progress = _Progress(verbose)
    params, rest, opt_states = state.params, state.rest, dict(state.opt_states)
    run_key = state.key

    def record(epoch, stage, train_terms, extra=None):
        rec = {"epoch": epoch, "stage": stage}
        rec |= {f"train_{k}": v for k, v in train_terms.items()}
        if has_test:
            test = _evaluate(eval_fn, params, rest, Xt, yt, 128)
            rec |= {f"test_{k}": v for k, v in test.items()}
        rec |= extra or {}
        history.append(rec)
        _log(log_path, rec)

    last_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    for epoch in range(state.epoch, last_epoch):
        epoch_key = jax.random.fold_in(run_key, epoch)
        stage = "warm" if epoch < config.warm_epochs else "joint"
        params, opt_states[stage], terms = _run_epoch(
            steps[stage],
            params,
            rest,
            opt_states[stage],
            X,
            y,
            epoch_key,
            batch_size,
            progress,
            f"epoch {epoch + 1}/{config.epochs} {stage}",
        )
        record(epoch, stage, terms)
        if config.is_push_epoch(epoch):
            nnx.update(model, params, rest)
            last_push = push(model, X, y, batch_size=config.push_batch_size)
            _, params, rest = nnx.split(model, nnx.Param, ...)
            record(epoch, "push", {}, {"push_distance_mean": float(last_push.distances.mean())})
            for it in range(config.last_layer_iterations):
                params, opt_states["last"], terms = _run_epoch(
                    steps["last"],
                    params,
                    rest,
                    opt_states["last"],
                    X,
                    y,
                    jax.random.fold_in(epoch_key, it + 1),
                    batch_size,
                    progress,
                    f"epoch {epoch + 1}/{config.epochs} last layer {it + 1}",
                )
            if config.last_layer_iterations:
                record(epoch, "last", terms)
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
    nnx.update(model, params, rest)
    return TrainResult(history, last_push)


def _config_dict(cfg):
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


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
    step = _make_step(graphdef, tx, _plain_terms, None)
    progress = _Progress(verbose)
    history = []
    for epoch in range(config.epochs):
        params, opt_state, terms = _run_epoch(
            step,
            params,
            rest,
            opt_state,
            X,
            y,
            jax.random.fold_in(key, epoch),
            batch_size,
            progress,
            f"cnn epoch {epoch + 1}/{config.epochs}",
        )
        history.append(terms)
    nnx.update(model, params, rest)
    return history


# ----------------------------------------------------------------------------- CLI
def _dataset(name: str, size: int, n: int, seed: int):
    from xaijax import data

    if name == "shapes":
        ds = data.synthetic_shapes(jax.random.key(seed), n, size=size, num_classes=3)
    elif name == "digits":
        ds = data.digits(size)
    else:
        raise ValueError(f"dataset must be 'shapes' or 'digits'; got {name!r}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(ds.images.shape[0])
    cut = int(0.75 * len(order))
    tr, te = order[:cut], order[cut:]
    return ds, (ds.images[tr], ds.labels[tr]), (ds.images[te], ds.labels[te])


QUICK = dict(
    epochs=12,
    warm_epochs=2,
    batch_size=32,
    warm_lr=(3e-3, 3e-3),
    joint_lr=(5e-3, 5e-3, 5e-3),
    joint_step_size=6,
    push_start=6,
    push_every=100,
    last_layer_iterations=5,
    last_layer_lr=3e-3,
)


def main(argv=None) -> dict:
    """``python -m xaijax.protopnet.train``: train ProtoPNet and a plain CNN; write a run folder.

    Writes ``results.json`` (test accuracies), ``metrics.jsonl``, ``checkpoint.*``,
    ``explanation_*.png`` and ``prototypes.png`` under ``--out``.
    """
    parser = argparse.ArgumentParser(prog="xaijax protopnet", description=main.__doc__)
    parser.add_argument("--dataset", choices=("shapes", "digits"), default="shapes")
    parser.add_argument("--out", default="runs/protopnet")
    parser.add_argument("--quick", action="store_true", help="small, fast settings (CPU minutes)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--n", type=int, default=600, help="synthetic images to generate")
    parser.add_argument("--backbone", choices=("small", "resnet18"), default="small")
    parser.add_argument("--prototypes-per-class", type=int, default=3)
    parser.add_argument("--prototype-depth", type=int, default=32)
    parser.add_argument(
        "--channels", default=None, help="backbone widths, e.g. 16,32,32 (resnet18: 4 stages)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--explain", type=int, default=3, help="test images to explain (PNGs)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    ds, (Xtr, ytr), (Xte, yte) = _dataset(args.dataset, args.size, args.n, args.seed)
    C = len(ds.class_names)
    if args.channels:
        channels = tuple(int(c) for c in args.channels.split(","))
    else:
        channels = (16, 32, 32) if args.backbone == "small" else (16, 32, 64, 64)
    mcfg = ProtoPNetConfig(
        img_size=args.size,
        in_channels=ds.images.shape[-1],
        num_classes=C,
        num_prototypes=C * args.prototypes_per_class,
        prototype_depth=args.prototype_depth,
        backbone=args.backbone,
        channels=channels,
    )
    settings = dict(QUICK) if args.quick else {}
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    tcfg = TrainConfig(**settings)
    key = jax.random.key(args.seed)
    k_model, k_train = jax.random.split(key)
    out = Path(args.out)
    net = ProtoPNet(mcfg, key=k_model)
    result = train_protopnet(
        net,
        Xtr,
        ytr,
        Xte,
        yte,
        config=tcfg,
        key=k_train,
        out_dir=out,
        resume=args.resume,
        verbose=not args.quiet,
    )
    proto_acc = evaluate(net, Xte, yte)["accuracy"]
    cnn = PlainCNN(mcfg, key=k_model)
    train_plain_cnn(cnn, Xtr, ytr, config=tcfg, key=k_train, verbose=not args.quiet)
    cnn_acc = evaluate(cnn, Xte, yte)["accuracy"]
    results = {
        "dataset": args.dataset,
        "n_train": int(len(ytr)),
        "n_test": int(len(yte)),
        "protopnet_test_accuracy": proto_acc,
        "plain_cnn_test_accuracy": cnn_acc,
        "chance": 1.0 / C,
        "model_config": _config_dict(mcfg),
        "train_config": _config_dict(tcfg),
    }
    import matplotlib.pyplot as plt

    from xaijax.protopnet import visualize

    if result.push is not None:
        for i in range(min(args.explain, len(yte))):
            fig = visualize.explain_figure(
                net, Xte[i], result.push, Xtr, class_names=ds.class_names, top_k=3
            )
            fig.savefig(out / f"explanation_{i}.png", dpi=100)
            plt.close(fig)
        fig = visualize.prototype_gallery(result.push, Xtr, class_names=ds.class_names)
        fig.savefig(out / "prototypes.png", dpi=100)
        plt.close(fig)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(
        f"test accuracy: ProtoPNet {proto_acc:.3f}, plain CNN {cnn_acc:.3f} "
        f"(chance {1.0 / C:.3f}); run in {out}"
    )
    return results


if __name__ == "__main__":
    main()
