"""One optimizer step: pipeline stages, data-parallel / ZeRO / FSDP collectives, optimizer.

Step (Narayanan et al. 2021, Sec. 2.2): ``(m + (p-1)/v) * t_stage`` for a pipeline of ``p``
stages with ``v`` interleaved chunks and ``m`` micro-batches, where ``t_stage`` is the
slowest stage's time per micro-batch (uneven stages: the largest sets the pace); plus
pipeline sends, the exposed part of the data-parallel gradient reduction and ZeRO/FSDP
collectives (each overlapped with the compute the stack lets it hide behind: every bucket
but the last for a bucketed gradient reduction, ``fsdp_overlap`` of each layer's compute for
FSDP's per-layer gathers), the optimizer step (memory bound, ~34 bytes per parameter), the
once-per-step fp8 weight casts, the stack's per-layer host overhead and its per-step
overhead.
"""

from __future__ import annotations

from typing import Any

from tuner.evaluators._perf import GpuConsts, collective_seconds, consts
from tuner.evaluators.training import _memory
from tuner.evaluators.training._memory import (
    GIB,
    StageMemory,
    recompute_fraction,
    shard_groups,
    stage_memory,
)
from tuner.evaluators.training._plan import Plan
from tuner.evaluators.training._shapes import (
    LayerShapes,
    layer_shapes,
    model_flops_per_token,
    num_moe_layers,
)
from tuner.evaluators.training._time import (
    ADAM_BYTES_PER_PARAM,
    CPU_ADAM_BYTES_PER_PARAM,
    LayerTime,
    StageExtras,
    layer_time,
    p2p_seconds,
    stage_extras,
)

_CACHE_LIMIT = 1 << 14
_SHAPES: dict[tuple, LayerShapes] = {}
_LAYER_TIMES: dict[tuple, LayerTime] = {}
_EXTRAS: dict[tuple, StageExtras] = {}
_FLOPS: dict[tuple, float] = {}


def clear_caches() -> None:
    """Forget every memoized shape, time and memory figure (for cold-start timings)."""
    for cache in (_SHAPES, _LAYER_TIMES, _EXTRAS, _FLOPS, _memory._ACT_CACHE):
        cache.clear()


def _cached(cache: dict, key: tuple, make: Any) -> Any:
    """Memoize a pure function of the plan (bounded: cleared when it grows too large)."""
    v = cache.get(key)
    if v is None:
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        v = cache[key] = make()
    return v


def _shapes(p: Plan, moe: bool) -> LayerShapes:
    return _cached(_SHAPES, (p.model_key, p.tp, p.ep, p.etp, moe),
                   lambda: layer_shapes(p.model, p.tp, p.ep, moe, p.etp))


def _layer_time(c: GpuConsts, p: Plan, sh: LayerShapes, nic: float) -> LayerTime:
    key = (p.model_key, c.hw.name, sh.moe, p.dtype, p.tp, p.cp, p.ep, p.etp, p.micro_batch,
           p.seq_len, p.sequence_parallel, p.attention_impl, p.dropout, p.tp_comm_overlap,
           p.gpus_per_node, nic, p.stack.key, p.moe_force_balance, p.moe_capacity_factor,
           p.grouped_gemm, p.moe_dispatcher,
           # the overlapped all-to-all depends on the schedule's unpaired share
           (p.pp, p.pp_interleave, p.num_micro) if p.moe_a2a_overlap and sh.moe else None)
    return _cached(_LAYER_TIMES, key, lambda: layer_time(c, p, sh, nic))


def _extras(c: GpuConsts, p: Plan, nic: float) -> StageExtras:
    key = (p.model_key, c.hw.name, p.dtype, p.tp, p.cp, p.micro_batch, p.seq_len,
           p.sequence_parallel, p.gpus_per_node, nic, p.stack.key, p.loss_parallel)
    return _cached(_EXTRAS, key, lambda: stage_extras(c, p, nic))


def _recompute(p: Plan, lt: LayerTime, sh: LayerShapes) -> tuple[float, float]:
    """Seconds and FLOPs that recomputation adds per layer and micro-batch."""
    if p.recompute == "full":
        return lt.fwd + lt.comm_fwd, lt.model_flops_fwd
    if p.recompute != "selective":
        return 0.0, 0.0
    mods = p.recompute_set
    t = flops = 0.0
    tokens = p.micro_batch * p.seq_len / p.cp
    h = p.model.hidden_size
    if "core_attn" in mods:
        t += lt.core_attn_fwd
        flops += lt.core_attn_flops_fwd
    if "layernorm" in mods:
        t += lt.norm_fwd
    if "mlp" in mods:
        t += lt.mlp_fwd
        flops += sum(2.0 * tokens * g.n * g.k for g in sh.mlp_gemms)
    elif "mlp_act" in mods:
        t += lt.act_fwd
    if sh.moe and "moe" in mods:
        t += lt.moe_fwd
        flops += 2.0 * tokens * sh.top_k * h * (sh.expert_n1 + sh.expert_f) / p.tp
    elif sh.moe and "moe_act" in mods:
        t += lt.moe_act_fwd
    if "mla_up_proj" in mods and p.model.attention == "mla":
        t += lt.up_fwd
    return t, flops


def _exposed(comm: float, window: float, buckets: int) -> float:
    """Exposed part of a bucketed collective overlapped with ``window`` seconds of compute.

    The last bucket can never overlap, hence at least ``comm / (buckets + 1)``.
    """
    if comm <= 0.0:
        return 0.0
    hidden = comm - window
    floor = comm / (buckets + 1)
    return hidden if hidden > floor else floor


def dp_seconds(c: GpuConsts, p: Plan, n: float, expert: bool, nic_bw: float
               ) -> dict[str, float]:
    """Data-parallel collectives for ``n`` parameters per GPU (dense, or expert ones).

    Per-step seconds of: ``grad`` (gradient reduction), ``param`` (ZeRO parameter
    all-gather after the step) and the ZeRO-2/3 collectives repeated every micro-batch
    (``per_micro_fwd``: FSDP gathers; ``per_micro_bwd``: gathers + gradient reduce-scatter).
    Hybrid sharding shards inside groups of ``zero_shard_size`` ranks and all-reduces the
    sharded gradients across the groups once per step.
    """
    gpn, st = p.gpus_per_node, p.stack
    out = {"grad": 0.0, "param": 0.0, "per_micro_fwd": 0.0, "per_micro_bwd": 0.0}
    full = max(p.edp, 1) if expert else max(p.dp * p.cp, 1)
    stride = p.tp * p.cp if not expert else p.etp * p.ep
    if full <= 1 or n <= 0:
        return out
    z = p.zero_stage
    g_bytes = p.grad_bytes if p.grad_bytes else 2.0
    if z == 0:
        out["grad"] = collective_seconds(c, "all_reduce", n * g_bytes, full, gpn, nic_bw, stride)
        return out
    shard, shard_e = shard_groups(p)
    group = shard_e if expert else shard
    replicas = full // group if group else 1
    # parameter all-gather in the dtype the stack keeps its gathered weights in
    w_bytes = (st.fp8_gather_bytes if p.dtype == "fp8" else st.gather_bytes) or 2.0
    rs = collective_seconds(c, "reduce_scatter", n * g_bytes, group, gpn, nic_bw, stride)
    ag = collective_seconds(c, "all_gather", n * w_bytes, group, gpn, nic_bw, stride)
    if replicas > 1:
        out["grad"] += collective_seconds(c, "all_reduce", n / group * g_bytes, replicas, gpn,
                                          nic_bw, stride * group)
    if z == 1:
        out["grad"] += rs
        out["param"] = ag
    elif z == 2:
        out["per_micro_bwd"] = rs
        out["param"] = ag
    else:
        out["per_micro_fwd"] = ag
        out["per_micro_bwd"] = ag + rs
    return out


def estimate(p: Plan, workspace_gib: float | None, fragmentation: float | None
             ) -> tuple[dict[str, float], dict[str, Any], float, tuple]:
    """Metrics, artifacts, the peak stage's memory need (GiB) and its breakdown inputs.

    ``workspace_gib`` / ``fragmentation`` (evaluator options) replace the profile's fixed
    memory (context + NCCL) and fragmentation share when given.
    """
    st = p.stack
    c = consts(p.hw, sustained=True, fp8_block=st.fp8_recipe == "blockwise")
    m = p.model
    nic = c.nic(p.inter_node_gbps)
    pp, v, mb = p.pp, p.pp_interleave, p.num_micro
    lay = p.layout
    dense_sh = _shapes(p, False)
    moe_sh = _shapes(p, True) if m.num_experts else None
    lt_d = _layer_time(c, p, dense_sh, nic)
    lt_m = _layer_time(c, p, moe_sh, nic) if moe_sh is not None else lt_d
    extras = _extras(c, p, nic)
    rec_d, rec_flops_d = _recompute(p, lt_d, dense_sh)
    rec_m, rec_flops_m = _recompute(p, lt_m, moe_sh if moe_sh is not None else dense_sh)
    fwd_d, bwd_d = lt_d.fwd + lt_d.comm_fwd, lt_d.bwd + lt_d.comm_bwd
    fwd_m, bwd_m = lt_m.fwd + lt_m.comm_fwd, lt_m.bwd + lt_m.comm_bwd
    mtp = p.mtp_layers

    rows = []
    for r in lay.rep:
        n_dense, n_moe = lay.ranks[r]
        mem = stage_memory(p, r, n_dense, n_moe, dense_sh, moe_sh)
        fwd = n_dense * fwd_d + n_moe * fwd_m
        bwd = n_dense * bwd_d + n_moe * bwd_m
        rec = (n_dense * rec_d + n_moe * rec_m) * recompute_fraction(p, n_dense + n_moe)
        layers = n_dense + n_moe
        if r == 0:
            fwd += extras.first / 3
            bwd += extras.first * 2 / 3
        if r == pp - 1:
            heads = 1 + mtp
            fwd += heads * extras.last / 3
            bwd += heads * extras.last * 2 / 3
            if mtp:
                fwd += mtp * fwd_m
                bwd += mtp * bwd_m
                rec += mtp * rec_m
                layers += mtp
        fwd += 0.5 * st.layer_overhead * layers
        bwd += 0.5 * st.layer_overhead * layers
        offload = 0.0
        if p.offload_activations and layers:
            # stored activations go to the host in forward and come back in backward
            xfer = mem.offloaded / layers / c.host_bw
            offload = layers * (max(xfer - fwd / layers, 0.0) + max(xfer - bwd / layers, 0.0))
        rows.append((r, fwd, bwd, rec, offload, mem, n_moe, layers))

    # data-parallel / ZeRO collectives of the stage holding the most parameters
    worst = max(rows, key=lambda row: row[5].params)
    _, fwd_w, bwd_w, rec_w, _, mem_w, nm_w, layers_w = worst
    p_expert = nm_w * moe_sh.params_expert if moe_sh is not None else 0.0
    p_dense = mem_w.params - p_expert
    dpd = dp_seconds(c, p, p_dense, False, nic)
    if p_expert:
        dpe = dp_seconds(c, p, p_expert, True, nic)
        dpd = {k: dpd[k] + dpe[k] for k in dpd}
    grad, param = dpd["grad"], dpd["param"]
    pm_f, pm_b = dpd["per_micro_fwd"], dpd["per_micro_bwd"]
    layers = max(layers_w, 1)

    t_stage = 0.0
    for _, fwd, bwd, rec, offload, _, _, _ in rows:
        t = fwd + bwd + rec + offload + st.micro_overhead
        if pm_f or pm_b:  # ZeRO-2/3 collectives every micro-batch, prefetched under compute
            t += (_exposed(pm_f, st.fsdp_overlap * fwd, layers)
                  + _exposed(pm_b, st.fsdp_overlap * (bwd + rec), layers))
        if t > t_stage:
            t_stage = t
    bubble = (pp - 1) / v if pp > 1 else 0.0
    p2p = 2 * v * p2p_seconds(c, p, nic) if pp > 1 else 0.0
    pipeline = (mb + bubble) * t_stage + mb * p2p
    if p.overlap_grad_reduce:
        o = st.grad_overlap
        dp_exposed = _exposed(grad, o * (bwd_w + rec_w), layers) + _exposed(param, o * fwd_w,
                                                                            layers)
    else:
        dp_exposed = grad + param

    # optimizer step on the local shard of the worst stage (+ once-per-step fp8 weight casts)
    shard_d, shard_e = shard_groups(p)
    if p.zero_stage >= 1:
        shard = p_dense / shard_d + p_expert / shard_e
    else:
        shard = p_dense + p_expert
    if p.offload_optimizer:
        optimizer = (shard * CPU_ADAM_BYTES_PER_PARAM / c.host_mem_bw
                     + shard * 2.0 / c.host_bw
                     + max(shard * p.grad_bytes / c.host_bw - bwd_w, 0.0))
    else:
        optimizer = shard * ADAM_BYTES_PER_PARAM / c.hbm_bw + 10 * c.launch
    if p.dtype == "fp8" and st.fp8_recipe != "tensorwise":
        optimizer += mem_w.params * st.fp8_elem / c.hbm_bw
    step = pipeline + dp_exposed + optimizer + st.step_overhead

    # FLOPs per step: model (MFU numerator) and with recomputation (Megatron's count)
    tokens_step = p.global_batch * p.seq_len
    model_flops = _cached(_FLOPS, (p.model_key, p.seq_len, mtp),
                          lambda: model_flops_per_token(m, p.seq_len, mtp)) * tokens_step
    n_moe_total = num_moe_layers(m) + (mtp if moe_sh is not None else 0)
    n_dense_total = m.num_layers + mtp - n_moe_total
    per_token = p.tp * p.cp / (p.micro_batch * p.seq_len)
    rec_share = recompute_fraction(p, max(lay.layers(r) for r in lay.rep))
    rec_flops = (n_dense_total * rec_flops_d + n_moe_total * rec_flops_m) * per_token \
        * tokens_step * rec_share
    hw_flops = model_flops + rec_flops
    peak = c.peak_nominal.get(p.dtype, 0.0)

    # memory of the worst stage
    frag = st.frag if fragmentation is None else fragmentation
    fixed = None if workspace_gib is None else workspace_gib * GIB
    peak_gib, peak_rank, peak_mem = -1.0, 0, rows[0][5]
    for r, _, _, _, _, mem, _, _ in rows:
        total = mem.total(frag, fixed) / GIB
        if total > peak_gib:
            peak_gib, peak_rank, peak_mem = total, r, mem

    metrics = {
        "step_time_s": step,
        "tokens_per_s": tokens_step / step,
        "tflops_per_gpu": hw_flops / step / p.num_gpus / 1e12,
        "mfu": model_flops / (step * p.num_gpus * peak) if peak else 0.0,
        "peak_memory_gib": peak_gib,
        "cost_usd_per_mtok": p.hw.price_usd_per_hour * p.num_gpus / 3600.0 * step
        / tokens_step * 1e6,
    }
    lt = lt_m if moe_sh is not None else lt_d
    first = rows[0][5]
    fixed_b = peak_mem.fixed if fixed is None else fixed
    artifacts = {
        "dp": p.dp, "micro_batches": mb,
        "layers_per_stage": max(d + n for d, n in (lay.ranks[r] for r in lay.rep)),
        "bubble_fraction": bubble / mb if mb else 0.0,
        "params_per_gpu": peak_mem.params, "profile": p.profile.name,
        "model_flops_per_step": model_flops, "hardware_flops_per_step": hw_flops,
        "time_s": {
            "pipeline": pipeline, "stage_per_micro_batch": t_stage, "bubble": bubble * t_stage,
            "pipeline_p2p": mb * p2p, "dp_exposed": dp_exposed, "dp_grad_total": grad,
            "dp_param_gather_total": param, "zero_per_micro_batch": pm_f + pm_b,
            "optimizer": optimizer, "step_overhead": st.step_overhead,
            "layer_fwd": lt.fwd, "layer_bwd": lt.bwd,
            "layer_comm_exposed": lt.comm_fwd + lt.comm_bwd, "layer_moe_fwd": lt.moe_fwd,
            "layer_recompute": rec_m if moe_sh is not None else rec_d,
        },
        "memory_gib": {
            "peak_stage": peak_rank, "weights": peak_mem.weights / GIB,
            "grads": peak_mem.grads / GIB, "optimizer": peak_mem.optimizer / GIB,
            "activations": peak_mem.activations / GIB, "transient": peak_mem.working / GIB,
            "allocated": peak_mem.allocated() / GIB,
            "workspace": fixed_b / GIB,
            "fragmentation": (peak_mem.activations + peak_mem.working) * frag / GIB,
            "capacity": float(p.hw.hbm_gib),
            "first_stage_model_state": first.model_state / GIB,
            "first_stage_activations": first.activations / GIB,
        },
    }
    return metrics, artifacts, peak_gib, (peak_rank, peak_mem, fixed_b, frag)


def breakdown(rank: int, mem: StageMemory, fixed: float, frag: float) -> str:
    return (f"stage {rank}: weights {mem.weights / GIB:.1f}, grads {mem.grads / GIB:.1f}, "
            f"optimizer {mem.optimizer / GIB:.1f}, activations {mem.activations / GIB:.1f}, "
            f"transient {mem.working / GIB:.1f}, workspace+fragmentation "
            f"{(fixed + (mem.activations + mem.working) * frag) / GIB:.1f} GiB")


__all__ = ["breakdown", "clear_caches", "dp_seconds", "estimate"]
