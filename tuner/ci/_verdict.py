"""The CI job's verdict: did the system under test regress against its baseline?

The job fails when the best feasible value of the first objective is more than
``max_regression`` % worse than the baseline's, when the baseline's best config got more than
that much worse on any objective (re-measured now: drift), or when it is no longer feasible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def better_pct(new: float, old: float, direction: str) -> float:
    """Change from ``old`` to ``new`` in percent of ``|old|``; positive means better."""
    diff = (new - old) if direction == "maximize" else (old - new)
    if old == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return 100.0 * diff / abs(old)


@dataclass
class Verdict:
    passed: bool
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def judge(objectives: Sequence[dict[str, Any]], baseline: dict[str, Any] | None,
          best: dict[str, Any] | None, recheck: dict[str, Any] | None,
          max_regression: float) -> tuple[Verdict, dict[str, Any]]:
    """The verdict and the numbers behind it (change of the best, drift of the baseline)."""
    v = Verdict(True)
    numbers: dict[str, Any] = {"change_pct": {}, "drift_pct": {}}
    if best is None:
        v.failures.append("no feasible trial in this run")
    if baseline is None:
        v.notes.append("no baseline yet: nothing to compare")
        v.passed = not v.failures
        return v, numbers
    old = baseline["best"]["values"]
    if best is not None:
        for i, o in enumerate(objectives):
            numbers["change_pct"][o["metric"]] = better_pct(best["values"][i], old[i],
                                                             o["direction"])
        first = objectives[0]
        pct = numbers["change_pct"][first["metric"]]
        if pct < -max_regression:
            v.failures.append(f"best {first['metric']} {best['values'][0]:.6g} is "
                              f"{-pct:.1f}% worse than the baseline's {old[0]:.6g} "
                              f"(allowed {max_regression:g}%)")
    if recheck is not None:
        if recheck["status"] != "ok" or not recheck.get("feasible", True):
            v.failures.append(f"the baseline's best config is now {recheck['status']}"
                              + (f": {recheck['reason']}" if recheck.get("reason") else ""))
        else:
            for i, o in enumerate(objectives):
                now = recheck["metrics"].get(o["metric"])
                if now is None:
                    continue
                pct = better_pct(now, old[i], o["direction"])
                numbers["drift_pct"][o["metric"]] = pct
                if pct < -max_regression:
                    v.failures.append(f"the baseline's best config regressed on {o['metric']}:"
                                      f" {old[i]:.6g} -> {now:.6g} ({-pct:.1f}% worse, allowed "
                                      f"{max_regression:g}%)")
    v.passed = not v.failures
    return v, numbers


__all__ = ["Verdict", "better_pct", "judge"]
