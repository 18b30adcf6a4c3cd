"""The training search space: context checks, derived choices, constraints, enumeration."""

import random

import optuna
import pytest

from tuner import BadInput
from tuner._space import BaseSpace
from tuner.evaluators.training.sim import TrainingSimEvaluator
from tuner.search_spaces.training import TrainingSpace
from tuner.testing import check_evaluator, check_space, evaluator_cases

LLAMA8 = {"model": "llama3.1-8b", "gpu": "h100_sxm", "num_gpus": 16, "seq_len": 4096,
          "global_batch": 64}
MIXTRAL = {"model": "mixtral-8x7b", "gpu": "a100_sxm_80gb", "num_gpus": 16, "seq_len": 4096,
           "global_batch": 32}


@pytest.mark.parametrize("ctx", TrainingSpace.example_contexts)
def test_contract_suite(ctx):
    space = TrainingSpace(ctx)
    check_space(space)
    check_evaluator(TrainingSimEvaluator(), evaluator_cases(space, n=10))


@pytest.mark.parametrize("ctx, field", [
    ({**LLAMA8, "model": "llama9"}, "space.context.model"),
    ({**LLAMA8, "gpu": "v100"}, "space.context.gpu"),
    ({k: v for k, v in LLAMA8.items() if k != "seq_len"}, "space.context.seq_len"),
    ({**LLAMA8, "num_gpus": 0}, "space.context.num_gpus"),
    ({**LLAMA8, "global_batch": "64"}, "space.context.global_batch"),
    ({**LLAMA8, "num_gpus": 12}, "space.context.num_gpus"),
    ({**LLAMA8, "tp": 2}, "space.context.tp"),
    ({**LLAMA8, "colour": "red"}, "space.context.colour"),
    ({**LLAMA8, "attention_impl": "paged"}, "space.context.attention_impl"),
])
def test_bad_context_names_the_field(ctx, field):
    with pytest.raises(BadInput) as err:
        TrainingSpace(ctx)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_choices_follow_the_context():
    space = TrainingSpace(LLAMA8)
    assert space.params["tp"].choices == (1, 2, 4, 8)  # divides 32 heads and 8 KV heads, <= node
    assert set(space.params["pp"].choices) == {1, 2, 4, 8, 16}  # divisors of 16 and of 32 layers
    assert "ep" not in space.params  # dense model
    assert space.params["dtype"].choices == ("bf16", "fp16", "fp8")
    assert space.params["sequence_parallel"].when == {"tp": (2, 4, 8)}
    assert set(space.params["pp_interleave"].when["pp"]) == {2, 4, 8, 16}
    moe = TrainingSpace(MIXTRAL)
    assert moe.params["ep"].choices == (1, 2, 4, 8)
    assert "fp8" not in moe.params["dtype"].choices  # A100 has no fp8 tensor cores
    wide = TrainingSpace({**LLAMA8, "allow_cross_node_tp": True})
    assert 16 not in wide.params["tp"].choices  # 16 does not divide the 8 KV heads
    long = TrainingSpace({**LLAMA8, "seq_len": 131072, "num_gpus": 32})
    assert 32 in long.params["cp"].choices and 1 in long.params["cp"].choices


def test_constraints_give_reasons_with_numbers():
    space = TrainingSpace(LLAMA8)
    base = space.config({"tp": 8, "pp": 1, "cp": 1, "micro_batch": 1})
    assert space.constraints(base) == []
    assert "does not divide num_gpus 16" in space.constraints({**base, "tp": 8, "cp": 4})[0]
    r = space.constraints({**base, "pp": 16, "tp": 1, "micro_batch": 8})
    assert any("cannot fill a 16-stage pipeline" in x for x in r)
    r = space.constraints({**base, "micro_batch": 16, "tp": 1})
    assert any("global_batch 64 is not divisible by dp*micro_batch" in x for x in r)
    r = space.constraints({**base, "pp": 2, "pp_interleave": 3})
    assert any("num_layers 32 is not divisible by pp*pp_interleave = 6" in x for x in r)
    r = space.constraints({**base, "offload_optimizer": True})
    assert any("zero_stage >= 1" in x for x in r)
    moe = TrainingSpace(MIXTRAL)
    cfg = moe.config({"tp": 8, "pp": 1, "cp": 1, "ep": 4, "micro_batch": 1})
    assert any("etp*ep = 8*4 does not divide tp*cp*dp = 16" in x for x in moe.constraints(cfg))


def test_fast_enumeration_equals_the_generic_one():
    space = TrainingSpace({**MIXTRAL, "num_gpus": 8, "global_batch": 16},
                          {"dtype": {"fixed": "bf16"}, "offload_activations": {"fixed": False},
                           "recompute": {"choices": ["none", "full"]}})
    fast = list(space.enumerate())
    generic = list(BaseSpace.enumerate(space))
    assert fast == generic and len(fast) > 100
    assert all(space.constraints(c) == [] for c in fast)


def test_enumeration_is_fast_and_every_point_evaluates():
    space = TrainingSpace(LLAMA8)
    configs = list(space.enumerate())
    assert 10_000 < len(configs) < 200_000
    ev = TrainingSimEvaluator()
    rng = random.Random(0)
    for cfg in rng.sample(configs, 300):
        assert ev.evaluate(cfg).status.value in ("ok", "infeasible")
        assert ev.evaluate(cfg).reason is None or "out of memory" in ev.evaluate(cfg).reason


def test_overrides_and_suggest():
    space = TrainingSpace(LLAMA8, {"tp": {"choices": [4, 8]}, "zero_stage": {"fixed": 1}})
    assert space.fixed == {"zero_stage": 1}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        cfg = space.suggest(trial)
        assert cfg["tp"] in (4, 8) and cfg["zero_stage"] == 1
        assert cfg["model"] == "llama3.1-8b"
        study.tell(trial, 0.0)


def test_features_are_derived_numbers():
    space = TrainingSpace(LLAMA8)
    cfg = space.config({"tp": 2, "pp": 2, "pp_interleave": 2, "cp": 1, "micro_batch": 1,
                        "zero_stage": 1, "recompute": "full", "sequence_parallel": True,
                        "dtype": "bf16", "offload_optimizer": False,
                        "offload_activations": False})
    f = space.features(cfg)
    assert f["dp"] == 4 and f["micro_batches"] == 16
    assert f["bubble_fraction"] == pytest.approx(1 / 32)
    assert f["tokens_per_micro_batch"] == 4096
    assert 1.5 < f["params_per_gpu_billion"] < 3.0  # ~8B / (tp*pp) with the embedding table
    assert 0 < f["memory_fraction"] < 1
    assert all(isinstance(v, float) for v in f.values())


def test_uneven_pipeline_stages_are_searchable():
    """Qwen3-235B's 94 layers run on PP 8 once the embedding and the loss count as layers."""
    ctx = {"model": "qwen3-235b-a22b", "gpu": "h100_sxm", "num_gpus": 64, "seq_len": 4096,
           "global_batch": 256, "etp": 1}
    space = TrainingSpace(ctx)
    assert 8 in space.params["pp"].choices and 94 % 8
    assert 8 in space.params["pp_embedding_as_layer"].when["pp"]
    cfg = space.config({"tp": 2, "pp": 8, "pp_interleave": 4, "pp_embedding_as_layer": True,
                        "pp_loss_as_layer": True, "cp": 1, "ep": 8, "micro_batch": 1,
                        "zero_stage": 1, "recompute": "full", "sequence_parallel": True,
                        "dtype": "bf16", "offload_optimizer": False,
                        "offload_activations": False})
    assert space.constraints(cfg) == []
    assert any("not divisible by pp*pp_interleave = 32" in r
               for r in space.constraints({**cfg, "pp_loss_as_layer": False}))
    dense = TrainingSpace(LLAMA8)  # 32 layers + embedding + loss: 17 units per stage on PP 2
    assert dense.params["pp_embedding_as_layer"].when == {"pp": (2,)}
    balanced = TrainingSpace({**ctx, "framework": "deepspeed"})
    assert 16 in balanced.params["pp"].choices  # the stack splits 94 layers unevenly itself
