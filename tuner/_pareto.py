"""Pareto fronts and hypervolume on plain lists of objective vectors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_min(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(len(values), len(directions))
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return arr * sign


def pareto_mask(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """True for each non-dominated vector (duplicates of a front point are all kept)."""
    if not len(values):
        return []
    pts = _as_min(values, directions)
    n = len(pts)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        dominated = np.all(pts[i] <= pts, axis=1) & np.any(pts[i] < pts, axis=1)
        mask &= ~dominated
    return mask.tolist()


def hypervolume(values: Sequence[Sequence[float]], directions: Sequence[str],
                reference: Sequence[float]) -> float:
    """Volume dominated by ``values`` and bounded by ``reference`` (in the objectives' units).

    The reference point must be worse than every point that should count: points that do not
    dominate it contribute nothing.
    """
    if not len(values):
        return 0.0
    pts = _as_min(values, directions)
    ref = _as_min([reference], directions)[0]
    pts = pts[np.all(pts < ref, axis=1)]
    if not len(pts):
        return 0.0
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(pts, ref))


def reference_point(values: Sequence[Sequence[float]], directions: Sequence[str],
                    margin: float = 0.1) -> list[float]:
    """Default reference: the worst value of each objective, pushed out by ``margin`` of range."""
    pts = np.asarray(values, dtype=float).reshape(len(values), len(directions))
    ref = []
    for j, d in enumerate(directions):
        lo, hi = float(pts[:, j].min()), float(pts[:, j].max())
        span = (hi - lo) or abs(hi) or 1.0
        ref.append(hi + margin * span if d == "minimize" else lo - margin * span)
    return ref
