"""The evaluator contract: ``evaluate(config) -> EvalResult``."""

from __future__ import annotations

import abc
import enum
import hashlib
import json
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from tuner._errors import BadInput, as_written, did_you_mean


class Status(str, enum.Enum):
    OK = "ok"
    INFEASIBLE = "infeasible"  # the config cannot run (does not fit, invalid): not a crash
    FAILED = "failed"  # the evaluation itself broke (exception, timeout, OOM of the worker)


@dataclass(frozen=True)
class EvalResult:
    """Frozen outcome of one evaluation."""

    status: Status
    metrics: Mapping[str, float] = field(default_factory=dict)
    reason: str | None = None
    artifacts: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))
        object.__setattr__(self, "artifacts", MappingProxyType(dict(self.artifacts)))

    @classmethod
    def ok(cls, metrics: Mapping[str, float],
           artifacts: Mapping[str, Any] | None = None) -> EvalResult:
        return cls(Status.OK, {k: float(v) for k, v in metrics.items()}, None, artifacts or {})

    @classmethod
    def infeasible(cls, reason: str, metrics: Mapping[str, float] | None = None,
                   artifacts: Mapping[str, Any] | None = None) -> EvalResult:
        return cls(Status.INFEASIBLE, metrics or {}, reason, artifacts or {})

    @classmethod
    def failed(cls, reason: str) -> EvalResult:
        return cls(Status.FAILED, {}, reason, {})

    def to_json(self, artifacts: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value, "metrics": dict(self.metrics),
                               "reason": self.reason}
        if artifacts:
            out["artifacts"] = dict(self.artifacts)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalResult:
        return cls(Status(data["status"]), data.get("metrics") or {}, data.get("reason"),
                   data.get("artifacts") or {})


_KIND_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a table"}


@dataclass(frozen=True)
class Option:
    """One evaluator option, as declared in ``BaseEvaluator.options_table``.

    ``kind``: the accepted Python type(s) (a flag is never taken for a number, nor a whole
    number for a flag); ``check``/``must``: a further condition on the value and how the
    error states it ("a number > 0"); ``default`` and ``doc`` are what ``tuner catalog``
    shows.
    """

    kind: type | tuple[type, ...]
    default: Any = None
    doc: str = ""
    required: bool = False
    check: Callable[[Any], bool] | None = None
    must: str = ""

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None when it is fine)."""
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if object not in kinds:
            numeric = any(k in (int, float) for k in kinds) and bool not in kinds
            ok = isinstance(value, kinds) and not (numeric and isinstance(value, bool))
            if float in kinds and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                return self.must or " or ".join(_KIND_WORDS.get(k, k.__name__) for k in kinds)
        if self.check is not None:
            try:
                good = bool(self.check(value))
            except (TypeError, ValueError):
                good = False
            if not good:
                return self.must or "a valid value"
        return None


class BaseEvaluator(abc.ABC):
    """Scores one config. Subclasses set ``name``, ``version`` and ``metrics``.

    Rules: ``evaluate`` never raises for a bad config (return ``infeasible`` with the reason);
    ``__init__`` only stores options; ``fingerprint()`` changes whenever a cached result could
    differ (evaluator version, hardware, software versions, options).

    Options are declared in ``options_table`` (name -> ``Option``); ``__init__`` refuses an
    unknown option, a missing required one and a value of the wrong type with one
    ``BadInput`` line naming the option and what it must be, before anything runs. An
    evaluator that leaves the table ``None`` checks its options itself (a plug-in written
    before the table existed keeps working). ``config_keys`` names the config keys it reads
    (``check_config`` refuses others; ``None``: the evaluator checks them itself, or takes any
    key). ``preflight`` says once, before a study or a batch starts, that this machine cannot
    run the evaluator at all.
    """

    name: str = ""
    version: str = "0"
    #: metric names this evaluator reports when status is ok
    metrics: tuple[str, ...] = ()
    #: space (domain) names whose configs this evaluator scores (for the contract suite)
    domains: tuple[str, ...] = ()
    #: options that build a working instance for the contract suite (when it needs some)
    example_options: dict[str, Any] = {}
    #: option name -> ``Option``; None: not declared (the evaluator checks its own options)
    options_table: ClassVar[Mapping[str, Option] | None] = None
    #: the config keys this evaluator reads; None: it checks its keys itself, or takes any
    config_keys: ClassVar[frozenset[str] | None] = None
    #: a pure, cheap function of the config (a simulator): ``tuner run`` may sweep it in-process
    analytical: bool = False

    def __init__(self, **options: Any) -> None:
        self.check_options(options)
        self.options = dict(options)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """``BadInput`` for an unknown, missing or mistyped option (see ``options_table``)."""
        table = cls.options_table
        if table is None:
            return
        unknown = sorted(set(options) - set(table))
        if unknown:
            allowed = ", ".join(table) if table else f"none ({cls.name} takes no options)"
            raise BadInput(f"evaluator.options.{unknown[0]}", f"unknown option for "
                           f"{cls.name}; allowed: {allowed}")
        missing = [k for k, o in table.items() if o.required and k not in options]
        if missing:
            raise BadInput(f"evaluator.options.{missing[0]}", f"required by {cls.name}: "
                           f"{table[missing[0]].doc or table[missing[0]].must}")
        for key, value in options.items():
            problem = table[key].problem(value)
            if problem:
                shown = as_written(value)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise BadInput(f"evaluator.options.{key}", f"{shown} must be {problem}")

    @classmethod
    def preflight(cls, options: Mapping[str, Any]) -> None:
        """Raise ``BadInput`` when this machine cannot run the evaluator at all (no GPU, no
        engine binary), once, before anything runs; the default checks nothing."""

    def check_config(self, config: Mapping[str, Any]) -> None:
        """``BadInput`` naming a config key the evaluator does not read (``config_keys``)."""
        keys = self.config_keys
        if keys is None:
            return
        unknown = sorted(set(config) - keys, key=str)
        if unknown:
            hint = did_you_mean(unknown[0], sorted(keys))
            raise BadInput("config", f"unknown key {unknown[0]!r} for {self.name}{hint}; "
                           f"allowed: {', '.join(sorted(keys))}")

    def check_context(self, context: Mapping[str, Any]) -> None:
        """``BadInput`` when a study's context (the keys every config shares) cannot run under
        this evaluator's options, so the study stops before its first trial; default:
        nothing to check."""

    @abc.abstractmethod
    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        """Score one config (context + parameters merged)."""

    def setup(self) -> None:
        """Called once per worker process before the first evaluation."""

    def teardown(self) -> None:
        """Called once per worker process after the last evaluation."""

    def environment(self) -> dict[str, str]:
        """Software/hardware facts that invalidate cached results when they change."""
        return {"python": platform.python_version()}

    def fingerprint(self) -> str:
        payload = {"name": self.name, "version": self.version, "options": self.options,
                   "env": self.environment()}
        raw = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(raw).hexdigest()[:16]

    def get_params(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, **self.options}


def config_key(config: Mapping[str, Any], fingerprint: str) -> str:
    """Content hash of a config under one evaluator fingerprint (the cache key)."""
    raw = json.dumps(dict(config), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(f"{fingerprint}|{raw}".encode()).hexdigest()[:32]
