"""The grid sampler: every valid point once, resumable, and a proposal that costs the same at
trial 4,000 as at trial 10 (the study's trials are read once, not per proposal)."""

from __future__ import annotations

import optuna
from optuna.study import Study

from tuner.samplers._grid import SpaceGridSampler
from tuner.testing.toys import ToySpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _loop(study: optuna.Study, space: ToySpace, n: int) -> list[tuple]:
    keys = []
    for _ in range(n):
        trial = study.ask()
        cfg = space.suggest(trial)
        keys.append(tuple(sorted(space.param_values(cfg).items())))
        study.tell(trial, 1.0)
    return keys


def test_every_valid_point_once_then_exhausted():
    space = ToySpace({"max_sum": 10}, {"mode": {"fixed": "b"}})
    sampler = SpaceGridSampler(space, seed=1)
    study = optuna.create_study(sampler=sampler)
    keys = _loop(study, space, sampler.size)
    assert len(set(keys)) == sampler.size == 66  # x + y <= 10 over 0..20 x 0..20
    assert sampler.exhausted(study)


def test_a_resumed_sweep_continues_where_it_stopped():
    space = ToySpace({"max_sum": 10}, {"mode": {"fixed": "b"}})
    study = optuna.create_study(sampler=SpaceGridSampler(space, seed=1))
    first = _loop(study, space, 30)
    resumed = optuna.create_study(sampler=SpaceGridSampler(space, seed=1))
    resumed.add_trials(study.trials)
    second = _loop(resumed, space, 36)
    assert not set(first) & set(second) and len(set(first) | set(second)) == 66


def test_the_studys_trials_are_read_once_not_per_proposal(monkeypatch):
    import sys

    space = ToySpace({"max_sum": 40})  # 21 x 21 x 3 = 1323 points, all valid
    sampler = SpaceGridSampler(space, seed=0)
    study = optuna.create_study(sampler=sampler)
    reads = []

    def counting(real):
        def read(self, *args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__") == "tuner.samplers._grid":
                reads.append(1)  # a read of all trials made by the grid sampler itself
            return real(self, *args, **kwargs)
        return read

    monkeypatch.setattr(Study, "_get_trials", counting(Study._get_trials))
    monkeypatch.setattr(Study, "get_trials", counting(Study.get_trials))
    _loop(study, space, 1200)
    assert sampler.exhausted(study) is False
    # one read at the start, one more after RESYNC (1000) proposals: not one per proposal
    assert len(reads) == 2, len(reads)
