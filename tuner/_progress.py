"""The ``tuner run`` progress: trials done, best-so-far or the Pareto front's size.

Two forms: on a terminal a live bar (rich); elsewhere (a CI log, a file) one plain line every
``interval_s`` seconds and one at the end, so a long run shows it is alive without filling the
log. The front counted here is the one ``tuner run`` prints at the end (feasible trials,
non-dominated, one per distinct config: ``tuner._results.StudyResults.pareto``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from tuner._pareto import pareto_mask
from tuner._record import trial_feasible
from tuner._space import params_key


def front_size(keys: list[Any], values: list[Any], directions: list[str]) -> int:
    """Distinct configs among the non-dominated ``values`` (one key per value row)."""
    if not values:
        return 0
    mask = pareto_mask(values, directions)
    return len({k for k, m in zip(keys, mask) if m})


class StudyProgress:
    """``mode``: ``"bar"`` (or ``True``), ``"lines"``, or ``False``/``"off"``."""

    def __init__(self, spec: Any, total: int | None, done: int, mode: bool | str = True,
                 interval_s: float = 30.0, stream: TextIO | None = None) -> None:
        self.spec = spec
        self.mode = "bar" if mode is True else "off" if mode is False else mode
        self.total, self.done, self.interval_s = total, done, interval_s
        self.stream = stream or sys.stderr
        self.directions = [o.direction for o in spec.objectives]
        self._keys: list[Any] = []
        self._values: list[Any] = []
        self._last = 0.0
        self._t0 = time.monotonic()
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[best]}"),
                console=Console(stderr=True), transient=False)
            self._task = self._progress.add_task(spec.name, total=total, completed=done,
                                                 best="")

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def load(self, trials: Iterable[Any]) -> None:
        """Take in the stored trials of a resumed study."""
        for t in trials:
            self._note(t)

    def _note(self, t: Any) -> None:
        if t.values is not None and _state(t) == "COMPLETE" and trial_feasible(t):
            self._keys.append(params_key(t.params))
            self._values.append(list(t.values))

    def __enter__(self) -> StudyProgress:
        self._t0 = self._last = time.monotonic()
        if self.mode == "bar":
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.mode == "bar":
            self._refresh(force=True)
            self._progress.__exit__(*exc)
        elif self.mode == "lines":
            self._line()

    def advance(self, trial: Any) -> None:
        """One more stored trial (a ``FrozenTrial``)."""
        self.done += 1
        self._note(trial)
        if self.mode == "bar":
            self._progress.advance(self._task)
            self._refresh()
        elif self.mode == "lines" and time.monotonic() - self._last >= self.interval_s:
            self._line()

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.25:  # the front is O(n^2): not every trial
            return
        self._last = now
        self._progress.update(self._task, best=self.describe())

    def _line(self) -> None:
        self._last = now = time.monotonic()
        of = f"/{self.total}" if self.total else ""
        print(f"{time.strftime('%H:%M:%S')} {self.spec.name}: {self.done}{of} trials, "
              f"{now - self._t0:.0f} s; {self.describe()}", file=self.stream, flush=True)

    def describe(self) -> str:
        objs = self.spec.objectives
        if not self._values:
            return "no feasible trial yet"
        if len(objs) == 1:
            pick = max if objs[0].direction == "maximize" else min
            return f"best {objs[0].metric} = {pick(v[0] for v in self._values):.6g}"
        return f"Pareto front: {front_size(self._keys, self._values, self.directions)} configs"


def _state(t: Any) -> str:
    return getattr(t.state, "name", str(t.state))


__all__ = ["StudyProgress", "front_size"]
