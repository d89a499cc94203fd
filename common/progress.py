"""A progress line with count, rate and ETA, printed at most every few seconds."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """`3725.0` -> `'1h02m05s'`; short and fixed in shape for logs."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """Tracks done work out of a total and prints `label: done/total unit, rate, ETA` lines.

    `update(n, **extra)` adds `n` finished items and an optional rate item count (e.g. frames), printing when
    `interval` seconds passed since the last line; `close()` always prints the final line.
    """

    def __init__(self, label: str, total: int, unit: str, rate_unit: str | None = None,
                 interval: float = 5.0, stream: TextIO | None = None, start_done: int = 0):
        self.label, self.total, self.unit = label, total, unit
        self.rate_unit = rate_unit or unit
        self.interval = interval
        self.stream = stream or sys.stdout
        self.done = start_done
        self._new_done = 0
        self.rate_count = 0
        self.extra: dict[str, str] = {}
        self.start = time.monotonic()
        self._last = self.start

    def update(self, n: int = 1, rate_count: int | None = None, **extra: object) -> None:
        self.done += n
        self._new_done += n
        self.rate_count += n if rate_count is None else rate_count
        self.extra.update({k: str(v) for k, v in extra.items()})
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._print()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.rate_count / elapsed
        remaining = self.total - self.done
        eta = remaining * elapsed / self._new_done if self._new_done else float("nan")
        parts = [f"{self.label}: {self.done:,}/{self.total:,} {self.unit}"]
        if self.rate_unit != self.unit:
            parts.append(f"{self.rate_count:,} {self.rate_unit}")
        parts.append(f"{rate:,.1f} {self.rate_unit}/s")
        parts += [f"{k} {v}" for k, v in self.extra.items()]
        parts.append(f"elapsed {format_duration(elapsed)}")
        parts.append(f"ETA {format_duration(eta) if remaining > 0 else '0s'}")
        return ", ".join(parts)

    def _print(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._print()
