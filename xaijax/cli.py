"""The ``xaijax`` command; ``xaijax demo`` is the main job (explanations, figures in runs/)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from xaijax.runs import versions

__all__ = ["main", "demo"]


def _timed(label, fn, log):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    log(f"  {label}: {seconds:.2f} s")
    return result, seconds


def demo(out: str = "runs/demo", *, quick: bool = False, seed: int = 0, log=print) -> dict:
    """Train small models on embedded data, explain them with the Shapley explainers, write figures.

    Writes ``out/results.json`` (numbers, seeds, versions, settings, timings) and PNG figures.
    Returns the results dict.
    """
    import jax
    import numpy as np
    from flax import nnx
    from sklearn.linear_model import LinearRegression

    import xaijax as xj
    from xaijax import data, nets, plots

    os.makedirs(out, exist_ok=True)
    key = jax.random.key(seed)
    keys = jax.random.split(key, 10)
    k_train, k_bg, k_kernel, k_perm, k_train2, k_kernel2, k_perm2, k_lin, k_lime, k_text = keys
    n_explain = 5 if quick else 20
    epochs = 10 if quick else 40
    results: dict = {"seed": seed, "quick": quick, "versions": versions(), "timings_s": {}}
    timings = results["timings_s"]

    # 1. Breast cancer (M = 30): an MLP classifier explained by Kernel SHAP and permutation SHAP.
    log("[1/5] breast cancer: MLP classifier, Kernel SHAP and permutation SHAP (M = 30)")
    train, test = data.train_test_split(data.breast_cancer(), seed=seed)
    net = nets.MLP(30, [16], 2, softmax=True, rngs=nnx.Rngs(seed))
    _, timings["train_mlp"] = _timed(
        "train",
        lambda: nets.train(net, train.X, train.y, key=k_train, epochs=epochs, progress=not quick),
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
            labels=(1,),
            feature_names=train.feature_names,
        ),
        log,
    )
    top_shap = np.argsort(-np.abs(kernel.values[..., 1]), axis=1)[:, :5]
    top_lime = np.argsort(-np.abs(lime.values[..., 0]), axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top_shap, top_lime, strict=True)]
    picks = xj.submodular_pick(lime, budget=3)
    results["breast_cancer"]["lime"] = {
        "num_samples": 1000 if quick else 5000,
        "mean_surrogate_r2": float(np.asarray(lime.extras["score"]).mean()),
        "top5_overlap_with_kernel_shap": float(np.mean(overlap)),
        "sp_lime_picks": [int(i) for i in picks],
    }
    _save(
        plots.lime_bar(lime, instance=0, title="LIME, P(benign): test instance 0"),
        out,
        "breast_cancer_lime.png",
    )
    _save(
        plots.beeswarm(kernel, output=1, title="Kernel SHAP, P(benign): all explained instances"),
        out,
        "breast_cancer_beeswarm.png",
    )
    kernel.save(os.path.join(out, "breast_cancer_kernel_shap"))
    _save(
        plots.bar(kernel, output=1, title="Kernel SHAP, P(benign): mean |SHAP value|"),
        out,
        "breast_cancer_bar.png",
    )
    _save(
        plots.waterfall(kernel[0], output=1, title="Kernel SHAP, P(benign): test instance 0"),
        out,
        "breast_cancer_waterfall.png",
    )

    # 2. Diabetes (M = 10): exact Shapley values as the truth for the sampling estimators.
    log("[2/5] diabetes: MLP regressor, exact Shapley vs Kernel SHAP vs permutation (M = 10)")
    dtrain, dtest = data.train_test_split(data.diabetes(), seed=seed)
    reg = nets.MLP(10, [32], 1, rngs=nnx.Rngs(seed + 1))
    _, timings["train_regressor"] = _timed(
        "train",
        lambda: nets.train(
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
    _save(
        plots.compare(
            exact.values,
            {"Kernel SHAP": kern10.values, "permutation SHAP": perm10.values},
            title=f"diabetes MLP: {budget} coalitions vs exact Shapley",
        ),
        out,
        "diabetes_estimates_vs_exact.png",
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

    _demo_images(out, quick=quick, seed=seed, results=results, log=log)
    _demo_text(out, quick=quick, seed=seed, results=results, log=log)

    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    _write_report(out, results)
    log(f"wrote {out}/results.json, {out}/index.html and figures")
    return results


def _demo_images(out, *, quick, seed, results, log):
    """Synthetic shapes: a CNN explained by the CAM family and gradients, scored against masks."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import xaijax as xj
    from xaijax import data, metrics, nets, plots

    log("[4/5] synthetic shapes: CNN, CAM family and gradient attributions vs ground-truth masks")
    timings = results["timings_s"]
    k_data, k_test, k_train, k_smooth, k_random, k_lime = jax.random.split(
        jax.random.key(seed + 7), 6
    )
    size = 32
    train = data.synthetic_shapes(k_data, 128 if quick else 384, size=size)
    test = data.synthetic_shapes(k_test, 4 if quick else 16, size=size)
    cnn = nets.build(lambda r: nets.CNN(3, 3, widths=(16, 32), rngs=r), seed=seed)
    _, timings["train_cnn"] = _timed(
        "train",
        lambda: nets.train(
            cnn,
            train.images,
            train.labels,
            key=k_train,
            epochs=8 if quick else 15,
            learning_rate=3e-3,
            progress=not quick,
        ),
        log,
    )
    accuracy = nets.accuracy(cnn, test.images, test.labels)

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
                metrics.deletion_auc(proba, images, m, target=targets).auc.mean()
            ),
            "insertion_auc": float(
                metrics.insertion_auc(proba, images, m, target=targets).auc.mean()
            ),
        }
    results["synthetic_shapes"] = {
        "test_accuracy": accuracy,
        "images": int(len(images)),
        "image_size": size,
        "scores": scores,
    }
    shown = min(4, len(images))
    _save(
        plots.image_grid(
            images[:shown],
            {k: v[:shown] for k, v in maps.items()},
            row_titles=[test.class_names[t] for t in targets[:shown]],
            title="synthetic shapes: attribution maps (rows: test images)",
        ),
        out,
        "shapes_methods.png",
    )
    del jnp


def _lime_heatmap(exp):
    """Per-pixel LIME weights of each image's top label."""
    import numpy as np

    heat = np.asarray(exp.extras["heatmap"])  # (n, H, W, L)
    return heat[..., 0] if heat.ndim == 4 else heat


def _demo_text(out, *, quick, seed, results, log):
    """LIME on text: a scikit-learn bag-of-words classifier on the generated sentiment corpus."""
    import jax
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    import xaijax as xj
    from xaijax import data, plots

    log("[5/5] sentiment corpus: scikit-learn text classifier on the host, LIME text")
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
            labels=(1,),
            num_samples=500 if quick else 5000,
        ),
        log,
    )
    words = np.asarray(exp.extras["feature_labels"])
    top = [str(words[i, int(np.abs(exp.values[i, :, 0]).argmax())]) for i in range(len(docs))]
    sentiment_words = set(data.SENTIMENT_WORDS)
    results["sentiment_text"] = {
        "test_accuracy": float((clf.predict(texts[300:]) == labels[300:]).mean()),
        "documents": docs,
        "top_word": top,
        "top_word_is_a_sentiment_word": float(np.mean([w in sentiment_words for w in top])),
    }
    _save(
        plots.lime_bar(exp, instance=0, title=f"LIME text, P(positive): {docs[0]!r}"),
        out,
        "text_lime.png",
    )


def _write_report(out, results):
    """A self-contained index.html showing the numbers and every PNG in ``out``."""
    import html

    figures = sorted(f for f in os.listdir(out) if f.endswith(".png"))
    rows = ""
    shapes = results.get("synthetic_shapes", {}).get("scores", {})
    for name, sc in shapes.items():
        cells = "".join(f"<td>{v:.3f}</td>" for v in sc.values())
        rows += f"<tr><td>{html.escape(name)}</td>{cells}</tr>\n"
    table = (
        (
            "<table><tr><th>method</th><th>pointing game</th><th>energy in mask</th>"
            "<th>deletion AUC (lower better)</th><th>insertion AUC</th></tr>\n"
            f"{rows}</table>"
        )
        if rows
        else ""
    )
    imgs = "\n".join(
        f'<figure><img src="{html.escape(f)}"><figcaption>{html.escape(f)}</figcaption></figure>'
        for f in figures
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>xaijax demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
img{{max-width:100%}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px}}
figure{{display:inline-block;max-width:520px;vertical-align:top}}</style></head><body>
<h1>xaijax demo</h1>
<p>Seed {results["seed"]}, versions {html.escape(json.dumps(results["versions"]))}.</p>
<h2>Localisation on synthetic shapes</h2>{table}
<h2>Figures</h2>{imgs}
<h2>All numbers</h2><pre>{html.escape(json.dumps(results, indent=2))}</pre>
</body></html>"""
    with open(os.path.join(out, "index.html"), "w") as fh:
        fh.write(page)


def _save(fig, out, name):
    import matplotlib.pyplot as plt

    fig.savefig(os.path.join(out, name), dpi=120)
    plt.close(fig)


EXPLAIN_METHODS = ("kernel_shap", "permutation_shap", "exact_shapley")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _load_model(spec: str):
    """A pickled model file, or ``package.module:attribute`` naming a model or a factory."""
    import importlib
    import pickle

    if os.path.exists(spec):
        with open(spec, "rb") as fh:
            obj = pickle.load(fh)
    elif ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise CliError(f"--model {spec!r}: cannot import it ({err})") from err
        if isinstance(obj, type) or getattr(obj, "__xaijax_factory__", False):
            obj = obj()
    else:
        raise CliError(f"--model {spec!r}: no such file (give a pickle file or module:attribute)")
    if hasattr(obj, "predict_proba"):
        return obj.predict_proba
    if hasattr(obj, "predict"):
        return obj.predict
    if callable(obj):
        return obj
    raise CliError(f"--model {spec!r}: the object is not callable and has no predict/predict_proba")


def _load_data(path: str):
    """``(X, feature_names)`` from ``.npz`` (``X``, optional ``feature_names``) or ``.csv``."""
    import numpy as np

    if not os.path.exists(path):
        raise CliError(f"--data {path!r}: no such file")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as npz:
            if "X" not in npz.files:
                raise CliError(
                    f"--data {path!r}: the .npz must hold an array named X; it holds {npz.files}"
                )
            X = np.asarray(npz["X"], np.float32)
            names = [str(n) for n in npz["feature_names"]] if "feature_names" in npz.files else None
    elif path.endswith(".csv"):
        with open(path) as fh:
            header = fh.readline().strip().split(",")
        try:
            float(header[0])
            names, skip = None, 0
        except ValueError:
            names, skip = [h.strip() for h in header], 1
        try:
            X = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float32, ndmin=2)
        except ValueError as err:
            raise CliError(f"--data {path!r}: not a numeric CSV ({err})") from err
    else:
        raise CliError(f"--data {path!r}: expected a .npz or .csv file")
    if X.ndim != 2:
        raise CliError(f"--data {path!r}: X must be a table (rows, features); got shape {X.shape}")
    return X, names


def explain(args, log=print) -> dict:
    """Explain rows of a data file with a saved model; write the Explanation, JSON and figures.

    Rows are explained in chunks of ``--chunk-size``; each finished chunk is kept in
    ``out/chunks/`` (see :mod:`xaijax.chunks`), so rerunning the same command after an
    interruption skips the finished chunks and gives the same result, bit for bit, as a run that
    never stopped. Rerunning with other settings over an unfinished run is refused unless
    ``--restart``. The summary returned is what ``out/results.json`` holds.
    """
    import jax
    import numpy as np

    import xaijax as xj
    from xaijax import chunks, plots

    f = _load_model(args.model)
    X, names = _load_data(args.data)
    if args.background:
        background, _ = _load_data(args.background)
    else:
        background = X
    key = jax.random.key(args.seed)
    k_bg, k_explain = jax.random.split(key)
    if len(background) > args.background_size:
        background = xj.kmeans(background, args.background_size, key=k_bg)
    rows = X[: args.instances] if args.instances else X
    chunk_size = getattr(args, "chunk_size", DEFAULT_CHUNK_SIZE)
    folder = os.path.join(args.out, "chunks")
    settings, info = _run_settings(args, background)
    log(f"explaining {len(rows)} rows of {args.data} with {args.method}")
    start = time.perf_counter()
    try:
        exp, run = chunks.explain_in_chunks(
            lambda r, k: _explain_rows(args, f, r, background, k, names),
            rows,
            key=None if args.method == "exact_shapley" else k_explain,
            folder=folder,
            chunk_size=chunk_size,
            settings=settings,
            info=info,
            restart=getattr(args, "restart", False),
            progress=sys.stderr,
            log=log,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the finished chunks are kept in {folder}; "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        raise
    except chunks.ResumeMismatch as err:
        raise CliError(
            f"{err}. Rerun with the same settings to resume it, or add --restart to discard it."
        ) from err
    except ValueError as err:
        raise CliError(str(err)) from err
    seconds = time.perf_counter() - start
    exp.save(os.path.join(args.out, "explanation"))
    output = 1 if exp.output_names is not None and len(exp.output_names) > 1 else 0
    _save(plots.bar(exp, output=output), args.out, "bar.png")
    if len(rows) > 1:
        # A scatter of millions of points says no more than one of thousands, and takes minutes.
        shown = exp[:BEESWARM_ROWS]
        title = None if len(rows) <= BEESWARM_ROWS else f"first {BEESWARM_ROWS} rows"
        _save(plots.beeswarm(shown, output=output, title=title), args.out, "beeswarm.png")
    _save(
        plots.waterfall(exp[0] if exp.is_batched else exp, output=output),
        args.out,
        "waterfall_row0.png",
    )
    summary = {
        "method": args.method,
        "model": args.model,
        "data": args.data,
        "rows": int(len(rows)),
        "seed": args.seed,
        "seconds": seconds,
        "chunks": {
            "size": run.chunk_size,
            "count": run.chunks,
            "computed": run.computed,
            "reused": run.reused,
            "folder": folder,
        },
        "versions": versions(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("command",)},
        "mean_abs_attribution": np.abs(np.asarray(exp.values)).mean(0).tolist(),
        "feature_names": list(exp.feature_names) if exp.feature_names else None,
    }
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    log(f"wrote {args.out}/explanation.npz, results.json and figures ({seconds:.1f} s)")
    return summary


DEFAULT_CHUNK_SIZE = 256
BEESWARM_ROWS = 5000


def _explain_rows(args, f, rows, background, key, names):
    """One chunk: the explainer ``args.method`` on ``rows`` with ``key``."""
    import xaijax as xj

    if args.method == "kernel_shap":
        num = args.num_samples if args.num_samples else "auto"
        return xj.kernel_shap(
            f, rows, background, key=key, num_samples=num, feature_names=names, link=args.link
        )
    if args.method == "permutation_shap":
        return xj.permutation_shap(
            f,
            rows,
            background,
            key=key,
            link=args.link,
            num_permutations=args.num_permutations,
            feature_names=names,
        )
    return xj.exact_shapley(f, rows, background, feature_names=names, link=args.link)


def _run_settings(args, background):
    """What a resumed run must share with the first one (compared), and paths (recorded only).

    Files are compared by content, so the same data under another path still resumes; the
    background summary by its bytes, so k-means must give the very same centres.
    """
    import hashlib

    import numpy as np

    from xaijax.chunks import file_digest

    data, weights = (
        (background.data, background.weights)
        if hasattr(background, "weights")
        else (background, None)
    )
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(data, np.float32)).tobytes())
    if weights is not None:
        digest.update(np.ascontiguousarray(np.asarray(weights, np.float32)).tobytes())
    settings = {
        "method": args.method,
        "model": file_digest(args.model) if os.path.exists(args.model) else args.model,
        "data": file_digest(args.data),
        "background": file_digest(args.background) if args.background else None,
        "background_size": args.background_size,
        "background_sha256": digest.hexdigest(),
        "instances": args.instances,
        "seed": args.seed,
        "link": args.link,
    }
    if args.method == "kernel_shap":
        settings["num_samples"] = args.num_samples or "auto"
    if args.method == "permutation_shap":
        settings["num_permutations"] = args.num_permutations
    info = {
        "model": args.model,
        "data": args.data,
        "background": args.background,
        "versions": versions(),
    }
    return settings, info


def _experiment_dirs():
    import xaijax

    here = os.path.join(os.getcwd(), "experiments")
    repo = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(xaijax.__file__))), "experiments"
    )
    return [d for d in dict.fromkeys((here, repo)) if os.path.isdir(d)]


def available_experiments() -> dict:
    """Experiment name -> script path, from ``experiments/`` (cwd first, then the source tree)."""
    found = {}
    for d in _experiment_dirs():
        for name in sorted(os.listdir(d)):
            if name.endswith(".py") and not name.startswith("_"):
                found.setdefault(name[:-3], os.path.join(d, name))
    return found


def run_experiment(name: str, argv) -> int:
    """Run ``experiments/<name>.py``'s ``main(argv)``."""
    import importlib.util

    scripts = available_experiments()
    if name not in scripts:
        listed = ", ".join(scripts) or "none found (run from the repository root)"
        raise CliError(f"unknown experiment {name!r}; available: {listed}")
    spec = importlib.util.spec_from_file_location(f"experiments.{name}", scripts[name])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(list(argv)) or 0)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["protopnet"]:
        # ProtoPNet's trainer has its own argument parser (datasets, stages, checkpoints).
        from xaijax.protopnet.train import main as protopnet_main

        protopnet_main(argv[1:])
        return 0
    parser = argparse.ArgumentParser(
        prog="xaijax", description="Explain machine-learning models in JAX."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="explain small models on embedded data; write figures")
    p_demo.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder")
    p_demo.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    p_demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p_exp = sub.add_parser(
        "explain",
        help="explain rows of a data file with a saved model",
        description="Explain rows of a .npz/.csv file with a pickled model (e.g. a scikit-learn "
        "estimator: predict_proba is used) or a module:attribute reference. Rows are explained in "
        "chunks, each kept in OUT/chunks/ as it finishes: rerun the same command after an "
        "interruption and it resumes, reusing the finished chunks, with the same result as an "
        "uninterrupted run. Other settings over an unfinished run are refused (see --restart).",
    )
    p_exp.add_argument("--method", choices=EXPLAIN_METHODS, default="kernel_shap")
    p_exp.add_argument("--model", required=True, help="pickle file or package.module:attribute")
    p_exp.add_argument("--data", required=True, help=".npz with array X (+ feature_names) or .csv")
    p_exp.add_argument("--background", help="data file for the background (default: --data)")
    p_exp.add_argument(
        "--background-size",
        type=int,
        default=50,
        help="summarise the background to this many k-means centres",
    )
    p_exp.add_argument("--instances", type=int, default=0, help="explain the first N rows only")
    p_exp.add_argument("--num-samples", type=int, default=0, help="kernel_shap budget (0: auto)")
    p_exp.add_argument("--num-permutations", type=int, default=10)
    p_exp.add_argument("--link", choices=("identity", "logit"), default="identity")
    p_exp.add_argument("--seed", type=int, default=0)
    p_exp.add_argument("--out", default=os.path.join("runs", "explain"), help="output folder")
    p_exp.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help="rows per chunk; each finished chunk is kept in OUT/chunks/ so that rerunning the "
        "same command after an interruption resumes where it stopped (default %(default)s)",
    )
    p_exp.add_argument(
        "--restart",
        action="store_true",
        help="discard the chunks of an earlier unfinished run in OUT instead of resuming it",
    )
    sub.add_parser(
        "protopnet",
        add_help=False,
        help="train and explain a ProtoPNet (xaijax protopnet --help for its options)",
    )
    p_run = sub.add_parser(
        "experiment",
        help="run a paper reproduction in experiments/",
        description="Run experiments/<name>.py (e.g. --quick for a CPU size); "
        "it writes runs/<name>/results.json and figures.",
    )
    p_run.add_argument("name", nargs="?", help="experiment name; omit to list them")
    args, rest = parser.parse_known_args(argv)
    if args.command != "experiment" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "experiment":
            if not args.name:
                for name, path in available_experiments().items():
                    print(f"{name:28s} {path}")
                return 0
            return run_experiment(args.name, rest)
        elif args.command == "demo":
            demo(args.out, quick=args.quick, seed=args.seed)
        elif args.command == "explain":
            explain(args)
    except CliError as err:
        print(f"xaijax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
