"""``xaijax protopnet``: train ProtoPNet and a plain CNN with the same backbone; write a run folder.

The run folder holds ``results.json`` (test accuracies, configurations), ``metrics.jsonl`` (one
record per epoch and stage), ``checkpoint.npz`` (parameters, optimiser states and metadata in one
file, replaced atomically every epoch; ``checkpoint.json`` is a copy of the metadata for people),
``run.json`` (the data settings: data set, size, images, seed; written before training, checked
by ``resume``), ``explanation_*.png`` ("this looks like that" for test images) and
``prototypes.png``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from xaijax.cli.runs import save_figure
from xaijax.cli.settings import CliError, ProtoPNetSettings

__all__ = ["protopnet", "QUICK", "DATASETS"]

DATASETS = ("shapes", "digits")

# The small CPU schedule of --quick (minutes on 2 cores).
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


def _dataset(name: str, size: int, n: int, seed: int):
    import jax

    from xaijax.zoo import data

    if name == "shapes":
        ds = data.synthetic_shapes(jax.random.key(seed), n, size=size, num_classes=3)
    elif name == "digits":
        ds = data.digits(size)
    else:
        raise CliError(f"--dataset must be one of {DATASETS}; got {name!r}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(ds.images.shape[0])
    cut = int(0.75 * len(order))
    tr, te = order[:cut], order[cut:]
    return ds, (ds.images[tr], ds.labels[tr]), (ds.images[te], ds.labels[te])


RUN_FILE = "run.json"


def _run_record(s: ProtoPNetSettings) -> dict:
    """What decides the training data: a resumed run must share it with the checkpoint."""
    return {"dataset": s.dataset, "size": s.size, "n": s.n, "seed": s.seed}


def _check_run(out: Path, s: ProtoPNetSettings, log) -> None:
    """On ``resume``, refuse a checkpoint trained on other data settings (another ``--seed``
    generates and splits other data); on a fresh run, drop an old checkpoint and record the
    settings before training, so a checkpoint always sits beside the settings it was made with.
    """
    wanted = _run_record(s)
    path = out / RUN_FILE
    if s.resume and (out / "checkpoint.npz").exists():
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise CliError(
                f"--resume: {out} holds a checkpoint but no readable {RUN_FILE} recording the "
                f"data settings it was trained with ({type(err).__name__}); rerun without "
                "--resume to start afresh"
            ) from err
        changed = [
            f"--{k} was {recorded.get(k)!r}, now {v!r}"
            for k, v in wanted.items()
            if recorded.get(k) != v
        ]
        if changed:
            raise CliError(
                f"--resume: the checkpoint in {out} was trained with other settings: "
                + "; ".join(changed)
                + ". Rerun with the same settings to resume, or without --resume to start afresh"
            )
        log(f"resuming from the checkpoint in {out}")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("checkpoint.npz", "checkpoint.json"):
            (out / name).unlink(missing_ok=True)
        tmp = out / f".{RUN_FILE}.tmp"
        tmp.write_text(json.dumps(wanted, indent=1))
        os.replace(tmp, path)
    except OSError as err:
        raise CliError(
            f"--out {str(out)!r}: cannot write there ({type(err).__name__}: {err})"
        ) from err


def _config_dict(cfg):
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def protopnet(settings: ProtoPNetSettings | None = None, *, log=print) -> dict:
    """Train ProtoPNet and a plain CNN on ``settings.dataset``; write the run folder.

    Returns:
        The results written to ``out/results.json`` (both test accuracies, chance, the model and
        training configurations).
    """
    import jax

    from xaijax.protopnet import (
        PlainCNN,
        ProtoPNet,
        ProtoPNetConfig,
        TrainConfig,
        evaluate,
        explain_prototypes,
        train_plain_cnn,
        train_protopnet,
    )
    from xaijax.protopnet.visualize import explain_figure, prototype_gallery

    s = ProtoPNetSettings() if settings is None else settings
    out = Path(s.out)
    _check_run(out, s, log)
    log(f"preparing the {s.dataset} data")
    ds, (Xtr, ytr), (Xte, yte) = _dataset(s.dataset, s.size, s.n, s.seed)
    C = len(ds.class_names)
    channels = s.channels or ((16, 32, 32) if s.backbone == "small" else (16, 32, 64, 64))
    try:
        mcfg = ProtoPNetConfig(
            img_size=s.size,
            in_channels=ds.images.shape[-1],
            num_classes=C,
            num_prototypes=C * s.prototypes_per_class,
            prototype_depth=s.prototype_depth,
            backbone=s.backbone,
            channels=tuple(channels),
        )
        mcfg.validate()
        schedule = dict(QUICK) if s.quick else {}
        if s.epochs is not None:
            schedule["epochs"] = s.epochs
        tcfg = TrainConfig(**schedule)
        tcfg.validate()
    except ValueError as err:
        raise CliError(str(err)) from err
    key = jax.random.key(s.seed)
    k_model, k_train = jax.random.split(key)
    net = ProtoPNet(mcfg, key=k_model)
    log(f"training ProtoPNet: {tcfg.epochs} epochs on {len(ytr)} images (the first compiles)")
    try:
        result = train_protopnet(
            net,
            Xtr,
            ytr,
            Xte,
            yte,
            config=tcfg,
            key=k_train,
            out_dir=out,
            resume=s.resume,
            verbose=not s.quiet,
        )
    except ValueError as err:  # a checkpoint of another configuration, or a damaged one
        raise CliError(f"{err}; rerun without --resume to start afresh") from err
    proto_acc = evaluate(net, Xte, yte)["accuracy"]
    log("training the plain CNN with the same backbone")
    cnn = PlainCNN(mcfg, key=k_model)
    train_plain_cnn(cnn, Xtr, ytr, config=tcfg, key=k_train, verbose=not s.quiet)
    cnn_acc = evaluate(cnn, Xte, yte)["accuracy"]
    results = {
        "dataset": s.dataset,
        "n_train": int(len(ytr)),
        "n_test": int(len(yte)),
        "protopnet_test_accuracy": proto_acc,
        "plain_cnn_test_accuracy": cnn_acc,
        "chance": 1.0 / C,
        "model_config": _config_dict(mcfg),
        "train_config": _config_dict(tcfg),
    }
    shown = min(s.explain, len(yte))
    log(f"writing figures and results.json to {out}")
    if result.push is not None and shown:
        top_k = min(3, mcfg.num_prototypes)
        exp = explain_prototypes(net, Xte[:shown], top_k=top_k)
        for i in range(shown):
            fig = explain_figure(exp, result.push, Xtr, index=i, class_names=ds.class_names)
            save_figure(fig, str(out), f"explanation_{i}.png", dpi=100)
    if result.push is not None:
        fig = prototype_gallery(result.push, Xtr, class_names=ds.class_names)
        save_figure(fig, str(out), "prototypes.png", dpi=100)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    log(
        f"test accuracy: ProtoPNet {proto_acc:.3f}, plain CNN {cnn_acc:.3f} "
        f"(chance {1.0 / C:.3f}); run in {out}"
    )
    return results
