"""Shared roofline pieces: GEMM, attention, memory and collective times on one GPU type.

Used by training-sim, serving-sim, kernel-sim and quant-sim so that they agree on the physics.
Efficiency constants are data: defaults here, overridden per GPU by the ``[efficiency]`` table
of its hardware catalog file, where each value carries its source.

Models (all times in seconds):

* GEMM: ``max(flops / (peak * e(k)), bytes / (hbm * e_hbm)) + t0`` with
  ``e(k) = min(gemm_max, gemm_k_peak * k / (k + gemm_k_half))``. ``gemm_max`` is the maximum
  achievable matmul efficiency (MAMF) measured for the GPU; the K term is the main loop's
  prologue/epilogue cost; ``t0`` (``gemm_overhead_us``) is the fixed launch + tail cost. On
  H100 this form reproduces 148 measured bf16 GEMMs of OpenXLA's table (see
  ``evaluators/data/gemm/``) with 6% mean error (3% on GEMMs above 4 GFLOP).
* Collectives: bandwidth-optimal ring/hierarchical algorithms. A group whose ranks share a
  node moves its traffic over NVLink; a group spanning nodes is limited by the smaller of the
  per-GPU NVLink bandwidth and the NICs its members own on one node (``k`` members per node
  use ``k`` NICs: NCCL runs one ring per NIC), which is why a full-node data-parallel group
  reaches the node's aggregate network bandwidth.
* Attention: FlashAttention-style fused kernel, causal work counted per 128x128 tile.
* Sustained clock: long training runs and serving benchmarks (minutes of back-to-back engine
  steps) do not hold microbenchmark speed; ``sustained_clock`` scales the compute peaks of
  training-sim's steps and serving-sim's GEMMs.
"""

from __future__ import annotations

import math
from typing import Any

from tuner.evaluators._catalog import Hardware

BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5, "fp4": 0.5}

#: defaults; a hardware file's [efficiency] table overrides any of them
DEFAULT_EFFICIENCY: dict[str, float] = {
    "gemm_max": 0.80,  # maximum achievable / peak tensor-core throughput (MAMF), bf16/fp16
    "gemm_max_fp8": 0.70,  # the same for fp8 GEMMs
    # fp8 GEMMs with 128-element block scales (DeepSeek-style blockwise recipe) over the
    # per-tensor-scaled rate: 1 where the tensor cores apply block scales (Blackwell MX)
    "gemm_fp8_block_scale": 1.0,
    "gemm_k_peak": 0.88,  # asymptote of the K-loop efficiency term (fitted, H100 data)
    "gemm_k_half": 160.0,  # K at which prologue/epilogue costs the main loop half its time
    "gemm_overhead_us": 6.0,  # fixed cost per GEMM (launch + tail), fitted on H100 data
    "hbm": 0.85,  # achieved / peak HBM bandwidth on streaming kernels
    "kernel_launch_us": 4.0,  # fixed cost per non-GEMM kernel (launch + tail)
    "attn_max": 0.60,  # fused attention forward vs peak
    "attn_bwd_max": 0.45,  # fused attention backward vs peak (its FLOPs are 2.5x forward)
    "nvlink": 0.80,  # achieved bus bandwidth / NVLink peak for large collectives
    "network": 0.85,  # achieved / NIC line rate for large collectives
    "collective_latency_us": 10.0,  # base latency of one collective (launch + sync)
    "network_hop_us": 5.0,  # added latency per tree level across nodes
    "host_link_gb_s": 25.0,  # achieved GPU<->host bandwidth per GPU per direction (PCIe)
    "host_mem_gb_s": 40.0,  # host DRAM bandwidth share per GPU (CPU optimizer step)
    # Tensor-core throughput sustained over hours of multi-GPU training, as a fraction of the
    # short-burst microbenchmarks above (power/thermal clock limits, stragglers, launch gaps).
    # One constant fitted by least squares to published A100 training throughput (BLOOM-176B,
    # BigScience 2022: 156 TFLOP/s/GPU; Megatron-LM SC'21 Table 1; MLSys'23 Table 5); it also
    # reproduces Llama 3 405B on H100 (Meta 2024, Table 4: 430 and 400 TFLOP/s/GPU at 8k
    # context) within 5%. training-sim applies it, and serving-sim to its GEMMs (a serving
    # benchmark is minutes of back-to-back steps); short microbenchmarks (kernel-sim) do not.
    "sustained_clock": 0.81,
}


def eff(hw: Hardware, key: str) -> float:
    """One efficiency constant of ``hw`` (its catalog ``[efficiency]`` value or the default)."""
    return float(hw.efficiency.get(key, DEFAULT_EFFICIENCY[key]))


class GpuConsts:
    """Pre-resolved constants of one GPU (bandwidths in bytes/s, peaks in FLOP/s).

    Built once per hardware entry so that hot loops avoid dictionary lookups.
    """

    __slots__ = ("hw", "sm_count", "peak", "gemm_max", "k_peak", "k_half", "gemm_t0", "hbm_bw",
                 "launch", "attn_fwd", "attn_bwd", "nvlink_bw", "nic_bw", "coll_lat", "hop_lat",
                 "host_bw", "host_mem_bw", "peak_nominal")

    def __init__(self, hw: Hardware, sustained: bool = False, fp8_block: bool = False,
                 compute_scale: float = 1.0) -> None:
        self.hw = hw
        self.sm_count = hw.sm_count
        clock = (eff(hw, "sustained_clock") if sustained else 1.0) * compute_scale
        self.peak = {k: v * 1e12 * clock for k, v in hw.peak_tflops.items()}
        if fp8_block and "fp8" in self.peak:  # fp8 GEMMs apply 128-block scales
            self.peak["fp8"] *= eff(hw, "gemm_fp8_block_scale")
        self.peak_nominal = {k: v * 1e12 for k, v in hw.peak_tflops.items()}
        self.gemm_max = {d: eff(hw, "gemm_max") for d in self.peak}
        self.gemm_max["fp8"] = eff(hw, "gemm_max_fp8")
        self.k_peak = eff(hw, "gemm_k_peak")
        self.k_half = eff(hw, "gemm_k_half")
        self.gemm_t0 = eff(hw, "gemm_overhead_us") * 1e-6
        self.hbm_bw = hw.hbm_tb_s * 1e12 * eff(hw, "hbm")
        self.launch = eff(hw, "kernel_launch_us") * 1e-6
        self.attn_fwd = eff(hw, "attn_max")
        self.attn_bwd = eff(hw, "attn_bwd_max")
        self.nvlink_bw = hw.nvlink_gb_s * 1e9 * eff(hw, "nvlink")
        self.nic_bw = hw.network_gbit_s / 8 * 1e9 * eff(hw, "network")
        self.coll_lat = eff(hw, "collective_latency_us") * 1e-6
        self.hop_lat = eff(hw, "network_hop_us") * 1e-6
        self.host_bw = eff(hw, "host_link_gb_s") * 1e9
        self.host_mem_bw = eff(hw, "host_mem_gb_s") * 1e9

    def nic(self, inter_node_gbit_s: float | None) -> float:
        """Achieved network bytes/s per GPU, with an optional user override of the line rate."""
        if inter_node_gbit_s:
            return inter_node_gbit_s / 8 * 1e9 * eff(self.hw, "network")
        return self.nic_bw


_CONSTS: dict[tuple[int, bool, bool, float], GpuConsts] = {}


def consts(hw: Hardware, sustained: bool = False, fp8_block: bool = False,
           compute_scale: float = 1.0) -> GpuConsts:
    """Cached ``GpuConsts`` of a (catalog, hence long-lived) hardware entry.

    ``sustained``: scale compute peaks by ``sustained_clock`` (long training or serving runs).
    ``fp8_block``: fp8 GEMMs with 128-block scales, at ``gemm_fp8_block_scale`` of the rate.
    ``compute_scale``: a software stack's achieved share of those compute peaks.
    """
    key = (id(hw), sustained, fp8_block, compute_scale)
    c = _CONSTS.get(key)
    if c is None or c.hw is not hw:
        c = _CONSTS[key] = GpuConsts(hw, sustained, fp8_block, compute_scale)
    return c


def _peak(c: GpuConsts, dtype: str) -> float:
    p = c.peak.get(dtype)
    if p is None:
        c.hw.peak(dtype)  # raises BadInput naming the supported dtypes
    return p  # type: ignore[return-value]


def gemm_eff(c: GpuConsts, k: float, dtype: str) -> float:
    """Achieved fraction of peak of a large GEMM with inner dimension ``k``."""
    e = c.k_peak * k / (k + c.k_half)
    cap = c.gemm_max.get(dtype, 0.8)
    return e if e < cap else cap


def gemm_seconds(c: GpuConsts, m: float, n: float, k: float, dtype: str, batch: float = 1.0,
                 in_bytes: float = 2.0) -> float:
    """``gemm_time`` on pre-resolved constants (the hot-loop form)."""
    if m <= 0 or n <= 0 or k <= 0 or batch <= 0:
        return 0.0
    peak = c.peak.get(dtype)
    if peak is None:
        peak = _peak(c, dtype)
    e = c.k_peak * k / (k + c.k_half)
    cap = c.gemm_max.get(dtype, 0.8)
    if e > cap:
        e = cap
    compute = 2.0 * m * n * k * batch / (peak * e)
    memory = ((m * k + k * n) * in_bytes + m * n * 2.0) * batch / c.hbm_bw
    return (compute if compute > memory else memory) + c.gemm_t0


def gemm_time(hw: Hardware, m: float, n: float, k: float, dtype: str, batch: float = 1) -> float:
    """Seconds for ``batch`` GEMMs of (m x k) @ (k x n) in ``dtype`` (output in 16 bits)."""
    return gemm_seconds(consts(hw), m, n, k, dtype, batch, BYTES.get(dtype, 2))


def memory_time(hw: Hardware, nbytes: float) -> float:
    """Seconds to stream ``nbytes`` through HBM once."""
    return nbytes / consts(hw).hbm_bw


def causal_pairs(q_len: float, kv_len: float, causal: bool, block: int = 128) -> float:
    """Query-key pairs a tiled fused kernel computes (diagonal tiles are computed in full)."""
    if not causal:
        return q_len * kv_len
    if q_len < kv_len:  # chunked prefill / decode: earlier context fully visible
        return q_len * (kv_len - q_len) + causal_pairs(q_len, q_len, True, block)
    nb = math.ceil(q_len / block)
    return min(q_len * kv_len, nb * (nb + 1) / 2 * block * block)


def attention_time(hw: Hardware, batch: float, q_len: float, kv_len: float, heads: float,
                   kv_heads: float, head_dim: float, dtype: str, causal: bool = True,
                   v_head_dim: float | None = None) -> float:
    """Fused (FlashAttention-style) forward attention: max(compute, KV/Q/O traffic)."""
    c = consts(hw)
    v_dim = head_dim if v_head_dim is None else v_head_dim
    flops = 2.0 * batch * heads * causal_pairs(q_len, kv_len, causal) * (head_dim + v_dim)
    b = BYTES[dtype]
    traffic = batch * (kv_len * kv_heads * (head_dim + v_dim)
                       + q_len * heads * (head_dim + v_dim)) * b
    peak = c.peak.get(dtype) or _peak(c, "bf16")
    compute = flops / (peak * c.attn_fwd)
    memory = traffic / c.hbm_bw
    return (compute if compute > memory else memory) + c.launch


def link_bandwidth(hw: Hardware, group: int, gpus_per_node: int, inter_node_gbit_s: float | None
                   = None) -> float:
    """Bytes/s per GPU of the slowest link a group of ``group`` consecutive ranks crosses."""
    c = consts(hw)
    if group <= gpus_per_node:
        return c.nvlink_bw
    return c.nic(inter_node_gbit_s)


_RING_FACTOR = {"all_reduce": 2.0, "reduce_scatter": 1.0, "all_gather": 1.0}


def collective_seconds(c: GpuConsts, kind: str, nbytes: float, group: int, gpus_per_node: int,
                       nic_bw: float, stride: int = 1) -> float:
    """``collective_time`` on pre-resolved constants; ``nic_bw`` in achieved bytes/s per GPU."""
    if group <= 1 or nbytes <= 0:
        return 0.0
    per_node = gpus_per_node // stride if stride < gpus_per_node else 1
    if per_node > group:
        per_node = group
    if per_node < 1:
        per_node = 1
    nodes = group // per_node
    latency = c.coll_lat
    if nodes > 1:
        latency += 2.0 * math.log2(nodes) * c.hop_lat
    if kind == "all_to_all":
        intra = nbytes * (per_node - 1) / group / c.nvlink_bw
        inter = nbytes * (group - per_node) / group / nic_bw
        return (intra if intra > inter else inter) + latency
    traffic = _RING_FACTOR[kind] * nbytes * (group - 1) / group
    if nodes <= 1:
        bw = c.nvlink_bw
    else:
        net = per_node * nic_bw
        bw = net if net < c.nvlink_bw else c.nvlink_bw
    return traffic / bw + latency


def collective_time(hw: Hardware, kind: str, nbytes: float, group: int, gpus_per_node: int = 8,
                    inter_node_gbit_s: float | None = None, stride: int = 1) -> float:
    """Collective on ``group`` ranks; ``nbytes`` is the full (unsharded) buffer per rank.

    ``kind``: all_reduce | reduce_scatter | all_gather | all_to_all. ``stride`` is the distance
    between consecutive ranks of the group in the global rank order: a group spans nodes once
    ``group * stride > gpus_per_node``, and then has ``gpus_per_node // stride`` ranks per node.
    """
    if kind not in _RING_FACTOR and kind != "all_to_all":
        raise ValueError(f"unknown collective {kind!r}")
    c = consts(hw)
    return collective_seconds(c, kind, nbytes, group, gpus_per_node, c.nic(inter_node_gbit_s),
                              stride)


def p2p_time(hw: Hardware, nbytes: float, inter_node: bool, inter_node_gbit_s: float | None
             = None) -> float:
    """One point-to-point send of ``nbytes`` between two GPUs."""
    c = consts(hw)
    bw = c.nic(inter_node_gbit_s) if inter_node else c.nvlink_bw
    return nbytes / bw + c.coll_lat


def efficiency_table(hw: Hardware) -> dict[str, Any]:
    """Every efficiency constant in effect for ``hw`` (defaults filled in)."""
    return {k: eff(hw, k) for k in DEFAULT_EFFICIENCY}
