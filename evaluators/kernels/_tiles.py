"""Kernel tile rules: what a Triton GEMM or FlashAttention-forward tile may be, and what it costs.

The kernel spaces (``search_spaces/kernels.py``) and the kernel evaluators (``sim``, ``gpu``,
``replay``) share these rules, so the spaces' constraints are exactly the evaluators' validity
checks and an evaluator never trusts that a config came from a space:

* contexts: ``gemm_context`` / ``attention_context`` check a problem (shape, dtype, GPU) and
  fill in its defaults, raising ``BadInput`` naming the field;
* choices: every tile parameter is categorical; block sizes are powers of two from 16 (the
  smallest ``tl.dot`` operand) to 256, narrowed per shape so that no tile is larger than the
  problem padded to a power of two (``gemm_choices`` / ``attention_choices``);
* resources: shared memory of the pipelined operand buffers and registers per thread of one
  program (``gemm_resources`` / ``attention_resources``), and the resident programs per SM they
  allow (``occupancy``);
* reasons (``gemm_reasons`` / ``attention_reasons``), each with its numbers: shared memory must
  fit one block (``smem_per_block_kib`` in the hardware catalog); the fp32 accumulator plus
  operand fragments must fit the 255-register-per-thread limit and the SM's register file
  (``regs_per_sm``) for one block, else the kernel spills; split-K needs at least one K tile
  per split; the causal attention loop needs ``block_m % block_n == 0`` (its diagonal band is a
  whole number of key blocks); fp8 ``tl.dot`` needs ``block_k >= 32``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tuner import BadInput
from tuner.evaluators._catalog import Hardware, get_hardware

GEMM_DTYPES = ("bf16", "fp16", "fp8", "fp32", "tf32")
ATTENTION_DTYPES = ("bf16", "fp16")
#: element bytes of the inputs
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "fp32": 4, "tf32": 4}
#: output element bytes: fp8 GEMMs write bf16 (a float8 output would lose the fp32 accumulation)
OUT_BYTES = {"bf16": 2, "fp16": 2, "fp8": 2, "fp32": 4, "tf32": 4}
HEAD_DIMS = (16, 32, 64, 128, 256)  # tl.arange needs a power of two

BLOCKS = (16, 32, 64, 128, 256)
GROUP_M = (1, 4, 8, 16)
NUM_WARPS = (2, 4, 8)
NUM_STAGES = (1, 2, 3, 4, 5)
SPLIT_K = (1, 2, 4, 8, 16)

#: hardware limits not in the catalog, identical for compute capability 8.0 and 9.0
#: (CUDA C++ Programming Guide, "Compute Capabilities", technical specifications table)
MAX_REGS_PER_THREAD = 255
MAX_THREADS_PER_SM = 2048
MAX_BLOCKS_PER_SM = 32
#: registers a Triton GEMM/attention thread spends on addresses, indices, loop state
#: (read from ptxas -v reports of small Triton tiles; a floor, not a fit)
REG_OVERHEAD = 24

DEFAULT_GPU = "h100_sxm"

#: every key a kernel config may hold: the GEMM or attention shape and the tile parameters
CONFIG_KEYS = frozenset({"kernel", "m", "n", "k", "dtype", "gpu", "batch", "heads", "seq_len",
                         "head_dim", "causal", "block_m", "block_n", "block_k", "group_m",
                         "num_warps", "num_stages", "split_k"})


def next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def problem_block_limit(size: int) -> int:
    """Largest useful block along a dimension of ``size``: the size padded to a power of two."""
    return max(16, next_pow2(size))


# -- input checks shared by spaces and evaluators -----------------------------------------------
def positive_int(config: Mapping[str, Any], key: str) -> int:
    v = config.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise BadInput(key, f"{v!r} must be a positive integer")
    return v


def check_dtype(config: Mapping[str, Any], allowed: tuple[str, ...], hw: Hardware) -> str:
    dtype = config.get("dtype", "bf16")
    if dtype not in allowed:
        raise BadInput("dtype", f"{dtype!r} is not supported; allowed: {', '.join(allowed)}")
    if dtype not in hw.peak_tflops:
        supported = [d for d in allowed if d in hw.peak_tflops]
        raise BadInput("dtype", f"{dtype!r} has no peak on {hw.name}; allowed there: "
                       + ", ".join(supported))
    return dtype


def gemm_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """Checked GEMM context with defaults filled in (raises ``BadInput`` naming the field)."""
    allowed = {"kernel", "m", "n", "k", "dtype", "gpu"}
    unknown = set(context) - allowed
    if unknown:
        raise BadInput("space.context", f"unknown key {sorted(unknown)[0]!r}; allowed: "
                       + ", ".join(sorted(allowed)))
    if context.get("kernel", "gemm") != "gemm":
        raise BadInput("kernel", f"{context['kernel']!r} must be 'gemm' for kernel-gemm")
    hw = get_hardware(context.get("gpu", DEFAULT_GPU))
    out = {"kernel": "gemm", "m": positive_int(context, "m"), "n": positive_int(context, "n"),
           "k": positive_int(context, "k")}
    out["dtype"] = check_dtype(context, GEMM_DTYPES, hw)
    out["gpu"] = hw.name
    return out


def attention_context(context: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {"kernel", "batch", "heads", "seq_len", "head_dim", "dtype", "causal", "gpu"}
    unknown = set(context) - allowed
    if unknown:
        raise BadInput("space.context", f"unknown key {sorted(unknown)[0]!r}; allowed: "
                       + ", ".join(sorted(allowed)))
    if context.get("kernel", "attention") != "attention":
        raise BadInput("kernel", f"{context['kernel']!r} must be 'attention' for kernel-attention")
    hw = get_hardware(context.get("gpu", DEFAULT_GPU))
    out: dict[str, Any] = {"kernel": "attention"}
    for key in ("batch", "heads", "seq_len", "head_dim"):
        out[key] = positive_int(context, key)
    if out["head_dim"] not in HEAD_DIMS:
        raise BadInput("head_dim", f"{out['head_dim']} is not supported; allowed: "
                       + ", ".join(map(str, HEAD_DIMS)))
    out["dtype"] = check_dtype(context, ATTENTION_DTYPES, hw)
    causal = context.get("causal", True)
    if not isinstance(causal, bool):
        raise BadInput("causal", f"{causal!r} must be true or false")
    out["causal"] = causal
    out["gpu"] = hw.name
    return out


# -- resource model shared with kernel-sim ------------------------------------------------------
def gemm_resources(hw: Hardware, dtype: str, bm: int, bn: int, bk: int, warps: int,
                   stages: int) -> tuple[int, int]:
    """(shared-memory bytes per block, registers per thread) of one GEMM program.

    Shared memory holds ``num_stages`` copies of the A and B tiles (Triton's software pipeline);
    a single stage still stages operands through shared memory. Registers: the fp32 accumulator
    ``bm*bn/threads`` plus one K-tile of operand fragments plus bookkeeping.
    """
    b = DTYPE_BYTES[dtype]
    threads = 32 * warps
    smem = max(1, stages) * (bm * bk + bk * bn) * b
    regs = (bm * bn + (bm * bk + bk * bn) * b // 4) // threads + REG_OVERHEAD
    return smem, regs


def attention_resources(hw: Hardware, dtype: str, head_dim: int, bm: int, bn: int, warps: int,
                        stages: int) -> tuple[int, int]:
    """(shared-memory bytes, registers per thread) of one FlashAttention forward program.

    Shared memory: the Q tile plus ``num_stages`` buffered K and V tiles. Registers: the fp32
    output accumulator (bm x d), the fp32 score tile (bm x bn), the Q fragment, bookkeeping.
    """
    b = DTYPE_BYTES[dtype]
    threads = 32 * warps
    smem = (bm * head_dim + max(1, stages) * 2 * bn * head_dim) * b
    regs = (bm * head_dim + bm * bn + bm * head_dim * b // 4) // threads + REG_OVERHEAD
    return smem, regs


def resource_reasons(hw: Hardware, smem: int, regs: int, warps: int) -> list[str]:
    out = []
    smem_cap = int(hw.smem_per_block_kib * 1024)
    if smem > smem_cap:
        out.append(f"shared memory: needs {smem / 1024:.1f} KiB per block, "
                   f"{hw.name} allows {hw.smem_per_block_kib:g} KiB")
    threads = 32 * warps
    reg_cap = min(MAX_REGS_PER_THREAD, hw.regs_per_sm // threads)
    if regs > reg_cap:
        out.append(f"registers: needs ~{regs} per thread, limit {reg_cap} "
                   f"({threads} threads, {hw.regs_per_sm} per SM): would spill")
    return out


def _narrow(choices: tuple[int, ...], limit: int) -> tuple[int, ...]:
    return tuple(c for c in choices if c <= limit) or (choices[0],)


# -- the tile parameters of one problem ------------------------------------------------------
def gemm_choices(context: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The values of each GEMM tile parameter for a checked context (``gemm_context``)."""
    c = context
    # fp8 tl.dot takes K in multiples of 32 (the fp8 MMA instruction shape)
    block_k = BLOCKS[1:] if c["dtype"] == "fp8" else BLOCKS
    k_tiles_max = math.ceil(c["k"] / 16)
    return {
        "block_m": _narrow(BLOCKS, problem_block_limit(c["m"])),
        "block_n": _narrow(BLOCKS, problem_block_limit(c["n"])),
        "block_k": _narrow(block_k, max(problem_block_limit(c["k"]), block_k[0])),
        "group_m": GROUP_M,
        "num_warps": NUM_WARPS,
        "num_stages": NUM_STAGES,
        "split_k": _narrow(SPLIT_K, k_tiles_max),
    }


def attention_choices(context: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The values of each attention tile parameter for a checked context."""
    lim = problem_block_limit(context["seq_len"])
    return {
        "block_m": _narrow(BLOCKS, lim),
        "block_n": _narrow(BLOCKS, lim),
        "num_warps": NUM_WARPS,
        "num_stages": NUM_STAGES,
    }


# -- rules, shared with the evaluators (which must not trust that a config came from a space) ---
def _launch_reasons(warps: int, stages: int) -> list[str]:
    """num_warps / num_stages outside the values Triton kernels are compiled with."""
    out = []
    if warps not in NUM_WARPS:
        out.append(f"num_warps {warps!r} is not one of {list(NUM_WARPS)}")
    if stages not in NUM_STAGES:
        out.append(f"num_stages {stages!r} is not one of {list(NUM_STAGES)}")
    return out


def gemm_reasons(hw: Hardware, m: int, n: int, k: int, dtype: str, bm: int, bn: int, bk: int,
                 warps: int, stages: int, split_k: int) -> list[str]:
    out = []
    for name, v, size in (("block_m", bm, m), ("block_n", bn, n), ("block_k", bk, k)):
        if v not in BLOCKS:
            out.append(f"{name} {v!r} is not one of {list(BLOCKS)}")
        elif v > problem_block_limit(size):
            out.append(f"{name} {v} is larger than the problem ({size} padded to "
                       f"{problem_block_limit(size)}): tile larger than the problem")
    out.extend(_launch_reasons(warps, stages))
    if split_k not in SPLIT_K:
        out.append(f"split_k {split_k!r} is not one of {list(SPLIT_K)}")
    if out:
        return out
    if dtype == "fp8" and bk < 32:
        out.append(f"block_k {bk} < 32: fp8 tl.dot needs K tiles of at least 32")
    k_tiles = math.ceil(k / bk)
    if split_k > k_tiles:
        out.append(f"split_k {split_k} > {k_tiles} K tiles (K={k}, block_k={bk}): "
                   "some splits would have no work")
    smem, regs = gemm_resources(hw, dtype, bm, bn, bk, warps, stages)
    out.extend(resource_reasons(hw, smem, regs, warps))
    return out


def attention_reasons(hw: Hardware, seq_len: int, head_dim: int, dtype: str, causal: bool,
                      bm: int, bn: int, warps: int, stages: int) -> list[str]:
    out = []
    lim = problem_block_limit(seq_len)
    for name, v in (("block_m", bm), ("block_n", bn)):
        if v not in BLOCKS:
            out.append(f"{name} {v!r} is not one of {list(BLOCKS)}")
        elif v > lim:
            out.append(f"{name} {v} is larger than the problem (seq_len {seq_len} padded to "
                       f"{lim}): tile larger than the problem")
    out.extend(_launch_reasons(warps, stages))
    if out:
        return out
    if causal and bm % bn:
        out.append(f"causal needs block_m % block_n == 0 (got {bm} % {bn} = {bm % bn}): "
                   "the diagonal band must be whole key blocks")
    smem, regs = attention_resources(hw, dtype, head_dim, bm, bn, warps, stages)
    out.extend(resource_reasons(hw, smem, regs, warps))
    return out


def occupancy(hw: Hardware, smem: int, regs: int, warps: int) -> int:
    """Resident blocks per SM, limited by shared memory, registers, threads and block slots."""
    threads = 32 * warps
    by_smem = int(hw.smem_per_sm_kib * 1024) // max(smem, 1)
    by_regs = hw.regs_per_sm // max(regs * threads, 1)
    return max(0, min(by_smem, by_regs, MAX_THREADS_PER_SM // threads, MAX_BLOCKS_PER_SM))


__all__ = ["ATTENTION_DTYPES", "BLOCKS", "DEFAULT_GPU", "DTYPE_BYTES", "GEMM_DTYPES", "GROUP_M",
           "HEAD_DIMS", "MAX_BLOCKS_PER_SM", "MAX_REGS_PER_THREAD", "MAX_THREADS_PER_SM",
           "NUM_STAGES", "NUM_WARPS", "OUT_BYTES", "REG_OVERHEAD", "SPLIT_K", "attention_choices",
           "attention_context", "attention_reasons", "attention_resources", "check_dtype",
           "gemm_choices", "gemm_context", "gemm_reasons", "gemm_resources", "next_pow2",
           "occupancy", "positive_int", "problem_block_limit", "resource_reasons"]
