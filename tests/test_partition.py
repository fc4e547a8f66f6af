"""Partition SHAP (Owen values) against shap's PartitionExplainer and a brute-force Owen formula."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import shap
from same import assert_same
from scipy.cluster.hierarchy import linkage

import xaijax as xj
from xaijax.core.hierarchy import (
    check_clustering,
    feature_hierarchy,
    image_hierarchy,
    sequence_hierarchy,
    tree_tables,
)
from xaijax.core.model import as_model
from xaijax.shapley import partition

RNG = np.random.default_rng(0)
M, K = 7, 3
W1 = RNG.normal(size=(M, 8)).astype(np.float32)
W2 = RNG.normal(size=(8, K)).astype(np.float32)
X = RNG.normal(size=(3, M)).astype(np.float32)
BG = RNG.normal(size=(5, M)).astype(np.float32)
Z = linkage(RNG.normal(size=(M, 10)), "average")  # an unbalanced hierarchy over 7 features


def mlp(X):
    return jnp.tanh(jnp.asarray(X, jnp.float32) @ W1) @ W2


_mlp = jax.jit(mlp)


def mlp_np(X):
    """The same float32 model for shap (float64 out), so both score identical outputs."""
    return np.asarray(_mlp(np.asarray(X, np.float32)), np.float64)


CONV = RNG.normal(size=(3, 3, 3, 4)).astype(np.float32) / 3
HEAD = RNG.normal(size=(4, K)).astype(np.float32)


def cnn(X):
    X = jnp.asarray(X, jnp.float32)
    dn = jax.lax.conv_dimension_numbers(X.shape, CONV.shape, ("NHWC", "HWIO", "NHWC"))
    A = jax.lax.conv_general_dilated(X, CONV, (1, 1), "SAME", dimension_numbers=dn)
    return jnp.tanh(jax.nn.relu(A)).mean(axis=(1, 2)) @ HEAD


_cnn = jax.jit(cnn)


def cnn_np(X):
    return np.asarray(_cnn(np.asarray(X, np.float32)), np.float64)


def shap_partition(model, masker, X, max_evals, **kw):
    return shap.PartitionExplainer(model, masker)(X, max_evals=max_evals, silent=True, **kw)


# -- an independent oracle: the nested Owen formula ---------------------------------------------
def children_of(Z):
    G = Z.shape[0] + 1
    return {G + i: (int(a), int(b)) for i, (a, b) in enumerate(Z[:, :2])}, 2 * G - 2


def leaves_under(node, children):
    if node not in children:
        return [node]
    return [g for c in children[node] for g in leaves_under(c, children)]


def brute_force_owen(v, Z):
    """Owen values of the game ``v`` (a function of a boolean coalition over ``G`` leaves) for
    the nested coalition structure of the hierarchy ``Z``: for each leaf, at every level of its
    path from the root, the union its ancestor there plays against that ancestor's siblings with
    Shapley weights, ``sum over S_1, ..., S_k of prod_j w(|S_j|) [v(S + i) - v(S)]``."""
    children, root = children_of(Z)
    G = Z.shape[0] + 1
    phi = []
    for i in range(G):
        path = [root]
        while path[-1] != i:
            path.append(next(c for c in children[path[-1]] if i in leaves_under(c, children)))
        levels = []  # per level: the other siblings and the Shapley weights of their subsets
        for parent, mine in itertools.pairwise(path):
            others = [c for c in children[parent] if c != mine]
            m = len(others) + 1
            options = []
            for r in range(len(others) + 1):
                w = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
                for S in itertools.combinations(others, r):
                    options.append((w, [g for c in S for g in leaves_under(c, children)]))
            levels.append(options)
        total = 0.0
        for choice in itertools.product(*levels):
            weight = np.prod([w for w, _ in choice])
            S = np.zeros(G, bool)
            for _, members in choice:
                S[members] = True
            with_i = S.copy()
            with_i[i] = True
            total = total + weight * (v(with_i) - v(S))
        phi.append(total)
    return np.stack(phi)


def interventional_game(fn, x, bg):
    return lambda S: fn(np.where(S[None], x[None], bg)).mean(axis=0)


def test_full_budget_equals_the_brute_force_owen_formula():
    exp = xj.partition_shap(mlp, X, xj.maskers.partition(BG, clustering=Z), max_evals=10**4)
    assert np.all(exp.extras["num_evals"] == partition.full_budget(Z) + 2)
    for i in range(len(X)):
        ref = brute_force_owen(interventional_game(mlp_np, X[i], BG), Z)
        np.testing.assert_allclose(exp.values[i], ref, atol=1e-5)


def test_owen_values_of_groups_over_a_clustering_of_patches():
    """Leaves as groups: 4 patches of a 4 x 4 image, a hierarchy ((0, 3), (1, 2))."""
    images = RNG.uniform(size=(2, 4, 4, 3)).astype(np.float32)
    groups = xj.patch_groups((4, 4), 2)
    Zg = np.array([[0, 3, 1.0, 2], [1, 2, 1.0, 2], [4, 5, 2.0, 4]])
    masker = xj.maskers.Masker("constant", 0.25, clustering=Zg)
    exp = xj.partition_shap(cnn, images, masker, groups=groups, targets=2)
    for i in range(2):

        def v(S, img=images[i]):
            keep = S[groups][None, :, :, None]
            return cnn_np(np.where(keep, img[None], 0.25))[0, 2]

        np.testing.assert_allclose(exp.values[i], brute_force_owen(v, Zg), atol=1e-5)
    assert exp.extras["element_values"].shape == (2, 4, 4)


# -- shap's PartitionExplainer on the same model, masker and hierarchy --------------------------
@pytest.mark.parametrize("max_evals", [10**4, 60, 26, 20])
def test_tabular_equals_shap_at_full_and_partial_budgets(max_evals):
    ours = xj.partition_shap(mlp, X, xj.maskers.partition(BG, clustering=Z), max_evals=max_evals)
    theirs = shap_partition(mlp_np, shap.maskers.Partition(BG, clustering=Z), X, max_evals)
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-5)
    np.testing.assert_allclose(ours.base_values, theirs.base_values, atol=1e-5)
    assert ours.values.shape == theirs.values.shape == (3, M, K)


def test_a_target_orders_the_queue_as_shaps_outputs():
    masker = xj.maskers.partition(BG, clustering=Z)
    ours = xj.partition_shap(mlp, X, masker, max_evals=26, targets=1)
    theirs = shap_partition(
        mlp_np, shap.maskers.Partition(BG, clustering=Z), X, 26, outputs=np.array([1])
    )
    np.testing.assert_allclose(ours.values, theirs.values[..., 0], atol=1e-5)
    every = xj.partition_shap(mlp, X, masker, max_evals=26)
    assert not np.allclose(every.values[..., 1], ours.values, atol=1e-4)  # another queue order


def test_background_rows_get_shaps_correlation_hierarchy():
    """``shap.PartitionExplainer(f, rows)`` masks with ``Partition(rows)``: single linkage of
    the columns' correlation distances (shap jitters the rows by 1e-8: the same merges)."""
    rows = BG @ RNG.normal(size=(M, M)).astype(np.float32)  # correlated columns
    Zc = feature_hierarchy(rows)
    np.testing.assert_array_equal(
        Zc[:, [0, 1, 3]], shap.maskers.Partition(rows).clustering[:, [0, 1, 3]]
    )
    ours = xj.partition_shap(mlp, X, rows, max_evals=26)
    theirs = shap.PartitionExplainer(mlp_np, rows)(X, max_evals=26, silent=True)
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-5)
    weighted = xj.partition_shap(mlp, X, xj.Background(rows, np.ones(5)), max_evals=26)
    np.testing.assert_allclose(weighted.values, ours.values, atol=1e-6)


@pytest.mark.parametrize(("shape", "max_evals"), [((2, 2, 3), 10**4), ((5, 6, 3), 300)])
def test_image_equals_shap_per_pixel(shape, max_evals):
    images = RNG.uniform(size=(2,) + shape).astype(np.float32)
    ours = xj.partition_shap(cnn, images, xj.maskers.image(0.5, shape), max_evals=max_evals)
    theirs = shap_partition(cnn_np, shap.maskers.Image(0.5, shape), images, max_evals)
    assert theirs.values.shape == (2, *shape, K)
    np.testing.assert_allclose(ours.extras["element_values"], theirs.values, atol=1e-5)
    np.testing.assert_allclose(ours.values, theirs.values.reshape(2, -1, K), atol=1e-5)
    scale = np.abs(theirs.values).max()
    assert scale > 1e-3, "a comparison of zeros"
    full = partition.full_budget(image_hierarchy(shape)) + 2
    np.testing.assert_array_equal(ours.extras["num_evals"], min(max_evals, full))


@pytest.mark.parametrize("shape", [(2, 3, 2), (5, 7, 3), (8, 8, 1), (1, 2, 1), (3, 1, 4)])
def test_image_hierarchy_is_shaps(shape):
    np.testing.assert_array_equal(image_hierarchy(shape), shap.maskers.Image(0.0, shape).clustering)


def chain(G):
    """A caterpillar over ``G`` leaves: leaf ``k + 1`` joins the first ``k + 1`` (depth G - 1)."""
    return np.array([[0 if k == 0 else G + k - 1, k + 1, k + 1.0, k + 2] for k in range(G - 1)])


def random_contexts(Z, count, rng):
    """Leaf intervals ``(count, D + 1, 2)`` as the queue builds them: a random internal node's
    left or right child, with each sibling on its path from the root on or off at random."""
    t = tree_tables(Z)
    G, D = t.num_leaves, t.max_depth
    out = np.zeros((count, D + 1, 2), np.int32)
    for i, u in enumerate(rng.integers(G, 2 * G - 1, size=count)):
        child = t.left[u] if rng.random() < 0.5 else t.right[u]
        out[i, D] = t.lo[child], t.hi[child]
        v = u
        while t.parent[v] != v:
            p = t.parent[v]
            sib = t.right[p] if t.left[p] == v else t.left[p]
            if rng.random() < 0.5:
                out[i, t.depth[v] - 1] = t.lo[sib], t.hi[sib]
            v = p
    return out


@pytest.mark.parametrize(
    ("shape", "Zb"),
    [((5, 6, 3), image_hierarchy((5, 6, 3))), ((4, 4, 1), image_hierarchy((4, 4, 1))),
     ((40, 1, 1), chain(40))],  # 40 intervals: two words of bits
)  # fmt: skip
def test_box_masks_are_the_interval_masks(shape, Zb):
    """Masks built from boxes (images) are the compares against each element's position."""
    t = tree_tables(Zb)
    position = np.asarray(t.position, np.int32).reshape(shape)
    boxes = partition._leaf_boxes(t, position)
    assert boxes is not None
    intervals = jnp.asarray(random_contexts(Zb, 64, np.random.default_rng(1)))
    got = partition._box_masks(intervals, boxes, shape + (2,))  # a trailing axis follows
    want = partition._interval_masks(intervals, jnp.asarray(position), shape + (2,))
    assert 0.05 < float(want.mean()) < 0.95
    np.testing.assert_array_equal(got, want)


def test_only_hierarchies_of_boxes_get_boxes():
    t = tree_tables(chain(8))
    assert partition._leaf_boxes(t, np.arange(8).reshape(2, 4)) is None  # 5 leaves: no box
    assert partition._leaf_boxes(t, np.arange(8).reshape(8, 1)) is not None
    assert partition._leaf_boxes(t, np.arange(8)) is None  # one axis: the compares
    t = tree_tables(image_hierarchy((2, 3, 2)))
    assert partition._leaf_boxes(t, np.asarray(t.position).reshape(2, 3, 2)) is not None
    assert partition._leaf_boxes(t, np.asarray(t.position).reshape(3, 2, 2)) is None


def test_a_deep_hierarchy_of_boxes_equals_the_same_over_flat_rows():
    """Elements of a (1, 40, 1) input (masks from boxes, 40 levels) against the same 40 values
    as flat rows (masks from intervals): the same model calls, the same values."""
    rows = RNG.normal(size=(2, 40)).astype(np.float32)
    w = RNG.normal(size=(40, K)).astype(np.float32)

    def f(X):
        X = jnp.asarray(X, jnp.float32).reshape(X.shape[0], 40)
        return jnp.tanh(X @ w)

    Zc = chain(40)
    flat = xj.partition_shap(
        f, rows, xj.maskers.partition(np.full((1, 40), 0.25), clustering=Zc), max_evals=60
    )
    masker = xj.maskers.Masker("constant", 0.25, clustering=Zc)
    image = xj.partition_shap(f, rows.reshape(2, 1, 40, 1), masker, max_evals=60)
    np.testing.assert_allclose(image.values, flat.values, atol=1e-6)
    assert np.abs(flat.values).max() > 1e-2


# -- properties ----------------------------------------------------------------------------------
@pytest.mark.parametrize("max_evals", [4, 9, 26, 10**4])
def test_local_accuracy_at_every_budget(max_evals):
    exp = xj.partition_shap(mlp, X, xj.maskers.partition(BG, clustering=Z), max_evals=max_evals)
    np.testing.assert_allclose(exp.values.sum(1) + exp.base_values, mlp_np(X), atol=1e-5)
    np.testing.assert_allclose(exp.base_values, np.broadcast_to(mlp_np(BG).mean(0), (3, K)), 1e-5)


def test_the_budgeted_queue_at_full_budget_equals_the_static_plan():
    model, params = as_model(mlp, BG)
    fill = xj.maskers.partition(BG, clustering=Z).fill_for((M,), np.float32)
    ids = np.arange(M)[None]
    out = {}
    for plan, step in (("full", 10), ("budgeted", 3)):
        values, *_ = partition._owen_values(
            model, params, jnp.asarray(X), fill, Z, ids, None, max_evals=10**4,
            evals_per_step=step, batch_size=4096, mesh=None, plan=plan,
        )  # fmt: skip
        out[plan, step] = np.asarray(values)
    np.testing.assert_allclose(out["budgeted", 3], out["full", 10], atol=1e-6)


def test_deterministic_and_a_batch_equals_one_instance_at_a_time():
    masker = xj.maskers.partition(BG, clustering=Z)
    a = xj.partition_shap(mlp, X, masker, max_evals=25)
    b = xj.partition_shap(mlp, X, masker, max_evals=25)
    assert_same(a.values, b.values)
    for i in range(len(X)):
        one = xj.partition_shap(mlp, X[i], masker, max_evals=25)
        np.testing.assert_allclose(one.values, a.values[i], atol=1e-6)


def test_a_linear_model_gets_its_shapley_values_whatever_the_hierarchy():
    """For an additive model the Owen values are phi_i = w_i (x_i - mean(bg_i)) (shap's note)."""
    w = RNG.normal(size=M).astype(np.float32)
    exp = xj.partition_shap(lambda X: X @ w, X, xj.maskers.partition(BG, clustering=Z))
    np.testing.assert_allclose(exp.values, w * (X - BG.mean(0)), atol=1e-5)


def test_a_negative_distance_stops_the_recursion_and_shares_the_node_equally():
    Zs = Z.copy()
    Zs[1, 2] = -1.0  # node M + 1 is not split: its leaves share its credit equally
    masker = xj.maskers.partition(BG, clustering=Zs)
    ours = xj.partition_shap(mlp, X, masker, max_evals=10**4)
    theirs = shap_partition(mlp_np, shap.maskers.Partition(BG, clustering=Zs), X, 10**4)
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-5)
    a, b = (int(c) for c in Zs[1, :2])
    assert a < M and b < M, "the test needs a node of two leaves"
    np.testing.assert_allclose(ours.values[:, a], ours.values[:, b], atol=1e-6)
    np.testing.assert_allclose(ours.values.sum(1) + ours.base_values, mlp_np(X), atol=1e-5)


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        Z[:-1],  # one merge short
        Z[:, :3],  # no counts
        np.where(Z == Z[0, 0], 99, Z),  # a child id out of range
        np.vstack([Z[:-1], Z[-2]]),  # a node merged twice
        np.column_stack([Z[:, :3], Z[:, 3] + 1]),  # wrong counts
    ],
)
def test_a_clustering_that_is_not_a_linkage_over_the_features_is_named(bad):
    with pytest.raises(ValueError, match="clustering"):
        xj.partition_shap(mlp, X, xj.maskers.partition(BG, clustering=bad))


def test_bad_options_are_named():
    masker = xj.maskers.partition(BG, clustering=Z)
    with pytest.raises(ValueError, match="max_evals"):
        xj.partition_shap(mlp, X, masker, max_evals=3)
    with pytest.raises(TypeError, match="max_evals"):
        xj.partition_shap(mlp, X, masker, max_evals=100.0)
    with pytest.raises(ValueError, match="evals_per_step"):
        xj.partition_shap(mlp, X, masker, evals_per_step=0)
    with pytest.raises(ValueError, match="masker"):
        xj.partition_shap(mlp, X, xj.maskers.constant(0.0))
    with pytest.raises(TypeError, match="masker"):
        xj.partition_shap(mlp, X, 0.5)
    images = np.zeros((2, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="masker"):
        xj.partition_shap(cnn, images, xj.maskers.image(0.0, (4, 5, 3)))
    with pytest.raises(ValueError, match="groups"):
        xj.partition_shap(cnn, images, xj.maskers.image(0.0), groups=xj.patch_groups((4, 4), 2))


def test_a_budget_too_large_to_queue_is_refused_up_front():
    """A chain over 40 features needs 2^39 evaluations for the full recursion; a queue for a
    budget of 10^9 would take gigabytes per instance."""
    G = 40
    chain = [[0, 1, 1.0, 2]] + [[i + 1, G + i - 1, 1.0 + i, i + 2] for i in range(1, G - 1)]
    x, bg = np.zeros(G, np.float32), np.ones((2, G), np.float32)
    masker = xj.maskers.partition(bg, clustering=np.array(chain))
    assert partition.full_budget(np.array(chain)) > 2**38
    with pytest.raises(ValueError, match="max_evals"):
        xj.partition_shap(lambda X: X.sum(1), x, masker, max_evals=10**9)


def test_check_clustering_and_tree_tables():
    Zc = check_clustering(Z, M)
    tree = tree_tables(Zc)
    # Depth-first intervals: every node's leaves are the positions lo..hi-1.
    children, root = children_of(Z)
    for node in range(2 * M - 1):
        members = sorted(tree.position[leaves_under(node, children)])
        assert members == list(range(tree.lo[node], tree.hi[node]))
    assert tree.depth[root] == 0 and tree.size[root] == M


def test_token_sequences_get_owen_values_over_contiguous_spans():
    emb = np.random.default_rng(7).normal(size=(12, 3)).astype(np.float32)

    def text_model(tokens):
        e = jnp.asarray(emb)[tokens]  # (n, L, 3)
        return jnp.tanh(e[:, :, 0].sum(1)) + e[:, 0, 1] * e[:, -1, 2]

    tokens = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    exp = xj.partition_shap(text_model, tokens, xj.maskers.token(0), max_evals=10**4)
    Zs = sequence_hierarchy(5)
    for i, x in enumerate(tokens):

        def game(S, x=x):
            return float(np.asarray(text_model(jnp.asarray(np.where(S, x, 0)[None])))[0])

        np.testing.assert_allclose(exp.values[i], brute_force_owen(game, Zs), atol=1e-5)
    # spans as groups: tokens (0, 1), (2,), (3, 4) are the leaves
    spans = np.array([0, 0, 1, 2, 2])
    grouped = xj.partition_shap(text_model, tokens, xj.maskers.token(0), groups=spans)
    assert grouped.values.shape == (2, 3)
    np.testing.assert_allclose(
        grouped.values.sum(1) + grouped.base_values, np.asarray(text_model(tokens)), atol=1e-5
    )
