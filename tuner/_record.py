"""The trial record: how an evaluation result becomes a stored Optuna trial, and how it reads back.

Every loop that turns results into trials (the runner, the fleet worker, the benchmark loop)
writes through ``record``/``write``, and every reader (CLI tables, CI report, dashboard,
analysis) tells outcomes with ``status_of``/``feasible_of``/``outcome``, so there is one format
and one vocabulary.

What a trial stores:

* user attributes ``config`` (what the evaluator received), ``metrics``, ``status``
  (``ok | infeasible | failed``), ``reason`` (why it is not ok, with the numbers), ``feasible``
  (ok and every metric constraint met), ``cached`` (the result came from the cache or another
  trial), ``eval_s`` and ``artifacts``;
* Optuna constraint values (``trial.set_constraint``: > 0 means violated): one per metric
  constraint for measured results, ``feasible = 1`` for infeasible ones, ``feasible = 0`` when
  the study has none, so constrained samplers (NSGA-II, TPE, the cost model) see the same
  feasibility the tables show;
* objective values: measured values, or for an infeasible result the *penalty*, the worst
  feasible value seen so far per objective (``±1e12`` before there is one), so samplers that
  ignore constraints still learn that the region is bad without an absurd outlier. Failed
  evaluations are Optuna ``FAIL`` trials without values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from tuner._evaluator import EvalResult, Status

# -- the attribute keys ---------------------------------------------------------------------
CONFIG, METRICS, STATUS, REASON = "config", "metrics", "status", "reason"
FEASIBLE, CACHED, EVAL_S, ARTIFACTS = "feasible", "cached", "eval_s", "artifacts"
#: written by every loop, in this order
RECORD_KEYS = (CONFIG, METRICS, STATUS, REASON, FEASIBLE, CACHED, EVAL_S, ARTIFACTS)
#: fleet marks: the worker that ran a trial, and whether a lost trial was queued again
WORKER, REQUEUED = "worker", "requeued"
#: Optuna's system-attribute key (and prefix) for constraint values
CONSTRAINTS_KEY = "constraints"
#: the constraint name carried by results without metric constraints (1: infeasible, 0: fine)
FEASIBLE_CONSTRAINT = "feasible"
#: objective value told for an infeasible result before any feasible one was seen
PENALTY_FALLBACK = 1e12

#: a trial's outcome, as counted in reports, and how tables and the dashboard name it
OUTCOME_LABELS = {"ok": "feasible", "violating": "violates constraint",
                  "infeasible": "infeasible", "failed": "failed", "running": "running"}
FINISHED_STATES = ("COMPLETE", "FAIL", "PRUNED")


# -- the write side ---------------------------------------------------------------------------
class Penalty:
    """The worst feasible value seen per objective: what infeasible trials are told."""

    def __init__(self, directions: Sequence[str]) -> None:
        self.directions = list(directions)
        self.worst: list[float | None] = [None] * len(self.directions)

    def update(self, values: Sequence[float]) -> None:
        for i, (v, d) in enumerate(zip(values, self.directions)):
            p = self.worst[i]
            if p is None or (v > p if d == "minimize" else v < p):
                self.worst[i] = v

    def load(self, trials: Iterable[Any]) -> None:
        """Take in the stored feasible trials (a resumed or shared study)."""
        for t in trials:
            if _state_name(t.state) == "COMPLETE" and t.user_attrs.get(FEASIBLE) and t.values:
                self.update(t.values)

    def values(self) -> list[float]:
        return [p if p is not None else (PENALTY_FALLBACK if d == "minimize"
                                         else -PENALTY_FALLBACK)
                for p, d in zip(self.worst, self.directions)]


@dataclass(frozen=True)
class Judged:
    """One result read against the study's objectives and constraints, ready to store."""

    status: str  # ok | infeasible | failed
    values: list[float] | None  # measured objective values (None: not measured)
    feasible: bool
    violations: dict[str, float]  # constraint name -> Optuna constraint value
    reason: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)


def objective_values(metrics: Mapping[str, Any], objectives: Sequence[Any]) -> list[float] | None:
    """The objectives' values from ``metrics`` when every one is there and finite."""
    vals = [metrics.get(o.metric) for o in objectives]
    if all(v is not None and math.isfinite(v) for v in vals):
        return [float(v) for v in vals]  # type: ignore[arg-type]
    return None


def judge(result: EvalResult, objectives: Sequence[Any], constraints: Sequence[Any]) -> Judged:
    """Read ``result`` against the study: an ok result without its objective metrics is a
    failure; an ok result that breaks a metric constraint is stored as ok but not feasible."""
    values = objective_values(result.metrics, objectives)
    if result.status == Status.OK and values is None:
        missing = [o.metric for o in objectives if o.metric not in result.metrics]
        result = EvalResult.failed(f"evaluator did not report objective metric(s) {missing}"
                                   f" (reported: {sorted(result.metrics)})")
    reason = result.reason
    feasible = False
    violations: dict[str, float] = {}
    if result.status == Status.OK:
        violations = {str(c): c.violation(dict(result.metrics)) for c in constraints}
        broken = [c for c, v in violations.items() if v > 0]
        feasible = not broken
        if broken:
            reason = "violates " + ", ".join(
                f"{c} (got {result.metrics.get(c.split()[0], float('nan')):.4g})"
                for c in broken)
    elif result.status == Status.INFEASIBLE:
        violations = {FEASIBLE_CONSTRAINT: 1.0}
    return Judged(result.status.value, values, feasible, violations, reason,
                  dict(result.metrics), dict(result.artifacts))


def write(study: Any, trial: Any, config: Mapping[str, Any], judged: Judged,
          penalty: Penalty, cached: bool, eval_s: float,
          extra: Mapping[str, Any] | None = None) -> None:
    """Set the record's attributes on ``trial`` and tell ``study`` its outcome.

    ``study``/``trial`` are Optuna's or anything with their ``tell``/``set_user_attr``/
    ``set_constraint`` (the fleet's buffered ones write all of it in one transaction).
    ``extra``: more user attributes beside the record (e.g. the fidelity ladder's round);
    they never replace a record key, except that an extra ``metrics`` table adds metrics
    (e.g. ``predicted_<metric>``) beside the evaluator's without replacing any of them.
    """
    from optuna.trial import TrialState

    extra = dict(extra or {})
    metrics = {**extra.pop(METRICS, {}), **judged.metrics}
    user = {**extra, CONFIG: config, METRICS: metrics, STATUS: judged.status,
            REASON: judged.reason, FEASIBLE: judged.feasible, CACHED: cached,
            EVAL_S: round(eval_s, 6), ARTIFACTS: judged.artifacts}
    for k, v in user.items():
        trial.set_user_attr(k, v)
    if judged.status == Status.FAILED.value:
        study.tell(trial, state=TrialState.FAIL)
        return
    values = judged.values
    if values is None:
        values = penalty.values()
    elif judged.feasible:
        penalty.update(values)
    for name, v in (judged.violations or {FEASIBLE_CONSTRAINT: 0.0}).items():
        trial.set_constraint(name, v)
    study.tell(trial, values)


def record(study: Any, trial: Any, config: Mapping[str, Any], result: EvalResult,
           objectives: Sequence[Any], constraints: Sequence[Any], penalty: Penalty,
           cached: bool, eval_s: float, extra: Mapping[str, Any] | None = None) -> Any:
    """Judge ``result``, store it on ``trial`` and tell ``study``; the stored ``FrozenTrial``."""
    write(study, trial, config, judge(result, objectives, constraints), penalty, cached, eval_s,
          extra)
    return study._storage.get_trial(trial._trial_id)


# -- the read side ----------------------------------------------------------------------------
def _state_name(state: Any) -> str:
    return getattr(state, "name", None) or str(state).rsplit(".", 1)[-1]


def _violated(constraints: Sequence[float] | None) -> bool:
    return bool(constraints) and any(c > 0 for c in constraints)  # type: ignore[union-attr]


def status_of(state: Any, attrs: Mapping[str, Any],
              constraints: Sequence[float] | None = None) -> str:
    """``ok | infeasible | failed`` as stored; for a study not written by ``tuner``, derived
    from Optuna's own fields (other unfinished states read as their lower-case name)."""
    status = attrs.get(STATUS)
    if isinstance(status, str):
        return status
    state = _state_name(state)
    if state == "FAIL":
        return "failed"
    if state == "COMPLETE":
        return "infeasible" if _violated(constraints) else "ok"
    return state.lower()


def feasible_of(state: Any, status: str, attrs: Mapping[str, Any],
                constraints: Sequence[float] | None = None) -> bool:
    """The stored ``feasible`` flag; else complete, ok and no constraint violated."""
    if FEASIBLE in attrs:
        return bool(attrs[FEASIBLE])
    return _state_name(state) == "COMPLETE" and status == "ok" and not _violated(constraints)


def outcome(state: Any, status: str, feasible: bool) -> str:
    """One of ``ok`` (feasible), ``violating`` (measured, breaks a metric constraint),
    ``infeasible``, ``failed``, ``running`` (not finished yet); see ``OUTCOME_LABELS``."""
    if _state_name(state) not in FINISHED_STATES:
        return "running"
    if feasible:
        return "ok"
    if status == "ok":
        return "violating"
    if status == "infeasible":
        return "infeasible"
    return "failed"


def _trial_constraints(t: Any) -> list[float]:
    return list(t.constraints.values())  # Optuna's: both the list and the named form


def trial_feasible(t: Any) -> bool:
    """``feasible_of`` an Optuna ``FrozenTrial``."""
    if FEASIBLE in t.user_attrs:  # every trial tuner wrote: no need to parse constraints
        return bool(t.user_attrs[FEASIBLE])
    cons = _trial_constraints(t)
    return feasible_of(t.state, status_of(t.state, t.user_attrs, cons), t.user_attrs, cons)


def trial_outcome(t: Any) -> str:
    """``outcome`` of an Optuna ``FrozenTrial``."""
    cons = None if STATUS in t.user_attrs else _trial_constraints(t)
    return outcome(t.state, status_of(t.state, t.user_attrs, cons), trial_feasible(t))


__all__ = ["ARTIFACTS", "CACHED", "CONFIG", "CONSTRAINTS_KEY", "EVAL_S", "FEASIBLE",
           "FEASIBLE_CONSTRAINT", "FINISHED_STATES", "Judged", "METRICS", "OUTCOME_LABELS",
           "PENALTY_FALLBACK", "Penalty", "REASON", "RECORD_KEYS", "REQUEUED", "STATUS",
           "WORKER", "feasible_of", "judge", "objective_values", "outcome", "record",
           "status_of", "trial_feasible", "trial_outcome", "write"]
