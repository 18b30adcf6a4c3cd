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

    A proposal costs the same at trial 4,000 as at trial 10: the study's trials are read once
    (and again every ``RESYNC`` proposals, to see what other processes sharing the study
    ran); in between, the points this sampler handed out and the trials it is told about
    (``after_trial``) keep the set of visited points current.
    """

    #: re-read the study's trials after this many proposals (trials of other workers)
    RESYNC = 1000

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
        self._seen: set[tuple] = set()
        self._study_id: int | None = None
        self._since_sync = 0

    def _sync(self, study: Study) -> None:
        """Read the study's trials: once per study, then every ``RESYNC`` proposals."""
        if self._study_id == study._study_id and self._since_sync < self.RESYNC:
            return
        self._study_id, self._since_sync = study._study_id, 0
        self._seen |= {_key(t.params) for t in study._get_trials(deepcopy=False,
                                                                   use_cache=True)}

    def _advance(self) -> None:
        while self._pos < len(self._grid) and _key(self._grid[self._pos]) in self._seen:
            self._pos += 1

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._sync(study)
        self._since_sync += 1
        fixed = trial.system_attrs.get("fixed_params")
        if fixed:  # an enqueued point (a warm start): it is not a grid point handed out
            self._seen.add(_key(fixed))
            return
        self._advance()
        if self._pos < len(self._grid):
            point = self._grid[self._pos]
            study._storage.set_trial_system_attr(trial._trial_id, "grid_point", point)
            self._seen.add(_key(point))
            self._pos += 1

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._seen.add(_key(trial.params))

    def exhausted(self, study: Study) -> bool:
        """True once every valid config has been visited (the runner then stops)."""
        self._sync(study)
        self._advance()
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


