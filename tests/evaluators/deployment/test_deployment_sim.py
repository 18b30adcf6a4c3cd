"""deployment-sim composes the quantization, kernel and serving models."""

from __future__ import annotations

import pytest

from tuner import BadInput, Status
from tuner.evaluators.deployment import DeploymentSimEvaluator, compose, problems
from tuner.evaluators.deployment._kernels import best_tile
from tuner.evaluators.quant import QuantSimEvaluator
from tuner.evaluators.serving import ServingSimEvaluator

WL = {"mode": "poisson", "rate": 2.0, "num_requests": 40, "seed": 0,
      "input_len": {"dist": "uniform", "low": 64, "high": 512}, "output_len": 32}
BASE = {"model": "llama3.1-70b", "gpu": "h100_sxm", "workload": WL, "num_gpus": 8}
INT4 = {f"{r}_bits": 4 for r in ("qkv", "attn_out", "mlp_up", "mlp_down")}
FP8 = {**{f"{r}_bits": 8 for r in ("qkv", "attn_out", "mlp_up", "mlp_down")}, "act_bits": 8}


def _reasons(cfg):
    return problems({**BASE, **cfg})


def test_an_int4_mix_fits_a_smaller_tp_than_bf16():
    bf16 = _reasons({"tp": 1})
    assert bf16 and "GiB per GPU" in bf16[0]  # 140 GB of bf16 weights on one 80 GB GPU
    assert _reasons({"tp": 2}) == []
    assert _reasons({"tp": 1, **INT4}) == []


def test_fp8_kv_doubles_the_kv_cache_and_so_the_batch():
    ev = DeploymentSimEvaluator()
    r16 = ev.evaluate({**BASE, "tp": 2, **FP8, "kv_bits": 16})
    r8 = ev.evaluate({**BASE, "tp": 2, **FP8, "kv_bits": 8})
    assert r16.status is Status.OK and r8.status is Status.OK
    assert r8.metrics["kv_cache_tokens"] == pytest.approx(2 * r16.metrics["kv_cache_tokens"],
                                                          rel=0.01)
    kv = r8.artifacts["breakdown"]["serving"]["kv_bytes_per_token"]
    assert kv * 2 == r16.artifacts["breakdown"]["serving"]["kv_bytes_per_token"]


def test_quality_drop_is_the_quantization_models():
    mix = {"qkv_bits": 8, "attn_out_bits": 4, "mlp_up_bits": 4, "mlp_down_bits": 8,
           "act_bits": 8, "kv_bits": 8, "protect_frac": 0.1}
    r = DeploymentSimEvaluator().evaluate({**BASE, "tp": 2, **mix})
    q = QuantSimEvaluator().evaluate({"model": "llama3.1-70b", **mix, "gpus": 2,
                                      **{f"{x}_format": "fp8" for x in
                                         ("qkv", "attn_out", "mlp_up", "mlp_down")}})
    assert r.metrics["quality_drop"] == q.metrics["quality_drop"]
    assert r.metrics["model_size_gib"] == q.metrics["model_size_gib"]


def test_uniform_mix_matches_serving_sim_with_that_weight_dtype():
    # a bf16 mix is serving-sim's bf16 plan: composition changes nothing it does not own
    cfg = {**BASE, "tp": 4}
    dep = DeploymentSimEvaluator().evaluate(cfg)
    srv = ServingSimEvaluator().evaluate({**cfg, "weight_dtype": "bf16", "kv_dtype": "bf16"})
    assert dep.metrics["ttft_ms_p99"] == pytest.approx(srv.metrics["ttft_ms_p99"], rel=1e-9)
    assert dep.metrics["tpot_ms_p99"] == pytest.approx(srv.metrics["tpot_ms_p99"], rel=1e-9)
    assert dep.metrics["weight_gib_per_gpu"] == pytest.approx(
        srv.metrics["weight_gib_per_gpu"], rel=0.01)


def test_fp8_w8a8_decodes_faster_than_bf16():
    ev = DeploymentSimEvaluator()
    bf16 = ev.evaluate({**BASE, "tp": 4})
    fp8 = ev.evaluate({**BASE, "tp": 4, **FP8})
    assert fp8.metrics["tpot_ms_p50"] < 0.8 * bf16.metrics["tpot_ms_p50"]


def test_a_tile_that_overflows_shared_memory_is_refused_with_a_reason():
    tile = {"prefill_block_m": 256, "prefill_block_n": 256, "prefill_block_k": 128,
            "prefill_num_warps": 8, "prefill_num_stages": 5, "prefill_split_k": 1}
    reasons = _reasons({"tp": 2, **tile})
    assert any("shared memory" in r and "prefill" in r for r in reasons), reasons
    r = DeploymentSimEvaluator().evaluate({**BASE, "tp": 2, **tile})
    assert r.status is Status.INFEASIBLE and "shared memory" in r.reason


def test_fp8_tiles_need_block_k_32():
    tile = {"decode_block_m": 16, "decode_block_n": 64, "decode_block_k": 16,
            "decode_num_warps": 4, "decode_num_stages": 2, "decode_split_k": 1}
    assert any("fp8 tl.dot" in r for r in _reasons({"tp": 2, **FP8, **tile}))
    assert not any("fp8 tl.dot" in r for r in _reasons({"tp": 2, **tile}))  # bf16 is fine


def test_a_slower_tile_slows_the_steps_by_the_kernel_models_ratio():
    c = compose({**BASE, "tp": 4})
    g = c.gemms["decode"]
    best, _ = best_tile(g)
    slow = {"decode_block_m": 64, "decode_block_n": 64, "decode_block_k": 64,
            "decode_num_warps": 4, "decode_num_stages": 2, "decode_split_k": 1}
    ev = DeploymentSimEvaluator()
    fast = ev.evaluate({**BASE, "tp": 4, **{f"decode_{k}": v for k, v in best}})
    worse = ev.evaluate({**BASE, "tp": 4, **slow})
    assert fast.metrics["decode_gemm_time_vs_best"] == 1.0
    assert worse.metrics["decode_gemm_time_vs_best"] > 1.0
    assert worse.metrics["tpot_ms_p50"] > fast.metrics["tpot_ms_p50"]


def test_ep_must_divide_the_experts():
    reasons = problems({**BASE, "model": "mixtral-8x7b", "tp": 4, "ep": 4, "num_gpus": 8})
    assert reasons == []
    reasons = problems({**BASE, "model": "qwen3-235b-a22b", "tp": 8, "ep": 8,
                        "disaggregated": False, **INT4})
    assert not any("experts" in r for r in reasons)


def test_bad_input_names_the_field():
    ev = DeploymentSimEvaluator()
    with pytest.raises(BadInput, match="kv_bits"):
        ev.evaluate({**BASE, "kv_bits": 4})
    with pytest.raises(BadInput, match="qkv_bits"):
        ev.evaluate({**BASE, "qkv_bits": 3})
    with pytest.raises(BadInput, match="engine"):
        ev.evaluate({**BASE, "engine": "llama.cpp"})
    with pytest.raises(BadInput, match="zz"):
        ev.evaluate({**BASE, "zz": 1})
    with pytest.raises(BadInput, match="decode_split_k"):
        ev.evaluate({**BASE, "decode_block_m": 16})


def test_breakdown_of_each_sub_model_is_in_the_artifacts():
    r = DeploymentSimEvaluator().evaluate({**BASE, "tp": 2, **FP8, "kv_bits": 8})
    b = r.artifacts["breakdown"]
    assert set(b) == {"quantization", "kernels", "serving"}
    assert b["quantization"]["compute_dtype"]["mlp_up"] == "fp8"
    assert b["kernels"]["decode"]["dtype"] == "fp8"
    assert b["serving"]["gpus"] == 2
    for m in ("cost_usd_per_mtok", "ttft_ms_p99", "tpot_ms_p99", "goodput_req_s_per_gpu",
              "quality_drop"):
        assert r.metrics[m] >= 0
