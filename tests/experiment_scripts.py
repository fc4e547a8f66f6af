"""Load an experiment script (experiments/<name>.py) as a module, for the experiment tests."""

import importlib.util
import os

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments")


def load_experiment(name):
    """The module of ``experiments/<name>.py`` (its ``main(argv)`` runs the experiment)."""
    spec = importlib.util.spec_from_file_location(
        f"experiments.{name}", os.path.join(EXPERIMENTS, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
