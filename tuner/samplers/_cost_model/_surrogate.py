"""Surrogates of the learned cost model: what it predicts, and on which scale.

* ``TreeEnsemble`` — K gradient-boosted tree regressors (xgboost), each fit on a bootstrap
  resample; the spread of their predictions is the uncertainty (as in SMAC's random-forest
  surrogate, with boosted trees as in AutoTVM's and DeepSpeed's cost models).
* ``FeasibilityModel`` — a boosted classifier of "this config ran and met the constraints",
  trained on every finished trial (OOMs, crashes and constraint violations included).
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


__all__ = ["FeasibilityModel", "Transform", "TreeEnsemble"]
