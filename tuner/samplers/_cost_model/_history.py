"""Finished trials as the cost model sees them: observations, and the pending (RUNNING) ones.

The runner's conventions are read (``status``/``feasible`` user attrs, Optuna's constraint
values); plain Optuna trials work too (COMPLETE = measured, constraints <= 0 = feasible).
Each observation is also a row of the candidate universe, so the models index one feature
matrix for both the history and the candidates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from tuner._record import constraint_values

#: trial system attributes: the proposal and why it was made
POINT_ATTR = "cost_model:point"
SOURCE_ATTR = "cost_model:source"

_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


@dataclass
class Observation:
    """One finished trial as the model sees it."""

    values: dict[str, Any]
    #: raw objective values when the config was measured (status ok), else None
    y: tuple[float, ...] | None
    #: ran and met every constraint
    ok: bool
    #: metric-constraint values of a measured config (> 0: violated by that much)
    cons: dict[str, float] = field(default_factory=dict)


#: the runner's marker constraint: 1 for configs that could not run, 0 otherwise
_MARKER = "feasible"


def observation_from_trial(t: FrozenTrial, params: Sequence[str]) -> Observation | None:
    """Read the runner's conventions (status/feasible user attrs, Optuna constraint values);
    plain Optuna trials work too (COMPLETE = measured, constraints <= 0 = feasible).

    A config that could not run is stored without values (``PRUNED`` with a violated
    constraint, ``tuner._record``): it is learned from as not ok and unmeasured, like a
    failure; the storage holds no made-up value for it to learn from."""
    values = {k: v for k, v in t.params.items() if k in params}
    # each constraint once, whichever of Optuna's forms the storage holds
    constraints = constraint_values(t.system_attrs)
    if t.state == TrialState.FAIL:
        return Observation(values, None, False)
    if t.state == TrialState.PRUNED and (t.user_attrs.get("status") == "infeasible"
                                         or any(v > 0 for v in constraints.values())):
        return Observation(values, None, False)
    if t.state != TrialState.COMPLETE or t.values is None:
        return None
    status = t.user_attrs.get("status", "ok")
    if "feasible" in t.user_attrs:
        ok = bool(t.user_attrs["feasible"])
    else:
        ok = status == "ok" and all(c <= 0 for c in constraints.values())
    y = tuple(float(v) for v in t.values) if status == "ok" else None
    if y is not None and not all(math.isfinite(v) for v in y):
        y = None
    cons = {k: float(v) for k, v in constraints.items()
            if k != _MARKER and math.isfinite(v)} if y is not None else {}
    return Observation(values, y, ok, cons)


class History:
    """Observations by trial number, each with its universe row (parsed once per trial)."""

    def __init__(self, params: Sequence[str]) -> None:
        self.params = list(params)
        self.obs: dict[int, Observation] = {}
        #: trial number -> universe row
        self.rows: dict[int, int] = {}

    def sync(self, study: Study, row_of: Callable[[dict[str, Any]], int],
             points: Mapping[int, dict[str, Any]]) -> list[int]:
        """Parse newly finished trials; return the universe rows of pending (RUNNING) ones.

        ``points`` are this process's proposals by trial id (a pending trial's values before
        its parameters are suggested)."""
        pending: list[int] = []
        for t in study.get_trials(deepcopy=False):
            if t.number in self.obs:
                continue
            if t.state in _FINISHED:
                obs = observation_from_trial(t, self.params)
                if obs is None or not obs.values:
                    continue
                self.obs[t.number] = obs
                self.rows[t.number] = row_of(obs.values)
            elif t.state in (TrialState.RUNNING, TrialState.WAITING):
                values = points.get(t._trial_id) or t.system_attrs.get(POINT_ATTR)
                values = values or {k: v for k, v in t.params.items() if k in self.params}
                if values:
                    pending.append(row_of(values))
        return pending

    def n_measured(self) -> int:
        return sum(o.y is not None for o in self.obs.values())

    def arrays(self, n_obj: int) -> tuple[list[Observation], np.ndarray, np.ndarray, np.ndarray]:
        """The observations, their ok and measured flags, and raw objectives (NaN: unmeasured)."""
        obs = list(self.obs.values())
        ok = np.array([o.ok for o in obs])
        measured = np.array([o.y is not None for o in obs])
        raw = np.array([o.y if o.y is not None else (np.nan,) * n_obj for o in obs],
                       dtype=float).reshape(len(obs), n_obj)
        return obs, ok, measured, raw


__all__ = ["POINT_ATTR", "SOURCE_ATTR", "History", "Observation", "observation_from_trial"]
