"""A routed MoE block on one GPU, one micro-batch: router, dispatch, experts, combine.

Tokens (Megatron-Core's alltoall dispatcher and parallel folding, Liu et al. 2025,
arXiv 2504.14960): after the attention block a GPU holds ``T / tp`` of the micro-batch's
``T`` tokens (sequence parallelism) and routes them itself; the expert-tensor group gathers
``etp`` such shares, so ``T_in = T * etp / tp`` tokens enter each rank's dispatch
(``T`` without sequence parallelism).

* Router: a ``T_r x h x E`` GEMM in 16 bits and a softmax/top-k over ``E`` fp32 logits per
  token (``T_r`` = the rank's own tokens).
* Load: every rank receives ``T_in * top_k`` routed tokens on average; the slowest rank,
  which every all-to-all waits for, receives ``imbalance`` times that: 1 with forced
  balancing (benchmark mode), the stack's ``moe_imbalance`` for a learned dropless router,
  at most the capacity factor when tokens beyond it are dropped.
* Experts: the ``E / ep`` local experts each see ``M_e = T_in * top_k * ep / E`` tokens (times
  the imbalance): a grouped GEMM (one kernel, Megatron ``--moe-grouped-gemm``) or a loop of
  per-expert GEMMs (each with its own launch and tail). Each expert's rows are padded to the
  128-row tile and the tiles fill whole waves of the GPU's SMs, so small per-expert batches
  (fine-grained experts, many experts per GPU) lose efficiency; the weight-gradient GEMM's
  inner dimension is ``M_e`` itself, which the K-dependent curve of ``_perf`` penalises.
* Permute/unpermute (gather of each token's ``top_k`` copies and the weighted sum back) and
  the expert activation: memory-bound, scaled by the stack's ``elementwise_traffic``.
* Dispatch and combine all-to-all over the EP group (NVLink inside a node, the network
  across), forward and again in backward, at the achieved share of the links' bandwidth of
  the dispatcher (the stack's ``a2a_efficiency`` for NCCL's all-to-all, ``deepep_efficiency``
  for DeepEP). With ``etp > 1`` the dispatched tokens are all-gathered and reduce-scattered
  over the expert-tensor group.
  ``moe_dispatcher``: ``alltoall`` sends every routed copy to its expert's GPU (NCCL
  all-to-all); ``deepep`` (DeepEP, DeepSeek 2025) sends a token once to each remote node
  holding one of its experts (RDMA) and forwards it inside the node over NVLink once to each
  GPU holding one of its experts: a token reaches ``(N - 1) * (1 - C(E - E/N, k) / C(E, k))``
  remote nodes of ``N`` on average instead of sending ``k * (N - 1) / N`` copies across, and
  fewer GPUs than copies when a GPU holds several of its experts; group-limited routing
  (DeepSeek-V3: 4 of 8 expert groups per token) narrows that further (:func:`reach_share`).
  The transfer alone (:func:`transfer_seconds`) is what the Megatron-Core MoE report's
  dispatcher benchmark times (``tuner validate training`` compares them).
* Host wait: a dropless dispatcher copies the routed-token counts to the host and waits for
  them (buffer sizes, grouped GEMM rows); the GPU queue drains there, so the layer's forward
  takes at least the stack's ``moe_sync_host_us`` (:func:`host_floor`).
* ``moe_a2a_overlap`` (Megatron-Core ``--overlap-moe-expert-parallel-comm
  --delay-wgrad-compute``, ``combined_1f1b``): the forward of one micro-batch and the
  backward of another run layer by layer side by side, the all-to-alls on a communication
  stream beside the other micro-batch's compute, in three phases per layer
  (``model_chunk_schedule_plan.py``)::

      comm:    combine_bwd      | dispatch_fwd -> dispatch_bwd          | combine_fwd
      compute: attention_fwd    | experts_dgrad -> experts_wgrad -> experts_fwd | attention_bwd

  Each pair costs ``max(comm, compute) + ep_overlap_sm_cost * min(comm, compute)``: the
  communication kernels take SMs from the compute beside them (DeepEP 24 of 132 on H100).
  Only the steady 1F1B phase pairs micro-batches: the pipeline's warm-up forwards and
  cool-down backwards (``(v - 1) * pp + pp - 1`` of ``m * v`` chunk passes on the average
  rank; one of ``m`` without pipelining) keep their all-to-alls exposed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from tuner.evaluators._perf import GpuConsts, collective_seconds
from tuner.evaluators.training._profile import Stack
from tuner.evaluators.training._shapes import LayerShapes

TILE = 128  # rows of one GEMM tile (grouped GEMMs pad every expert's rows to it)
ACT_BYTES = 2.0


class MoeTime(NamedTuple):
    fwd: float
    bwd: float
    comm_fwd: float
    comm_bwd: float
    load: float  # routed tokens on the slowest rank / mean
    act_fwd: float  # of fwd: the experts' activation function


def load_factor(p: object, st: Stack) -> float:
    """Routed tokens on the slowest EP rank over the mean."""
    if p.moe_force_balance:  # type: ignore[attr-defined]
        return 1.0
    imb = st.imbalance
    cf = p.moe_capacity_factor  # type: ignore[attr-defined]
    if cf and cf < imb:
        return max(cf, 1.0) if cf >= 1.0 else cf
    return imb


def host_floor(p: object, st: Stack, gpu_fwd: float) -> float:
    """Host seconds a MoE layer's forward adds beyond its GPU time ``gpu_fwd``.

    A dropless dispatcher sizes its receive buffers and the grouped GEMM's per-expert rows
    from the routed-token counts, which it copies to the host and waits for (Megatron-Core's
    alltoall dispatcher ``cuda_sync_point``; DeepEP's normal-mode dispatch polls the counts
    in pinned host memory). The GPU's queue drains at that wait, so from there the layer
    runs no faster than the host issues its kernels: ``max(host, GPU)``. Capacity-factor
    runs (``moe_capacity_factor`` > 0, padded to capacity) have static shapes and no wait.
    """
    host = st.moe_sync_host
    if host <= 0.0 or p.moe_capacity_factor:  # type: ignore[attr-defined]
        return 0.0
    return host - gpu_fwd if host > gpu_fwd else 0.0


def tokens_in(p: object, tokens: float) -> float:
    """Tokens entering one rank's dispatch (its own share, gathered over the ETP group)."""
    if p.sequence_parallel and p.tp > 1:  # type: ignore[attr-defined]
        return tokens * p.etp / p.tp  # type: ignore[attr-defined]
    return tokens


def _grouped(c: GpuConsts, st: Stack, m_e: float, n: int, k: int, groups: int, dtype: str,
             grouped: bool) -> tuple[float, float, float]:
    """(forward, dgrad, wgrad) seconds of ``groups`` expert GEMMs of ``m_e`` rows each."""
    if m_e <= 0 or groups <= 0:
        return 0.0, 0.0, 0.0
    peak = (c.peak.get(dtype) or c.peak["bf16"]) * st.gemm
    cap = c.gemm_max.get(dtype, 0.8)
    in_bytes = 1.0 if dtype == "fp8" else 2.0
    rows = math.ceil(m_e / TILE) * TILE
    sms = c.sm_count or 132
    launches = 1 if grouped else groups
    out = []
    # forward (rows, n, k), input gradient (rows, k, n), weight gradient (k, n, inner m_e)
    for mm, nn, kk in ((rows, n, k), (rows, k, n), (k, n, m_e)):
        e = c.k_peak * kk / (kk + c.k_half)
        if e > cap:
            e = cap
        tiles = groups * math.ceil(mm / TILE) * math.ceil(nn / TILE)
        waves = math.ceil(tiles / sms)
        e *= tiles / (waves * sms)
        compute = 2.0 * mm * nn * kk * groups / (peak * e)
        memory = ((mm * kk + kk * nn) * in_bytes + mm * nn * 2.0) * groups / c.hbm_bw
        out.append((compute if compute > memory else memory) + launches * c.gemm_t0)
    return out[0], out[1], out[2]


def _miss(pool: float, held: float, k: int) -> float:
    """Chance that ``k`` distinct experts drawn evenly from ``pool`` miss ``held`` of them."""
    miss = 1.0
    for i in range(k):
        miss *= max(pool - held - i, 0.0) / (pool - i)
    return miss


def reach_share(experts: int, k: int, parts: int, groups: int = 0, group_topk: int = 0
                ) -> float:
    """Chance that a token's ``k`` distinct experts include one of a given part's, the experts
    laid out in order over ``parts`` equal parts (EP ranks, or nodes): ``1 - C(E - E/parts,
    k) / C(E, k)``. Group-limited routing (DeepSeek-V3's node-limited routing, Megatron
    ``--moe-router-num-groups`` / ``--moe-router-group-topk``) picks ``group_topk`` of
    ``groups`` equal expert groups first and the ``k`` experts among theirs, so a part is
    reached only through its picked groups: with whole groups per part, ``j`` of its
    ``G/parts`` groups are picked (hypergeometric) and the experts miss their ``j * E/G``;
    with a group spanning several parts, the part's share of it is in the pool with chance
    ``group_topk / G``."""
    if parts <= 1:
        return 1.0
    if 1 < groups and 0 < group_topk < groups and (groups % parts == 0
                                                   or parts % groups == 0):
        size = experts / groups
        pool = group_topk * size
        if groups % parts == 0:
            per = groups // parts
            total = math.comb(groups, group_topk)
            miss = sum(math.comb(per, j) * math.comb(groups - per, group_topk - j) / total
                       * _miss(pool, j * size, k)
                       for j in range(0, min(per, group_topk) + 1))
            return 1.0 - miss
        return group_topk / groups * (1.0 - _miss(pool, experts / parts, k))
    return 1.0 - _miss(experts, experts / parts, k)


def remote_nodes(experts: int, k: int, nodes: int, groups: int = 0, group_topk: int = 0
                 ) -> float:
    """Remote nodes a token's ``k`` experts reach on average (:func:`reach_share` per node)."""
    if nodes <= 1:
        return 0.0
    return (nodes - 1) * reach_share(experts, k, nodes, groups, group_topk)


def _deepep_seconds(c: GpuConsts, token_bytes: float, k: int, ep: int, stride: int,
                    gpus_per_node: int, nic_bw: float, experts: int, groups: int = 0,
                    group_topk: int = 0) -> float:
    """One DeepEP dispatch (or combine): node-deduplicated RDMA + NVLink forwarding. A token
    goes once to each rank holding any of its experts (DeepEP's ``is_token_in_rank``), not once
    per expert."""
    per_node = gpus_per_node // stride if stride < gpus_per_node else 1
    per_node = max(1, min(per_node, ep))
    nodes = ep // per_node
    latency = c.coll_lat
    hit = reach_share(experts, k, ep, groups, group_topk)
    if nodes <= 1:  # NVLink only: once to each peer GPU holding one of its experts
        return token_bytes * (ep - 1) * hit / c.nvlink_bw + latency
    inter = token_bytes * remote_nodes(experts, k, nodes, groups, group_topk) / nic_bw
    # copies for the own node's GPUs, and the received tokens forwarded to their GPUs
    intra = token_bytes * (per_node - 1) * hit * 2.0 / c.nvlink_bw
    return (inter if inter > intra else intra) + latency + c.hop_lat


def transfer_seconds(c: GpuConsts, dispatcher: str, tokens: float, k: int, h: int, ep: int,
                     stride: int, gpus_per_node: int, nic_bw: float, experts: int,
                     groups: int = 0, group_topk: int = 0) -> float:
    """One dispatch (or combine) of ``tokens`` tokens' ``k`` routed copies at the links'
    achieved bandwidths: the transfer alone, as a communication benchmark times it (a stack's
    dispatcher efficiency adds what its training step spends around it). Group-limited
    routing (``groups``, ``group_topk``) shrinks only DeepEP's node-deduplicated traffic: an
    all-to-all still sends every copy."""
    if dispatcher == "deepep":
        return _deepep_seconds(c, tokens * h * ACT_BYTES, k, ep, stride, gpus_per_node, nic_bw,
                               experts, groups, group_topk)
    return collective_seconds(c, "all_to_all", tokens * k * h * ACT_BYTES, ep, gpus_per_node,
                              nic_bw, stride)


def _paired(comm: float, compute: float, sm_cost: float) -> float:
    """Seconds of a communication and a compute piece run side by side on two streams."""
    if comm > compute:
        return comm + sm_cost * compute
    return compute + sm_cost * comm


def unpaired_share(p: object) -> float:
    """Share of a rank's layer passes outside the steady 1F1B phase (warm-up forwards and
    cool-down backwards: no other micro-batch to overlap their all-to-alls with)."""
    pp, v, mb = p.pp, p.pp_interleave, max(p.num_micro, 1)  # type: ignore[attr-defined]
    if pp == 1:
        warm = 1.0
    elif v == 1:
        warm = (pp - 1) / 2.0
    else:
        warm = (v - 1) * pp + pp - 1.0
    share = warm / (mb * v)
    return share if share < 1.0 else 1.0


def moe_time(c: GpuConsts, p: object, sh: LayerShapes, tokens: float, nic_bw: float,
             layer_fwd: float = 0.0, layer_bwd: float = 0.0) -> MoeTime:
    """The routed part of one MoE layer (shared experts are ordinary TP GEMMs); ``layer_fwd``
    / ``layer_bwd``: the rest of the layer (attention, its TP communication, shared experts),
    what an overlapped all-to-all runs beside."""
    st: Stack = p.stack  # type: ignore[attr-defined]
    m = p.model  # type: ignore[attr-defined]
    h, e_all, k = m.hidden_size, m.num_experts, sh.top_k
    ep, etp = p.ep, p.etp  # type: ignore[attr-defined]
    t_in = tokens_in(p, tokens)
    own = t_in / etp  # tokens this rank routes itself
    load = load_factor(p, st)
    routed = t_in * k * load  # token copies on the slowest rank
    m_e = routed * ep / e_all  # per local expert
    dtype = p.dtype  # type: ignore[attr-defined]

    # router: logits GEMM (16 bits) + fp32 softmax / top-k
    peak16 = c.peak.get("bf16") or c.peak["fp16"]
    r_flops = 2.0 * own * e_all * h
    router = r_flops / (peak16 * st.gemm * c.gemm_max.get("bf16", 0.8)) + c.gemm_t0
    router_ew = 12.0 * own * e_all  # logits written, softmax read/write (fp32)

    gg = p.grouped_gemm  # type: ignore[attr-defined]
    f1, d1, w1 = _grouped(c, st, m_e, sh.expert_n1, h, sh.local_experts, dtype, gg)
    f2, d2, w2 = _grouped(c, st, m_e, h, sh.expert_f, sh.local_experts, dtype, gg)

    # memory-bound: permute + unpermute of the token copies, the expert activation, casts
    act_in = 6.0 if sh.gated else 4.0
    nbytes = st.ew * (2.0 * (2.0 + 2.0 * k * load) * h * t_in + act_in * routed * sh.expert_f
                      + router_ew)
    kernels = 7
    cast_f = cast_b = 0.0
    if dtype == "fp8":  # expert inputs forward, expert output gradients backward
        cast_f = st.fp8_elem * routed * (h + sh.expert_f)
        cast_b = st.fp8_elem * routed * (sh.expert_n1 + h)
    act_fwd = st.ew * act_in * routed * sh.expert_f / c.hbm_bw + c.launch
    fp8_k = 2 * (dtype == "fp8")
    mlp_f = f1 + f2 + (nbytes + cast_f) / c.hbm_bw + (kernels + fp8_k) * c.launch
    dgrad = d1 + d2 + (2.0 * nbytes + cast_b) / c.hbm_bw + (2 * kernels + fp8_k) * c.launch
    wgrad = w1 + w2
    fwd = router + mlp_f
    bwd = 2.0 * router + dgrad + wgrad

    comm_f = comm_b = 0.0
    if ep > 1:
        dispatcher = p.moe_dispatcher  # type: ignore[attr-defined]
        a2a = transfer_seconds(c, dispatcher, own * load, k, h, ep, etp, p.gpus_per_node,  # type: ignore[attr-defined]
                               nic_bw, e_all, m.router_groups, m.router_group_topk)
        a2a /= st.deepep_eff if dispatcher == "deepep" else st.a2a_eff
        exposed = 4.0 * a2a  # dispatch + combine, forward and backward
        if p.moe_a2a_overlap:  # type: ignore[attr-defined]
            a_f, a_b = layer_fwd + router, layer_bwd + 2.0 * router
            pair = (_paired(a2a, a_f, st.ep_sm_cost) + _paired(a2a, dgrad, st.ep_sm_cost)
                    + _paired(a2a, wgrad, st.ep_sm_cost) + mlp_f
                    + _paired(a2a, a_b, st.ep_sm_cost))
            hidden_pair = pair - (a_f + a_b + mlp_f + dgrad + wgrad)
            u = unpaired_share(p)
            exposed = u * exposed + (1.0 - u) * hidden_pair
        comm_f += 0.5 * exposed
        comm_b += 0.5 * exposed
    if etp > 1:
        gathered = routed * h * ACT_BYTES
        ag = collective_seconds(c, "all_gather", gathered, etp, p.gpus_per_node, nic_bw, 1)  # type: ignore[attr-defined]
        rs = collective_seconds(c, "reduce_scatter", gathered, etp, p.gpus_per_node, nic_bw, 1)  # type: ignore[attr-defined]
        comm_f += ag + rs
        comm_b += ag + rs
    return MoeTime(fwd, bwd, comm_f, comm_b, load, act_fwd)


__all__ = ["MoeTime", "host_floor", "load_factor", "moe_time", "reach_share", "remote_nodes",
           "tokens_in", "transfer_seconds", "unpaired_share"]
