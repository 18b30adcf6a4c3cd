"""How a study improves with trials: best-so-far per objective and dominated hypervolume."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuner._pareto import hypervolume, reference_point
from tuner._readonly_storage import TrialRow
from tuner.analysis._common import Objective, finished, metric_value


@dataclass(frozen=True)
class Convergence:
    """Series over finished trials in trial-number order.

    ``values[m][i]`` is trial ``numbers[i]``'s value of objective ``m`` when it is feasible
    (None otherwise); ``best[m][i]`` the best feasible value so far. ``hypervolume[i]`` is the
    volume dominated by the feasible trials so far, bounded by ``reference`` (several
    objectives only). ``feasible_share[i]`` is the running fraction of feasible trials.
    """

    numbers: list[int]
    objectives: tuple[Objective, ...]
    values: dict[str, list[float | None]]
    best: dict[str, list[float | None]]
    hypervolume: list[float] | None
    reference: list[float] | None
    feasible_share: list[float]

    def trials_to_reach(self, fraction: float) -> int | None:
        """Trials needed for the hypervolume (or single best) to reach ``fraction`` of final.

        For one objective the measure is the improvement over the first feasible value.
        """
        series = self.hypervolume
        if series is None and self.objectives:
            m = self.objectives[0].metric
            best = self.best[m]
            first = next((b for b in best if b is not None), None)
            if first is None:
                return None
            series = [0.0 if b is None else abs(b - first) for b in best]
        if not series or not series[-1]:
            return None
        target = fraction * series[-1]
        for i, v in enumerate(series):
            if v >= target - 1e-12 * abs(target):
                return i + 1
        return None


def default_reference(rows: Sequence[TrialRow], objectives: Sequence[Objective],
                      study_objectives: Sequence[Objective] | None = None) -> list[float]:
    """Per objective: the study file's ``reference`` when given, else worst feasible + 10 %."""
    lookup = objectives if study_objectives is None else study_objectives
    pts = [[metric_value(r, o.metric, lookup) for o in objectives] for r in rows
           if r.state == "COMPLETE" and r.feasible]
    pts = [p for p in pts if all(v is not None for v in p)]
    auto = reference_point(pts, [o.direction for o in objectives]) if pts else [0.0] * len(
        objectives)
    return [o.reference if o.reference is not None else a for o, a in zip(objectives, auto)]


def convergence(rows: Sequence[TrialRow], objectives: Sequence[Objective],
                reference: Sequence[float] | None = None,
                study_objectives: Sequence[Objective] | None = None) -> Convergence:
    """Best-so-far and hypervolume series; the reference is fixed so the series is monotone.

    ``objectives`` are the series' axes; ``study_objectives`` (default: the same) are the
    study's own, used to read objective values of trials that do not report them as metrics.
    """
    lookup = objectives if study_objectives is None else study_objectives
    done = finished(rows)
    metrics = [o.metric for o in objectives]
    dirs = [o.direction for o in objectives]
    values: dict[str, list[float | None]] = {m: [] for m in metrics}
    best: dict[str, list[float | None]] = {m: [] for m in metrics}
    current: dict[str, float | None] = {m: None for m in metrics}
    multi = len(objectives) > 1
    ref = list(reference) if reference is not None else (
        default_reference(done, objectives, lookup) if multi else None)
    hv: list[float] | None = [] if multi else None
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in dirs])
    front = np.zeros((0, len(objectives)))  # current front, in minimization form
    hv_now = 0.0
    n_feasible = 0
    share = []
    for k, r in enumerate(done, start=1):
        vec = [metric_value(r, m, lookup) for m in metrics] if r.feasible else [None] * len(
            metrics)
        ok = r.state == "COMPLETE" and r.feasible and all(v is not None for v in vec)
        n_feasible += ok
        share.append(n_feasible / k)
        for m, d, v in zip(metrics, dirs, vec):
            values[m].append(v if ok else None)
            if ok and v is not None:
                c = current[m]
                if c is None or (v < c if d == "minimize" else v > c):
                    current[m] = v
            best[m].append(current[m])
        if hv is not None:
            if ok:
                p = np.asarray(vec, dtype=float) * sign
                dominated = len(front) and bool(np.any(np.all(front <= p, axis=1)))
                if not dominated:
                    keep = ~(np.all(p <= front, axis=1) & np.any(p < front, axis=1))
                    front = np.vstack([front[keep], p])
                    hv_now = hypervolume((front * sign).tolist(), dirs, ref)  # type: ignore
            hv.append(hv_now)
    return Convergence([r.number for r in done], tuple(objectives), values, best, hv,
                       [float(x) for x in ref] if ref is not None else None, share)


def first_reaching(series: Sequence[float | None], target: float, direction: str) -> int | None:
    """1-based position at which a best-so-far series first reaches ``target``."""
    for i, v in enumerate(series):
        if v is not None and math.isfinite(v) and (
                v <= target if direction == "minimize" else v >= target):
            return i + 1
    return None
