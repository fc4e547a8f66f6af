"""ProtoPNet training: checkpoint resume, a short run on synthetic shapes, explanations, CLI."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from flax import nnx

from xaijax import cli, instance_mesh
from xaijax.core.registry import explainers
from xaijax.protopnet import explain, explain_prototypes, visualize
from xaijax.protopnet.model import ProtoPNet, ProtoPNetConfig, log_similarity, receptive_field
from xaijax.protopnet.push import high_activation_box, upsample
from xaijax.protopnet.train import TrainConfig, evaluate, train_protopnet
from xaijax.zoo.data import synthetic_shapes


def _params(model):
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(nnx.split(model, nnx.Param, ...)[1])]


def test_checkpoint_resume_reproduces_an_uninterrupted_run(tmp_path):
    ds = synthetic_shapes(jax.random.key(5), 24, size=24)
    cfg = ProtoPNetConfig(img_size=24, num_prototypes=3, prototype_depth=4, channels=(4, 4))
    # Every stage runs: warm (epoch 0), joint, push + last layer (epochs 1, 2).
    tcfg = TrainConfig(
        epochs=3, warm_epochs=1, batch_size=8, push_start=1, push_every=1, last_layer_iterations=1
    )
    key = jax.random.key(7)
    straight = ProtoPNet(cfg, key=jax.random.key(0))
    res_a = train_protopnet(
        straight, ds.images, ds.labels, config=tcfg, key=key, out_dir=tmp_path / "a", verbose=False
    )
    interrupted = ProtoPNet(cfg, key=jax.random.key(0))
    train_protopnet(
        interrupted,
        ds.images,
        ds.labels,
        config=tcfg,
        key=key,
        out_dir=tmp_path / "b",
        stop_after=2,
        verbose=False,
    )
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["epoch"] == 2
    # A fresh model with other weights and another key: the checkpoint's state and key must win.
    resumed = ProtoPNet(cfg, key=jax.random.key(1))
    res_b = train_protopnet(
        resumed,
        ds.images,
        ds.labels,
        config=tcfg,
        key=jax.random.key(99),
        out_dir=tmp_path / "b",
        resume=True,
        verbose=False,
    )
    with pytest.raises(ValueError, match="config"):
        train_protopnet(
            resumed,
            ds.images,
            ds.labels,
            config=dataclasses.replace(tcfg, epochs=4),
            key=key,
            out_dir=tmp_path / "b",
            resume=True,
            verbose=False,
        )
    for a, b in zip(_params(straight), _params(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(
        _params(straight)[0], _params(ProtoPNet(cfg, key=jax.random.key(0)))[0]
    )
    np.testing.assert_array_equal(res_a.push.image_index, res_b.push.image_index)
    log_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    log_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert log_a == log_b and [json.loads(x)["stage"] for x in log_a] == [
        "warm",
        "joint",
        "push",
        "last",
        "joint",
        "push",
        "last",
    ]


@pytest.fixture(scope="module")
def trained():
    ds = synthetic_shapes(jax.random.key(1), 360, size=24)
    train, test = (ds.images[:300], ds.labels[:300]), (ds.images[300:], ds.labels[300:])
    cfg = ProtoPNetConfig(img_size=24, num_prototypes=6, prototype_depth=16, channels=(8, 16))
    tcfg = TrainConfig(
        epochs=14,
        warm_epochs=1,
        batch_size=20,
        joint_lr=(5e-3, 5e-3, 5e-3),
        push_start=8,
        push_every=100,
        last_layer_iterations=3,
        last_layer_lr=3e-3,
    )
    model = ProtoPNet(cfg, key=jax.random.key(0))
    result = train_protopnet(
        model, *train, *test, config=tcfg, key=jax.random.key(2), verbose=False
    )
    return model, result, train, test


def test_short_training_run_beats_chance(trained):
    model, result, _, (X, y) = trained
    acc = evaluate(model, X, y)["accuracy"]
    # 3 balanced classes (chance 1/3); this deterministic run reaches 1.0 after its final push.
    assert acc >= 0.7, acc
    assert result.history[-1]["stage"] == "last"
    assert result.history[-1]["test_accuracy"] == pytest.approx(acc, abs=1e-6)


def test_explanation_contributions_add_up_to_the_logit(trained):
    model, result, (Xtr, ytr), (X, _) = trained
    P = model.config.num_prototypes
    exp = explain_prototypes(model, X[:4], top_k=P)
    assert exp.kind == "prototype" and exp.values.shape == (4, P) and exp.is_batched
    np.testing.assert_array_equal(exp.base_values, np.zeros(4))
    logits, min_d, d = (np.asarray(a) for a in model.forward(jnp.asarray(X[:4])))
    # Near a pushed prototype d is ~1e-2 and d(sim)/dd ~ -1/d: float32 rounding of the distances
    # (compiled vs eager) moves the similarity by up to ~1e-4 relative.
    np.testing.assert_allclose(exp.values, np.asarray(log_similarity(min_d)), rtol=1e-3)
    ex = exp.extras
    np.testing.assert_allclose(ex["logits"], logits, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(ex["predicted"], logits.argmax(1))
    np.testing.assert_array_equal(ex["targets"], logits.argmax(1))
    picked = logits[np.arange(4), ex["targets"]]
    np.testing.assert_allclose(ex["contributions"].sum(1), picked, rtol=1e-4)
    # top_k ranks the prototypes by decreasing contribution
    ranked = np.take_along_axis(ex["contributions"], ex["top_k"], axis=1)
    assert np.all(np.diff(ranked, axis=1) <= 0)
    # locations: each prototype's nearest patch, its receptive field and high-activation box
    rf = receptive_field(model.config)
    for i in range(4):
        for j in range(P):
            r, c = ex["position"][i, j]
            assert d[i, r, c, j] == pytest.approx(d[i, ..., j].min(), abs=1e-5)
            assert tuple(ex["rf_box"][i, j]) == rf.box(int(r), int(c), 24)
            up = np.asarray(upsample(log_similarity(d[i, ..., j])[None], 24))[0]
            assert tuple(ex["high_box"][i, j]) == high_activation_box(up)
    # the pushed prototypes are training patches of their own class (distance 0 on the source)
    _, min_d, _ = model.forward(Xtr[result.push.image_index])
    assert float(np.max(np.diag(np.asarray(min_d)))) < 1e-5
    np.testing.assert_array_equal(ytr[result.push.image_index], result.push.classes)


def test_explanation_single_image_targets_and_batch_size(trained):
    model, _, _, (X, _) = trained
    batch = explain_prototypes(model, X[:3], targets=1, top_k=2)
    one = explain(model, X[1], targets=1, top_k=2)  # one image in, no leading axis out
    assert not one.is_batched and one.values.shape == (6,) and one.extras["top_k"].shape == (2,)
    np.testing.assert_allclose(one.values, batch.values[1], rtol=1e-6)
    np.testing.assert_array_equal(batch.extras["targets"], [1, 1, 1])
    w = np.asarray(model.last_layer[...])[:, 1]
    np.testing.assert_allclose(batch.extras["contributions"], batch.values * w, rtol=1e-6)
    np.testing.assert_allclose(
        batch.extras["contributions"].sum(1), batch.extras["logits"][:, 1], rtol=1e-4
    )
    small = explain_prototypes(model, X[:3], targets=np.array([1, 0, 2]), top_k=2, batch_size=1)
    np.testing.assert_allclose(small.values, batch.values, rtol=1e-5)
    np.testing.assert_array_equal(small.extras["targets"], [1, 0, 2])
    assert batch[2].extras["high_box"].shape == (6, 4)
    sharded = explain_prototypes(model, X[:3], targets=1, top_k=2, mesh=instance_mesh())
    np.testing.assert_allclose(sharded.values, batch.values, rtol=1e-6)
    np.testing.assert_array_equal(sharded.extras["top_k"], batch.extras["top_k"])
    with pytest.warns(DeprecationWarning, match="target"):
        old = explain(model, X[1], target=1, top_k=2)
    np.testing.assert_array_equal(old.values, one.values)
    info = explainers()["explain_prototypes"]
    assert (info.kind, info.inputs, info.model_form) == ("prototype", "image", "protopnet")


def test_explanation_bad_input_names_the_argument(trained):
    model, _, _, (X, _) = trained
    with pytest.raises(ValueError, match="top_k"):
        explain_prototypes(model, X[0], top_k=0)
    with pytest.raises(ValueError, match="images"):
        explain_prototypes(model, X[0, :10], top_k=1)
    with pytest.raises(ValueError, match="images"):
        explain_prototypes(model, np.full((24, 24, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="targets"):
        explain_prototypes(model, X[:2], targets=3)
    with pytest.raises(TypeError, match="targets"):
        explain_prototypes(model, X[:2], targets=lambda logits: logits[:, 0])
    with pytest.raises(ValueError, match="batch_size"):
        explain_prototypes(model, X[:2], batch_size=0)
    with pytest.raises(TypeError, match="model"):
        explain_prototypes(lambda x: x, X[:2])
    broken = ProtoPNet(model.config, key=jax.random.key(0))
    broken.last_layer[...] = jnp.full_like(broken.last_layer[...], jnp.inf)
    with pytest.raises(ValueError, match="NaN or inf"):
        explain_prototypes(broken, X[:2])


def test_figures_are_written(trained, tmp_path):
    model, result, (Xtr, _), (X, _) = trained
    exp = explain_prototypes(model, X[:2], top_k=3)
    fig = visualize.explain_figure(exp, result.push, Xtr, index=1, top_k=2)
    fig.savefig(tmp_path / "explain.png")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 8
    single = visualize.explain_figure(exp[0], result.push, Xtr)
    assert len(single.axes) == 12
    gallery = visualize.prototype_gallery(result.push, Xtr, class_names=("a", "b", "c"))
    gallery.savefig(tmp_path / "gallery.png")
    assert len(gallery.axes) == 6
    assert (tmp_path / "explain.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="index"):
        visualize.explain_figure(exp, result.push, Xtr)
    with pytest.raises(ValueError, match="top_k"):
        visualize.explain_figure(exp, result.push, Xtr, index=0, top_k=4)
    with pytest.warns(DeprecationWarning, match="explain_figure"):
        old = visualize.explain_figure(model, X[0], result.push, Xtr, top_k=2)
    assert len(old.axes) == 8
    matplotlib.pyplot.close("all")


def test_bad_training_input_raises():
    cfg = ProtoPNetConfig(img_size=24, num_prototypes=3, prototype_depth=4, channels=(4, 4))
    model = ProtoPNet(cfg, key=jax.random.key(0))
    images = np.zeros((6, 24, 24, 3), np.float32)
    with pytest.raises(ValueError, match="train images"):
        train_protopnet(model, images[:, :20], np.zeros(6, int), key=jax.random.key(0))
    with pytest.raises(ValueError, match="train labels"):
        train_protopnet(model, images, np.full(6, 3), key=jax.random.key(0))
    with pytest.raises(ValueError, match="resume"):
        train_protopnet(model, images, np.zeros(6, int), key=jax.random.key(0), resume=True)


def test_cli_quick_run_writes_results(tmp_path):
    out = tmp_path / "run"
    argv = [
        "protopnet",
        "--dataset",
        "shapes",
        "--quick",
        "--epochs",
        "2",
        "--n",
        "48",
        "--size",
        "24",
        "--prototypes-per-class",
        "1",
        "--prototype-depth",
        "4",
        "--channels",
        "4,4",
        "--out",
        str(out),
        "--explain",
        "1",
        "--quiet",
    ]
    assert cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["protopnet_test_accuracy"] <= 1.0 and results["n_test"] == 12
    assert results["model_config"]["channels"] == [4, 4]
    assert (out / "prototypes.png").exists() and (out / "metrics.jsonl").exists()
    assert (out / "explanation_0.png").exists() and (out / "checkpoint.npz").exists()
    assert cli.main([*argv[:-1], "--channels", "4,x"]) == 2


def test_the_full_cli_schedule_trains_a_backbone_from_scratch():
    """The command's full schedule (no --quick) trains the backbone; the reference settings.py's
    backbone rate (1e-4, for ImageNet-pretrained features) leaves a from-scratch CNN at chance."""
    from xaijax.cli.protopnet import FULL, _dataset
    from xaijax.protopnet.model import PlainCNN
    from xaijax.protopnet.train import train_plain_cnn

    _, (Xtr, ytr), (Xte, yte) = _dataset("shapes", 24, 400, 0)
    config = ProtoPNetConfig(
        img_size=24, in_channels=3, num_classes=3, num_prototypes=3, prototype_depth=4,
        channels=(8, 16),
    )  # fmt: skip
    accuracy = {}
    for name, schedule in (("full", FULL), ("reference", {})):
        cnn = PlainCNN(config, key=jax.random.key(0))
        short = TrainConfig(**dict(schedule, epochs=8, warm_epochs=1))
        train_plain_cnn(cnn, Xtr, ytr, config=short, key=jax.random.key(0), verbose=False)
        accuracy[name] = evaluate(cnn, Xte, yte)["accuracy"]
    # 0.87 and 0.24 when written (chance 0.33)
    assert accuracy["full"] > 0.7 and accuracy["reference"] < 0.45, accuracy
