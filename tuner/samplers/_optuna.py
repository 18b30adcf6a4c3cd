"""Optuna's own samplers behind the registry's factory signature.

``factory(space, directions, seed, **options) -> optuna.samplers.BaseSampler``. Options are
passed to the Optuna constructor; unknown ones are rejected with the allowed list.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import optuna

from tuner._errors import BadInput


def _build(cls: type, name: str, seed: int | None,
           options: dict[str, Any]) -> optuna.samplers.BaseSampler:
    # Optuna 5 samplers read the constraint values the runner sets on each trial
    allowed = set(inspect.signature(cls).parameters) - {"self", "seed", "constraints_func"}
    unknown = set(options) - allowed
    if unknown:
        raise BadInput(f"sampler.options.{sorted(unknown)[0]}",
                       f"unknown option for {name}; allowed: " + ", ".join(sorted(allowed)))
    try:
        return cls(seed=seed, **options)
    except (TypeError, ValueError) as exc:
        raise BadInput("sampler.options", f"{exc}".splitlines()[0]) from None


def tpe(space: Any, directions: Sequence[str], seed: int | None = None,
        **options: Any) -> optuna.samplers.BaseSampler:
    options.setdefault("multivariate", True)
    options.setdefault("n_startup_trials", 10)
    return _build(optuna.samplers.TPESampler, "tpe", seed, options)


def nsga2(space: Any, directions: Sequence[str], seed: int | None = None,
          **options: Any) -> optuna.samplers.BaseSampler:
    options.setdefault("population_size", 20)
    return _build(optuna.samplers.NSGAIISampler, "nsga2", seed, options)


def gp(space: Any, directions: Sequence[str], seed: int | None = None,
       **options: Any) -> optuna.samplers.BaseSampler:
    try:
        import torch  # noqa: F401  (Optuna's GP sampler is written in torch)
    except ImportError:
        raise BadInput("sampler.name", "gp needs torch: pip install torch==2.13.0; or use "
                       "tpe, nsga2, cmaes, cost-model or random") from None
    return _build(optuna.samplers.GPSampler, "gp", seed, options)


def cmaes(space: Any, directions: Sequence[str], seed: int | None = None,
          **options: Any) -> optuna.samplers.BaseSampler:
    if len(directions) > 1:
        raise BadInput("sampler.name", "cmaes is single-objective; for several objectives "
                       "use nsga2, tpe, gp, cost-model or random")
    options.setdefault("warn_independent_sampling", False)
    return _build(optuna.samplers.CmaEsSampler, "cmaes", seed, options)


def random(space: Any, directions: Sequence[str], seed: int | None = None,
           **options: Any) -> optuna.samplers.BaseSampler:
    return _build(optuna.samplers.RandomSampler, "random", seed, options)
