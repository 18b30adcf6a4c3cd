"""serving-sim engine profiles: the ``engine`` key, shipped profiles as data, the ``profile``
option, uncertainty bands and the calibration contract."""

import json
import math

import pytest

from tuner import BadInput, UnknownName
from tuner.evaluators._calibration import calibrate, read_rows
from tuner.evaluators._profiles import load_profile, profile_names, with_constants
from tuner.evaluators.serving._plan import ENGINES, parse
from tuner.evaluators.serving.sim import ServingSimEvaluator

WL = {"mode": "closed", "concurrency": 4, "num_requests": 24, "input_len": 300,
      "output_len": 40}
BASE = {"model": "llama3.1-8b", "gpu": "h100_sxm", "workload": WL}


def test_every_engine_has_a_shipped_profile_with_sources_and_fit_bounds():
    assert set(profile_names("serving")) == set(ENGINES)
    gpu_keys = set(load_profile("serving", "vllm", "engine").constants)
    for name in ("sglang", "trtllm"):  # GPU engines share one schema
        assert set(load_profile("serving", name, "engine").constants) == gpu_keys
    for name in ENGINES:
        prof = load_profile("serving", name, "engine")
        assert prof.fit_bounds and prof.description
        text = open(prof.path).read()
        assert text.count("#") > 10  # each value says where it comes from


def test_unknown_engine_names_the_allowed_ones():
    with pytest.raises(UnknownName) as err:
        ServingSimEvaluator().evaluate({**BASE, "engine": "tgi"})
    assert err.value.field == "engine"
    for name in ENGINES:
        assert name in str(err.value)


def test_engine_defaults_come_from_its_profile():
    vllm, sglang, trt = (parse({**BASE, "engine": e}) for e in ("vllm", "sglang", "trtllm"))
    assert (vllm.admission, sglang.admission, trt.admission) == (
        "preempt", "reserve", "guaranteed_no_evict")
    assert vllm.chunked_prefill and vllm.mixed_prefill and vllm.kv_block_size == 16
    assert sglang.chunked_prefill and not sglang.mixed_prefill and sglang.kv_block_size == 1
    assert not trt.chunked_prefill and trt.mixed_prefill and trt.kv_block_size == 32
    assert (vllm.max_num_seqs, trt.max_num_seqs) == (1024, 2048)
    a100 = parse({**BASE, "gpu": "a100_sxm_80gb"})
    assert (a100.max_num_batched_tokens, a100.max_num_seqs) == (2048, 256)
    # SGLang sizes by memory alone: 8192-token chunks from 60 GiB, 4096 below
    assert parse({**BASE, "engine": "sglang", "gpu": "a100_sxm_80gb"}
                 ).max_num_batched_tokens == 8192
    assert parse({**BASE, "engine": "sglang", "gpu": "a100_sxm_40gb"}
                 ).max_num_batched_tokens == 4096
    # a config knob still wins over the engine default
    assert parse({**BASE, "engine": "trtllm", "chunked_prefill": True}).chunked_prefill


def test_sglang_attention_dp_ranks_share_the_replicas_budgets():
    moe = {**BASE, "model": "deepseek-v3", "gpu": "h200_sxm", "tp": 8, "ep": 8,
           "weight_dtype": "fp8", "dp_attention": True}
    sg = parse({**moe, "engine": "sglang", "max_num_seqs": 256})
    # --chunked-prefill-size 8192 and --max-running-requests 256 over 8 ranks
    assert (sg.max_num_batched_tokens, sg.prefill_chunk_size, sg.max_num_seqs) == (1024, 1024, 32)
    assert parse({**moe, "engine": "sglang"}).max_num_seqs == 4096  # sized per rank
    trt = parse({**moe, "engine": "trtllm", "max_num_seqs": 256})
    assert (trt.max_num_batched_tokens, trt.max_num_seqs) == (8192, 256)
    assert parse({**moe, "engine": "sglang", "dp_attention": False}).max_num_batched_tokens \
        == 8192


@pytest.mark.parametrize("extra, gpu_mib, reserve_mib", [
    # one H100, chunked_prefill_size 8192, 256 decode graphs
    ({}, 80 * 1024 * 0.99, 512 + 1.5 * 8192 + 2 * 256 + 1024 / 8),
    # TP8: 512 decode graphs, 1024 MiB for the parallel size
    ({"model": "qwen3-235b-a22b", "tp": 8}, 80 * 1024 * 0.99, 512 + 1.5 * 8192 + 2 * 512 + 1024),
    # DP attention on 8 x H200: 3 MiB per graph batch and rank, half again above 300 graphs
    ({"model": "deepseek-v3", "gpu": "h200_sxm", "tp": 8, "weight_dtype": "fp8",
      "dp_attention": True}, 141 * 1024 * 0.99,
     512 + 1.5 * 8192 + 2 * 512 + 1024 + 4.5 * 512 * 8),
    # a small budget still reserves 2048 tokens' worth; the 10 GiB floor on large GPUs
    ({"max_num_batched_tokens": 1024}, 80 * 1024 * 0.99, 10 * 1024),
    # an A100 80GB is a 60-90 GiB GPU to SGLang; a 40GB one takes 4096-token chunks, 32 graphs
    ({"gpu": "a100_sxm_80gb"}, 80 * 1024 * 0.99, 512 + 1.5 * 8192 + 2 * 256 + 1024 / 8),
    ({"gpu": "a100_sxm_40gb"}, 40 * 1024 * 0.99, 512 + 1.5 * 4096 + 2 * 32 + 1024 / 8),
])
def test_sglang_sizes_its_pool_from_what_it_reserves(extra, gpu_mib, reserve_mib):
    """SGLang 0.5.3+ leaves mem_fraction_static unset and derives it from the memory it keeps
    for activations and CUDA graphs (server_args._handle_gpu_memory_settings)."""
    plan = parse({**BASE, "engine": "sglang", **extra})
    assert plan.gpu_memory_utilization == pytest.approx((gpu_mib - reserve_mib) / gpu_mib,
                                                        abs=6e-4)
    # the user's fraction wins; the other engines keep their fixed default
    assert parse({**BASE, "engine": "sglang", **extra,
                  "gpu_memory_utilization": 0.9}).gpu_memory_utilization == 0.9
    assert parse({**BASE, "engine": "vllm"}).gpu_memory_utilization == 0.9


def _write(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_profile_option_overrides_the_engine_profile(tmp_path):
    slow = _write(tmp_path, 'base = "vllm"\n[constants]\nstep_overhead_us = 20000.0\n')
    shipped = ServingSimEvaluator().evaluate(BASE).metrics
    ev = ServingSimEvaluator(profile=slow)
    got = ev.evaluate(BASE).metrics
    assert got["tpot_ms_p50"] > shipped["tpot_ms_p50"] + 15  # +20 ms per step
    assert ev.stack_profile(BASE)["step_overhead_us"] == 20000.0
    assert ev.fingerprint() != ServingSimEvaluator().fingerprint()
    # the fingerprint follows the file's content, not only its path
    fp = ev.fingerprint()
    _write(tmp_path, 'base = "vllm"\n[constants]\nstep_overhead_us = 30000.0\n')
    assert ServingSimEvaluator(profile=slow).fingerprint() != fp


@pytest.mark.parametrize("text, match", [
    ('base = "vllm"\n[constants]\nstep_overhead = 1.0\n',
     "step_overhead: unknown constant.*did you mean 'step_overhead_us'"),
    ('base = "vllm"\nconstants = 5\n', "profile.constants: 5 must be a table"),
    ('base = "vllm"\n[uncertainty]\ntpot_ms_p5O = 0.1\n',
     "profile.uncertainty: unknown 'tpot_ms_p5O' \\(did you mean 'tpot_ms_p50'"),
    ('base = "vllm"\n[constants]\nadmission = 3\n', "admission: 3 must be of the type"),
    ('base = "tgi"\n', "base"),
    ('[constants]\nstep_overhead_us = 1.0\n', "base: missing.*allowed: llama.cpp, sglang"),
    ('base = "vllm"\n[constants]\ndefault_max_num_seqs = 0\n',
     "evaluator.options.profile.constants.default_max_num_seqs: 0 must be > 0"),
    ('base = "vllm"\n[constants]\nprefill_attention_efficiency = 7.0\n', "must be <= 1"),
    ('base = "vllm"\n[constants]\nadmission = "foo"\n', "admission: unknown 'foo'"),
    ('base = "vllm"\n[uncertainty]\nttft_ms_p50 = 1000\n',
     "uncertainty.ttft_ms_p50: 1000 must be a log-space standard deviation in \\[0, 3\\]"),
    ('base = "vllm"\nsource = 5\n', "profile.source: 5 must be a string"),
    ('base = "vllm"\n[constants]\nprefill_attention_efficiency = 0.0\n', "must be > 0"),
    ('base = "vllm"\n[constants]\nallreduce_latency_us = -1e7\n', "must be >= 0"),
    ('base = "vllm"\n[constants]\ncuda_graph_pad = 2.5\n', "must be a whole number"),
    ('base = "vllm"\n[constants]\ncuda_graph_pad = 1024\n',
     "cuda_graph_pad: 1024 must be <= cuda_graph_max_batch \\(512\\)"),
    ('base = "vllm"\n[constants]\nvisible_fraction = 1.5\n', "must be <= 1"),
    ('base = "vllm"\n[constants]\ngemm_efficiency = 1.2\n', "gemm_efficiency: 1.2 must be <= 1"),
    ('base = "vllm"\n[constants]\ngemm_efficiency = 0.0\n', "gemm_efficiency: 0.0 must be > 0"),
    ('base = "vllm"\n[constants]\nmemory_fraction_of = "foo"\n', "valid: free, static"),
    ('base = "vllm"\nconstants = [\n', "not valid TOML"),
])
def test_bad_profile_files_name_what_is_wrong(tmp_path, text, match):
    # refused when the evaluator is built, before a study runs a trial
    with pytest.raises((BadInput, UnknownName), match=match) as err:
        ServingSimEvaluator(profile=_write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_gemm_efficiency_slows_compute_bound_work_not_weight_streaming():
    """The engine's share of the GEMM roofline scales what computes (a long prefill chunk, a
    large decode batch), not a small decode batch that streams the weights."""
    from tuner.evaluators.serving._latency import StepModel

    shipped = load_profile("serving", "vllm", "engine")
    full, half = (StepModel(parse(BASE, with_constants(shipped, {"gemm_efficiency": e,
                                                                 "per_seq_overhead_us": 0.0})),
                            1, 1, 1) for e in (1.0, 0.5))
    assert half.linear(8192) == pytest.approx(2 * full.linear(8192), rel=0.05)
    assert half.linear(1024) > 1.8 * full.linear(1024)
    assert half.decode_step(4, 4 * 1000) == pytest.approx(full.decode_step(4, 4 * 1000), rel=0.02)


def test_an_engine_without_a_sliding_window_pool_holds_fewer_tokens():
    """gpt-oss alternates sliding-window and full layers: SGLang 0.5 gives every layer a token's
    KV (no hybrid SWA pool for it), so its pool holds half the tokens of one that keeps only a
    window per request in the sliding layers; the window's share per request is then gone."""
    from tuner.evaluators.serving._plan import engine_memory

    cfg = {**BASE, "engine": "sglang", "model": "gpt-oss-20b", "expert_weight_dtype": "mxfp4"}
    shipped = load_profile("serving", "sglang", "engine")
    full, window = (engine_memory(parse(cfg, with_constants(
        shipped, {"sliding_window_full_kv": f})), 1, 1, 1) for f in (True, False))
    assert full.kv == window.kv
    assert full.kv_tokens(1) == pytest.approx(window.kv_tokens(1) / 2, rel=0.01)
    assert full.swa_bytes_per_seq == 0 < window.swa_bytes_per_seq


@pytest.mark.parametrize("value", ["0", "0.5", "-256"])
def test_an_expert_padding_that_is_not_a_whole_number_is_named(tmp_path, value):
    path = _write(tmp_path, f'base = "vllm"\n[constants]\nmxfp4_expert_ffn_multiple = {value}\n')
    with pytest.raises(BadInput, match="mxfp4_expert_ffn_multiple: .* must be (> 0|a whole)"):
        ServingSimEvaluator(profile=path).evaluate({**BASE, "model": "gpt-oss-120b",
                                                    "expert_weight_dtype": "mxfp4"})


def test_profile_of_another_engine_is_refused(tmp_path):
    path = _write(tmp_path, 'base = "sglang"\n[constants]\napi_latency_ms = 5.0\n')
    with pytest.raises(BadInput, match="refines the 'sglang' profile but the config's engine "
                                       "is 'vllm'"):
        ServingSimEvaluator(profile=path).evaluate({**BASE, "engine": "vllm"})
    assert ServingSimEvaluator(profile=path).evaluate({**BASE, "engine": "sglang"}).status \
        .value == "ok"
    # a config that names no engine runs on the profile's, as training's framework does
    assert ServingSimEvaluator(profile=path).evaluate(BASE).artifacts["engine"] == "sglang"


def test_unknown_option_and_bad_profile_option_are_refused():
    with pytest.raises(BadInput, match="unknown option"):
        ServingSimEvaluator(profiles="x.toml")
    with pytest.raises(BadInput, match="must be a profile file"):
        ServingSimEvaluator(profile="vllm")


def test_uncertainty_in_the_profile_gives_bands(tmp_path):
    path = _write(tmp_path, 'base = "vllm"\n[uncertainty]\ntpot_ms_p50 = 0.1\n'
                  'ttft_ms_p50 = 0.2\n')
    res = ServingSimEvaluator(profile=path).evaluate(BASE)
    m, a = res.metrics, res.artifacts
    for metric, sd in (("tpot_ms_p50", 0.1), ("ttft_ms_p50", 0.2)):
        lo, hi = a[f"{metric}_lo"], a[f"{metric}_hi"]
        assert lo < m[metric] < hi
        assert hi / lo == pytest.approx(math.exp(2 * 1.645 * sd))
    assert "throughput_tok_s_lo" not in a
    assert "tpot_ms_p50_lo" not in ServingSimEvaluator().evaluate(BASE).artifacts


def test_calibration_recovers_a_profile_constant(tmp_path):
    """serving-sim implements the calibration contract: runs simulated with a known API
    latency are fitted back to it."""
    ev = ServingSimEvaluator()
    assert ev.profile_domain == "serving"
    truth = with_constants(ev.stack_profile(BASE), {"api_latency_ms": 12.0})
    lines = []
    for n_in, conc in ((200, 1), (600, 2), (1500, 4), (3000, 2), (100, 1), (400, 3),
                       (800, 1), (2000, 4)):
        cfg = {**BASE, "workload": {**WL, "input_len": n_in, "concurrency": conc}}
        m = ev.evaluate_with(cfg, truth).metrics
        lines.append({"config": cfg, "metrics": {k: m[k] for k in ("ttft_ms_p50",
                                                                   "tpot_ms_p50")}})
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    report = calibrate(ev, read_rows(path), ["api_latency_ms"])
    # the fit's prior (a pull towards the shipped value) costs a little accuracy
    assert report.fitted["api_latency_ms"] == pytest.approx(12.0, abs=2.0)
    assert report.loo_after["ttft_ms_p50"] < report.loo_before["ttft_ms_p50"]


@pytest.mark.parametrize("profile, context, message", [
    ('base = "vllm"\n[constants]\nstep_overhead_us = -3\n', {},
     "evaluator.options.profile.constants.step_overhead_us: -3 must be >= 0"),
    ('base = "sglang"\n', {"engine": "vllm"},
     "refines the 'sglang' profile but the config's engine is 'vllm'"),
])
def test_a_study_with_a_bad_profile_file_stops_before_its_first_trial(tmp_path, capsys,
                                                                      profile, context,
                                                                      message):
    import sqlite3

    from conftest import write_toml

    from tuner.cli import main

    bad = _write(tmp_path, profile)
    study = write_toml(tmp_path / "s.toml", {
        "name": "bad-profile", "seed": 0,
        "space": {"domain": "serving", "context": {**context, "model": "llama3.1-8b",
                                                   "workload": {"mode": "burst",
                                                                "num_requests": 8,
                                                                "input_len": 64,
                                                                "output_len": 8}},
                  "params": {"max_num_seqs": {"choices": [8, 16]}}},
        "evaluator": {"name": "serving-sim", "options": {"profile": bad}},
        "objectives": [{"metric": "throughput_tok_s", "direction": "maximize"}],
        "budget": {"trials": 4}})
    db = tmp_path / "t.db"
    assert main(["run", study, "--storage", f"sqlite:///{db}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    if db.exists():  # nothing ran: no trial stored
        with sqlite3.connect(db) as con:
            tables = {r[0] for r in con.execute("select name from sqlite_master")}
            assert "trials" not in tables or not con.execute(
                "select count(*) from trials").fetchone()[0]


def test_a_profile_files_fit_table_refines_what_calibration_may_move(tmp_path):
    path = _write(tmp_path, 'base = "vllm"\n[constants]\nstep_overhead_us = 50.0\n'
                  "[fit]\nstep_overhead_us = [10.0, 200.0]\n")
    prof = load_profile("serving", path, "evaluator.options.profile")
    assert prof.fit_bounds["step_overhead_us"] == (10.0, 200.0)
    shipped = load_profile("serving", "vllm", "engine").fit_bounds
    assert prof.fit_bounds["gemm_efficiency"] == shipped["gemm_efficiency"]  # the rest kept
    outside = _write(tmp_path, 'base = "vllm"\n[fit]\nstep_overhead_us = [1e5, 2e5]\n')
    with pytest.raises(BadInput, match=r"fit\.step_overhead_us: \[100000.0, 200000.0\] must "
                       r"be \[low, high\] around"):
        ServingSimEvaluator(profile=outside)


def test_null_config_values_are_named():
    with pytest.raises(BadInput, match="^tp: null: give a value"):
        ServingSimEvaluator().evaluate({**BASE, "tp": None})
