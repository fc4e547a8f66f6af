"""The command line's edge: the argument parser, arguments -> settings, and dispatch.

This is the only module that sees ``argparse``; each command takes a frozen settings object
(:mod:`xaijax.cli.settings`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from xaijax.cli.methods import Method, tabular_methods
from xaijax.cli.settings import CliError, DemoSettings, ExplainSettings, ProtoPNetSettings
from xaijax.core.compile_cache import (
    CACHE_DIR_ENV,
    SWITCH_ENV,
    disable_compile_cache,
    enable_compile_cache,
)

__all__ = [
    "build_parser",
    "main",
    "explain_settings",
    "protopnet_settings",
    "limit_host_threads",
    "exit_without_teardown",
    "use_compile_cache",
]

DEFAULT_CHUNK_SIZE = ExplainSettings.chunk_size

# Method options with their own flag (any other option: --option NAME=VALUE).
OPTION_FLAGS = {
    "num_samples": (int, "samples per instance (0: the method's default, e.g. 'auto')"),
    "num_permutations": (int, "feature orders per instance"),
    "link": (str, "'identity' or 'logit'"),
    "num_features": (int, "features kept in the surrogate"),
    "kernel_width": (float, "width of the proximity kernel"),
    "num_steps": (int, "integration steps"),
    "noise_level": (float, "noise standard deviation relative to each row's range"),
}


def _takers(methods: dict[str, Method], option: str) -> str:
    """The methods taking ``option``, each with its default, e.g. ``kernel_shap (default
    'auto')``."""
    names = [
        f"{m.name} (default {dict(m.options)[option]!r})"
        for m in methods.values()
        if option in dict(m.options)
    ]
    return ", ".join(names) or "no method"


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: ...)`` to the flags that have a default to show (not ``None``,
    ``False`` or ``[]``: a flag without one says in its help what leaving it out means)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def build_parser(methods: dict[str, Method] | None = None) -> argparse.ArgumentParser:
    """The ``xaijax`` parser; ``explain``'s ``--method`` offers every method of ``methods``."""
    methods = tabular_methods() if methods is None else methods
    parser = argparse.ArgumentParser(
        prog="xaijax", description="Explain machine-learning models in JAX."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    # Every command keeps its compiled programs on disk (JAX's persistent compilation cache),
    # so a second run of the same command compiles nothing that it can read back.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="compile everything afresh and keep nothing on disk (default: compiled programs "
        f"are kept in ${CACHE_DIR_ENV}, else ~/.cache/xaijax/jax, and read back by later runs; "
        f"{SWITCH_ENV}=0 turns this off too)",
    )

    p_demo = sub.add_parser(
        "demo", help="explain small models on embedded data; write figures", parents=[common]
    )
    p_demo.add_argument("--out", default=DemoSettings.out, help="output folder")
    p_demo.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    p_demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    p_exp = sub.add_parser(
        "explain",
        parents=[common],
        help="explain rows of a data file with a saved model",
        formatter_class=_DefaultsFormatter,
        description="Explain rows of a .npz/.csv/.parquet file with a saved model (a pickle, "
        "joblib or .skops file, e.g. a scikit-learn estimator: predict_proba is used) or a "
        "module:attribute reference (a JAX function, an (apply_fn, params) pair or an NNX "
        "module, which the gradient methods and Deep SHAP need). WARNING: loading a pickle or "
        "joblib file runs code stored in it; load only files you trust. Rows are explained in "
        "chunks, each kept in OUT/chunks/ as it finishes: rerun the same command after an "
        "interruption and it resumes, reusing the finished chunks, with the same result as an "
        "uninterrupted run. Other settings over an unfinished run are refused (see --restart).",
    )
    p_exp.add_argument(
        "--method", choices=sorted(methods), default="kernel_shap", help="the explainer"
    )
    p_exp.add_argument(
        "--model",
        required=True,
        help="a pickle/joblib/.skops file (a pickle or joblib file runs code when loaded: "
        "only files you trust) or module:attribute (found from the current folder)",
    )
    p_exp.add_argument(
        "--data", required=True, help=".npz (X, feature_names), .csv or .parquet (pandas+pyarrow)"
    )
    p_exp.add_argument("--index-col", help="a column of row labels to drop (name or position)")
    p_exp.add_argument("--columns", help="feature columns to keep, comma-separated (default all)")
    p_exp.add_argument("--target", help="a label column to drop (name or position)")
    p_exp.add_argument("--background", help="data file for the reference rows (default: --data)")
    p_exp.add_argument(
        "--background-size",
        type=int,
        default=ExplainSettings.background_size,
        help="reference rows kept: k-means centres for the methods that take weights, a random "
        "subset for the others (LIME's training data is kept whole)",
    )
    p_exp.add_argument(
        "--instances", type=int, default=0, help="explain the first N rows only (0: all)"
    )
    p_exp.add_argument(
        "--targets", type=int, default=None, help="the output to explain (default: the method's)"
    )
    p_exp.add_argument(
        "--batch-size", type=int, default=None, help="model rows at once (default: by backend)"
    )
    for name, (kind, text) in OPTION_FLAGS.items():
        p_exp.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=None,
            help=f"{text}; taken by {_takers(methods, name)}",
        )
    p_exp.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other option of the method (VALUE read as JSON, else as a string), e.g. "
        "--option 'l1_reg=num_features(5)'; repeatable",
    )
    p_exp.add_argument("--seed", type=int, default=0, help="random seed")
    p_exp.add_argument("--out", default=ExplainSettings.out, help="output folder")
    p_exp.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help="rows per chunk; each finished chunk is kept in OUT/chunks/ so that rerunning the "
        "same command after an interruption resumes where it stopped",
    )
    p_exp.add_argument(
        "--restart",
        action="store_true",
        help="discard the chunks of an earlier unfinished run in OUT instead of resuming it",
    )
    p_exp.add_argument("--no-figures", action="store_true", help="write no PNG figures")
    p_exp.add_argument(
        "--output",
        type=int,
        default=None,
        help="the model output (class) the figures show (default: 1 of several outputs)",
    )

    p_pp = sub.add_parser(
        "protopnet",
        parents=[common],
        help="train and explain a ProtoPNet against a plain CNN",
        description="Train ProtoPNet and a plain CNN with the same backbone; write "
        "results.json (test accuracies), metrics.jsonl, checkpoint.*, explanation_*.png and "
        "prototypes.png under --out.",
    )
    p_pp.add_argument("--dataset", choices=("shapes", "digits"), default="shapes")
    p_pp.add_argument("--out", default=ProtoPNetSettings.out)
    p_pp.add_argument("--quick", action="store_true", help="small, fast settings (CPU minutes)")
    p_pp.add_argument("--epochs", type=int, default=None)
    p_pp.add_argument("--size", type=int, default=32, help="image side in pixels")
    p_pp.add_argument(
        "--n", type=int, default=ProtoPNetSettings.n, help="synthetic images to generate"
    )
    p_pp.add_argument("--backbone", choices=("small", "resnet18"), default="small")
    p_pp.add_argument(
        "--prototypes-per-class",
        type=int,
        default=None,
        help="default: 1 on shapes (then most prototypes sit at the objects), 3 on digits",
    )
    p_pp.add_argument("--prototype-depth", type=int, default=32)
    p_pp.add_argument(
        "--channels",
        default=None,
        help="backbone widths (default for small: 16,32 on shapes, whose prototypes then sit on "
        "objects, 16,32,32 on digits; resnet18: 4 stages, default 16,32,64,64)",
    )
    p_pp.add_argument(
        "--border",
        type=int,
        default=None,
        help="latent rows/columns at each edge not matched to prototypes (default: 1 for small "
        "on shapes, else 0): their receptive fields hang over the zero padding",
    )
    p_pp.add_argument("--seed", type=int, default=0)
    p_pp.add_argument("--resume", action="store_true")
    p_pp.add_argument("--explain", type=int, default=3, help="test images to explain (PNGs)")
    p_pp.add_argument(
        "--no-prune",
        dest="prune",
        action="store_false",
        help="skip the paper's pruning of prototypes whose nearest training images are mostly "
        "of other classes",
    )
    p_pp.add_argument("--quiet", action="store_true")

    p_run = sub.add_parser(
        "experiment",
        parents=[common],
        help="run a paper reproduction in experiments/ (from a checkout)",
        description="Run experiments/<name>.py (e.g. --quick for a CPU size); it writes "
        "runs/<name>/results.json and figures. The experiments live in the source repository: "
        "run this from its root.",
    )
    p_run.add_argument("name", nargs="?", help="experiment name; omit to list them")
    p_run.add_argument(
        "--quick",
        action="store_true",
        help="CPU-sized run (minutes), passed on to the experiment; other options after the "
        "name (--out, --seed, ...) go to the experiment too",
    )
    return parser


def _option_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def explain_settings(args: argparse.Namespace) -> ExplainSettings:
    """``xaijax explain``'s arguments as :class:`ExplainSettings`."""
    options = {}
    for name in OPTION_FLAGS:
        value = getattr(args, name)
        if name == "num_samples" and value == 0:
            value = None  # 0 always meant "the method's default"
        if value is not None:
            options[name] = value
    for item in args.option:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--option {item!r}: expected NAME=VALUE")
        options[name.strip().replace("-", "_")] = _option_value(text)
    return ExplainSettings(
        model=args.model,
        data=args.data,
        method=args.method,
        out=args.out,
        background=args.background,
        background_size=args.background_size,
        instances=args.instances,
        seed=args.seed,
        targets=args.targets,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        restart=args.restart,
        figures=not args.no_figures,
        options=tuple(options.items()),
        index_col=args.index_col,
        columns=tuple(c.strip() for c in args.columns.split(",")) if args.columns else (),
        target=args.target,
        output=args.output,
    )


def protopnet_settings(args: argparse.Namespace) -> ProtoPNetSettings:
    """``xaijax protopnet``'s arguments as :class:`ProtoPNetSettings`."""
    channels = None
    if args.channels:
        try:
            channels = tuple(int(c) for c in args.channels.split(","))
        except ValueError as err:
            raise CliError(f"--channels {args.channels!r}: expected widths like 16,32,32") from err
    return ProtoPNetSettings(
        dataset=args.dataset,
        out=args.out,
        quick=args.quick,
        epochs=args.epochs,
        size=args.size,
        n=args.n,
        backbone=args.backbone,
        prototypes_per_class=args.prototypes_per_class,
        prototype_depth=args.prototype_depth,
        channels=channels,
        seed=args.seed,
        resume=args.resume,
        explain=args.explain,
        quiet=args.quiet,
        prune=args.prune,
        border=args.border,
    )


def use_compile_cache(args: argparse.Namespace) -> str | None:
    """Turn JAX's persistent compilation cache on for this run, unless asked not to.

    Off with ``--no-compile-cache`` or ``XAIJAX_COMPILE_CACHE=0`` (then nothing is read or
    written, even where JAX's own ``JAX_COMPILATION_CACHE_DIR`` is set); otherwise the folder is
    ``$XAIJAX_CACHE_DIR``, else JAX's configured folder, else ``~/.cache/xaijax/jax``. A folder
    that cannot be created only costs the cache: the run goes on, compiling as usual. Returns the
    folder in use, or ``None``.
    """
    import jax

    if getattr(args, "no_compile_cache", False) or os.environ.get(SWITCH_ENV, "1").strip() in (
        "0",
        "false",
        "no",
        "off",
    ):
        disable_compile_cache()
        return None
    configured = None if os.environ.get(CACHE_DIR_ENV) else jax.config.jax_compilation_cache_dir
    try:
        return enable_compile_cache(configured)
    except ValueError as err:
        print(f"xaijax: compiled programs are not kept: {err}", file=sys.stderr)
        return None


FAST_COMPILE_ENV = "XAIJAX_FAST_COMPILE"
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
SMALL_JOB_ROWS = 100


def fast_compile_flags(environ, args: argparse.Namespace | None = None) -> str | None:
    """``XLA_FLAGS`` for a short job: XLA:CPU without LLVM's optimisation passes, or ``None``.

    A short job is mostly compilation, so compiling without LLVM's optimisation passes saves
    more than the slower code costs. Measured on 2 cores with a cold cache: ``xaijax demo
    --quick`` 73 -> 51 s of CPU time, the full demo 93 -> 79 s; ``xaijax explain`` on 10 rows of
    a scikit-learn model 8.2 -> 5.1 s end to end. The code is IEEE-exact either way (no
    fast-math) but slower to run (Kernel SHAP 2x, LIME 5x in steady state), so it is used only
    for short jobs: by default the demo and ``explain --instances N`` with ``N <=
    SMALL_JOB_ROWS``. ``$XAIJAX_FAST_COMPILE`` set to ``1`` uses it for every command, ``0`` for
    none; ``XLA_FLAGS`` that already choose an optimisation level are left alone.
    """
    switch = environ.get(FAST_COMPILE_ENV, "").strip().lower()
    if switch in ("0", "false", "no", "off"):
        return None
    if switch not in ("1", "true", "yes", "on"):  # automatic: short jobs only
        command = getattr(args, "command", None)
        instances = getattr(args, "instances", 0) or 0
        if not (command == "demo" or (command == "explain" and 0 < instances <= SMALL_JOB_ROWS)):
            return None
    current = environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" in current:
        return None
    return (current + " " + FAST_COMPILE_FLAGS).strip()


def limit_host_threads() -> int | None:
    """Cap the BLAS and OpenMP thread pools at half the cores for this whole run (CPU backend).

    A host model (scikit-learn) runs inside XLA's own threads. The library caps its pools for
    each call (:mod:`xaijax.core.model`), but pools restored to full size between calls keep
    spinning threads that compete with XLA's: 10 rows of Kernel SHAP on a scikit-learn model
    took 0.3-1.9 s per call and 4.5 s for the first (2 cores, load 3), against 40-100 ms and
    2.0 s with the pools capped once for the process. The command line owns its process, so it
    caps them once: pools already loaded now, the others (loaded with the model) through their
    environment variables, unless set. ``XAIJAX_HOST_THREADS=N`` sets the cap, ``0`` none.
    Returns the cap, or ``None``.
    """
    import jax

    setting = os.environ.get("XAIJAX_HOST_THREADS", "auto").strip()
    if setting == "auto":
        if jax.default_backend() != "cpu":
            return None
        limit = max(1, (os.cpu_count() or 2) // 2)
    else:
        try:
            limit = int(setting)
        except ValueError:
            raise CliError(
                f"XAIJAX_HOST_THREADS must be 'auto' or a number of threads; got {setting!r}"
            ) from None
        if limit <= 0:
            return None
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(limit))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return limit
    threadpool_limits(limits=limit)
    return limit


def exit_without_teardown(status: int) -> None:
    """End the process now with ``status``, skipping the interpreter's teardown, if nothing is
    left running; else return (and the caller exits as usual).

    Tearing down JAX's runtime, SciPy's and scikit-learn's thread pools and every module took
    0.4-0.7 s after a 10-row ``xaijax explain`` had written its results (on 2 cores; 0.04 s with
    this): a tenth of the small job. Everything the command writes is closed by then; the
    output streams and logging are flushed here. A non-daemon thread or a child process still
    running means work in flight: then the interpreter exits as usual, waiting for it.
    """
    import logging
    import multiprocessing
    import threading

    main_thread = threading.main_thread()
    busy = any(t is not main_thread and not t.daemon for t in threading.enumerate())
    if busy or multiprocessing.active_children():
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing more to write
            pass
    os._exit(status)


def main(argv=None) -> int:
    """Run the ``xaijax`` command; returns the exit status (2 for a user error).

    Run as a program (``argv`` ``None``: the ``xaijax`` script, ``python -m xaijax.cli``) it also
    caps the process's BLAS/OpenMP thread pools (:func:`limit_host_threads`); called from Python
    with an argument list it leaves them alone. The script and ``python -m xaijax.cli`` end the
    process with :func:`exit_without_teardown` after it.
    """
    from xaijax.cli.demo import demo
    from xaijax.cli.experiment import available_experiments, run_experiment
    from xaijax.cli.explain import explain
    from xaijax.cli.protopnet import protopnet

    program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    methods = tabular_methods()
    parser = build_parser(methods)
    args, rest = parser.parse_known_args(argv)
    if args.command != "experiment" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if program:
        # Before JAX starts its backend (nothing has computed yet in this process).
        flags = fast_compile_flags(os.environ, args)
        if flags is not None:
            os.environ["XLA_FLAGS"] = flags
    use_compile_cache(args)
    if program:  # a Python caller's process and its thread pools are its own
        try:
            limit_host_threads()
        except CliError as err:
            print(f"xaijax {args.command}: error: {err}", file=sys.stderr)
            return 2
    try:
        if args.command == "experiment":
            if not args.name:
                for name, path in available_experiments().items():
                    print(f"{name:28s} {path}")
                return 0
            return run_experiment(args.name, ["--quick"] * args.quick + rest)
        if args.command == "demo":
            demo(DemoSettings(out=args.out, quick=args.quick, seed=args.seed))
        elif args.command == "explain":
            explain(explain_settings(args), methods=methods)
        elif args.command == "protopnet":
            protopnet(protopnet_settings(args))
    except CliError as err:
        print(f"xaijax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
