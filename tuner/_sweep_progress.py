"""Progress of an exhaustive sweep: rich's live bar on a terminal, a line at intervals without one.

The number of valid configs is not known until the enumeration ends, so the display counts
configs scored, their rate and the best feasible value (or how many are feasible) so far.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

#: seconds between progress lines when the output is not a terminal
LINE_INTERVAL_S = 10.0


def describe(objectives: Sequence[tuple[str, str]], best: Sequence[float | None],
             feasible: int) -> str:
    """The best feasible value of one objective, or how many configs are feasible."""
    if not feasible:
        return "no feasible config yet"
    if len(objectives) > 1:
        return f"{feasible:,} feasible"
    return f"best {objectives[0][0]} = {best[0]:.4g}"


class SweepProgress:
    """``mode``: "bar" (rich, on stderr), "lines" (a plain line every ``interval`` seconds on
    ``stream``) or None (silent)."""

    def __init__(self, name: str, objectives: Sequence[tuple[str, str]], mode: str | None,
                 interval: float = LINE_INTERVAL_S, stream: TextIO | None = None) -> None:
        self.name, self.objectives, self.mode = name, list(objectives), mode
        self.interval = interval
        self.stream = stream or sys.stderr
        self.done = 0
        self.t0 = time.monotonic()
        self._last = self.t0
        self._text = ""
        self._bar: Any = None
        if mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("{task.completed:,.0f} configs scored"),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                TextColumn("{task.fields[best]}"),
                console=Console(file=self.stream), transient=False)
            self._task = self._bar.add_task(f"sweep {name}", total=None, rate="", best="")

    def __enter__(self) -> SweepProgress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=self._rate())
            self._bar.__exit__(*exc)

    def _rate(self) -> str:
        secs = time.monotonic() - self.t0
        return f"{self.done / secs:,.0f}/s" if secs > 0 else ""

    def update(self, done: int, best: Sequence[float | None], feasible: int) -> None:
        """``done`` configs scored so far, the best feasible values and how many are
        feasible."""
        self.done = done
        if self.mode is None:
            return
        now = time.monotonic()
        if self.mode == "bar":
            if now - self._last >= 0.2:
                self._last = now
                self._bar.update(self._task, completed=done, rate=self._rate(),
                                 best=describe(self.objectives, best, feasible))
            return
        if now - self._last >= self.interval:
            self._last = now
            self.line(describe(self.objectives, best, feasible))

    def line(self, text: str) -> None:
        """One plain progress line (the "lines" mode)."""
        if self.mode != "lines":
            return
        secs = time.monotonic() - self.t0
        print(f"sweep {self.name}: {self.done:,} configs scored in {secs:.1f} s "
              f"({self._rate()}); {text}", file=self.stream, flush=True)


__all__ = ["LINE_INTERVAL_S", "SweepProgress", "describe"]
