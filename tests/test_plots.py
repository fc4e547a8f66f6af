"""Figures: what is drawn equals the chosen output's values; kinds, targets and aliases."""

import io

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from xaijax import Explanation, lime_image, plots

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 4))
VALUES = RNG.normal(size=(6, 4, 3))  # three outputs
BASE = RNG.normal(size=(6, 3))
NAMES = ("a", "b", "c", "d")


def explanation(kind="additive", **kwargs):
    args = dict(feature_names=NAMES, output_names=("p0", "p1", "p2"), method="demo", kind=kind)
    args.update(kwargs)
    return Explanation(VALUES, BASE, X, **args)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def bar_widths(fig):
    return np.array([p.get_width() for p in fig.axes[0].patches])


def bar_labels(fig):
    return [t.get_text() for t in fig.axes[0].get_yticklabels()]


def rendered_size(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.tell()


@pytest.mark.parametrize("k", [0, 2])
def test_bar_draws_mean_abs_of_the_chosen_output(k):
    fig = plots.bar(explanation(), targets=k)
    expected = np.abs(VALUES[:, :, k]).mean(0)
    order = np.argsort(expected)  # drawn bottom-up, largest on top
    np.testing.assert_allclose(bar_widths(fig), expected[order])
    assert bar_labels(fig) == [NAMES[i] for i in order]
    assert rendered_size(fig) > 1000
    # An output name picks the same output.
    np.testing.assert_array_equal(
        bar_widths(plots.bar(explanation(), targets=f"p{k}")), bar_widths(fig)
    )


def test_waterfall_adds_the_chosen_output_up():
    exp = explanation()[1]
    fig = plots.waterfall(exp, targets=1, max_display=2)
    values = VALUES[1, :, 1]
    order = np.argsort(np.abs(values))[::-1]
    shown = list(values[order[:2]]) + [values[order[2:]].sum()]
    np.testing.assert_allclose(bar_widths(fig), shown[::-1])
    label = fig.axes[0].get_xlabel()
    assert f"base value {BASE[1, 1]:.3g}" in label
    assert f"output {BASE[1, 1] + values.sum():.3g}" in label


def test_beeswarm_draws_each_instance_of_the_chosen_output():
    fig = plots.beeswarm(explanation(), targets=2, max_display=4)
    order = np.argsort(np.abs(VALUES[:, :, 2]).mean(0))
    for row, j in enumerate(order):
        xs = fig.axes[0].collections[row].get_offsets()[:, 0]
        np.testing.assert_allclose(xs, VALUES[:, j, 2])


def test_output_and_label_are_deprecated_aliases_of_targets():
    exp = explanation()
    new = bar_widths(plots.bar(exp, targets=1))
    with pytest.warns(DeprecationWarning, match="output= is deprecated.*use targets="):
        old = bar_widths(plots.bar(exp, output=1))
    np.testing.assert_array_equal(old, new)
    with pytest.warns(DeprecationWarning, match="output="):
        plots.waterfall(exp[0], output=1)
    with pytest.warns(DeprecationWarning, match="output="):
        plots.beeswarm(exp, output=1)
    surrogate = explanation("surrogate")
    new = bar_widths(plots.lime_bar(surrogate, instance=3, targets=2))
    with pytest.warns(DeprecationWarning, match="label= is deprecated.*use targets="):
        old = bar_widths(plots.lime_bar(surrogate, instance=3, label=2))
    np.testing.assert_array_equal(old, new)
    with pytest.raises(TypeError, match="targets= only"):
        plots.bar(exp, targets=1, output=1)


def test_lime_bar_draws_one_instance_signed():
    fig = plots.lime_bar(explanation("surrogate"), instance=4, targets=1, num_features=3)
    w = VALUES[4, :, 1]
    order = np.argsort(np.abs(w))[::-1][:3][::-1]
    np.testing.assert_allclose(bar_widths(fig), w[order])
    assert bar_labels(fig) == [NAMES[i] for i in order]
    # One instance of it draws the same.
    single = plots.lime_bar(explanation("surrogate")[4], targets=1, num_features=3)
    np.testing.assert_allclose(bar_widths(single), w[order])


@pytest.mark.parametrize("kind", ["map", "surrogate", "prototype"])
def test_additive_plots_refuse_kinds_that_do_not_add_up(kind):
    exp = explanation(kind)
    with pytest.raises(TypeError, match=f"waterfall needs .*'additive' or 'path'.*'{kind}'"):
        plots.waterfall(exp[0])
    with pytest.raises(TypeError, match=f"beeswarm needs .*got kind '{kind}'"):
        plots.beeswarm(exp)
    # bar and lime_bar draw what they can.
    assert rendered_size(plots.bar(exp)) > 1000
    assert rendered_size(plots.lime_bar(exp)) > 1000


def test_path_explanations_are_additive_enough():
    exp = explanation("path")
    plots.waterfall(exp[0])
    plots.beeswarm(exp)


def test_scalar_output_explanation_takes_no_target_but_zero():
    exp = Explanation(VALUES[:, :, 0], BASE[:, 0], X, feature_names=NAMES)
    np.testing.assert_array_equal(bar_widths(plots.bar(exp)), bar_widths(plots.bar(exp, targets=0)))
    with pytest.raises(ValueError, match="^targets picks one output .* no output axis"):
        plots.bar(exp, targets=1)


@pytest.mark.parametrize(
    "targets, error, match",
    [
        (3, ValueError, r"^targets must be an int in \[0, 3\)"),
        (-1, ValueError, r"^targets must be an int in \[0, 3\)"),
        (1.0, TypeError, r"^targets must be an int in \[0, 3\) or one of the output names"),
        (True, TypeError, "^targets must be an int"),
        ("p9", ValueError, "^targets 'p9' is not one of the outputs"),
    ],
)
def test_bad_targets(targets, error, match):
    for plot in (plots.bar, plots.beeswarm, plots.lime_bar):
        with pytest.raises(error, match=match):
            plot(explanation(), targets=targets)
    with pytest.raises(error, match=match):
        plots.waterfall(explanation()[0], targets=targets)


@pytest.mark.parametrize(
    "plot, kwargs, error, match",
    [
        (plots.bar, dict(max_display=0), ValueError, "^max_display must be an int >= 1"),
        (plots.beeswarm, dict(max_display=2.5), TypeError, "^max_display must be an int >= 1"),
        (plots.lime_bar, dict(instance=6), ValueError, r"^instance must be an int in \[0, 5\]"),
        (plots.lime_bar, dict(num_features=0), ValueError, "^num_features must be an int >= 1"),
    ],
)
def test_bad_options(plot, kwargs, error, match):
    with pytest.raises(error, match=match):
        plot(explanation(), **kwargs)


def test_maps_are_drawn_by_overlay_not_bar():
    maps = Explanation(RNG.random((2, 5, 5)), np.zeros(2), RNG.random((2, 5, 5, 3)), kind="map")
    with pytest.raises(ValueError, match="^bar draws attributions over one feature axis"):
        plots.bar(maps)
    fig = plots.overlay(maps.data[0], maps[0])
    np.testing.assert_allclose(fig.axes[0].images[1].get_array(), maps.values[0], rtol=1e-6)
    fig = plots.image_grid(maps.data, {"map": maps})
    np.testing.assert_allclose(fig.axes[1].images[1].get_array(), maps.values[0], rtol=1e-6)


def test_waterfall_needs_one_instance():
    with pytest.raises(ValueError, match="waterfall shows one instance"):
        plots.waterfall(explanation())


@pytest.fixture(scope="module")
def lime_exp():
    def f(X):
        return jnp.stack([X[..., c].mean((1, 2)) for c in range(3)], axis=1)

    seg = np.repeat(np.arange(4), 4).reshape(4, 4)
    image = np.random.default_rng(1).random((4, 4, 3))
    return lime_image(f, image, key=jax.random.key(0), segments=seg, num_samples=40, top_labels=2)


def test_lime_segments_targets_picks_among_the_explained_labels(lime_exp):
    labels = [int(v) for v in lime_exp.extras["labels"]]
    first = plots.lime_segments(lime_exp, num_features=2, positive_only=False)
    assert f"label {labels[0]}" in first.axes[1].get_title()
    second = plots.lime_segments(lime_exp, targets=1, num_features=2, positive_only=False)
    assert f"label {labels[1]}" in second.axes[1].get_title()
    with pytest.warns(DeprecationWarning, match="label= is deprecated.*targets="):
        old = plots.lime_segments(lime_exp, label=labels[1], num_features=2, positive_only=False)
    np.testing.assert_array_equal(
        old.axes[1].images[0].get_array(), second.axes[1].images[0].get_array()
    )
    with pytest.raises(ValueError, match="^lime_segments shows one image"):
        plots.lime_segments(
            Explanation(
                **{
                    **lime_exp.__dict__,
                    "values": lime_exp.values[None],
                    "base_values": lime_exp.base_values[None],
                }
            )
        )


def test_lime_segments_refuses_other_explanations():
    with pytest.raises(TypeError, match="lime_segments needs .*'surrogate'"):
        plots.lime_segments(explanation()[0])
    with pytest.raises(ValueError, match="^lime_segments needs a lime_image explanation"):
        plots.lime_segments(explanation("surrogate")[0])
