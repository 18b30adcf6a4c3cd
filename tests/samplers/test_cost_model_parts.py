"""The cost model's parts, alone: history, candidate universe, prior, objective transform."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
import pytest

from tuner import BadInput
from tuner._space import BaseSpace, Categorical, Float, Int
from tuner.samplers._cost_model._history import History, observation_from_trial
from tuner.samplers._cost_model._prior import PriorData, PriorModel, load_prior
from tuner.samplers._cost_model._surrogate import Transform
from tuner.samplers._cost_model._universe import (
    Universe,
    grid_size,
    initial_pool,
    random_valid,
    shared_featurizer,
    valid_grid,
)
from tuner.samplers._features import values_key

optuna.logging.set_verbosity(optuna.logging.WARNING)


class SumSpace(BaseSpace):
    """x, y in 0..9 with x + y <= 12; ``z`` only when x is even."""

    name = "sum"

    def parameters(self) -> dict[str, Any]:
        return {"x": Int(0, 9), "y": Int(0, 9),
                "z": Categorical(("p", "q"), when={"x": (0, 2, 4, 6, 8)})}

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        return ["x + y > 12"] if config["x"] + config["y"] > 12 else []

    def features(self, config: Mapping[str, Any]) -> dict[str, float]:
        return {"sum": float(config["x"] + config["y"])}


def test_grid_size_counts_conditional_parameters():
    space = SumSpace()
    assert grid_size(space, 1000) == 10 * 10 * 2  # the plain product, under the limit
    # over the limit, conditional grids are counted (5 odd x without z, 5 even with it)
    assert grid_size(space, 160) == 150
    assert grid_size(space, 100) == math.inf
    assert grid_size(BaseSpaceWithFloat(), 10**6) == math.inf


class BaseSpaceWithFloat(BaseSpace):
    name = "float"

    def parameters(self) -> dict[str, Any]:
        return {"a": Float(0.0, 1.0)}

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        return []


def test_initial_pool_enumerates_small_spaces_and_samples_large_ones():
    space = SumSpace()
    pool, enumerated = initial_pool(space, random.Random(0), 1000, 50, set())
    assert enumerated and len(pool) == len(list(space.enumerate()))
    invalid: set[Any] = set()
    pool, enumerated = initial_pool(space, random.Random(0), 10, 30, invalid)
    assert not enumerated and len(pool) == 30
    assert len({values_key(v) for v in pool}) == 30
    assert all(not space.constraints(space.config(v)) for v in pool)
    assert invalid, "rejected draws are remembered"
    assert all(k not in {values_key(v) for v in pool} for k in invalid)


def test_random_valid_never_returns_a_known_invalid_config():
    space = SumSpace()
    invalid = {values_key(space.param_values(c)) for c in space.enumerate(valid_only=False)
               if space.constraints(c)}
    out = random_valid(space, random.Random(1), 200, invalid)
    assert all(values_key(v) not in invalid for v in out)


def test_valid_grid_and_featurizer_are_shared_per_space():
    a, b = SumSpace(), SumSpace()
    grid = valid_grid(a)
    grid[0]["x"] = -1  # callers get copies
    assert valid_grid(b)[0]["x"] != -1
    assert shared_featurizer(a, grid[:5]) is shared_featurizer(b, [])


def test_universe_rows_flags_growth_and_extra_columns():
    space = SumSpace()
    feat = shared_featurizer(space, valid_grid(space)[:20])
    calls = []

    def columns(X: np.ndarray) -> np.ndarray:
        calls.append(len(X))
        return np.full((len(X), 2), 7.0)

    pool = [{"x": 1, "y": 1}, {"x": 3, "y": 2}]
    u = Universe(space, feat, pool, enumerated=False, columns=columns, n_columns=2)
    assert u.n == 2 and u.X.shape[1] == feat.width + 2 and calls == [2]
    assert np.all(u.X[:2, -2:] == 7.0) and u.in_pool[:2].all() and u.valid[:2].all()
    # known configs keep their row; an invalid new one is added as not valid, not in the pool
    assert u.row({"y": 1, "x": 1}) == 0
    bad = u.row({"x": 9, "y": 9})
    assert bad == 2 and not u.valid[bad] and not u.in_pool[bad]
    # growth past the initial capacity keeps every row
    more = [{"x": x, "y": y} for x in (1, 3, 5, 7, 9) for y in range(4)]
    rows = u.add(more, valid=True, in_pool=True)
    assert len(set(rows)) == len(more) and u.n >= 2 + len(more) - 2
    assert u.values[u.index[values_key({"x": 7, "y": 3})]] == {"x": 7, "y": 3}
    taken = np.zeros(3, dtype=bool)
    assert len(u.pad(taken)) == u.n
    assert set(u.free_pool(u.pad(taken))) == {i for i in range(u.n) if u.in_pool[i]}


def test_universe_local_moves_are_valid_and_checked_once():
    space = SumSpace()
    pool = [{"x": 5, "y": 5}]
    u = Universe(space, shared_featurizer(space, pool), pool, enumerated=False)
    rows = u.local_rows([{"x": 8, "y": 4, "z": "p"}], 30, random.Random(0))
    assert rows and all(u.valid[r] for r in rows)
    assert all(not space.constraints(space.config(u.values[r])) for r in rows)
    assert u.invalid, "moves past x + y = 12 are rejected and remembered"


def _trial(study: optuna.Study, params: dict[str, Any], value: float | None,
           **attrs: Any) -> None:
    study.enqueue_trial(params)
    t = study.ask()
    for k in params:
        t.suggest_int(k, 0, 9)
    for k, v in attrs.items():
        if k == "constraint":
            t.set_constraint(*v)
        else:
            t.set_user_attr(k, v)
    if value is None:
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(t, value)


def test_observations_follow_the_runner_conventions():
    study = optuna.create_study()
    _trial(study, {"x": 1, "y": 2}, 3.0, status="ok", feasible=True,
           constraint=("mem <= 80", -4.0))
    _trial(study, {"x": 2, "y": 2}, 1e12, status="infeasible", feasible=False)
    _trial(study, {"x": 3, "y": 2}, None)
    _trial(study, {"x": 4, "y": 2}, 5.0)  # a plain Optuna trial
    o = [observation_from_trial(t, ["x", "y"]) for t in study.trials]
    assert o[0] is not None and o[0].y == (3.0,) and o[0].ok
    assert o[0].cons == {"mem <= 80": -4.0}
    assert o[1] is not None and o[1].y is None and not o[1].ok
    assert o[2] is not None and o[2].y is None and not o[2].ok
    assert o[2].values == {"x": 3, "y": 2}
    assert o[3] is not None and o[3].y == (5.0,) and o[3].ok


def test_history_sync_parses_each_trial_once_and_returns_pending_rows():
    study = optuna.create_study()
    _trial(study, {"x": 1, "y": 2}, 3.0)
    running = study.ask()
    rows: list[dict[str, Any]] = []

    def row_of(values: dict[str, Any]) -> int:
        rows.append(values)
        return len(rows) - 1

    h = History(["x", "y"])
    pending = h.sync(study, row_of, {running._trial_id: {"x": 4, "y": 4}})
    assert list(h.obs) == [0] and h.rows == {0: 0} and pending == [1]
    assert rows[1] == {"x": 4, "y": 4}, "this process's proposal is the pending config"
    h.sync(study, row_of, {})
    assert len(h.obs) == 1 and h.n_measured() == 1
    obs, ok, measured, raw = h.arrays(1)
    assert ok.tolist() == [True] and measured.tolist() == [True] and raw.tolist() == [[3.0]]


def test_transform_round_trip_and_direction():
    raw = np.array([10.0, 100.0, 1000.0])
    t = Transform(raw, "maximize")
    z = t.forward(raw)
    assert t.log and z[0] > z[1] > z[2]  # larger is better: smaller standardized value
    assert np.allclose(-t.to_raw_min(z), raw)
    lin = Transform(np.array([-1.0, 0.0, 1.0]), "minimize")
    assert not lin.log and np.allclose(lin.to_raw_min(lin.forward(np.array([0.5]))), [0.5])


def test_prior_model_ranks_feasible_configs_and_supplies_feature_columns():
    space = SumSpace()
    grid = valid_grid(space)
    feat = shared_featurizer(space, grid[:50])
    values = grid[:40] + [{"x": 9, "y": 9}]  # the last one the space rejects
    y = np.array([[float(v["x"] + v["y"])] for v in values])
    ok = np.array([v["x"] != 0 for v in values])
    prior = load_prior(PriorData(values, y, ok, "test"), space, grid, feat, ["minimize"])
    assert isinstance(prior, PriorModel) and prior.n_columns == 2
    cols = prior.columns(feat.matrix(values[:3]))
    assert cols.shape == (3, 2) and np.all((cols[:, 1] > 0) & (cols[:, 1] < 1))
    ranked = prior.ranking(space, np.random.default_rng(0))
    sums = [v["x"] + v["y"] for v in ranked]
    assert sums == sorted(sums) and all(v["x"] != 0 for v in ranked)
    assert {"x": 9, "y": 9} not in ranked
    assert load_prior(lambda s, pool: PriorData([], np.empty((0, 1)), np.empty(0)), space,
                      grid, feat, ["minimize"]) is None


def test_prior_with_another_number_of_objectives_is_refused():
    space = SumSpace()
    grid = valid_grid(space)
    data = PriorData(grid[:5], np.ones((5, 2)), np.ones(5, dtype=bool), "two")
    with pytest.raises(BadInput, match="2 objective"):
        PriorModel(data, shared_featurizer(space, grid), ["minimize"])
