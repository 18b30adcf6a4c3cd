"""Acquisition for the learned cost model: how much a candidate is worth trying, as pure functions.

Every score is a function of predictions (``mu``/``sd`` on the standardized "smaller is
better" scale of ``_surrogate.Transform``), P(feasible) and what was measured; randomness
comes in through a generator argument, so a score is reproducible from its inputs.

* ``p_feasible`` — P(config runs and meets every constraint): a classifier of the label,
  averaged with a regression of each metric constraint's value (Gardner et al. 2014).
* ``expected_improvement`` (Jones et al. 1998, eq. 15) and ``ei_score`` for one objective.
* ``hypervolume_improvement`` (exact in 2-D, Monte Carlo above), ``mo_score`` (hypervolume
  improvement of the optimistic prediction) and ``scalarized_score`` (ParEGO's augmented
  Chebyshev scalarization, Knowles 2006) for several objectives; ``nondominated_rank`` and
  ``pareto_front`` on minimized objective vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tuner._pareto import pareto_mask
from tuner.samplers._cost_model._history import Observation
from tuner.samplers._cost_model._surrogate import (
    Blend,
    FeasibilityModel,
    Transform,
    TreeEnsemble,
)


def expected_improvement(mu: np.ndarray, sigma: np.ndarray, best: float) -> np.ndarray:
    """EI for minimization: E[max(best - Y, 0)], Y ~ N(mu, sigma^2) (Jones et al. 1998, eq. 15)."""
    from scipy.stats import norm

    sigma = np.maximum(sigma, 1e-9)
    u = (best - mu) / sigma
    return (best - mu) * norm.cdf(u) + sigma * norm.pdf(u)


def _minimize(m: int) -> list[str]:
    return ["minimize"] * m


def nondominated_rank(Y: np.ndarray) -> np.ndarray:
    """Pareto layer of each row (0 = non-dominated), all objectives minimized."""
    rank = np.full(len(Y), -1)
    remaining = np.arange(len(Y))
    layer = 0
    while len(remaining):
        front = np.array(pareto_mask(Y[remaining].tolist(), _minimize(Y.shape[1])))
        rank[remaining[front]] = layer
        remaining = remaining[~front]
        layer += 1
    return rank


def pareto_front(Y: np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``Y`` (minimization), duplicates dropped."""
    if not len(Y):
        return Y
    Y = np.unique(Y, axis=0)
    return Y[np.array(pareto_mask(Y.tolist(), _minimize(Y.shape[1])))]


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


def p_feasible(obs: Sequence[Observation], X_obs: np.ndarray, Xc: np.ndarray, ok: np.ndarray,
               measured: np.ndarray, seed: int, n_models: int = 4,
               constraint_values: bool = True, Z_obs: np.ndarray | None = None,
               Zc: np.ndarray | None = None, weight: float | None = 0.0) -> np.ndarray:
    """P(feasible) of each candidate row of ``Xc``: a classifier of the feasible/infeasible
    label, averaged (when metric constraints exist) with P(runs) x P(c <= 0) per constraint
    from a regression of the constraint's value (Gardner et al. 2014). The label alone cannot
    say how close to a boundary a config is, the values alone are blind to what a metric does
    not show; averaging the two was the most robust on the benchmark. With the linear design
    (``Z_obs``/``Zc``) the values are modelled like the objectives (``Blend``, linear weight
    ``weight``; None: cross-validated)."""
    p_label = FeasibilityModel(seed).fit(X_obs, ok).predict(Xc)
    names = sorted({k for o in obs for k in o.cons}) if constraint_values else []
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
        if Z_obs is not None and Zc is not None:  # trees and ridge, as the objectives
            blend = Blend(n_models, seed + 101 + k).fit(X_obs[rows], Z_obs[rows], g, weight)
            mu, sd = blend.predict(Xc, Zc)
        else:
            mu, sd = TreeEnsemble(n_models, seed + 101 + k).fit(X_obs[rows], g).predict(Xc)
        # never certain (as the classifier): a wrong guess must not close a region
        p_value = p_value * np.clip(norm.cdf(-mu / np.sqrt(sd ** 2 + 0.25 ** 2)), 0.02, 0.98)
    return 0.5 * (p_label + p_value)


def ei_score(mu: np.ndarray, sd: np.ndarray, pf: np.ndarray,
             incumbents: np.ndarray) -> np.ndarray:
    """Expected improvement over the best of ``incumbents`` (measured values and the believed
    values of pending trials), times P(feasible). A noise floor of 0.05 standard units keeps
    improvement possible where the ensemble agrees."""
    best = float(np.min(incumbents))
    sigma = np.sqrt(sd ** 2 + 0.05 ** 2)
    return expected_improvement(mu, sigma, best) * pf


def mo_score(mu: np.ndarray, sd: np.ndarray, pf: np.ndarray, ys_good: np.ndarray,
             ys_measured: np.ndarray, mu_pending: np.ndarray, transforms: Sequence[Transform],
             kappa: float, rng: np.random.Generator) -> np.ndarray:
    """Hypervolume improvement of the optimistic prediction ``mu - kappa * sd``, in raw
    objective units, times P(feasible); dominated predictions score below zero by their
    distance to the front."""

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
    opt_n = (raw(mu - kappa * sd) - lo) / span
    ref_n = (ref - lo) / span
    hvi = hypervolume_improvement(opt_n, front_n, ref_n, rng)
    # dominated predictions: rank by how far they are from the front (epsilon indicator)
    gap = np.min(np.max(opt_n[:, None, :] - front_n[None, :, :], axis=2), axis=1)
    return np.where(hvi > 0, hvi * pf, -1.0 - np.maximum(gap, 0.0) / (1.0 + pf))


def scalarized_score(mu: np.ndarray, sd: np.ndarray, pf: np.ndarray, ys_measured: np.ndarray,
                     kappa: float, rng: np.random.Generator) -> np.ndarray:
    """ParEGO's augmented Chebyshev scalarization with random weights (Knowles 2006,
    eq. 2): reaches the front's extremes, where hypervolume improvement is timid."""
    lo, hi = ys_measured.min(axis=0), ys_measured.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    w = rng.dirichlet(np.ones(mu.shape[1]))
    f = (mu - kappa * sd - lo) / span
    cheb = np.max(w * f, axis=1) + 0.05 * np.sum(w * f, axis=1)
    # lower is better; shift so that P(feasible) scales a positive score
    return (np.max(cheb) - cheb + 1e-9) * pf


__all__ = ["ei_score", "expected_improvement", "hypervolume_improvement", "mo_score",
           "nondominated_rank", "p_feasible", "pareto_front", "scalarized_score"]
