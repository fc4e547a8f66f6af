"""evaluate_explainers: each cell equals calling the metric directly; the table's summaries."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax as xj
from xaijax import metrics

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 5)).astype(np.float32)
W = jnp.asarray([1.0, -2.0, 0.0, 3.0, 0.5])
MASKS = np.zeros((6, 5), bool)
MASKS[:, [0, 1, 3]] = True  # the features the model weighs most


def model(x):
    return jnp.tanh(x @ W)


def noise(f, X, targets=None, key=None):
    return jax.random.normal(key, X.shape)


EXPLAINERS = {
    "saliency": xj.saliency,
    "gradient_x_input": xj.gradient_x_input,
    "noise": noise,
}
METRICS = ["sparseness", "auc", "faithfulness_estimate", "completeness", "input_invariance"]


@pytest.fixture(scope="module")
def table():
    return metrics.evaluate_explainers(
        model,
        X,
        EXPLAINERS,
        METRICS,
        masks=MASKS,
        key=jax.random.key(3),
        metric_kwargs={"faithfulness_estimate": {"features_in_step": 1}},
    )


def test_every_cell_equals_the_metric_called_directly(table):
    assert table.explainers == list(EXPLAINERS) and table.metrics == METRICS
    for i, (name, explainer) in enumerate(EXPLAINERS.items()):
        if name == "noise":
            explainer = functools.partial(explainer, key=jax.random.fold_in(jax.random.key(3), i))
        out = explainer(model, X, targets=None)
        a = np.asarray(getattr(out, "values", out))
        direct = {
            "sparseness": metrics.sparseness(a),
            "auc": metrics.auc(a, MASKS),
            "faithfulness_estimate": metrics.faithfulness_estimate(model, X, a),
            "completeness": metrics.completeness(model, X, a),
            "input_invariance": metrics.input_invariance(model, X, explainer),
        }
        for m, want in direct.items():
            np.testing.assert_allclose(table.scores[name, m], want, atol=1e-6, err_msg=(name, m))
    for r in table.rows:
        s = table.scores[r["explainer"], r["metric"]]
        assert r["n"] == 6 and np.isclose(r["mean"], s.mean())
        assert np.isclose(r["std"], s.std(ddof=1)) and np.isclose(r["sem"], s.std(ddof=1) / 6**0.5)


def test_the_table_ranks_as_theory_says(table):
    mean = dict(zip(table.explainers, table.mean()[:, METRICS.index("auc")], strict=True))
    # |saliency| is |w| (times tanh'), whose top three are the mask
    assert np.isclose(table.scores["saliency", "auc"], 1.0).all()
    assert mean["saliency"] > mean["noise"]
    inv = dict(
        zip(table.explainers, table.mean()[:, METRICS.index("input_invariance")], strict=True)
    )
    assert inv["saliency"] == 1.0 and inv["gradient_x_input"] == 0.0


def test_markdown_pandas_and_figure(table):
    md = table.to_markdown()
    assert md.splitlines()[0] == "| explainer | " + " | ".join(METRICS) + " |"
    assert len(md.splitlines()) == 2 + len(EXPLAINERS)
    assert table.to_pandas().shape == (len(EXPLAINERS) * len(METRICS), 6)
    fig = xj.plots.metric_table(table, higher_is_better={"auc": True})
    assert len([ax for ax in fig.axes if ax.get_visible()]) == len(METRICS)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.evaluate_explainers(model, X, EXPLAINERS, ["nope"])
    with pytest.raises(ValueError, match="masks"):
        metrics.evaluate_explainers(model, X, EXPLAINERS, ["auc"])
    with pytest.raises(TypeError, match="explainers"):
        metrics.evaluate_explainers(model, X, [xj.saliency], ["auc"], masks=MASKS)
    with pytest.raises(TypeError, match="metrics"):
        metrics.evaluate_explainers(model, X, EXPLAINERS, "auc", masks=MASKS)
    with pytest.raises(TypeError, match="not a metric"):
        metrics.evaluate_explainers(model, X, EXPLAINERS, [functools.partial(np.add, 1)])
    with pytest.raises(ValueError, match="metric_kwargs"):
        metrics.evaluate_explainers(model, X, EXPLAINERS, ["sparseness"], metric_kwargs={"auc": {}})
