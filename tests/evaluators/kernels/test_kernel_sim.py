"""kernel-sim: contract, agreement with the space's rules, physics trends, speed, validation."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest

from tuner import BadInput, EvalResult
from tuner.evaluators._catalog import get_hardware
from tuner.evaluators.kernels.sim import DEFAULTS, KernelSimEvaluator, _Hw, best_config
from tuner.search_spaces.kernels import AttentionTileSpace, GemmTileSpace
from tuner.testing import check_evaluator, evaluator_cases

GEMM = {"kernel": "gemm", "m": 4096, "n": 4096, "k": 4096, "dtype": "bf16", "gpu": "h100_sxm"}
ATTN = {"kernel": "attention", "batch": 1, "heads": 64, "seq_len": 8192, "head_dim": 128,
        "dtype": "bf16", "causal": True, "gpu": "h100_sxm"}
TILE = {"block_m": 128, "block_n": 256, "block_k": 64, "group_m": 8, "num_warps": 8,
        "num_stages": 3, "split_k": 1}
ATILE = {"block_m": 128, "block_n": 64, "num_warps": 8, "num_stages": 2}


@pytest.fixture(scope="module")
def ev():
    return KernelSimEvaluator()


def t_us(ev, cfg):
    r = ev.evaluate(cfg)
    assert r.status.value == "ok", r.reason
    return r.metrics["time_us"]


def test_contract_on_both_spaces(ev):
    check_evaluator(ev, evaluator_cases(GemmTileSpace({k: v for k, v in GEMM.items()
                                                       if k != "kernel"}), n=30))
    check_evaluator(ev, evaluator_cases(AttentionTileSpace({k: v for k, v in ATTN.items()
                                                            if k != "kernel"}), n=30))


def test_metrics_are_consistent(ev):
    r = ev.evaluate({**GEMM, **TILE})
    m = r.metrics
    assert m["tflops"] == pytest.approx(2 * 4096**3 / (m["time_us"] * 1e-6) / 1e12)
    assert m["pct_of_peak"] == pytest.approx(100 * m["tflops"] / 989.4)
    # the hot-path constructor builds exactly what EvalResult.ok builds
    assert r == EvalResult.ok(dict(m))
    assert r.to_json(artifacts=True) == EvalResult.ok(dict(m)).to_json(artifacts=True)


def test_kernel_is_inferred_from_the_keys(ev):
    no_kernel = {k: v for k, v in ATTN.items() if k != "kernel"}
    assert ev.evaluate({**no_kernel, **ATILE}) == ev.evaluate({**ATTN, **ATILE})
    with pytest.raises(BadInput, match="kernel"):
        ev.evaluate({**GEMM, "kernel": "conv", **TILE})


@pytest.mark.parametrize("ctx", [
    {"m": 100, "n": 3000, "k": 77, "dtype": "fp32", "gpu": "h100_sxm"},
    {"m": 16, "n": 4096, "k": 4096, "dtype": "fp8", "gpu": "h100_sxm"},
    {"m": 512, "n": 256, "k": 512, "dtype": "bf16", "gpu": "a100_sxm_80gb"},
])
def test_evaluator_agrees_with_the_space_rules(ev, ctx):
    """Every grid point: infeasible exactly when the space's constraints object."""
    space = GemmTileSpace(ctx)
    for cfg in space.enumerate(valid_only=False):
        reasons = space.constraints(cfg)
        r = ev.evaluate(cfg)
        assert (r.status.value == "infeasible") == bool(reasons), (cfg, reasons, r.reason)
        if reasons:
            assert r.reason == "; ".join(reasons)


def test_attention_agrees_with_the_space_rules(ev):
    space = AttentionTileSpace({"batch": 2, "heads": 8, "seq_len": 1000, "head_dim": 256,
                                "causal": True})
    for cfg in space.enumerate(valid_only=False):
        assert (ev.evaluate(cfg).status.value == "infeasible") == bool(space.constraints(cfg))


@pytest.mark.parametrize("bad", [{"m": 0}, {"k": -5}, {"n": 2.0}, {"dtype": "int8"},
                                 {"gpu": "tpu"}])
def test_bad_shapes_raise_bad_input(ev, bad):
    with pytest.raises(BadInput):
        ev.evaluate({**GEMM, **TILE, **bad})


@pytest.mark.parametrize("bad", [{"block_m": [128]}, {"num_warps": 3}, {"group_m": 0},
                                 {"block_k": "64"}, {"split_k": None}])
def test_malformed_tiles_are_infeasible_not_errors(ev, bad):
    r = ev.evaluate({**GEMM, **TILE, **bad})
    assert r.status.value == "infeasible" and r.reason
    missing = {k: v for k, v in {**GEMM, **TILE}.items() if k != "num_stages"}
    assert "num_stages" in ev.evaluate(missing).reason


def test_wave_quantization(ev):
    """132 SMs: 132 programs fit one wave, 133 need a second one (occupancy 1 here)."""
    tile = {**TILE, "block_m": 128, "block_n": 256, "block_k": 64, "num_stages": 4}
    one = {**GEMM, "m": 128 * 12, "n": 256 * 11, **tile}  # 132 programs
    two = {**one, "m": 128 * 12 + 1}  # 143 programs
    ratio = t_us(ev, two) / t_us(ev, one)
    assert 1.6 < ratio < 2.1


def test_group_m_cuts_hbm_rereads_on_wide_gemms(ev):
    cfg = {**GEMM, "m": 4096, "n": 14336, "k": 4096, **TILE}
    times = [t_us(ev, {**cfg, "group_m": g}) for g in (1, 4, 8, 16)]
    assert times == sorted(times, reverse=True)
    assert times[2] < 0.95 * times[0]
    # where A and B fit in L2 the raster order does not matter
    small = {**GEMM, "m": 1024, "n": 1024, "k": 1024, **TILE}
    assert t_us(ev, {**small, "group_m": 1}) == t_us(ev, {**small, "group_m": 8})


def test_pipelining_hides_latency(ev):
    cfg = {**GEMM, **TILE, "block_k": 32}
    t1, t2, t4 = (t_us(ev, {**cfg, "num_stages": s}) for s in (1, 2, 4))
    assert t1 > t2 > t4


def test_split_k_helps_skinny_long_k(ev):
    cfg = {**GEMM, "m": 64, "n": 1024, "k": 16384, **TILE, "block_m": 64, "block_n": 64,
           "num_warps": 4}
    assert t_us(ev, {**cfg, "split_k": 8}) < 0.6 * t_us(ev, {**cfg, "split_k": 1})
    # and costs a reduction where there is parallelism already
    assert t_us(ev, {**GEMM, **TILE, "split_k": 4}) > t_us(ev, {**GEMM, **TILE})


def test_decode_gemm_is_bound_by_reading_the_weights(ev):
    _, r = best_config({"m": 16, "n": 28672, "k": 8192, "dtype": "bf16", "gpu": "h100_sxm"}, ev)
    weights = 28672 * 8192 * 2
    floor_us = weights / (3.35e12 * 0.85) * 1e6
    assert floor_us < r.metrics["time_us"] < 1.3 * floor_us + 10
    assert r.metrics["pct_of_peak"] < 10


def test_large_gemm_best_tile_and_efficiency(ev):
    cfg, r = best_config({"m": 8192, "n": 8192, "k": 8192, "dtype": "bf16", "gpu": "h100_sxm"},
                         ev)
    assert 65 < r.metrics["pct_of_peak"] < 80  # gemm_max = 0.80 is the ceiling
    assert cfg["block_m"] * cfg["block_n"] >= 128 * 128 and cfg["num_warps"] == 8
    fp8 = best_config({"m": 8192, "n": 8192, "k": 8192, "dtype": "fp8", "gpu": "h100_sxm"},
                      ev)[1]
    assert fp8.metrics["time_us"] < 0.7 * r.metrics["time_us"]


def test_attention_trends(ev):
    causal = t_us(ev, {**ATTN, **ATILE})
    full = t_us(ev, {**ATTN, "causal": False, **ATILE})
    assert 0.45 < causal / full < 0.6
    # the exp unit and the serial softmax keep FlashAttention-2 well under the GEMM ceiling
    _, best = best_config(ATTN, ev)
    assert 30 < best.metrics["pct_of_peak"] < 60


def test_calibration_constants_come_from_the_catalog():
    hw = get_hardware("h100_sxm")
    base = _Hw(hw, "bf16")
    tuned = _Hw(dataclasses.replace(hw, efficiency={**hw.efficiency,
                                                    "kernel_sfu_per_clk": 32.0}), "bf16")
    assert tuned.sfu == pytest.approx(2 * base.sfu)
    assert base.lat == pytest.approx(DEFAULTS["dram_latency_clk"] / (hw.clock_mhz * 1e6))


def test_fingerprint_is_stable_and_names_the_model(ev):
    assert ev.fingerprint() == KernelSimEvaluator().fingerprint()
    assert "model" in ev.environment()


def test_speed_floor():
    """A loose floor (the benchmark measures the real rate): regressions of 4x fail here."""
    space = GemmTileSpace({"m": 8192, "n": 28672, "k": 8192, "dtype": "bf16"})
    configs = list(space.enumerate(valid_only=False))
    random.Random(0).shuffle(configs)
    ev = KernelSimEvaluator()
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for cfg in configs:
            ev.evaluate(cfg)
        best = max(best, len(configs) / (time.perf_counter() - t0))
    assert best > 25_000


def test_validation_quick():
    from tuner.evaluators.kernels.validation import run

    report = run(max_gemm_rows=4)
    groups = report.groups()
    assert len(groups["gemm_tflops"]) == 5 and len(groups["attention_tflops"]) == 6
    summary = report.summary()
    assert summary["attention_tflops"]["mean_abs_error_pct"] <= 15
    assert any("not GPU data" in n or "No GPU measurements" in n for n in report.notes)


@pytest.mark.slow
def test_validation_full_meets_targets():
    from tuner.evaluators.kernels.validation import run

    report = run()
    assert report.meets_targets(), report.summary()
