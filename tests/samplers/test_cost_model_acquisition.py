"""The cost model's acquisition functions, alone: known values, brute-force references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tuner._pareto import hypervolume, pareto_mask
from tuner.samplers._cost_model._acquisition import (
    ei_score,
    expected_improvement,
    hypervolume_improvement,
    mo_score,
    nondominated_rank,
    p_feasible,
    pareto_front,
    scalarized_score,
)
from tuner.samplers._cost_model._history import Observation
from tuner.samplers._cost_model._surrogate import Transform


def test_expected_improvement_known_values():
    # at the incumbent, EI = sigma * phi(0); far below it, EI = best - mu; far above, ~0
    ei = expected_improvement(np.array([1.0, -9.0, 30.0]), np.array([2.0, 0.1, 0.1]), 1.0)
    assert ei[0] == pytest.approx(2.0 / np.sqrt(2 * np.pi))
    assert ei[1] == pytest.approx(10.0)
    assert ei[2] == pytest.approx(0.0, abs=1e-12)
    # zero spread does not divide by zero
    assert np.isfinite(expected_improvement(np.array([0.0]), np.array([0.0]), 1.0)).all()


def test_ei_score_uses_the_best_incumbent_and_scales_by_p_feasible():
    mu, sd = np.array([0.0, 0.0]), np.array([0.0, 0.0])
    one = ei_score(mu, sd, np.array([1.0, 0.5]), np.array([3.0, 1.0, 2.0]))
    assert one[0] == pytest.approx(1.0, abs=1e-3)  # best incumbent is 1: improvement ~1
    assert one[1] == pytest.approx(0.5 * one[0])


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def test_nondominated_rank_matches_layer_peeling_by_brute_force():
    rng = np.random.default_rng(0)
    Y = rng.integers(0, 5, (40, 2)).astype(float)  # ties and duplicates on purpose
    rank = nondominated_rank(Y)
    for i, j in itertools.permutations(range(len(Y)), 2):
        if _dominates(Y[i], Y[j]):
            assert rank[i] < rank[j]
    for i in range(len(Y)):  # each row on layer r > 0 is dominated by one on layer r - 1
        if rank[i]:
            assert any(_dominates(Y[j], Y[i]) for j in np.flatnonzero(rank == rank[i] - 1))
    assert nondominated_rank(np.empty((0, 2))).shape == (0,)


def test_pareto_front_drops_duplicates_and_dominated_rows():
    Y = np.array([[1.0, 3.0], [1.0, 3.0], [2.0, 2.0], [3.0, 3.0], [3.0, 1.0]])
    front = pareto_front(Y)
    assert sorted(map(tuple, front)) == [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]
    assert len(pareto_front(np.empty((0, 2)))) == 0
    # the same set as tuner._pareto's mask, which keeps duplicates
    mask = pareto_mask(Y.tolist(), ["minimize", "minimize"])
    assert {tuple(r) for r, m in zip(Y, mask) if m} == set(map(tuple, front))


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_improvement_is_the_volume_a_point_adds(m):
    rng = np.random.default_rng(1)
    front = pareto_front(rng.random((6, m)))
    ref = np.full(m, 1.2)
    points = rng.random((5, m)) * 1.1
    hvi = hypervolume_improvement(points, front, ref, np.random.default_rng(2), 200_000)
    dirs = ["minimize"] * m
    base = hypervolume(front.tolist(), dirs, ref.tolist())
    for p, got in zip(points, hvi):
        want = hypervolume(np.vstack([front, p]).tolist(), dirs, ref.tolist()) - base
        # exact in 2-D; Monte Carlo above
        assert got == pytest.approx(want, abs=1e-9 if m == 2 else 0.01)


def test_hypervolume_improvement_without_a_front_is_the_box():
    hvi = hypervolume_improvement(np.array([[0.0, 0.5]]), np.empty((0, 2)), np.array([1.0, 1.0]))
    assert hvi[0] == pytest.approx(0.5)


def _transforms(m: int) -> list[Transform]:
    # identity scale (no log, mean 0, sd 1): standardized values are the raw values
    return [Transform(np.array([-1.0, 1.0]), "minimize") for _ in range(m)]


def test_mo_score_rewards_new_volume_and_ranks_dominated_predictions_by_their_gap():
    ts = _transforms(2)
    assert not ts[0].log and ts[0].mean == 0.0 and ts[0].sd == 1.0
    front = np.array([[0.0, 0.5], [0.5, 0.0]])
    mu = np.array([[0.1, 0.1], [0.6, 0.6], [2.0, 2.0]])
    sd = np.zeros_like(mu)
    pf = np.ones(3)
    score = mo_score(mu, sd, pf, front, front, np.empty((0, 2)), ts, 1.0,
                     np.random.default_rng(0))
    assert score[0] > 0 > score[1] > score[2]
    # P(feasible) scales an improvement
    half = mo_score(mu, sd, np.full(3, 0.5), front, front, np.empty((0, 2)), ts, 1.0,
                    np.random.default_rng(0))
    assert half[0] == pytest.approx(0.5 * score[0])


def test_scalarized_score_prefers_a_dominating_prediction():
    mu = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])
    ys = np.array([[0.0, 1.0], [1.0, 0.0]])
    for seed in range(5):
        s = scalarized_score(mu, np.zeros_like(mu), np.ones(3), ys, 1.0,
                             np.random.default_rng(seed))
        assert s[0] > s[2] > s[1] > 0


def test_p_feasible_is_the_classifier_without_constraint_values():
    rng = np.random.default_rng(0)
    X = rng.random((30, 2))
    ok = X[:, 0] < 0.5
    obs = [Observation({"x": float(x)}, (1.0,) if k else None, bool(k)) for x, k in
           zip(X[:, 0], ok)]
    Xc = np.array([[0.1, 0.5], [0.9, 0.5]])
    p = p_feasible(obs, X, Xc, ok, ok.copy(), seed=0)
    assert p[0] > 0.5 > p[1]
    assert np.all((p >= 0.02) & (p <= 0.98))  # never certain


def test_p_feasible_learns_a_metric_constraint_from_its_values():
    rng = np.random.default_rng(0)
    X = rng.random((40, 1))
    ok = X[:, 0] < 0.6
    # every config ran; the constraint value crosses 0 at x = 0.6
    obs = [Observation({"x": float(x)}, (1.0,), bool(k), {"c": float(x - 0.6)})
           for x, k in zip(X[:, 0], ok)]
    measured = np.ones(len(X), dtype=bool)
    Xc = np.array([[0.1], [0.95]])
    p = p_feasible(obs, X, Xc, ok, measured, seed=0)
    label_only = p_feasible(obs, X, Xc, ok, measured, seed=0, constraint_values=False)
    assert p[0] > 0.5 > p[1]
    assert not np.allclose(p, label_only)
