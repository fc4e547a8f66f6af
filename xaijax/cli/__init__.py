"""The ``xaijax`` command: ``demo``, ``explain``, ``protopnet``, ``experiment``.

=========== ================================================================================
module      what it holds
=========== ================================================================================
parser      the argparse edge: the parser, arguments -> settings, :func:`main`
settings    the frozen settings each command takes, and :class:`CliError`
demo        ``xaijax demo``: small models on embedded data, every family, figures, a report
explain     ``xaijax explain``: a saved model on a data file, any tabular explainer, resumable
methods     the explainers ``explain`` offers, read from :mod:`xaijax.core.registry`
inputs      models (pickle, joblib, skops, ``module:attribute``), data (.npz, .csv, .parquet)
chunks      resumable chunked runs: atomic chunk files, a settings manifest, progress
protopnet   ``xaijax protopnet``: ProtoPNet against a plain CNN, a run folder with figures
experiment  ``xaijax experiment``: the paper reproductions of a checkout's ``experiments/``
runs        results files with versions and settings (used by experiments and benchmarks)
=========== ================================================================================

The command line may import anything in xaijax; nothing in the library imports it.
"""

from xaijax.cli import parser

__all__ = ["main"]


def main(argv=None) -> int:
    """The ``xaijax`` script: :func:`xaijax.cli.parser.main`; run as a program (``argv``
    ``None``) the process then ends without the interpreter's teardown
    (:func:`~xaijax.cli.parser.exit_without_teardown`)."""
    status = parser.main(argv)
    if argv is None:
        parser.exit_without_teardown(status)
    return status
