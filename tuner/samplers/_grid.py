"""Exhaustive search over a finite space's valid configs, in a seeded shuffled order."""

from __future__ import annotations

import random as _random
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import BadInput


class SpaceGridSampler(BaseSampler):
    """Visits every valid config of ``space`` once (invalid grid points cost nothing).

    Unlike ``optuna.samplers.GridSampler`` it understands conditional parameters and skips
    configs the space's constraints reject. Points already in the study are not repeated, so a
    resumed study continues the sweep.
    """

    def __init__(self, space: Any, seed: int | None = None, shuffle: bool = True) -> None:
        if not space.is_finite():
            raise BadInput("sampler.name", "grid needs a finite space (continuous parameters "
                           "present); use tpe, gp, cmaes, cost-model or random")
        self._space = space
        self._grid = [space.param_values(c) for c in space.enumerate(valid_only=True)]
        if shuffle:
            _random.Random(seed).shuffle(self._grid)
        self._pos = 0
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        seen = {_key(t.params) for t in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING))}
        while self._pos < len(self._grid) and _key(self._grid[self._pos]) in seen:
            self._pos += 1
        if self._pos < len(self._grid):
            study._storage.set_trial_system_attr(trial._trial_id, "grid_point",
                                                 self._grid[self._pos])
            self._pos += 1

    def exhausted(self, study: Study) -> bool:
        """True once every valid config has been visited (the runner then stops)."""
        seen = {_key(t.params) for t in study.get_trials(deepcopy=False)}
        while self._pos < len(self._grid) and _key(self._grid[self._pos]) in seen:
            self._pos += 1
        return self._pos >= len(self._grid)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        point = trial.system_attrs.get("grid_point")
        if point is not None and param_name in point:
            return point[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    @property
    def size(self) -> int:
        return len(self._grid)


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


def grid(space: Any, directions: Sequence[str], seed: int | None = None,
         **options: Any) -> BaseSampler:
    unknown = set(options) - {"shuffle"}
    if unknown:
        raise BadInput(f"sampler.options.{sorted(unknown)[0]}", "unknown option for grid; "
                       "allowed: shuffle")
    return SpaceGridSampler(space, seed=seed, **options)


