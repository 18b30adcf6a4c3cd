"""Learned cost-model sampler: boosted trees screen thousands of candidates per trial.

In the style of AutoTVM/Ansor's XGBoost cost models and DeepSpeed's model-based tuner:

1. **Candidates.** Every valid config when the space is small enough to enumerate (checked
   with the space's free ``constraints()``), otherwise a pool of random valid configs; plus
   adjacent values and random mutations of the best configs (or the Pareto set).
2. **Models.** Per objective, boosted trees and a Bayesian linear model blended by their
   cross-validated weight (``_surrogate.Blend``, log scale for positive metrics), and a
   ``FeasibilityModel`` fit on every finished trial, so OOMs, crashes and constraint
   violations are learned, not repeated.
3. **Acquisition.** Expected improvement (one objective) or hypervolume improvement of the
   optimistic prediction (several), times P(feasible); with probability ``epsilon`` a random
   candidate instead (explicit exploration). A share ``trust_region`` of the proposals is
   restricted to a Hamming ball around the incumbent whose radius follows success
   (``_trust``).
4. **Parallel workers.** RUNNING trials are pending: their configs are never proposed again
   and their predicted values are believed (kriging believer), so a batch of asks gets
   distinct, diverse proposals.
5. **Warm start.** From a prior study (``warm_start_study``) or an analytical evaluator
   (``prior_evaluator``): the first trials follow the prior's ranking and the prior's
   predictions become features the trees correct (a real-GPU study starts from the
   simulator's ranking).

The proposal is made in ``before_trial`` and handed out parameter by parameter through
``sample_independent``, so conditional parameters work like in any Optuna sampler. This module
orchestrates; the parts live beside it: ``_history`` (trials as observations), ``_universe``
(candidates), ``_surrogate`` (models), ``_acquisition`` (scores) and ``_prior`` (warm starts).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import BadInput
from tuner.samplers._cost_model._acquisition import (
    ei_score,
    mo_score,
    nondominated_rank,
    p_feasible,
    scalarized_score,
)
from tuner.samplers._cost_model._history import (
    POINT_ATTR,
    SOURCE_ATTR,
    History,
    Observation,
)
from tuner.samplers._cost_model._prior import PriorModel, load_prior
from tuner.samplers._cost_model._surrogate import Blend, Transform
from tuner.samplers._cost_model._trust import TrustRegion
from tuner.samplers._cost_model._universe import Universe, initial_pool, shared_featurizer
from tuner.samplers._features import maximin_subset, point_value, values_key

#: a proposal: searched values and why they were proposed
Pick = tuple[dict[str, Any], str]


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
            likely to be feasible (0: no threshold, expected improvement x P(feasible) only):
            P(feasible) never goes below a few percent, and times a large predicted gain that
            kept buying clearly infeasible trials on constrained problems.
        constraint_values: model each metric constraint's value (True) rather than only the
            feasible/infeasible label.
        surrogate: "blend" (trees and Bayesian ridge weighted by cross-validation), "trees" or
            "linear".
        trust_region: share of model proposals made inside the trust region around the
            incumbent (``_trust``), once ``2 * n_startup`` feasible configs are measured, for
            one objective on a finite space (0: none).
        prior: outcomes from a prior study or simulator (see ``PriorData``), or a callable
            ``(space, candidate_values) -> PriorData`` run once on first use.
    """

    def __init__(self, space: Any, directions: Sequence[str], seed: int | None = None, *,
                 n_startup: int = 8, n_candidates: int = 2000, n_models: int = 4,
                 epsilon: float = 0.05, kappa: float = 1.0, scalarize: float = 0.25,
                 batch: int = 1, max_enumerate: int = 50_000, min_p_feasible: float = 0.1,
                 constraint_values: bool = True, surrogate: str = "blend",
                 trust_region: float = 0.5, prior: Any = None) -> None:
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
        if surrogate not in _SURROGATE_WEIGHT:
            raise BadInput("sampler.options.surrogate", f"{surrogate!r}; allowed: "
                           + ", ".join(_SURROGATE_WEIGHT))
        self.surrogate = surrogate
        self.trust_region = float(trust_region)
        self._trust = TrustRegion(len(space.params))
        #: trial numbers the trust region has counted
        self._counted: set[int] = set()
        #: the linear model's weight per objective at each model fit (what the data chose)
        self.weights: list[list[float]] = []
        self.max_enumerate = int(max_enumerate)
        self._prior_source = prior
        self._seed = seed
        self.reseed_rng(seed)
        self._history = History(space.params)
        #: this process's proposals by trial id, until the trial ends
        self._points: dict[int, dict[str, Any]] = {}
        self._queue: list[Pick] = []
        self._startup: list[Pick] | None = None
        self._u: Universe | None = None
        self._prior: PriorModel | None = None
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        #: why each proposal was made: startup / prior / model / trust / explore / random
        self.sources: dict[str, int] = {}

    @property
    def _obs(self) -> dict[int, Observation]:
        """Observations by trial number."""
        return self._history.obs

    @property
    def _enumerated(self) -> bool:
        """The candidate pool is every valid config of the space."""
        return self._u is not None and self._u.enumerated

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
        u = self._init()
        if not u.enumerated:
            return False
        self._sync(study)
        return not len(u.free_pool(self._taken(u, [])))

    # -- state ----------------------------------------------------------------------------
    def _init(self) -> Universe:
        """The candidate universe, built on first use (with the prior's model, if any)."""
        if self._u is not None:
            return self._u
        invalid: set[Any] = set()
        pool, enumerated = initial_pool(self.space, self._rng, self.max_enumerate,
                                        self.n_candidates, invalid)
        feat = shared_featurizer(self.space, pool[:200] or [self.space.param_values(
            self.space.sample(self._rng))])
        if self._prior_source is not None:
            self._prior = load_prior(self._prior_source, self.space, pool, feat,
                                     self.directions)
        prior = self._prior
        self._u = Universe(self.space, feat, pool, enumerated, invalid,
                           columns=prior.columns if prior else None,
                           n_columns=prior.n_columns if prior else 0)
        return self._u

    def _sync(self, study: Study) -> list[int]:
        """Parse newly finished trials; return the universe rows of pending (RUNNING) ones."""
        u = self._init()
        return self._history.sync(study, u.row, self._points)

    def _taken(self, u: Universe, pending: list[int]) -> np.ndarray:
        """Rows already observed or pending."""
        taken = np.zeros(u.n, dtype=bool)
        taken[list(self._history.rows.values())] = True
        taken[pending] = True
        return taken

    # -- proposals ------------------------------------------------------------------------
    def _propose(self, pending: list[int]) -> tuple[dict[str, Any] | None, str]:
        u = self._init()
        startup = self._startup_design()  # may add rows: build it before the masks
        taken = self._taken(u, pending)
        while self._queue:
            values, source = self._queue.pop(0)
            if not taken[u.index[values_key(values)]]:
                return values, source
        n_obs = len(self._history.obs)
        if n_obs + len(pending) < self.n_startup:
            for values, source in startup:
                if not taken[u.index[values_key(values)]]:
                    return values, source
        n_measured = self._history.n_measured()
        if n_obs == 0 or n_measured == 0 and n_obs < 2 * self.n_startup:
            return self._explore(taken, "random")
        picks = self._model_picks(taken, pending)
        if not picks:
            return None, "exhausted"
        self._queue = picks[1:]
        return picks[0]

    def _explore(self, taken: np.ndarray, source: str) -> tuple[dict[str, Any] | None, str]:
        u = self._init()
        free = u.free_pool(taken)
        if not len(free) and not u.enumerated:
            u.top_up(200, self._rng)
            free = u.free_pool(u.pad(taken))
        if not len(free):
            return None, "exhausted"
        return dict(u.values[int(self._nprng.choice(free))]), source

    def _startup_design(self) -> list[Pick]:
        """The prior's best configs, else a max-min-distance design over the valid pool."""
        if self._startup is not None:
            return self._startup
        u = self._init()
        k = 4 * self.n_startup
        design: list[Pick] = []
        if self._prior is not None:
            ranked = self._prior.ranking(self.space, self._nprng)
            # every ranked config must be a universe row (the startup design indexes by key)
            u.add(ranked, valid=True, in_pool=False)
            design = [(v, "prior") for v in ranked[:k]]
        pool = np.flatnonzero(u.valid[:u.n] & u.in_pool[:u.n])
        if len(pool) > 3000:
            pool = self._nprng.choice(pool, 3000, replace=False)
        units = np.vstack([u.feat.unit(u.values[i]) for i in pool]) if len(pool) else \
            np.empty((0, len(self.space.params)))
        order = maximin_subset(units, k, self._nprng)
        design += [(dict(u.values[int(pool[i])]), "startup") for i in order]
        self._startup = design
        return design

    def _anchors(self, rows_obs: list[int], ys: np.ndarray, ok: np.ndarray,
                 measured: np.ndarray) -> list[dict[str, Any]]:
        """The configs to search around: the best feasible ones (or the Pareto set)."""
        u = self._init()
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

    def _candidates(self, taken: np.ndarray, anchors: list[dict[str, Any]]) -> np.ndarray:
        """Rows to score: the valid pool (subsampled) plus local moves around ``anchors``."""
        u = self._init()
        per_anchor = (200 if u.enumerated else 400) // max(1, len(anchors))
        local = u.local_rows(anchors, per_anchor, self._rng)
        taken = u.pad(taken)
        # sampled mode: keep the random pool topped up as it gets used
        if not u.enumerated and int(np.sum(u.in_pool[:u.n] & ~taken)) < \
                self.n_candidates // 2:
            u.top_up(self.n_candidates // 4, self._rng)
            taken = u.pad(taken)
        free = u.valid[:u.n] & ~taken[:u.n]
        base = np.flatnonzero(free & u.in_pool[:u.n])
        if len(base) > self.n_candidates:
            base = self._nprng.choice(base, self.n_candidates, replace=False)
        cand = np.unique(np.concatenate([base, np.asarray(local, dtype=int)]))
        return cand[free[cand]]

    def _region(self, cand: np.ndarray, rows_obs: list[int], ys: np.ndarray,
                good: np.ndarray) -> np.ndarray | None:
        """Candidates inside the trust region around the incumbent (the best feasible config),
        after counting the trials that finished since the last proposal; None before
        ``2 * n_startup`` feasible measurements, for several objectives and for continuous
        parameters."""
        if self.trust_region <= 0 or self.n_obj > 1 or int(good.sum()) < 2 * self.n_startup \
                or not self.space.is_finite():
            # several objectives: hypervolume improvement spreads along the front; continuous
            # parameters: every move changes a value, a Hamming ball means nothing there
            return None
        numbers = list(self._history.rows)
        new = np.array([n not in self._counted for n in numbers])
        old = good & ~new
        if old.any() and (new & good).any():
            improved = float(ys[new & good, 0].min()) < float(ys[old, 0].min())
            self._trust.observe(improved, int(new.sum()))
        elif new.any():
            self._trust.observe(False, int(new.sum()))
        self._counted.update(numbers)
        idx = np.flatnonzero(good)
        best = idx[int(np.argmin(ys[idx, 0]))]
        u = self._init()
        incumbent = u.values[rows_obs[int(best)]]
        return self._trust.mask([u.values[int(r)] for r in cand], incumbent)

    def _model_picks(self, taken: np.ndarray, pending: list[int]) -> list[Pick]:
        u = self._init()
        rows_obs = list(self._history.rows.values())
        obs, ok, measured, raw = self._history.arrays(self.n_obj)
        transforms = [Transform(raw[measured, j], d) for j, d in enumerate(self.directions)]
        ys = np.column_stack([t.forward(raw[:, j]) for j, t in enumerate(transforms)])
        X_obs, Z_obs = u.X[rows_obs], u.Z(rows_obs)
        cand = self._candidates(taken, self._anchors(rows_obs, ys, ok, measured))
        if not len(cand):
            return []
        Xc, Zc = u.X[cand], u.Z(cand)

        seed = self._rng.randrange(2**31)
        weight = _SURROGATE_WEIGHT[self.surrogate]
        models = [Blend(self.n_models, seed + j).fit(X_obs[measured], Z_obs[measured],
                                                     ys[measured, j], weight)
                  for j in range(self.n_obj)]
        pf = p_feasible(obs, X_obs, Xc, ok, measured, seed, self.n_models,
                        self.constraint_values, Z_obs, Zc, weight)
        preds = [m.predict(Xc, Zc) for m in models]
        mu = np.column_stack([p[0] for p in preds])
        sd = np.column_stack([p[1] for p in preds])
        self.weights.append([round(m.weight, 3) for m in models])
        # believed outcomes of pending configs: proposals around them are discounted
        believed = [row for row in pending if row < u.n]
        mu_pending = np.column_stack([m.predict(u.X[believed], u.Z(believed))[0]
                                      for m in models]) if believed else \
            np.empty((0, self.n_obj))

        good = measured & ok
        likely = pf >= self.min_p_feasible
        region = self._region(cand, rows_obs, ys, good)
        picks: list[Pick] = []
        chosen = np.zeros(len(cand), dtype=bool)
        for _ in range(self.batch):
            if chosen.all():
                break
            local = region is not None and bool(np.any(region & ~chosen)) and \
                self._rng.random() < self.trust_region
            if not local and self._rng.random() < self.epsilon:
                pool = np.flatnonzero(~chosen & (pf >= np.median(pf)))
                i = int(self._nprng.choice(pool if len(pool) else np.flatnonzero(~chosen)))
                source = "explore"
            else:
                if not measured.any():  # nothing measured yet: most likely to run
                    score = pf.copy()
                elif self.n_obj == 1:
                    best_pool = ys[good, 0] if good.any() else ys[measured, 0]
                    score = ei_score(mu[:, 0], sd[:, 0], pf,
                                     np.concatenate([best_pool, mu_pending[:, 0]]))
                elif self._rng.random() < self.scalarize:
                    score = scalarized_score(mu, sd, pf, ys[measured], self.kappa, self._nprng)
                else:
                    score = mo_score(mu, sd, pf, ys[good] if good.any() else ys[measured],
                                     ys[measured], mu_pending, transforms, self.kappa,
                                     self._nprng)
                score[chosen] = -np.inf
                if local and region is not None:
                    score[~region] = -np.inf
                if self.min_p_feasible > 0 and good.any() and np.any(likely & ~chosen):
                    # once feasible configs are known, propose only likely-feasible ones: a
                    # huge predicted gain must not buy a probably-infeasible trial
                    score[~likely] = -np.inf
                i = int(np.argmax(score + 1e-12 * self._nprng.random(len(score))))
                source = "trust" if local else "model"
            chosen[i] = True
            picks.append((dict(u.values[int(cand[i])]), source))
            mu_pending = np.vstack([mu_pending, mu[i]])
        return picks


#: the linear model's weight in the blend per ``surrogate`` option (None: cross-validated)
_SURROGATE_WEIGHT: dict[str, float | None] = {"blend": None, "trees": 0.0, "linear": 1.0}

__all__ = ["CostModelSampler"]
