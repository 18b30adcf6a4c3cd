"""The evaluator contract: ``evaluate(config) -> EvalResult``."""

from __future__ import annotations

import abc
import enum
import hashlib
import json
import platform
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping


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
    def ok(cls, metrics: Mapping[str, float], artifacts: Mapping[str, Any] | None = None) -> "EvalResult":
        return cls(Status.OK, {k: float(v) for k, v in metrics.items()}, None, artifacts or {})

    @classmethod
    def infeasible(cls, reason: str, metrics: Mapping[str, float] | None = None,
                   artifacts: Mapping[str, Any] | None = None) -> "EvalResult":
        return cls(Status.INFEASIBLE, metrics or {}, reason, artifacts or {})

    @classmethod
    def failed(cls, reason: str) -> "EvalResult":
        return cls(Status.FAILED, {}, reason, {})

    def to_json(self, artifacts: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value, "metrics": dict(self.metrics),
                               "reason": self.reason}
        if artifacts:
            out["artifacts"] = dict(self.artifacts)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EvalResult":
        return cls(Status(data["status"]), data.get("metrics") or {}, data.get("reason"),
                   data.get("artifacts") or {})


class BaseEvaluator(abc.ABC):
    """Scores one config. Subclasses set ``name``, ``version`` and ``metrics``.

    Rules: ``evaluate`` never raises for a bad config (return ``infeasible`` with the reason);
    ``__init__`` only stores options; ``fingerprint()`` changes whenever a cached result could
    differ (evaluator version, hardware, software versions, options).
    """

    name: str = ""
    version: str = "0"
    #: metric names this evaluator reports when status is ok
    metrics: tuple[str, ...] = ()
    #: space (domain) names whose configs this evaluator scores (for the contract suite)
    domains: tuple[str, ...] = ()
    #: options that build a working instance for the contract suite (when it needs some)
    example_options: dict[str, Any] = {}
    #: a pure, cheap function of the config (a simulator): ``tuner run`` may sweep it in-process
    analytical: bool = False

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)

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
