"""Calibration recovers known constants from synthetic measurements, generalises (leave-one-
out error falls), writes a profile with bands, and refuses bad measurement files."""

from __future__ import annotations

import json
import math
import tomllib
from types import MappingProxyType

import pytest

from tuner import BadInput, BaseEvaluator, EvalResult
from tuner.evaluators._calibration import (
    calibrate,
    coordinate_search,
    read_rows,
    write_profile,
)
from tuner.evaluators._profiles import Profile

TRUE = {"flops_eff": 0.45, "overhead_ms": 12.0}


class StepModel(BaseEvaluator):
    """time = work / (peak * flops_eff) + overhead: two constants, two metrics."""

    name = "step-model"
    metrics = ("step_ms", "tokens_per_s")
    profile_domain = "training"
    base = Profile("toy-stack", "training",
                   MappingProxyType({"flops_eff": 0.8, "overhead_ms": 2.0, "policy": "x"}),
                   fit_bounds=MappingProxyType({"flops_eff": (0.05, 1.0),
                                                "overhead_ms": (0.0, 100.0)}))

    def stack_profile(self, config):
        return self.base

    def evaluate_with(self, config, profile):
        step = config["work"] / (100.0 * profile["flops_eff"]) + profile["overhead_ms"]
        if step > 1e4:
            return EvalResult.infeasible("too slow")
        return EvalResult.ok({"step_ms": step, "tokens_per_s": config["tokens"] / step * 1e3})

    def evaluate(self, config):
        return self.evaluate_with(config, self.stack_profile(config))


def _measured(work, tokens, noise=1.0):
    truth = StepModel().evaluate_with({"work": work, "tokens": tokens},
                                      Profile("t", "training", TRUE))
    return {"config": {"work": work, "tokens": tokens},
            "metrics": {k: v * noise for k, v in truth.metrics.items()}}


def test_recovers_known_constants_and_generalises(tmp_path):
    noise = [1.03, 0.98, 1.01, 0.97, 1.02, 0.99, 1.0, 1.02]  # +-3%, as real repeats spread
    lines = [_measured(w, 4096, n) for w, n in zip((200, 500, 1000, 2000, 4000, 8000, 16000,
                                                    30000), noise)]
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    report = calibrate(StepModel(), read_rows(path))
    assert report.fitted["flops_eff"] == pytest.approx(TRUE["flops_eff"], rel=0.05)
    assert report.fitted["overhead_ms"] == pytest.approx(TRUE["overhead_ms"], rel=0.15)
    for m in ("step_ms", "tokens_per_s"):
        assert report.loo_before[m] > 0.3  # the shipped constants are far off
        assert report.loo_after[m] < 0.05  # the calibrated ones predict unseen rows
        assert 0 < report.spread[m] < 0.1
    out = tmp_path / "calibrated.toml"
    write_profile(report, out, str(path))
    data = tomllib.loads(out.read_text())
    assert data["base"] == "toy-stack"
    assert data["constants"] == pytest.approx(report.fitted)
    assert set(data["uncertainty"]) == {"step_ms", "tokens_per_s"}
    band = report.profile.__class__("toy", "training", {}, data["uncertainty"])
    lo, hi = band.band("step_ms", 100.0)
    assert lo < 100.0 < hi and hi / lo == pytest.approx(math.exp(2 * 1.645 * data[
        "uncertainty"]["step_ms"]))


@pytest.mark.parametrize("text, match", [
    ("not json\n", "line 1: not JSON"),
    ('{"config": {}}\n{"config": {}}\n', "line 1: expected"),
    ('{"config": {"work": 1}, "metrics": {"step_ms": -1}}\n', "must be a finite number >= 0"),
    ('{"config": {"work": 1}, "metrics": {"step_ms": 0}}\n', "line 1: no positive metrics"),
    ('{"config": {"work": 1}, "metrics": {"step_ms": 5}}\n', "needs at least 2"),
])
def test_bad_measurement_files_name_the_line(tmp_path, text, match):
    path = tmp_path / "runs.jsonl"
    path.write_text(text)
    with pytest.raises(BadInput, match=match):
        read_rows(path)


def test_zero_metrics_are_read_and_left_out(tmp_path):
    # serving-real reports goodput 0 and cost 0 where no request met the SLO or no price is
    # set: real rows, whose zeros a log-error fit cannot use
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps({"config": {"work": w}, "metrics": {
        "step_ms": 10.0 * w, "goodput_req_s": 0.0, "cost_usd_per_mtok": 0}}) + "\n"
        for w in (1, 2)))
    rows = read_rows(path)
    assert [dict(r.metrics) for r in rows] == [{"step_ms": 10.0}, {"step_ms": 20.0}]


def test_unknown_constant_is_refused(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(_measured(w, 10)) for w in (100, 200)) + "\n")
    with pytest.raises(BadInput, match="'policy' is not a fittable constant.*flops_eff"):
        calibrate(StepModel(), read_rows(path), ["policy"])


def test_a_row_no_fit_can_evaluate_is_named(tmp_path):
    # work 1e9 is "too slow" under any constants in the fit bounds
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(_measured(w, 10)) for w in (100, 200)) + "\n"
                    + json.dumps({"config": {"work": 1e9, "tokens": 10},
                                  "metrics": {"step_ms": 5.0}}) + "\n")
    with pytest.raises(BadInput, match="line 3: infeasible under the fitted profile too "
                                       r"\(too slow\)"):
        calibrate(StepModel(), read_rows(path))


def test_a_fit_of_a_stepped_response_leaves_its_start_point():
    """A simulator's output moves in steps (whole batches, discrete events): finite differences
    at the start are zero, so least squares alone stays there; the grid search does not."""
    from scipy.optimize import least_squares

    def residuals(x):  # the best constant is ~30 of [0, 200], the response steps every 5
        return [math.floor(x[0] / 5) * 5 / 30 - 1]

    stalled = least_squares(residuals, [53.0], bounds=([0.0], [200.0]), diff_step=1e-3).x[0]
    assert stalled == pytest.approx(53.0)
    found = coordinate_search(residuals, [53.0], [0.0], [200.0], points=7, passes=3)[0]
    assert 30 <= found < 35
