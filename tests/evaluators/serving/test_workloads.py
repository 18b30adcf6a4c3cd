"""Workload generators and the request-trace loader of serving-sim."""

import math
import statistics

import pytest

from tuner import BadInput
from tuner.evaluators.serving._workloads import (
    WORKLOAD_DIR,
    load_workload,
    synthetic_burstgpt_rows,
    workload_names,
    write_synthetic_burstgpt,
)

LENS = {"input_len": 100, "output_len": 20}


def test_closed_loop_has_concurrency_and_fixed_lengths():
    w = load_workload({"mode": "closed", "concurrency": 64, "num_requests": 512,
                       "input_len": 1024, "output_len": 1024})
    assert w.is_closed and w.concurrency == 64 and len(w) == 512
    assert set(w.input_len) == {1024} and set(w.output_len) == {1024}


def test_poisson_rate_and_determinism():
    spec = {"mode": "poisson", "rate": 8.0, "num_requests": 5000, "seed": 3, **LENS}
    w = load_workload(spec)
    assert w.arrival_s == load_workload(spec).arrival_s  # same seed, same requests
    assert w.arrival_s != load_workload({**spec, "seed": 4}).arrival_s
    gaps = [b - a for a, b in zip(w.arrival_s, w.arrival_s[1:])]
    assert statistics.fmean(gaps) == pytest.approx(1 / 8.0, rel=0.05)
    cv = statistics.pstdev(gaps) / statistics.fmean(gaps)
    assert cv == pytest.approx(1.0, abs=0.06)  # exponential gaps


def test_gamma_burstiness_sets_the_gap_cv():
    w = load_workload({"mode": "gamma", "rate": 10.0, "burstiness": 0.25, "num_requests": 8000,
                       "seed": 1, **LENS})
    gaps = [b - a for a, b in zip(w.arrival_s, w.arrival_s[1:])]
    assert statistics.fmean(gaps) == pytest.approx(0.1, rel=0.06)
    # Gamma(shape k): CV = 1/sqrt(k) = 2 for k = 0.25
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(2.0, rel=0.1)


def test_duration_bounds_arrivals():
    w = load_workload({"mode": "poisson", "rate": 5.0, "duration_s": 60, **LENS})
    assert w.arrival_s[-1] <= 60 and 200 < len(w) < 400


def test_length_distributions_are_clipped_and_have_their_mean():
    w = load_workload({"mode": "burst", "num_requests": 20000, "seed": 0,
                       "input_len": {"dist": "lognormal", "mean": 300, "cv": 0.5},
                       "output_len": {"dist": "uniform", "low": 10, "high": 30}})
    assert statistics.fmean(w.input_len) == pytest.approx(300, rel=0.03)
    assert min(w.output_len) >= 10 and max(w.output_len) <= 30
    w = load_workload({"mode": "burst", "num_requests": 2000,
                       "input_len": {"dist": "normal", "mean": 50, "std": 100, "min": 8,
                                     "max": 64}, "output_len": 4})
    assert min(w.input_len) >= 8 and max(w.input_len) <= 64


def test_sharegpt_dataset_draws_the_benchmark_client_s_pairs():
    rows = (WORKLOAD_DIR / "sharegpt_lengths.csv").read_text().splitlines()
    pairs = {tuple(map(int, r.split(","))) for r in rows[1:]}
    # vllm bench serve's filter (benchmarks/datasets.py is_valid_sequence) was applied
    assert all(p >= 4 and c >= 4 and p <= 1024 and p + c <= 2048 for p, c in pairs)
    spec = {"mode": "burst", "num_requests": 2000, "seed": 0, "dataset": "sharegpt"}
    w = load_workload(spec)
    assert set(zip(w.input_len, w.output_len)) <= pairs  # unscaled: the dataset's own pairs
    assert w.input_len == load_workload(spec).input_len
    assert w.input_len != load_workload({**spec, "seed": 1}).input_len
    # the shape the lognormal stand-in missed: many very short turns and a long output tail
    assert statistics.median(w.input_len) < 0.6 * statistics.fmean(w.input_len)
    assert max(w.output_len) > 1024


def test_sharegpt_dataset_scaled_to_a_run_s_token_totals():
    w = load_workload({"mode": "closed", "concurrency": 4, "num_requests": 100, "dataset":
                       {"name": "sharegpt", "input_mean": 232.6, "output_mean": 220.6}})
    assert statistics.fmean(w.input_len) == pytest.approx(232.6, abs=0.05)
    assert statistics.fmean(w.output_len) == pytest.approx(220.6, abs=0.05)
    assert min(w.input_len) >= 1


def test_priority_levels():
    w = load_workload({"mode": "burst", "num_requests": 300, "priority_levels": 3, **LENS})
    assert set(w.priority) == {0, 1, 2}


def test_every_catalog_workload_loads():
    assert {"sharegpt-like", "burstgpt-synthetic", "random-1k-1k-closed64"} <= set(
        workload_names())
    for name in workload_names():
        assert len(load_workload(name)) > 0


def test_catalog_entry_with_overrides():
    w = load_workload({"name": "sharegpt-like", "num_requests": 50, "rate": 2.0})
    assert len(w) == 50
    assert w.stats()["max_input_len"] <= 1024


def test_burstgpt_layout_loads_and_skips_failed_rows():
    w = load_workload({"trace": "burstgpt_synthetic_sample.csv"})
    rows = synthetic_burstgpt_rows(2000, 2.0, 0)
    failed = sum(1 for r in rows if r[3] == 0)
    assert failed > 0 and w.skipped_rows == failed and len(w) == 2000 - failed
    assert w.arrival_s[0] == 0.0 and list(w.arrival_s) == sorted(w.arrival_s)
    gpt4 = load_workload({"trace": "burstgpt_synthetic_sample.csv", "model_filter": "GPT-4"})
    assert 0 < len(gpt4) < len(w)


def test_trace_rescaling_and_selection(tmp_path):
    path = tmp_path / "t.csv"
    write_synthetic_burstgpt(path, n=500, rate=1.0, seed=2)
    w = load_workload({"trace": str(path), "rate": 10.0})
    assert w.stats()["offered_rate_req_s"] == pytest.approx(10.0, rel=1e-6)
    base = load_workload({"trace": str(path)})
    fast = load_workload({"trace": str(path), "speedup": 4.0})
    assert fast.arrival_s[-1] == pytest.approx(base.arrival_s[-1] / 4)
    assert len(load_workload({"trace": str(path), "max_requests": 7})) == 7
    window = load_workload({"trace": str(path), "start_s": 100, "duration_s": 50})
    assert 0 < len(window) < len(base) and window.arrival_s[-1] <= 50


def test_generic_trace_columns(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("timestamp,input_tokens,output_tokens,priority\n"
                    "0.5,100,10,1\n0.0,200,20,0\n\n1.5,300,30,2\n")
    w = load_workload({"trace": str(path)})
    assert w.input_len == (200, 100, 300)  # sorted by time
    assert w.arrival_s == (0.0, 0.5, 1.5) and w.priority == (0, 1, 2)


def test_a_trace_selecting_more_requests_than_a_run_holds_is_refused(tmp_path, monkeypatch):
    from tuner.evaluators.serving import _workloads

    monkeypatch.setattr(_workloads, "MAX_REQUESTS", 3)  # the same rule as at 1,000,000
    path = tmp_path / "t.csv"
    path.write_text("timestamp,input_tokens,output_tokens\n"
                    + "".join(f"{i},10,5\n" for i in range(5)))
    with pytest.raises(BadInput, match="selects 5 requests, above the 3 .*set max_requests"):
        load_workload({"trace": str(path)})
    assert len(load_workload({"trace": str(path), "max_requests": 3}).arrival_s) == 3


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n",
     "no usable data rows"),
    ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
     "1,ChatGPT,10,5,15,API log\n2,ChatGPT,ten,5,15,API log\n", "line 3"),
    ("timestamp,input_tokens,output_tokens\n-1,10,5\n", "line 2: timestamp"),
    ("timestamp,input_tokens,output_tokens\n1,10\n", "line 2: 2 columns"),
    ("time,prompt_tokens\n1,10\n", "no output column"),
])
def test_bad_traces_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(BadInput, match=message) as err:
        load_workload({"trace": str(path)})
    assert err.value.field == "workload.trace"


@pytest.mark.parametrize("spec, field", [
    ({"mode": "poisson", "rate": -2, "num_requests": 5, **LENS}, "workload.rate"),
    ({"mode": "gamma", "rate": 2, "num_requests": 5, **LENS}, "workload.burstiness"),
    ({"mode": "burst", **LENS}, "workload.num_requests"),
    # a run that would simulate for hours is refused, not started
    ({"mode": "burst", "num_requests": 10**8, **LENS}, "workload.num_requests"),
    ({"mode": "poisson", "rate": 1e5, "duration_s": 100, **LENS}, "workload.duration_s"),
    ({"mode": "warp", **LENS}, "workload.mode"),
    ({"mode": "burst", "num_requests": 5, "input_len": 0, "output_len": 5},
     "workload.input_len"),
    ({"mode": "burst", "num_requests": 5, "input_len": {"dist": "zipf"}, "output_len": 5},
     "workload.input_len.dist"),
    ({"mode": "burst", "num_requests": 5, "bogus": 1, **LENS}, "workload"),
    ({"trace": "/no/such/file.csv"}, "workload.trace"),
    ({"name": "no-such-workload"}, "workload.name"),
    (42, "workload"),
    ({"mode": "burst", "num_requests": 5, "warmup_requests": 5, **LENS},
     "workload.warmup_requests"),
    ({"mode": "burst", "num_requests": 5, "warmup_requests": -1, **LENS},
     "workload.warmup_requests"),
    ({"mode": "burst", "num_requests": 5, "dataset": "lmsys"}, "workload.dataset.name"),
    ({"mode": "burst", "num_requests": 5, "dataset": {"name": "sharegpt", "mean": 3}},
     "workload.dataset"),
    ({"mode": "burst", "num_requests": 5, "dataset": {"name": "sharegpt",
                                                      "input_mean": -1}},
     "workload.dataset.input_mean"),
    ({"mode": "burst", "num_requests": 5, "dataset": "sharegpt", "input_len": 5},
     "workload.input_len"),
])
def test_bad_specs_raise_badinput_naming_the_field(spec, field):
    with pytest.raises(BadInput) as err:
        load_workload(spec)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_synthetic_sample_in_repo_matches_its_generator():
    lines = (WORKLOAD_DIR / "burstgpt_synthetic_sample.csv").read_text().splitlines()
    assert lines[0] == "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
    first = synthetic_burstgpt_rows(2000, 2.0, 0)[0]
    assert lines[1].split(",")[2] == str(first[2]) and len(lines) == 2001
    assert math.isclose(float(lines[1].split(",")[0]), first[0])
