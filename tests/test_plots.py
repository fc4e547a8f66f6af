"""Figures: what is drawn equals the chosen output's values; kinds, targets and aliases."""

import io
import re

import jax
import jax.numpy as jnp
import matplotlib
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
    base, out = re.match(r"base value (\S+)  ->  output (\S+) for p1", label).groups()
    np.testing.assert_allclose(float(base), BASE[1, 1], atol=0.005)  # 3 digits at scale ~1
    np.testing.assert_allclose(float(out), BASE[1, 1] + values.sum(), atol=0.005)


def test_beeswarm_draws_each_instance_of_the_chosen_output():
    fig = plots.beeswarm(explanation(), targets=2, max_display=4)
    order = np.argsort(np.abs(VALUES[:, :, 2]).mean(0))
    for row, j in enumerate(order):
        xs = fig.axes[0].collections[row].get_offsets()[:, 0]
        np.testing.assert_allclose(xs, VALUES[:, j, 2])
        # Colours span the feature's 5th-95th percentiles, as in shap.
        lo, hi = np.percentile(X[:, j], [5, 95])
        np.testing.assert_allclose(
            fig.axes[0].collections[row].get_array(), np.clip((X[:, j] - lo) / (hi - lo), 0, 1)
        )


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
    # One picture: image 0's map through jet (min to max), blended half over the image, in
    # the second cell of the first row.
    mosaic = np.asarray(fig.axes[0].images[0].get_array())
    gap = mosaic.shape[1] - 2 * 5
    heat = maps.values[0]
    jet = matplotlib.colormaps["jet"]((heat - heat.min()) / (heat.max() - heat.min()))[..., :3]
    expected = 0.5 * jet + 0.5 * np.clip(maps.data[0], 0, 1)
    np.testing.assert_allclose(mosaic[:5, 5 + gap :], expected, atol=1e-6)
    np.testing.assert_allclose(mosaic[:5, :5], np.clip(maps.data[0], 0, 1), atol=1e-6)
    with pytest.raises(ValueError, match=r"maps\['map'\] must have shape"):
        plots.image_grid(maps.data, {"map": maps.values[:1]})


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


# -- display units, output names, layout -------------------------------------------------------
RAW = X * 100.0 + 500.0  # the same rows in "display units"


def texts_inside_axes(fig):
    """Whether every text drawn in the axes lies within them (so it cannot cover tick labels)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    box = ax.get_window_extent(renderer)
    return all(
        box.x0 - 1 <= t.get_window_extent(renderer).x0
        and t.get_window_extent(renderer).x1 <= box.x1 + 1
        for t in ax.texts
    )


def test_number_format_reads_like_the_numbers_it_shows():
    fmt = plots.number_format([0.98, -5.96e-08])
    assert (fmt(0.98), fmt(-5.96e-08), fmt(-5.96e-08, sign=True)) == ("0.980", "0.000", "0.000")
    assert plots.number_format([250.0])(123.456) == "123"
    assert plots.number_format([3e-6])(3e-6) == "3e-06"
    fig = plots.waterfall(Explanation(np.array([0.5, -5.96e-08]), np.array(0.3), np.ones(2)))
    assert "0.000" in [t.get_text().strip() for t in fig.axes[0].texts]
    assert "e-08" not in fig.axes[0].get_xlabel()


def test_waterfall_shows_display_units_or_says_it_shows_model_units():
    exp = explanation()[2]
    plain = plots.waterfall(exp, targets=0)
    labels = bar_labels(plain)
    assert any(f"= {X[2, i]:.4g}" in s for s in labels for i in range(4))
    assert "as the model received them" in plain.axes[0].get_xlabel()
    raw = plots.waterfall(exp, targets=0, display_data=RAW[2])
    assert sorted(bar_labels(raw)) == sorted(f"{NAMES[i]} = {RAW[2, i]:.4g}" for i in range(4))
    assert "model received" not in raw.axes[0].get_xlabel()
    # The Explanation may carry them, like shap's display_data.
    carried = explanation(extras={"display_data": RAW})[2]
    assert bar_labels(plots.waterfall(carried, targets=0)) == bar_labels(raw)
    with pytest.raises(ValueError, match="^display_data must hold the explained rows"):
        plots.waterfall(exp, display_data=RAW)


@pytest.mark.parametrize(
    "plot, exp, where",
    [
        (plots.bar, explanation(), "title"),
        (plots.beeswarm, explanation(), "title"),
        (plots.waterfall, explanation()[0], "title"),
        (plots.force, explanation()[0], "title"),
        (plots.decision, explanation(), "title"),
        (plots.lime_bar, explanation("surrogate"), "title"),
    ],
)
def test_titles_and_axes_name_the_output_shown(plot, exp, where):
    fig = plot(exp, targets=2)
    assert "(p2)" in fig.axes[0].get_title() and "for p2" in fig.axes[0].get_xlabel()
    numbered = Explanation(VALUES, BASE, X, output_names=("0", "1", "2"), method="m")
    numbered = numbered[0] if not exp.is_batched else numbered
    kind = exp.kind
    numbered = Explanation(**{**numbered.__dict__, "kind": kind})
    assert "(output 1)" in plot(numbered, targets=1).axes[0].get_title()


@pytest.mark.parametrize("plot", [plots.bar, plots.lime_bar, plots.waterfall])
def test_value_labels_stay_inside_the_axes(plot):
    exp = explanation("surrogate" if plot is plots.lime_bar else "additive")
    exp = exp[0] if plot is plots.waterfall else exp
    fig = plot(exp, targets=1)
    assert len(fig.axes[0].texts) >= 4
    assert texts_inside_axes(fig)


def test_lime_bar_skips_padding_and_shows_display_units():
    words = np.array([["good", "", "movie", ""]])
    v = np.array([[[0.3], [0.0], [-0.1], [0.0]]])
    exp = Explanation(
        v,
        np.zeros((1, 1)),
        np.zeros((1, 4)),
        output_names=("1",),
        kind="surrogate",
        extras={"feature_labels": words},
    )
    fig = plots.lime_bar(exp, num_features=10)
    assert bar_labels(fig) == ["movie", "good"]
    assert "model received" not in fig.axes[0].get_xlabel()  # words have no units
    bins = np.array([[f"0.1 < {n} <= 0.5" for n in NAMES]] * 6)
    binned = explanation("surrogate", extras={"feature_labels": bins})
    assert "model received" in plots.lime_bar(binned).axes[0].get_xlabel()
    raw = plots.lime_bar(binned, instance=3, targets=1, display_data=RAW)
    assert sorted(bar_labels(raw)) == sorted(f"{NAMES[i]} = {RAW[3, i]:.4g}" for i in range(4))
    with pytest.raises(ValueError, match="^display_data must hold the explained rows"):
        plots.lime_bar(binned, display_data=RAW[:, :2])


# -- the plots shap offers, drawn without shap ----------------------------------------------------
def test_force_segments_add_up_to_the_output():
    exp = explanation()[3]
    v, base = VALUES[3, :, 1], BASE[3, 1]
    fx = base + v.sum()
    fig = plots.force(exp, targets=1)
    patches = fig.axes[0].patches
    red = [p for p in patches if p.get_facecolor()[0] > 0.5]
    blue = [p for p in patches if p.get_facecolor()[0] <= 0.5]
    assert len(red) == (v > 0).sum() and len(blue) == (v < 0).sum()
    np.testing.assert_allclose(sum(p.get_width() for p in red), v[v > 0].sum())
    np.testing.assert_allclose(sum(p.get_width() for p in blue), -v[v < 0].sum())
    # Red pushes up to f(x) from the left, blue back from the right: they meet at f(x), and
    # the whole bar spans base -> f(x) plus what cancels out.
    np.testing.assert_allclose(max(p.get_x() + p.get_width() for p in red), fx)
    np.testing.assert_allclose(min(p.get_x() for p in blue), fx)
    np.testing.assert_allclose(
        sum(p.get_width() for p in red) - sum(p.get_width() for p in blue), fx - base
    )
    # The largest force sits next to f(x), as in shap.
    nearest = min(red, key=lambda p: abs(p.get_x() + p.get_width() - fx))
    np.testing.assert_allclose(nearest.get_width(), v.max())
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("f(x) = ") for t in texts)


def test_scatter_points_are_the_values_and_the_data():
    exp = explanation()
    fig = plots.scatter(exp, "c", targets=2, color=None)
    np.testing.assert_allclose(
        fig.axes[0].collections[0].get_offsets(), np.c_[X[:, 2], VALUES[:, 2, 2]]
    )
    assert "model received" in fig.axes[0].get_xlabel()
    fig = plots.scatter(exp, 2, targets=2, color="a", display_data=RAW)
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets()[:, 0], RAW[:, 2])
    np.testing.assert_allclose(fig.axes[0].collections[0].get_array(), RAW[:, 0])
    with pytest.raises(ValueError, match="^feature 'z' is not one of the feature names"):
        plots.scatter(exp, "z")
    with pytest.raises(ValueError, match=r"^color must be an int in \[0, 3\]"):
        plots.scatter(exp, 0, color=7)


def test_scatter_colours_by_shaps_interaction_choice():
    shap = pytest.importorskip("shap")
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(120, 5))
    V = Z * Z[:, [3]] + 0.1 * rng.normal(size=Z.shape)  # every effect depends on feature 3
    for j in (0, 2):
        ours = plots.approximate_interactions(V, Z, j)
        theirs = shap.utils.approximate_interactions(j, V, Z)
        np.testing.assert_array_equal(ours[:3], theirs[:3])
        assert ours[0] == 3
    fig = plots.scatter(Explanation(V, np.zeros(120), Z), 0)
    np.testing.assert_allclose(fig.axes[0].collections[0].get_array(), Z[:, 3])


def test_heatmap_rows_columns_and_output_line():
    shap = pytest.importorskip("shap")
    exp = explanation()
    v = VALUES[:, :, 0]
    fig = plots.heatmap(exp, targets=0, max_display=3)
    columns = shap.utils.hclust_ordering(v)
    np.testing.assert_array_equal(plots.hclust_order(v), columns)
    rows = np.argsort(-np.abs(v).mean(0), kind="stable")
    expected = np.c_[v[columns][:, rows[:2]], v[columns][:, rows[2:]].sum(1)]
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), expected.T)
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert labels == [NAMES[rows[0]], NAMES[rows[1]], "sum of 2 other features"]
    fx = BASE[:, 0] + v.sum(1)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), fx[columns])
    by_output = plots.heatmap(exp, instance_order="output")
    np.testing.assert_allclose(by_output.axes[0].lines[0].get_ydata(), np.sort(fx))
    with pytest.raises(ValueError, match="^instance_order must be a permutation"):
        plots.heatmap(exp, instance_order=[0, 0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="^instance_order must be 'hclust'"):
        plots.heatmap(exp, instance_order="random")


def test_decision_paths_end_at_the_output_in_shaps_feature_order():
    shap = pytest.importorskip("shap")
    exp = explanation()
    v, base = VALUES[:, :, 1], BASE[:, 1]
    order = np.argsort(np.abs(v).sum(0), kind="stable")  # least important first
    # shap draws into the current figure: run it before ours.
    result = shap.decision_plot(0.0, v, feature_names=list(NAMES), show=False, return_objects=True)
    plt.close("all")
    fig = plots.decision(exp, targets=1, max_display=3)
    np.testing.assert_array_equal(result.feature_idx, order)
    assert bar_labels(fig) == [NAMES[i] for i in order[1:]]
    for i, line in enumerate(fig.axes[0].lines[: len(v)]):
        path = line.get_xdata()
        np.testing.assert_allclose(path[-1], base[i] + v[i].sum())  # ends at f(x)
        np.testing.assert_allclose(path[0], base[i] + v[i, order[0]])  # base + hidden feature
        np.testing.assert_allclose(np.diff(path), v[i, order[1:]])
    one = plots.decision(exp[0], targets=1, display_data=RAW[0])
    first = np.argsort(np.abs(v[0]), kind="stable")
    assert bar_labels(one) == [f"{NAMES[i]} = {RAW[0, i]:.4g}" for i in first]
    with pytest.raises(ValueError, match="^feature_order must be a permutation"):
        plots.decision(exp, feature_order=[0, 1])


@pytest.mark.parametrize("kind", ["map", "surrogate", "prototype"])
def test_shap_style_plots_refuse_kinds_that_do_not_add_up(kind):
    exp = explanation(kind)
    for plot, arg in [
        (plots.force, exp[0]),
        (plots.heatmap, exp),
        (plots.decision, exp),
    ]:
        with pytest.raises(TypeError, match=f"{plot.__name__} needs .*got kind '{kind}'"):
            plot(arg)
    with pytest.raises(TypeError, match=f"scatter needs .*got kind '{kind}'"):
        plots.scatter(exp, 0)


def test_shap_style_plots_need_the_right_shape():
    with pytest.raises(ValueError, match="^force shows one instance"):
        plots.force(explanation())
    with pytest.raises(ValueError, match=r"^heatmap needs a batch of attributions \(n, M\)"):
        plots.heatmap(explanation()[0])
    with pytest.raises(ValueError, match=r"^scatter needs a batch"):
        plots.scatter(explanation()[0], 0)


def interaction_explanation(K=None):
    """A batch of symmetric (n, M, M[, K]) interaction values in shap's layout."""
    raw = RNG.normal(size=(6, 4, 4) + ((K,) if K else ()))
    values = (raw + np.swapaxes(raw, 1, 2)) / 2
    names = ("p0", "p1", "p2")[:K] if K else None
    base = np.zeros((6, K)) if K else np.zeros(6)
    return Explanation(
        values,
        base,
        X,
        feature_names=NAMES,
        output_names=names,
        kind="interaction",
        method="shapley_interactions",
        extras={"index": "k-SII"},
    )


def test_interaction_matrix_draws_whole_pair_values():
    exp = interaction_explanation(K=3)
    whole = exp.values[..., 2] * np.where(np.eye(4, dtype=bool), 1, 2)[None]
    # One instance: signed, features by total |value|.
    one = exp[1]
    fig = plots.interaction_matrix(one, targets=2)
    order = np.argsort(-np.abs(whole[1]).sum(1), kind="stable")
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), whole[1][np.ix_(order, order)])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [NAMES[i] for i in order]
    assert "k-SII" in fig.axes[0].get_title() and "p2" in fig.axes[0].get_title()
    # A batch: the mean |value| of each entry; max_display keeps the strongest features.
    mean_abs = np.abs(whole).mean(0)
    fig = plots.interaction_matrix(exp, targets="p2", max_display=2)
    order = np.argsort(-mean_abs.sum(1), kind="stable")[:2]
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), mean_abs[np.ix_(order, order)])
    assert rendered_size(fig) > 1000


def test_interaction_network_draws_the_strongest_pairs():
    exp = interaction_explanation()
    pair = np.abs(2 * exp.values).mean(0)
    rows, cols = np.triu_indices(4, k=1)
    strongest = np.argsort(-pair[rows, cols], kind="stable")[:3]
    fig = plots.interaction_network(exp, max_edges=3)
    lines = fig.axes[0].lines
    assert [line.get_label() for line in lines] == [
        f"{NAMES[rows[p]]}-{NAMES[cols[p]]}" for p in strongest
    ]
    widths = [line.get_linewidth() for line in lines]
    assert widths == sorted(widths, reverse=True) and widths[0] == pytest.approx(8.0)
    assert rendered_size(fig) > 1000


def test_interaction_plots_refuse_other_kinds():
    for plot in (plots.interaction_matrix, plots.interaction_network):
        with pytest.raises(TypeError, match="kind"):
            plot(explanation())
    with pytest.raises(ValueError, match="max_edges"):
        plots.interaction_network(interaction_explanation(), max_edges=0)
