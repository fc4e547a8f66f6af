"""Counting XLA compilations through JAX's public ``jax.log_compiles`` logging."""

import contextlib
import logging

import jax


class _Counter(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.names: list[str] = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Compiling "):
            self.names.append(message.split(" with ")[0][len("Compiling ") :])


@contextlib.contextmanager
def count_compiles():
    """Yields a list that fills with the names of the programs compiled inside the block."""
    counter = _Counter()
    logger = logging.getLogger("jax")
    logger.addHandler(counter)
    try:
        with jax.log_compiles():
            yield counter.names
    finally:
        logger.removeHandler(counter)
