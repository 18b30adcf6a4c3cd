"""Several studies on the same axes: fronts, convergence and a summary table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tuner._pareto import reference_point
from tuner._readonly_storage import TrialRow
from tuner.analysis._common import Objective, finished, metric_names
from tuner.analysis._convergence import Convergence, convergence
from tuner.analysis._front import ParetoView, pareto_view


@dataclass(frozen=True)
class StudyRun:
    """One study's trials with its label and objectives."""

    label: str
    objectives: tuple[Objective, ...]
    rows: list[TrialRow]
    sampler: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class Comparison:
    """Per study (in input order): its front and its convergence on the shared axes.

    Hypervolumes share one reference point (worst feasible value over all studies + 10 %), so
    they are comparable across studies.
    """

    axes: tuple[Objective, ...]
    labels: list[str]
    fronts: list[ParetoView]
    convergence: list[Convergence]
    reference: list[float] | None
    summary: list[dict]


def shared_metrics(runs: Sequence[StudyRun]) -> list[str]:
    """Metrics reported by some trial of every study, objectives of the first study first."""
    sets = [set(metric_names(r.rows, r.objectives)) for r in runs]
    common = set.intersection(*sets) if sets else set()
    first = metric_names(runs[0].rows, runs[0].objectives) if runs else []
    return [m for m in first if m in common]


def compare(runs: Sequence[StudyRun], axes: Sequence[Objective]) -> Comparison:
    """Fronts, convergence and a summary of ``runs`` on the same ``axes``."""
    axes = tuple(axes)
    fronts = [pareto_view(r.rows, axes, r.objectives) for r in runs]
    ref = None
    if len(axes) > 1:
        pts = [c for f in fronts for c in f.coords.tolist()]
        auto = reference_point(pts, [a.direction for a in axes]) if pts else [0.0] * len(axes)
        ref = [a.reference if a.reference is not None else v for a, v in zip(axes, auto)]
    convs = [convergence(r.rows, axes, ref, r.objectives) for r in runs]
    summary = []
    for r, f, c in zip(runs, fronts, convs):
        done = finished(r.rows)
        row: dict = {"study": r.label, "sampler": r.sampler, "fingerprint": r.fingerprint,
                     "trials": len(done), "feasible": sum(1 for x in done if x.feasible),
                     "front size": len(f.front)}
        for a in axes:
            best = c.best.get(a.metric) or []
            row[f"best {a.metric}"] = best[-1] if best else None
        if c.hypervolume is not None:
            row["hypervolume"] = c.hypervolume[-1] if c.hypervolume else 0.0
        row["trials to 95 %"] = c.trials_to_reach(0.95)
        summary.append(row)
    return Comparison(axes, [r.label for r in runs], fronts, convs, ref, summary)


__all__ = ["Comparison", "StudyRun", "compare", "shared_metrics"]
