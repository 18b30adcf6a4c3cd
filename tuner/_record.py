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
* Optuna constraint values (> 0 means violated), the same names on every trial that ran or
  could not run: ``feasible`` (1 when the config could not run, else 0) and one per metric
  constraint (a metric the result lacks counts as violated). They are stored in both forms
  Optuna's tools read: one system attribute per name (``constraints:NAME``, Optuna 5's
  ``set_constraint``) and the list under ``constraints`` (Optuna 3/4, optuna-dashboard).
  Optuna 5 reads the two forms as one set with each value twice, which changes no trial's
  feasibility; ``constraint_values`` reads either form once;
* objective values only when measured: an ok result, or an infeasible one that still reported
  every objective (a plan that does not fit, with its predicted speed) is ``COMPLETE`` with its
  real values; an infeasible result without them is ``PRUNED`` (Optuna's state for a trial
  that was not run to the end) with no values; failed evaluations are ``FAIL`` trials.
  Nothing made up is stored: what a sampler needs to learn from an infeasible point is
  derived inside the sampler (``tuner.samplers._view``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner._evaluator import EvalResult, Status

# -- the attribute keys ---------------------------------------------------------------------
CONFIG, METRICS, STATUS, REASON = "config", "metrics", "status", "reason"
FEASIBLE, CACHED, EVAL_S, ARTIFACTS = "feasible", "cached", "eval_s", "artifacts"
#: written by every loop, in this order
RECORD_KEYS = (CONFIG, METRICS, STATUS, REASON, FEASIBLE, CACHED, EVAL_S, ARTIFACTS)
#: fleet marks: the worker that ran a trial, and whether a lost trial was queued again
WORKER, REQUEUED = "worker", "requeued"
#: Optuna's system-attribute key for constraint values: the list form under this key, the
#: named form under ``constraints:NAME``
CONSTRAINTS_KEY = "constraints"
CONSTRAINT_PREFIX = CONSTRAINTS_KEY + ":"
#: the constraint every trial that ran or could not run carries (1: could not run, 0: ran)
FEASIBLE_CONSTRAINT = "feasible"

#: a trial's outcome, as counted in reports, and how tables and the dashboard name it
OUTCOME_LABELS = {"ok": "feasible", "violating": "violates constraint",
                  "infeasible": "infeasible", "failed": "failed", "running": "running"}
FINISHED_STATES = ("COMPLETE", "FAIL", "PRUNED")


# -- the write side ---------------------------------------------------------------------------
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
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
           for v in vals):
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
    if result.status != Status.FAILED:
        metrics = dict(result.metrics)
        ran = result.status == Status.OK
        violations = {FEASIBLE_CONSTRAINT: 0.0 if ran else 1.0}
        violations.update({str(c): c.violation(metrics) for c in constraints})
        broken = [c for c in constraints if violations[str(c)] > 0]
        feasible = ran and not broken
        if ran and broken:
            reason = "violates " + ", ".join(
                f"{c} (got {metrics.get(c.metric, float('nan')):.4g})" for c in broken)
    return Judged(result.status.value, values, feasible, violations, reason,
                  dict(result.metrics), dict(result.artifacts))


def write(study: Any, trial: Any, config: Mapping[str, Any], judged: Judged, cached: bool,
          eval_s: float, extra: Mapping[str, Any] | None = None) -> None:
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
    for name, v in judged.violations.items():
        trial.set_constraint(name, v)
    if judged.values is None:  # could not run and reported nothing to compare: no values
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, judged.values)


def record(study: Any, trial: Any, config: Mapping[str, Any], result: EvalResult,
           objectives: Sequence[Any], constraints: Sequence[Any], cached: bool,
           eval_s: float, extra: Mapping[str, Any] | None = None) -> Any:
    """Judge ``result``, store it on ``trial`` and tell ``study``; the stored ``FrozenTrial``."""
    write(study, trial, config, judge(result, objectives, constraints), cached, eval_s, extra)
    return study._storage.get_trial(trial._trial_id)


def with_list_form(system_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``system_attrs`` plus the list form of its named constraint values (what the storage
    keeps, so Optuna 3/4 and optuna-dashboard see the same feasibility as Optuna 5)."""
    out = dict(system_attrs)
    named = [v for k, v in system_attrs.items() if k.startswith(CONSTRAINT_PREFIX)]
    if named and CONSTRAINTS_KEY not in out:
        out[CONSTRAINTS_KEY] = named
    return out


def without_list_form(system_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``system_attrs`` without the list form when the named form is there (what a sampler
    is shown: each constraint once)."""
    if CONSTRAINTS_KEY in system_attrs and any(k.startswith(CONSTRAINT_PREFIX)
                                               for k in system_attrs):
        return {k: v for k, v in system_attrs.items() if k != CONSTRAINTS_KEY}
    return dict(system_attrs)


# -- the read side ----------------------------------------------------------------------------
def constraint_values(system_attrs: Mapping[str, Any]) -> dict[str, float]:
    """A trial's constraint values, each once: the named form when present (tuner and Optuna
    5), else the list form (Optuna 3/4) under the names ``"0"``, ``"1"``..."""
    named = {k[len(CONSTRAINT_PREFIX):]: v for k, v in system_attrs.items()
             if k.startswith(CONSTRAINT_PREFIX)}
    if named:
        return {k: float(v) for k, v in named.items() if _number(v)}
    listed = system_attrs.get(CONSTRAINTS_KEY)
    if isinstance(listed, (list, tuple)):
        return {str(i): float(v) for i, v in enumerate(listed) if _number(v)}
    return {}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


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
    if state in ("COMPLETE", "PRUNED") and _violated(constraints):
        return "infeasible"
    if state == "COMPLETE":
        return "ok"
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
    return list(constraint_values(t.system_attrs).values())


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


__all__ = ["ARTIFACTS", "CACHED", "CONFIG", "CONSTRAINTS_KEY", "CONSTRAINT_PREFIX", "EVAL_S",
           "FEASIBLE", "FEASIBLE_CONSTRAINT", "FINISHED_STATES", "Judged", "METRICS",
           "OUTCOME_LABELS", "REASON", "RECORD_KEYS", "REQUEUED", "STATUS", "WORKER",
           "constraint_values", "feasible_of", "judge", "objective_values", "outcome",
           "record", "status_of", "trial_feasible", "trial_outcome", "with_list_form",
           "without_list_form", "write"]
