"""``xaijax demo``, the main job: small models on embedded data, explained, figures in runs/demo."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from xaijax.cli.report import write_report
from xaijax.cli.runs import save_figure, versions
from xaijax.cli.settings import DemoSettings

__all__ = ["demo"]


def _timed(label, fn, log):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    log(f"  {label}: {seconds:.2f} s")
    return result, seconds


def _later(plot, *args, **kwargs):
    """A figure to draw later: ``plot(*args, **kwargs)``, a function of :mod:`xaijax.plots`."""
    return functools.partial(plot, *args, **kwargs)


def _on_host(later):
    """The same call with every JAX array replaced by a NumPy one (sent to another process)."""
    import jax
    import numpy as np

    def host(tree):
        return jax.tree.map(lambda a: np.asarray(a) if isinstance(a, jax.Array) else a, tree)

    return functools.partial(later.func, *host(later.args), **host(later.keywords))


def _start_figure_worker():
    """In the figure process: matplotlib without a display, imported before the first figure."""
    import matplotlib

    matplotlib.use("Agg")  # this process only draws files
    import matplotlib.pyplot  # noqa: F401

    import xaijax.plots  # noqa: F401


def _draw(later, out, name):
    save_figure(later(), out, name)
    return name


class _Figures:
    """Draws and saves the demo's figures in a second process while the demo computes.

    Drawing is Python (matplotlib's text layout and rendering hold the interpreter lock), about
    a fifth of the quick demo's time on the main thread; in its own process it overlaps the
    explainers' compilation and runs on the core they leave idle. Each figure is recorded for
    the report when it is asked for, so the report's order does not depend on which finishes
    first. Where a process cannot be started, figures are drawn in this one.
    """

    def __init__(self, out: str, results: dict):
        self.out, self.results, self.jobs = out, results, []
        try:
            self.pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_figure_worker,
            )
        except (OSError, RuntimeError, ValueError):  # pragma: no cover - no processes here
            self.pool = None

    def save(self, later, name, *, caption, section, wide=False):
        if self.pool is None:  # pragma: no cover
            _draw(later, self.out, name)
        else:
            self.jobs.append((name, self.pool.submit(_draw, _on_host(later), self.out, name)))
        entry = {"file": name, "caption": caption, "section": section}
        self.results.setdefault("figures", []).append({**entry, "wide": True} if wide else entry)

    def wait(self):
        """Every figure written (an error names the figure that failed)."""
        try:
            for name, job in self.jobs:
                try:
                    job.result()
                except Exception as err:
                    raise RuntimeError(f"drawing {name} failed: {err}") from err
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)


def demo(settings: DemoSettings | None = None, *, log=print) -> dict:
    """Train small models on embedded data, explain them with every family, write figures.

    Writes ``out/results.json`` (numbers, seeds, versions, settings, timings), PNG figures and an
    ``index.html`` report. Returns the results dict.
    """
    import dataclasses

    import jax
    import numpy as np
    from flax import nnx
    from sklearn.linear_model import LinearRegression

    import xaijax as xj
    from xaijax import plots
    from xaijax.zoo import data, nets
    from xaijax.zoo import training as trainer

    settings = DemoSettings() if settings is None else settings
    out, quick, seed = settings.out, settings.quick, settings.seed

    os.makedirs(out, exist_ok=True)
    key = jax.random.key(seed)
    keys = jax.random.split(key, 10)
    k_train, k_bg, k_kernel, k_perm, k_train2, k_kernel2, k_perm2, k_lin, k_lime, k_text = keys
    n_explain = 5 if quick else 20
    epochs = 10 if quick else 40
    results: dict = {"seed": seed, "quick": quick, "versions": versions(), "timings_s": {}}
    timings = results["timings_s"]
    results["settings"] = {"instances explained": n_explain, "training epochs": epochs, "out": out}
    figures = _Figures(out, results)

    # The synthetic-shapes part (5) trains and explains a CNN in a second thread while the
    # tabular parts run here: the demo is mostly compilation, which XLA does on one core with
    # Python's lock released, so the two parts compile side by side on a 2-core machine. Its
    # log lines are kept and printed in order, after part 4; its figures are asked for here
    # (all figures are drawn by a second process: see _Figures).
    images_log: list[str] = []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xaijax-demo-images")
    images_part = pool.submit(
        _image_maps, quick=quick, seed=seed, log=images_log.append, progress=False
    )

    # 1. Breast cancer (M = 30): an MLP classifier explained by Kernel SHAP and permutation SHAP.
    log("[1/5] breast cancer: MLP classifier, Kernel SHAP and permutation SHAP (M = 30)")
    train, test = data.train_test_split(data.breast_cancer(), seed=seed)
    # The same split in the data set's own units (mm, mm², ...), for the figures' labels.
    _, test_raw = data.train_test_split(data.breast_cancer(standardise=False), seed=seed)
    net = nets.MLP(30, [16], 2, softmax=True, rngs=nnx.Rngs(seed))
    _, timings["train_mlp"] = _timed(
        "train",
        lambda: trainer.train(
            net, train.X, train.y, key=k_train, epochs=epochs, progress=not quick
        ),
        log,
    )
    accuracy = float((np.asarray(net(test.X)).argmax(1) == test.y).mean())
    background = xj.kmeans(train.X, 10, key=k_bg)
    X = test.X[:n_explain]
    kernel, timings["kernel_shap"] = _timed(
        "kernel_shap",
        lambda: xj.kernel_shap(net, X, background, key=k_kernel, feature_names=train.feature_names),
        log,
    )
    perm, timings["permutation_shap"] = _timed(
        "permutation_shap",
        lambda: xj.permutation_shap(
            net, X, background, key=k_perm, num_permutations=10, feature_names=train.feature_names
        ),
        log,
    )
    proba = np.asarray(net(X))
    results["breast_cancer"] = {
        "test_accuracy": accuracy,
        "instances": n_explain,
        "background": "kmeans(train, 10)",
        "kernel_shap_num_samples": int(kernel.extras["num_samples"]),
        "local_accuracy_gap": {
            "kernel_shap": float(np.abs(kernel.values.sum(1) + kernel.base_values - proba).max()),
            "permutation_shap": float(np.abs(perm.values.sum(1) + perm.base_values - proba).max()),
        },
        "kernel_vs_permutation_mean_abs_diff": float(np.abs(kernel.values - perm.values).mean()),
        "top_features_kernel_shap": [
            train.feature_names[i] for i in np.argsort(-np.abs(kernel.values[..., 1]).mean(0))[:5]
        ],
    }
    lime, timings["lime_tabular"] = _timed(
        "lime_tabular",
        lambda: xj.lime_tabular(
            net,
            X,
            train.X,
            key=k_lime,
            num_samples=1000 if quick else 5000,
            targets=1,
            feature_names=train.feature_names,
        ),
        log,
    )
    top_shap = np.argsort(-np.abs(kernel.values[..., 1]), axis=1)[:, :5]
    top_lime = np.argsort(-np.abs(lime.values), axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top_shap, top_lime, strict=True)]
    picks = xj.submodular_pick(lime, budget=3)
    results["breast_cancer"]["lime"] = {
        "num_samples": 1000 if quick else 5000,
        "mean_surrogate_r2": float(np.asarray(lime.extras["score"]).mean()),
        "top5_overlap_with_kernel_shap": float(np.mean(overlap)),
        "sp_lime_picks": [int(i) for i in picks],
    }
    shown = dataclasses.replace(kernel, output_names=tuple(train.target_names))
    raw = test_raw.X[:n_explain]
    section = "breast_cancer"

    def figure(later, name, caption, **kwargs):
        figures.save(later, name, caption=caption, section=section, **kwargs)

    figure(
        _later(
            plots.lime_bar, lime, instance=0, display_data=raw, title="LIME, P(benign): test row 0"
        ),
        "breast_cancer_lime.png",
        "LIME: the surrogate's weights for P(benign) at test row 0, each feature's bin labelled "
        "by the row's value in the data set's units.",
    )
    figure(
        _later(
            plots.beeswarm, shown, targets="benign", title="Kernel SHAP, P(benign): every test row"
        ),
        "breast_cancer_beeswarm.png",
        f"Kernel SHAP values for P(benign) of the {n_explain} explained test rows, one dot per "
        "row, coloured by the feature's value: the features that matter most, and which way.",
    )
    kernel.save(os.path.join(out, "breast_cancer_kernel_shap"))
    figure(
        _later(
            plots.bar, shown, targets="benign", title="Kernel SHAP, P(benign): mean |SHAP value|"
        ),
        "breast_cancer_bar.png",
        "Global importance: the mean |Kernel SHAP value| per feature for P(benign).",
    )
    figure(
        _later(
            plots.waterfall,
            shown[0],
            targets="benign",
            display_data=raw[0],
            title="Kernel SHAP, P(benign): test row 0",
        ),
        "breast_cancer_waterfall.png",
        "How test row 0's Kernel SHAP values add up from the average prediction (the base "
        "value) to the model's P(benign) for this row; feature values in the data set's units.",
    )
    figure(
        _later(
            plots.force,
            shown[0],
            targets="benign",
            display_data=raw[0],
            title="Kernel SHAP: forces on row 0",
        ),
        "breast_cancer_force.png",
        "The same row as forces: red features push P(benign) up to f(x), blue ones push it "
        "down; the bars' difference is f(x) minus the base value.",
        wide=True,
    )
    figure(
        _later(
            plots.decision, shown, targets="benign", max_display=12, title="Kernel SHAP: decisions"
        ),
        "breast_cancer_decision.png",
        f"Decision paths of the {n_explain} test rows: each line starts at the base value plus "
        "the 18 features not shown, adds the 12 most important ones from the least to the most "
        "important, and ends at the row's P(benign).",
    )
    figure(
        _later(plots.heatmap, shown, targets="benign", title="Kernel SHAP: every row's values"),
        "breast_cancer_heatmap.png",
        "Every explained test row's Kernel SHAP values as one column (columns ordered by "
        "hierarchical clustering, as shap does), its P(benign) drawn above: rows explained "
        "alike sit together.",
    )
    top = results["breast_cancer"]["top_features_kernel_shap"][0]
    figure(
        _later(
            plots.scatter,
            shown,
            top,
            targets="benign",
            display_data=raw,
            title=f"Kernel SHAP: {top}",
        ),
        "breast_cancer_scatter.png",
        f"Dependence of P(benign)'s SHAP value on {top} (in the data set's units), coloured by "
        "the feature that seems to interact most with it.",
    )

    # 2. Diabetes (M = 10): exact Shapley values as the truth for the sampling estimators.
    log("[2/5] diabetes: MLP regressor, exact Shapley vs Kernel SHAP vs permutation (M = 10)")
    dtrain, dtest = data.train_test_split(data.diabetes(), seed=seed)
    reg = nets.MLP(10, [32], 1, rngs=nnx.Rngs(seed + 1))
    _, timings["train_regressor"] = _timed(
        "train",
        lambda: trainer.train(
            reg, dtrain.X, dtrain.y, key=k_train2, loss="mse", epochs=epochs, progress=not quick
        ),
        log,
    )

    def f(Z):
        return reg(Z)[:, 0]

    dbg = xj.kmeans(dtrain.X, 10, key=k_bg)
    DX = dtest.X[:n_explain]
    exact, timings["exact_shapley"] = _timed(
        "exact_shapley",
        lambda: xj.exact_shapley(f, DX, dbg, feature_names=dtrain.feature_names),
        log,
    )
    budget = 12 * 21  # permutation SHAP's 12 antithetic orders score 12 (2M + 1) coalitions
    kern10, timings["kernel_shap_m10"] = _timed(
        "kernel_shap", lambda: xj.kernel_shap(f, DX, dbg, key=k_kernel2, num_samples=budget), log
    )
    perm10, timings["permutation_shap_m10"] = _timed(
        "permutation_shap",
        lambda: xj.permutation_shap(f, DX, dbg, key=k_perm2, num_permutations=12),
        log,
    )
    results["diabetes"] = {
        "coalitions_per_instance": budget,
        "mean_abs_error_vs_exact": {
            "kernel_shap": float(np.abs(kern10.values - exact.values).mean()),
            "permutation_shap": float(np.abs(perm10.values - exact.values).mean()),
        },
        "mean_abs_exact_value": float(np.abs(exact.values).mean()),
    }
    figures.save(
        _later(
            plots.compare,
            exact.values,
            {"Kernel SHAP": kern10.values, "permutation SHAP": perm10.values},
            title=f"diabetes MLP: {budget} coalitions vs exact Shapley",
        ),
        "diabetes_estimates_vs_exact.png",
        caption=f"Kernel SHAP and permutation SHAP with the same budget ({budget} coalitions "
        "per row) against exact Shapley values (all 1024 coalitions): points on the diagonal "
        "are exact.",
        section="diabetes",
    )

    # 3. A scikit-learn model through the host adapter: Kernel SHAP against Linear SHAP.
    log("[3/5] diabetes: scikit-learn LinearRegression on the host, Kernel SHAP vs Linear SHAP")
    lin = LinearRegression().fit(dtrain.X, dtrain.y)
    host, timings["kernel_shap_host_sklearn"] = _timed(
        "kernel_shap (host model)",
        lambda: xj.kernel_shap(lin.predict, DX, dtrain.X[:50], key=k_lin, num_samples=100),
        log,
    )
    closed = xj.linear_shap(lin.coef_, lin.intercept_, DX, dtrain.X[:50])
    results["host_linear_model"] = {
        "max_abs_diff_kernel_vs_linear_shap": float(np.abs(host.values - closed.values).max())
    }

    _demo_text(out, quick=quick, seed=seed, results=results, log=log, figures=figures)

    log("[5/5] synthetic shapes: CNN, CAM family and gradient attributions vs ground-truth masks")
    try:
        section, image_timings, maps, images, classes = images_part.result()
    finally:
        pool.shutdown()
        for line in images_log:
            log(line)
    results["synthetic_shapes"] = section
    timings.update(image_timings)
    _image_figures(figures, maps, images, classes)
    figures.wait()

    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    write_report(out, results)
    log(f"wrote {out}/results.json, {out}/index.html and figures")
    return results


def _image_maps(*, quick, seed, log, progress):
    """Synthetic shapes: a CNN trained, explained by the CAM family and gradients, and the maps
    scored against the masks. No figures (this runs beside the tabular sections, in a thread);
    :func:`_image_figures` draws them. Returns what the figures and ``results.json`` need."""
    import jax
    import numpy as np

    import xaijax as xj
    from xaijax import metrics
    from xaijax.zoo import data, nets
    from xaijax.zoo import training as trainer

    timings = {}
    k_data, k_test, k_train, k_smooth, k_random, k_lime = jax.random.split(
        jax.random.key(seed + 7), 6
    )
    size = 32
    train = data.synthetic_shapes(k_data, 128 if quick else 384, size=size)
    test = data.synthetic_shapes(k_test, 4 if quick else 16, size=size)
    cnn = nets.build(lambda r: nets.CNN(3, 3, widths=(16, 32), rngs=r), seed=seed)
    _, timings["train_cnn"] = _timed(
        "train",
        lambda: trainer.train(
            cnn,
            train.images,
            train.labels,
            key=k_train,
            epochs=8 if quick else 15,
            learning_rate=3e-3,
            progress=progress,
        ),
        log,
    )
    accuracy = trainer.accuracy(cnn, test.images, test.labels)

    def proba(X):
        return jax.nn.softmax(cnn(X), axis=-1)

    images, targets = test.images, test.labels
    methods = {
        "Grad-CAM": lambda: xj.grad_cam(cnn, "features", images, targets).values,
        "Grad-CAM++": lambda: xj.grad_cam_plus_plus(cnn, "features", images, targets).values,
        "Score-CAM": lambda: xj.score_cam(cnn, "features", images, targets).values,
        "EigenCAM": lambda: xj.eigen_cam(cnn, "features", images, targets).values,
        "saliency": lambda: np.abs(xj.saliency(cnn, images, targets).values).sum(-1),
        "integrated gradients": lambda: np.abs(
            xj.integrated_gradients(cnn, images, targets, num_steps=32).values
        ).sum(-1),
        "SmoothGrad": lambda: np.abs(
            xj.smoothgrad(cnn, images, targets, key=k_smooth, num_samples=16).values
        ).sum(-1),
        "LIME (SLIC)": lambda: _lime_heatmap(
            xj.lime_image(
                proba,
                images,
                key=k_lime,
                num_samples=200 if quick else 1000,
                segmentation="slic",
                segmentation_kwargs={"n_segments": 30, "compactness": 10, "start_label": 0},
                top_labels=1,
            )
        ),
    }
    maps = {}
    for name, run in methods.items():
        maps[name], timings[f"image_{name}"] = _timed(name, lambda run=run: np.asarray(run()), log)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    maps["centre (baseline)"] = np.broadcast_to(-(yy**2 + xx**2), images.shape[:3]).astype(float)
    maps["random (baseline)"] = np.asarray(jax.random.uniform(k_random, images.shape[:3]))

    scores = {}
    for name, m in maps.items():
        scores[name] = {
            "pointing_game": float(metrics.pointing_game(m, test.masks).mean()),
            "energy_in_mask": float(metrics.energy_in_mask(m - m.min(), test.masks).mean()),
            "deletion_auc": float(
                metrics.deletion_auc(proba, images, m, targets=targets).auc.mean()
            ),
            "insertion_auc": float(
                metrics.insertion_auc(proba, images, m, targets=targets).auc.mean()
            ),
        }
    section = {
        "test_accuracy": accuracy,
        "images": int(len(images)),
        "image_size": size,
        "scores": scores,
    }
    return section, timings, maps, np.asarray(images), [test.class_names[t] for t in targets]


def _image_figures(figures, maps, images, classes):
    """The synthetic-shapes figures from :func:`_image_maps`' maps, asked of the figure process
    from the main thread (matplotlib's pyplot is not thread-safe)."""
    from xaijax import plots

    shown = min(4, len(images))
    rows = classes[:shown]
    groups = {  # group -> (methods, what the caption says they show)
        "CAM family": (
            ("Grad-CAM", "Grad-CAM++", "Score-CAM", "EigenCAM"),
            "class activation maps of the last convolutional features for the true class",
        ),
        "gradients": (
            ("saliency", "integrated gradients", "SmoothGrad"),
            "gradient attributions for the true class, |value| summed over colour channels",
        ),
        "perturbation and baselines": (
            ("LIME (SLIC)", "centre (baseline)", "random (baseline)"),
            "LIME's superpixel weights for the predicted class, and the two maps every method "
            "should beat: a blob at the centre and random noise",
        ),
    }
    for group, (names, what) in groups.items():
        slug = group.split()[0].lower()
        figures.save(
            _later(
                plots.image_grid,
                images[:shown],
                {k: maps[k][:shown] for k in names if k in maps},
                row_titles=rows,
                title=f"synthetic shapes: {group}",
            ),
            f"shapes_{slug}.png",
            caption=f"{group[0].upper()}{group[1:]}: {what}, on {shown} test images (rows; the "
            "first column is the image, titled with its class).",
            section="synthetic_shapes",
        )
    figures.save(
        _later(
            plots.image_grid,
            images[:shown],
            {k: v[:shown] for k, v in maps.items()},
            row_titles=rows,
            title="synthetic shapes: attribution maps (rows: test images)",
        ),
        "shapes_methods.png",
        caption="All methods side by side (click to zoom): the same test images, one column "
        "per method.",
        section="synthetic_shapes",
        wide=True,
    )


def _lime_heatmap(exp):
    """Per-pixel LIME weights of each image's top label."""
    import numpy as np

    heat = np.asarray(exp.extras["heatmap"])  # (n, H, W, L)
    return heat[..., 0] if heat.ndim == 4 else heat


def _demo_text(out, *, quick, seed, results, log, figures):
    """LIME on text: a scikit-learn bag-of-words classifier on the generated sentiment corpus."""
    import jax
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    import xaijax as xj
    from xaijax import plots
    from xaijax.zoo import data

    log("[4/5] sentiment corpus: scikit-learn text classifier on the host, LIME text")
    texts, labels = data.sentiment_corpus(400, seed=seed)
    clf = make_pipeline(CountVectorizer(), LogisticRegression(max_iter=1000))
    clf.fit(texts[:300], labels[:300])
    docs = texts[300 : 303 if quick else 310]
    exp, results["timings_s"]["lime_text"] = _timed(
        "lime_text",
        lambda: xj.lime_text(
            clf.predict_proba,
            docs,
            key=jax.random.key(seed + 11),
            targets=1,
            num_samples=500 if quick else 5000,
        ),
        log,
    )
    words = np.asarray(exp.extras["feature_labels"])
    top = [str(words[i, int(np.abs(exp.values[i]).argmax())]) for i in range(len(docs))]
    sentiment_words = set(data.SENTIMENT_WORDS)
    results["sentiment_text"] = {
        "test_accuracy": float((clf.predict(texts[300:]) == labels[300:]).mean()),
        "documents": docs,
        "top_word": top,
        "top_word_is_a_sentiment_word": float(np.mean([w in sentiment_words for w in top])),
    }
    figures.save(
        _later(plots.lime_bar, exp, instance=0, title=f"LIME text, P(positive): {docs[0]!r}"),
        "text_lime.png",
        caption=f"LIME on text: the words of {docs[0]!r} by their weight for P(positive).",
        section="sentiment_text",
    )
    # The same weights on the sentences themselves: each word coloured by its LIME weight.
    tokens = [doc.split() for doc in docs]
    width = max(len(t) for t in tokens)
    per_word = [
        dict(zip(words[i], np.asarray(exp.values[i]), strict=True)) for i in range(len(docs))
    ]
    values = np.array(
        [
            [per_word[i].get(t, 0.0) for t in toks] + [0.0] * (width - len(toks))
            for i, toks in enumerate(tokens)
        ]
    )
    padded = [toks + ["[PAD]"] * (width - len(toks)) for toks in tokens]
    figures.save(
        _later(plots.text, values, padded, title="LIME weights for P(positive), word by word"),
        "text_tokens.png",
        caption="The held-out sentences with each word coloured by its LIME weight for "
        "P(positive): red raises it, blue lowers it.",
        section="sentiment_text",
    )
    _save_html(
        plots.text_html(values, padded, title="LIME weights for P(positive)"),
        out,
        "text_tokens.html",
        results,
        caption="The same, as text (hover a word for its weight).",
        section="sentiment_text",
    )


def _save_html(fragment, out, name, results, *, caption, section):
    """Write an HTML fragment (a text view) and record it for the report, which inlines it."""
    import os

    with open(os.path.join(out, name), "w", encoding="utf-8") as fh:
        fh.write(fragment)
    results.setdefault("views", []).append({"file": name, "caption": caption, "section": section})
