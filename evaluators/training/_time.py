"""Time of one transformer layer and micro-batch on one GPU: compute and TP/CP communication.

Per layer and micro-batch on one GPU (``T = micro_batch * seq_len / cp`` tokens):

* GEMMs of every linear layer, forward (M=T) and backward (input gradient and weight
  gradient), on the shared GEMM curve of ``evaluators/_perf.py`` scaled by the stack's
  ``gemm_efficiency``; in fp8 the linear layers run fp8 GEMMs (the router and the output
  head stay in 16 bits) and pay for the casts: ``fp8_cast_bytes`` of HBM traffic per operand
  element (read bf16, write fp8 and its transpose), plus an amax pass for dynamic tensorwise
  scaling, which also recasts the weights every micro-batch.
* Attention core: a fused kernel at the efficiency of the stack's kernel generation on this
  GPU (``_profile.attention_efficiency``; backward = 2.5x the forward FLOPs, as
  FlashAttention-2 counts it), or Megatron's unfused path (batched score/value GEMMs plus
  softmax and dropout streaming the ``s x s`` scores through HBM).
* Memory-bound element-wise kernels (norms, residual adds, dropout, MLP activation),
  forward bytes from the tensors they read and write times the stack's
  ``elementwise_traffic`` (1 = fused kernels; eager PyTorch moves more); backward twice that.
* Tensor-parallel collectives (Shoeybi et al. 2019: an all-reduce per block forward and
  backward; with sequence parallelism, Korthikanti et al. 2023, all-gather + reduce-scatter).
  Without overlap the forward ones are exposed and the backward ones hide behind the GEMM
  Megatron-LM runs beside them. With TP communication overlap (Transformer Engine
  userbuffers, PyTorch async TP) each collective is split into ``tp`` chunks pipelined with
  the GEMM's chunks: exposed = ``max(c - g, 0) + min(c, g) / tp`` (fill and drain) + the
  GEMM time the overlapped copies take (``tp_overlap_sm_cost * min(c, g)``) + the extra
  launches of the chunked GEMM. So the hidden share grows with the GEMM's size and with the
  link's bandwidth, and is never all or nothing.
* Context parallelism: ring exchange of K/V chunks (cp-1 steps) overlapped with the attention
  of the previous chunk. MoE blocks: ``_moe.py``.
"""

from __future__ import annotations

from typing import NamedTuple

from tuner.evaluators._perf import GpuConsts, causal_pairs, collective_seconds, gemm_seconds
from tuner.evaluators.training import _moe
from tuner.evaluators.training._plan import Plan
from tuner.evaluators.training._profile import Stack
from tuner.evaluators.training._shapes import LayerShapes, attention_flops_per_token

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
    # forward seconds of the parts selective recomputation can repeat (``recompute_modules``)
    moe_fwd: float = 0.0  # the MoE block, router to combine, with its all-to-all
    norm_fwd: float = 0.0  # the two norms
    act_fwd: float = 0.0  # the dense MLP activation
    moe_act_fwd: float = 0.0  # the experts' activation
    mlp_fwd: float = 0.0  # the dense (or shared-expert) MLP: GEMMs and activation
    up_fwd: float = 0.0  # the attention's column-parallel projections (MLA up-projections)


def gemm3(c: GpuConsts, st: Stack, m: float, n: int, k: int, dtype: str, groups: int,
          in_bytes: float) -> tuple[float, float, float]:
    """Forward (m,n,k), input-gradient (m,k,n) and weight-gradient (k,n,m) GEMM seconds.

    The model of ``_perf.gemm_seconds`` evaluated three times with shared lookups, at the
    stack's share of the GPU's GEMM curve.
    """
    peak = (c.peak.get(dtype) or c.peak["bf16"]) * st.gemm
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


class Block(NamedTuple):
    """GEMM seconds of a block by TP kind, and its fp8 cast traffic."""

    fwd_col: float
    fwd_row: float
    fwd_rep: float
    dgrad_col: float
    dgrad_row: float
    dgrad_rep: float
    wgrad_col: float
    wgrad_other: float
    cast_fwd: float  # fp8 cast traffic of the forward (inputs; tensorwise: + weights)
    cast_bwd: float  # fp8 cast traffic of the backward (output gradients; + weight transposes)
    casts: int  # fp8 cast kernels per pass

    @property
    def fwd(self) -> float:
        return self.fwd_col + self.fwd_row + self.fwd_rep

    @property
    def bwd(self) -> float:
        return (self.dgrad_col + self.dgrad_row + self.dgrad_rep + self.wgrad_col
                + self.wgrad_other)


def block(c: GpuConsts, st: Stack, tokens: float, dtype: str, gemms: tuple) -> Block:
    fp8 = dtype == "fp8"
    in_bytes = 1.0 if fp8 else 2.0
    f_col = f_row = f_rep = d_col = d_row = d_rep = w_col = w_oth = cast_f = cast_b = 0.0
    casts = 0
    per_elem = st.fp8_elem
    for g in gemms:
        f, d, wg = gemm3(c, st, tokens, g.n, g.k, dtype, 1, in_bytes)
        if fp8:
            # quantise the input (forward) and the output gradient (backward)
            cast_f += per_elem * tokens * g.k
            cast_b += per_elem * tokens * g.n
            casts += 1
            if st.fp8_recipe == "tensorwise":  # weights recast every micro-batch
                cast_f += per_elem * g.k * g.n
                cast_b += per_elem * g.k * g.n
                casts += 1
        if g.kind == "col":
            f_col += f
            d_col += d
            w_col += wg
        elif g.kind == "row":
            f_row += f
            d_row += d
            w_oth += wg
        else:
            f_rep += f
            d_rep += d
            w_oth += wg
    return Block(f_col, f_row, f_rep, d_col, d_row, d_rep, w_col, w_oth, cast_f, cast_b, casts)


def _attention_core(c: GpuConsts, st: Stack, p: Plan, sh: LayerShapes
                    ) -> tuple[float, float, float]:
    """Forward time, backward time and hardware FLOPs (forward) of the attention core."""
    b, s, cp = p.micro_batch, p.seq_len, p.cp
    heads = sh.heads
    peak = c.peak.get("bf16") or c.peak.get("fp16")
    if p.attention_impl == "flash":
        pairs = causal_pairs(s, s, True) / cp  # load-balanced causal split across CP ranks
        flops = 2.0 * b * heads * pairs * (sh.d_qk + sh.d_v)
        fwd = flops / (peak * st.attn_fwd) + c.launch * cp
        bwd = 2.5 * flops / (peak * st.attn_bwd) + 2 * c.launch * cp
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


def _elementwise_bytes(p: Plan, sh: LayerShapes, tokens: float) -> tuple[float, float, float]:
    """Forward HBM bytes of the memory-bound ops outside the attention core and the MoE
    block, as fused kernels move them: (norms, residual adds, dense MLP activation)."""
    h = p.model.hidden_size
    rep = tokens / p.tp if p.sequence_parallel and p.tp > 1 else tokens
    norms = 8.0 * h * rep  # two norms: read + write
    residual = (14.0 if p.dropout else 12.0) * h * rep  # two residual adds (+ dropout masks)
    act = 0.0
    if not sh.moe:
        act_in = 6.0 if sh.gated else 4.0  # SwiGLU reads gate and up, writes one; GELU 1 + 1
        act = act_in * sh.mlp_act_width * tokens
    return norms, residual, act


def _pipelined(comm: float, gemm: float, chunks: int, sm_cost: float, t0: float) -> float:
    """Exposed seconds of a collective split in ``chunks`` and pipelined with a GEMM."""
    if comm <= 0.0:
        return 0.0
    small = comm if comm < gemm else gemm
    big_gap = comm - gemm if comm > gemm else 0.0
    return big_gap + small / chunks + sm_cost * small + (chunks - 1) * t0


def _bulk(comm: float, gemm: float, sm_cost: float) -> float:
    """Exposed seconds of a collective run beside an independent GEMM."""
    if comm <= gemm:
        return sm_cost * comm
    return comm - gemm + sm_cost * gemm


def _tp_comm(c: GpuConsts, st: Stack, p: Plan, act: float, nic_bw: float, blocks: tuple
             ) -> tuple[float, float]:
    """Exposed TP communication (forward, backward) of the layer's blocks."""
    t, gpn = p.tp, p.gpus_per_node
    comm_f = comm_b = 0.0
    if p.sequence_parallel:
        overlap = p.tp_comm_overlap and st.tp_overlap
        # overlapped fp8 GEMMs gather their already-quantised fp8 input (TE userbuffers)
        ag_bytes = act / 2 if overlap and p.dtype == "fp8" else act
        ag = collective_seconds(c, "all_gather", ag_bytes, t, gpn, nic_bw, 1)
        rs = collective_seconds(c, "reduce_scatter", act, t, gpn, nic_bw, 1)
        sm = st.tp_sm_cost
        for b in blocks:
            if overlap:
                comm_f += (_pipelined(ag, b.fwd_col, t, sm, c.gemm_t0)
                           + _pipelined(rs, b.fwd_row, t, sm, c.gemm_t0))
                comm_b += (_pipelined(ag, b.dgrad_row, t, sm, c.gemm_t0)
                           + _bulk(ag, b.dgrad_col, sm) + _bulk(rs, b.wgrad_col, sm))
            elif st.tp_bwd_overlap:
                # row-parallel input-gradient all-gather is exposed; the column-parallel
                # input re-gather overlaps dgrad, its gradient reduce-scatter overlaps wgrad
                comm_f += ag + rs
                comm_b += ag + max(ag - b.dgrad_col, 0.0) + max(rs - b.wgrad_col, 0.0)
            else:  # collectives on the compute stream (eager DTensor): all exposed
                comm_f += ag + rs
                comm_b += 2.0 * ag + rs
        return comm_f, comm_b
    ar = collective_seconds(c, "all_reduce", act, t, gpn, nic_bw, 1)
    for b in blocks:
        comm_f += ar
        # input-gradient all-reduce beside the weight-gradient GEMM (Megatron's async one)
        comm_b += max(ar - b.wgrad_col, 0.0) if st.tp_bwd_overlap else ar
    return comm_f, comm_b


def layer_time(c: GpuConsts, p: Plan, sh: LayerShapes, nic_bw: float) -> LayerTime:
    """One layer (dense or MoE, as ``sh`` says), one micro-batch, on one GPU."""
    st: Stack = p.stack
    tokens = p.micro_batch * p.seq_len / p.cp
    h, t = p.model.hidden_size, p.tp
    attn = block(c, st, tokens, p.dtype, sh.attn_gemms)
    mlp = block(c, st, tokens, p.dtype, sh.mlp_gemms)
    core_f, core_b, _ = _attention_core(c, st, p, sh)
    norms, residual, act = _elementwise_bytes(p, sh, tokens)
    norm_f = st.ew * norms / c.hbm_bw + 2 * c.launch
    act_f = (st.ew * act / c.hbm_bw + c.launch) if act else 0.0
    ew = (norms + residual + act) * st.ew
    kernels = 4 + (1 if act else 0)
    casts = attn.casts + mlp.casts
    ew_f = (ew + attn.cast_fwd + mlp.cast_fwd) / c.hbm_bw + (kernels + casts) * c.launch
    ew_b = (2.0 * ew + attn.cast_bwd + mlp.cast_bwd) / c.hbm_bw + (2 * kernels + casts) * c.launch
    fwd = attn.fwd + mlp.fwd + core_f + ew_f
    bwd = attn.bwd + mlp.bwd + core_b + ew_b

    comm_f = comm_b = tp_bytes = 0.0
    if t > 1:
        act = tokens * h * ACT_BYTES
        tp_bytes = 2 * act
        # a MoE block's TP collectives are those of its shared experts (if any); the routed
        # experts' own ones are in _moe
        blocks = (attn, mlp) if not sh.moe or p.model.num_shared_experts else (attn,)
        comm_f, comm_b = _tp_comm(c, st, p, act, nic_bw, blocks)

    # context parallelism: ring exchange of K/V chunks overlapped with chunk attention
    if p.cp > 1:
        kv_bytes = tokens * sh.kv_heads * (sh.d_qk + sh.d_v) * ACT_BYTES
        inter = t * p.cp > p.gpus_per_node
        bw = nic_bw if inter else c.nvlink_bw
        step = kv_bytes / bw + c.coll_lat
        steps = p.cp - 1
        comm_f += steps * max(step - core_f / p.cp, 0.0) + c.coll_lat
        comm_b += steps * max(2 * step - core_b / p.cp, 0.0) + c.coll_lat

    moe_f = moe_act_f = 0.0
    if sh.moe:
        mt = _moe.moe_time(c, p, sh, tokens, nic_bw, fwd + comm_f, bwd + comm_b)
        fwd += mt.fwd
        bwd += mt.bwd
        comm_f += mt.comm_fwd
        comm_b += mt.comm_bwd
        # a dropless dispatcher waits on the host for the routed-token counts: the GPU queue
        # drains, and the layer's forward takes at least the host's time to issue it
        fwd += _moe.host_floor(p, st, fwd + comm_f)
        moe_f = mt.fwd + mt.comm_fwd
        moe_act_f = mt.act_fwd

    attn_flops = attention_flops_per_token(p.model, p.seq_len, sh.d_qk, sh.d_v)
    flops_fwd = tokens * (sh.matmul_flops_per_token + attn_flops) / t
    core_flops = tokens * attn_flops / t
    mlp_f = mlp.fwd + act_f
    return LayerTime(fwd, bwd, core_f, comm_f, comm_b, tp_bytes, flops_fwd, core_flops, moe_f,
                     norm_f, act_f, moe_act_f, mlp_f, attn.fwd_col)


class StageExtras(NamedTuple):
    """Embedding (first stage) and output head + loss (last stage), per micro-batch."""

    first: float
    last: float
    last_flops_fwd: float


def stage_extras(c: GpuConsts, p: Plan, nic_bw: float) -> StageExtras:
    m = p.model
    st: Stack = p.stack
    tokens = p.micro_batch * p.seq_len / p.cp
    h, v, t, gpn = m.hidden_size, m.vocab_size, p.tp, p.gpus_per_node
    act = tokens * h * ACT_BYTES
    # embedding: gather rows forward, scatter-add fp32 gradients backward (memory bound)
    first = (2 * act + tokens * h * GRAD_BYTES * 2) / c.hbm_bw + 3 * c.launch
    if t > 1:  # vocab-parallel embedding: all-reduce (or reduce-scatter with SP) forward
        kind = "reduce_scatter" if p.sequence_parallel else "all_reduce"
        first += collective_seconds(c, kind, act, t, gpn, nic_bw, 1)
    # output head: logits GEMM fwd + dgrad + wgrad (kept in 16 bits, as Megatron-LM does)
    vt = v / t
    dt = "bf16" if p.dtype == "fp8" else p.dtype
    f, d, w = gemm3(c, st, tokens, int(vt), h, dt, 1, 2.0)
    last = f + d + w
    # cross entropy in fp32: ~14 bytes per logit forward, 6 backward; vocab-parallel (three
    # small all-reduces of per-token max / sum / target logit) or on all-gathered logits
    parallel = p.loss_parallel or t == 1
    last += st.ew * 20.0 * tokens * (vt if parallel else v) / c.hbm_bw + 6 * c.launch
    if t > 1:
        if p.sequence_parallel:
            last += collective_seconds(c, "all_gather", act, t, gpn, nic_bw, 1)
        if parallel:
            last += 3 * collective_seconds(c, "all_reduce", tokens * 4.0, t, gpn, nic_bw, 1)
        else:  # 16-bit logits gathered forward; their gradient is sliced locally backward
            last += collective_seconds(c, "all_gather", tokens * v * 2.0, t, gpn, nic_bw, 1)
    return StageExtras(first, last, 2.0 * tokens * h * v / t)


def p2p_seconds(c: GpuConsts, p: Plan, nic_bw: float) -> float:
    """One pipeline send of a micro-batch's activations (scatter/gather split across TP)."""
    tokens = p.micro_batch * p.seq_len / p.cp
    nbytes = tokens * p.model.hidden_size * ACT_BYTES / p.tp
    inter = p.tp * p.cp * max(p.dp, 1) >= p.gpus_per_node
    bw = nic_bw if inter else c.nvlink_bw
    return nbytes / bw + c.coll_lat


__all__ = ["ACT_BYTES", "ADAM_BYTES_PER_PARAM", "CPU_ADAM_BYTES_PER_PARAM", "GRAD_BYTES",
           "Block", "LayerTime", "PARAM_BYTES", "StageExtras", "block", "gemm3", "layer_time",
           "p2p_seconds", "stage_extras"]
