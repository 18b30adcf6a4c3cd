"""MoE serving with attention data parallelism and expert parallelism over all-to-all."""

import pytest

from tuner import BadInput
from tuner.evaluators.serving._cluster import simulate
from tuner.evaluators.serving._latency import StepModel
from tuner.evaluators.serving._plan import engine_memory, parse, plan_workload, problems
from tuner.evaluators.serving._workloads import Workload
from tuner.evaluators.serving.sim import ServingSimEvaluator

EV = ServingSimEvaluator()
WL = {"mode": "closed", "concurrency": 64, "num_requests": 192, "input_len": 1024,
      "output_len": 256}
DS = {"model": "deepseek-v3", "gpu": "h200_sxm", "tp": 8, "ep": 8, "weight_dtype": "fp8",
      "workload": WL}


def test_each_gpu_keeps_its_own_latent_cache():
    tp = parse(DS)
    dp = parse({**DS, "dp_attention": True})
    kv_tp = engine_memory(tp, 8, 1, 8).kv_tokens(tp.kv_block_size)  # replicated on 8 GPUs
    kv_dp = engine_memory(dp, 8, 1, 8).kv_tokens(dp.kv_block_size)  # one rank's own
    # attention weights are whole on every rank, so each keeps less room than TP8, but the
    # replica holds 8 different caches instead of one replicated
    assert kv_dp < kv_tp and 8 * kv_dp > 4 * kv_tp
    assert dp.engine_kinds() == [("mixed", 8, 8, 1, 8)]
    _, res = _sim({**DS, "dp_attention": True})
    assert len(res.engines) == 8 and res.unfinished == 0
    assert sum(e.steps > 0 for e in res.engines) == 8  # the router spreads the requests


def _sim(config):
    plan = parse(config)
    assert problems(plan) == []
    return plan, simulate(plan, plan_workload(plan))


def test_moe_layers_exchange_tokens_by_all_to_all():
    dp = StepModel(parse({**DS, "dp_attention": True}), 8, 1, 8)
    assert dp.dp == 8 and dp.g.attn_tp == 1
    small, large = dp._moe_exchange(16), dp._moe_exchange(4096)
    assert 0 < small < large
    # tokens of all 8 ranks meet in the experts: the routed work is the 8x batch's
    assert dp._experts(8 * 512) > dp._experts(512)
    # expert-tensor-parallel MoE under DP attention gathers and reduce-scatters instead
    tp_experts = StepModel(parse({**DS, "ep": 1, "dp_attention": True}), 8, 1, 1)
    assert tp_experts._moe_exchange(4096) > 0
    # without attention DP there is no exchange: the TP all-reduce combines the experts
    assert StepModel(parse(DS), 8, 1, 8).dp == 1


def test_dp_attention_serves_a_large_decode_batch_that_tp_attention_cannot_hold():
    """TensorRT-LLM's DeepSeek-R1 max-throughput recipe on 8 H200 (attention DP + EP8, 1024
    requests of 1024 + 2048 tokens in flight): with TP attention the replicated latent cache
    holds a fraction of them."""
    load = {"mode": "closed", "concurrency": 1024, "num_requests": 2048, "input_len": 1024,
            "output_len": 256}
    cfg = {**DS, "engine": "trtllm", "offline": True, "workload": load}
    tp = EV.evaluate({**cfg, "max_num_seqs": 1024, "max_num_batched_tokens": 8192}).metrics
    dp = EV.evaluate({**cfg, "dp_attention": True, "max_num_seqs": 128,
                      "max_num_batched_tokens": 1151}).metrics
    assert dp["throughput_tok_s"] > 1.5 * tp["throughput_tok_s"]


@pytest.mark.parametrize("config, field", [
    ({"model": "llama3.1-70b", "tp": 8, "dp_attention": True, "workload": WL}, "dp_attention"),
    ({**DS, "dp_attention": "yes"}, "dp_attention"),
])
def test_dp_attention_needs_an_moe_model_and_a_bool(config, field):
    with pytest.raises(BadInput) as err:
        EV.evaluate(config)
    assert err.value.field == field


def test_dp_attention_with_pipeline_stages_is_not_modelled():
    res = EV.evaluate({**DS, "pp": 2, "tp": 4, "ep": 4, "dp_attention": True})
    assert res.status.value == "infeasible" and "dp_attention" in res.reason
    disagg = EV.evaluate({**DS, "dp_attention": True, "disaggregated": True})
    assert disagg.status.value == "infeasible" and disagg.reason.count("dp_attention") == 1


def _two_requests(config, second_prompt):
    """A long decode on one rank; at 50 ms a prompt of ``second_prompt`` tokens reaches
    another rank (least-loaded routing). Returns (plan, result)."""
    plan = parse(config)
    wl = Workload((0.0, 0.05), (128, second_prompt), (400, 1), (0, 0))
    return plan, simulate(plan, wl)


def test_one_ranks_prefill_holds_up_the_other_ranks_decodes():
    """The ranks of a replica run every step together (each MoE layer exchanges their
    tokens): a decode on rank 0 waits for rank 1's 8k-token prefill, as it would not on a
    replica of its own."""
    cfg = {**DS, "dp_attention": True, "offline": True}
    plan, quiet = _two_requests(cfg, 1)
    _, busy = _two_requests(cfg, 8192)
    assert [e.steps > 0 for e in busy.engines].count(True) == 2  # two ranks served them
    decode_s = [r.finish[0] - r.first[0] for r in (quiet, busy)]
    prefill_s = StepModel(plan, 8, 1, 8).step(8192, 1, 1, 0, 0, [(8192, 8192)], 8193)
    assert decode_s[1] - decode_s[0] > 0.5 * prefill_s > 0


def test_experts_see_the_tokens_the_ranks_really_have():
    """An idle replica's single request: its MoE layers compute one token's experts, not
    one token per rank, so a decode step is faster than the equal-loads estimate."""
    m = StepModel(parse({**DS, "dp_attention": True}), 8, 1, 8)
    assert m.decode_step(1, 1000, moe_tokens=1) < m.decode_step(1, 1000)
    assert m.linear(64, moe_tokens=8 * 64) == m.linear(64)  # the default is equal loads


def test_requests_go_to_a_replica_first_then_to_one_of_its_ranks():
    """Two DP replicas of 8 ranks: 8 requests sent together split 4 and 4 between the
    replicas (each replica's own controller spreads its share over its ranks), not 8 onto
    one replica's ranks."""
    plan = parse({**DS, "dp_attention": True, "replicas": 2, "offline": True})
    wl = Workload((0.0,) * 8, (512,) * 8, (64,) * 8, (0,) * 8)
    res = simulate(plan, wl)
    assert res.unfinished == 0 and len(res.engines) == 16
    served = [e.steps > 0 for e in res.engines]
    assert sum(served[:8]) == sum(served[8:]) == 4


def test_ranks_that_would_get_no_share_of_a_budget_are_infeasible():
    for key in ("max_num_seqs", "max_num_batched_tokens"):
        res = EV.evaluate({**DS, "engine": "sglang", "dp_attention": True, key: 4})
        assert res.status.value == "infeasible"
        assert f"{key} is shared by 8 attention-DP ranks" in res.reason
        assert "use at least 8" in res.reason
