"""The candidate universe: every config the cost model has featurized, as one feature matrix.

Rows are added, never removed: the valid pool (every valid config of a space small enough to
enumerate, else random valid configs, topped up as they get used), observed and pending
trials, local moves around the best configs, and a prior's ranking. Each row records whether
the space's constraints accept it (checked once; rejected configs are remembered) and
whether it belongs to the pool. Extra feature columns (a prior's predictions) come from a
callable given at construction, so the universe knows nothing of where they come from.

Valid grids and featurizers are memoized per space for the process: a benchmark, or a study
resumed in the same process, builds many samplers over one space.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from tuner.samplers._features import Featurizer, LinearEncoder, Neighborhood, values_key

#: extra feature columns for a feature matrix (one row per config)
Columns = Callable[[np.ndarray], np.ndarray]


class Universe:
    """Rows of one growing feature matrix, with validity and pool flags per row."""

    def __init__(self, space: Any, featurizer: Featurizer, pool: list[dict[str, Any]],
                 enumerated: bool, invalid: set[Hashable] | None = None,
                 columns: Columns | None = None, n_columns: int = 0) -> None:
        self.space = space
        self.feat = featurizer
        #: the pool holds every valid config of the space (no need to check new ones)
        self.enumerated = enumerated
        #: configs the space's constraints rejected (never checked twice)
        self.invalid: set[Hashable] = set() if invalid is None else invalid
        self._columns = columns if n_columns else None
        self._hood = Neighborhood(space)
        self.encoder = LinearEncoder(featurizer)
        cap = max(64, len(pool))
        self.values: list[dict[str, Any]] = []
        self.index: dict[Hashable, int] = {}
        self.X = np.empty((cap, featurizer.width + n_columns))
        self.valid = np.zeros(cap, dtype=bool)
        self.in_pool = np.zeros(cap, dtype=bool)
        self.n = 0
        self.add(pool, valid=True, in_pool=True)

    def add(self, values: list[dict[str, Any]], valid: bool, in_pool: bool) -> list[int]:
        """Rows of ``values``, featurizing the new ones (flags apply to new rows only)."""
        rows: list[int] = []
        new: list[dict[str, Any]] = []
        for v in values:
            key = values_key(v)
            if key in self.index:
                rows.append(self.index[key])
                continue
            self.index[key] = self.n + len(new)
            rows.append(self.n + len(new))
            new.append(v)
        if not new:
            return rows
        X = self.feat.matrix(new)
        if self._columns is not None:
            X = np.hstack([X, self._columns(X)])
        need = self.n + len(new)
        if need > len(self.X):
            cap = max(need, 2 * len(self.X))
            self.X = np.vstack([self.X, np.empty((cap - len(self.X), self.X.shape[1]))])
            self.valid = np.concatenate([self.valid, np.zeros(cap - len(self.valid), dtype=bool)])
            self.in_pool = np.concatenate([self.in_pool,
                                           np.zeros(cap - len(self.in_pool), dtype=bool)])
        self.X[self.n:need] = X
        self.valid[self.n:need] = valid
        self.in_pool[self.n:need] = in_pool
        self.values.extend(new)
        self.n = need
        return rows

    def Z(self, rows: Any) -> np.ndarray:
        """The linear design of ``rows``: the encoded features, then any extra columns (a
        prior's predictions) as they are."""
        X = self.X[rows]
        w = self.feat.width
        return np.hstack([self.encoder.transform(X[:, :w]), X[:, w:]])

    def row(self, values: dict[str, Any]) -> int:
        """Universe row of any config (added, with its validity checked, if new)."""
        key = values_key(values)
        if key in self.index:
            return self.index[key]
        valid = not self.enumerated and not self.space.constraints(self.space.config(values))
        return self.add([values], valid=valid, in_pool=False)[0]

    def pad(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` (over earlier rows) extended with False to every row."""
        if len(mask) >= self.n:
            return mask
        return np.concatenate([mask, np.zeros(self.n - len(mask), dtype=bool)])

    def free_pool(self, taken: np.ndarray) -> np.ndarray:
        """Rows of valid pool configs not ``taken``."""
        n = self.n
        return np.flatnonzero(self.valid[:n] & self.in_pool[:n] & ~taken[:n])

    def top_up(self, n: int, rng: random.Random) -> None:
        """Add up to ``n`` fresh random valid configs to the pool (sampled spaces)."""
        self.add(random_valid(self.space, rng, n, self.invalid), valid=True, in_pool=True)

    def local_rows(self, anchors: list[dict[str, Any]], n_mutations: int,
                   rng: random.Random) -> list[int]:
        """Adjacent configs and mutations around ``anchors`` that are valid."""
        moves: list[dict[str, Any]] = []
        for a in anchors:
            moves += self._hood.adjacent(a, rng)
            moves += [self._hood.mutate(a, rng, n_params=3) for _ in range(n_mutations)]
        rows: list[int] = []
        fresh: list[dict[str, Any]] = []
        seen: set[Hashable] = set()
        for m in moves:
            key = values_key(m)
            if key in seen:
                continue
            seen.add(key)
            if key in self.index:
                rows.append(self.index[key])
            elif not self.enumerated and key not in self.invalid:
                # enumerated spaces hold every valid config already
                if self.space.constraints(self.space.config(m)):
                    self.invalid.add(key)
                else:
                    fresh.append(m)
        rows += self.add(fresh, valid=True, in_pool=False)
        return rows


def grid_size(space: Any, max_enumerate: int) -> float:
    """Points of the unconstrained grid, or ``math.inf`` above 20 x ``max_enumerate``
    (conditional parameters make the plain product an overestimate, so count them)."""
    try:
        bound = math.prod(len(p.values()) for p in space.params.values())
    except ValueError:  # continuous parameter
        return math.inf
    if bound <= max_enumerate:
        return bound
    if bound > 20 * max_enumerate and not any(p.when for p in space.params.values()):
        return math.inf
    n = 0
    for _ in space.enumerate(valid_only=False):
        n += 1
        if n > max_enumerate:
            return math.inf
    return n


def random_valid(space: Any, rng: random.Random, n: int,
                 invalid: set[Hashable]) -> list[dict[str, Any]]:
    """Up to ``n`` distinct valid configs drawn at random; rejected ones join ``invalid``."""
    out: list[dict[str, Any]] = []
    seen: set[Hashable] = set()
    for _ in range(20 * n):
        cfg = space.sample(rng)
        values = space.param_values(cfg)
        key = values_key(values)
        if key in seen or key in invalid:
            continue
        seen.add(key)
        if space.constraints(cfg):
            invalid.add(key)
        else:
            out.append(values)
            if len(out) >= n:
                break
    return out


def initial_pool(space: Any, rng: random.Random, max_enumerate: int, n_candidates: int,
                 invalid: set[Hashable]) -> tuple[list[dict[str, Any]], bool]:
    """Every valid config when the grid has at most ``max_enumerate`` points (True), else
    ``n_candidates`` random valid ones (False)."""
    if grid_size(space, max_enumerate) <= max_enumerate:
        return valid_grid(space), True
    return random_valid(space, rng, n_candidates, invalid), False


#: valid grids and featurizers already built, by space identity (a benchmark, or a study
#: resumed in the same process, builds many samplers over one space)
_GRID_CACHE: dict[str, list[dict[str, Any]]] = {}
_FEATURIZERS: dict[str, Featurizer] = {}


def _space_key(space: Any) -> str:
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


__all__ = ["Columns", "Universe", "grid_size", "initial_pool", "random_valid",
           "shared_featurizer", "valid_grid"]
