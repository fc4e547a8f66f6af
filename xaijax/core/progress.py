"""The one progress line: training epochs, explained rows.

Plain Python (no JAX, no Flax), so a command that only explains rows can draw it without
importing the model zoo.
"""

from __future__ import annotations

import math
import sys
import time

__all__ = ["Progress"]


class Progress:
    """One progress line: a bar, units done / total, rate, ETA and optional metrics.

    On a terminal the line is redrawn in place; otherwise (a log file) one line is written per
    update. ``stream=None`` draws nothing.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> bar = Progress(4, unit="rows", stream=out)
        >>> bar.update(2, metrics={"loss": 0.5})
        >>> out.getvalue().split(" (")[0]
        '[############............] 2/4 rows'
    """

    def __init__(self, total: int, *, unit: str = "", label: str = "", stream=sys.stderr, done=0):
        self.stream, self.total, self.unit, self.label = stream, int(total), unit, label
        self.done = self.start_done = int(done)
        self.start = time.perf_counter()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.shown, self.width = False, 0

    def update(self, count: int = 1, *, metrics: dict | None = None, label: str | None = None):
        """Add ``count`` units done and redraw; ``metrics`` are shown as ``name=value``."""
        self.done += int(count)
        if label is not None:
            self.label = label
        if self.stream is None:
            return
        elapsed = time.perf_counter() - self.start
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else float("inf")
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        width = 24
        filled = int(width * self.done / max(1, self.total))
        unit = f" {self.unit}" if self.unit else ""
        shown = " ".join(f"{k}={float(v):.4g}" for k, v in (metrics or {}).items())
        line = (
            f"{self.label + ' ' if self.label else ''}[{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total}{unit} ({100 * self.done / max(1, self.total):.0f}%), "
            f"{rate:.1f}{unit}/s, ETA {_clock(eta)}{'  ' + shown if shown else ''}"
        )
        if self.tty:
            # Pad over a longer previous line (the ETA shrinks).
            line, self.width = line.ljust(self.width), max(self.width, len(line))
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown = True

    def close(self):
        """End the line (on a terminal)."""
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"
