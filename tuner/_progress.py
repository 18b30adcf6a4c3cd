"""The ``tuner run`` progress bar: trials, best-so-far or Pareto-front size."""

from __future__ import annotations

import time
from typing import Any, Sequence

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from tuner._pareto import pareto_mask


class StudyProgress:
    def __init__(self, spec: Any, total: int | None, done: int, enabled: bool = True) -> None:
        self.spec, self.enabled = spec, enabled
        self._last = 0.0
        self._values: Sequence[Sequence[float]] = []
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[best]}"),
                console=Console(stderr=True), transient=False)
            self._task = self._progress.add_task(spec.name, total=total, completed=done,
                                                 best="")

    def __enter__(self) -> "StudyProgress":
        if self.enabled:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._refresh(force=True)
            self._progress.__exit__(*exc)

    def advance(self, feasible_values: Sequence[Sequence[float]]) -> None:
        if not self.enabled:
            return
        self._values = feasible_values
        self._progress.advance(self._task)
        self._refresh()

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.25:  # the front is O(n^2): not every trial
            return
        self._last = now
        self._progress.update(self._task, best=self.describe(self._values))

    def describe(self, values: Sequence[Sequence[float]]) -> str:
        objs = self.spec.objectives
        if not values:
            return "no feasible trial yet"
        if len(objs) == 1:
            pick = max if objs[0].direction == "maximize" else min
            return f"best {objs[0].metric} = {pick(v[0] for v in values):.4g}"
        front = sum(pareto_mask(values, [o.direction for o in objs]))
        return f"Pareto front: {front} configs"
