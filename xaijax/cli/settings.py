"""What each command is asked to do, as frozen dataclasses: built by the parser, read by commands.

The commands (:func:`~xaijax.cli.demo.demo`, :func:`~xaijax.cli.explain.explain`,
:func:`~xaijax.cli.protopnet.protopnet`) take one of these and never see ``argparse``, so they
can be called from Python with the same meaning as from the shell.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

__all__ = ["CliError", "DemoSettings", "ExplainSettings", "ProtoPNetSettings"]


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """``xaijax demo``: where to write, toy sizes or not, the seed."""

    out: str = os.path.join("runs", "demo")
    quick: bool = False
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class ExplainSettings:
    """``xaijax explain``: a saved model, a data file, a method and its options.

    Attributes:
        model: a pickle file or ``package.module:attribute`` (a model or a factory).
        data: ``.npz`` (array ``X``, optional ``feature_names``) or ``.csv``.
        method: an explainer of :func:`~xaijax.cli.methods.tabular_methods`.
        out: the output folder.
        background: a data file for the reference rows (default: ``data``).
        background_size: reference rows kept (k-means centres for explainers that take weights,
            a random subset for the others; LIME's training data is kept whole).
        instances: explain the first ``instances`` rows only (0: all).
        seed: the run's seed (k-means, the explainer's key).
        targets: the output to explain (``None``: the method's default).
        batch_size: model rows evaluated at once (``None``: the method's default).
        chunk_size: rows per resumable chunk.
        restart: discard an earlier unfinished run in ``out``.
        figures: write the PNG figures.
        options: the method's own options as ``(name, value)`` pairs (``num_samples``, ...).
        index_col: a data column of row labels to drop (a name or a 0-based position).
        columns: the feature columns to keep, in order (names or positions; ``()``: all).
        target: a label column to drop (a name or a position).
        output: the model output (class) the figures show (``None``: 1 of several, else 0).
    """

    model: str
    data: str
    method: str = "kernel_shap"
    out: str = os.path.join("runs", "explain")
    background: str | None = None
    background_size: int = 50
    instances: int = 0
    seed: int = 0
    targets: int | None = None
    batch_size: int | None = None
    chunk_size: int = 256
    restart: bool = False
    figures: bool = True
    options: tuple[tuple[str, Any], ...] = ()
    index_col: str | None = None
    columns: tuple[str, ...] = ()
    target: str | None = None
    output: int | None = None

    def __post_init__(self):
        if isinstance(self.options, dict):
            object.__setattr__(self, "options", tuple(self.options.items()))
        if isinstance(self.columns, str):
            object.__setattr__(self, "columns", tuple(c.strip() for c in self.columns.split(",")))
        if self.output is not None and int(self.output) < 0:
            raise CliError(f"--output must be an output index, 0 or more; got {self.output}")
        for name in ("background_size", "chunk_size"):
            if int(getattr(self, name)) < 1:
                raise CliError(
                    f"--{name.replace('_', '-')} must be at least 1; got {getattr(self, name)}"
                )
        if int(self.instances) < 0:
            raise CliError(f"--instances must be 0 (all rows) or more; got {self.instances}")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise CliError(f"--batch-size must be at least 1; got {self.batch_size}")


@dataclasses.dataclass(frozen=True)
class ProtoPNetSettings:
    """``xaijax protopnet``: the data set, the architecture, the schedule and the run folder.

    ``channels=None`` picks the small backbone's widths per data set (shapes ``(16, 32)``, digits
    ``(16, 32, 32)``) and ``(16, 32, 64, 64)`` for ResNet-18; ``border=None`` excludes the
    outermost latent ring from prototype matching for the small backbone on shapes (1), nothing
    otherwise (0); ``prototypes_per_class=None`` one per class on shapes (then most prototypes
    sit at the objects on every seed 0-4; README, "Do the prototypes sit on objects?") and three
    on digits; ``n`` synthetic images (shapes only); ``epochs=None`` the schedule's default
    (``quick``: the small CPU schedule).
    ``prune``: after training, the paper's pruning step (prototypes with fewer than 3 of their 6
    nearest training images in their class go) and last-layer optimisation again.
    """

    dataset: str = "shapes"
    out: str = os.path.join("runs", "protopnet")
    quick: bool = False
    epochs: int | None = None
    size: int = 32
    n: int = 1800
    backbone: str = "small"
    prototypes_per_class: int | None = None
    prototype_depth: int = 32
    channels: tuple[int, ...] | None = None
    seed: int = 0
    resume: bool = False
    explain: int = 3
    quiet: bool = False
    prune: bool = True
    border: int | None = None
