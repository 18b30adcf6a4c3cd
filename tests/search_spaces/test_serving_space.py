"""The serving search space: context checks, conditional plan parameters, constraints,
features, and the study files' spaces staying small enough to enumerate."""

import random
from pathlib import Path

import optuna
import pytest

from tuner import BadInput, registry
from tuner.evaluators.serving.sim import ServingSimEvaluator
from tuner.search_spaces.serving import ServingSpace
from tuner.spec import load_spec

WL = {"mode": "poisson", "rate": 4.0, "num_requests": 40, "input_len": 256, "output_len": 32}
CTX = {"model": "llama3.1-70b", "gpu": "h100_sxm", "num_gpus": 8, "workload": WL,
       "slo_ttft_ms": 1000.0, "slo_tpot_ms": 50.0}


def test_registered_and_defaults():
    assert registry.space_class("serving") is ServingSpace
    space = ServingSpace(CTX)
    assert space.default_evaluator == "serving-sim"
    assert {m for m, _ in space.default_objectives} <= set(ServingSimEvaluator.metrics)
    assert space.is_finite()


def test_dense_models_have_no_ep_and_moe_models_do():
    assert "ep" not in ServingSpace(CTX).params
    assert "ep" in ServingSpace({**CTX, "model": "Qwen/Qwen3-235B-A22B"}).params


def test_gpu_list_becomes_a_parameter():
    space = ServingSpace({**CTX, "gpu": ["h100_sxm", "h200"]})
    assert space.params["gpu"].choices == ("h100_sxm", "h200_sxm")
    assert "gpu" not in space.context


@pytest.mark.parametrize("ctx, field", [
    ({**CTX, "gpus": 8}, "space.context.gpus"),
    ({k: v for k, v in CTX.items() if k != "workload"}, "space.context.workload"),
    ({**CTX, "gpu": ["h100_sxm", "tpu"]}, "space.context.gpu"),
    ({**CTX, "num_gpus": 0}, "space.context.num_gpus"),
    ({**CTX, "model": "llama-9"}, "model"),
    ({**CTX, "workload": {**WL, "rate": -1}}, "workload.rate"),
])
def test_bad_context_raises_badinput(ctx, field):
    with pytest.raises(BadInput) as err:
        ServingSpace(ctx)
    assert err.value.field == field


def test_conditional_parameters_follow_the_plan_kind():
    space = ServingSpace(CTX)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        cfg = space.suggest(trial)
        if cfg["disaggregated"]:
            assert "tp" not in cfg and "prefill_tp" in cfg and "decode_workers" in cfg
        else:
            assert "prefill_tp" not in cfg and "replicas" in cfg
        assert ("prefill_chunk_size" in cfg) == cfg["chunked_prefill"]
        assert ("mixed_prefill" in cfg) == (not cfg["chunked_prefill"])
        study.tell(trial, 0.0)


def test_constraints_give_reasons_with_numbers():
    space = ServingSpace(CTX)
    cfg = space.config({"disaggregated": False, "tp": 8, "pp": 2, "replicas": 1,
                        "weight_dtype": "bf16", "kv_dtype": "bf16", "max_num_seqs": 1024,
                        "max_num_batched_tokens": 512, "chunked_prefill": True,
                        "prefill_chunk_size": 2048, "kv_block_size": 16,
                        "gpu_memory_utilization": 0.9, "preemption_mode": "recompute",
                        "scheduling_policy": "fcfs"})
    reasons = " | ".join(space.constraints(cfg))
    assert "uses 16 GPUs, budget is 8" in reasons
    assert "prefill_chunk_size 2048 exceeds max_num_batched_tokens 512" in reasons
    assert "max_num_batched_tokens 512 < max_num_seqs 1024" in reasons
    small = space.config({**space.param_values(cfg), "tp": 1, "pp": 1,
                          "max_num_batched_tokens": 8192, "max_num_seqs": 256})
    assert any("needs" in r and "GiB" in r for r in space.constraints(small))


def test_enumerated_configs_are_valid_and_evaluable():
    space = ServingSpace(CTX, overrides={
        "disaggregated": {"fixed": False}, "pp": {"fixed": 1},
        "weight_dtype": {"fixed": "fp8"}, "kv_dtype": {"fixed": "bf16"},
        "max_num_seqs": {"fixed": 256}, "max_num_batched_tokens": {"fixed": 4096},
        "chunked_prefill": {"fixed": True}, "prefill_chunk_size": {"fixed": 4096},
        "kv_block_size": {"fixed": 16}, "gpu_memory_utilization": {"fixed": 0.9},
        "preemption_mode": {"fixed": "recompute"}, "scheduling_policy": {"fixed": "fcfs"}})
    valid = list(space.enumerate())
    # fp8 70B (33 GiB of weights) fits one GPU; tp x replicas <= 8 GPUs
    assert {(c["tp"], c["replicas"]) for c in valid} == {
        (1, 1), (1, 2), (1, 4), (1, 8), (2, 1), (2, 2), (2, 4), (4, 1), (4, 2), (8, 1)}
    ev = ServingSimEvaluator()
    for cfg in random.Random(0).sample(valid, 3):
        assert ev.evaluate(cfg).status.value == "ok"


def test_features_reflect_memory():
    space = ServingSpace(CTX)
    base = {"disaggregated": False, "tp": 4, "pp": 1, "replicas": 2, "kv_dtype": "bf16",
            "max_num_seqs": 256, "max_num_batched_tokens": 8192, "chunked_prefill": True,
            "prefill_chunk_size": 8192, "kv_block_size": 16, "gpu_memory_utilization": 0.9,
            "preemption_mode": "recompute", "scheduling_policy": "fcfs"}
    bf16 = space.features(space.config({**base, "weight_dtype": "bf16"}))
    fp8 = space.features(space.config({**base, "weight_dtype": "fp8"}))
    assert fp8["weight_gib_per_gpu"] < 0.55 * bf16["weight_gib_per_gpu"]
    assert fp8["kv_capacity_tokens"] > bf16["kv_capacity_tokens"]
    assert bf16["num_gpus"] == 8.0
    dis = space.features(space.config({**base, "disaggregated": True, "prefill_workers": 1,
                                       "prefill_tp": 4, "decode_workers": 1, "decode_tp": 4,
                                       "weight_dtype": "fp8"}))
    assert "prefill_kv_capacity_tokens" in dis and "decode_weight_gib_per_gpu" in dis


STUDIES = sorted((Path(__file__).parents[2] / "studies").glob("serving-*.toml"))


def test_the_three_studies_exist():
    assert len(STUDIES) >= 3


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_spaces_are_small_enough_to_enumerate(path):
    spec = load_spec(path)
    assert spec.space.domain == "serving"
    space = ServingSpace(spec.space.context, spec.space.params)
    n = sum(1 for _ in space.enumerate())
    assert 50 <= n <= 3000, f"{path}: {n} valid configs"
    metrics = set(ServingSimEvaluator.metrics)
    assert {o.metric for o in spec.objectives} <= metrics
    assert {c.metric for c in spec.constraints} <= metrics


LLAMA_CTX = {"engine": "llama.cpp", "model": "smollm2-135m",
             "gpu": "evaluators/serving/data/cpu_example.toml",
             "workload": {"mode": "closed", "concurrency": 8, "num_requests": 32,
                          "input_len": 256, "output_len": 64}}


def test_llama_cpp_context_searches_llama_servers_knobs():
    from tuner.evaluators.serving._engines import LLAMA_CPP

    space = ServingSpace(LLAMA_CTX)
    assert set(space.params) == {"max_num_seqs", "max_num_batched_tokens", "ubatch_size",
                                 "kv_dtype", "kv_cache_tokens", "threads", "threads_batch",
                                 "flash_attn"}
    assert set(space.params) <= set(LLAMA_CPP.flags)  # serving-real can run every config
    assert space.params["threads"].choices == (1, 2, 4)  # from the profile's 2 cores
    assert max(space.params["kv_cache_tokens"].choices) <= 8192  # SmolLM2's context
    assert space.is_finite()
    ev = ServingSimEvaluator()
    seen = set()
    for cfg in list(space.enumerate())[:400:37]:
        reasons = space.constraints(cfg)
        res = ev.evaluate(cfg)
        if reasons:
            continue
        assert res.status.value in ("ok", "infeasible"), res.reason
        seen.add(res.status.value)
    assert "ok" in seen


def test_llama_cpp_duplicate_ubatch_spellings_are_constrained():
    space = ServingSpace(LLAMA_CTX)
    cfg = {**space.context, "max_num_batched_tokens": 256, "ubatch_size": 512}
    assert any("clamps it" in r for r in space.constraints(cfg))
    cfg = {**space.context, "max_num_batched_tokens": 512, "kv_dtype": "q4_0",
           "flash_attn": False}
    assert any("flash attention" in r for r in space.constraints(cfg))
    feats = space.features({**space.context, "threads_batch": 4})
    assert feats["threads_per_core"] == 2.0 and feats["weight_gib"] > 0


def test_moe_spaces_offer_attention_data_parallelism():
    space = ServingSpace({**CTX, "model": "Qwen/Qwen3-235B-A22B", "engine": "sglang"})
    assert space.params["dp_attention"].choices == (False, True)
    assert "dp_attention" not in ServingSpace(CTX).params
