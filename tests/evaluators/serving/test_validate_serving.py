"""tuner validate serving: rows per engine, split by publication, effects hold, the profiles
are the fit of their calibration rows, and held-out errors do not regress."""

import math

import pytest

from tuner.evaluators._profiles import load_profile
from tuner.evaluators.serving import validation as vs


@pytest.fixture(scope="module")
def report():
    return vs.run()


def test_every_case_names_its_engine_source_and_runs(report):
    cases = vs.cases()
    assert len(cases) >= 60
    for case in cases:
        assert case["engine"] in vs.ENGINES
        assert case["split"] == vs.split_of(case)
        assert len(case["source"]) > 30 and case["reference"] and case["source_group"]
        assert case["config"].get("engine", "vllm") == case["engine"]
    n_ref = sum(len(c["reference"]) for c in cases)
    quantitative = [r for r in report.rows if r.metric != "qualitative_effect"
                    and not r.metric.startswith("heldout_median_")]
    assert len(quantitative) == n_ref
    assert all(math.isfinite(r.predicted) and r.predicted > 0 for r in quantitative)


def test_rows_are_split_by_publication_per_engine():
    for engine in vs.ENGINES:
        cases = vs.cases(engine)
        cal = {c["source_group"] for c in cases if c["split"] == "calibration"}
        held = {c["source_group"] for c in cases if c["split"] == "validation"}
        assert cal == set(vs.CALIBRATION_SOURCES[engine])
        assert held and not cal & held  # no publication on both sides
        assert sum(c["split"] == "validation" for c in cases) > \
            sum(c["split"] == "calibration" for c in cases)


def test_report_states_held_out_medians_against_the_targets(report):
    med = vs.medians(report.rows)
    for engine in vs.ENGINES:
        note = next(n for n in report.notes if n.startswith(f"{engine}:"))
        for group, target in vs.ENGINE_TARGETS.items():
            value, n = med[(engine, "validation", group)]
            assert n >= 10 and f"validation {group} {value:.1f}%" in note
            assert ("meets" if value <= target else "MISSES") in note
    assert set(vs.targets_met(report)) == {(e, g) for e in vs.ENGINES for g in vs.ENGINE_TARGETS}
    # --check holds every engine's held-out median to its target
    summary = report.summary()
    for group, target in vs.ENGINE_TARGETS.items():
        s = summary[f"heldout_median_{group}"]
        assert s["n"] == len(vs.ENGINES) and s["target_max_pct"] == target
        assert s["max_abs_error_pct"] == pytest.approx(max(
            med[(e, "validation", group)][0] for e in vs.ENGINES))
    assert report.meets_targets() == all(vs.targets_met(report).values())


#: held-out median |error| % per engine and group reached by this version on the rows of every
#: publication (a regression guard, not the targets: see the report's notes)
REACHED = {("vllm", "throughput"): 17, ("vllm", "tpot"): 19, ("vllm", "ttft"): 21,
           ("sglang", "throughput"): 20, ("sglang", "tpot"): 24, ("sglang", "ttft"): 34,
           ("trtllm", "throughput"): 56, ("trtllm", "tpot"): 32, ("trtllm", "ttft"): 41}


def test_held_out_errors_do_not_regress(report):
    med = vs.medians(report.rows)
    for (engine, group), limit in REACHED.items():
        assert med[(engine, "validation", group)][0] <= limit, (engine, group)


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


def test_shipped_constants_are_the_fit_of_the_calibration_rows():
    fitted = vs.fit_engine("trtllm")
    shipped = load_profile("serving", "trtllm", "engine")
    for key, value in fitted.items():
        lo, hi = shipped.fit_bounds[key]
        assert value == pytest.approx(shipped[key], abs=0.02 * (hi - lo)), key


@pytest.mark.parametrize("workload, kind", [
    ({"mode": "closed", "concurrency": 4}, "closed loops"),
    ({"mode": "poisson", "rate": 4.0}, "open loops"),
    ({"mode": "burst", "dataset": "sharegpt"}, "ShareGPT bursts"),
    ({"mode": "burst", "input_len": {"dist": "lognormal", "mean": 222}},
     "bursts of sampled lengths"),
    ({"mode": "burst", "input_len": 128}, "bursts of <=256-token prompts"),
    ({"mode": "burst", "input_len": 3996}, "bursts of 257-16k-token prompts"),
    ({"mode": "burst", "input_len": 32000}, "bursts of 16k+-token prompts"),
])
def test_run_kind_names_the_workload(workload, kind):
    assert vs.run_kind({"config": {"workload": workload}}) == kind


def test_report_breaks_held_out_medians_down_by_kind_and_publication(report):
    rows = [vs.ValidationRow("a [vllm, validation]", "throughput_tok_s", 110.0, 100.0, "s"),
            vs.ValidationRow("b [vllm, validation]", "throughput_tok_s", 70.0, 100.0, "s"),
            vs.ValidationRow("b [vllm, validation]", "ttft_ms_p50", 120.0, 100.0, "s"),
            vs.ValidationRow("c [vllm, calibration]", "throughput_tok_s", 50.0, 100.0, "s")]
    notes = vs.breakdown(rows, {"a": "x", "b": "y", "c": "x"})
    assert notes == ["vllm held-out medians, throughput / TPOT / TTFT (rows): "
                     "x 10.0% (1) / - / -; y 30.0% (1) / - / 20.0% (1)"]
    shown = "\n".join(report.notes)
    for engine in vs.ENGINES:
        assert f"{engine} held-out medians" in shown
    assert "ShareGPT bursts" in shown and "gpustack-qwen3-32b" in shown
