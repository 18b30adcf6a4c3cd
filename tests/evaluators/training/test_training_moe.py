"""MoE training: per-expert token counts, routing load, dispatch, expert parallel memory."""

import pytest

from tuner.evaluators._perf import consts
from tuner.evaluators.training import _moe
from tuner.evaluators.training._plan import parse_plan
from tuner.evaluators.training.sim import TrainingSimEvaluator

EV = TrainingSimEvaluator()
QWEN = {"model": "qwen3-235b-a22b", "gpu": "h100_sxm", "num_gpus": 256, "seq_len": 4096,
        "global_batch": 1024, "micro_batch": 1, "tp": 2, "pp": 8, "pp_interleave": 4,
        "ep": 32, "etp": 1, "zero_stage": 1, "recompute": "full",
        "sequence_parallel": True, "pp_embedding_as_layer": True, "pp_loss_as_layer": True,
        "moe_force_balance": True}


def ok(cfg):
    res = EV.evaluate(cfg)
    assert res.status.value == "ok", res.reason
    return res


def moe_ms(cfg):
    return ok(cfg).artifacts["time_s"]["layer_moe_fwd"] * 1e3


def test_expert_gemms_run_at_their_per_expert_token_count():
    """Same routed work per GPU, more experts per GPU: smaller GEMMs, lower efficiency."""
    p = parse_plan(QWEN)
    t_in = _moe.tokens_in(p, 4096)
    assert t_in == 2048  # sequence parallel: each TP rank routes its own half
    per_expert = {ep: t_in * 8 * ep / 128 for ep in (8, 32)}
    assert per_expert == {8: 1024, 32: 4096}
    few = {**QWEN, "ep": 32, "moe_dispatcher": "deepep", "num_gpus": 256}
    many = {**few, "ep": 8, "global_batch": 1024}
    # compute only: the routed tokens per GPU are equal, the expert GEMMs are 4x smaller
    t_few = ok({**few, "ep": 32}).artifacts["time_s"]["layer_fwd"]
    t_many = ok(many).artifacts["time_s"]["layer_fwd"]
    assert t_many > 1.05 * t_few
    # a loop of per-expert GEMMs pays every launch; one grouped GEMM pays one
    assert ok({**many, "moe_grouped_gemm": False}).metrics["step_time_s"] \
        > ok({**many, "moe_grouped_gemm": True}).metrics["step_time_s"]


def test_routing_load_imbalance_and_capacity():
    base = {**QWEN, "moe_force_balance": False}
    dropless = moe_ms(base)
    balanced = moe_ms(QWEN)
    capped = moe_ms({**base, "moe_capacity_factor": 1.0})
    assert dropless > 1.15 * balanced  # the slowest EP rank sets the pace
    assert capped == pytest.approx(balanced, rel=1e-6)  # tokens over capacity are dropped
    stored = {**QWEN, "recompute": "selective"}  # dispatched tokens are kept for backward
    m_drop = ok({**stored, "moe_force_balance": False}).artifacts["memory_gib"]["activations"]
    assert m_drop > ok(stored).artifacts["memory_gib"]["activations"]


def test_dispatch_inside_and_across_nodes():
    inside = {**QWEN, "ep": 8}  # stride 1: 8 ranks of one node, NVLink only
    across = {**QWEN, "ep": 32}  # 4 nodes
    assert ok(across).artifacts["time_s"]["layer_comm_exposed"] \
        > 2 * ok(inside).artifacts["time_s"]["layer_comm_exposed"]
    # DeepEP sends a token once per remote node, NCCL all-to-all once per routed copy
    nccl = ok({**across, "moe_dispatcher": "alltoall"}).artifacts["time_s"]
    deepep = ok({**across, "moe_dispatcher": "deepep"}).artifacts["time_s"]
    assert deepep["layer_comm_exposed"] < 0.7 * nccl["layer_comm_exposed"]
    # overlapping the all-to-all with another micro-batch's compute hides part of it
    over = ok({**across, "moe_a2a_overlap": True}).artifacts["time_s"]
    assert over["layer_comm_exposed"] < nccl["layer_comm_exposed"]


def test_deepep_sends_a_token_once_to_each_gpu_holding_its_experts():
    from math import comb
    assert _moe.reach_share(8, 2, 8) == pytest.approx(2 / 8)  # one expert per GPU
    assert _moe.reach_share(32, 8, 8) == pytest.approx(1 - comb(28, 8) / comb(32, 8))
    assert _moe.reach_share(64, 4, 1) == pytest.approx(1.0)
    # top-8 of 32 experts on 8 GPUs (4 each): a token reaches ~5.6 GPUs, not 8
    assert 8 * _moe.reach_share(32, 8, 8) == pytest.approx(5.64, abs=0.01)
    # inside one node the dispatch moves that share of the copies' bytes
    c = consts(parse_plan(QWEN).hw)
    few = _moe._deepep_seconds(c, 1e4, 8, 8, 1, 8, c.nic_bw, 32) - c.coll_lat
    one_each = _moe._deepep_seconds(c, 1e4, 2, 8, 1, 8, c.nic_bw, 8) - c.coll_lat
    assert few / one_each == pytest.approx(_moe.reach_share(32, 8, 8) / (2 / 8))


def test_group_limited_routing_reaches_fewer_nodes():
    """DeepSeek-V3's router picks 4 of 8 expert groups, then its top-8 experts among their
    128: over 8 nodes (a group each) a token reaches 3.2 remote nodes, where uniform top-8
    routing reaches 4.6."""
    from math import comb

    def miss(pool, held, k=8):
        return comb(pool - held, k) / comb(pool, k)

    uniform = 7 * (1 - miss(256, 32))
    assert _moe.remote_nodes(256, 8, 8) == pytest.approx(uniform)
    assert _moe.remote_nodes(256, 8, 8, 8, 4) == pytest.approx(7 * 0.5 * (1 - miss(128, 32)))
    # two groups per node over 4 nodes: none, one or both of a node's groups are picked
    picked = {0: 15 / 70, 1: 40 / 70, 2: 15 / 70}
    reached = 1 - sum(p * miss(128, 32 * j) for j, p in picked.items())
    assert _moe.remote_nodes(256, 8, 4, 8, 4) == pytest.approx(3 * reached)
    assert _moe.remote_nodes(256, 8, 1, 8, 4) == 0.0
    # more groups per token reach more nodes; all of them is no limit
    by_topk = [_moe.remote_nodes(256, 8, 8, 8, g) for g in range(1, 9)]
    assert by_topk == sorted(by_topk) and by_topk[0] == pytest.approx(7 / 8)
    assert by_topk[-1] == pytest.approx(uniform)
    assert _moe.remote_nodes(256, 8, 8, 256, 8) == pytest.approx(uniform)  # 1-expert groups
    assert _moe.reach_share(256, 8, 8, 8, 4) == pytest.approx(0.5 * (1 - miss(128, 32)))
    # only DeepEP's node-deduplicated traffic shrinks: an all-to-all sends every copy
    c = consts(parse_plan(QWEN).hw)
    args = (c, 4096, 8, 7168, 64, 1, 8, c.nic_bw, 256)
    flat = _moe.transfer_seconds(args[0], "deepep", *args[1:])
    grouped = _moe.transfer_seconds(args[0], "deepep", *args[1:], 8, 4)
    assert grouped / flat == pytest.approx(
        _moe.remote_nodes(256, 8, 8, 8, 4) / _moe.remote_nodes(256, 8, 8), rel=0.01)
    assert (_moe.transfer_seconds(args[0], "alltoall", *args[1:], 8, 4)
            == _moe.transfer_seconds(args[0], "alltoall", *args[1:]))
    # the catalog's DeepSeek-V3 states its router; a training step's dispatch follows it
    dsv3 = {"model": "deepseek-v3", "gpu": "h100_sxm", "num_gpus": 1024, "seq_len": 4096,
            "global_batch": 8192, "micro_batch": 1, "tp": 2, "pp": 8, "ep": 64, "etp": 1,
            "pp_first_stage_layers": 7, "pp_last_stage_layers": 6, "recompute": "full",
            "sequence_parallel": True, "moe_force_balance": True, "moe_dispatcher": "deepep"}
    grouped_ms = ok(dsv3).artifacts["time_s"]["layer_comm_exposed"]
    uniform_ms = ok({**dsv3, "model": None, **_inline_dsv3()}).artifacts["time_s"][
        "layer_comm_exposed"]
    assert grouped_ms < 0.85 * uniform_ms


def test_router_groups_are_checked_whatever_came_before():
    """Both keys or neither, on an MoE model, and never beside a catalog model (whose own
    values would win); an inline model cached from ``8`` does not let ``8.0`` through."""
    from tuner import BadInput

    inline = {**{k: v for k, v in QWEN.items() if k not in ("model", "pp_embedding_as_layer",
                                                         "pp_loss_as_layer")},
              **_inline_dsv3(), "pp_first_stage_layers": 7, "pp_last_stage_layers": 6}
    ok({**inline, "router_groups": 8, "router_group_topk": 4})
    for bad, field in (({"router_groups": 8.0, "router_group_topk": 4}, "router_groups"),
                       ({"router_group_topk": 4}, "router_groups"),
                       ({"router_groups": 8}, "router_group_topk"),
                       ({"router_groups": 1, "router_group_topk": 1}, "router_groups"),
                       ({"router_groups": 64, "router_group_topk": 1}, "router_group_topk"),
                       ({"router_groups": 8, "router_group_topk": 9}, "router_group_topk")):
        with pytest.raises(BadInput) as err:
            EV.evaluate({**inline, **bad})
        assert err.value.field == field, bad
    with pytest.raises(BadInput) as err:
        EV.evaluate({**QWEN, "router_groups": 8, "router_group_topk": 4})
    assert err.value.field == "model" and "router_groups" in str(err.value)


def _inline_dsv3():
    import dataclasses

    from tuner.evaluators._catalog import get_model
    m = get_model("deepseek-v3")
    skip = {"name", "description", "source", "aliases", "router_groups", "router_group_topk"}
    return {f.name: getattr(m, f.name) for f in dataclasses.fields(m) if f.name not in skip}


def test_expert_tensor_parallel_and_expert_memory():
    etp1 = ok(QWEN).artifacts["memory_gib"]
    # expert weights shard over etp*ep; optimizer state over the expert data-parallel ranks
    etp2 = ok({**QWEN, "etp": 2, "ep": 16}).artifacts
    p1, p2 = parse_plan(QWEN), parse_plan({**QWEN, "etp": 2, "ep": 16})
    assert (p1.edp, p2.edp) == (1, 1)
    assert etp2["memory_gib"]["weights"] == pytest.approx(etp1["weights"], rel=0.02)
    dp_more = ok({**QWEN, "ep": 8}).artifacts["memory_gib"]
    assert dp_more["weights"] > 2 * etp1["weights"]  # 4x the experts per GPU
    assert dp_more["optimizer"] < dp_more["weights"] * 6 / 2  # sharded over edp = 4
    res = EV.evaluate({**QWEN, "etp": 4, "ep": 32})
    assert res.status.value == "infeasible"
    assert "etp*ep = 4*32 does not divide tp*cp*dp = 32" in res.reason


def _with(**values):
    from tuner.evaluators._profiles import with_constants
    from tuner.evaluators.training._profile import framework_profile
    return with_constants(framework_profile("megatron"), values)


def _layer(cfg, profile=None):
    res = EV.evaluate_with(cfg, profile) if profile is not None else EV.evaluate(cfg)
    assert res.status.value == "ok", res.reason
    return res.artifacts["time_s"]


def test_each_dispatcher_runs_at_its_own_efficiency():
    across = {**QWEN, "ep": 32, "recompute": "selective"}
    nccl, deepep = {**across, "moe_dispatcher": "alltoall"}, {**across, "moe_dispatcher": "deepep"}
    slow_nccl = _with(a2a_efficiency=0.3)
    assert _layer(nccl, slow_nccl)["layer_comm_exposed"] > 1.5 * _layer(nccl)["layer_comm_exposed"]
    # DeepEP does not go through NCCL's all-to-all: its constant is its own
    assert _layer(deepep, slow_nccl)["layer_comm_exposed"] == pytest.approx(
        _layer(deepep)["layer_comm_exposed"], rel=1e-9)
    assert _layer(deepep, _with(deepep_efficiency=0.5))["layer_comm_exposed"] \
        > 1.5 * _layer(deepep)["layer_comm_exposed"]


def test_overlapped_all_to_all_pairs_with_the_other_micro_batch():
    # tp 1: the layer's only exposed communication is the all-to-all
    base = {**QWEN, "tp": 1, "sequence_parallel": False, "ep": 32, "moe_dispatcher": "deepep",
            "global_batch": 2048}
    plain = _layer(base)
    over = _layer({**base, "moe_a2a_overlap": True})
    free = _layer({**base, "moe_a2a_overlap": True}, _with(ep_overlap_sm_cost=0.0))
    # hidden behind compute, never below it; SMs taken by the transfers cost compute time
    assert free["layer_comm_exposed"] < over["layer_comm_exposed"] < plain["layer_comm_exposed"]
    assert over["layer_fwd"] == pytest.approx(plain["layer_fwd"], rel=1e-9)
    # at least the unpaired warm-up / cool-down passes stay exposed
    p = parse_plan({**base, "moe_a2a_overlap": True})
    u = _moe.unpaired_share(p)
    assert u == pytest.approx(((4 - 1) * 8 + 8 - 1) / (p.num_micro * 4))
    assert u * plain["layer_comm_exposed"] <= free["layer_comm_exposed"]
    # a pair of pieces takes the longer one, plus the SM share the transfer takes
    assert _moe._paired(1.0, 3.0, 0.0) == 3.0 and _moe._paired(3.0, 1.0, 0.0) == 3.0
    assert _moe._paired(1.0, 3.0, 0.2) == pytest.approx(3.2)
    # without pipelining only the step's first forward and last backward have no partner
    flat = parse_plan({**base, "pp": 1, "pp_interleave": 1, "pp_embedding_as_layer": False,
                       "pp_loss_as_layer": False, "moe_a2a_overlap": True})
    assert _moe.unpaired_share(flat) == pytest.approx(1 / flat.num_micro)


def test_all_to_all_overlap_is_a_stack_feature():
    cfg = {**QWEN, "moe_a2a_overlap": True, "framework": "torchtitan"}
    res = EV.evaluate(cfg)
    assert res.status.value == "infeasible"
    assert "moe_a2a_overlap: the torchtitan stack does not overlap" in res.reason


def test_dropless_dispatch_sync_floors_the_forward_at_host_time():
    """A dropless dispatcher waits for the token counts on the host: a MoE layer's forward
    then takes at least the host's time; capacity-padded runs (static shapes) do not wait."""
    from tuner.evaluators._profiles import with_constants
    from tuner.evaluators.training._profile import framework_profile

    base = framework_profile("megatron")
    slow_host = with_constants(base, {"moe_sync_host_us": 20000.0})
    cfg = {**QWEN, "tp": 4, "recompute": "none", "moe_dispatcher": "deepep"}
    fwd = EV.evaluate_with(cfg, base).artifacts["time_s"]["layer_fwd"]
    floored = EV.evaluate_with(cfg, slow_host).artifacts["time_s"]["layer_fwd"]
    assert fwd < 0.005 and 0.015 < floored <= 0.02  # the floor covers compute + exposed comm
    # a GPU-bound forward is unchanged when the host is faster than it
    fast_host = with_constants(base, {"moe_sync_host_us": 0.1 * fwd * 1e6})
    assert EV.evaluate_with(cfg, fast_host).artifacts["time_s"]["layer_fwd"] == pytest.approx(fwd)
    padded = {**cfg, "moe_capacity_factor": 1.0}
    assert EV.evaluate_with(padded, slow_host).artifacts["time_s"]["layer_fwd"] < 0.02
