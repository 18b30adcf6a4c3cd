"""Search strategies: every one is an ``optuna.samplers.BaseSampler``.

Registered by name in ``tuner.registry.SAMPLERS``; ``make_sampler`` builds one for a space.
"""

from __future__ import annotations

from typing import Any, Sequence

from tuner.registry import sampler_factory


def default_sampler(space: Any, directions: Sequence[str]) -> str:
    """TPE for one objective, NSGA-II for several (Optuna's own recommendations)."""
    return "tpe" if len(directions) == 1 else "nsga2"


def make_sampler(name: str, space: Any, directions: Sequence[str], seed: int | None = None,
                 options: dict[str, Any] | None = None) -> Any:
    return sampler_factory(name)(space, list(directions), seed, **(options or {}))


__all__ = ["default_sampler", "make_sampler"]
