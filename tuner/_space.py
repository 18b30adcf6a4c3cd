"""The search-space contract.

A space is a set of named parameters (plain data: ``Categorical``, ``Int``, ``Float``) over a
fixed *context* (the model, the GPU, the shape: whatever the user does not search). A *config*
is context + parameter values, and is what an evaluator receives.
"""

from __future__ import annotations

import abc
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tuner._errors import BadInput, UnknownName


@dataclass(frozen=True)
class Categorical:
    choices: tuple[Any, ...]
    #: parameter is active only when every named parameter has one of the listed values
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    #: every value the domain accepts when it is more than ``choices`` (what a study file may
    #: narrow or pin it to); None: ``choices`` for names and flags, any number for numbers
    allowed: tuple[Any, ...] | None = None

    def values(self) -> list[Any]:
        return list(self.choices)


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    step: int = 1
    log: bool = False
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def values(self) -> list[Any]:
        return list(range(self.low, self.high + 1, self.step))


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def values(self) -> list[Any]:
        if self.step is None:
            raise ValueError("a continuous parameter has no finite set of values")
        n = int(round((self.high - self.low) / self.step))
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]


Param = Categorical | Int | Float


def is_finite(p: Param) -> bool:
    return not isinstance(p, Float) or p.step is not None


def param_contains(p: Param, value: Any) -> bool:
    """True when ``value`` is one of the values ``p`` can take (a choice; a number inside the
    range and on the step)."""
    if isinstance(p, Categorical):
        return value in p.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not p.low <= value <= p.high:
        return False
    if isinstance(p, Int):
        return value == int(value) and not (value - p.low) % p.step
    if p.step:
        steps = (value - p.low) / p.step
        return abs(steps - round(steps)) <= 1e-6
    return True


def params_key(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The identity of a point: its parameter values, hashable and independent of their order
    (two trials with the same key evaluated the same config)."""
    return tuple(sorted(values.items()))


def is_active(p: Param, config: Mapping[str, Any]) -> bool:
    return all(config.get(k) in v for k, v in p.when.items())


def suggest_param(trial: Any, name: str, p: Param) -> Any:
    """Ask an Optuna trial for one parameter value."""
    if isinstance(p, Categorical):
        return trial.suggest_categorical(name, list(p.choices))
    if isinstance(p, Int):
        return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
    return trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)


def to_distribution(p: Param) -> Any:
    import optuna.distributions as d

    if isinstance(p, Categorical):
        return d.CategoricalDistribution(list(p.choices))
    if isinstance(p, Int):
        return d.IntDistribution(p.low, p.high, step=p.step, log=p.log)
    return d.FloatDistribution(p.low, p.high, log=p.log, step=p.step)


_OVERRIDE_KEYS = {"choices", "low", "high", "step", "log", "fixed"}


def apply_override(name: str, p: Param, ov: Mapping[str, Any]) -> Param | tuple[str, Any]:
    """Narrow or replace one parameter from a study file's ``[space.params.NAME]`` table.

    Returns the new parameter, or ``("fixed", value)`` when the user pins it.
    """
    field_ = f"space.params.{name}"
    unknown = set(ov) - _OVERRIDE_KEYS
    if unknown:
        raise BadInput(field_, f"unknown key {sorted(unknown)[0]!r}; allowed: "
                       + ", ".join(sorted(_OVERRIDE_KEYS)))
    # an override narrows what the domain allows; it never adds a value the domain refuses
    if "fixed" in ov:
        if len(ov) > 1:
            raise BadInput(field_, "'fixed' cannot be combined with other keys")
        _check_allowed(f"{field_}.fixed", p, [ov["fixed"]])
        return ("fixed", ov["fixed"])
    if "choices" in ov:
        choices = ov["choices"]
        if not isinstance(choices, list) or not choices:
            raise BadInput(f"{field_}.choices", f"{choices!r} must be a non-empty list")
        for c in choices:
            if not isinstance(c, (bool, int, float, str)):
                raise BadInput(f"{field_}.choices", f"{c!r} is not a number, string or boolean")
        kinds = {_kind(c) for c in choices}
        if len(kinds) > 1:
            raise BadInput(f"{field_}.choices", f"{choices!r} mixes types "
                           f"({', '.join(sorted(kinds))}); give values of one type")
        _check_allowed(f"{field_}.choices", p, choices)
        allowed = p.allowed if isinstance(p, Categorical) else None
        return Categorical(tuple(choices), when=p.when, allowed=allowed)
    if isinstance(p, Categorical):
        raise BadInput(field_, f"is categorical {list(p.choices)}; use 'choices' or 'fixed'")
    low, high = ov.get("low", p.low), ov.get("high", p.high)
    num = (int,) if isinstance(p, Int) else (int, float)
    for k, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, num):
            kind = "an integer" if isinstance(p, Int) else "a number"
            raise BadInput(f"{field_}.{k}", f"{v!r} must be {kind}")
    if low > high:
        raise BadInput(field_, f"empty range: low {low} > high {high}")
    step = ov.get("step", p.step)
    if step is not None and (isinstance(step, bool) or not isinstance(step, num) or step <= 0):
        raise BadInput(f"{field_}.step", f"{step!r} must be a positive number")
    log = ov.get("log", p.log)
    if not isinstance(log, bool):
        raise BadInput(f"{field_}.log", f"{log!r} must be true or false")
    if log and low <= 0:
        raise BadInput(f"{field_}.low", f"{low} must be > 0 on a log scale")
    for k, v in (("low", low), ("high", high)):
        if not p.low <= v <= p.high:
            raise BadInput(f"{field_}.{k}", f"{v} is outside the domain's range "
                           f"{p.low} .. {p.high}")
    return replace(p, low=low, high=high, step=step, log=log)  # type: ignore[arg-type]


def _kind(v: Any) -> str:
    return ("true or false" if isinstance(v, bool) else "a string" if isinstance(v, str)
            else "a number")


def _closed_values(p: Categorical) -> tuple[Any, ...] | None:
    """The values a categorical accepts, when it is a closed set (None: any number)."""
    if p.allowed is not None:
        return p.allowed
    return None if all(_kind(c) == "a number" for c in p.choices) else p.choices


def _allowed_text(p: Param) -> str:
    if isinstance(p, Categorical):
        closed = _closed_values(p)
        return ", ".join(repr(c) for c in closed) if closed is not None else "numbers"
    step = f" in steps of {p.step}" if p.step not in (None, 1) else ""
    kind = "integers" if isinstance(p, Int) else "numbers"
    return f"{kind} {p.low} .. {p.high}{step}"


def _check_allowed(field_: str, p: Param, values: list[Any]) -> None:
    """``BadInput`` naming the first of ``values`` the domain's parameter ``p`` does not
    accept: another type than its values, or outside its closed set or its range."""
    for v in values:
        if isinstance(p, Categorical):
            kinds = {_kind(c) for c in p.choices}
            closed = _closed_values(p)
            ok = _kind(v) in kinds and (closed is None or any(
                _kind(v) == _kind(c) and v == c for c in closed))
        else:
            ok = param_contains(p, v)
        if not ok:
            raise BadInput(field_, f"{v!r} is not a value this domain allows; allowed: "
                           f"{_allowed_text(p)}")


class BaseSpace(abc.ABC):
    """One domain's search space.

    Subclasses implement ``parameters()`` (may depend on ``self.context``), ``constraints()``
    and optionally ``validate_context()`` and ``features()``.
    """

    #: domain name used in study files: ``[space] domain = "..."``
    name: str = ""
    #: evaluator used when a study names none
    default_evaluator: str = ""
    #: objectives used when a study names none: [(metric, "maximize"|"minimize"), ...]
    default_objectives: tuple[tuple[str, str], ...] = ()
    #: small, quick contexts the contract suite (tuner.testing) builds this space with
    example_contexts: tuple[dict[str, Any], ...] = ()

    def __init__(self, context: Mapping[str, Any] | None = None,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.context: dict[str, Any] = self.validate_context(dict(context or {}))
        self.fixed: dict[str, Any] = {}
        params = dict(self.parameters())
        for name, ov in (overrides or {}).items():
            if name not in params:
                raise UnknownName("space.params", name, list(params))
            if not isinstance(ov, Mapping):
                raise BadInput(f"space.params.{name}", f"{ov!r} must be a table")
            new = apply_override(name, params[name], ov)
            if isinstance(new, tuple):
                self.fixed[name] = new[1]
                del params[name]
            else:
                params[name] = new
        self.params: dict[str, Param] = params

    # -- to implement -------------------------------------------------------------------
    def validate_context(self, context: dict[str, Any]) -> dict[str, Any]:
        """Check and complete the fixed context; raise ``BadInput`` naming the field."""
        return context

    @abc.abstractmethod
    def parameters(self) -> Mapping[str, Param]:
        """The searchable parameters, in suggestion order (conditions refer to earlier ones)."""

    @abc.abstractmethod
    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        """Reasons this config is invalid (empty when valid), each with the numbers."""

    def features(self, config: Mapping[str, Any]) -> dict[str, float]:
        """Derived numeric features for learned cost models (e.g. per-GPU shard sizes)."""
        return {}

    # -- provided -----------------------------------------------------------------------
    def config(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Context + fixed + parameter values: what an evaluator receives."""
        return {**self.context, **self.fixed, **values}

    def suggest(self, trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, p in self.params.items():
            if is_active(p, {**self.fixed, **values}):
                values[name] = suggest_param(trial, name, p)
        return self.config(values)

    def is_finite(self) -> bool:
        return all(is_finite(p) for p in self.params.values())

    def enumerate(self, valid_only: bool = True) -> Iterator[dict[str, Any]]:
        """Every config of a finite space (conditional parameters expanded only when active)."""
        if not self.is_finite():
            raise BadInput("space", "continuous parameters: this space cannot be enumerated")
        names = list(self.params)

        def rec(i: int, values: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(names):
                yield dict(values)
                return
            p = self.params[names[i]]
            if not is_active(p, {**self.fixed, **values}):
                yield from rec(i + 1, values)
                return
            for v in p.values():
                values[names[i]] = v
                yield from rec(i + 1, values)
                del values[names[i]]

        for values in rec(0, {}):
            cfg = self.config(values)
            if not valid_only or not self.constraints(cfg):
                yield cfg

    def size(self) -> int:
        """Number of points in the full (unconstrained) grid; ``math.inf`` if continuous."""
        if not self.is_finite():
            return math.inf  # type: ignore[return-value]
        return sum(1 for _ in self.enumerate(valid_only=False)) if any(
            p.when for p in self.params.values()) else math.prod(
            len(p.values()) for p in self.params.values())

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One uniformly random config (valid or not)."""
        values: dict[str, Any] = {}
        for name, p in self.params.items():
            if not is_active(p, {**self.fixed, **values}):
                continue
            if isinstance(p, Float) and p.step is None:
                values[name] = (math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
                                if p.log else rng.uniform(p.low, p.high))
            else:
                values[name] = rng.choice(p.values())
        return self.config(values)

    def contains(self, values: Mapping[str, Any], check_constraints: bool = True) -> bool:
        """True when ``values`` name only this space's parameters, each with a value it can
        take, and (unless ``check_constraints`` is false) their config passes ``constraints()``.

        A point stored by an older version of the space (a warm start, a baseline) is checked
        this way before it is evaluated again.
        """
        if not isinstance(values, Mapping) or set(values) - set(self.params):
            return False
        if not all(param_contains(self.params[k], v) for k, v in values.items()):
            return False
        if not check_constraints:
            return True
        try:
            return not self.constraints(self.config(values))
        except Exception:  # e.g. a parameter this config lacks: not a point of this space
            return False

    def param_values(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The searched part of a config."""
        return {k: config[k] for k in self.params if k in config}

    def schema(self) -> dict[str, Any]:
        """A JSON-able description of the parameters (for LLM prompts, docs, dashboards)."""
        out: dict[str, Any] = {}
        for name, p in self.params.items():
            d: dict[str, Any] = {"type": type(p).__name__.lower()}
            if isinstance(p, Categorical):
                d["choices"] = list(p.choices)
            else:
                d.update(low=p.low, high=p.high, step=p.step, log=p.log)
            if p.when:
                d["when"] = {k: list(v) for k, v in p.when.items()}
            out[name] = d
        return out


def product_size(params: Mapping[str, Param]) -> int:
    return math.prod(len(p.values()) for p in params.values())


__all__ = ["BaseSpace", "Categorical", "Float", "Int", "Param", "is_active", "param_contains",
           "params_key", "product_size", "suggest_param", "to_distribution"]
