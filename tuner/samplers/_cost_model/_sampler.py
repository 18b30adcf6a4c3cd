"""Learned cost-model sampler: boosted trees screen thousands of candidates per trial.

In the style of AutoTVM/Ansor's XGBoost cost models and DeepSpeed's model-based tuner:

1. **Candidates.** Every valid config when the space is small enough to enumerate (checked
   with the space's free ``constraints()``), otherwise a pool of random valid configs; plus
   adjacent values and random mutations of the best configs (or the Pareto set).
2. **Models.** One ``TreeEnsemble`` per objective fit on the measured trials (log scale for
   positive metrics), and a ``FeasibilityModel`` fit on every finished trial, so OOMs, crashes
   and constraint violations are learned, not repeated.
3. **Acquisition.** Expected improvement (one objective) or hypervolume improvement of the
   optimistic prediction (several), times P(feasible); with probability ``epsilon`` a random
   candidate instead (explicit exploration).
4. **Parallel workers.** RUNNING trials are pending: their configs are never proposed again
   and their predicted values are believed (kriging believer), so a batch of asks gets
   distinct, diverse proposals.
5. **Warm start.** From a prior study (``warm_start_study``) or an analytical evaluator
   (``prior_evaluator``): the first trials follow the prior's ranking and the prior's
   predictions become features the trees correct (a real-GPU study starts from the
   simulator's ranking).

The proposal is made in ``before_trial`` and handed out parameter by parameter through
``sample_independent``, so conditional parameters work like in any Optuna sampler.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import BadInput
from tuner.samplers._features import (Featurizer, Neighborhood, config_key, maximin_subset,
                                      point_value)
from tuner.samplers._cost_model._surrogate import (
    FeasibilityModel,
    TreeEnsemble,
    expected_improvement,
    hypervolume_improvement,
    nondominated_rank,
    pareto_front,
)

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
    plain Optuna trials work too (COMPLETE = measured, constraints <= 0 = feasible)."""
    values = {k: v for k, v in t.params.items() if k in params}
    if t.state == TrialState.FAIL:
        return Observation(values, None, False)
    if t.state != TrialState.COMPLETE or t.values is None:
        return None
    status = t.user_attrs.get("status", "ok")
    constraints = t.constraints  # Optuna's values (trial.set_constraint), <= 0 when satisfied
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


class _Transform:
    """Raw objective -> standardized "smaller is better" scale (log for positive metrics)."""

    def __init__(self, raw: np.ndarray, direction: str) -> None:
        self.sign = 1.0 if direction == "minimize" else -1.0
        self.log = bool(len(raw)) and bool(np.all(raw > 0))
        z = self._z(raw)
        self.mean = float(np.mean(z)) if len(z) else 0.0
        self.sd = float(np.std(z)) if len(z) > 1 and np.std(z) > 0 else 1.0

    def _z(self, raw: np.ndarray) -> np.ndarray:
        z = np.log(np.maximum(raw, 1e-300)) if self.log else np.asarray(raw, dtype=float)
        return self.sign * z

    def forward(self, raw: np.ndarray) -> np.ndarray:
        return (self._z(raw) - self.mean) / self.sd

    def to_raw_min(self, m: np.ndarray) -> np.ndarray:
        """Standardized value back to the raw metric, sign-flipped so smaller is better."""
        z = self.sign * (m * self.sd + self.mean)
        raw = np.exp(np.clip(z, -700, 700)) if self.log else z
        return self.sign * raw


@dataclass
class PriorData:
    """Outcomes from another source (a prior study, a simulator) over the same parameters."""

    values: list[dict[str, Any]]
    #: (n, n_objectives) raw objective values; NaN where not measured
    y: np.ndarray
    ok: np.ndarray
    label: str = ""


@dataclass
class _Universe:
    """Every config the sampler has featurized: rows of one growing feature matrix."""

    values: list[dict[str, Any]] = field(default_factory=list)
    index: dict[Hashable, int] = field(default_factory=dict)
    X: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    valid: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    in_pool: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    n: int = 0


class CostModelSampler(BaseSampler):
    """Proposes the candidate with the best predicted improvement (see the module doc).

    Args:
        space: the study's ``BaseSpace``.
        directions: "minimize"/"maximize" per objective.
        seed: random seed (proposals are reproducible for a given trial history).
        n_startup: space-filling (or prior-ranked) trials before the first model fit.
        n_candidates: candidates scored per proposal (plus local moves around the best).
        n_models: bootstrap members per objective ensemble (the uncertainty estimate).
        epsilon: probability of proposing a random valid candidate instead.
        kappa: optimism (standard deviations) of the multi-objective prediction.
        scalarize: share of multi-objective proposals made on a random Chebyshev
            scalarization (ParEGO) instead of hypervolume improvement.
        batch: proposals made per model fit; the rest are queued for the next asks.
        max_enumerate: enumerate every valid config when the grid has at most this many points.
        min_p_feasible: once feasible configs are known, propose only candidates at least this
            likely to be feasible (0: no threshold, expected improvement x P(feasible) only).
        constraint_values: model each metric constraint's value (True) rather than only the
            feasible/infeasible label.
        prior: outcomes from a prior study or simulator (see ``PriorData``), or a callable
            ``(space, candidate_values) -> PriorData`` run once on first use.
    """

    def __init__(self, space: Any, directions: Sequence[str], seed: int | None = None, *,
                 n_startup: int = 8, n_candidates: int = 2000, n_models: int = 4,
                 epsilon: float = 0.05, kappa: float = 1.0, scalarize: float = 0.25,
                 batch: int = 1, max_enumerate: int = 50_000, min_p_feasible: float = 0.0,
                 constraint_values: bool = True, prior: Any = None) -> None:
        self.space = space
        self.directions = [d.lower() for d in directions]
        self.n_obj = len(self.directions)
        self.n_startup = max(1, int(n_startup))
        self.n_candidates = max(10, int(n_candidates))
        self.n_models = max(1, int(n_models))
        self.epsilon = float(epsilon)
        self.kappa = float(kappa)
        self.scalarize = float(scalarize)
        self.min_p_feasible = float(min_p_feasible)
        self.constraint_values = bool(constraint_values)
        self.batch = max(1, int(batch))
        self.max_enumerate = int(max_enumerate)
        self._prior_source = prior
        self._seed = seed
        self.reseed_rng(seed)
        self._params = list(space.params)
        self._hood = Neighborhood(space)
        self._obs: dict[int, Observation] = {}
        self._obs_idx: dict[int, int] = {}
        self._points: dict[int, dict[str, Any]] = {}
        self._queue: list[tuple[dict[str, Any], str]] = []
        self._startup: list[tuple[dict[str, Any], str]] | None = None
        self._u: _Universe | None = None
        #: configs the space's constraints rejected (never checked twice)
        self._invalid: set[Hashable] = set()
        self._feat: Featurizer | None = None
        self._enumerated = False
        self._prior: PriorData | None = None
        self._prior_models: tuple[list[TreeEnsemble], list[_Transform],
                                  FeasibilityModel] | None = None
        self._n_prior_cols = 0
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        #: why each proposal was made: startup / prior / model / explore / random
        self.sources: dict[str, int] = {}

    # -- Optuna's sampler interface -------------------------------------------------------
    def reseed_rng(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._nprng = np.random.default_rng(seed)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if trial.system_attrs.get("fixed_params"):
            return  # an enqueued trial: its values are given
        pending = self._sync(study)
        point, source = self._propose(pending)
        self.sources[source] = self.sources.get(source, 0) + 1
        if point is None:
            return
        self._points[trial._trial_id] = point
        study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, point)
        study._storage.set_trial_system_attr(trial._trial_id, SOURCE_ATTR, source)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        point = self._points.get(trial._trial_id)
        if point is None:
            point = trial.system_attrs.get(POINT_ATTR)
        ok, value = point_value(point, param_name, param_distribution)
        if ok:
            return value
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._points.pop(trial._trial_id, None)

    def exhausted(self, study: Study) -> bool:
        """True once every valid config of an enumerated space has been tried."""
        self._init()
        if not self._enumerated:
            return False
        self._sync(study)
        u = self._u
        assert u is not None
        taken = np.zeros(u.n, dtype=bool)
        taken[list(self._obs_idx.values())] = True
        return not bool(np.any(u.in_pool[:u.n] & u.valid[:u.n] & ~taken))

    # -- history --------------------------------------------------------------------------
    def _sync(self, study: Study) -> list[int]:
        """Parse newly finished trials; return the universe rows of pending (RUNNING) ones."""
        self._init()
        pending: list[int] = []
        for t in study.get_trials(deepcopy=False):
            if t.number in self._obs:
                continue
            if t.state in _FINISHED:
                obs = observation_from_trial(t, self._params)
                if obs is None or not obs.values:
                    continue
                self._obs[t.number] = obs
                self._obs_idx[t.number] = self._row(obs.values)
            elif t.state in (TrialState.RUNNING, TrialState.WAITING):
                values = self._points.get(t._trial_id) or t.system_attrs.get(POINT_ATTR)
                values = values or {k: v for k, v in t.params.items() if k in self._params}
                if values:
                    pending.append(self._row(values))
        return pending

    # -- the universe of featurized configs -----------------------------------------------
    def _init(self) -> None:
        if self._u is not None:
            return
        pool = self._initial_pool()
        self._feat = shared_featurizer(self.space, pool[:200] or [self.space.param_values(
            self.space.sample(self._rng))])
        if self._prior_source is not None:
            self._load_prior(pool)
        width = self._feat.width + self._n_prior_cols
        self._u = _Universe(X=np.empty((max(64, len(pool)), width)),
                            valid=np.zeros(max(64, len(pool)), dtype=bool),
                            in_pool=np.zeros(max(64, len(pool)), dtype=bool))
        self._add(pool, valid=True, in_pool=True)

    def _grid_size(self) -> float:
        """Points of the unconstrained grid, or ``math.inf`` above 20 x ``max_enumerate``
        (conditional parameters make the plain product an overestimate, so count them)."""
        try:
            bound = math.prod(len(p.values()) for p in self.space.params.values())
        except ValueError:  # continuous parameter
            return math.inf
        if bound <= self.max_enumerate:
            return bound
        if bound > 20 * self.max_enumerate and not any(p.when for p in
                                                       self.space.params.values()):
            return math.inf
        n = 0
        for _ in self.space.enumerate(valid_only=False):
            n += 1
            if n > self.max_enumerate:
                return math.inf
        return n

    def _initial_pool(self) -> list[dict[str, Any]]:
        if self._grid_size() <= self.max_enumerate:
            self._enumerated = True
            return valid_grid(self.space)
        return self._random_valid(self.n_candidates)

    def _random_valid(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[Hashable] = set()
        for _ in range(20 * n):
            cfg = self.space.sample(self._rng)
            values = self.space.param_values(cfg)
            key = config_key(values)
            if key in seen or key in self._invalid:
                continue
            seen.add(key)
            if self.space.constraints(cfg):
                self._invalid.add(key)
            else:
                out.append(values)
                if len(out) >= n:
                    break
        return out

    def _add(self, values: list[dict[str, Any]], valid: bool, in_pool: bool) -> list[int]:
        u, feat = self._u, self._feat
        assert u is not None and feat is not None
        rows: list[int] = []
        new: list[dict[str, Any]] = []
        for v in values:
            key = config_key(v)
            if key in u.index:
                rows.append(u.index[key])
                continue
            u.index[key] = u.n + len(new)
            rows.append(u.n + len(new))
            new.append(v)
        if not new:
            return rows
        X = feat.matrix(new)
        if self._n_prior_cols:
            X = np.hstack([X, self._prior_columns(X)])
        need = u.n + len(new)
        if need > len(u.X):
            cap = max(need, 2 * len(u.X))
            u.X = np.vstack([u.X, np.empty((cap - len(u.X), u.X.shape[1]))])
            u.valid = np.concatenate([u.valid, np.zeros(cap - len(u.valid), dtype=bool)])
            u.in_pool = np.concatenate([u.in_pool, np.zeros(cap - len(u.in_pool), dtype=bool)])
        u.X[u.n:need] = X
        u.valid[u.n:need] = valid
        u.in_pool[u.n:need] = in_pool
        u.values.extend(new)
        u.n = need
        return rows

    def _row(self, values: dict[str, Any]) -> int:
        """Universe row of any config (added, with its validity checked, if new)."""
        u = self._u
        assert u is not None
        key = config_key(values)
        if key in u.index:
            return u.index[key]
        valid = not self._enumerated and not self.space.constraints(self.space.config(values))
        return self._add([values], valid=valid, in_pool=False)[0]

    def _local_rows(self, anchors: list[dict[str, Any]], n_mutations: int) -> list[int]:
        """Adjacent configs and mutations around ``anchors`` that are valid."""
        u = self._u
        assert u is not None
        moves: list[dict[str, Any]] = []
        for a in anchors:
            moves += self._hood.adjacent(a, self._rng)
            moves += [self._hood.mutate(a, self._rng, n_params=3)
                      for _ in range(n_mutations)]
        rows: list[int] = []
        fresh: list[dict[str, Any]] = []
        seen: set[Hashable] = set()
        for m in moves:
            key = config_key(m)
            if key in seen:
                continue
            seen.add(key)
            if key in u.index:
                rows.append(u.index[key])
            elif not self._enumerated and key not in self._invalid:
                # enumerated spaces hold every valid config already
                if self.space.constraints(self.space.config(m)):
                    self._invalid.add(key)
                else:
                    fresh.append(m)
        rows += self._add(fresh, valid=True, in_pool=False)
        return rows

    # -- proposals ------------------------------------------------------------------------
    def _propose(self, pending: list[int]) -> tuple[dict[str, Any] | None, str]:
        u = self._u
        assert u is not None
        startup = self._startup_design()  # may add rows: build it before the masks
        taken = np.zeros(u.n, dtype=bool)
        taken[list(self._obs_idx.values())] = True
        taken[pending] = True
        while self._queue:
            values, source = self._queue.pop(0)
            if not taken[u.index[config_key(values)]]:
                return values, source
        n_obs = len(self._obs)
        if n_obs + len(pending) < self.n_startup:
            for values, source in startup:
                if not taken[u.index[config_key(values)]]:
                    return values, source
        rows_obs = list(self._obs_idx.values())
        n_measured = sum(o.y is not None for o in self._obs.values())
        if n_obs == 0 or n_measured == 0 and n_obs < 2 * self.n_startup:
            return self._explore(taken, "random")
        picks = self._model_picks(taken, pending, rows_obs)
        if not picks:
            return None, "exhausted"
        self._queue = picks[1:]
        return picks[0]

    def _explore(self, taken: np.ndarray, source: str) -> tuple[dict[str, Any] | None, str]:
        u = self._u
        assert u is not None
        free = np.flatnonzero(u.valid[:u.n] & u.in_pool[:u.n] & ~taken[:u.n])
        if not len(free) and not self._enumerated:
            self._add(self._random_valid(200), valid=True, in_pool=True)
            taken = np.concatenate([taken, np.zeros(u.n - len(taken), dtype=bool)])
            free = np.flatnonzero(u.valid[:u.n] & u.in_pool[:u.n] & ~taken[:u.n])
        if not len(free):
            return None, "exhausted"
        return dict(u.values[int(self._nprng.choice(free))]), source

    def _startup_design(self) -> list[tuple[dict[str, Any], str]]:
        """The prior's best configs, else a max-min-distance design over the valid pool."""
        if self._startup is not None:
            return self._startup
        u, feat = self._u, self._feat
        assert u is not None and feat is not None
        k = 4 * self.n_startup
        design: list[tuple[dict[str, Any], str]] = []
        if self._prior is not None:
            design = [(v, "prior") for v in self._prior_ranking()[:k]]
        pool = np.flatnonzero(u.valid[:u.n] & u.in_pool[:u.n])
        if len(pool) > 3000:
            pool = self._nprng.choice(pool, 3000, replace=False)
        units = np.vstack([feat.unit(u.values[i]) for i in pool]) if len(pool) else \
            np.empty((0, len(self._params)))
        order = maximin_subset(units, k, self._nprng)
        design += [(dict(u.values[int(pool[i])]), "startup") for i in order]
        self._startup = design
        return design

    def _anchors(self, rows_obs: list[int], ys: np.ndarray, ok: np.ndarray,
                 measured: np.ndarray) -> list[dict[str, Any]]:
        """The configs to search around: the best feasible ones (or the Pareto set)."""
        u = self._u
        assert u is not None
        idx = np.flatnonzero(measured & ok)
        if not len(idx):
            idx = np.flatnonzero(measured)
        if not len(idx):
            return []
        if self.n_obj == 1:
            best = idx[np.argsort(ys[idx, 0])[:3]]
        else:
            ranks = nondominated_rank(ys[idx])
            best = idx[np.argsort(ranks, kind="stable")[:8]]
        return [u.values[rows_obs[i]] for i in best]

    def _model_picks(self, taken: np.ndarray, pending: list[int],
                     rows_obs: list[int]) -> list[tuple[dict[str, Any], str]]:
        u = self._u
        assert u is not None
        obs = list(self._obs.values())
        ok = np.array([o.ok for o in obs])
        measured = np.array([o.y is not None for o in obs])
        raw = np.array([o.y if o.y is not None else (np.nan,) * self.n_obj for o in obs],
                       dtype=float).reshape(len(obs), self.n_obj)
        transforms = [_Transform(raw[measured, j], d) for j, d in enumerate(self.directions)]
        ys = np.column_stack([t.forward(raw[:, j]) for j, t in enumerate(transforms)])
        X_obs = u.X[rows_obs]

        # candidates: the valid pool (subsampled) plus local moves around the best
        anchors = self._anchors(rows_obs, ys, ok, measured)
        per_anchor = (200 if self._enumerated else 400) // max(1, len(anchors))
        local = self._local_rows(anchors, n_mutations=per_anchor)
        if len(taken) < u.n:
            taken = np.concatenate([taken, np.zeros(u.n - len(taken), dtype=bool)])
        # sampled mode: keep the random pool topped up as it gets used
        if not self._enumerated and int(np.sum(u.in_pool[:u.n] & ~taken)) < \
                self.n_candidates // 2:
            self._add(self._random_valid(self.n_candidates // 4), valid=True, in_pool=True)
            taken = np.concatenate([taken, np.zeros(u.n - len(taken), dtype=bool)])
        free = u.valid[:u.n] & ~taken[:u.n]
        base = np.flatnonzero(free & u.in_pool[:u.n])
        if len(base) > self.n_candidates:
            base = self._nprng.choice(base, self.n_candidates, replace=False)
        cand = np.unique(np.concatenate([base, np.asarray(local, dtype=int)]))
        cand = cand[free[cand]]
        if not len(cand):
            return []
        Xc = u.X[cand]

        seed = self._rng.randrange(2**31)
        models = [TreeEnsemble(self.n_models, seed + j).fit(X_obs[measured], ys[measured, j])
                  for j in range(self.n_obj)]
        pf = self._p_feasible(obs, X_obs, Xc, ok, measured, seed)
        preds = [m.predict(Xc) for m in models]
        mu = np.column_stack([p[0] for p in preds])
        sd = np.column_stack([p[1] for p in preds])
        # believed outcomes of pending configs: proposals around them are discounted
        believed = [row for row in pending if row < u.n]
        mu_pending = np.column_stack([m.predict(u.X[believed])[0] for m in models]) if \
            believed else np.empty((0, self.n_obj))

        good = measured & ok
        likely = pf >= self.min_p_feasible
        picks: list[tuple[dict[str, Any], str]] = []
        chosen = np.zeros(len(cand), dtype=bool)
        for _ in range(self.batch):
            if chosen.all():
                break
            if self._rng.random() < self.epsilon:
                pool = np.flatnonzero(~chosen & (pf >= np.median(pf)))
                i = int(self._nprng.choice(pool if len(pool) else np.flatnonzero(~chosen)))
                source = "explore"
            else:
                if not measured.any():  # nothing measured yet: most likely to run
                    score = pf.copy()
                elif self.n_obj == 1:
                    best_pool = ys[good, 0] if good.any() else ys[measured, 0]
                    best = float(np.min(np.concatenate([best_pool, mu_pending[:, 0]])))
                    sigma = np.sqrt(sd[:, 0] ** 2 + 0.05 ** 2)
                    score = expected_improvement(mu[:, 0], sigma, best) * pf
                elif self._rng.random() < self.scalarize:
                    score = self._scalarized_score(mu, sd, pf, ys[measured])
                else:
                    score = self._mo_score(mu, sd, pf, ys[good] if good.any() else
                                           ys[measured], ys[measured], mu_pending,
                                           transforms)
                score[chosen] = -np.inf
                if self.min_p_feasible > 0 and good.any() and np.any(likely & ~chosen):
                    # once feasible configs are known, propose only likely-feasible ones: a
                    # huge predicted gain must not buy a probably-infeasible trial
                    score[~likely] = -np.inf
                i = int(np.argmax(score + 1e-12 * self._nprng.random(len(score))))
                source = "model"
            chosen[i] = True
            picks.append((dict(u.values[int(cand[i])]), source))
            mu_pending = np.vstack([mu_pending, mu[i]])
        return picks

    def _p_feasible(self, obs: list[Observation], X_obs: np.ndarray, Xc: np.ndarray,
                    ok: np.ndarray, measured: np.ndarray, seed: int) -> np.ndarray:
        """P(feasible): a classifier of the feasible/infeasible label, averaged (when metric
        constraints exist) with P(runs) x P(c <= 0) per constraint from a regression of the
        constraint's value (Gardner et al. 2014). The label alone cannot say how close to a
        boundary a config is, the values alone are blind to what a metric does not show;
        averaging the two was the most robust on the benchmark."""
        p_label = FeasibilityModel(seed).fit(X_obs, ok).predict(Xc)
        names = sorted({k for o in obs for k in o.cons}) if self.constraint_values else []
        if not names:
            return p_label
        from scipy.stats import norm

        p_value = FeasibilityModel(seed + 1).fit(X_obs, measured).predict(Xc)
        for k, name in enumerate(names):
            rows = [i for i, o in enumerate(obs) if name in o.cons]
            v = np.array([obs[i].cons[name] for i in rows])
            if len(v) < 3:
                continue
            # signed log: resolution near the boundary (0), outliers compressed; the zero
            # crossing, all that P(c <= 0) needs, is kept
            m = float(np.median(np.abs(v))) or float(np.mean(np.abs(v))) or 1.0
            g = np.sign(v) * np.log1p(np.abs(v) / m)
            mu, sd = TreeEnsemble(self.n_models, seed + 101 + k).fit(X_obs[rows],
                                                                      g).predict(Xc)
            # never certain (as the classifier): a wrong guess must not close a region
            p_value = p_value * np.clip(norm.cdf(-mu / np.sqrt(sd ** 2 + 0.25 ** 2)),
                                        0.02, 0.98)
        return 0.5 * (p_label + p_value)

    def _mo_score(self, mu: np.ndarray, sd: np.ndarray, pf: np.ndarray, ys_good: np.ndarray,
                  ys_measured: np.ndarray, mu_pending: np.ndarray,
                  transforms: list[_Transform]) -> np.ndarray:
        """Hypervolume improvement of the optimistic prediction, in raw objective units."""

        def raw(m: np.ndarray) -> np.ndarray:
            return np.column_stack([t.to_raw_min(m[:, j]) for j, t in enumerate(transforms)])

        front = raw(np.vstack([ys_good, mu_pending]))
        # the reference lies beyond everything measured, so the front's extremes earn volume
        seen = np.vstack([front, raw(ys_measured)])
        hi, lo = seen.max(axis=0), front.min(axis=0)
        span = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
        ref = hi + 0.2 * span
        # objectives scaled by their span: hypervolume ranks are scale-free, numerics are not
        front_n = (pareto_front(front) - lo) / span
        opt_n = (raw(mu - self.kappa * sd) - lo) / span
        ref_n = (ref - lo) / span
        hvi = hypervolume_improvement(opt_n, front_n, ref_n, self._nprng)
        # dominated predictions: rank by how far they are from the front (epsilon indicator)
        gap = np.min(np.max(opt_n[:, None, :] - front_n[None, :, :], axis=2), axis=1)
        return np.where(hvi > 0, hvi * pf, -1.0 - np.maximum(gap, 0.0) / (1.0 + pf))

    def _scalarized_score(self, mu: np.ndarray, sd: np.ndarray, pf: np.ndarray,
                          ys_measured: np.ndarray) -> np.ndarray:
        """ParEGO's augmented Chebyshev scalarization with random weights (Knowles 2006,
        eq. 2): reaches the front's extremes, where hypervolume improvement is timid."""
        lo, hi = ys_measured.min(axis=0), ys_measured.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        w = self._nprng.dirichlet(np.ones(self.n_obj))
        f = (mu - self.kappa * sd - lo) / span
        cheb = np.max(w * f, axis=1) + 0.05 * np.sum(w * f, axis=1)
        # lower is better; shift so that P(feasible) scales a positive score
        return (np.max(cheb) - cheb + 1e-9) * pf

    # -- warm start -----------------------------------------------------------------------
    def _load_prior(self, pool: list[dict[str, Any]]) -> None:
        src = self._prior_source
        prior = src if isinstance(src, PriorData) else src(self.space, pool)
        if prior is None or not prior.values:
            return
        feat = self._feat
        assert feat is not None
        X = feat.matrix(prior.values)
        y = np.asarray(prior.y, dtype=float).reshape(len(prior.values), -1)
        if y.shape[1] != self.n_obj:
            raise BadInput("sampler.options", f"the prior ({prior.label}) has {y.shape[1]} "
                           f"objective(s); this study has {self.n_obj}")
        measured = np.all(np.isfinite(y), axis=1)
        transforms = [_Transform(y[measured, j], d) for j, d in enumerate(self.directions)]
        models = [TreeEnsemble(1, 17 + j, rounds=60).fit(X[measured],
                                                         t.forward(y[measured, j]))
                  for j, t in enumerate(transforms)]
        feas = FeasibilityModel(23).fit(X, np.asarray(prior.ok, dtype=bool))
        self._prior = prior
        self._prior_models = (models, transforms, feas)
        self._n_prior_cols = self.n_obj + 1

    def _prior_columns(self, X: np.ndarray) -> np.ndarray:
        assert self._prior_models is not None
        models, _, feas = self._prior_models
        cols = [m.predict(X)[0] for m in models] + [feas.predict(X)]
        return np.column_stack(cols)

    def _prior_ranking(self) -> list[dict[str, Any]]:
        """The prior's feasible configs, best first (Pareto layers for several objectives)."""
        assert self._prior is not None and self._prior_models is not None
        _, transforms, _ = self._prior_models
        y = np.asarray(self._prior.y, dtype=float).reshape(len(self._prior.values), -1)
        good = np.flatnonzero(np.asarray(self._prior.ok, dtype=bool)
                              & np.all(np.isfinite(y), axis=1))
        if not len(good):
            return []
        m = np.column_stack([t.forward(y[good, j]) for j, t in enumerate(transforms)])
        order = np.argsort(m[:, 0], kind="stable") if self.n_obj == 1 else np.lexsort(
            (self._nprng.random(len(good)), nondominated_rank(m)))
        out = []
        for i in order:
            values = self._prior.values[int(good[i])]
            vals = {k: v for k, v in values.items() if k in self.space.params}
            if not self.space.constraints(self.space.config(vals)):
                out.append(vals)
        # every ranked config must be a universe row (the startup design indexes by key)
        self._add(out, valid=True, in_pool=False)
        return out


#: valid grids and featurizers already built, by space identity (a benchmark, or a study
#: resumed in the same process, builds many samplers over one space)
_GRID_CACHE: dict[str, list[dict[str, Any]]] = {}
_FEATURIZERS: dict[str, Featurizer] = {}


def _space_key(space: Any) -> str:
    import json

    try:
        return json.dumps([type(space).__module__, type(space).__qualname__, space.context,
                           space.fixed, space.schema()], sort_keys=True, default=str)
    except (TypeError, ValueError):
        return ""


def shared_featurizer(space: Any, sample_values: list[dict[str, Any]]) -> Featurizer:
    """A ``Featurizer`` for ``space``, shared (with its row cache) by samplers of one space."""
    key = _space_key(space)
    if key and key in _FEATURIZERS:
        return _FEATURIZERS[key]
    feat = Featurizer(space, sample_values)
    if key:
        if len(_FEATURIZERS) >= 8:
            _FEATURIZERS.pop(next(iter(_FEATURIZERS)))
        _FEATURIZERS[key] = feat
    return feat


def valid_grid(space: Any) -> list[dict[str, Any]]:
    """Searched values of every valid config of a finite space (memoized per space)."""
    key = _space_key(space)
    if key and key in _GRID_CACHE:
        return [dict(v) for v in _GRID_CACHE[key]]
    grid = [space.param_values(c) for c in space.enumerate(valid_only=True)]
    if key:
        if len(_GRID_CACHE) >= 8:
            _GRID_CACHE.pop(next(iter(_GRID_CACHE)))
        _GRID_CACHE[key] = grid
    return [dict(v) for v in grid]


# -- prior sources --------------------------------------------------------------------------
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


_OPTIONS = {"n_startup", "n_candidates", "n_models", "epsilon", "kappa", "scalarize", "batch",
            "min_p_feasible", "constraint_values",
            "max_enumerate", "warm_start_study", "warm_start_storage", "prior_evaluator",
            "prior_evaluator_options", "prior_metrics", "prior_samples", "prior_context"}


def cost_model(space: Any, directions: Sequence[str], seed: int | None = None,
               **options: Any) -> CostModelSampler:
    """Registry factory. Options: see ``CostModelSampler``; warm start with
    ``warm_start_study`` (+ ``warm_start_storage``) or ``prior_evaluator`` (+
    ``prior_evaluator_options``, ``prior_metrics``, ``prior_samples``, ``prior_context``)."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise BadInput(f"sampler.options.{min(unknown)}", "unknown option for "
                       "cost-model; allowed: " + ", ".join(sorted(_OPTIONS)))
    prior: Any = None
    study_name = options.pop("warm_start_study", None)
    storage = options.pop("warm_start_storage", None)
    ev = options.pop("prior_evaluator", None)
    ev_options = options.pop("prior_evaluator_options", None) or {}
    metrics = options.pop("prior_metrics", None)
    samples = options.pop("prior_samples", 1000)
    prior_context = options.pop("prior_context", None) or {}
    if not isinstance(prior_context, Mapping):
        raise BadInput("sampler.options.prior_context", f"{prior_context!r} must be a table "
                       "of context keys, e.g. {gpu = \"a100_sxm_80gb\"}")
    if study_name and ev:
        raise BadInput("sampler.options", "give warm_start_study or prior_evaluator, not both")
    if study_name:
        prior = prior_from_study(str(study_name), storage)
    elif ev:
        if metrics is None:
            defaults = [m for m, _ in getattr(space, "default_objectives", ())]
            if len(defaults) != len(directions):
                raise BadInput("sampler.options.prior_metrics", "name the metric of each "
                               "objective, e.g. prior_metrics = [\"tokens_per_s\"]")
            metrics = defaults
        if not isinstance(metrics, (list, tuple)) or len(metrics) != len(directions):
            raise BadInput("sampler.options.prior_metrics", f"{metrics!r}: give one metric "
                           f"name per objective ({len(directions)})")
        from tuner.registry import evaluator_class

        evaluator_class(str(ev))  # unknown names fail now, listing the valid ones
        prior = prior_from_evaluator(str(ev), list(metrics), ev_options, int(samples),
                                     seed or 0, prior_context)
    for k in ("n_startup", "n_candidates", "n_models", "batch", "max_enumerate"):
        if k in options and (isinstance(options[k], bool) or not isinstance(options[k], int)
                             or options[k] < 1):
            raise BadInput(f"sampler.options.{k}", f"{options[k]!r} must be an integer >= 1")
    for k in ("epsilon", "kappa", "scalarize", "min_p_feasible"):
        if k in options and (isinstance(options[k], bool) or
                             not isinstance(options[k], (int, float)) or options[k] < 0):
            raise BadInput(f"sampler.options.{k}", f"{options[k]!r} must be a number >= 0")
    return CostModelSampler(space, directions, seed, prior=prior, **options)


__all__ = ["CostModelSampler", "Observation", "PriorData", "cost_model", "prior_from_evaluator",
           "prior_from_study"]
