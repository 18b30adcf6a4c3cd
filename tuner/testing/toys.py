"""Small spaces and evaluators for tests and the engine benchmark (import-path registered).

``ToySpace``/``ToyEvaluator`` is a microsecond two-objective problem with a known optimum;
``FaultyEvaluator`` misbehaves on purpose (raise, hang, exit, allocate without bound) so the
runner's fault paths can be tested through the real process pool.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from tuner._evaluator import BaseEvaluator, EvalResult
from tuner._space import BaseSpace, Categorical, Float, Int


class ToySpace(BaseSpace):
    name = "toy"
    default_evaluator = "tuner.testing.toys:ToyEvaluator"
    default_objectives = (("score", "maximize"),)

    def parameters(self) -> dict[str, Any]:
        if self.context.get("continuous"):
            return {"x": Float(-5.0, 5.0), "y": Float(-5.0, 5.0)}
        return {"x": Int(0, 20), "y": Int(0, 20), "mode": Categorical(("a", "b", "c"))}

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        limit = self.context.get("max_sum")
        if limit is not None and config["x"] + config["y"] > limit:
            return [f"x + y = {config['x'] + config['y']} exceeds max_sum {limit}"]
        return []

    def features(self, config: Mapping[str, Any]) -> dict[str, float]:
        return {"x_plus_y": float(config["x"] + config["y"])}


class ToyEvaluator(BaseEvaluator):
    """score peaks at x=14, y=6, mode=b; cost grows with x+y. Infeasible when x == 0."""

    name = "toy"
    version = "1"
    metrics = ("score", "cost")

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        x, y = config["x"], config["y"]
        if x == 0:
            return EvalResult.infeasible("x = 0 is not allowed by the toy model")
        bonus = {"a": 0.0, "b": 5.0, "c": 2.0}.get(config.get("mode", "b"), 0.0)
        score = 100.0 - (x - 14) ** 2 - (y - 6) ** 2 + bonus
        return EvalResult.ok({"score": score, "cost": float(x + y)})


class FaultyEvaluator(ToyEvaluator):
    """``mode`` option (or config key ``fault``): raise | hang | exit | alloc | ok.

    The fault fires only for configs with ``x == trigger_x`` (default: every config), so a
    study mixes good and bad trials.
    """

    name = "faulty"

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        trigger = self.options.get("trigger_x")
        mode = config.get("fault", self.options.get("mode", "ok"))
        if trigger is None or config.get("x") == trigger:
            if mode == "raise":
                raise RuntimeError("boom: evaluator bug")
            if mode == "hang":
                time.sleep(3600)
            if mode == "exit":
                os._exit(3)
            if mode == "alloc":
                hog = []
                while True:
                    hog.append(bytearray(64 * 2**20))
        return super().evaluate(config)


# -- a simulator with a calibratable profile, and the "real" system it models ------------------
def _toy_stack_profile() -> Any:
    from types import MappingProxyType

    from tuner.evaluators._profiles import Profile

    return Profile("toy-stack", "serving", MappingProxyType({"speed": 1.0, "overhead_ms": 0.0}),
                   fit_bounds=MappingProxyType({"speed": (0.1, 10.0),
                                                "overhead_ms": (0.0, 100.0)}))


class ToyStackSim(BaseEvaluator):
    """``latency_ms = overhead_ms + (3x + y + 1) / speed``; ``value = x + y`` (exact)."""

    name = "toy-stack-sim"
    version = "1"
    metrics = ("latency_ms", "value")
    analytical = True
    profile_domain = "serving"

    def stack_profile(self, config: Mapping[str, Any]) -> Any:
        return _toy_stack_profile()

    def evaluate_with(self, config: Mapping[str, Any], profile: Any) -> EvalResult:
        x, y = config["x"], config["y"]
        return EvalResult.ok({"latency_ms": profile["overhead_ms"] + (3 * x + y + 1)
                              / profile["speed"], "value": float(x + y)})

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        return self.evaluate_with(config, self.stack_profile(config))


class ToyStackReal(ToyStackSim):
    """The system ``ToyStackSim`` models, with speed 2.5 and overhead 12 ms (and a 2%
    wobble, as repeated measurements have)."""

    name = "toy-stack-real"
    analytical = False

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        x, y = config["x"], config["y"]
        wobble = 1.0 + 0.02 * (((x * 7 + y * 13) % 5) - 2) / 2
        return EvalResult.ok({"latency_ms": (12.0 + (3 * x + y + 1) / 2.5) * wobble,
                              "value": float(x + y)})


def toy_validation() -> Any:
    """A ``tuner validate`` report with one targeted and one informational metric."""
    from tuner._validation import ValidationReport, ValidationRow

    rows = [ValidationRow("toy a", "speed", 11.0, 10.0, "made up"),
            ValidationRow("toy a", "memory", 5.0, 4.0, "made up")]
    return ValidationReport("toy", rows, targets={"speed": (15.0, 15.0)})
