"""``exhaustive``: score every valid config of a finite space (the sweep, ``tuner._sweep``).

``tuner run`` sweeps such a study in-process when its evaluator is analytical; this factory
is what the loops that go trial by trial get under the same name (``tuner worker``,
``tuner ci``, the ``Runner`` API): the space's grid in a seeded shuffled order, every valid
config once. Its options are the sweep's: how many configs to store beside the front.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.samplers import BaseSampler

from tuner._errors import BadInput

#: ``[sampler.options]`` of ``exhaustive``: what the sweep stores (and its batch size)
OPTIONS = {
    "sample": "configs of the uniform sample stored as trials (default 200)",
    "best": "best configs stored per objective (default 10)",
    "max_front": "Pareto-front configs stored at most, evenly spread (default 1000)",
    "batch": "configs per batch (default: sized to about 0.2 s)",
}


def check_options(options: dict[str, Any]) -> dict[str, int]:
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise BadInput(f"sampler.options.{min(unknown)}", "unknown option for exhaustive; "
                       "allowed: " + ", ".join(OPTIONS))
    for k, v in options.items():
        low = 0 if k in ("sample", "best") else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise BadInput(f"sampler.options.{k}", f"{v!r} must be an integer >= {low}")
    return dict(options)


def exhaustive(space: Any, directions: Sequence[str], seed: int | None = None,
               **options: Any) -> BaseSampler:
    """Registry factory: the shuffled grid for trial-by-trial loops (see the module doc)."""
    check_options(options)
    if not space.is_finite():
        raise BadInput("sampler.name", "exhaustive needs a finite space (continuous "
                       "parameters present); give them a step, or use cost-model")
    from tuner.samplers._grid import SpaceGridSampler

    return SpaceGridSampler(space, seed=seed, shuffle=True)


__all__ = ["OPTIONS", "check_options", "exhaustive"]
