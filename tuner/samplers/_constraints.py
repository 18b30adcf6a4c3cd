"""How the runner marks infeasible trials for Optuna's constraint-aware samplers."""

from __future__ import annotations

from typing import Mapping

from optuna.trial import FrozenTrial

#: Optuna's system-attribute prefix for named constraint values (> 0 means violated)
CONSTRAINTS_KEY = "constraints"


def constraint_values(trial: FrozenTrial) -> Mapping[str, float]:
    return trial.constraints
