"""The pipelines the deployment benchmark compares."""

from __future__ import annotations

from tuner.evaluators.deployment import DeploymentSimEvaluator
from tuner.evaluators.deployment.pipelines import (
    Goal,
    cost_floor,
    domain_diff,
    exact_search,
    quality_first_mix,
    tpe_search,
)

WL = {"mode": "poisson", "rate": 4.0, "num_requests": 40, "seed": 0, "input_len": 256,
      "output_len": 32}
CTX = {"model": "llama3.1-8b", "gpu": "h100_sxm", "num_gpus": 2, "workload": WL,
       "slo_ttft_ms": 2000.0, "slo_tpot_ms": 100.0}
GOAL = Goal(2000.0, 100.0, 0.02)
NARROW = {"pp": {"fixed": 1}, "chunked_prefill": {"fixed": True}, "kv_block_size": {"fixed": 16},
          "gpu_memory_utilization": {"fixed": 0.9}, "preemption_mode": {"fixed": "recompute"},
          "scheduling_policy": {"fixed": "fcfs"}, "max_num_seqs": {"fixed": 128},
          "max_num_batched_tokens": {"fixed": 2048}, "prefill_chunk_size": {"fixed": 2048},
          "disaggregated": {"fixed": False}}


def test_quality_first_mix_is_the_smallest_within_budget_and_keeps_16_bit_kv_and_acts():
    mix, m = quality_first_mix(CTX, {}, GOAL)
    assert m.quality_drop <= GOAL.quality_budget
    assert mix["act_bits"] == 16 and mix["kv_bits"] == 16  # they shrink no weight
    tighter, m2 = quality_first_mix(CTX, {}, Goal(2000.0, 100.0, 0.002))
    assert m2.size_gib > m.size_gib


def test_cost_floor_bounds_the_simulated_cost():
    cfg = {**CTX, "tp": 1, "replicas": 2}
    r = DeploymentSimEvaluator().evaluate(cfg)
    assert cost_floor(cfg) <= r.metrics["cost_usd_per_mtok"]


def test_exact_search_finds_what_tpe_finds_or_better():
    mix = {f"{r}_bits": {"fixed": 8} for r in ("qkv", "attn_out", "mlp_up", "mlp_down")}
    overrides = {**NARROW, **mix, "act_bits": {"fixed": 8}, "kv_bits": {"fixed": 8},
                 "protect_frac": {"fixed": 0.0}}
    exact = exact_search("exact", CTX, overrides, GOAL)
    tpe = tpe_search("tpe", CTX, overrides, GOAL, trials=8)
    assert exact.metrics is not None
    assert exact.cost <= tpe.cost
    assert domain_diff(exact.config, {**exact.config, "tp": 2}) == {
        "serving plan": [f"tp {exact.config['tp']} -> 2"]} or exact.config["tp"] == 2


def test_compare_runs_the_joint_search_once_per_seed_before_the_exact_pipelines():
    from tuner.evaluators.deployment.pipelines import compare

    narrow = {**NARROW, "tp": {"fixed": 1}, "replicas": {"fixed": 2}}
    outcomes = compare(CTX, narrow, GOAL, trials=4, seeds=(0, 1))
    assert [o.name for o in outcomes] == ["joint s0", "joint s1", "sequential", "uniform fp8",
                                          "uniform int4"]
    assert all(o.metrics is not None for o in outcomes[2:])  # each exact pipeline met the SLOs
