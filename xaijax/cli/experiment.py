"""``xaijax experiment``: run a paper reproduction from the repository's ``experiments/`` folder.

The experiments are scripts in the source repository, not part of the installed package: they
are found in ``./experiments`` (the current folder) or next to the package's source tree (an
editable install of a checkout). An installed package without them says how to get them.
"""

from __future__ import annotations

import importlib.util
import os

from xaijax.cli.settings import CliError

__all__ = ["available_experiments", "run_experiment", "NO_EXPERIMENTS"]

NO_EXPERIMENTS = (
    "no experiments/ folder in {cwd} or next to the installed package ({package}). The "
    "experiments are scripts in the xaijax source repository, not part of the installed "
    "package: clone the repository and run `xaijax experiment <name>` from its root (or "
    "`pip install -e .` in the clone, then run it from anywhere)"
)


def _source_root() -> str:
    """The folder holding the ``xaijax`` package (a checkout's root for an editable install)."""
    import xaijax

    return os.path.dirname(os.path.dirname(os.path.abspath(xaijax.__file__)))


def experiment_dirs(cwd: str | None = None, source_root: str | None = None) -> list[str]:
    """The ``experiments/`` folders that exist: the current folder's first, then the source's."""
    here = os.path.join(cwd or os.getcwd(), "experiments")
    repo = os.path.join(source_root or _source_root(), "experiments")
    return [d for d in dict.fromkeys((here, repo)) if os.path.isdir(d)]


def available_experiments(cwd: str | None = None, source_root: str | None = None) -> dict:
    """Experiment name -> script path, from ``experiments/`` (cwd first, then the source tree).

    Raises:
        CliError: if there is no ``experiments/`` folder (a package installed without them),
            saying where to get them.
    """
    dirs = experiment_dirs(cwd, source_root)
    if not dirs:
        raise CliError(
            NO_EXPERIMENTS.format(cwd=cwd or os.getcwd(), package=source_root or _source_root())
        )
    found = {}
    for d in dirs:
        for name in sorted(os.listdir(d)):
            if name.endswith(".py") and not name.startswith("_"):
                found.setdefault(name[:-3], os.path.join(d, name))
    return found


def run_experiment(name: str, argv, *, log=print) -> int:
    """Run ``experiments/<name>.py``'s ``main(argv)``; returns its exit status."""
    scripts = available_experiments()
    if name not in scripts:
        listed = ", ".join(scripts) or "none"
        raise CliError(f"unknown experiment {name!r}; available: {listed}")
    log(f"running {scripts[name]} {' '.join(argv)}".rstrip())
    spec = importlib.util.spec_from_file_location(f"experiments.{name}", scripts[name])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(list(argv)) or 0)
