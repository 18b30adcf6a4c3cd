"""Uneven pipeline stages: explicit first/last counts, embedding/loss as layers, balance."""

import pytest

from tuner.evaluators.training._stages import layout
from tuner.evaluators.training.sim import TrainingSimEvaluator

EV = TrainingSimEvaluator()
L405 = {"model": "llama3.1-405b", "gpu": "h100_sxm", "num_gpus": 512, "seq_len": 8192,
        "global_batch": 256, "micro_batch": 1, "tp": 8, "pp": 8, "pp_interleave": 8, "cp": 2,
        "zero_stage": 1, "recompute": "none", "sequence_parallel": True,
        "tp_comm_overlap": True, "dtype": "fp8", "grad_dtype": "bf16"}


def test_layer_counts_per_chunk_and_rank():
    qwen = layout(94, 94, 8, 4, emb=True, loss=True)  # Qwen3-235B: 94 + 2 units / 32
    assert not qwen.error
    assert qwen.chunks[0] == 2 and qwen.chunks[-1] == 2 and set(qwen.chunks[1:-1]) == {3}
    assert [d + m for d, m in qwen.ranks] == [11, 12, 12, 12, 12, 12, 12, 11]
    ds = layout(61, 3, 8, 4, first=7, last=6)  # DeepSeek-V3 on PP 8: 7 + 6 * 8 + 6
    assert [d + m for d, m in ds.ranks] == [7, 8, 8, 8, 8, 8, 8, 6]
    assert ds.ranks[0][0] + ds.ranks[1][0] == 3  # the three dense layers lead the model
    bal = layout(78, 78, 12, 1, balanced=True)  # DeepSpeed-style partition
    assert max(d + m for d, m in bal.ranks) == 7 and sum(d + m for d, m in bal.ranks) == 78
    assert "not divisible" in layout(78, 78, 12, 1).error
    assert "do not divide evenly" in layout(61, 61, 8, 1, first=6, last=6).error
    empty = layout(80, 80, 8, 1, first=80).error  # seven stages of GPUs with nothing to run
    assert "leave 7 of the 8 stages without layers" in empty


def test_published_uneven_plans_run_and_strict_ones_are_rejected():
    res = EV.evaluate({**L405, "pp_embedding_as_layer": True, "pp_loss_as_layer": True})
    assert res.status.value == "ok", res.reason
    strict = EV.evaluate(L405)
    assert strict.status.value == "infeasible"
    assert "num_layers 126 is not divisible by pp*pp_interleave = 64" in strict.reason
    assert "pp_embedding_as_layer" in strict.reason  # says how to make it run


def test_bubble_and_memory_follow_the_largest_stage():
    base = {"model": "llama3.1-70b", "gpu": "h100_sxm", "num_gpus": 64, "seq_len": 4096,
            "global_batch": 64, "micro_batch": 1, "tp": 8, "pp": 8, "zero_stage": 1,
            "recompute": "full", "sequence_parallel": True}
    even = EV.evaluate(base).artifacts
    heavy = EV.evaluate({**base, "pp_first_stage_layers": 17, "pp_last_stage_layers": 3}
                        ).artifacts
    assert heavy["layers_per_stage"] == 17 and even["layers_per_stage"] == 10
    assert heavy["time_s"]["stage_per_micro_batch"] > 1.5 * even["time_s"][
        "stage_per_micro_batch"]
    assert heavy["memory_gib"]["weights"] > 1.5 * even["memory_gib"]["weights"]
    # giving the first and last stage a layer less (they hold embedding / loss) evens them
    light = EV.evaluate({**base, "pp_first_stage_layers": 9, "pp_last_stage_layers": 9,
                         "num_gpus": 48, "pp": 6, "global_batch": 48})
    assert light.status.value == "infeasible"  # 62 middle layers do not split over 4 stages
    assert "do not divide evenly over 4" in light.reason


@pytest.mark.parametrize("framework, ok", [("deepspeed", True), ("megatron", False)])
def test_balanced_split_is_a_stack_property(framework, ok):
    cfg = {"model": "bloom-176b", "gpu": "a100_sxm_80gb", "num_gpus": 384, "seq_len": 2048,
           "global_batch": 2048, "micro_batch": 2, "tp": 4, "pp": 12, "zero_stage": 1,
           "recompute": "full", "framework": framework, "attention_impl": "unfused"}
    res = EV.evaluate(cfg)  # 70 layers over 12 stages: 6 or 5 layers each
    assert (res.status.value == "ok") is ok
