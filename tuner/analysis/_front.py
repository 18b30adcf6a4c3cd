"""Pareto fronts on any choice of metrics, the knee of a front, and picking a config."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tuner._pareto import pareto_mask
from tuner._readonly_storage import TrialRow
from tuner.analysis._common import Objective, metric_matrix, metric_value


@dataclass(frozen=True)
class ParetoView:
    """Trials placed on chosen axes, with the non-dominated ones marked.

    ``rows[i]`` sits at ``coords[i]``; ``on_front[i]`` is True when no other feasible trial is
    at least as good on every axis and better on one. ``front`` lists the indices of front
    points sorted along the first axis (the order to draw the front's line in).
    """

    axes: tuple[Objective, ...]
    rows: list[TrialRow]
    coords: np.ndarray  # len(rows) x len(axes)
    on_front: list[bool]
    front: list[int]
    knee: int | None  # index (into rows) of the front point closest to the ideal point
    excluded: dict[str, int] = field(default_factory=dict)  # why some trials are not shown

    @property
    def front_numbers(self) -> list[int]:
        return [self.rows[i].number for i in self.front]


def _fast_mask(values: np.ndarray, directions: Sequence[str]) -> list[bool]:
    """``pareto_mask`` with points visited best-first, so dominated ones drop out early."""
    if not len(values):
        return []
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    pts = values * sign
    span = pts.max(axis=0) - pts.min(axis=0)
    norm = (pts - pts.min(axis=0)) / np.where(span > 0, span, 1.0)
    order = np.lexsort((norm[:, 0], norm.sum(axis=1)))  # by sum, ties by the first axis
    mask_sorted = pareto_mask(values[order].tolist(), directions)
    mask = [False] * len(values)
    for pos, idx in enumerate(order):
        mask[int(idx)] = mask_sorted[pos]
    return mask


def knee_index(coords: np.ndarray, directions: Sequence[str]) -> int | None:
    """Front point nearest the ideal point after min-max scaling of each axis.

    A common compromise pick for a front: it weighs every objective equally over the range
    the front spans (Deb & Gupta's distance-to-ideal knee heuristic).
    """
    if not len(coords):
        return None
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    pts = coords * sign
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    scaled = (pts - lo) / np.where(hi > lo, hi - lo, 1.0)
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))


def pareto_view(rows: Sequence[TrialRow], axes: Sequence[Objective],
                objectives: Sequence[Objective] = (), feasible_only: bool = True) -> ParetoView:
    """Place trials on ``axes`` (any reported metrics, with directions) and find the front.

    Only feasible trials can be on the front. With ``feasible_only=False`` the others are
    kept (where they report the metrics) so a plot can show them greyed out.
    """
    axes = tuple(axes)
    metrics = [a.metric for a in axes]
    pool = [r for r in rows if r.state == "COMPLETE"]
    excluded = {"not finished or failed": len(rows) - len(pool)}
    if feasible_only:
        excluded["not feasible"] = sum(1 for r in pool if not r.feasible)
        pool = [r for r in pool if r.feasible]
    mat = metric_matrix(pool, metrics, objectives)
    keep = ~np.isnan(mat).any(axis=1) if len(pool) else np.zeros(0, dtype=bool)
    excluded["missing a metric"] = int((~keep).sum())
    kept = [r for r, k in zip(pool, keep) if k]
    coords = mat[keep] if len(pool) else np.zeros((0, len(axes)))
    feas_idx = [i for i, r in enumerate(kept) if r.feasible]
    on_front = [False] * len(kept)
    if feas_idx:
        fmask = _fast_mask(coords[feas_idx], [a.direction for a in axes])
        for i, m in zip(feas_idx, fmask):
            on_front[i] = m
    front, seen = [], set()
    for i in sorted((i for i, m in enumerate(on_front) if m), key=lambda i: tuple(coords[i])):
        key = (tuple(sorted((k, str(v)) for k, v in kept[i].params.items())),
               tuple(coords[i].tolist()))
        if key not in seen:  # a config evaluated twice (a cache hit) is one front point
            seen.add(key)
            front.append(i)
    knee = None
    if front:
        k = knee_index(coords[front], [a.direction for a in axes])
        knee = front[k] if k is not None else None
    return ParetoView(axes, kept, coords, on_front, front, knee,
                      {k: v for k, v in excluded.items() if v})


_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
        "==": operator.eq}


@dataclass(frozen=True)
class Limit:
    """A requirement on a metric, e.g. ``ttft_ms_p99 <= 500`` (an SLO or a budget)."""

    metric: str
    op: str
    value: float

    def holds(self, x: float | None) -> bool:
        return x is not None and _OPS[self.op](x, self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


def pick_best(rows: Sequence[TrialRow], goal: Objective, limits: Sequence[Limit] = (),
              objectives: Sequence[Objective] = (), top: int = 10) -> list[TrialRow]:
    """The best feasible trials on ``goal`` among those meeting every limit, best first.

    This is the "best config under my SLO / budget" question: e.g. the highest
    ``throughput_tok_s`` with ``ttft_ms_p99 <= 500`` and ``cost_usd_per_mtok <= 0.4``.
    """
    scored = []
    for r in rows:
        if r.state != "COMPLETE" or not r.feasible:
            continue
        v = metric_value(r, goal.metric, objectives)
        if v is None:
            continue
        if all(lim.holds(metric_value(r, lim.metric, objectives)) for lim in limits):
            scored.append((v if goal.direction == "minimize" else -v, r.number, r))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [r for _, _, r in scored[:top]]
