"""What a sampler learns from a config that could not run, derived inside the sampler.

The storage keeps only real values (``tuner._record``): a config that could not run and
reported no objective values is a ``PRUNED`` trial with no values and a violated ``feasible``
constraint. Optuna's samplers learn nothing from such a trial except TPE (which reads the
constraint); NSGA-II, GP and CMA-ES would propose the same region again. ``InfeasibleView``
wraps a sampler and shows it each such trial as a ``COMPLETE`` one told the worst feasible
value seen before it per objective (``±1e12`` while there is none), so every sampler ranks
it last, as the constraint says. The substitute lives only in what the sampler is shown; the
stored study never holds it. The view also shows each constraint once (the storage keeps the
list form beside the named one for older Optuna versions).
"""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from tuner._record import CONSTRAINTS_KEY, FEASIBLE, constraint_values, without_list_form

#: told a sampler for an infeasible trial before any feasible value is known
PENALTY_FALLBACK = 1e12


class Penalty:
    """The worst feasible value seen per objective: what an infeasible trial is shown as."""

    def __init__(self, directions: Sequence[str]) -> None:
        self.directions = list(directions)
        self.worst: list[float | None] = [None] * len(self.directions)

    def update(self, values: Sequence[float]) -> None:
        for i, (v, d) in enumerate(zip(values, self.directions)):
            p = self.worst[i]
            if p is None or (v > p if d == "minimize" else v < p):
                self.worst[i] = v

    def values(self) -> list[float]:
        return [p if p is not None else (PENALTY_FALLBACK if d == "minimize"
                                         else -PENALTY_FALLBACK)
                for p, d in zip(self.worst, self.directions)]


def _feasible(t: FrozenTrial) -> bool:
    if FEASIBLE in t.user_attrs:
        return bool(t.user_attrs[FEASIBLE])
    return all(v <= 0 for v in constraint_values(t.system_attrs).values())


class InfeasibleView(BaseSampler):
    """``sampler``, shown infeasible trials with values it can rank (see the module).

    Every other attribute (``exhausted``, a cost model's ``sources``...) is the wrapped
    sampler's.
    """

    def __init__(self, sampler: BaseSampler, directions: Sequence[str]) -> None:
        self._sampler = sampler
        self._directions = list(directions)
        self._reset(None)

    def _reset(self, study_id: int | None) -> None:
        self._study_id = study_id
        self._penalty = Penalty(self._directions)
        #: trials shown so far, in number order, all finished (they never change again)
        self._prefix: list[FrozenTrial] = []
        #: trial id -> what the sampler is shown, for finished trials past the prefix
        self._shown: dict[int, FrozenTrial] = {}

    @property
    def wrapped(self) -> BaseSampler:
        return self._sampler

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_sampler":
            raise AttributeError(name)
        return getattr(self._sampler, name)

    def __str__(self) -> str:
        return str(self._sampler)

    # -- the trials the sampler sees --------------------------------------------------------
    def _show(self, t: FrozenTrial) -> FrozenTrial:
        """The form of finished trial ``t`` the sampler sees (computed once per trial)."""
        shown = t
        if CONSTRAINTS_KEY in t.system_attrs:
            shown = copy.copy(t)
            shown.system_attrs = without_list_form(t.system_attrs)
        if t.state == TrialState.PRUNED and t.values is None and any(
                v > 0 for v in constraint_values(t.system_attrs).values()):
            shown = copy.copy(shown)
            shown.state = TrialState.COMPLETE
            shown.values = self._penalty.values()
        elif t.state == TrialState.COMPLETE and t.values is not None and _feasible(t):
            self._penalty.update(t.values)
        return shown

    def trials(self, study: Study, deepcopy: bool, states: Container[TrialState] | None,
               use_cache: bool) -> list[FrozenTrial]:
        """``study``'s trials as this sampler sees them (``Study._get_trials``' arguments)."""
        if study._study_id != self._study_id:
            self._reset(study._study_id)
        trials = Study._get_trials(study, deepcopy=False, states=None, use_cache=use_cache)
        start = len(self._prefix)
        rest: list[FrozenTrial] = []
        for t in trials[start:]:
            if t.state.is_finished():
                shown = self._shown.get(t._trial_id)
                if shown is None:
                    shown = self._shown[t._trial_id] = self._show(t)
                if not rest:  # still extending the finished prefix
                    self._prefix.append(shown)
                    del self._shown[t._trial_id]
                    continue
                rest.append(shown)
            else:
                rest.append(t)
        out = self._prefix + rest
        if states is not None:
            out = [t for t in out if t.state in states]
        return copy.deepcopy(out) if deepcopy else out

    def _view(self, study: Study) -> Study:
        return _StudyView(study, self)

    # -- the sampler interface, delegated with the view ---------------------------------------
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return self._sampler.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._sampler.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._sampler.sample_independent(self._view(study), trial, param_name,
                                                param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._sampler.before_trial(self._view(study), trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._sampler.after_trial(self._view(study), trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()


class _StudyView(optuna.Study):
    """``study`` with its trials read through an ``InfeasibleView`` (everything else shared)."""

    def __init__(self, study: Study, view: InfeasibleView) -> None:  # no Study.__init__
        self.__dict__.update(study.__dict__)
        self._tuner_view = view

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        return self._tuner_view.trials(self, deepcopy, states, use_cache)


__all__ = ["InfeasibleView", "PENALTY_FALLBACK", "Penalty"]
