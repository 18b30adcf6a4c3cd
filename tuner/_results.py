"""Stored trials as plain rows, and the Pareto front of a study (used by the CLI and CI job)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner._pareto import hypervolume, pareto_mask, reference_point
from tuner._record import trial_feasible, trial_outcome
from tuner._space import params_key


@dataclass
class StudyResults:
    name: str
    attrs: dict[str, Any]
    objectives: list[dict[str, Any]]
    trials: list[FrozenTrial]

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudyResults:
        attrs = study.user_attrs
        objectives = attrs.get("tuner.objectives") or [
            {"metric": f"objective_{i}", "direction": d.name.lower()}
            for i, d in enumerate(study.directions)]
        return cls(study.study_name, attrs, objectives, study.get_trials(deepcopy=False))

    @property
    def directions(self) -> list[str]:
        return [o["direction"] for o in self.objectives]

    @property
    def metrics(self) -> list[str]:
        return [o["metric"] for o in self.objectives]

    def feasible(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE and trial_feasible(t)]

    def counts(self) -> dict[str, int]:
        """Trials per outcome (``tuner._record.outcome``), every outcome listed."""
        out = {"ok": 0, "infeasible": 0, "failed": 0, "running": 0, "violating": 0}
        for t in self.trials:
            key = trial_outcome(t)
            out[key] = out.get(key, 0) + 1
        return out

    def pareto(self) -> list[FrozenTrial]:
        """Non-dominated feasible trials, one per distinct config."""
        feas = self.feasible()
        mask = pareto_mask([t.values for t in feas], self.directions)
        front, seen = [], set()
        for t, m in zip(feas, mask):
            key = params_key(t.params)
            if m and key not in seen:
                seen.add(key)
                front.append(t)
        return sorted(front, key=lambda t: t.values[0], reverse=self.directions[0] == "maximize")

    def reference(self) -> list[float] | None:
        feas = self.feasible()
        if not feas:
            return None
        ref = reference_point([t.values for t in feas], self.directions)
        for i, o in enumerate(self.objectives):
            if o.get("reference") is not None:
                ref[i] = float(o["reference"])
        return ref

    def hypervolume(self) -> float | None:
        ref = self.reference()
        if ref is None:
            return None
        return hypervolume([t.values for t in self.feasible()], self.directions, ref)

    def row(self, t: FrozenTrial) -> dict[str, Any]:
        ua = t.user_attrs
        return {"trial": t.number, "state": t.state.name.lower(),
                "status": ua.get("status"), "feasible": ua.get("feasible"),
                "reason": ua.get("reason"), "cached": ua.get("cached"),
                "eval_s": ua.get("eval_s"), "params": dict(t.params),
                "metrics": ua.get("metrics", {}), "config": ua.get("config", dict(t.params)),
                "values": list(t.values) if t.values else None}

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(t) for t in self.trials]
