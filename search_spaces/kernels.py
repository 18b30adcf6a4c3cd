"""Kernel tile sizes: a Triton GEMM (GROUP_M swizzle, split-K) and a FlashAttention forward.

Two spaces share one set of resource rules:

* ``kernel-gemm`` (:class:`GemmTileSpace`): ``C[M, N] = A[M, K] @ B[K, N]`` (both row-major) for
  a given shape and dtype; searches ``block_m``, ``block_n``, ``block_k``, ``group_m``,
  ``num_warps``, ``num_stages`` and ``split_k``.
* ``kernel-attention`` (:class:`AttentionTileSpace`): FlashAttention-2-style forward
  ``O = softmax(Q K^T / sqrt(d)) V`` over ``[batch, heads, seq_len, head_dim]``; searches
  ``block_m`` (query rows per program), ``block_n`` (keys per inner step), ``num_warps`` and
  ``num_stages``.

Every parameter is categorical, so both spaces are finite and enumerable. Block sizes are powers
of two from 16 (the smallest ``tl.dot`` operand) to 256, narrowed per shape so that no tile is
larger than the problem padded to a power of two: a decode GEMM with M = 1 only offers
``block_m = 16``.

Constraints (``constraints(config)``), each reported with its numbers:

* shared memory: the pipelined operand buffers must fit one block's shared memory
  (``smem_per_block_kib`` in the hardware catalog);
* registers: the fp32 accumulator plus operand fragments must fit the 255-register-per-thread
  limit and the SM's register file (``regs_per_sm``) for one block, else the kernel spills;
* tile rules: split-K needs at least one K tile per split; the causal attention loop needs
  ``block_m % block_n == 0`` (its diagonal band is a whole number of key blocks); fp8 ``tl.dot``
  needs ``block_k >= 32``.

A config also carries ``kernel`` ("gemm" or "attention") so that evaluators can tell the two
apart without guessing. The rules (contexts, choices, resources, reasons) live below the spaces,
in ``evaluators/kernels/_tiles.py``, which the kernel evaluators check every config against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tuner import BadInput, BaseSpace, Categorical, Param
from tuner.evaluators._catalog import Hardware, get_hardware
from tuner.evaluators.kernels._tiles import (
    BLOCKS,
    DTYPE_BYTES,
    GROUP_M,
    NUM_STAGES,
    NUM_WARPS,
    SPLIT_K,
    attention_choices,
    attention_context,
    attention_reasons,
    attention_resources,
    gemm_choices,
    gemm_context,
    gemm_reasons,
    gemm_resources,
    occupancy,
    problem_block_limit,
)

#: every value a tile parameter can take (a study file may narrow or pin within these)
DOMAIN = {"block_m": BLOCKS, "block_n": BLOCKS, "block_k": BLOCKS, "group_m": GROUP_M,
          "num_warps": NUM_WARPS, "num_stages": NUM_STAGES, "split_k": SPLIT_K}


class _TileSpace(BaseSpace):
    """Common checks: a pinned or narrowed tile larger than the problem is a bad input."""

    default_evaluator = "kernel-sim"
    default_objectives = (("time_us", "minimize"),)

    def __init__(self, context: Mapping[str, Any] | None = None,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__(context, overrides)
        self.hw = get_hardware(self.context["gpu"])
        for name, limit in self._block_limits().items():
            if name in self.fixed:
                v = self.fixed[name]
                if not isinstance(v, int) or v > limit:
                    raise BadInput(f"space.params.{name}", f"fixed {v!r} is larger than the "
                                   f"problem (largest useful: {limit})")
            elif name in self.params:
                values = self.params[name].values()
                if all(isinstance(v, int) and v > limit for v in values):
                    raise BadInput(f"space.params.{name}", f"every choice {values} is larger "
                                   f"than the problem (largest useful: {limit})")

    def _block_limits(self) -> dict[str, int]:
        raise NotImplementedError


class GemmTileSpace(_TileSpace):
    """Tile configurations of a Triton GEMM for one (M, N, K, dtype, GPU).

    Example:
        >>> space = GemmTileSpace({"m": 4096, "n": 4096, "k": 4096, "dtype": "bf16"})
        >>> cfg = next(space.enumerate())
        >>> space.constraints(cfg)
        []
    """

    name = "kernel-gemm"
    example_contexts = ({"m": 4096, "n": 4096, "k": 4096, "dtype": "bf16", "gpu": "h100_sxm"},
                        {"m": 16, "n": 14336, "k": 8192, "dtype": "fp8", "gpu": "h100_sxm"},
                        {"m": 2048, "n": 2048, "k": 2048, "dtype": "fp32", "gpu": "a100_sxm_80gb"})

    def validate_context(self, context: dict[str, Any]) -> dict[str, Any]:
        return gemm_context(context)

    def _block_limits(self) -> dict[str, int]:
        c = self.context
        return {"block_m": problem_block_limit(c["m"]), "block_n": problem_block_limit(c["n"]),
                "block_k": problem_block_limit(c["k"])}

    def parameters(self) -> Mapping[str, Param]:
        return {k: Categorical(v, allowed=DOMAIN[k])
                for k, v in gemm_choices(self.context).items()}

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        c = self.context
        bm, bn, bk = config["block_m"], config["block_n"], config["block_k"]
        warps, stages, sk = config["num_warps"], config["num_stages"], config["split_k"]
        return gemm_reasons(self.hw, c["m"], c["n"], c["k"], c["dtype"], bm, bn, bk, warps,
                            stages, sk)

    def features(self, config: Mapping[str, Any]) -> dict[str, float]:
        c = self.context
        return gemm_features(self.hw, c["m"], c["n"], c["k"], c["dtype"], config)


class AttentionTileSpace(_TileSpace):
    """Tile configurations of a FlashAttention forward kernel for one attention shape.

    Example:
        >>> space = AttentionTileSpace({"batch": 1, "heads": 32, "seq_len": 8192,
        ...                             "head_dim": 128})
        >>> len(list(space.enumerate())) > 0
        True
    """

    name = "kernel-attention"
    example_contexts = ({"batch": 1, "heads": 64, "seq_len": 8192, "head_dim": 128,
                         "dtype": "bf16", "causal": True, "gpu": "h100_sxm"},
                        {"batch": 8, "heads": 16, "seq_len": 2048, "head_dim": 64,
                         "dtype": "fp16", "causal": False, "gpu": "a100_sxm_80gb"})

    def validate_context(self, context: dict[str, Any]) -> dict[str, Any]:
        return attention_context(context)

    def _block_limits(self) -> dict[str, int]:
        lim = problem_block_limit(self.context["seq_len"])
        return {"block_m": lim, "block_n": lim}

    def parameters(self) -> Mapping[str, Param]:
        return {k: Categorical(v, allowed=DOMAIN[k])
                for k, v in attention_choices(self.context).items()}

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        c = self.context
        return attention_reasons(self.hw, c["seq_len"], c["head_dim"], c["dtype"], c["causal"],
                                 config["block_m"], config["block_n"], config["num_warps"],
                                 config["num_stages"])

    def features(self, config: Mapping[str, Any]) -> dict[str, float]:
        c = self.context
        return attention_features(self.hw, c, config)


# -- features for learned cost models -----------------------------------------------------------

def gemm_features(hw: Hardware, m: int, n: int, k: int, dtype: str,
                  config: Mapping[str, Any]) -> dict[str, float]:
    bm, bn, bk = config["block_m"], config["block_n"], config["block_k"]
    warps, stages, sk = config["num_warps"], config["num_stages"], config["split_k"]
    tiles_m, tiles_n = math.ceil(m / bm), math.ceil(n / bn)
    programs = tiles_m * tiles_n * sk
    smem, regs = gemm_resources(hw, dtype, bm, bn, bk, warps, stages)
    occ = occupancy(hw, smem, regs, warps)
    slots = max(1, occ) * hw.sm_count
    b = DTYPE_BYTES[dtype]
    padded = tiles_m * bm * tiles_n * bn
    return {
        "programs": float(programs),
        "waves": programs / slots,
        "wave_tail": (programs % slots or slots) / slots,
        "occupancy": float(occ),
        "smem_kib": smem / 1024,
        "regs_per_thread": float(regs),
        "k_iters": math.ceil(math.ceil(k / sk) / bk),
        "pad_efficiency": m * n / padded,
        # FLOPs per byte moved from L2 by one program: 2*bm*bn*bk / ((bm + bn)*bk*b)
        "tile_intensity": 2.0 * bm * bn / ((bm + bn) * b),
        "log2_problem_flops": math.log2(2.0 * m * n * k),
        "split_k_extra_bytes": float((sk > 1) * sk * m * n * 4),
    }


def attention_features(hw: Hardware, c: Mapping[str, Any],
                       config: Mapping[str, Any]) -> dict[str, float]:
    bm, bn = config["block_m"], config["block_n"]
    warps, stages = config["num_warps"], config["num_stages"]
    s, d = c["seq_len"], c["head_dim"]
    programs = math.ceil(s / bm) * c["batch"] * c["heads"]
    smem, regs = attention_resources(hw, c["dtype"], d, bm, bn, warps, stages)
    occ = occupancy(hw, smem, regs, warps)
    slots = max(1, occ) * hw.sm_count
    return {
        "programs": float(programs),
        "waves": programs / slots,
        "wave_tail": (programs % slots or slots) / slots,
        "occupancy": float(occ),
        "smem_kib": smem / 1024,
        "regs_per_thread": float(regs),
        "kv_iters": math.ceil(s / bn),
        "pad_efficiency": s / (math.ceil(s / bm) * bm),
        "tile_intensity": 4.0 * bm * bn * d / ((2 * bn * d) * DTYPE_BYTES[c["dtype"]]),
        "log2_seq_len": math.log2(s),
    }


__all__ = ["AttentionTileSpace", "GemmTileSpace", "attention_context", "attention_reasons",
           "attention_resources", "gemm_context", "gemm_reasons", "gemm_resources", "occupancy"]
