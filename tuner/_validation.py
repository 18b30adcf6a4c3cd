"""Simulator-vs-reference comparison tables (``tuner validate DOMAIN``)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ValidationRow:
    case: str  # what was simulated, e.g. "gpt3-175B tp8 pp8 selective+sp"
    metric: str  # e.g. "tflops_per_gpu"
    predicted: float
    reference: float
    source: str  # citation of the reference figure

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted - self.reference) / self.reference


@dataclass
class ValidationReport:
    domain: str
    rows: list[ValidationRow]
    #: metric group -> (target mean |error| %, target max |error| %)
    targets: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def groups(self) -> dict[str, list[ValidationRow]]:
        out: dict[str, list[ValidationRow]] = {}
        for r in self.rows:
            out.setdefault(r.metric, []).append(r)
        return out

    def summary(self) -> dict[str, dict[str, float]]:
        """Per metric: mean and max absolute percentage error, row count, targets."""
        out = {}
        for metric, rows in self.groups().items():
            errs = [abs(r.error_pct) for r in rows]
            target = self.targets.get(metric, (float("nan"), float("nan")))
            out[metric] = {"n": len(rows), "mean_abs_error_pct": statistics.fmean(errs),
                           "max_abs_error_pct": max(errs), "target_mean_pct": target[0],
                           "target_max_pct": target[1]}
        return out

    def meets_targets(self) -> bool:
        return all(s["mean_abs_error_pct"] <= s["target_mean_pct"]
                   and s["max_abs_error_pct"] <= s["target_max_pct"]
                   for m, s in self.summary().items() if m in self.targets)
