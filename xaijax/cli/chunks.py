"""Long explanation runs in chunks: each finished chunk is kept on disk, and a rerun resumes.

A run over ``n`` rows is cut into chunks of at most ``chunk_size`` rows. Chunk ``i`` is explained
with the key ``fold_in(key, i)``, so its randomness depends on nothing but the key and its index:
a run that was interrupted and resumed gives the same values, bit for bit, as one that never
stopped.
Every finished chunk is written atomically (a temporary file, fsynced, then ``os.replace``) to
``folder/chunk-00000.npz`` + ``.json``, and then its SHA-256 hashes are recorded in
``manifest.json`` next to the settings. A rerun with the same settings reuses the chunks whose
files still match their recorded hashes and recomputes the others (a truncated, corrupted or
swapped chunk, or one written without its hash by a run killed in between); one with other
settings is refused (:class:`ResumeMismatch`) while the earlier run is unfinished.
:func:`lock_folder` keeps a second writer out of a folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable

import numpy as np

from xaijax.core.explanation import Explanation
from xaijax.core.progress import Progress

__all__ = [
    "explain_in_chunks",
    "concatenate",
    "ChunkRun",
    "ResumeMismatch",
    "file_digest",
    "lock_folder",
    "FolderLocked",
]

MANIFEST = "manifest.json"
FORMAT = "xaijax.chunks/2"  # /2: each finished chunk's hashes in the manifest
LOCK = ".xaijax.lock"


class FolderLocked(RuntimeError):
    """Another live process holds the folder's lock file."""


class ResumeMismatch(ValueError):
    """The folder holds an unfinished run with other settings than the ones asked for now."""

    def __init__(self, folder: str, done: int, total: int, differences: dict):
        self.folder, self.done, self.total, self.differences = folder, done, total, differences
        changes = "; ".join(
            f"{k} was {_short(old)}, now {_short(new)}" for k, (old, new) in differences.items()
        )
        super().__init__(
            f"{folder} holds an unfinished run ({done} of {total} chunks done) with other "
            f"settings: {changes}"
        )


@dataclasses.dataclass(frozen=True)
class ChunkRun:
    """What :func:`explain_in_chunks` did: chunk counts and the seconds spent computing."""

    rows: int
    chunk_size: int
    chunks: int
    computed: int
    reused: int
    seconds: float


def explain_in_chunks(
    explain_rows: Callable,
    X,
    *,
    key,
    folder: str,
    chunk_size: int = 256,
    settings: dict | None = None,
    info: dict | None = None,
    restart: bool = False,
    progress=sys.stderr,
    log: Callable[[str], None] = print,
) -> tuple[Explanation, ChunkRun]:
    """Explain the rows of ``X`` chunk by chunk, keeping finished chunks in ``folder``.

    The rows are cut into the fewest chunks of at most ``chunk_size`` rows, of equal size (e.g.
    569 rows in chunks of 256: three of 190). The last chunk, shorter by at most ``chunks - 1``
    rows, is padded with copies of its last row and the padding sliced off, so an explainer
    compiled for the first chunk is reused for all of them: one compilation, almost no wasted
    work.

    Args:
        explain_rows: ``explain_rows(rows: (c, M), key) -> Explanation`` with ``c`` rows.
        X: ``(n, M)`` rows to explain.
        key: a ``jax.random.key``, or ``None`` for a deterministic explainer; chunk ``i`` gets
            ``jax.random.fold_in(key, i)``.
        folder: where the chunks and ``manifest.json`` live.
        chunk_size: most rows per chunk.
        settings: JSON data that must match for a rerun to reuse the chunks (method, data hash,
            seed, ...). ``n`` and ``chunk_size`` are added to it.
        info: JSON data recorded in the manifest but not compared (e.g. file paths).
        restart: discard whatever ``folder`` holds and start afresh.
        progress: a text stream for the progress line (rows done / total, rows/s, ETA), or
            ``None`` for none.
        log: called with a line when chunks are reused, recomputed or replaced, and before the
            first chunk this process computes (which includes compiling).

    Returns:
        ``(explanation of all n rows, ChunkRun)``.

    Raises:
        ResumeMismatch: ``folder`` holds an unfinished run with other settings (and not
            ``restart``). A finished run with other settings, or one that stopped before its
            first chunk, is replaced without asking, as rewriting an output folder always did.

    Example:
        >>> import tempfile, numpy as np
        >>> f = lambda rows, key: Explanation(rows * 2, rows.sum(1), rows)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     exp, run = explain_in_chunks(f, np.ones((5, 2)), key=None, folder=d,
        ...                                  chunk_size=2, progress=None, log=lambda s: None)
        ...     again, rerun = explain_in_chunks(f, np.ones((5, 2)), key=None, folder=d,
        ...                                      chunk_size=2, progress=None, log=lambda s: None)
        >>> exp.values.shape, run.chunks, run.computed, rerun.computed, rerun.reused
        ((5, 2), 3, 3, 0, 3)
    """
    from xaijax.core.random import fold_in

    X = np.asarray(X)
    n = int(X.shape[0])
    if n == 0:
        raise ValueError("X must hold at least one row to explain; got 0 rows")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive number of rows; got {chunk_size}")
    # Balanced chunks: the fewest that fit in chunk_size, all equal but the last shorter by at most
    # (chunks - 1) rows, so padding it costs almost nothing (569 rows in 256s: 3 chunks of 190).
    total = math.ceil(n / int(chunk_size))
    size = math.ceil(n / total)
    wanted = {**(settings or {}), "rows": n, "chunk_size": size}
    manifest = _open_folder(folder, wanted, info or {}, total, restart=restart, log=log)

    done = set(_verified_chunks(folder, manifest, total, log))
    if done:
        log(f"resuming: {len(done)} of {total} chunks already done in {folder}")
    bar = Progress(n, unit="rows", stream=progress, done=sum(_rows_in(i, size, n) for i in done))
    start = time.perf_counter()
    computed = 0
    for i in range(total):
        if i in done:
            continue
        lo, hi = i * size, min((i + 1) * size, n)
        rows = X[lo:hi]
        if hi - lo < size:
            rows = np.concatenate([rows, np.repeat(rows[-1:], size - (hi - lo), axis=0)])
        chunk_key = None if key is None else fold_in(key, i)
        if computed == 0:
            log(
                f"chunk {i + 1} of {total} ({hi - lo} rows): the first one in this process "
                "also compiles the explainer"
            )
        exp = explain_rows(rows, chunk_key)
        if len(exp) != size:
            raise ValueError(f"explain_rows returned {len(exp)} rows for a chunk of {size}")
        _save_atomic(exp[: hi - lo], _chunk_stem(folder, i))
        # Recorded after the chunk is in place: a chunk without its hash is redone.
        manifest["done"][str(i)] = _chunk_hashes(folder, i)
        _write_atomic(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=2).encode())
        computed += 1
        bar.update(hi - lo)
    seconds = time.perf_counter() - start
    bar.close()
    exp = concatenate([Explanation.load(_chunk_stem(folder, i)) for i in range(total)])
    run = ChunkRun(n, size, total, computed, total - computed, seconds)
    return exp, run


def concatenate(explanations) -> Explanation:
    """Join batched Explanations along the instance axis.

    Per-instance extras (leading axis = the chunk's length) are joined; the others are taken from
    the first explanation.

    Example:
        >>> import numpy as np
        >>> e = Explanation(np.ones((2, 3)), np.zeros(2), np.ones((2, 3)))
        >>> concatenate([e, e[:1]]).values.shape
        (3, 3)
    """
    explanations = list(explanations)
    first = explanations[0]

    def join(name):
        parts = [e.extras[name] for e in explanations]
        per_row = all(
            np.ndim(p) >= 1 and np.shape(p)[0] == len(e)
            for p, e in zip(parts, explanations, strict=True)
        )
        return np.concatenate([np.asarray(p) for p in parts]) if per_row else parts[0]

    return dataclasses.replace(
        first,
        values=np.concatenate([np.asarray(e.values) for e in explanations]),
        base_values=np.concatenate([np.asarray(e.base_values) for e in explanations]),
        data=np.concatenate([np.asarray(e.data) for e in explanations]),
        extras={k: join(k) for k in first.extras},
    )


def file_digest(path: str) -> dict:
    """``{"bytes": size, "sha256": hex}`` of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"bytes": os.path.getsize(path), "sha256": h.hexdigest()}


def lock_folder(folder: str, *, log: Callable[[str], None] = print):
    """Hold ``folder/.xaijax.lock`` (created with ``O_EXCL``, holding the pid) while writing.

    A lock left by a process that no longer runs on this machine is taken over (with a log
    line); one held by a live process raises :class:`FolderLocked`. Use as a context manager.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     with lock_folder(d):
        ...         try:
        ...             with lock_folder(d):
        ...                 pass
        ...         except FolderLocked as err:
        ...             print("locked")
        locked
    """
    return _FolderLock(folder, log)


class _FolderLock:
    def __init__(self, folder, log):
        self.path = os.path.join(folder, LOCK)
        self.folder, self.log = folder, log

    def __enter__(self):
        os.makedirs(self.folder, exist_ok=True)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(self.path)
                if holder is None:
                    time.sleep(0.05)
                    continue  # removed, or just created and not yet written: try again
                if _alive(holder):
                    raise FolderLocked(
                        f"{self.folder} is in use by another xaijax process (pid "
                        f"{holder.get('pid')} on {holder.get('host')}); wait for it to finish "
                        f"or stop it (if none runs, remove {self.path})"
                    ) from None
                # Take a stale lock over: remove it, one taker at a time (see _take_over).
                if not self._take_over(holder):
                    continue
                self.log(
                    f"{self.folder}: taking over the lock of pid {holder.get('pid')}, "
                    "which no longer runs"
                )
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            return self
        raise FolderLocked(f"could not lock {self.folder}: {self.path} keeps changing")

    def _take_over(self, holder) -> bool:
        """Remove the lock of ``holder`` (a process that no longer runs), holding a second,
        short-lived lock file so that takers act one at a time: whoever holds it re-reads the
        lock and removes it only if it is still the dead holder's. (Renaming the lock away
        without it, two takers can each remove a fresh lock the other made.) ``False`` if
        another taker is at it or the lock changed; a guard left by a taker that died in these
        few lines goes after 10 s."""
        guard = self.path + ".takeover"
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            try:
                if time.time() - os.path.getmtime(guard) > 10.0:
                    os.remove(guard)
            except FileNotFoundError:
                pass
            time.sleep(0.01)
            return False
        try:
            if _read_lock(self.path) != holder:
                return False
            os.remove(self.path)
            return True
        finally:
            os.remove(guard)

    def __exit__(self, *exc):
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        return False


def _read_lock(path):
    """The lock's holder; ``None`` if the file is gone or was created a moment ago and is not
    written yet; a stale holder (pid -1) if it stays unreadable."""
    try:
        with open(path) as fh:
            text = fh.read()
        age = time.time() - os.path.getmtime(path)
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
        int(holder["pid"])
        return holder
    except (ValueError, KeyError, TypeError):
        if age < 2.0:
            return None
        return {"pid": -1, "host": socket.gethostname()}


def _alive(holder) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process cannot be checked from here
    pid = int(holder["pid"])
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - e.g. platforms without signals
        return True
    return True


def _open_folder(folder, wanted, info, total, *, restart, log) -> dict:
    """Check ``folder``'s manifest against ``wanted``; start afresh where allowed. Returns the
    manifest, whose ``done`` maps finished chunks to their hashes."""
    path = os.path.join(folder, MANIFEST)
    if restart and os.path.isdir(folder):
        shutil.rmtree(folder)
    if os.path.exists(path):
        old = _read_manifest(path, log)
        # json round-trips tuples as lists; compare in the same form.
        wanted_json = json.loads(json.dumps(wanted))
        old_settings = old.get("settings", {})
        if old_settings == wanted_json and old.get("format") == FORMAT:
            _remove_temporaries(folder)
            old.setdefault("done", {})
            return old
        old_total = int(old.get("chunks", 0))
        old_done = sum(_chunk_done(folder, i) for i in range(old_total))
        if old.get("format") != FORMAT:
            if old_done:
                log(f"{folder}: chunks written without hashes (an older xaijax): starting afresh")
            old_done = 0
        elif 0 < old_done < old_total:
            keys = sorted(set(old_settings) | set(wanted_json))
            differences = {
                k: (old_settings.get(k), wanted_json.get(k))
                for k in keys
                if old_settings.get(k) != wanted_json.get(k)
            }
            raise ResumeMismatch(folder, old_done, old_total, differences)
        if old_done:
            log(f"{folder}: replacing a finished run made with other settings")
        shutil.rmtree(folder)
    elif os.path.isdir(folder) and any(n.startswith("chunk-") for n in os.listdir(folder)):
        # Chunks without a manifest cannot be trusted to match: start afresh.
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)
    manifest = {"format": FORMAT, "chunks": total, "settings": wanted, "info": info, "done": {}}
    _write_atomic(path, json.dumps(manifest, indent=2).encode())
    return manifest


def _read_manifest(path, log) -> dict:
    try:
        with open(path) as fh:
            manifest = json.load(fh)
        if isinstance(manifest, dict):
            return manifest
    except (ValueError, UnicodeDecodeError):
        pass
    log(f"{path} is unreadable: its chunks cannot be checked, starting afresh")
    return {}


def _chunk_hashes(folder, i) -> dict:
    stem = _chunk_stem(folder, i)
    return {ext: file_digest(stem + "." + ext)["sha256"] for ext in ("npz", "json")}


def _verified_chunks(folder, manifest, total, log) -> list[int]:
    """The chunks whose files match the hashes recorded when they were written; the rest
    (corrupted, truncated, swapped, or never recorded) are removed, to be recomputed."""
    recorded = manifest.setdefault("done", {})
    good, bad = [], []
    for i in range(total):
        if not _chunk_done(folder, i):
            recorded.pop(str(i), None)
            continue
        if recorded.get(str(i)) == _chunk_hashes(folder, i):
            good.append(i)
            continue
        bad.append(i)
        recorded.pop(str(i), None)
        stem = _chunk_stem(folder, i)
        for ext in ("npz", "json"):
            if os.path.exists(stem + "." + ext):
                os.remove(stem + "." + ext)
    if bad:
        listed = ", ".join(str(i) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        log(
            f"{folder}: {len(bad)} chunk(s) do not match the hashes recorded when they were "
            f"written (chunks {listed}): recomputing them"
        )
    return good


def _chunk_stem(folder, i):
    return os.path.join(folder, f"chunk-{i:05d}")


def _chunk_done(folder, i):
    # The .npz is moved into place last, so it marks a complete chunk.
    stem = _chunk_stem(folder, i)
    return os.path.exists(stem + ".npz") and os.path.exists(stem + ".json")


def _rows_in(i, size, n):
    return min((i + 1) * size, n) - i * size


def _save_atomic(exp: Explanation, stem: str):
    tmp = os.path.join(os.path.dirname(stem), "." + os.path.basename(stem) + ".tmp")
    exp.save(tmp)
    _sync(tmp + ".json", tmp + ".npz")
    os.replace(tmp + ".json", stem + ".json")
    os.replace(tmp + ".npz", stem + ".npz")
    _sync(os.path.dirname(stem) or ".")


def _write_atomic(path: str, data: bytes):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _sync(os.path.dirname(path) or ".")


def _sync(*paths):
    """Flush files (and a folder's entries) to disk, so a chunk that reads as finished after a
    power cut is complete: a rename alone can reach the disk before the data it names."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # e.g. folders cannot be opened on Windows
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def _remove_temporaries(folder):
    # Left behind when a run was killed mid-write; the chunk they belonged to is redone.
    for name in os.listdir(folder):
        if name.startswith(".") and ".tmp" in name:
            os.remove(os.path.join(folder, name))


def _short(value, limit=60):
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
