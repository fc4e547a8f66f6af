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
import tempfile
import time

import numpy as np

from xaijax.cli import chunks
from xaijax.cli.inputs import Columns, expected_features, load_data, load_model
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
    _check_writable(settings.out)
    try:
        # One writer per folder, from before anything is read to the last file written.
        with chunks.lock_folder(settings.out, log=log):
            return _explain(settings, method, options, log)
    except chunks.FolderLocked as err:
        raise CliError(f"--out {settings.out!r}: {err}") from err


def _explain(settings: ExplainSettings, method: Method, options: dict, log) -> dict:
    import xaijax as xj
    from xaijax.core.random import seed_keys

    given = dict(settings.options)
    log(f"loading the model {settings.model}")
    f = load_model(settings.model, log=log)
    selection = Columns(settings.index_col, tuple(settings.columns), settings.target)
    log(f"reading {settings.data}")
    X, names = load_data(settings.data, "--data", selection, log=log)
    X, names = _model_columns(f, X, names, settings, log)
    if settings.background:
        pool, pool_names = load_data(settings.background, "--background", selection, log=log)
        pool, _ = _model_columns(f, pool, pool_names, settings, lambda _: None, "--background")
        if pool.shape[1:] != X.shape[1:]:
            raise CliError(
                f"--background {settings.background!r} has rows of {pool.shape[1]} features; "
                f"--data has {X.shape[1]}"
            )
    else:
        pool = X
    if settings.instances > len(X):
        log(f"--instances {settings.instances}: the data hold {len(X)} rows; explaining all")
    rows = X[: settings.instances] if settings.instances else X
    log(f"{len(rows)} rows of {X.shape[1]} features" + (f" ({_names(names)})" if names else ""))
    model = _probe_model(f, rows, settings, method)
    k_bg, k_explain = seed_keys(settings.seed, 2)
    if method.reference is not None:
        log(_reference_text(method, len(pool), settings.background_size))
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
        seconds = time.perf_counter() - start
        log(f"writing the explanation{' and figures' * settings.figures} to {settings.out}")
        summary = _write(exp, run, settings, options, model, folder, seconds, len(rows))
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
    except OSError as err:
        raise CliError(
            f"--out {settings.out!r}: cannot write there ({type(err).__name__}: {err}); the "
            f"finished chunks are kept in {folder}"
        ) from err
    except (ValueError, TypeError) as err:
        raise CliError(f"{settings.method}: {err}") from err
    figures = " and figures" if settings.figures else ""
    log(f"wrote {settings.out}/explanation.npz, results.json{figures} ({seconds:.1f} s)")
    return summary


def _write(exp, run, settings, options, model, folder, seconds, n) -> dict:
    exp.save(os.path.join(settings.out, "explanation"))
    shown = None
    if settings.figures:
        shown = _figures(exp, settings.out, n, settings.output)
    summary = {
        "method": settings.method,
        "kind": exp.kind,
        "model": settings.model,
        "data": settings.data,
        "rows": int(n),
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
        "model_outputs": model.num_outputs,
        "figures_output": shown,
        "mean_abs_attribution": np.abs(np.asarray(exp.values)).mean(0).tolist(),
        "feature_names": list(exp.feature_names) if exp.feature_names else None,
    }
    with open(os.path.join(settings.out, "results.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
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


def _check_writable(out: str):
    """Fail now, not after the explaining, if ``out`` cannot be written."""
    try:
        os.makedirs(out, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".xaijax-write-test-", dir=out)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise CliError(
            f"--out {out!r}: cannot write there ({type(err).__name__}: {err}); give a folder "
            "you can write to"
        ) from err


def _names(names, limit=6):
    shown = ", ".join(n or "(unnamed)" for n in names[:limit])
    return shown + (f", ... ({len(names)} names)" if len(names) > limit else "")


def _model_columns(f, X, names, settings: ExplainSettings, log, flag="--data"):
    """The data's columns as the model expects them, checked before anything compiles.

    A model fitted on a DataFrame (``feature_names_in_``) gets its own columns, in its order,
    picked by name from the file (so an index or label column drops out by itself); otherwise
    the number of columns must be the model's ``n_features_in_`` where it has one. Returns
    ``(X, names)``.
    """
    path = settings.data if flag == "--data" else settings.background
    owner = getattr(f, "__self__", f)
    fitted = getattr(owner, "feature_names_in_", None)
    if fitted is not None and names is not None:
        fitted = [str(c) for c in fitted]
        if names == fitted:
            return X, names
        missing = [c for c in fitted if c not in names]
        if not missing:
            extra = [c for c in names if c not in fitted]
            log(
                f"using the model's {len(fitted)} columns (its feature_names_in_), in its order"
                + (f"; leaving out {_names(extra)}" if extra else "")
            )
            return X[:, [names.index(c) for c in fitted]], fitted
        raise CliError(
            f"{flag} {path!r} lacks columns the model was fitted on: {_names(missing)} "
            f"(the file has {_names(names)}); rename them, or pick columns with --columns"
        )
    expected = expected_features(f)
    if expected is not None and expected != X.shape[1]:
        hint = ""
        if X.shape[1] > expected:
            hint = (
                f"; drop {X.shape[1] - expected} with --index-col (a column of row labels, "
                "e.g. --index-col 0 for a CSV pandas wrote with its index), --target (a label "
                "column) or pick them with --columns"
            )
        raise CliError(
            f"{flag} {path!r} has {X.shape[1]} feature columns"
            + (f" ({_names(names)})" if names else "")
            + f", but --model {settings.model!r} expects {expected} (n_features_in_){hint}"
        )
    return X, names


def _probe_model(f, rows, settings: ExplainSettings, method: Method):
    """The model adapted and called once on two rows (a host model) or traced (a JAX model),
    so a wrong input width, an output out of range or a host model given to a JAX-only method
    fails now, before anything compiles."""
    from xaijax.core.model import as_model

    try:
        model, _ = as_model(f, rows[:2], name="--data")
    except (TypeError, ValueError) as err:
        raise CliError(
            f"--model {settings.model!r} fails on rows of --data ({rows.shape[1]} columns): {err}"
        ) from err
    if method.needs_jax and not model.differentiable:
        raise CliError(
            f"--method {method.name} needs a JAX model (it differentiates or re-traces the "
            f"model), but --model {settings.model!r} runs on the host (NumPy), like a "
            "scikit-learn estimator. Give a JAX function, an (apply_fn, params) pair or a Flax "
            "NNX module as --model package.module:attribute, or pick a model-agnostic method "
            "(kernel_shap, permutation_shap, exact_shapley, lime_tabular)."
        )
    outputs = model.num_outputs
    for flag, value in (("--targets", settings.targets), ("--output", settings.output)):
        if value is None:
            continue
        if outputs is None and value != 0:
            raise CliError(f"{flag} {value}: the model has one output (give 0 or leave it out)")
        if outputs is not None and not 0 <= value < outputs:
            raise CliError(f"{flag} {value}: the model has {outputs} outputs (0..{outputs - 1})")
    return model


def _reference_text(method: Method, n: int, size: int) -> str:
    if method.reference == "training_data" or n <= size:
        return f"reference rows: all {n} rows of the background"
    if method.takes_weights:
        return f"summarising the {n} background rows to {size} k-means centres"
    return f"reference rows: a random {size} of the {n} background rows"


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


def _figures(exp, out, n, output=None):
    """Write the figures; returns the output shown (``None`` for an explanation of one output).

    Several outputs: ``output`` (default 1, the positive class of a binary classifier)."""
    from xaijax import plots

    several = exp.output_names is not None and len(exp.output_names) > 1
    shown = (1 if output is None else int(output)) if several else None
    if exp.kind == "interaction":  # (n, M, M) pairs: their own figures
        save_figure(plots.interaction_matrix(exp, targets=shown), out, "interaction_matrix.png")
        save_figure(plots.interaction_network(exp, targets=shown), out, "interaction_network.png")
        return shown
    save_figure(plots.bar(exp, targets=shown), out, "bar.png")
    if exp.kind != "additive":
        return shown  # the beeswarm and the waterfall show additive attributions only
    if n > 1:
        # A scatter of millions of points says no more than one of thousands, and takes minutes.
        part = exp[:BEESWARM_ROWS]
        title = None if n <= BEESWARM_ROWS else f"first {BEESWARM_ROWS} rows"
        save_figure(plots.beeswarm(part, targets=shown, title=title), out, "beeswarm.png")
    one = exp[0] if exp.is_batched else exp
    save_figure(plots.waterfall(one, targets=shown), out, "waterfall_row0.png")
    return shown
