"""Search strategies: every one is an ``optuna.samplers.BaseSampler``.

Registered by name in ``tuner.registry.SAMPLERS``; ``make_sampler`` builds one for a space.
``_optuna`` wraps Optuna's own samplers, ``_grid`` walks a space's grid and ``_exhaustive``
names the in-process sweep of ``tuner._sweep`` (the shuffled grid in trial-by-trial loops);
the learned cost model (``_cost_model/``) and the LLM proposer (``_llm/``) are packages, one
module per part; ``_features`` encodes configs as vectors and makes local moves for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tuner.registry import FACTORY_MARK
from tuner.registry import sampler_factory as _factory_of


def sampler_plugin(factory: Any) -> Any:
    """Mark ``factory(space, directions, seed, **options) -> BaseSampler`` as a sampler a
    study file may name by import path (``[sampler] name = "mypkg.samplers:mine"``)."""
    setattr(factory, FACTORY_MARK, True)
    return factory

#: the default is an exhaustive sweep when the evaluator is analytical and the space's grid (the
#: product of every parameter's number of values) has at most this many points
SWEEP_DEFAULT_MAX_GRID = 2_000_000


def grid_bound(space: Any) -> float:
    """Points of the space's full grid, conditional parameters counted as always active (an
    upper bound); ``math.inf`` for a space with continuous parameters."""
    if not space.is_finite():
        return math.inf
    return float(math.prod(len(p.values()) for p in space.params.values()))


def default_sampler(space: Any, directions: Sequence[str], evaluator_cls: Any = None) -> str:
    """``exhaustive`` for an analytical evaluator on a finite space of at most
    ``SWEEP_DEFAULT_MAX_GRID`` grid points (every config scored in seconds to minutes), else
    the learned cost model (the best sampler of ``tuner bench``)."""
    if getattr(evaluator_cls, "analytical", False) and \
            grid_bound(space) <= SWEEP_DEFAULT_MAX_GRID:
        return "exhaustive"
    return "cost-model"


def make_sampler(name: str, space: Any, directions: Sequence[str], seed: int | None = None,
                 options: dict[str, Any] | None = None) -> Any:
    return _factory_of(name)(space, list(directions), seed, **(options or {}))


__all__ = ["SWEEP_DEFAULT_MAX_GRID", "default_sampler", "grid_bound", "make_sampler",
           "sampler_plugin"]
