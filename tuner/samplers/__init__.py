"""Search strategies: every one is an ``optuna.samplers.BaseSampler``.

Registered by name in ``tuner.registry.SAMPLERS``; ``make_sampler`` builds one for a space.
``_optuna`` wraps Optuna's own samplers and ``_grid`` walks a space's grid; the learned cost
model (``_cost_model/``) and the LLM proposer (``_llm/``) are packages, one module per part;
``_features`` encodes configs as vectors and makes local moves for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuner.registry import FACTORY_MARK
from tuner.registry import sampler_factory as _factory_of


def sampler_plugin(factory: Any) -> Any:
    """Mark ``factory(space, directions, seed, **options) -> BaseSampler`` as a sampler a
    study file may name by import path (``[sampler] name = "mypkg.samplers:mine"``)."""
    setattr(factory, FACTORY_MARK, True)
    return factory


def default_sampler(space: Any, directions: Sequence[str]) -> str:
    """The learned cost model: in ``tuner bench`` it needs a third of TPE's evaluations."""
    return "cost-model"


def make_sampler(name: str, space: Any, directions: Sequence[str], seed: int | None = None,
                 options: dict[str, Any] | None = None) -> Any:
    return _factory_of(name)(space, list(directions), seed, **(options or {}))


__all__ = ["default_sampler", "make_sampler", "sampler_plugin"]
