"""Configs as numeric vectors, for learned cost models and for local moves in a space.

Three encodings of one config:

* ``Featurizer.features`` — what the trees see: one column per numeric parameter (its value),
  one-hot columns per non-numeric categorical, then the space's derived ``features()`` (per-GPU
  shard sizes, tile footprints...). Inactive conditional parameters are NaN, which xgboost treats
  as missing.
* ``Featurizer.unit`` — every parameter scaled to [0, 1] (the index among the choices for
  finite parameters, the (log-)position in the range for continuous ones): distances for
  diverse initial designs.
* ``values_key`` — a hashable identity of the searched values, for de-duplication.

``Neighborhood`` makes the local moves (one parameter to an adjacent value, random
multi-parameter mutations) that candidate screening applies around the best configs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tuner._space import Categorical, Float, Param, is_active, is_finite


def values_key(values: Mapping[str, Any]) -> Hashable:
    """Identity of a set of parameter values (floats rounded so 0.1+0.2 == 0.3)."""
    return tuple(sorted((k, round(v, 9) if isinstance(v, float) else v)
                        for k, v in values.items()))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numeric_categorical(p: Param) -> bool:
    return isinstance(p, Categorical) and all(_is_number(c) for c in p.choices)


def _bool_categorical(p: Param) -> bool:
    return isinstance(p, Categorical) and all(isinstance(c, bool) for c in p.choices)


class Featurizer:
    """Encodes configs of one space; derived-feature names are fixed from ``sample_values``."""

    def __init__(self, space: Any, sample_values: Iterable[Mapping[str, Any]] = ()) -> None:
        self.space = space
        self.params: dict[str, Param] = dict(space.params)
        self.columns: list[str] = []
        self._onehot: dict[str, dict[Any, int]] = {}
        for name, p in self.params.items():
            if isinstance(p, Categorical) and not (_numeric_categorical(p)
                                                   or _bool_categorical(p)):
                self._onehot[name] = {}
                for c in p.choices:
                    self._onehot[name][_hashable(c)] = len(self.columns)
                    self.columns.append(f"{name}={c}")
            else:
                self.columns.append(name)
        derived: set[str] = set()
        for values in sample_values:
            derived.update(self._derived(space.config(values)))
        self.derived: list[str] = sorted(derived)
        self.columns += [f"derived:{k}" for k in self.derived]
        self._cache: dict[Hashable, np.ndarray] = {}

    @property
    def width(self) -> int:
        return len(self.columns)

    def _derived(self, config: Mapping[str, Any]) -> dict[str, float]:
        try:
            feats = self.space.features(config) or {}
        except Exception:  # a derived feature that cannot be computed is missing, not fatal
            return {}
        out = {}
        for k, v in feats.items():
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                continue
        return out

    def features(self, values: Mapping[str, Any]) -> np.ndarray:
        """One row of the feature matrix for searched ``values`` (cached by them)."""
        key = values_key(values)
        row = self._cache.get(key)
        if row is not None:
            return row
        row = np.full(self.width, np.nan)
        col = 0
        for name in self.params:
            v = values.get(name)
            if name in self._onehot:
                idx = self._onehot[name]
                if name in values:
                    row[col:col + len(idx)] = 0.0
                    hit = idx.get(_hashable(v))
                    if hit is not None:
                        row[hit] = 1.0
                col += len(idx)
                continue
            if name in values and v is not None:
                row[col] = float(v)
            col += 1
        derived = self._derived(self.space.config(values))
        for j, k in enumerate(self.derived):
            if k in derived and math.isfinite(derived[k]):
                row[col + j] = derived[k]
        self._cache[key] = row
        return row

    def matrix(self, values: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if not values:
            return np.empty((0, self.width))
        return np.vstack([self.features(v) for v in values])

    def unit(self, values: Mapping[str, Any]) -> np.ndarray:
        """Parameters scaled to [0, 1]; inactive ones at 0.5 (the middle, no preference)."""
        out = np.full(len(self.params), 0.5)
        for i, (name, p) in enumerate(self.params.items()):
            if name not in values:
                continue
            out[i] = unit_position(p, values[name])
        return out


class LinearEncoder:
    """A space's tree features (``Featurizer.features``) re-encoded for a linear model.

    Trees split a numeric column anywhere; a linear model needs each effect as its own
    column. So every finite parameter becomes one-hot columns of its values (plus the log of a
    positive numeric value, the scale on which parallel degrees, tile sizes and bit widths act),
    a continuous one its unit position, its square (a bowl around the middle of the range) and
    its log, non-numeric categoricals keep their one-hot
    columns, and derived features become signed logs. Inactive or missing entries are 0, so a
    value never observed adds a weight the data cannot pin down: a linear model's uncertainty
    is large exactly where the search has not been.
    """

    #: finite parameters with more values than this are encoded like continuous ones
    MAX_ONEHOT = 32

    def __init__(self, feat: Featurizer) -> None:
        self._plan: list[tuple[str, int, Any]] = []
        col = 0
        width = 0
        for name, p in feat.params.items():
            if name in feat._onehot:
                k = len(feat._onehot[name])
                self._plan.append(("keep", col, k))
                col += k
                width += k
                continue
            vals = [float(v) for v in p.values()] if is_finite(p) else []
            if vals and len(vals) <= self.MAX_ONEHOT:
                logs = all(v > 0 for v in vals) and len(vals) > 2
                self._plan.append(("onehot", col, (np.array(vals), logs)))
                width += len(vals) + int(logs)
            elif vals:  # a long integer range: like a continuous one
                self._plan.append(("range", col, (min(vals), max(vals))))
                width += 3
            else:
                assert isinstance(p, Float)
                self._plan.append(("continuous", col, p))
                width += 3
            col += 1
        for _ in feat.derived:
            self._plan.append(("derived", col, None))
            col += 1
            width += 1
        self.width = width

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The linear design of feature rows ``X`` (one row per config)."""
        out = np.zeros((len(X), self.width))
        j = 0
        for kind, col, extra in self._plan:
            if kind == "keep":
                out[:, j:j + extra] = np.nan_to_num(X[:, col:col + extra])
                j += extra
            elif kind == "onehot":
                vals, logs = extra
                x = X[:, col]
                out[:, j:j + len(vals)] = np.isclose(x[:, None], vals[None, :])
                j += len(vals)
                if logs:
                    ok = np.isfinite(x) & (x > 0)
                    out[ok, j] = np.log(x[ok])
                    j += 1
            elif kind == "range":
                lo, hi = extra
                x = X[:, col]
                ok = np.isfinite(x)
                u = (x[ok] - lo) / (hi - lo) if hi > lo else np.full(int(ok.sum()), 0.5)
                out[ok, j] = u
                out[ok, j + 1] = (u - 0.5) ** 2
                if lo > 0:
                    out[ok, j + 2] = np.log(x[ok])
                j += 3
            elif kind == "continuous":
                x = X[:, col]
                ok = np.isfinite(x)
                u = np.array([unit_position(extra, v) for v in x[ok]])
                out[ok, j] = u
                out[ok, j + 1] = (u - 0.5) ** 2
                if extra.low > 0:
                    out[ok, j + 2] = np.log(x[ok])
                j += 3
            else:
                x = X[:, col]
                ok = np.isfinite(x)
                out[ok, j] = np.sign(x[ok]) * np.log1p(np.abs(x[ok]))
                j += 1
        return out


def _hashable(v: Any) -> Any:
    return (type(v).__name__, v) if isinstance(v, bool) else v


def unit_position(p: Param, v: Any) -> float:
    if isinstance(p, Float) and p.step is None:
        if p.high == p.low:
            return 0.5
        if p.log:
            return (math.log(v) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
        return (v - p.low) / (p.high - p.low)
    vals = p.values()
    if len(vals) <= 1:
        return 0.5
    try:
        idx = vals.index(v)
    except ValueError:
        idx = int(np.argmin([abs(float(x) - float(v)) if _is_number(x) else 1e18
                             for x in vals])) if _is_number(v) else 0
    return idx / (len(vals) - 1)


class Neighborhood:
    """Local moves in a space: adjacent values and random mutations of a config."""

    def __init__(self, space: Any) -> None:
        self.space = space
        self.params: dict[str, Param] = dict(space.params)
        self._values = {n: p.values() for n, p in self.params.items() if is_finite(p)}

    def _complete(self, values: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """Drop parameters made inactive by a move; draw ones that became active."""
        out: dict[str, Any] = {}
        for name, p in self.params.items():
            if not is_active(p, {**self.space.fixed, **out}):
                continue
            out[name] = values[name] if name in values else self._draw(name, rng)
        return out

    def _draw(self, name: str, rng: random.Random) -> Any:
        p = self.params[name]
        if name in self._values:
            return rng.choice(self._values[name])
        assert isinstance(p, Float)
        if p.log:
            return math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
        return rng.uniform(p.low, p.high)

    def _move(self, name: str, value: Any, rng: random.Random, scale: float) -> Any:
        p = self.params[name]
        if name not in self._values:  # continuous: Gaussian step in (log-)unit space
            assert isinstance(p, Float)
            u = min(1.0, max(0.0, unit_position(p, value) + rng.gauss(0.0, scale)))
            if p.log:
                return math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
            return p.low + u * (p.high - p.low)
        vals = self._values[name]
        if len(vals) < 2:
            return value
        if isinstance(p, Categorical) and not _numeric_categorical(p):
            return rng.choice([v for v in vals if v != value] or vals)
        try:
            i = vals.index(value)
        except ValueError:
            return rng.choice(vals)
        span = max(1, round(scale * len(vals)))
        j = i
        while j == i:
            j = min(len(vals) - 1, max(0, i + rng.randint(-span, span)))
        return vals[j]

    def adjacent(self, values: Mapping[str, Any], rng: random.Random) -> list[dict[str, Any]]:
        """Every config one step away: one parameter to its neighbouring value(s)."""
        out = []
        for name in values:
            if name not in self.params:
                continue
            p = self.params[name]
            if name not in self._values:
                for sign in (-1.0, 1.0):
                    moved = dict(values)
                    moved[name] = self._move(name, values[name], rng, 0.05 * sign)
                    out.append(self._complete(moved, rng))
                continue
            vals = self._values[name]
            if isinstance(p, Categorical) and not _numeric_categorical(p):
                nxt = [v for v in vals if v != values[name]]
            else:
                try:
                    i = vals.index(values[name])
                except ValueError:
                    continue
                nxt = [vals[j] for j in (i - 1, i + 1) if 0 <= j < len(vals)]
            for v in nxt:
                moved = dict(values)
                moved[name] = v
                out.append(self._complete(moved, rng))
        return out

    def mutate(self, values: Mapping[str, Any], rng: random.Random, n_params: int = 2,
               scale: float = 0.15) -> dict[str, Any]:
        """Change 1..``n_params`` random parameters by a small random step."""
        names = [n for n in values if n in self.params]
        if not names:
            return dict(values)
        k = rng.randint(1, max(1, min(n_params, len(names))))
        moved = dict(values)
        for name in rng.sample(names, k):
            moved[name] = self._move(name, moved[name], rng, scale)
        return self._complete(moved, rng)


def maximin_subset(points: np.ndarray, k: int, rng: np.random.Generator,
                   start: np.ndarray | None = None) -> list[int]:
    """Greedy max-min distance selection of ``k`` rows (a cheap space-filling design)."""
    n = len(points)
    if n == 0 or k <= 0:
        return []
    chosen: list[int] = []
    if start is not None and len(start):
        d = np.min(np.linalg.norm(points[:, None, :] - start[None, :, :], axis=2), axis=1)
    else:
        first = int(rng.integers(n))
        chosen.append(first)
        d = np.linalg.norm(points - points[first], axis=1)
    while len(chosen) < min(k, n):
        nxt = int(np.argmax(d + 1e-9 * rng.random(n)))
        if d[nxt] <= 0 and len(chosen):
            break
        chosen.append(nxt)
        d = np.minimum(d, np.linalg.norm(points - points[nxt], axis=1))
    return chosen


def point_value(point: Mapping[str, Any] | None, name: str, dist: Any) -> tuple[bool, Any]:
    """``(True, value)`` when a proposed point holds a value ``dist`` accepts for ``name``."""
    if point is not None and name in point:
        value = point[name]
        try:
            if dist._contains(dist.to_internal_repr(value)):
                return True, value
        except (ValueError, TypeError):
            pass
    return False, None


__all__ = ["Featurizer", "LinearEncoder", "Neighborhood", "maximin_subset", "point_value",
           "unit_position", "values_key"]

