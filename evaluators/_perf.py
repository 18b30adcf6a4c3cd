"""Shared roofline pieces: GEMM, attention, memory and collective times on one GPU type.

Used by training-sim, serving-sim and quant-sim so that the three agree on the physics.
Efficiency constants are data: defaults here, overridden per GPU by the ``[efficiency]``
table of its hardware catalog file (fitted from measurements where a GPU was available).
"""

from __future__ import annotations

import math

from evaluators._catalog import Hardware

BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5, "fp4": 0.5}

#: defaults; a hardware file's [efficiency] table overrides any of them
DEFAULT_EFFICIENCY = {
    "gemm_max": 0.80,  # best achieved / peak tensor-core throughput on large GEMMs
    "gemm_k_half": 64.0,  # K at which the main loop's prologue/epilogue costs half the time
    "hbm": 0.85,  # achieved / peak HBM bandwidth on streaming kernels
    "kernel_launch_us": 4.0,  # fixed cost per kernel (launch + tail)
    "attn_max": 0.60,  # FlashAttention-style fused attention vs peak (fwd)
    "nvlink": 0.80,  # achieved bus bandwidth / link peak for large collectives
    "network": 0.80,
    "collective_latency_us": 10.0,  # per ring step
}


def eff(hw: Hardware, key: str) -> float:
    return float(hw.efficiency.get(key, DEFAULT_EFFICIENCY[key]))


def gemm_time(hw: Hardware, m: float, n: float, k: float, dtype: str, batch: float = 1) -> float:
    """Seconds for ``batch`` GEMMs of (m x k) @ (k x n), roofline with tile/wave losses."""
    if m <= 0 or n <= 0 or k <= 0 or batch <= 0:
        return 0.0
    tm = 128 if m >= 128 else 64
    tn = 128 if n >= 128 else 64
    tiles_m, tiles_n = math.ceil(m / tm), math.ceil(n / tn)
    tiles = tiles_m * tiles_n * batch
    waves = math.ceil(tiles / hw.sm_count)
    wave_util = tiles / (waves * hw.sm_count)
    pad_util = (m * n) / (tiles_m * tm * tiles_n * tn)
    k_util = k / (k + eff(hw, "gemm_k_half"))
    flops = 2.0 * m * n * k * batch
    compute = flops / (hw.peak(dtype) * eff(hw, "gemm_max") * wave_util * pad_util * k_util)
    b = BYTES[dtype]
    memory = (m * k + k * n + m * n) * b * batch / (hw.hbm_tb_s * 1e12 * eff(hw, "hbm"))
    return max(compute, memory) + eff(hw, "kernel_launch_us") * 1e-6


def memory_time(hw: Hardware, nbytes: float) -> float:
    """Seconds to stream ``nbytes`` through HBM once."""
    return nbytes / (hw.hbm_tb_s * 1e12 * eff(hw, "hbm"))


def attention_time(hw: Hardware, batch: float, q_len: float, kv_len: float, heads: float,
                   kv_heads: float, head_dim: float, dtype: str, causal: bool = True,
                   v_head_dim: float | None = None) -> float:
    """Fused (FlashAttention-style) forward attention: max(compute, KV/Q/O traffic)."""
    v_dim = head_dim if v_head_dim is None else v_head_dim
    pairs = q_len * kv_len
    if causal and q_len == kv_len:
        pairs = q_len * (q_len + 1) / 2
    elif causal and q_len < kv_len:  # chunked prefill / decode: earlier context fully visible
        pairs = q_len * (kv_len - q_len) + q_len * (q_len + 1) / 2
    flops = 2.0 * batch * heads * pairs * (head_dim + v_dim)
    b = BYTES[dtype]
    traffic = batch * (kv_len * kv_heads * (head_dim + v_dim)
                       + q_len * heads * (head_dim + v_dim)) * b
    compute = flops / (hw.peak(dtype if dtype in hw.peak_tflops else "bf16") * eff(hw, "attn_max"))
    return max(compute, memory_time(hw, traffic)) + eff(hw, "kernel_launch_us") * 1e-6


def link_bandwidth(hw: Hardware, group: int, gpus_per_node: int, inter_node_gbit_s: float | None
                   = None) -> float:
    """Bytes/s per GPU of the slowest link a group of ``group`` consecutive ranks crosses."""
    if group <= gpus_per_node:
        return hw.nvlink_gb_s * 1e9 * eff(hw, "nvlink")
    net = inter_node_gbit_s if inter_node_gbit_s else hw.network_gbit_s
    return net / 8 * 1e9 * eff(hw, "network")


def collective_time(hw: Hardware, kind: str, nbytes: float, group: int, gpus_per_node: int = 8,
                    inter_node_gbit_s: float | None = None, stride: int = 1) -> float:
    """Ring collective on ``group`` ranks; ``nbytes`` is the full (unsharded) buffer.

    ``stride`` is the distance between consecutive ranks of the group in the global rank
    order: a group spans nodes once ``group * stride > gpus_per_node``.
    """
    if group <= 1 or nbytes <= 0:
        return 0.0
    bw = link_bandwidth(hw, group * stride, gpus_per_node, inter_node_gbit_s)
    steps = {"all_reduce": 2 * (group - 1), "reduce_scatter": group - 1,
             "all_gather": group - 1, "all_to_all": group - 1}[kind]
    volume = nbytes * steps / group
    return volume / bw + steps * eff(hw, "collective_latency_us") * 1e-6


def p2p_time(hw: Hardware, nbytes: float, inter_node: bool, inter_node_gbit_s: float | None
             = None) -> float:
    bw = (link_bandwidth(hw, 10**9, 1, inter_node_gbit_s) if inter_node
          else hw.nvlink_gb_s * 1e9 * eff(hw, "nvlink"))
    return nbytes / bw + eff(hw, "collective_latency_us") * 1e-6
