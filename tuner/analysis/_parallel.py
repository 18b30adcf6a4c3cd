"""Columns for a parallel-coordinates plot: numbers stay numbers, categories become codes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tuner._readonly_storage import TrialRow
from tuner.analysis._common import Objective, format_value, metric_value

INACTIVE = "(inactive)"


@dataclass(frozen=True)
class Axis:
    """One vertical axis: ``values[i]`` for trial ``i``; ``ticks`` maps codes to category text."""

    label: str
    values: list[float | None]
    ticks: list[tuple[float, str]] | None = None  # None: a numeric axis
    #: a numeric axis of whole numbers (an integer knob): its ticks are whole numbers too
    integer: bool = False

    def integer_ticks(self, most: int = 8) -> list[int]:
        """Whole-number tick positions spanning the values (at most ``most`` + 1 of them)."""
        present = [v for v in self.values if v is not None]
        if not self.integer or not present:
            return []
        lo, hi = int(min(present)), int(max(present))
        step = max(1, -(-(hi - lo) // most))
        return list(range(lo, hi + 1, step))


def parallel_axes(rows: Sequence[TrialRow], params: Sequence[str], metrics: Sequence[str],
                  objectives: Sequence[Objective] = ()) -> list[Axis]:
    """An axis per parameter then per metric.

    Categorical parameters, and conditional parameters of any type (so that "inactive" is a
    value of its own), become categorical axes; numeric ones stay numeric. Metrics a trial
    does not report are None.
    """
    axes = []
    for p in params:
        vals = [r.params.get(p) for r in rows]
        present = [v for v in vals if v is not None]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
        if numeric and len(present) == len(vals):
            whole = all(float(v).is_integer() for v in present)
            axes.append(Axis(p, [None if v is None else float(v) for v in vals],
                             integer=whole))
            continue
        cats: list[Any] = []
        for v in present:
            if v not in cats:
                cats.append(v)
        cats.sort(key=lambda v: (0, v, "") if numeric else (1, 0, str(v)))
        code = {c: float(i) for i, c in enumerate(cats)}
        ticks = [(code[c], format_value(c)) for c in cats]
        if len(present) < len(vals):  # a conditional parameter: inactive gets its own tick
            ticks.insert(0, (-1.0, INACTIVE))
        axes.append(Axis(p, [-1.0 if v is None else code[v] for v in vals], ticks))
    for m in metrics:
        axes.append(Axis(m, [metric_value(r, m, objectives) for r in rows]))
    return axes
