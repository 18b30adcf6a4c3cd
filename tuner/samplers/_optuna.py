"""Optuna's own samplers behind the registry's factory signature.

``factory(space, directions, seed, **options) -> optuna.samplers.BaseSampler``. Options are
passed to the Optuna constructor; unknown ones, and values of another type than the
constructor's default, are rejected with the allowed list before anything runs. The samplers
that learn from history are wrapped in ``InfeasibleView``, so they rank a config that could not
run last although the storage holds no values for it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import optuna

from tuner._errors import BadInput
from tuner.samplers._view import InfeasibleView

_PLAIN = (bool, int, float, str)


#: an annotation of only these names (and None) fixes the option's type -> a default of it
_ANNOTATED = {frozenset({"bool"}): False, frozenset({"int"}): 0,
              frozenset({"float"}): 0.0, frozenset({"float", "int"}): 0.0,
              frozenset({"str"}): ""}


def _check_type(name: str, key: str, value: Any, param: inspect.Parameter) -> None:
    """A plain default (a number, a flag, a name), or a plain annotation when the default
    is None, fixes the option's type."""
    default = param.default
    if default is None or default is inspect.Parameter.empty:
        names = frozenset(t.strip() for t in str(param.annotation).replace("'", "")
                          .split("|")) - {"None"}
        default = _ANNOTATED.get(names)
        if default is None or value is None:
            return
    if not isinstance(default, _PLAIN):
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        kind = "a number"
        if isinstance(default, int) and ok and value != int(value):
            ok, kind = False, "a whole number"
    else:
        ok, kind = isinstance(value, str), "a string"
    if not ok:
        raise BadInput(f"sampler.options.{key}", f"{value!r} must be {kind} (option of "
                       f"{name})")


def _build(cls: type, name: str, seed: int | None, options: dict[str, Any],
           directions: Sequence[str] | None = None) -> optuna.samplers.BaseSampler:
    # Optuna 5 samplers read the constraint values the runner sets on each trial
    params = inspect.signature(cls).parameters
    allowed = set(params) - {"self", "seed", "constraints_func"}
    unknown = set(options) - allowed
    if unknown:
        raise BadInput(f"sampler.options.{sorted(unknown)[0]}",
                       f"unknown option for {name}; allowed: " + ", ".join(sorted(allowed)))
    for key, value in options.items():
        _check_type(name, key, value, params[key])
    try:
        sampler = cls(seed=seed, **options)
    except (TypeError, ValueError) as exc:
        raise BadInput("sampler.options", f"{exc}".splitlines()[0]) from None
    return sampler if directions is None else InfeasibleView(sampler, directions)


def tpe(space: Any, directions: Sequence[str], seed: int | None = None,
        **options: Any) -> optuna.samplers.BaseSampler:
    options.setdefault("multivariate", True)
    options.setdefault("n_startup_trials", 10)
    return _build(optuna.samplers.TPESampler, "tpe", seed, options, directions)


def nsga2(space: Any, directions: Sequence[str], seed: int | None = None,
          **options: Any) -> optuna.samplers.BaseSampler:
    options.setdefault("population_size", 20)
    return _build(optuna.samplers.NSGAIISampler, "nsga2", seed, options, directions)


def gp(space: Any, directions: Sequence[str], seed: int | None = None,
       **options: Any) -> optuna.samplers.BaseSampler:
    try:
        import torch  # noqa: F401  (Optuna's GP sampler is written in torch)
    except ImportError:
        raise BadInput("sampler.name", "gp needs torch: pip install torch==2.13.0; or use "
                       "tpe, nsga2, cmaes, cost-model or random") from None
    return _build(optuna.samplers.GPSampler, "gp", seed, options, directions)


def cmaes(space: Any, directions: Sequence[str], seed: int | None = None,
          **options: Any) -> optuna.samplers.BaseSampler:
    if len(directions) > 1:
        raise BadInput("sampler.name", "cmaes is single-objective; for several objectives "
                       "use nsga2, tpe, gp, cost-model or random")
    options.setdefault("warn_independent_sampling", False)
    return _build(optuna.samplers.CmaEsSampler, "cmaes", seed, options, directions)


def random(space: Any, directions: Sequence[str], seed: int | None = None,
           **options: Any) -> optuna.samplers.BaseSampler:
    return _build(optuna.samplers.RandomSampler, "random", seed, options)
