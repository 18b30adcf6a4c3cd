"""Memory of runs that happened: fp8 copies, optimizer/grad sharding and dtypes, FSDP
buffers, recomputation modules, the stack's fixed allowance."""

import pytest

from tuner import BadInput
from tuner.evaluators.training.sim import TrainingSimEvaluator

EV = TrainingSimEvaluator()
L70 = {"model": "llama3.1-70b", "gpu": "h100_sxm", "num_gpus": 64, "seq_len": 8192,
       "global_batch": 128, "micro_batch": 1, "tp": 4, "pp": 4, "pp_interleave": 5, "cp": 2,
       "zero_stage": 1, "recompute": "none", "sequence_parallel": True}
L8 = {"model": "llama3.1-8b", "gpu": "h100_sxm", "num_gpus": 16, "seq_len": 8192,
      "global_batch": 32, "micro_batch": 1, "zero_stage": 3, "recompute": "full",
      "framework": "torchtitan"}


def mem(cfg, ev=EV):
    return ev.evaluate(cfg).artifacts["memory_gib"]


def test_fp8_keeps_fp8_primary_weights_and_amax_history():
    bf16, fp8 = mem(L70), mem({**L70, "dtype": "fp8"})
    assert fp8["weights"] == pytest.approx(bf16["weights"])  # fp8 weight + fp8 transpose
    assert fp8["workspace"] > bf16["workspace"]  # amax histories (delayed scaling)
    # torchtitan gathers float8 weights under FSDP: half the transient gathered layers
    assert mem({**L8, "dtype": "fp8"})["transient"] < mem(L8)["transient"]


def test_distributed_optimizer_and_state_dtypes():
    z0, z1 = mem({**L70, "zero_stage": 0}), mem(L70)
    assert z1["optimizer"] == pytest.approx(z0["optimizer"] / 4)  # dp*cp = 2*2 ranks
    assert z1["grads"] == pytest.approx(z0["grads"])  # ZeRO-1 keeps full gradients
    assert mem({**L70, "grad_dtype": "bf16"})["grads"] == pytest.approx(z1["grads"] / 2)
    bf16_moments = mem({**L70, "optimizer_dtype": "bf16"})["optimizer"]
    assert bf16_moments == pytest.approx(z1["optimizer"] * 8 / 12)  # fp32 master + 2 + 2
    # hybrid sharding: shard inside groups of 2, replicate across them
    hybrid = mem({**L70, "zero_shard_size": 2})
    assert hybrid["optimizer"] == pytest.approx(z1["optimizer"] * 2)


def test_fsdp_keeps_only_fp32_shards_and_gathers_layers(tmp_path):
    m = mem(L8)
    assert m["weights"] == 0.0  # no persistent 16-bit copy under FSDP mixed precision
    assert m["optimizer"] == pytest.approx(m["grads"] * 3)  # master + 2 moments vs grads
    path = tmp_path / "deep.toml"
    path.write_text('base = "torchtitan"\n[constants]\nfsdp_prefetch_layers = 3\n')
    deep = mem(L8, TrainingSimEvaluator(profile=str(path)))
    assert deep["transient"] > m["transient"]  # more layers gathered ahead


@pytest.mark.parametrize("framework", ["fsdp", "torchtitan"])
def test_fsdp_shard_grad_op_holds_the_gathered_weights_until_backward(framework):
    z3, z2 = mem({**L8, "framework": framework}), mem({**L8, "framework": framework,
                                                      "zero_stage": 2})
    assert z2["weights"] == pytest.approx(z2["grads"] / 2 * 16)  # bf16 x all vs fp32 / 16
    assert z2["allocated"] > z3["allocated"]


def test_recompute_modes_and_modules():
    none = mem(L70)["activations"]
    sel = {**L70, "recompute": "selective"}
    norms = mem({**sel, "recompute_modules": ["layernorm"]})["activations"]
    mlp = mem({**sel, "recompute_modules": ["layernorm", "mlp"]})["activations"]
    full = mem({**L70, "recompute": "full"})["activations"]
    assert none > norms > mlp > full
    half = mem({**L70, "recompute": "full", "recompute_layers": 2})["activations"]
    assert full < half < none
    with pytest.raises(BadInput, match="recompute_modules: needs recompute = selective"):
        EV.evaluate({**L70, "recompute_modules": ["layernorm"]})


def test_fixed_memory_and_fragmentation_come_from_the_stack():
    megatron = mem(L70)
    assert megatron["workspace"] == pytest.approx(1.5)  # context 0.75 + NCCL 0.75 GiB
    peak = EV.evaluate(L70).metrics["peak_memory_gib"]
    assert peak == pytest.approx(megatron["allocated"] + megatron["workspace"]
                                 + megatron["fragmentation"], rel=1e-6)
    assert mem(L70, TrainingSimEvaluator(workspace_gib=4.0))["workspace"] == 4.0


def test_logits_gathered_for_the_loss_sit_on_every_tp_rank():
    """Without a vocab-parallel loss each TP rank holds the full-vocabulary logits."""
    tp4 = {**L8, "tp": 4, "sequence_parallel": True, "micro_batch": 4, "global_batch": 64}
    sharded = EV.evaluate(tp4)
    gathered = EV.evaluate({**tp4, "loss_parallel": False})
    tokens, vocab = 4 * 8192, 128256
    logit_bytes = 6.0  # the torchtitan profile's bytes per logit at the loss
    extra = (tokens * vocab * logit_bytes * (1 - 1 / 4) + 2 * tokens * vocab / 4) / 2**30
    assert gathered.artifacts["memory_gib"]["transient"] == pytest.approx(
        sharded.artifacts["memory_gib"]["transient"] + extra, rel=0.01)
    # the gather and the full-vocabulary cross entropy cost time too
    assert gathered.metrics["step_time_s"] > sharded.metrics["step_time_s"]
    # without TP there is nothing to gather
    one = {**L8, "micro_batch": 1}
    assert mem({**one, "loss_parallel": False}) == mem(one)
    with pytest.raises(BadInput, match="loss_parallel"):
        EV.evaluate({**one, "loss_parallel": "yes"})
