"""Which knob values make configs infeasible or fail, and why (grouped reasons)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner._readonly_storage import TrialRow
from tuner.analysis._common import (
    OUTCOMES,
    finished,
    format_value,
    outcome,
    param_names,
    reason_pattern,
    split_reasons,
)

INACTIVE = "(inactive)"


@dataclass(frozen=True)
class Cell:
    """Trials with ``param`` in bucket ``label``, counted by outcome."""

    param: str
    label: str
    counts: dict[str, int]

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    @property
    def bad_share(self) -> float:
        """Share of these trials that are not feasible (infeasible, violating or failed)."""
        return 1.0 - self.counts.get("feasible", 0) / self.n if self.n else 0.0


@dataclass(frozen=True)
class ReasonGroup:
    """Trials whose reason has the same text once numbers are masked (``#``)."""

    pattern: str
    outcome: str
    count: int
    example: str
    numbers: list[int]  # a few trial numbers to open
    drivers: list[tuple[str, float, float]]  # (param=value, share within group, share overall)


@dataclass(frozen=True)
class FeasibilityMap:
    n: int
    counts: dict[str, int]  # outcome -> trials
    cells: dict[str, list[Cell]]  # param -> buckets in value order
    reasons: list[ReasonGroup]  # most frequent first


def _bucket_labels(values: list[Any], max_buckets: int) -> tuple[list[str], list[str]]:
    """A label per value and the labels in order; numeric values with many levels are binned."""
    present = [v for v in values if v is not None]
    numeric = present and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                              for v in present)
    distinct = sorted(set(present), key=lambda v: (str(type(v)), v)) if present else []
    if numeric and len(distinct) > max_buckets:
        arr = np.asarray(present, dtype=float)
        edges = np.unique(np.quantile(arr, np.linspace(0, 1, max_buckets + 1)))
        names = [f"{format_value(float(edges[i]))}–{format_value(float(edges[i + 1]))}"
                 for i in range(len(edges) - 1)]
        labels = []
        for v in values:
            if v is None:
                labels.append(INACTIVE)
            else:
                i = int(np.clip(np.searchsorted(edges, float(v), side="right") - 1, 0,
                                len(names) - 1))
                labels.append(names[i])
        order = names
    else:
        labels = [INACTIVE if v is None else format_value(v) for v in values]
        order = [format_value(v) for v in distinct]
    if any(v is None for v in values):
        order = [*order, INACTIVE]
    return labels, order


def feasibility_map(rows: Sequence[TrialRow], max_buckets: int = 8,
                    max_reasons: int = 30) -> FeasibilityMap:
    """Outcome counts per parameter value and the grouped reasons of bad trials."""
    done = finished(rows)
    outs = [outcome(r) for r in done]
    counts = {o: outs.count(o) for o in OUTCOMES if outs.count(o)}
    cells: dict[str, list[Cell]] = {}
    bucket_of: dict[str, list[str]] = {}
    for p in param_names(done):
        labels, order = _bucket_labels([r.params.get(p) for r in done], max_buckets)
        bucket_of[p] = labels
        by: dict[str, Counter] = defaultdict(Counter)
        for lab, o in zip(labels, outs):
            by[lab][o] += 1
        cells[p] = [Cell(p, lab, dict(by[lab])) for lab in order if lab in by]
    overall: Counter = Counter()
    for p, labels in bucket_of.items():
        for lab in labels:
            overall[f"{p}={lab}"] += 1
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    examples: dict[tuple[str, str], str] = {}
    for i, (r, o) in enumerate(zip(done, outs)):
        if o == "feasible":
            continue
        parts = split_reasons(r.reason) or ["(no reason recorded)"]
        for part in parts:
            key = (reason_pattern(part), o)
            groups[key].append(i)
            examples.setdefault(key, part)
    reasons = []
    n = len(done)
    for key, idx in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:max_reasons]:
        within: Counter = Counter()
        for i in idx:
            for p, labels in bucket_of.items():
                within[f"{p}={labels[i]}"] += 1
        # knob values far more common among these trials than overall drive the reason
        lift = sorted(((k, c / len(idx), overall[k] / n) for k, c in within.items()
                       if not k.endswith(INACTIVE)), key=lambda t: -(t[1] - t[2]))
        drivers = [t for t in lift if t[1] - t[2] > 0.05][:3]
        reasons.append(ReasonGroup(key[0], key[1], len(idx), examples[key],
                                   [done[i].number for i in idx[:20]], drivers))
    return FeasibilityMap(n, counts, cells, reasons)


@dataclass(frozen=True)
class FeasibilityGrid:
    """Share of bad (not feasible) trials over two parameters' buckets."""

    param_x: str
    param_y: str
    x_labels: list[str]
    y_labels: list[str]
    bad_share: list[list[float | None]]  # [y][x], None where no trial
    n: list[list[int]]


def feasibility_grid(rows: Sequence[TrialRow], param_x: str, param_y: str,
                     max_buckets: int = 8) -> FeasibilityGrid:
    done = finished(rows)
    xl, xo = _bucket_labels([r.params.get(param_x) for r in done], max_buckets)
    yl, yo = _bucket_labels([r.params.get(param_y) for r in done], max_buckets)
    xi, yi = {lab: i for i, lab in enumerate(xo)}, {lab: i for i, lab in enumerate(yo)}
    n = np.zeros((len(yo), len(xo)), dtype=int)
    bad = np.zeros((len(yo), len(xo)), dtype=int)
    for r, a, b in zip(done, xl, yl):
        n[yi[b], xi[a]] += 1
        bad[yi[b], xi[a]] += not r.feasible
    share = [[(float(bad[j, i] / n[j, i]) if n[j, i] else None) for i in range(len(xo))]
             for j in range(len(yo))]
    return FeasibilityGrid(param_x, param_y, xo, yo, share, n.tolist())
