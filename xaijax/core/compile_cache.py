"""Compiled programs kept on disk between processes: JAX's persistent compilation cache.

Most of a first call's wait is XLA compiling the explainer (seconds on a CPU); the program it
builds depends only on shapes, dtypes and the model, so a second process asking for the same one
can read it back from disk instead. ``import xaijax`` changes no JAX option: library users opt in
with :func:`enable_compile_cache`; the ``xaijax`` command turns it on for every run (off with
``--no-compile-cache`` or ``XAIJAX_COMPILE_CACHE=0``).

What is not cached: programs that call back into Python, i.e. every explainer run on a host model
(scikit-learn's ``predict_proba`` through ``jax.pure_callback``). JAX refuses to write them, since
the callback is a pointer into the running process; they are compiled again in each process.
"""

from __future__ import annotations

import os

__all__ = [
    "CACHE_DIR_ENV",
    "SWITCH_ENV",
    "compile_cache_dir",
    "disable_compile_cache",
    "enable_compile_cache",
]

CACHE_DIR_ENV = "XAIJAX_CACHE_DIR"
SWITCH_ENV = "XAIJAX_COMPILE_CACHE"


def compile_cache_dir() -> str:
    """The folder for compiled programs: ``$XAIJAX_CACHE_DIR``, else the user's cache folder.

    ``$XAIJAX_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/xaijax/jax``, else
    ``~/.cache/xaijax/jax``. Deleting the folder is always safe (programs are compiled again).

    Example:
        >>> import os
        >>> folder = compile_cache_dir()  # e.g. '/home/me/.cache/xaijax/jax'
        >>> os.path.isabs(folder)
        True
    """
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "xaijax", "jax")


def enable_compile_cache(path: str | os.PathLike | None = None) -> str:
    """Keep every compiled program in ``path`` so that later processes read it instead of compiling.

    Turns on JAX's persistent compilation cache for this process, for every program however fast
    it compiled or small it is (JAX's defaults keep only programs that took a second or more,
    which on a CPU leaves out most of an explainer's programs). A second run of the same
    explanation then compiles nothing, apart from programs calling host models (see the module
    docstring). Calling it again with another ``path`` moves the cache.

    The folder is created readable by its owner only: JAX trusts the files it reads back, so a
    cache others can write to lets them run code in your process.

    Args:
        path: the cache folder; ``None`` for :func:`compile_cache_dir`.

    Returns:
        The absolute path of the cache folder in use.

    Raises:
        ValueError: if ``path`` exists and is not a folder, or cannot be created.

    Example:
        >>> import tempfile, jax, xaijax
        >>> folder = xaijax.enable_compile_cache(tempfile.mkdtemp())
        >>> jax.config.jax_compilation_cache_dir == folder
        True
        >>> xaijax.disable_compile_cache()
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    folder = compile_cache_dir() if path is None else os.fspath(path)
    folder = os.path.abspath(os.path.expanduser(folder))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"path {folder!r} for the compilation cache exists and is not a folder")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"path {folder!r} for the compilation cache cannot be created: {err.strerror}"
        ) from err
    if jax.config.jax_compilation_cache_dir not in (None, folder):
        compilation_cache.reset_cache()  # JAX opens its cache once; point it at the new folder
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder


def disable_compile_cache() -> None:
    """Stop reading and writing compiled programs on disk (JAX's defaults again; files are kept).

    Example:
        >>> import jax
        >>> disable_compile_cache()
        >>> jax.config.jax_compilation_cache_dir is None
        True
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()  # JAX keeps the opened cache otherwise
