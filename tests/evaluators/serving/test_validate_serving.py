"""tuner validate serving: reference data is cited, effects hold, errors stay within bounds."""

import math
import statistics

import pytest

from evaluators.serving import validation as vs


@pytest.fixture(scope="module")
def report():
    return vs.run()


def test_every_case_cites_a_source_and_runs(report):
    cases = vs.cases()
    assert len(cases) >= 15
    for case in cases:
        assert case["split"] in ("calibration", "validation")
        assert len(case["source"]) > 30 and case["reference"]
        assert set(case.get("fit", case["reference"])) <= set(case["reference"])
    n_ref = sum(len(c["reference"]) for c in cases)
    quantitative = [r for r in report.rows if r.metric != "qualitative_effect"]
    assert len(quantitative) == n_ref
    assert all(math.isfinite(r.predicted) and r.predicted > 0 for r in quantitative)


def test_both_splits_present_and_validation_dominates(report):
    splits = [r.case.rsplit("[", 1)[1].rstrip("]") for r in report.rows
              if r.metric != "qualitative_effect"]
    assert splits.count("validation") > 2 * splits.count("calibration") > 0


def test_decode_latency_error_on_held_out_rows(report):
    rows = [r for r in report.rows if "[validation]" in r.case
            and (r.metric.startswith("tpot") or r.metric == "e2e_ms_p50")]
    errs = [abs(r.error_pct) for r in rows]
    assert len(rows) >= 10
    assert statistics.median(errs) < 15.0  # the best published simulator: 10-17 % median
    assert max(errs) < 35.0


def test_literature_effects_all_hold(report):
    rows = [r for r in report.rows if r.metric == "qualitative_effect"]
    assert len(rows) == len(vs.effects()) >= 5
    failing = [r.case for r in rows if r.predicted != 1.0]
    assert not failing, failing


def test_effect_parser_rejects_garbage():
    bad = {"id": "x", "base": {}, "a": {}, "b": {}, "expect": ["a.x ~ b.y"]}
    with pytest.raises(ValueError, match="cannot parse"):
        vs.check_effect({**bad, "base": {"model": "llama3.1-8b", "workload": {
            "mode": "burst", "num_requests": 2, "input_len": 8, "output_len": 2}}})


def test_engine_constants_are_the_fit_of_the_calibration_rows():
    fitted = vs.fit()
    consts = vs._plan.engine_constants()
    for key, value in fitted.items():
        if key == "mean_abs_log_error":
            continue
        section, name = key.split(".")
        assert consts[section][name] == value, key
