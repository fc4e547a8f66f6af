"""``xaijax explain``: explain the rows of a data file with a saved model, resumably.

Rows are explained in chunks; each finished chunk is kept in ``out/chunks/`` (see
:mod:`xaijax.cli.chunks`), so rerunning the same command after an interruption skips the
finished chunks and gives the same result, bit for bit, as a run that never stopped (chunk ``i``
draws from ``fold_in(key, i)``). Rerunning with other settings over an unfinished run is refused
unless ``restart``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time

import numpy as np

from xaijax.cli import chunks
from xaijax.cli.inputs import load_data, load_model
from xaijax.cli.methods import Method, tabular_methods
from xaijax.cli.runs import save_figure, versions
from xaijax.cli.settings import CliError, ExplainSettings

__all__ = ["explain", "explain_rows", "BEESWARM_ROWS"]

BEESWARM_ROWS = 5000


def explain(
    settings: ExplainSettings, *, methods: dict[str, Method] | None = None, log=print
) -> dict:
    """Explain rows of a data file with a saved model; write the Explanation, JSON and figures.

    Args:
        settings: what to explain and how.
        methods: the explainers on offer by name (default :func:`tabular_methods`).
        log: called with progress messages.

    Returns:
        The summary written to ``out/results.json``.

    Raises:
        CliError: for a bad file, an unknown method or option, a host model given to a method
            that needs a JAX model, or an unfinished run with other settings.
    """
    import jax

    import xaijax as xj

    methods = tabular_methods() if methods is None else methods
    if settings.method not in methods:
        raise CliError(
            f"--method {settings.method!r} is not one of the tabular explainers: "
            + ", ".join(methods)
        )
    method = methods[settings.method]
    options = method.check_options(
        dict(settings.options), targets=settings.targets, batch_size=settings.batch_size
    )
    given = dict(settings.options)
    f = load_model(settings.model)
    X, names = load_data(settings.data)
    if settings.background:
        pool, _ = load_data(settings.background, "--background")
        if pool.shape[1:] != X.shape[1:]:
            raise CliError(
                f"--background {settings.background!r} has rows of {pool.shape[1]} features; "
                f"--data has {X.shape[1]}"
            )
    else:
        pool = X
    rows = X[: settings.instances] if settings.instances else X
    if method.needs_jax:
        _check_jax_model(f, rows, settings, method)
    key = jax.random.key(settings.seed)
    k_bg, k_explain = jax.random.split(key)
    reference = _reference(method, pool, settings.background_size, k_bg, xj)
    folder = os.path.join(settings.out, "chunks")
    run_settings, info = _run_settings(settings, method, options, reference)
    extra = {}
    if names is not None and "feature_names" in method.keywords:
        extra["feature_names"] = names
    log(f"explaining {len(rows)} rows of {settings.data} with {settings.method}")
    start = time.perf_counter()
    try:
        exp, run = chunks.explain_in_chunks(
            lambda r, k: explain_rows(method, f, r, reference, k, settings, {**given, **extra}),
            rows,
            key=k_explain if method.random else None,
            folder=folder,
            chunk_size=settings.chunk_size,
            settings=run_settings,
            info=info,
            restart=settings.restart,
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
    except (ValueError, TypeError) as err:
        raise CliError(f"{settings.method}: {err}") from err
    seconds = time.perf_counter() - start
    exp.save(os.path.join(settings.out, "explanation"))
    if settings.figures:
        _figures(exp, settings.out, len(rows))
    summary = {
        "method": settings.method,
        "kind": exp.kind,
        "model": settings.model,
        "data": settings.data,
        "rows": int(len(rows)),
        "seed": settings.seed,
        "seconds": seconds,
        "chunks": {
            "size": run.chunk_size,
            "count": run.chunks,
            "computed": run.computed,
            "reused": run.reused,
            "folder": folder,
        },
        "versions": versions(),
        "settings": _plain(dataclasses.asdict(settings)),
        "options": _plain(options),
        "mean_abs_attribution": np.abs(np.asarray(exp.values)).mean(0).tolist(),
        "feature_names": list(exp.feature_names) if exp.feature_names else None,
    }
    with open(os.path.join(settings.out, "results.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    log(f"wrote {settings.out}/explanation.npz, results.json and figures ({seconds:.1f} s)")
    return summary


def explain_rows(method: Method, f, rows, reference, key, settings: ExplainSettings, options):
    """One chunk: ``method`` on ``rows`` with ``key`` and the settings' targets and batch size."""
    return method.call(
        f,
        rows,
        reference,
        key=key,
        targets=settings.targets,
        batch_size=settings.batch_size,
        **options,
    )


def _check_jax_model(f, rows, settings, method):
    from xaijax.core.model import as_model

    try:
        model, _ = as_model(f, rows[:2])
    except (TypeError, ValueError) as err:
        raise CliError(f"--model {settings.model!r}: {err}") from err
    if not model.differentiable:
        raise CliError(
            f"--method {method.name} needs a JAX model (it differentiates or re-traces the "
            f"model), but --model {settings.model!r} runs on the host (NumPy), like a "
            "scikit-learn estimator. Give a JAX function, an (apply_fn, params) pair or a Flax "
            "NNX module as --model package.module:attribute, or pick a model-agnostic method "
            "(kernel_shap, permutation_shap, exact_shapley, lime_tabular)."
        )


def _reference(method: Method, pool, size: int, key, xj):
    """The reference rows a method gets: LIME's training data whole; a k-means summary
    (weighted centres) for the explainers that take weights; a random subset for the others."""
    if method.reference is None:
        return None
    if method.reference == "training_data" or len(pool) <= size:
        return pool
    if method.takes_weights:
        return xj.kmeans(pool, size, key=key)
    import jax

    keep = np.sort(np.asarray(jax.random.choice(key, len(pool), (size,), replace=False)))
    return pool[keep]


def _run_settings(settings: ExplainSettings, method: Method, options: dict, reference):
    """What a resumed run must share with the first one (compared), and paths (recorded only).

    Files are compared by content, so the same data under another path still resumes; the
    reference rows by their bytes, so k-means must give the very same centres.
    """
    digest = hashlib.sha256()
    if reference is not None:
        data, weights = (
            (reference.data, reference.weights)
            if hasattr(reference, "weights")
            else (reference, None)
        )
        digest.update(np.ascontiguousarray(np.asarray(data, np.float32)).tobytes())
        if weights is not None:
            digest.update(np.ascontiguousarray(np.asarray(weights, np.float32)).tobytes())
    model = settings.model
    run = {
        "method": settings.method,
        "model": chunks.file_digest(model) if os.path.exists(model) else model,
        "data": chunks.file_digest(settings.data),
        "background": chunks.file_digest(settings.background) if settings.background else None,
        "background_size": settings.background_size,
        "background_sha256": digest.hexdigest(),
        "instances": settings.instances,
        "seed": settings.seed,
        "targets": settings.targets,
        "batch_size": settings.batch_size,
        **_plain(options),
    }
    info = {
        "model": settings.model,
        "data": settings.data,
        "background": settings.background,
        "versions": versions(),
    }
    return run, info


def _plain(x):
    """``x`` as JSON data (tuples as lists; anything else JSON cannot hold as its repr)."""
    return json.loads(json.dumps(x, default=repr))


def _figures(exp, out, n):
    from xaijax import plots

    output = 1 if exp.output_names is not None and len(exp.output_names) > 1 else 0
    save_figure(plots.bar(exp, targets=output), out, "bar.png")
    if exp.kind != "additive":
        return  # the beeswarm and the waterfall show additive attributions only
    if n > 1:
        # A scatter of millions of points says no more than one of thousands, and takes minutes.
        shown = exp[:BEESWARM_ROWS]
        title = None if n <= BEESWARM_ROWS else f"first {BEESWARM_ROWS} rows"
        save_figure(plots.beeswarm(shown, targets=output, title=title), out, "beeswarm.png")
    one = exp[0] if exp.is_batched else exp
    save_figure(plots.waterfall(one, targets=output), out, "waterfall_row0.png")
