"""The cost model's linear surrogate and its blend with the trees."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.samplers._cost_model._surrogate import Blend, LinearModel, stacking_weight
from tuner.samplers._features import Featurizer, LinearEncoder
from tuner.testing.toys import ToySpace


def _onehots(rng, n, k=6, levels=4):
    codes = rng.integers(0, levels, (n, k))
    Z = np.zeros((n, k * levels))
    for j in range(k):
        Z[np.arange(n), j * levels + codes[:, j]] = 1.0
    return codes, Z


def test_linear_model_matches_bayesian_ridge_and_recovers_an_additive_function():
    from sklearn.linear_model import BayesianRidge

    rng = np.random.default_rng(0)
    _, Z = _onehots(rng, 80)
    w = rng.normal(size=Z.shape[1])
    y = Z @ w + 0.05 * rng.normal(size=80)
    _, Zt = _onehots(rng, 500)
    mu, sd = LinearModel().fit(Z, y).predict(Zt)
    assert np.corrcoef(mu, Zt @ w)[0, 1] > 0.99
    ref = BayesianRidge().fit((Z - Z.mean(0)) / np.where(Z.std(0) > 0, Z.std(0), 1), y)
    Zs = (Zt - Z.mean(0)) / np.where(Z.std(0) > 0, Z.std(0), 1)
    mb, sb = ref.predict(Zs, return_std=True)
    assert np.allclose(mu, mb, atol=1e-2)
    assert np.allclose(sd, np.sqrt(np.maximum(sb ** 2 - 1 / ref.alpha_, 0)), atol=1e-2)


def test_a_value_never_observed_is_uncertain():
    rng = np.random.default_rng(1)
    codes, Z = _onehots(rng, 60)
    seen = codes[:, 0] != 3  # level 3 of the first parameter never appears in training
    y = Z @ rng.normal(size=Z.shape[1])
    model = LinearModel().fit(Z[seen], y[seen])
    _, sd = model.predict(Z)
    assert sd[~seen].min() > 2 * np.median(sd[seen])


def test_stacking_weight_picks_the_better_model():
    y = np.linspace(0, 1, 50)
    noise = np.random.default_rng(2).normal(size=50)
    assert stacking_weight(y, y + noise, y) == 1.0
    assert stacking_weight(y, y, y + noise) == 0.0
    w = stacking_weight(y, y + noise, y - noise)  # equally wrong, opposite signs: halfway
    assert w == pytest.approx(0.5, abs=1e-9)


def test_blend_weight_follows_the_landscape():
    rng = np.random.default_rng(3)
    codes, Z = _onehots(rng, 120)
    X = codes.astype(float)  # trees see the codes as numbers
    additive = Z @ rng.normal(size=Z.shape[1])
    # two thresholds that must both hold: two tree splits, no sum of main effects
    interaction = ((codes[:, 0] >= 2) & (codes[:, 1] >= 2)).astype(float)
    assert Blend(2, 0).fit(X, Z, additive).weight > 0.9
    assert Blend(2, 0).fit(X, Z, interaction).weight < 0.1
    fixed = Blend(2, 0).fit(X, Z, additive, weight=0.0)
    mu, sd = fixed.predict(X, Z)
    assert fixed.weight == 0.0 and mu.shape == sd.shape == (120,)


def test_linear_encoder_one_hot_and_logs():
    space = ToySpace({"max_sum": 30})  # x, y: Int 0..20 (21 values); mode: a | b | c
    vals = [{"x": 3, "y": 0, "mode": "b"}, {"x": 20, "y": 7, "mode": "a"}]
    feat = Featurizer(space, vals)
    enc = LinearEncoder(feat)
    Z = enc.transform(feat.matrix(vals))
    # x and y: 21 one-hot columns each (0 is a value, so no log); mode: 3; derived: 1
    assert enc.width == Z.shape[1] == 21 + 21 + 3 + 1
    assert Z[0, 3] == 1.0 and Z[0, :21].sum() == 1.0
    assert Z[1, 21 + 7] == 1.0
    assert Z[0, 42:45].tolist() == [0.0, 1.0, 0.0]
    assert Z[1, -1] == pytest.approx(np.log1p(27.0))
    X = feat.matrix(vals)
    X[0, 0] = np.nan  # an inactive parameter: no column set
    assert enc.transform(X)[0, :21].sum() == 0.0
