"""Compiled programs kept on disk between processes: JAX's persistent compilation cache.

Most of a first call's wait is XLA compiling the explainer (seconds on a CPU); the program it
builds depends only on shapes, dtypes and the model, so a second process asking for the same one
can read it back from disk instead. ``import xaijax`` changes no JAX option: library users opt in
with :func:`enable_compile_cache`; the ``xaijax`` command turns it on for every run (off with
``--no-compile-cache`` or ``XAIJAX_COMPILE_CACHE=0``).

What is not cached: programs that call back into Python, i.e. explainers run on a host model
(scikit-learn's ``predict_proba`` through ``jax.pure_callback``). JAX refuses to write them, since
the callback is a pointer into the running process; they are compiled again in each process.
Kernel SHAP avoids them: it calls a host model between two callback-free programs (the
coalition rows, then the fit), so a second process reads both back.
"""

from __future__ import annotations

import os

__all__ = [
    "CACHE_DIR_ENV",
    "MAX_SIZE_ENV",
    "SWITCH_ENV",
    "compile_cache_dir",
    "disable_compile_cache",
    "enable_compile_cache",
    "prune_compile_cache",
]

CACHE_DIR_ENV = "XAIJAX_CACHE_DIR"
SWITCH_ENV = "XAIJAX_COMPILE_CACHE"
MAX_SIZE_ENV = "XAIJAX_CACHE_MAX_MB"
DEFAULT_MAX_SIZE = 1 << 30  # 1 GiB: tens of thousands of explainer programs (~10-100 kB each)


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


def _max_size_from_env() -> int:
    raw = os.environ.get(MAX_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_SIZE
    try:
        megabytes = float(raw)
    except ValueError:
        raise ValueError(f"${MAX_SIZE_ENV} must be a number of megabytes; got {raw!r}") from None
    return -1 if megabytes < 0 else int(megabytes * (1 << 20))


def prune_compile_cache(path: str | os.PathLike, max_size: int) -> int:
    """Delete the least recently used files in ``path`` until it holds at most ``max_size`` bytes.

    Recency is a file's last access or modification, whichever is later. Only plain files directly
    in ``path`` are considered (the cache's entries); a file another process deletes meanwhile is
    skipped. A program deleted is compiled again when next asked for.

    Args:
        path: the cache folder.
        max_size: the size to keep, in bytes; ``-1`` keeps everything.

    Returns:
        The number of bytes deleted.

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> for i in range(3):
        ...     with open(os.path.join(d, f"p{i}-cache"), "wb") as fh:
        ...         _ = fh.write(bytes(100))
        ...     os.utime(os.path.join(d, f"p{i}-cache"), (i, i))
        >>> prune_compile_cache(d, 250), sorted(os.listdir(d))
        (100, ['p1-cache', 'p2-cache'])
    """
    if max_size is None or max_size < 0:
        return 0
    entries = []
    with os.scandir(path) as it:
        for entry in it:
            try:
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    entries.append((max(st.st_atime, st.st_mtime), st.st_size, entry.path))
            except FileNotFoundError:
                continue
    total = sum(size for _, size, _ in entries)
    deleted = 0
    for _, size, file in sorted(entries):
        if total <= max_size:
            break
        try:
            os.remove(file)
        except FileNotFoundError:
            pass
        total -= size
        deleted += size
    return deleted


def enable_compile_cache(
    path: str | os.PathLike | None = None, *, max_size: int | None = None
) -> str:
    """Keep every compiled program in ``path`` so that later processes read it instead of compiling.

    Turns on JAX's persistent compilation cache for this process, for every program however fast
    it compiled or small it is (JAX's defaults keep only programs that took a second or more,
    which on a CPU leaves out most of an explainer's programs). A second run of the same
    explanation then compiles nothing, apart from programs calling host models (see the module
    docstring; Kernel SHAP's are read back too). Calling it again with another ``path`` moves
    the cache.

    The folder is created readable by its owner only: JAX trusts the files it reads back, so a
    cache others can write to lets them run code in your process.

    The folder is kept under ``max_size`` bytes: when it holds more, the least recently used
    programs are deleted first (:func:`prune_compile_cache`), once, when the cache is enabled.

    Args:
        path: the cache folder; ``None`` for :func:`compile_cache_dir`.
        max_size: the most bytes to keep; ``None`` for ``$XAIJAX_CACHE_MAX_MB`` megabytes, else
            1 GiB; ``-1`` for no limit.

    Returns:
        The absolute path of the cache folder in use.

    Raises:
        ValueError: if ``path`` exists and is not a folder, or cannot be created, or
            ``$XAIJAX_CACHE_MAX_MB`` is not a number.

    Example:
        >>> import tempfile, jax, xaijax
        >>> folder = xaijax.enable_compile_cache(tempfile.mkdtemp())
        >>> jax.config.jax_compilation_cache_dir == folder
        True
        >>> xaijax.disable_compile_cache()
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    if max_size is None:
        max_size = _max_size_from_env()
    elif isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < -1:
        raise ValueError(f"max_size must be a number of bytes >= 0, or -1; got {max_size!r}")
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
    prune_compile_cache(folder, max_size)
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
