"""The contract checks themselves: plain functions raising AssertionError with a reason."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import optuna

from tuner._errors import BadInput
from tuner._evaluator import BaseEvaluator, EvalResult, Status
from tuner._space import BaseSpace


def check_space(space: BaseSpace, n: int = 30, seed: int = 0) -> None:
    assert space.params or space.fixed, f"{space.name}: no parameters"
    rng = random.Random(seed)
    for _ in range(n):
        cfg = space.sample(rng)
        for k, v in space.context.items():
            assert cfg[k] == v, f"{space.name}: config lost context key {k!r}"
        reasons = space.constraints(cfg)
        assert isinstance(reasons, list) and all(isinstance(r, str) and r for r in reasons), \
            f"{space.name}: constraints() must return a list of non-empty strings"
        feats = space.features(cfg)
        assert all(isinstance(v, (int, float)) for v in feats.values()), \
            f"{space.name}: features() must be numeric"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(5):
        trial = study.ask()
        cfg = space.suggest(trial)
        assert set(space.param_values(cfg)) <= set(space.params)
        study.tell(trial, 0.0)
    json.dumps(space.schema())
    if space.is_finite():
        it = space.enumerate(valid_only=True)
        for cfg in _take(it, 50):
            assert space.constraints(cfg) == [], f"{space.name}: enumerate() yielded an " \
                "invalid config"


def _take(it: Iterator[Any], n: int) -> list[Any]:
    out = []
    for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out


def evaluator_cases(space: BaseSpace, n: int = 12, seed: int = 0) -> list[dict[str, Any]]:
    """Valid configs first (when the space is finite), then random ones."""
    rng = random.Random(seed)
    cases = _take(space.enumerate(valid_only=True), n // 2) if space.is_finite() else []
    cases += [space.sample(rng) for _ in range(n - len(cases))]
    return cases


def check_input_checks(cls: type, options: dict[str, Any], config: dict[str, Any] | None
                       ) -> None:
    """Bad input is refused before anything runs: an unknown option (and, when the evaluator
    takes a config of a domain, an unknown config key) raises ``BadInput`` naming it."""
    assert cls.options_table is not None, f"{cls.name}: declare options_table (an empty " \
        "dict when it takes no options)"
    try:
        cls(**{**options, "zz_not_an_option": 1})
    except BadInput as exc:
        assert "zz_not_an_option" in str(exc), f"{cls.name}: {exc} does not name the option"
    else:
        raise AssertionError(f"{cls.name} accepted an unknown option")
    if config is None:
        return
    evaluator = cls(**options)
    bad = {**config, "zz_not_a_key": 1}
    try:
        evaluator.check_config(bad)
        if cls.config_keys is None:  # the evaluator checks its keys itself
            evaluator.evaluate(bad)
    except BadInput as exc:
        assert "zz_not_a_key" in str(exc), f"{cls.name}: {exc} does not name the key"
    else:
        raise AssertionError(f"{cls.name} accepted an unknown config key")


def check_evaluator(evaluator: BaseEvaluator, configs: list[dict[str, Any]]) -> None:
    assert evaluator.name, "evaluator has no name"
    fp = evaluator.fingerprint()
    assert fp == evaluator.fingerprint(), "fingerprint() is not stable"
    for cfg in configs:
        try:
            res = evaluator.evaluate(cfg)
        except BadInput as exc:  # allowed only for input the user must fix
            raise AssertionError(f"{evaluator.name} raised BadInput on a config its space "
                                 f"produced: {exc}") from None
        assert isinstance(res, EvalResult), f"{evaluator.name} returned {type(res)}"
        if res.status == Status.OK:
            for m in evaluator.metrics:
                assert m in res.metrics, f"{evaluator.name}: ok result lacks metric {m!r}"
                assert math.isfinite(res.metrics[m]), f"{evaluator.name}: {m} not finite"
        else:
            assert res.reason, f"{evaluator.name}: {res.status.value} result without a reason"
        json.dumps(res.to_json(artifacts=True), default=str)


def check_sampler(factory: Callable[..., Any], space: BaseSpace, directions: list[str],
                  n_trials: int = 12, seed: int = 0) -> None:
    """The sampler drives an ask/tell loop and proposes values inside the space."""
    sampler = factory(space, directions, seed)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    study = optuna.create_study(directions=directions, sampler=sampler)
    rng = random.Random(seed)
    for i in range(n_trials):
        trial = study.ask()
        cfg = space.suggest(trial)
        for name, value in space.param_values(cfg).items():
            assert space.contains({name: value}, check_constraints=False), \
                f"{name}={value!r} outside {space.schema()[name]}"
        if i % 5 == 4:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        trial.set_constraint("feasible", 0.0)
        study.tell(trial, [rng.random() for _ in directions])
