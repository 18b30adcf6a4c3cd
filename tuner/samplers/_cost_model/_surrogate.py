"""Surrogates and acquisition functions for the learned cost model.

* ``TreeEnsemble`` — K gradient-boosted tree regressors (xgboost), each fit on a bootstrap
  resample; the spread of their predictions is the uncertainty (as in SMAC's random-forest
  surrogate, with boosted trees as in AutoTVM's and DeepSpeed's cost models).
* ``FeasibilityModel`` — a boosted classifier of "this config ran and met the constraints",
  trained on every finished trial (OOMs, crashes and constraint violations included).
* ``expected_improvement`` (Jones et al. 1998, eq. 15), ``hypervolume_improvement`` (exact in
  2-D, Monte Carlo above) and ``nondominated_rank`` for the multi-objective case.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: small trees, few rounds: the data are tens to hundreds of trials and fitting runs per trial
XGB_PARAMS: dict[str, Any] = {
    "max_depth": 4, "eta": 0.3, "subsample": 1.0, "colsample_bytree": 0.8,
    "min_child_weight": 1.0, "lambda": 1.0, "max_bin": 32, "tree_method": "hist",
    "nthread": 1, "verbosity": 0,
}
XGB_ROUNDS = 30


def _xgb() -> Any:
    import xgboost

    return xgboost


class TreeEnsemble:
    """Mean and spread of ``n_models`` bootstrap-resampled xgboost regressors."""

    def __init__(self, n_models: int = 4, seed: int = 0, rounds: int = XGB_ROUNDS,
                 params: dict[str, Any] | None = None) -> None:
        self.n_models = max(1, n_models)
        self.seed = seed
        self.rounds = rounds
        self.params = {**XGB_PARAMS, **(params or {})}
        self._boosters: list[Any] = []
        self._const: float | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> TreeEnsemble:
        xgb = _xgb()
        n = len(y)
        self._boosters = []
        self._const = None
        if n < 2 or float(np.ptp(y)) == 0.0:
            self._const = float(np.mean(y)) if n else 0.0
            return self
        rng = np.random.default_rng(self.seed)
        for k in range(self.n_models):
            # the first model sees every point; the others a bootstrap resample
            idx = np.arange(n) if k == 0 else rng.integers(0, n, n)
            if float(np.ptp(y[idx])) == 0.0:
                idx = np.arange(n)
            dtrain = xgb.DMatrix(X[idx], label=y[idx], nthread=1)
            params = {**self.params, "seed": self.seed * 7919 + k,
                      "base_score": float(np.mean(y[idx]))}
            self._boosters.append(xgb.train(params, dtrain, num_boost_round=self.rounds))
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._const is not None or not self._boosters:
            c = self._const or 0.0
            return np.full(len(X), c), np.zeros(len(X))
        preds = np.vstack([b.inplace_predict(X) for b in self._boosters])
        return preds.mean(axis=0), preds.std(axis=0)


class FeasibilityModel:
    """P(config runs and meets every constraint), from finished trials' outcomes."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._booster: Any = None
        self._const = 1.0

    def fit(self, X: np.ndarray, ok: np.ndarray) -> FeasibilityModel:
        self._booster = None
        n_ok, n_bad = int(ok.sum()), int((~ok).sum())
        if n_bad == 0 or n_ok == 0 or len(ok) < 4:
            # one class only: a prior leaning to what was seen, never certain
            self._const = (n_ok + 1.0) / (len(ok) + 2.0)
            return self
        xgb = _xgb()
        params = {**XGB_PARAMS, "max_depth": 3, "objective": "binary:logistic",
                  "seed": self.seed, "base_score": float(np.clip(ok.mean(), 0.05, 0.95))}
        self._booster = xgb.train(params, xgb.DMatrix(X, label=ok.astype(float), nthread=1),
                                  num_boost_round=XGB_ROUNDS)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self._booster is None:
            return np.full(len(X), self._const)
        # never fully certain: a rare mistake must not forbid a region for good
        return np.clip(self._booster.inplace_predict(X), 0.02, 0.98)


def expected_improvement(mu: np.ndarray, sigma: np.ndarray, best: float) -> np.ndarray:
    """EI for minimization: E[max(best - Y, 0)], Y ~ N(mu, sigma^2) (Jones et al. 1998, eq. 15)."""
    from scipy.stats import norm

    sigma = np.maximum(sigma, 1e-9)
    u = (best - mu) / sigma
    return (best - mu) * norm.cdf(u) + sigma * norm.pdf(u)


def nondominated_rank(Y: np.ndarray) -> np.ndarray:
    """Pareto layer of each row (0 = non-dominated), all objectives minimized."""
    n = len(Y)
    rank = np.full(n, -1)
    remaining = np.arange(n)
    layer = 0
    while len(remaining):
        sub = Y[remaining]
        dominated = np.zeros(len(sub), dtype=bool)
        for i in range(len(sub)):
            dominated |= np.all(sub[i] <= sub, axis=1) & np.any(sub[i] < sub, axis=1)
        front = remaining[~dominated]
        rank[front] = layer
        remaining = remaining[dominated]
        layer += 1
    return rank


def pareto_front(Y: np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``Y`` (minimization), duplicates dropped."""
    if not len(Y):
        return Y
    Y = np.unique(Y, axis=0)
    keep = np.ones(len(Y), dtype=bool)
    for i in range(len(Y)):
        if keep[i]:
            keep &= ~(np.all(Y[i] <= Y, axis=1) & np.any(Y[i] < Y, axis=1))
    return Y[keep]


def hypervolume_improvement(points: np.ndarray, front: np.ndarray, ref: np.ndarray,
                            rng: np.random.Generator | None = None,
                            n_samples: int = 4096) -> np.ndarray:
    """Volume each point would add to ``front``'s dominated region inside ``ref`` (min)."""
    points = np.minimum(points, ref)
    if points.shape[1] == 2:
        return _hvi_2d(points, front, ref)
    return _hvi_mc(points, front, ref, rng or np.random.default_rng(0), n_samples)


def _hvi_2d(points: np.ndarray, front: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact: box of the point minus the staircase of the front clipped to that box."""
    box = np.prod(ref - points, axis=1)
    front = pareto_front(front[np.all(front < ref, axis=1)]) if len(front) else front
    if not len(front):
        return box
    order = np.argsort(front[:, 0])
    fx, fy = front[order, 0], front[order, 1]  # x ascending, y descending on a front
    qx = np.maximum(points[:, [0]], fx[None, :])
    qy = np.maximum(points[:, [1]], fy[None, :])
    nxt = np.concatenate([qx[:, 1:], np.full((len(points), 1), ref[0])], axis=1)
    covered = np.sum((nxt - qx) * (ref[1] - qy), axis=1)
    return np.maximum(box - covered, 0.0)


def _hvi_mc(points: np.ndarray, front: np.ndarray, ref: np.ndarray,
            rng: np.random.Generator, n_samples: int) -> np.ndarray:
    lo = np.minimum(points.min(axis=0), front.min(axis=0) if len(front) else ref)
    u = lo + rng.random((n_samples, len(ref))) * (ref - lo)
    free = np.ones(n_samples, dtype=bool)
    for f in front:
        free &= ~np.all(u >= f, axis=1)
    u = u[free]
    vol = float(np.prod(ref - lo)) / n_samples
    out = np.empty(len(points))
    for start in range(0, len(points), 256):  # bounded memory: 256 x samples x m booleans
        chunk = points[start:start + 256]
        out[start:start + 256] = np.all(u[None, :, :] >= chunk[:, None, :], axis=2).sum(1)
    return out * vol


__all__ = ["FeasibilityModel", "TreeEnsemble", "expected_improvement",
           "hypervolume_improvement", "nondominated_rank", "pareto_front"]
