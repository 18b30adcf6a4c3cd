"""Warm starts for the cost model: outcomes from a stored study or an analytical evaluator.

A prior is data (``PriorData``: configs, raw objective values, feasible flags) or a callable
``(space, candidate_values) -> PriorData`` that makes it on first use
(``prior_from_study``, ``prior_from_evaluator``). ``PriorModel`` fits small models on it:
their predictions become extra feature columns that the sampler's trees correct (a real-GPU
study starts from the simulator's ranking), and its ranking of the prior's feasible configs
is the first trials' design.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from tuner._errors import BadInput
from tuner.samplers._cost_model._acquisition import nondominated_rank
from tuner.samplers._cost_model._history import observation_from_trial
from tuner.samplers._cost_model._surrogate import FeasibilityModel, Transform, TreeEnsemble
from tuner.samplers._features import Featurizer


@dataclass
class PriorData:
    """Outcomes from another source (a prior study, a simulator) over the same parameters."""

    values: list[dict[str, Any]]
    #: (n, n_objectives) raw objective values; NaN where not measured
    y: np.ndarray
    ok: np.ndarray
    label: str = ""


class PriorModel:
    """Models fit on a prior: one tree ensemble per objective and a feasibility classifier."""

    def __init__(self, data: PriorData, featurizer: Featurizer,
                 directions: Sequence[str]) -> None:
        n_obj = len(directions)
        X = featurizer.matrix(data.values)
        y = np.asarray(data.y, dtype=float).reshape(len(data.values), -1)
        if y.shape[1] != n_obj:
            raise BadInput("sampler.options", f"the prior ({data.label}) has {y.shape[1]} "
                           f"objective(s); this study has {n_obj}")
        measured = np.all(np.isfinite(y), axis=1)
        self.data = data
        self.transforms = [Transform(y[measured, j], d) for j, d in enumerate(directions)]
        self.models = [TreeEnsemble(1, 17 + j, rounds=60).fit(X[measured],
                                                              t.forward(y[measured, j]))
                       for j, t in enumerate(self.transforms)]
        self.feasibility = FeasibilityModel(23).fit(X, np.asarray(data.ok, dtype=bool))

    @property
    def n_columns(self) -> int:
        """Width of ``columns``: one prediction per objective, then P(feasible)."""
        return len(self.models) + 1

    def columns(self, X: np.ndarray) -> np.ndarray:
        """The prior's predictions for feature rows ``X``: extra features for the sampler."""
        cols = [m.predict(X)[0] for m in self.models] + [self.feasibility.predict(X)]
        return np.column_stack(cols)

    def ranking(self, space: Any, rng: np.random.Generator) -> list[dict[str, Any]]:
        """The prior's feasible configs that ``space`` accepts, best first (Pareto layers,
        ties in random order, for several objectives)."""
        data = self.data
        y = np.asarray(data.y, dtype=float).reshape(len(data.values), -1)
        good = np.flatnonzero(np.asarray(data.ok, dtype=bool) & np.all(np.isfinite(y), axis=1))
        if not len(good):
            return []
        m = np.column_stack([t.forward(y[good, j]) for j, t in enumerate(self.transforms)])
        order = np.argsort(m[:, 0], kind="stable") if len(self.models) == 1 else np.lexsort(
            (rng.random(len(good)), nondominated_rank(m)))
        out = []
        for i in order:
            values = data.values[int(good[i])]
            vals = {k: v for k, v in values.items() if k in space.params}
            if not space.constraints(space.config(vals)):
                out.append(vals)
        return out


def load_prior(source: Any, space: Any, pool: list[dict[str, Any]], featurizer: Featurizer,
               directions: Sequence[str]) -> PriorModel | None:
    """The model of a prior given as data or as a loader; None when it holds no configs."""
    prior = source if isinstance(source, PriorData) else source(space, pool)
    if prior is None or not prior.values:
        return None
    return PriorModel(prior, featurizer, directions)


def prior_from_study(study_name: str, storage: str | None = None) -> Any:
    """A prior made of a stored study's trials (same parameters, same objectives)."""

    def load(space: Any, pool: list[dict[str, Any]]) -> PriorData:
        from tuner.storage import storage_url

        try:
            study = optuna.load_study(study_name=study_name, storage=storage_url(storage))
        except KeyError:
            raise BadInput("sampler.options.warm_start_study",
                           f"no study named {study_name!r} in the storage") from None
        values, ys, oks = [], [], []
        n = len(study.directions)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                          TrialState.FAIL)):
            obs = observation_from_trial(t, list(space.params))
            if obs is None or not obs.values:
                continue
            values.append(obs.values)
            ys.append(obs.y if obs.y is not None else (math.nan,) * n)
            oks.append(obs.ok)
        return PriorData(values, np.array(ys, dtype=float).reshape(len(ys), n),
                         np.array(oks, dtype=bool), f"study {study_name}")

    return load


def prior_from_evaluator(name: str, metrics: Sequence[str], options: Mapping[str, Any] | None
                         = None, samples: int = 1000, seed: int = 0,
                         context: Mapping[str, Any] | None = None) -> Any:
    """A prior made by scoring up to ``samples`` valid configs with an (analytical) evaluator.

    ``context`` overrides context keys for the prior only: another GPU, a shorter workload (a
    cheaper, lower-fidelity simulation), a smaller model.
    """

    def load(space: Any, pool: list[dict[str, Any]]) -> PriorData:
        from tuner.registry import make_evaluator

        evaluator = make_evaluator(name, dict(options or {}))
        evaluator.setup()
        chosen = pool if len(pool) <= samples else random.Random(seed).sample(pool, samples)
        ys, oks = [], []
        try:
            for values in chosen:
                try:
                    res = evaluator.evaluate({**space.config(values), **dict(context or {})})
                except Exception:  # a broken prior point is missing data, not a failed study
                    ys.append((math.nan,) * len(metrics))
                    oks.append(False)
                    continue
                status = getattr(res.status, "value", res.status)
                vals = tuple(float(res.metrics.get(m, math.nan)) for m in metrics)
                ys.append(vals if status == "ok" else (math.nan,) * len(metrics))
                oks.append(status == "ok" and all(math.isfinite(v) for v in vals))
        finally:
            evaluator.teardown()
        return PriorData(list(chosen), np.array(ys, dtype=float).reshape(len(ys), len(metrics)),
                         np.array(oks, dtype=bool), f"evaluator {name}")

    return load


#: a screen scores at most this many valid configs (the enumeration order's first ones)
SCREEN_LIMIT = 1_000_000


def prior_from_screen(name: str, metrics: Sequence[str], options: Mapping[str, Any] | None
                      = None, context: Mapping[str, Any] | None = None,
                      limit: int = SCREEN_LIMIT) -> Any:
    """A prior made by scoring *every* valid config of the space with an analytical sibling
    evaluator (``kernel-sim`` for ``kernel-gpu``/``kernel-replay``, ``quant-sim`` for
    ``quant-real``, ``serving-sim`` for ``serving-real``), in batches, as a sweep does: the
    first trials then follow the sibling's full ranking.

    ``context`` overrides context keys for the screen only.
    """
    from tuner.registry import EVALUATORS, resolve

    cls = resolve("sampler.screen.evaluator", EVALUATORS, name)
    if not getattr(cls, "analytical", False):
        raise BadInput("sampler.screen.evaluator", f"{name} is not analytical; a screen scores "
                       "every valid config, so it takes a simulator (kernel-sim, quant-sim, "
                       "serving-sim, training-sim)")

    def load(space: Any, pool: list[dict[str, Any]]) -> PriorData:
        from tuner._sweep_pool import evaluate_many
        from tuner.registry import make_evaluator

        evaluator = make_evaluator(name, dict(options or {}))
        evaluator.setup()
        values: list[dict[str, Any]] = []
        ys: list[tuple[float, ...]] = []
        oks: list[bool] = []
        nan = (math.nan,) * len(metrics)

        def score(batch: list[dict[str, Any]]) -> None:
            configs = [{**space.config(v), **dict(context or {})} for v in batch]
            for v, res in zip(batch, evaluate_many(evaluator, configs)):
                vals = tuple(float(res.metrics.get(m, math.nan)) for m in metrics)
                good = res.status.value == "ok" and all(math.isfinite(x) for x in vals)
                values.append(v)
                ys.append(vals if good else nan)
                oks.append(good)

        try:
            batch: list[dict[str, Any]] = []
            for i, cfg in enumerate(space.enumerate(valid_only=True)):
                if i >= limit:
                    break
                batch.append(space.param_values(cfg))
                if len(batch) >= 512:
                    score(batch)
                    batch = []
            if batch:
                score(batch)
        finally:
            evaluator.teardown()
        return PriorData(values, np.array(ys, dtype=float).reshape(len(ys), len(metrics)),
                         np.array(oks, dtype=bool), f"screen {name} ({len(values)} configs)")

    return load


__all__ = ["PriorData", "PriorModel", "SCREEN_LIMIT", "load_prior", "prior_from_evaluator",
           "prior_from_screen", "prior_from_study"]
