"""Time of one training step: per-layer compute and communication, pipeline, data parallel.

Per layer and micro-batch on one GPU (``T = micro_batch * seq_len / cp`` tokens):

* GEMMs of every linear layer, forward (M=T) and backward (input gradient and weight
  gradient), timed by ``evaluators/_perf.py`` from their shapes.
* Attention core: a FlashAttention-style fused kernel (backward = 2.5x the forward FLOPs, as
  FlashAttention-2 counts it), or Megatron's unfused path (batched score/value GEMMs plus
  softmax and dropout streaming the ``s x s`` scores through HBM).
* Memory-bound element-wise kernels (norms, residual adds, dropout, MLP activation, MoE token
  permutation), forward bytes from the tensors they read and write; backward moves twice that.
* Tensor-parallel collectives (Shoeybi et al. 2019: two all-reduces per block forward, two
  backward; with sequence parallelism, Korthikanti et al. 2023, all-gather + reduce-scatter),
  exposed in forward; in backward each is overlapped with the GEMM Megatron-LM runs beside
  it (input-gradient all-reduce with the weight-gradient GEMM).
* Context parallelism: ring exchange of K/V chunks (cp-1 steps) overlapped with the attention
  of the previous chunk; expert parallelism: token all-to-all dispatch and combine.

Step (Narayanan et al. 2021, Sec. 2.2): ``(m + (p-1)/v) * t_stage`` for a pipeline of ``p``
stages with ``v`` interleaved chunks and ``m`` micro-batches (bubble fraction
``(p-1)/(v*m)``), plus pipeline sends, the exposed part of the data-parallel gradient reduction
/ ZeRO collectives, and the optimizer step (memory bound, ~30 bytes per fp32 parameter).
"""

from __future__ import annotations

from typing import NamedTuple

from evaluators._perf import GpuConsts, causal_pairs, collective_seconds, gemm_seconds
from evaluators.training._plan import Plan, strides
from evaluators.training._shapes import LayerShapes, attention_flops_per_token

ACT_BYTES = 2.0  # activations and their gradients are bf16/fp16 (also in fp8 training)
GRAD_BYTES = 4.0  # fp32 main gradients (Megatron-LM accumulates and reduces them in fp32)
PARAM_BYTES = 2.0
ADAM_BYTES_PER_PARAM = 34.0  # read master, m, v, grad (16); write master, m, v (12); bf16 copy
# (2); gradient-norm read (4)
CPU_ADAM_BYTES_PER_PARAM = 28.0  # the same optimizer arithmetic on the host, fp32 state


class LayerTime(NamedTuple):
    """Seconds per layer and micro-batch on one GPU, plus the FLOPs behind them."""

    fwd: float  # forward compute (GEMMs, attention, element-wise)
    bwd: float  # backward compute
    core_attn_fwd: float  # attention core forward (what selective recomputation repeats)
    comm_fwd: float  # exposed TP/CP/EP communication in forward
    comm_bwd: float  # exposed TP/CP/EP communication in backward
    tp_bytes: float  # TP collective volume per forward (for reporting)
    model_flops_fwd: float  # model FLOPs of this layer's forward (PaLM/Megatron convention)
    core_attn_flops_fwd: float  # model FLOPs of the attention core forward


def _gemm3(c: GpuConsts, m: float, n: int, k: int, dtype: str, groups: int,
           in_bytes: float) -> tuple[float, float, float]:
    """Forward (m,n,k), input-gradient (m,k,n) and weight-gradient (k,n,m) GEMM seconds.

    The same model as ``_perf.gemm_seconds``, evaluated three times with shared lookups.
    """
    peak = c.peak.get(dtype) or c.peak["bf16"]
    cap = c.gemm_max.get(dtype, 0.8)
    kp, kh, bw, t0 = c.k_peak, c.k_half, c.hbm_bw, c.gemm_t0
    flops = 2.0 * m * n * k * groups
    out = []
    for rows, cols, inner in ((m, n, k), (m, k, n), (k, n, m)):
        e = kp * inner / (inner + kh)
        if e > cap:
            e = cap
        compute = flops / (peak * e)
        memory = ((rows * inner + inner * cols) * in_bytes + rows * cols * 2.0) * groups / bw
        out.append((compute if compute > memory else memory) + t0)
    return out[0], out[1], out[2]


def _gemms(c: GpuConsts, sh: LayerShapes, tokens: float, dtype: str, in_bytes: float,
           gemms: tuple) -> tuple[float, float, float, float, float]:
    """Forward, dgrad, wgrad seconds of a block; and column-parallel dgrad, wgrad seconds."""
    fwd = dgrad = wgrad = col_dgrad = col_wgrad = 0.0
    for g in gemms:
        m = tokens * g.token_share
        if m <= 0:
            continue
        if g.name == "router":  # kept in 16 bits
            f, d, w = _gemm3(c, m, g.n, g.k, "bf16", g.groups, 2.0)
        else:
            f, d, w = _gemm3(c, m, g.n, g.k, dtype, g.groups, in_bytes)
        fwd += f
        dgrad += d
        wgrad += w
        if g.kind == "col":
            col_dgrad += d
            col_wgrad += w
    return fwd, dgrad, wgrad, col_dgrad, col_wgrad


def _attention_core(c: GpuConsts, p: Plan, sh: LayerShapes) -> tuple[float, float, float]:
    """Forward time, backward time and hardware FLOPs (forward) of the attention core."""
    b, s, cp = p.micro_batch, p.seq_len, p.cp
    heads = sh.heads
    peak = c.peak.get("bf16") or c.peak.get("fp16")
    if p.attention_impl == "flash":
        pairs = causal_pairs(s, s, True) / cp  # load-balanced causal split across CP ranks
        flops = 2.0 * b * heads * pairs * (sh.d_qk + sh.d_v)
        fwd = flops / (peak * c.attn_fwd) + c.launch * cp
        bwd = 2.5 * flops / (peak * c.attn_bwd) + 2 * c.launch * cp
        return fwd, bwd, flops
    # unfused (Megatron-LM before FlashAttention): full s x s scores through HBM
    bh = b * heads
    scores = bh * s * s
    fwd = (gemm_seconds(c, s, s, sh.d_qk, "bf16", bh) + gemm_seconds(c, s, sh.d_v, s, "bf16", bh))
    bwd = (gemm_seconds(c, s, sh.d_v, s, "bf16", bh) + gemm_seconds(c, s, s, sh.d_v, "bf16", bh)
           + 2 * gemm_seconds(c, s, sh.d_qk, s, "bf16", bh))
    ew_fwd = 4.0 * scores  # fused scale-mask-softmax: read + write 2 bytes per score
    ew_bwd = 6.0 * scores  # softmax backward: read y, dy; write dx
    kernels = 1
    if p.dropout:
        ew_fwd += 5.0 * scores  # read, write, 1-byte mask
        ew_bwd += 5.0 * scores
        kernels += 1
    fwd += ew_fwd / c.hbm_bw + kernels * c.launch
    bwd += ew_bwd / c.hbm_bw + 2 * kernels * c.launch
    return fwd, bwd, 2.0 * bh * s * s * (sh.d_qk + sh.d_v)


def _elementwise_bytes(p: Plan, sh: LayerShapes, tokens: float, e: int) -> tuple[float, int]:
    """Forward HBM bytes and kernel count of the memory-bound ops outside the attention core."""
    h = p.model.hidden_size
    rep = tokens / p.tp if p.sequence_parallel and p.tp > 1 else tokens
    nbytes = 8.0 * h * rep  # two norms: read + write
    nbytes += (14.0 if p.dropout else 12.0) * h * rep  # two residual adds (+ dropout masks)
    act_in = 6.0 if sh.gated else 4.0  # SwiGLU reads gate and up; GELU reads one
    nbytes += act_in * sh.mlp_act_width * tokens
    kernels = 5
    if sh.moe:
        k = sh.top_k
        nbytes += 2.0 * (2.0 + 2.0 * k) * h * tokens  # permute + unpermute tokens
        nbytes += 8.0 * e * tokens  # router logits/probabilities (fp32)
        kernels += 6
        if p.model.num_shared_experts:
            w = p.model.moe_ffn_hidden_size * p.model.num_shared_experts / p.tp
            nbytes += act_in * w * tokens
            kernels += 1
    return nbytes, kernels


def layer_time(c: GpuConsts, p: Plan, sh: LayerShapes, nic_bw: float) -> LayerTime:
    """One layer (dense or MoE, as ``sh`` says), one micro-batch, on one GPU."""
    tokens = p.micro_batch * p.seq_len / p.cp
    h, t, gpn = p.model.hidden_size, p.tp, p.gpus_per_node
    in_bytes = 1.0 if p.dtype == "fp8" else 2.0
    a_f, a_d, a_w, a_cd, a_cw = _gemms(c, sh, tokens, p.dtype, in_bytes, sh.attn_gemms)
    m_f, m_d, m_w, m_cd, m_cw = _gemms(c, sh, tokens, p.dtype, in_bytes, sh.mlp_gemms)
    core_f, core_b, _ = _attention_core(c, p, sh)
    ew, kernels = _elementwise_bytes(p, sh, tokens, p.model.num_experts)
    ew_f = ew / c.hbm_bw + kernels * c.launch
    ew_b = 2.0 * ew / c.hbm_bw + 2 * kernels * c.launch
    fwd = a_f + m_f + core_f + ew_f
    bwd = a_d + a_w + m_d + m_w + core_b + ew_b

    # tensor parallelism: per block, forward 2 collectives (AR, or AG + RS with SP)
    comm_f = comm_b = tp_bytes = 0.0
    if t > 1:
        act = tokens * h * ACT_BYTES
        tp_bytes = 2 * act
        ag = rs = ar = 0.0
        if p.sequence_parallel:
            ag = collective_seconds(c, "all_gather", act, t, gpn, nic_bw, 1)
            rs = collective_seconds(c, "reduce_scatter", act, t, gpn, nic_bw, 1)
            per_block_f = ag + rs
        else:
            ar = collective_seconds(c, "all_reduce", act, t, gpn, nic_bw, 1)
            per_block_f = ar
        for col_d, col_w, fwd_gemm in ((a_cd, a_cw, a_f), (m_cd, m_cw, m_f)):
            if p.tp_comm_overlap:  # userbuffers: collectives pipelined with the GEMMs
                comm_f += max(per_block_f - fwd_gemm, 0.1 * per_block_f)
            else:
                comm_f += per_block_f
            if p.sequence_parallel:
                # row-parallel input-gradient all-gather is exposed; the column-parallel
                # input re-gather overlaps dgrad, its gradient reduce-scatter overlaps wgrad
                exposed_ag = ag if not p.tp_comm_overlap else 0.1 * ag
                comm_b += exposed_ag + max(ag - col_d, 0.0) + max(rs - col_w, 0.0)
            else:
                comm_b += max(ar - col_w, 0.0)

    # context parallelism: ring exchange of K/V chunks overlapped with chunk attention
    if p.cp > 1:
        kv_bytes = tokens * sh.kv_heads * (sh.d_qk + sh.d_v) * ACT_BYTES
        inter = t * p.cp > gpn
        bw = nic_bw if inter else c.nvlink_bw
        step = kv_bytes / bw + c.coll_lat
        steps = p.cp - 1
        comm_f += steps * max(step - core_f / p.cp, 0.0) + c.coll_lat
        comm_b += steps * max(2 * step - core_b / p.cp, 0.0) + c.coll_lat

    # expert parallelism: dispatch + combine all-to-all, forward and backward
    if sh.moe and p.ep > 1:
        a2a_bytes = tokens * sh.top_k * h * ACT_BYTES
        a2a = collective_seconds(c, "all_to_all", a2a_bytes, p.ep, gpn, nic_bw, strides(p)["ep"])
        comm_f += 2 * a2a
        comm_b += 2 * a2a

    flops_fwd = tokens * (sh.matmul_flops_per_token
                          + attention_flops_per_token(p.model, p.seq_len, sh.d_qk, sh.d_v)) / t
    core_flops = tokens * attention_flops_per_token(p.model, p.seq_len, sh.d_qk, sh.d_v) / t
    return LayerTime(fwd, bwd, core_f, comm_f, comm_b, tp_bytes, flops_fwd, core_flops)


class StageExtras(NamedTuple):
    """Embedding (first stage) and output head + loss (last stage), per micro-batch."""

    first: float
    last: float
    last_flops_fwd: float


def stage_extras(c: GpuConsts, p: Plan, nic_bw: float) -> StageExtras:
    m = p.model
    tokens = p.micro_batch * p.seq_len / p.cp
    h, v, t, gpn = m.hidden_size, m.vocab_size, p.tp, p.gpus_per_node
    in_bytes = 1.0 if p.dtype == "fp8" else 2.0
    act = tokens * h * ACT_BYTES
    # embedding: gather rows forward, scatter-add fp32 gradients backward (memory bound)
    first = (2 * act + tokens * h * GRAD_BYTES * 2) / c.hbm_bw + 3 * c.launch
    if t > 1:  # vocab-parallel embedding: all-reduce (or reduce-scatter with SP) forward
        kind = "reduce_scatter" if p.sequence_parallel else "all_reduce"
        first += collective_seconds(c, kind, act, t, gpn, nic_bw, 1)
    # output head: logits GEMM fwd + dgrad + wgrad (kept in 16 bits, as Megatron-LM does)
    vt = v / t
    dt = "bf16" if p.dtype == "fp8" else p.dtype
    ib = 2.0 if p.dtype == "fp8" else in_bytes
    last = (gemm_seconds(c, tokens, vt, h, dt, 1, ib) + gemm_seconds(c, tokens, h, vt, dt, 1, ib)
            + gemm_seconds(c, h, vt, tokens, dt, 1, ib))
    # vocab-parallel cross entropy in fp32: ~14 bytes per logit forward, 6 backward
    last += 20.0 * tokens * vt / c.hbm_bw + 6 * c.launch
    if t > 1:
        if p.sequence_parallel:
            last += collective_seconds(c, "all_gather", act, t, gpn, nic_bw, 1)
        last += 3 * collective_seconds(c, "all_reduce", tokens * 4.0, t, gpn, nic_bw, 1)
    return StageExtras(first, last, 2.0 * tokens * h * v / t)


def p2p_seconds(c: GpuConsts, p: Plan, nic_bw: float) -> float:
    """One pipeline send of a micro-batch's activations (scatter/gather split across TP)."""
    tokens = p.micro_batch * p.seq_len / p.cp
    nbytes = tokens * p.model.hidden_size * ACT_BYTES / p.tp
    inter = strides(p)["pp"] >= p.gpus_per_node
    bw = nic_bw if inter else c.nvlink_bw
    return nbytes / bw + c.coll_lat


def dp_seconds(c: GpuConsts, p: Plan, nbytes_params: float, group: int, stride: int,
               nic_bw: float) -> dict[str, float]:
    """Data-parallel collectives for ``nbytes_params`` parameters (count, not bytes) per GPU.

    Returns per-step seconds of: ``grad`` (gradient reduction), ``param`` (ZeRO parameter
    all-gather after the step), ``per_micro`` (ZeRO-2/3 collectives repeated every
    micro-batch: gradient reduce-scatter, and for ZeRO-3 the forward and backward gathers).
    """
    n, gpn = nbytes_params, p.gpus_per_node
    out = {"grad": 0.0, "param": 0.0, "per_micro_fwd": 0.0, "per_micro_bwd": 0.0}
    if group <= 1 or n <= 0:
        return out
    z = p.zero_stage
    if z == 0:
        out["grad"] = collective_seconds(c, "all_reduce", n * GRAD_BYTES, group, gpn, nic_bw,
                                         stride)
    elif z == 1:
        out["grad"] = collective_seconds(c, "reduce_scatter", n * GRAD_BYTES, group, gpn, nic_bw,
                                         stride)
        out["param"] = collective_seconds(c, "all_gather", n * PARAM_BYTES, group, gpn, nic_bw,
                                          stride)
    elif z == 2:
        out["per_micro_bwd"] = collective_seconds(c, "reduce_scatter", n * GRAD_BYTES, group, gpn,
                                                  nic_bw, stride)
        out["param"] = collective_seconds(c, "all_gather", n * PARAM_BYTES, group, gpn, nic_bw,
                                          stride)
    else:
        ag = collective_seconds(c, "all_gather", n * PARAM_BYTES, group, gpn, nic_bw, stride)
        out["per_micro_fwd"] = ag
        out["per_micro_bwd"] = ag + collective_seconds(c, "reduce_scatter", n * GRAD_BYTES,
                                                       group, gpn, nic_bw, stride)
    return out


__all__ = ["ACT_BYTES", "ADAM_BYTES_PER_PARAM", "CPU_ADAM_BYTES_PER_PARAM", "GRAD_BYTES",
           "LayerTime", "PARAM_BYTES", "StageExtras", "dp_seconds", "layer_time",
           "p2p_seconds", "stage_extras"]
