"""Datasets that ship with installed packages, and generated ones (nothing is downloaded)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

__all__ = [
    "Dataset",
    "ImageDataset",
    "breast_cancer",
    "diabetes",
    "digits",
    "lfw_faces",
    "agreement_corpus",
    "moons",
    "negation_corpus",
    "photo",
    "sentiment_corpus",
    "synthetic_shapes",
    "train_test_split",
    "wine",
]


class Dataset(NamedTuple):
    """A tabular data set: ``X (N, M)`` float32, ``y (N,)``, and names for features and targets."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    name: str


def _standardise(X):
    X = np.asarray(X, np.float64)
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32)


def breast_cancer(*, standardise: bool = True) -> Dataset:
    """Wisconsin breast-cancer diagnosis (569 x 30, classes malignant/benign), from scikit-learn.

    Example:
        >>> ds = breast_cancer()
        >>> ds.X.shape, ds.target_names
        ((569, 30), ('malignant', 'benign'))
    """
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    X = _standardise(raw.data) if standardise else raw.data.astype(np.float32)
    return Dataset(
        X,
        raw.target.astype(np.int32),
        tuple(str(n) for n in raw.feature_names),
        tuple(str(n) for n in raw.target_names),
        "breast_cancer",
    )


def diabetes() -> Dataset:
    """Diabetes progression regression (442 x 10, target standardised), from scikit-learn.

    Example:
        >>> diabetes().X.shape
        (442, 10)
    """
    from sklearn.datasets import load_diabetes

    raw = load_diabetes()
    y = np.asarray(raw.target, np.float64)
    return Dataset(
        _standardise(raw.data),
        ((y - y.mean()) / y.std()).astype(np.float32),
        tuple(str(n) for n in raw.feature_names),
        ("progression",),
        "diabetes",
    )


def wine() -> Dataset:
    """Wine cultivars (178 x 13, 3 classes, standardised), from scikit-learn.

    Example:
        >>> wine().X.shape
        (178, 13)
    """
    from sklearn.datasets import load_wine

    raw = load_wine()
    return Dataset(
        _standardise(raw.data),
        raw.target.astype(np.int32),
        tuple(str(n) for n in raw.feature_names),
        tuple(str(n) for n in raw.target_names),
        "wine",
    )


def moons(n_samples: int = 200, *, noise: float = 0.05, seed: int = 0) -> Dataset:
    """Two interleaving half circles (scikit-learn's ``make_moons``), 2 features, 2 classes.

    Example:
        >>> moons().X.shape
        (200, 2)
    """
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return Dataset(
        X.astype(np.float32), y.astype(np.int32), ("x1", "x2"), ("upper", "lower"), "moons"
    )


class ImageDataset(NamedTuple):
    """Images ``(N, H, W, C)`` float32 in [0, 1], labels ``(N,)``, optional ground-truth masks."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    masks: np.ndarray | None
    name: str


def _resize(images, size):
    from skimage.transform import resize

    return np.stack([resize(im, (size, size), order=1, anti_aliasing=True) for im in images])


def digits(size: int = 32) -> ImageDataset:
    """scikit-learn's 1797 handwritten digits (8 x 8), upsampled to ``size`` x ``size`` x 1.

    Example:
        >>> digits(16).images.shape
        (1797, 16, 16, 1)
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = raw.images / 16.0
    if size != 8:
        images = _resize(images, size)
    return ImageDataset(
        images[..., None].astype(np.float32),
        raw.target.astype(np.int32),
        tuple(str(d) for d in range(10)),
        None,
        "digits",
    )


def lfw_faces() -> ImageDataset:
    """scikit-image's ``lfw_subset``: 100 faces and 100 non-faces, 25 x 25 grey (label 1 = face).

    Example:
        >>> ds = lfw_faces()
        >>> ds.images.shape, int(ds.labels.sum())
        ((200, 25, 25, 1), 100)
    """
    from skimage.data import lfw_subset

    images = lfw_subset().astype(np.float32)
    labels = np.r_[np.ones(100), np.zeros(100)].astype(np.int32)
    return ImageDataset(images[..., None], labels, ("non-face", "face"), None, "lfw_subset")


def photo(name: str = "astronaut", size: int | None = None) -> np.ndarray:
    """One of scikit-image's sample photos as ``(H, W, 3)`` float32 in [0, 1], optionally resized.

    Example:
        >>> photo("chelsea", 64).shape
        (64, 64, 3)
    """
    import skimage.data

    names = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "retina")
    if name not in names:
        raise ValueError(f"name must be one of {names}; got {name!r}")
    image = getattr(skimage.data, name)()[..., :3].astype(np.float32) / 255.0
    return (_resize(image[None], size)[0] if size else image).astype(np.float32)


SHAPES = ("square", "circle", "triangle", "cross")


def synthetic_shapes(
    key, n: int, *, size: int = 32, num_classes: int = 3, clutter: float = 0.3
) -> ImageDataset:
    """Coloured shapes on a cluttered background; the class is the shape, the mask is the object.

    Each image holds one shape (square, circle, triangle, cross: the first ``num_classes``) of a
    random colour, size and position, over smooth random clutter of amplitude ``clutter``. The
    ground-truth ``masks (n, size, size)`` mark the shape's pixels, so attribution maps can be
    scored for localisation (pointing game, energy in mask). Deterministic in ``key``.

    Example:
        >>> import jax
        >>> ds = synthetic_shapes(jax.random.key(0), 8, size=24)
        >>> ds.images.shape, ds.masks.shape, ds.masks.any(axis=(1, 2)).all()
        ((8, 24, 24, 3), (8, 24, 24), np.True_)
    """
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be in [2, {len(SHAPES)}]; got {num_classes}")
    if size < 12:
        raise ValueError(f"size must be at least 12 pixels; got {size}")
    # One compiled program (not ~100 small ones, op by op): a fresh process's first call.
    images, labels, masks = _shapes_program()(
        key, n=int(n), size=int(size), num_classes=int(num_classes), clutter=float(clutter)
    )
    return ImageDataset(
        np.asarray(images, np.float32),
        np.asarray(labels, np.int32),
        SHAPES[:num_classes],
        np.asarray(masks),
        "synthetic_shapes",
    )


@functools.cache
def _shapes_program():
    import jax

    return jax.jit(_draw_shapes, static_argnames=("n", "size", "num_classes", "clutter"))


def _draw_shapes(key, *, n, size, num_classes, clutter):
    import jax
    import jax.numpy as jnp

    k_label, k_pos, k_rad, k_col, k_clut = jax.random.split(key, 5)
    # Balanced classes (as equal as n allows), in random order.
    labels = jax.random.permutation(k_label, jnp.arange(n) % num_classes)
    radius = jax.random.uniform(k_rad, (n,), minval=0.15, maxval=0.25) * size
    centre = jax.random.uniform(k_pos, (n, 2), minval=0.0, maxval=1.0)
    centre = radius[:, None] + 1 + centre * (size - 2 * radius[:, None] - 2)
    colour = jax.random.uniform(k_col, (n, 3), minval=0.6, maxval=1.0)
    yy, xx = jnp.mgrid[0:size, 0:size].astype(jnp.float32) + 0.5

    def mask_of(label, c, r):
        dy, dx = yy - c[0], xx - c[1]
        square = (jnp.abs(dy) <= r * 0.85) & (jnp.abs(dx) <= r * 0.85)
        circle = dy**2 + dx**2 <= r**2
        triangle = (dy <= r * 0.8) & (dy >= -r) & (jnp.abs(dx) <= (dy + r) * 0.6)
        cross = ((jnp.abs(dy) <= r * 0.3) | (jnp.abs(dx) <= r * 0.3)) & (
            jnp.maximum(jnp.abs(dy), jnp.abs(dx)) <= r
        )
        return jnp.stack([square, circle, triangle, cross])[label]

    masks = jax.vmap(mask_of)(labels, centre, radius)
    coarse = jax.random.uniform(k_clut, (n, size // 4, size // 4, 3))
    background = clutter * jax.image.resize(coarse, (n, size, size, 3), "linear")
    images = jnp.where(masks[..., None], colour[:, None, None, :], background)
    return images, labels, masks


_POSITIVE = (
    "great",
    "wonderful",
    "excellent",
    "delightful",
    "superb",
    "moving",
    "brilliant",
    "charming",
    "enjoyable",
    "beautiful",
)
_NEGATIVE = (
    "awful",
    "boring",
    "terrible",
    "dull",
    "painful",
    "clumsy",
    "tedious",
    "weak",
    "disappointing",
    "bland",
)
_SUBJECTS = (
    "the film",
    "the acting",
    "the story",
    "the soundtrack",
    "the ending",
    "the cast",
    "the script",
    "the pacing",
)
SENTIMENT_WORDS = _POSITIVE + _NEGATIVE
_FILLER = ("honestly", "overall", "i thought", "to be fair", "in the end", "for me")


def sentiment_corpus(n: int = 400, *, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """A generated sentiment corpus of short movie-review sentences, label 1 = positive.

    Origin: built here from fixed word lists and templates (no external data). Each sentence has
    one or two sentiment words whose polarity sets the label, plus neutral subjects and filler, so
    a faithful text explanation should point at the sentiment words.

    Example:
        >>> texts, labels = sentiment_corpus(4)
        >>> len(texts), labels.shape
        (4, (4,))
    """
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        words = _POSITIVE if label else _NEGATIVE
        parts = [
            str(rng.choice(_FILLER)),
            str(rng.choice(_SUBJECTS)),
            "was",
            str(rng.choice(words)),
        ]
        if rng.random() < 0.5:
            parts += ["and", str(rng.choice(words))]
        texts.append(" ".join(parts))
        labels.append(label)
    return texts, np.array(labels, np.int32)


_NEGATORS = ("not", "never", "hardly")
_LEADS = ("not surprisingly ,", "not once , but twice ,", "never mind the reviews ,")


def negation_corpus(n: int = 400, *, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """A generated sentiment corpus where word order decides the label (negation), label 1 =
    positive.

    Origin: built here from the word lists of :func:`sentiment_corpus`. Each sentence is
    ``[lead] <subject> was [negator] <sentiment word>``: a negator (``not``, ``never``,
    ``hardly``) right before the sentiment word flips its polarity. Half of the sentences open
    with a lead phrase that contains a negator but negates nothing (``"not surprisingly ,"``), so
    the words alone do not decide the label, their order does: a bag-of-words model stays near
    chance on the negated sentences, a model that reads order does not.

    Example:
        >>> texts, labels = negation_corpus(3, seed=1)
        >>> len(texts), sorted(set(labels.tolist())) <= [0, 1]
        (3, True)
    """
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        polarity = int(rng.integers(2))
        negated = bool(rng.random() < 0.5)
        parts = [str(rng.choice(_LEADS))] if rng.random() < 0.5 else []
        parts += [str(rng.choice(_SUBJECTS)), "was"]
        if negated:
            parts.append(str(rng.choice(_NEGATORS)))
        parts.append(str(rng.choice(_POSITIVE if polarity else _NEGATIVE)))
        texts.append(" ".join(parts))
        labels.append(polarity ^ int(negated))
    return texts, np.array(labels, np.int32)


_NOUNS = (
    ("key", "keys"),
    ("dog", "dogs"),
    ("author", "authors"),
    ("painting", "paintings"),
    ("teacher", "teachers"),
    ("door", "doors"),
    ("song", "songs"),
    ("farmer", "farmers"),
)
_PREPOSITIONS = ("near", "behind", "next to", "with", "by")
_PREDICATES = (
    ("is", "are"),
    ("was", "were"),
    ("seems", "seem"),
)
_ENDINGS = ("old", "red", "here", "famous", "small", "quiet", "broken", "new")


def agreement_corpus(n: int = 400, *, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Generated sentences with subject-verb agreement across an attractor noun, label 1 = the
    subject is plural.

    Origin: built here from fixed word lists (after Linzen et al., 2016). Each sentence is
    ``the <subject> <preposition> the <attractor> <verb> <ending> .`` with the verb agreeing with
    the subject, never with the attractor next to it (half the attractors differ in number). It
    trains the small language model: the next token after ``the keys near the door`` is ``are``,
    and a contrastive target (log p(are) - log p(is)) should be attributed to ``keys``, not to
    ``door``.

    Example:
        >>> texts, plural = agreement_corpus(2, seed=0)
        >>> texts[0].split()[0], texts[0].endswith(" ."), plural.dtype
        ('the', True, dtype('int32'))
    """
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        plural = int(rng.integers(2))
        subject = _NOUNS[int(rng.integers(len(_NOUNS)))][plural]
        attractor = _NOUNS[int(rng.integers(len(_NOUNS)))][int(rng.integers(2))]
        verb = _PREDICATES[int(rng.integers(len(_PREDICATES)))][plural]
        prep = str(rng.choice(_PREPOSITIONS))
        end = str(rng.choice(_ENDINGS))
        texts.append(f"the {subject} {prep} the {attractor} {verb} {end} .")
        labels.append(plural)
    return texts, np.array(labels, np.int32)


def train_test_split(ds: Dataset, *, test_fraction: float = 0.25, seed: int = 0):
    """Split ``ds`` into a shuffled train and test :class:`Dataset` (deterministic in ``seed``)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(ds.X))
    cut = int(round(len(order) * (1.0 - test_fraction)))
    train, test = order[:cut], order[cut:]
    return ds._replace(X=ds.X[train], y=ds.y[train]), ds._replace(X=ds.X[test], y=ds.y[test])
