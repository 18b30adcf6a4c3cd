"""One sampler on one problem: an in-memory ask/tell loop over the precomputed table.

Trials are recorded by the runner's own writer (``tuner._record.write``: the user attributes,
Optuna constraint values, no values for configs that could not run), so every sampler sees the
history it would see in a real study, but an evaluation is a dictionary lookup.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from tuner import _record
from tuner._setup import exhausted
from tuner._space import params_key
from tuner.bench.problems import Table

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class Trace:
    """Per-trial outcomes of one run."""

    problem: str
    sampler: str
    seed: int
    #: objective values of each trial when feasible, else None
    values: list[tuple[float, ...] | None] = field(default_factory=list)
    #: a new config measured (not a repeat, not rejected by the space's constraints)
    new_eval: list[bool] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_one(table: Table, sampler: Any, sampler_name: str, seed: int, budget: int,
            stop_when_exhausted: bool = True) -> Trace:
    """Run ``budget`` trials of ``sampler`` on ``table``'s problem."""
    problem = table.problem
    space = problem.space()
    study = optuna.create_study(directions=problem.directions, sampler=sampler)
    trace = Trace(problem.name, sampler_name, seed)
    seen: set[Any] = set()
    t0 = time.perf_counter()
    for _ in range(budget):
        if stop_when_exhausted and exhausted(sampler, study):
            trace.stopped = "every valid config evaluated"
            break
        trial = study.ask()
        config = space.suggest(trial)
        values = space.param_values(config)
        outcome = table.lookup(values)
        key = params_key(values)
        judged = _judged(problem, outcome)
        trace.new_eval.append(outcome is not None and outcome.status != "rejected"
                              and key not in seen)
        seen.add(key)
        _record.write(study, trial, config, judged, False, 0.0)
        trace.status.append(judged.status)
        trace.values.append(tuple(judged.values) if judged.feasible and judged.values is not None
                            else None)
    trace.seconds = time.perf_counter() - t0
    for name in ("sources", "ledger"):
        if hasattr(sampler, name):
            trace.extra[name] = _plain(getattr(sampler, name))
    return trace


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x if isinstance(x, (int, float, str, bool, type(None))) else str(x)


def _judged(problem: Any, outcome: Any) -> _record.Judged:
    """The table's reading of a config as the record the runner would store."""
    # the runner's constraint names on every trial: ``feasible`` and one per metric constraint
    unmet = {_record.FEASIBLE_CONSTRAINT: 1.0, **{str(c): 1.0 for c in problem.constraints}}
    if outcome is None:  # off the grid (a sampler ignored the choices): the runner rejects it
        return _record.Judged("infeasible", None, False, unmet, "not a grid point")
    status = "infeasible" if outcome.status == "rejected" else outcome.status
    vals = list(outcome.values) if outcome.values is not None else None
    if status == "ok":
        violations = {_record.FEASIBLE_CONSTRAINT: 0.0,
                      **dict(zip([str(c) for c in problem.constraints], outcome.violations))}
    else:
        violations = unmet if status == "infeasible" else {}
    metrics = dict(zip(problem.metrics, vals)) if vals else {}
    return _record.Judged(status, vals, bool(outcome.feasible), violations, outcome.reason,
                          metrics)


def curves(table: Table, trace: Trace, budget: int) -> dict[str, np.ndarray]:
    """Per-trial quality of the best found so far (padded to ``budget`` after a stop).

    One objective: relative regret ``|best - optimum| / |optimum|`` (NaN before the first
    feasible trial). Several: hypervolume of the feasible points found / the true front's,
    both normalized by the true front's ideal and nadir (reference 1.1).
    """
    from tuner.bench.problems import normalized_hypervolume, relative_regret

    n = len(trace.values)
    problem = table.problem
    if len(problem.objectives) == 1:
        d = problem.directions[0]
        best = math.nan
        out = np.full(budget, np.nan)
        for i in range(budget):
            v = trace.values[i] if i < n else None
            if v is not None and (math.isnan(best) or (v[0] < best if d == "minimize"
                                                       else v[0] > best)):
                best = v[0]
            if not math.isnan(best):
                out[i] = float(relative_regret(best, table.optimum, d))
        return {"regret": out}
    true_hv = table.true_hypervolume()
    ratio = np.zeros(budget)
    found: list[tuple[float, ...]] = []
    current = 0.0
    for i in range(budget):
        v = trace.values[i] if i < n else None
        if v is not None:
            found.append(v)
            current = normalized_hypervolume(table.normalize(np.array(found)))
        ratio[i] = current / true_hv if true_hv > 0 else 1.0
    return {"hv_ratio": ratio}


__all__ = ["Trace", "curves", "run_one"]
