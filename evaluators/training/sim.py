"""``training-sim``: an analytical model of one LLM training step under a parallel plan.

Config keys (``tuner evaluate training-sim --config '{...}'``):

* model: ``model`` (catalog name or HF id) or inline ``hidden_size``, ``num_layers``,
  ``num_heads``, ``num_kv_heads``, ``ffn_hidden_size``, ``vocab_size`` (+ ``num_experts``,
  ``top_k``, ``moe_ffn_hidden_size`` ... for MoE; any other catalog model field);
* shape: ``seq_len``, ``global_batch`` (sequences per step), ``micro_batch``;
* cluster: ``gpu`` (catalog name), ``num_gpus``, ``gpus_per_node`` (default: the GPU's usual
  node, 8), ``inter_node_gbps`` (network Gbit/s per GPU; default: the GPU's usual cluster);
* plan: ``tp``, ``pp``, ``cp``, ``ep``, ``pp_interleave``, ``zero_stage`` (0-3; 3 = FSDP full
  shard), ``recompute`` (none | selective | full), ``sequence_parallel``, ``dtype`` (bf16 |
  fp16 | fp8), ``offload_optimizer``, ``offload_activations``;
* implementation: ``attention_impl`` (flash | unfused: Megatron-LM's pre-FlashAttention path),
  ``dropout`` (false), ``overlap_grad_reduce`` (true), ``tp_comm_overlap`` (false).

Data parallelism is derived: ``dp = num_gpus / (tp * pp * cp)``; gradient accumulation is
``global_batch / (dp * micro_batch)`` micro-batches per step.

Metrics:

* ``step_time_s``: one optimizer step; ``tokens_per_s`` = global_batch * seq_len / step.
* ``tflops_per_gpu``: FLOPs per second per GPU counted as Narayanan et al. (SC'21, Eq. 3):
  model FLOPs of forward + backward plus the FLOPs of recomputation actually performed
  (full recomputation: another forward of every layer; selective: the attention core).
* ``mfu``: model FLOPs utilization (PaLM, Chowdhery et al. 2022, App. B; Megatron-LM): model
  FLOPs without recomputation per second / (num_gpus x dense peak of ``dtype``), 0..1.
  Attention is counted over the full ``s x s`` score matrix as both papers do.
* ``peak_memory_gib``: the largest per-GPU memory over pipeline stages, including the
  allowance (``workspace_gib`` + ``fragmentation`` x activations, evaluator options).
* ``cost_usd_per_mtok``: GPU-hours price of a million training tokens.

A plan that breaks a rule (degrees, divisibility) is ``infeasible`` with the reasons; one that
does not fit is ``infeasible`` with "needs X GiB per GPU, has Y GiB" and still reports its
metrics (what it would achieve if it fit), so samplers learn from it. Artifacts hold the time
and memory breakdowns.
"""

from __future__ import annotations

from typing import Any, Mapping

from evaluators._perf import GpuConsts, consts
from evaluators.training import _memory
from evaluators.training._memory import GIB, StageMemory, stage_memory
from evaluators.training._plan import Plan, parse_plan, plan_errors
from evaluators.training._shapes import (LayerShapes, layer_shapes, model_flops_per_token,
                                         num_moe_layers)
from evaluators.training._time import (ADAM_BYTES_PER_PARAM, CPU_ADAM_BYTES_PER_PARAM,
                                       GRAD_BYTES, PARAM_BYTES, LayerTime, StageExtras,
                                       dp_seconds, layer_time, p2p_seconds, stage_extras)
from tuner import BadInput, BaseEvaluator, EvalResult

#: allowance on top of the modelled tensors (evaluator options override them)
DEFAULT_OPTIONS = {
    # CUDA context (~0.5 GiB), cuBLAS/cuDNN workspaces and NCCL buffers
    "workspace_gib": 2.0,
    # caching-allocator fragmentation, as a fraction of activation memory
    "fragmentation": 0.10,
}

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
    return _cached(_SHAPES, (p.model_key, p.tp, p.ep, moe),
                   lambda: layer_shapes(p.model, p.tp, p.ep, moe))


def _layer_time(c: GpuConsts, p: Plan, sh: LayerShapes, nic: float) -> LayerTime:
    key = (p.model_key, c.hw.name, sh.moe, p.dtype, p.tp, p.cp, p.ep, p.micro_batch, p.seq_len,
           p.sequence_parallel, p.attention_impl, p.dropout, p.tp_comm_overlap,
           p.gpus_per_node, nic)
    return _cached(_LAYER_TIMES, key, lambda: layer_time(c, p, sh, nic))


def _extras(c: GpuConsts, p: Plan, nic: float) -> StageExtras:
    key = (p.model_key, c.hw.name, p.dtype, p.tp, p.cp, p.micro_batch, p.seq_len,
           p.sequence_parallel, p.gpus_per_node, nic)
    return _cached(_EXTRAS, key, lambda: stage_extras(c, p, nic))


def _dense_layers_of_stage(p: Plan, rank: int) -> int:
    """How many of the model's leading dense layers (MoE models) pipeline stage ``rank`` holds."""
    m = p.model
    if not m.num_experts:
        return m.num_layers // p.pp
    first_dense = m.first_dense_layers
    chunk = m.num_layers // (p.pp * p.pp_interleave)
    n = 0
    for j in range(p.pp_interleave):
        start = (j * p.pp + rank) * chunk
        if start < first_dense:
            n += min(first_dense - start, chunk)
    return n


def _recompute(p: Plan, lt: LayerTime) -> tuple[float, float]:
    """Seconds and FLOPs that recomputation adds per layer and micro-batch."""
    if p.recompute == "full":
        return lt.fwd + lt.comm_fwd, lt.model_flops_fwd
    if p.recompute == "selective":
        return lt.core_attn_fwd, lt.core_attn_flops_fwd
    return 0.0, 0.0


def _exposed(comm: float, window: float, buckets: int) -> float:
    """Exposed part of a bucketed collective overlapped with ``window`` seconds of compute.

    The last bucket can never overlap, hence at least ``comm / (buckets + 1)``.
    """
    if comm <= 0.0:
        return 0.0
    hidden = comm - window
    floor = comm / (buckets + 1)
    return hidden if hidden > floor else floor


def estimate(p: Plan, options: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, Any],
                                                           float, tuple]:
    """Metrics, artifacts, the peak stage's memory need (GiB) and what ``_breakdown`` takes."""
    c = consts(p.hw, sustained=True)
    m = p.model
    nic = c.nic(p.inter_node_gbps)
    pp, v, mb, tp = p.pp, p.pp_interleave, p.num_micro, p.tp
    per_stage = m.num_layers // pp
    dense_sh = _shapes(p, False)
    moe_sh = _shapes(p, True) if m.num_experts else None
    lt_d = _layer_time(c, p, dense_sh, nic)
    lt_m = _layer_time(c, p, moe_sh, nic) if moe_sh is not None else lt_d
    extras = _extras(c, p, nic)
    rec_d, rec_flops_d = _recompute(p, lt_d)
    rec_m, rec_flops_m = _recompute(p, lt_m)
    fwd_d, bwd_d = lt_d.fwd + lt_d.comm_fwd, lt_d.bwd + lt_d.comm_bwd
    fwd_m, bwd_m = lt_m.fwd + lt_m.comm_fwd, lt_m.bwd + lt_m.comm_bwd

    if pp == 1:
        ranks: tuple[int, ...] = (0,)
    elif moe_sh is not None and m.first_dense_layers and pp > 3:
        ranks = tuple(sorted({0, 1, pp - 2, pp - 1}))
    else:
        ranks = (0, pp - 1)
    rows = []
    for r in ranks:
        n_dense = _dense_layers_of_stage(p, r)
        n_moe = per_stage - n_dense
        mem = stage_memory(p, r, n_dense, n_moe, dense_sh, moe_sh)
        fwd = n_dense * fwd_d + n_moe * fwd_m
        bwd = n_dense * bwd_d + n_moe * bwd_m
        rec = n_dense * rec_d + n_moe * rec_m
        if r == 0:
            fwd += extras.first / 3
            bwd += extras.first * 2 / 3
        if r == pp - 1:
            fwd += extras.last / 3
            bwd += extras.last * 2 / 3
        offload = 0.0
        if p.offload_activations and per_stage:
            # stored activations go to the host in forward and come back in backward
            xfer = mem.offloaded / per_stage / c.host_bw
            offload = per_stage * (max(xfer - fwd / per_stage, 0.0)
                                   + max(xfer - bwd / per_stage, 0.0))
        rows.append((r, fwd, bwd, rec, offload, mem, n_moe))

    # data-parallel / ZeRO collectives of the stage holding the most parameters
    worst = rows[0]
    for row in rows:
        if row[5].params > worst[5].params:
            worst = row
    _, fwd_w, bwd_w, _, _, mem_w, nm_w = worst
    p_expert = nm_w * moe_sh.params_expert if moe_sh is not None else 0.0
    p_dense = mem_w.params - p_expert
    group = p.dp * p.cp
    egroup = group // p.ep if p.ep > 1 else group
    dpd = dp_seconds(c, p, p_dense, group, tp, nic)
    if p_expert:
        dpe = dp_seconds(c, p, p_expert, egroup, tp * p.ep, nic)
        dpd = {k: dpd[k] + dpe[k] for k in dpd}
    grad, param = dpd["grad"], dpd["param"]
    pm_f, pm_b = dpd["per_micro_fwd"], dpd["per_micro_bwd"]
    layers = per_stage if per_stage > 0 else 1

    t_stage = 0.0
    for r, fwd, bwd, rec, offload, mem, _ in rows:
        t = fwd + bwd + rec + offload
        if pm_f or pm_b:  # ZeRO-2/3 collectives every micro-batch, prefetched under compute
            t += _exposed(pm_f, fwd, layers) + _exposed(pm_b, bwd + rec, layers)
        if t > t_stage:
            t_stage = t
    bubble = (pp - 1) / v if pp > 1 else 0.0
    p2p = 2 * v * p2p_seconds(c, p, nic) if pp > 1 else 0.0
    pipeline = (mb + bubble) * t_stage + mb * p2p
    if p.overlap_grad_reduce:
        dp_exposed = _exposed(grad, bwd_w, layers) + _exposed(param, fwd_w, layers)
    else:
        dp_exposed = grad + param

    # optimizer step on the local shard of the worst stage
    if p.zero_stage >= 1:
        shard = p_dense / (group if group > 1 else 1) + p_expert / (egroup if egroup > 1 else 1)
    else:
        shard = p_dense + p_expert
    if p.offload_optimizer:
        optimizer = (shard * CPU_ADAM_BYTES_PER_PARAM / c.host_mem_bw
                     + shard * PARAM_BYTES / c.host_bw
                     + max(shard * GRAD_BYTES / c.host_bw - bwd_w, 0.0))
    else:
        optimizer = shard * ADAM_BYTES_PER_PARAM / c.hbm_bw + 10 * c.launch
    step = pipeline + dp_exposed + optimizer

    # FLOPs per step: model (MFU numerator) and with recomputation (Megatron's count)
    tokens_step = p.global_batch * p.seq_len
    model_flops = _cached(_FLOPS, (p.model_key, p.seq_len),
                          lambda: model_flops_per_token(m, p.seq_len)) * tokens_step
    n_moe_total = num_moe_layers(m)
    per_token = tp * p.cp / (p.micro_batch * p.seq_len)
    rec_flops = ((m.num_layers - n_moe_total) * rec_flops_d + n_moe_total * rec_flops_m) \
        * per_token * tokens_step
    hw_flops = model_flops + rec_flops
    peak = c.peak_nominal.get(p.dtype, 0.0)

    # memory of the worst stage, with the allowance
    frag = float(options.get("fragmentation", DEFAULT_OPTIONS["fragmentation"]))
    workspace = float(options.get("workspace_gib", DEFAULT_OPTIONS["workspace_gib"]))
    peak_gib, peak_rank, peak_mem = -1.0, 0, rows[0][5]
    for r, _, _, _, _, mem, _ in rows:
        total = (mem.model_state + mem.activations * (1.0 + frag) + mem.working) / GIB + workspace
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
    artifacts = {
        "dp": p.dp, "micro_batches": mb, "layers_per_stage": per_stage,
        "bubble_fraction": bubble / mb if mb else 0.0,
        "params_per_gpu": peak_mem.params,
        "model_flops_per_step": model_flops, "hardware_flops_per_step": hw_flops,
        "time_s": {
            "pipeline": pipeline, "stage_per_micro_batch": t_stage, "bubble": bubble * t_stage,
            "pipeline_p2p": mb * p2p, "dp_exposed": dp_exposed, "dp_grad_total": grad,
            "dp_param_gather_total": param, "zero_per_micro_batch": pm_f + pm_b,
            "optimizer": optimizer, "layer_fwd": lt.fwd, "layer_bwd": lt.bwd,
            "layer_comm_exposed": lt.comm_fwd + lt.comm_bwd,
            "layer_recompute": rec_m if moe_sh is not None else rec_d,
        },
        "memory_gib": {
            "peak_stage": peak_rank, "weights": peak_mem.weights / GIB,
            "grads": peak_mem.grads / GIB, "optimizer": peak_mem.optimizer / GIB,
            "activations": peak_mem.activations / GIB, "transient": peak_mem.working / GIB,
            "workspace": workspace, "fragmentation": peak_mem.activations * frag / GIB,
            "capacity": float(p.hw.hbm_gib),
            "first_stage_model_state": first.model_state / GIB,
            "first_stage_activations": first.activations / GIB,
        },
    }
    return metrics, artifacts, peak_gib, (peak_rank, peak_mem, workspace, frag)


def _breakdown(rank: int, mem: StageMemory, workspace: float, frag: float) -> str:
    return (f"stage {rank}: weights {mem.weights / GIB:.1f}, grads {mem.grads / GIB:.1f}, "
            f"optimizer {mem.optimizer / GIB:.1f}, activations {mem.activations / GIB:.1f}, "
            f"transient {mem.working / GIB:.1f}, workspace+fragmentation "
            f"{workspace + mem.activations * frag / GIB:.1f} GiB")


class TrainingSimEvaluator(BaseEvaluator):
    """Scores a parallel training plan analytically in tens of microseconds.

    Options: ``workspace_gib`` (2.0) and ``fragmentation`` (0.10), the memory allowance.
    """

    name = "training-sim"
    version = "1"
    metrics = ("step_time_s", "tokens_per_s", "tflops_per_gpu", "mfu", "peak_memory_gib",
               "cost_usd_per_mtok")
    domains = ("training",)
    analytical = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def _check_options(self) -> None:
        for k, v in self.options.items():
            if k not in DEFAULT_OPTIONS:
                raise BadInput(f"evaluator.options.{k}", "unknown option; allowed: "
                               + ", ".join(DEFAULT_OPTIONS))
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise BadInput(f"evaluator.options.{k}", f"{v!r} must be a number >= 0")

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "model": "analytical-v1"}

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        if self.options:
            self._check_options()
        p = parse_plan(config)
        errs = plan_errors(p)
        if errs:
            return EvalResult.infeasible("; ".join(errs))
        metrics, artifacts, need, peak = estimate(p, self.options)
        cap = float(p.hw.hbm_gib)
        if need > cap:
            return EvalResult.infeasible(
                f"out of memory: needs {need:.1f} GiB per GPU, has {cap:g} GiB "
                f"({_breakdown(*peak)})", metrics, artifacts)
        return EvalResult.ok(metrics, artifacts)


__all__ = ["DEFAULT_OPTIONS", "TrainingSimEvaluator", "clear_caches", "estimate"]
