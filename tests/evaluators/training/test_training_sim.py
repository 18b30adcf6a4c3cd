"""training-sim: metrics and their definitions, bad input, infeasibility, physics trends."""

import csv
import math
from pathlib import Path

import pytest

from tuner import BadInput, registry
from tuner.evaluators import _perf
from tuner.evaluators._catalog import get_hardware
from tuner.evaluators.training.sim import TrainingSimEvaluator

EV = TrainingSimEvaluator()
L70 = {"model": "llama3.1-70b", "gpu": "h100_sxm", "num_gpus": 64, "seq_len": 4096,
       "global_batch": 256, "micro_batch": 1, "tp": 8, "pp": 4, "pp_interleave": 5,
       "zero_stage": 1, "recompute": "selective", "sequence_parallel": True}
GPT = {"hidden_size": 4096, "num_layers": 32, "num_heads": 32, "num_kv_heads": 32,
       "ffn_hidden_size": 16384, "vocab_size": 51200, "gated_mlp": False,
       "tied_embeddings": True, "attention": "mha", "seq_len": 2048, "global_batch": 64,
       "micro_batch": 2, "gpu": "a100_sxm_80gb", "num_gpus": 16, "tp": 2, "pp": 2}


def ok(cfg):
    res = EV.evaluate(cfg)
    assert res.status.value == "ok", res.reason
    return res


def test_registered_and_reports_every_metric():
    ev = registry.make_evaluator("training-sim")
    res = ev.evaluate(L70)
    assert res.status.value == "ok"
    assert set(ev.metrics) <= set(res.metrics)
    m = res.metrics
    assert m["tokens_per_s"] == pytest.approx(256 * 4096 / m["step_time_s"])
    assert 0.2 < m["mfu"] < 0.7
    assert 0 < m["peak_memory_gib"] < 80
    assert res.artifacts["dp"] == 2 and res.artifacts["micro_batches"] == 128
    assert res.artifacts["bubble_fraction"] == pytest.approx(3 / (5 * 128))
    assert EV.fingerprint() == TrainingSimEvaluator().fingerprint()
    assert EV.fingerprint() != TrainingSimEvaluator(workspace_gib=4.0).fingerprint()


def test_flop_counts_follow_megatron_eq3():
    """Full recomputation: hardware FLOPs = 96 B s l h^2 (1 + s/6h + V/16lh) (SC'21, Eq. 3);
    MFU counts forward + backward only (72 B s l h^2 (1 + s/6h) + 6 B s h V)."""
    res = ok({**GPT, "recompute": "full"})
    b, s, l, h, v = 64, 2048, 32, 4096, 51200
    hw = 96 * b * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))
    model = 72 * b * s * l * h * h * (1 + s / (6 * h)) + 6 * b * s * h * v
    assert res.artifacts["hardware_flops_per_step"] == pytest.approx(hw, rel=1e-9)
    assert res.artifacts["model_flops_per_step"] == pytest.approx(model, rel=1e-9)
    m = res.metrics
    assert m["tflops_per_gpu"] == pytest.approx(hw / m["step_time_s"] / 16 / 1e12)
    assert m["mfu"] == pytest.approx(model / m["step_time_s"] / 16 / 312e12)
    none = ok({**GPT, "recompute": "none"})
    assert none.metrics["tflops_per_gpu"] == pytest.approx(none.metrics["mfu"] * 312, rel=1e-9)


@pytest.mark.parametrize("patch, field", [
    ({"model": "gpt-5"}, "model"),
    ({"gpu": "tpu-v9"}, "gpu"),
    ({"micro_batch": 0}, "micro_batch"),
    ({"global_batch": -8}, "global_batch"),
    ({"tp": 2.0}, "tp"),
    ({"zero_stage": 4}, "zero_stage"),
    ({"recompute": "some"}, "recompute"),
    ({"dtype": "fp64"}, "dtype"),
    ({"sequence_parallel": "yes"}, "sequence_parallel"),
    ({"inter_node_gbps": 0}, "inter_node_gbps"),
    ({"microbatch": 2}, "microbatch"),
    ({"dtype": "fp8", "fp8_recipe": "mx"}, "fp8_recipe"),
])
def test_unusable_input_raises_bad_input_naming_the_field(patch, field):
    with pytest.raises(BadInput) as err:
        EV.evaluate({**L70, **patch})
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_missing_keys_and_inline_models():
    cfg = {k: v for k, v in L70.items() if k != "seq_len"}
    with pytest.raises(BadInput, match="seq_len"):
        EV.evaluate(cfg)
    inline = {k: v for k, v in L70.items() if k != "model"}
    with pytest.raises(BadInput, match="model"):
        EV.evaluate(inline)
    with pytest.raises(BadInput, match="top_k"):
        EV.evaluate({**GPT, "num_experts": 8, "top_k": 9, "moe_ffn_hidden_size": 1024})
    assert ok({**GPT, "num_experts": 8, "top_k": 2, "moe_ffn_hidden_size": 4096, "pp": 1,
               "ep": 4})


@pytest.mark.parametrize("patch, reason", [
    ({"tp": 3}, "does not divide num_gpus 64"),
    ({"tp": 16}, "tp 16 does not divide num_kv_heads 8"),
    ({"pp": 3, "tp": 8}, "num_layers 80 is not divisible"),
    ({"global_batch": 101}, "global_batch 101 is not divisible by dp*micro_batch = 2*1 = 2"),
    ({"global_batch": 100}, "micro-batches (50) to be a multiple of pp (4)"),
    ({"global_batch": 6}, "3 micro-batches cannot fill a 4-stage pipeline"),
    ({"global_batch": 12, "micro_batch": 4}, "is not divisible by dp*micro_batch = 2*4 = 8"),
    ({"ep": 2}, "needs an MoE model"),
    ({"cp": 3}, "does not divide num_gpus"),
    ({"dtype": "fp8", "gpu": "a100_sxm_80gb"}, "fp8 is not supported on a100_sxm_80gb"),
    ({"offload_optimizer": True, "zero_stage": 0}, "zero_stage >= 1"),
    ({"pp": 1, "pp_interleave": 2}, "needs pp > 1"),
])
def test_impossible_plans_are_infeasible_with_a_reason(patch, reason):
    res = EV.evaluate({**L70, **patch})
    assert res.status.value == "infeasible"
    assert reason in res.reason


def test_out_of_memory_reports_needs_and_has_with_metrics():
    res = EV.evaluate({**L70, "tp": 1, "pp": 1, "pp_interleave": 1, "zero_stage": 0,
                       "recompute": "none", "micro_batch": 4, "sequence_parallel": False})
    assert res.status.value == "infeasible"
    assert "needs" in res.reason and "GiB per GPU, has 80 GiB" in res.reason
    assert res.metrics["peak_memory_gib"] > 80
    assert res.metrics["tokens_per_s"] > 0  # what it would do if it fit: samplers learn from it
    assert res.artifacts["memory_gib"]["weights"] > 100


def test_memory_trends():
    base = {**L70, "recompute": "none", "sequence_parallel": False}
    mem = {z: EV.evaluate({**base, "zero_stage": z}).metrics["peak_memory_gib"]
           for z in range(4)}
    assert mem[0] > mem[1] > mem[2] > mem[3]
    act = {r: EV.evaluate({**base, "recompute": r}).artifacts["memory_gib"]["activations"]
           for r in ("none", "full")}
    assert act["full"] < act["none"] / 5
    sp = EV.evaluate({**base, "sequence_parallel": True}).artifacts["memory_gib"]
    assert sp["activations"] < act["none"]
    off = EV.evaluate({**base, "zero_stage": 1, "offload_optimizer": True}).artifacts
    assert off["memory_gib"]["optimizer"] == 0
    long = {**L70, "model": "llama3.1-8b", "seq_len": 65536, "global_batch": 32, "pp": 1,
            "pp_interleave": 1, "tp": 4, "recompute": "full"}
    a1 = EV.evaluate({**long, "cp": 1}).artifacts["memory_gib"]["activations"]
    a4 = EV.evaluate({**long, "cp": 4}).artifacts["memory_gib"]["activations"]
    assert a4 == pytest.approx(a1 / 4, rel=0.01)


def test_time_trends():
    t = {r: ok({**L70, "recompute": r}).metrics["step_time_s"]
         for r in ("none", "selective", "full")}
    assert t["none"] < t["selective"] < t["full"]
    assert t["full"] / t["none"] == pytest.approx(4 / 3, rel=0.1)  # one more forward
    v1 = ok({**L70, "pp_interleave": 1}).metrics["step_time_s"]
    assert v1 > t["selective"]  # interleaving shrinks the bubble (p-1)/(v*m)
    gb = ok({**L70, "global_batch": 32}).artifacts["bubble_fraction"]
    assert gb == pytest.approx(3 / (5 * 16))
    dp8 = {**L70, "tp": 4, "pp": 2, "pp_interleave": 1, "zero_stage": 2, "recompute": "full"}
    slow_net = ok({**dp8, "inter_node_gbps": 25})
    fast_net = ok(dp8)
    assert slow_net.metrics["step_time_s"] > fast_net.metrics["step_time_s"]
    cross = ok({**GPT, "tp": 16, "pp": 1, "allow_cross_node_tp": True})
    inside = ok({**GPT, "tp": 8, "pp": 2})
    assert cross.metrics["step_time_s"] > inside.metrics["step_time_s"]
    fp8 = ok({**L70, "dtype": "fp8"}).metrics["step_time_s"]
    assert fp8 < t["selective"]
    double = ok({**L70, "num_gpus": 128, "global_batch": 512}).metrics
    assert double["tokens_per_s"] > 1.8 * ok(L70).metrics["tokens_per_s"]


def test_fp8_recipe_block_scales_cost_gemm_time_on_hopper():
    fp8 = {**L70, "dtype": "fp8"}
    delayed = ok(fp8).metrics["step_time_s"]
    assert ok({**fp8, "fp8_recipe": "delayed"}).metrics["step_time_s"] == delayed
    block = ok({**fp8, "fp8_recipe": "blockwise"}).metrics["step_time_s"]
    assert delayed < block < ok(L70).metrics["step_time_s"]  # still faster than bf16
    # Blackwell applies block scales in its tensor cores: no GEMM cost
    b200 = {**fp8, "gpu": "b200"}
    assert ok({**b200, "fp8_recipe": "blockwise"}).metrics["step_time_s"] \
        == pytest.approx(ok(b200).metrics["step_time_s"], rel=1e-9)


def test_moe_expert_parallel():
    cfg = {"model": "mixtral-8x22b", "gpu": "h100_sxm", "num_gpus": 64, "seq_len": 4096,
           "global_batch": 128, "micro_batch": 1, "tp": 2, "pp": 4, "zero_stage": 1,
           "recompute": "full", "sequence_parallel": True}
    w = {ep: EV.evaluate({**cfg, "ep": ep}).artifacts["memory_gib"]["weights"]
         for ep in (1, 8)}
    assert w[8] < w[1] / 4
    r = ok({**cfg, "ep": 8})
    # MFU counts active parameters only (top-2 of 8 experts)
    assert 0.1 < r.metrics["mfu"] < 0.6
    cross = ok({**cfg, "tp": 4, "ep": 4, "pp": 2})
    assert cross.metrics["step_time_s"] > 0


def test_gemm_model_reproduces_measured_h100_gemms():
    """The shared GEMM roofline against 148 bf16 GEMMs measured on H100 (OpenXLA table)."""
    path = (Path(__file__).parents[3] / "evaluators" / "data" / "gemm"
            / "h100_sxm_bf16_openxla.csv")
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    hw = get_hardware("h100_sxm")
    errs, big = [], []
    for r in csv.DictReader(lines):
        b, m, n, k = (int(r[x]) for x in "bmnk")
        pred = 2 * m * n * k * b / _perf.gemm_time(hw, m, n, k, "bf16", b) / 1e12
        e = abs(pred - float(r["tflops"])) / float(r["tflops"])
        errs.append(e)
        if 2 * m * n * k * b >= 4e9:
            big.append(e)
    assert len(errs) == 148
    assert sum(errs) / len(errs) < 0.07
    assert sum(big) / len(big) < 0.04 and max(big) < 0.2


def test_collectives_are_hierarchical():
    hw = get_hardware("h100_sxm")
    gb = 1e9
    full_node = _perf.collective_time(hw, "all_reduce", gb, 64, 8, stride=1)
    one_per_node = _perf.collective_time(hw, "all_reduce", gb, 64, 8, stride=8)
    intra = _perf.collective_time(hw, "all_reduce", gb, 8, 8)
    assert intra < full_node < one_per_node
    # ring all-reduce moves 2(n-1)/n of the buffer: within a node at NVLink speed
    assert intra == pytest.approx(2 * 7 / 8 * gb / (450e9 * 0.82), rel=0.01)
    a2a_in = _perf.collective_time(hw, "all_to_all", gb, 8, 8)
    a2a_out = _perf.collective_time(hw, "all_to_all", gb, 16, 8)
    assert a2a_out > 3 * a2a_in
    assert _perf.collective_time(hw, "all_gather", gb, 1) == 0.0
    assert _perf.p2p_time(hw, gb, True) > _perf.p2p_time(hw, gb, False)
    assert math.isclose(_perf.memory_time(hw, 3.35e12 * 0.85), 1.0)


def _tp_comm(cfg):
    return ok(cfg).artifacts["time_s"]["layer_comm_exposed"]


def test_tp_overlap_is_a_fraction_that_grows_with_gemm_size_and_link_speed():
    """Pipelined TP overlap hides a share of the collectives, not all or nothing: larger
    GEMMs per byte moved hide more; a slower (cross-node) link hides less."""
    def shares(cfg):
        plain = _tp_comm({**cfg, "tp_comm_overlap": False})
        return _tp_comm({**cfg, "tp_comm_overlap": True}) / plain

    small = {**GPT, "gpu": "h100_sxm", "num_gpus": 8, "tp": 8, "pp": 1, "micro_batch": 4,
             "global_batch": 4, "sequence_parallel": True, "num_heads": 32, "num_kv_heads": 32}
    big = {**small, "hidden_size": 8192, "ffn_hidden_size": 32768, "num_heads": 64,
           "num_kv_heads": 64}
    s_small, s_big = shares(small), shares(big)
    assert 0.0 < s_big < s_small < 1.0
    cross = {**big, "num_gpus": 16, "tp": 16, "allow_cross_node_tp": True}
    assert shares(cross) > s_big
    # eager DTensor TP (torchtitan without compile's async TP) leaves backward exposed
    megatron = _tp_comm({**small, "tp_comm_overlap": False})
    titan = _tp_comm({**small, "tp_comm_overlap": False, "framework": "torchtitan"})
    assert titan > megatron
    res = EV.evaluate({**small, "framework": "fsdp", "tp_comm_overlap": True})
    assert "fsdp stack does not overlap TP communication" in res.reason
    assert "needs sequence_parallel" in EV.evaluate(
        {**small, "tp_comm_overlap": True, "sequence_parallel": False}).reason


@pytest.mark.parametrize("drop, field", [
    ("gated_mlp", "gated_mlp"), ("tied_embeddings", "tied_embeddings"),
    ("attention", "attention")])
def test_inline_models_state_their_architecture(drop, field):
    cfg = {k: v for k, v in GPT.items() if k != drop}
    with pytest.raises(BadInput) as err:
        EV.evaluate(cfg)
    assert err.value.field == field and "missing" in str(err.value)
    assert "\n" not in str(err.value)


def test_inline_architecture_is_checked_and_changes_the_flops():
    with pytest.raises(BadInput, match="mha needs num_kv_heads = num_heads"):
        EV.evaluate({**GPT, "num_kv_heads": 8})
    with pytest.raises(BadInput, match="gqa needs fewer KV heads than query heads"):
        EV.evaluate({**GPT, "attention": "gqa"})
    with pytest.raises(BadInput, match="head_dim: missing: hidden_size 2050 does not split"):
        EV.evaluate({**GPT, "hidden_size": 2050})
    assert ok({**GPT, "hidden_size": 2050, "head_dim": 128}).metrics  # stated: as Gemma does
    with pytest.raises(BadInput, match="kv_lora_rank"):
        EV.evaluate({**GPT, "attention": "mla"})
    with pytest.raises(BadInput, match="gated_mlp: 'yes' must be true or false"):
        EV.evaluate({**GPT, "gated_mlp": "yes"})
    gelu = ok(GPT).artifacts["model_flops_per_step"]
    swiglu = ok({**GPT, "gated_mlp": True}).artifacts["model_flops_per_step"]
    assert swiglu > 1.25 * gelu  # 3 MLP matrices instead of 2
