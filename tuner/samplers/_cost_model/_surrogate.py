"""Surrogates of the learned cost model: what it predicts, and on which scale.

* ``TreeEnsemble`` — K gradient-boosted tree regressors (xgboost), each fit on a bootstrap
  resample; the spread of their predictions is the uncertainty (as in SMAC's random-forest
  surrogate, with boosted trees as in AutoTVM's and DeepSpeed's cost models).
* ``FeasibilityModel`` — a boosted classifier of "this config ran and met the constraints",
  trained on every finished trial (OOMs, crashes and constraint violations included).
* ``LinearModel`` — Bayesian ridge regression on the linear design (``LinearEncoder``): exact
  on the additive landscapes (a quantization mix's quality and latency are sums over layer
  groups) where a few hundred tree splits are coarse, and uncertain where a parameter value
  was never observed.
* ``Blend`` — the trees and the linear model mixed with the weight that best predicts
  held-out trials (stacking on K-fold predictions), so each problem gets the surrogate that
  fits it; mean and spread of the mixture.
* ``Transform`` — an objective's raw values to a standardized "smaller is better" scale (log
  for positive metrics), the scale the ensembles are fit on, and back.

The acquisition functions that score their predictions are in ``_acquisition``.
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


class LinearModel:
    """Bayesian ridge regression with the evidence approximation (MacKay 1992, as in Bishop's
    PRML 3.5.2): the weight-prior precision ``alpha`` and the noise precision ``beta`` are fixed
    points of the evidence, iterated in the eigenbasis of ``Z'Z`` (p x p, a millisecond). The
    prediction is the posterior mean and the *epistemic* standard deviation
    ``sqrt(z' Sigma z)`` (the noise left out: it is the same everywhere and says nothing
    about where to look)."""

    def __init__(self, iterations: int = 50) -> None:
        self.iterations = iterations
        self._w: np.ndarray | None = None
        self._const = 0.0

    def fit(self, Z: np.ndarray, y: np.ndarray) -> LinearModel:
        self._w = None
        n = len(y)
        if n < 3 or float(np.ptp(y)) == 0.0:
            self._const = float(np.mean(y)) if n else 0.0
            return self
        self._mean = Z.mean(axis=0)
        sd = Z.std(axis=0)
        # a column constant on the data (a value never observed) keeps unit scale: its weight
        # stays at the prior, and so does the uncertainty of configs that use it
        self._scale = np.where(sd > 1e-9, sd, 1.0)
        Zs = (Z - self._mean) / self._scale
        self._ym = float(np.mean(y))
        yc = y - self._ym
        s, V = np.linalg.eigh(Zs.T @ Zs)
        s = np.maximum(s, 0.0)
        proj = V.T @ (Zs.T @ yc)
        # directions the data do not span (one-hot groups sum to one): no signal there, only
        # rounding noise that a large noise precision would blow up
        proj[s <= 1e-9 * max(float(s.max()), 1e-300)] = 0.0
        var_y = max(float(np.var(yc)), 1e-12)
        alpha, beta = 1.0, 1.0 / var_y
        for _ in range(self.iterations):
            d = beta * s + alpha
            m_eig = beta * proj / d
            gamma = float(np.sum(beta * s / d))
            resid = yc - Zs @ (V @ m_eig)
            alpha_new = min(max(gamma / max(float(m_eig @ m_eig), 1e-12), 1e-6), 1e6)
            # noise no smaller than 0.1% of the data's spread: an exact fit must not make the
            # posterior certain of every direction
            beta_new = min(max(n - gamma, 1e-6) / max(float(resid @ resid), 1e-12),
                           1e6 / var_y)
            done = abs(alpha_new - alpha) <= 1e-4 * alpha and abs(beta_new - beta) <= 1e-4 * beta
            alpha, beta = alpha_new, beta_new
            if done:
                break
        d = beta * s + alpha
        self._w = V @ (beta * proj / d)
        self._V, self._d = V, d
        return self

    def predict(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._w is None:
            return np.full(len(Z), self._const), np.zeros(len(Z))
        Zs = (Z - self._mean) / self._scale
        mu = self._ym + Zs @ self._w
        var = np.sum((Zs @ self._V) ** 2 / self._d, axis=1)
        return mu, np.sqrt(var)


def stacking_weight(y: np.ndarray, p_trees: np.ndarray, p_linear: np.ndarray) -> float:
    """The weight ``w`` of the linear model minimizing the squared error of
    ``w * p_linear + (1 - w) * p_trees`` on held-out predictions, in [0, 1]."""
    r_t, r_l = y - p_trees, y - p_linear
    d = r_t - r_l
    denom = float(d @ d)
    if denom <= 1e-12:
        return 0.5
    return float(np.clip((r_t @ d) / denom, 0.0, 1.0))


class Blend:
    """Boosted trees and Bayesian ridge, mixed by their cross-validated weight.

    ``fit(X, Z, y)``: ``X`` the tree features, ``Z`` the linear design of the same rows. The
    weight comes from ``folds``-fold predictions (one booster per fold), or is given.
    """

    #: pseudo-observations of an even blend the cross-validated weight is shrunk with
    SHRINK = 20

    def __init__(self, n_models: int = 4, seed: int = 0, folds: int = 4) -> None:
        self.trees = TreeEnsemble(n_models, seed)
        self.linear = LinearModel()
        self.seed, self.folds = seed, folds
        self.weight = 0.5

    def fit(self, X: np.ndarray, Z: np.ndarray, y: np.ndarray,
            weight: float | None = None) -> Blend:
        self.trees.fit(X, y)
        self.linear.fit(Z, y)
        self.weight = self.cv_weight(X, Z, y) if weight is None else weight
        return self

    def cv_weight(self, X: np.ndarray, Z: np.ndarray, y: np.ndarray) -> float:
        n = len(y)
        if n < 8 or float(np.ptp(y)) == 0.0:
            return 0.5
        fold = np.random.default_rng(self.seed).permutation(n) % self.folds
        p_t, p_l = np.empty(n), np.empty(n)
        for k in range(self.folds):
            test = fold == k
            train = ~test
            p_t[test] = TreeEnsemble(1, self.seed + k).fit(X[train], y[train]).predict(
                X[test])[0]
            p_l[test] = LinearModel().fit(Z[train], y[train]).predict(Z[test])[0]
        # few held-out points make a noisy weight: shrink it towards an even blend
        return (n * stacking_weight(y, p_t, p_l) + self.SHRINK * 0.5) / (n + self.SHRINK)

    def predict(self, X: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.weight
        mt, st = self.trees.predict(X) if w < 1.0 else (np.zeros(len(X)), np.zeros(len(X)))
        ml, sl = self.linear.predict(Z) if w > 0.0 else (np.zeros(len(X)), np.zeros(len(X)))
        mu = w * ml + (1 - w) * mt
        # the mixture's spread: each model's own, plus their disagreement
        var = w * sl ** 2 + (1 - w) * st ** 2 + w * (1 - w) * (ml - mt) ** 2
        return mu, np.sqrt(var)


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


class Transform:
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


__all__ = ["Blend", "FeasibilityModel", "LinearModel", "Transform", "TreeEnsemble",
           "stacking_weight"]
