"""The learned cost-model sampler on small synthetic spaces with known optima."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

import optuna
import pytest

from tuner import BadInput
from tuner._space import BaseSpace, Categorical, Float, Int
from tuner.samplers import make_sampler
from tuner.samplers._cost_model import (
    POINT_ATTR,
    SOURCE_ATTR,
    CostModelSampler,
    PriorData,
    cost_model,
)
from tuner.testing import check_sampler
from tuner.testing.toys import ToySpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


class TileSpace(BaseSpace):
    """A GEMM-tile-like space: powers of two, a shared-memory rule, a derived feature."""

    name = "tiles"

    def parameters(self) -> dict[str, Any]:
        return {"bm": Categorical((16, 32, 64, 128, 256)), "bn": Categorical((16, 32, 64, 128,
                                                                               256)),
                "bk": Categorical((16, 32, 64, 128)), "warps": Categorical((2, 4, 8)),
                "stages": Int(1, 5), "order": Categorical(("row", "col", "swizzle"))}

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        smem = config["stages"] * (config["bm"] + config["bn"]) * config["bk"] * 2
        return [f"smem {smem} > 131072"] if smem > 131072 else []

    def features(self, config: Mapping[str, Any]) -> dict[str, float]:
        return {"tile_area": float(config["bm"] * config["bn"])}


def tile_time(c: Mapping[str, Any]) -> float | None:
    """Smooth-ish runtime with interactions; None (OOM) for large tiles with few warps."""
    if c["bm"] * c["bn"] // (32 * c["warps"]) > 512:
        return None  # "register spill": infeasible, learned not repeated
    t = 100.0 + 3.0 * abs(math.log2(c["bm"]) - 7) ** 2 + 2.0 * abs(math.log2(c["bn"]) - 6) ** 2
    t += 4.0 * abs(c["stages"] - 3) + 1.5 * abs(math.log2(c["bk"]) - 5)
    t += {"row": 3.0, "col": 5.0, "swizzle": 0.0}[c["order"]] + 2.0 * (c["warps"] != 4)
    return t


def run_loop(space: BaseSpace, sampler: optuna.samplers.BaseSampler, fn, n: int,
             directions=("minimize",)) -> optuna.Study:
    """The runner's conventions: infeasible = COMPLETE + penalty + constraints > 0."""
    study = optuna.create_study(directions=list(directions), sampler=sampler)
    worst = None
    for _ in range(n):
        trial = study.ask()
        cfg = space.suggest(trial)
        reasons = space.constraints(cfg)
        value = None if reasons else fn(cfg)
        if value is None:
            trial.set_user_attr("status", "infeasible")
            trial.set_user_attr("feasible", False)
            trial.set_constraint("feasible", 1.0)
            pen = worst if worst is not None else [1e12] * len(directions)
            study.tell(trial, pen)
            continue
        vals = list(value) if isinstance(value, tuple) else [value]
        trial.set_user_attr("status", "ok")
        trial.set_user_attr("feasible", True)
        trial.set_constraint("feasible", 0.0)
        worst = vals if worst is None else [max(a, b) for a, b in zip(worst, vals)]
        study.tell(trial, vals)
    return study


def optimum(space: BaseSpace, fn) -> float:
    return min(v for c in space.enumerate() if (v := fn(c)) is not None)


def evals_to(study: optuna.Study, target: float) -> int:
    for t in study.trials:
        if t.user_attrs.get("feasible") and t.values[0] <= target:
            return t.number + 1
    return 10**6


def test_registry_factory_and_contract():
    space = ToySpace({"max_sum": 30})
    sampler = make_sampler("cost-model", space, ["maximize"], 0)
    assert isinstance(sampler, CostModelSampler)
    check_sampler(cost_model, space, ["maximize"])
    check_sampler(cost_model, space, ["maximize", "minimize"])


def test_unknown_or_bad_option_names_the_field():
    space = TileSpace()
    with pytest.raises(BadInput, match="sampler.options.n_trees"):
        cost_model(space, ["minimize"], 0, n_trees=3)
    with pytest.raises(BadInput, match="sampler.options.epsilon"):
        cost_model(space, ["minimize"], 0, epsilon="high")
    with pytest.raises(BadInput, match="prior_metrics"):
        cost_model(ToySpace(), ["maximize", "minimize"], 0,
                   prior_evaluator="tuner.testing.toys:ToyEvaluator")


def test_proposals_are_valid_distinct_and_find_the_optimum_faster_than_random():
    space = TileSpace()
    best = optimum(space, tile_time)
    ours, rand = [], []
    for seed in range(3):
        study = run_loop(space, cost_model(space, ["minimize"], seed), tile_time, 80)
        keys = [tuple(sorted(t.params.items())) for t in study.trials]
        assert len(set(keys)) == len(keys), "a config was proposed twice"
        assert all(not space.constraints(t.user_attrs.get("config") or space.config(t.params))
                   for t in study.trials), "screening lets no invalid config through"
        sources = [t.system_attrs[SOURCE_ATTR] for t in study.trials]
        assert sources[:8] == ["startup"] * 8 and "model" in sources
        ours.append(evals_to(study, best * 1.01))
        rstudy = run_loop(space, optuna.samplers.RandomSampler(seed=seed), tile_time, 80)
        rand.append(evals_to(rstudy, best * 1.01))
    assert statistics.median(ours) <= 60, ours
    assert statistics.median(ours) < statistics.median(rand), (ours, rand)


def test_infeasible_region_is_learned_not_repeated():
    space = TileSpace()
    infeasible_rate = {}
    for name, factory in (("cost-model", lambda s: cost_model(space, ["minimize"], s)),
                          ("random", lambda s: optuna.samplers.RandomSampler(seed=s))):
        rates = []
        for seed in range(2):
            study = run_loop(space, factory(seed), tile_time, 60)
            late = study.trials[20:]
            rates.append(sum(not t.user_attrs["feasible"] for t in late) / len(late))
        infeasible_rate[name] = statistics.mean(rates)
    # random also wastes trials on the space's own smem rule; the model wastes (almost) none
    assert infeasible_rate["cost-model"] < 0.5 * infeasible_rate["random"], infeasible_rate


def test_failed_trials_count_as_infeasible_examples():
    space = TileSpace()
    sampler = cost_model(space, ["minimize"], 0, n_startup=4)
    study = optuna.create_study(sampler=sampler)
    for i in range(12):
        trial = study.ask()
        cfg = space.suggest(trial)
        if i % 2:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # crashes
        else:
            study.tell(trial, tile_time(cfg) or 1e6)
    sampler._sync(study)
    failed = [o for o in sampler._obs.values() if not o.ok and o.y is None]
    assert len(failed) == 6, "every FAIL trial is a negative example for the classifier"


def test_pending_trials_get_distinct_proposals():
    """Several workers ask before any result is in: no two get the same config."""
    space = TileSpace()
    sampler = cost_model(space, ["minimize"], 0)
    study = run_loop(space, sampler, tile_time, 20)
    asked = [study.ask() for _ in range(6)]
    configs = [tuple(sorted(space.param_values(space.suggest(t)).items())) for t in asked]
    assert len(set(configs)) == 6
    done = {tuple(sorted(t.params.items())) for t in study.trials if t.state.is_finished()}
    assert not done & set(configs)
    for t in asked:
        assert study._storage.get_trial(t._trial_id).system_attrs[POINT_ATTR]


def test_batch_option_queues_proposals():
    space = TileSpace()
    sampler = cost_model(space, ["minimize"], 0, batch=4)
    run_loop(space, sampler, tile_time, 30)
    after_startup = sum(sampler.sources.get(k, 0) for k in ("model", "trust", "explore"))
    assert after_startup == 22


def test_multi_objective_beats_random_hypervolume():
    from tuner._pareto import hypervolume

    space = TileSpace()

    def two(c):
        t = tile_time(c)
        return None if t is None else (t, float(c["bm"] * c["bn"] * c["stages"]) / 1e3)

    ref = [400.0, 400.0]
    hv = {}
    for name, sampler in (("cost-model", cost_model(space, ["minimize", "minimize"], 0)),
                          ("random", optuna.samplers.RandomSampler(seed=0))):
        study = run_loop(space, sampler, two, 50, directions=("minimize", "minimize"))
        pts = [t.values for t in study.trials if t.user_attrs["feasible"]]
        hv[name] = hypervolume(pts, ["minimize", "minimize"], ref)
    truth = [v for c in space.enumerate() if (v := two(c)) is not None]
    hv_true = hypervolume(truth, ["minimize", "minimize"], ref)
    assert hv["cost-model"] > hv["random"], hv
    assert hv["cost-model"] >= 0.95 * hv_true, (hv, hv_true)


class CondSpace(BaseSpace):
    """A continuous space with a conditional parameter."""

    name = "cond"

    def parameters(self) -> dict[str, Any]:
        return {"x": Float(-4.0, 4.0), "lr": Float(1e-4, 1e-1, log=True),
                "opt": Categorical(("sgd", "adam")),
                "momentum": Float(0.0, 0.99, when={"opt": ("sgd",)})}

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        return ["x > 3.5"] if config["x"] > 3.5 else []


def cond_loss(c: Mapping[str, Any]) -> float:
    loss = (c["x"] - 1.0) ** 2 + (math.log10(c["lr"]) + 2.5) ** 2
    if c["opt"] == "sgd":
        loss += 0.5 + (c["momentum"] - 0.9) ** 2
    return loss


def test_continuous_and_conditional_space():
    space = CondSpace()
    study = run_loop(space, cost_model(space, ["minimize"], 1), cond_loss, 50)
    for t in study.trials:
        assert ("momentum" in t.params) == (t.params["opt"] == "sgd")
        assert t.params["x"] <= 3.5
    rand = run_loop(space, optuna.samplers.RandomSampler(seed=1), cond_loss, 50)
    assert study.best_value < rand.best_value
    assert study.best_value < 0.2


def test_exhausted_after_every_valid_config():
    space = TileSpace(overrides={"bm": {"choices": [64]}, "bn": {"choices": [64]},
                                 "bk": {"choices": [32]}, "warps": {"choices": [4]},
                                 "stages": {"choices": [2, 3]}})
    sampler = cost_model(space, ["minimize"], 0)
    study = optuna.create_study(sampler=sampler)
    n_valid = len(list(space.enumerate()))
    for _ in range(n_valid):
        assert not sampler.exhausted(study)
        trial = study.ask()
        study.tell(trial, tile_time(space.suggest(trial)))
    assert sampler.exhausted(study)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == n_valid


def test_warm_start_from_prior_data_starts_from_its_ranking():
    space = TileSpace()
    configs = [space.param_values(c) for c in space.enumerate()][::3]
    # a simulator that is right about the ranking but off by a constant factor
    ys = [[(tile_time(space.config(v)) or math.nan) * 0.7] for v in configs]
    ok = [not math.isnan(y[0]) for y in ys]
    prior = PriorData(configs, ys, ok, "simulator")
    sampler = CostModelSampler(space, ["minimize"], 0, prior=prior)
    study = run_loop(space, sampler, tile_time, 8)
    ranked = sorted((y[0], i) for i, y in enumerate(ys) if ok[i])
    top = [configs[i] for _, i in ranked[:8]]
    assert [t.params for t in study.trials[:8]] == top
    assert all(t.system_attrs[SOURCE_ATTR] == "prior" for t in study.trials[:8])


def test_warm_start_from_a_stored_study(tmp_path):
    space = TileSpace()
    url = f"sqlite:///{tmp_path / 'prior.db'}"
    prior_study = optuna.create_study(study_name="sim", storage=url,
                                      sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(40):
        t = prior_study.ask()
        cfg = space.suggest(t)
        v = None if space.constraints(cfg) else tile_time(cfg)
        if v is None:
            prior_study.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            prior_study.tell(t, v)
    best_prior = min((t for t in prior_study.trials if t.values), key=lambda t: t.values[0])
    sampler = cost_model(space, ["minimize"], 0, warm_start_study="sim",
                         warm_start_storage=url)
    study = run_loop(space, sampler, tile_time, 3)
    assert study.trials[0].params == best_prior.params


def test_warm_start_from_an_analytical_evaluator():
    space = ToySpace({"max_sum": 30})
    sampler = cost_model(space, ["maximize"], 0,
                         prior_evaluator="tuner.testing.toys:ToyEvaluator")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trial = study.ask()
    cfg = space.suggest(trial)
    # the prior is the true model here, so the first proposal is the optimum (14, 6, b)
    assert (cfg["x"], cfg["y"], cfg["mode"]) == (14, 6, "b")


def test_sampled_mode_for_large_spaces():
    space = TileSpace()
    sampler = cost_model(space, ["minimize"], 0, max_enumerate=10, n_candidates=300)
    study = run_loop(space, sampler, tile_time, 40)
    assert not sampler._enumerated
    keys = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(keys)) == len(keys)
    assert study.best_value < optimum(space, tile_time) * 1.10


def test_runner_with_parallel_workers_gets_no_repeats():
    """Through the real runner (process pool, 2 workers): pending trials are never re-proposed,
    so no trial is a cache hit of another."""
    from conftest import toy_study

    from tuner.runner import Runner
    from tuner.spec import parse_spec
    from tuner.storage import load_study

    spec = toy_study(name="cm-workers", trials=24, sampler={"name": "cost-model"}, workers=2)
    summary = Runner(parse_spec(spec), progress=False).run()
    assert summary.trials_total == 24 and summary.cached == 0, summary
    trials = load_study("cm-workers").trials
    keys = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(keys)) == len(keys)
    assert sum(t.system_attrs.get(SOURCE_ATTR) == "model" for t in trials) >= 10


def test_metric_constraint_values_are_modeled():
    """A constraint on a measured metric (here the tile area) is learned from its values: the
    sampler proposes few violators and finds the best config within the limit."""
    space = TileSpace()
    limit = 64 * 64
    study = optuna.create_study(sampler=cost_model(space, ["minimize"], 0))
    for _ in range(50):
        trial = study.ask()
        cfg = space.suggest(trial)
        t = None if space.constraints(cfg) else tile_time(cfg)
        if t is None:
            trial.set_user_attr("status", "infeasible")
            trial.set_user_attr("feasible", False)
            trial.set_constraint("feasible", 1.0)
            study.tell(trial, 1e3)
            continue
        violation = float(cfg["bm"] * cfg["bn"] - limit)
        trial.set_user_attr("status", "ok")
        trial.set_user_attr("feasible", violation <= 0)
        trial.set_constraint(f"area <= {limit}", violation)
        study.tell(trial, t)
    sampler = study.sampler
    sampler._sync(study)
    assert any(o.cons for o in sampler._obs.values()), "constraint values are read"
    late = study.trials[25:]
    assert sum(not t.user_attrs["feasible"] for t in late) <= 8
    best = min(t.values[0] for t in study.trials if t.user_attrs["feasible"])
    truth = min(v for c in space.enumerate() if c["bm"] * c["bn"] <= limit
                and (v := tile_time(c)) is not None)
    assert best <= truth * 1.02, (best, truth)


def test_prior_context_must_be_a_table():
    with pytest.raises(BadInput, match="prior_context"):
        cost_model(ToySpace(), ["maximize"], 0, prior_evaluator="tuner.testing.toys:ToyEvaluator",
                   prior_context="gpu=a100")
