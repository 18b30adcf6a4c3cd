"""The kernel model, composed: tiles of the dominant GEMM (the MLP up-projection, with its gate)
in its decode and prefill regimes, checked against the GPU and priced by ``kernel-sim``.

Shapes come from the serving model's per-GPU geometry at the plan's ``tp``/``ep`` (the decode
workers' and prefill workers' own ``tp`` when disaggregated): ``n x k`` of one GPU's up-projection
(one expert's for MoE models), ``m`` the rows one step feeds it: ``min(max_num_seqs, 256)``
decode rows (the serving model's decode-sized regime), the prefill chunk for prefill; an MoE
expert sees its share ``m * top_k / experts``. The dtype is the group's compute dtype from the
mix (int8 W8A8 is priced as fp8: the same operand width and peak on Hopper; weight-only formats
as bf16, their compute path).

Efficiency: the serving roofline stands for a tuned kernel, so a tile's effect on serving is
``time(tile) / time(best tile)`` of ``kernel-sim`` over the tile choices below, for that shape,
dtype and GPU (best over the choices of both regimes); it multiplies the serving model's
GEMM times of that regime. Without tile keys
in the config the best tile is assumed (multiplier 1).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner import BadInput, Status
from tuner.evaluators._catalog import Hardware, get_hardware
from tuner.evaluators.deployment._keys import PHASES, TILE_PARAMS
from tuner.evaluators.kernels import KernelSimEvaluator
from tuner.evaluators.kernels._tiles import gemm_reasons
from tuner.evaluators.serving._geometry import geometry
from tuner.evaluators.serving._latency import DECODE_ROWS

GROUP_M = 8
#: tile choices per regime: small-M tiles (and split-K) for decode, large tiles for prefill
TILE_CHOICES: dict[str, dict[str, tuple[int, ...]]] = {
    "decode": {"block_m": (16, 32, 64), "block_n": (64, 128, 256), "block_k": (64, 128, 256),
               "num_warps": (4, 8), "num_stages": (2, 3, 4, 5), "split_k": (1, 2, 4)},
    "prefill": {"block_m": (32, 64, 128, 256), "block_n": (64, 128, 256), "block_k": (32, 64, 128),
                "num_warps": (4, 8), "num_stages": (2, 3, 4, 5), "split_k": (1,)},
}


@dataclass(frozen=True)
class Gemm:
    phase: str
    m: int
    n: int
    k: int
    dtype: str
    gpu: str

    def label(self) -> str:
        return f"{self.phase} GEMM {self.m}x{self.n}x{self.k} {self.dtype}"

    def config(self, tile: Mapping[str, int]) -> dict[str, Any]:
        return {"kernel": "gemm", "m": self.m, "n": self.n, "k": self.k, "dtype": self.dtype,
                "gpu": self.gpu, "group_m": GROUP_M, **tile}


def kernel_dtype(compute: str, hw: Hardware) -> str:
    if compute in ("fp8", "int8") and "fp8" in hw.peak_tflops:
        return "fp8"
    return "bf16"


def dominant_gemms(plan: Any) -> dict[str, Gemm]:
    """The up-projection GEMM of each regime for a composed serving plan."""
    m, hw = plan.model, plan.hw
    dtype = kernel_dtype(plan.weight_mix.dtype_of("mlp_up"), hw) if plan.weight_mix \
        else "bf16"
    tps = {"decode": plan.decode_tp, "prefill": plan.prefill_tp} if plan.disaggregated \
        else {"decode": plan.tp, "prefill": plan.tp}
    rows = {"decode": min(plan.max_num_seqs, DECODE_ROWS),
            "prefill": min(plan.prefill_chunk_size, plan.max_num_batched_tokens)}
    out = {}
    for phase in PHASES:
        tp = tps[phase]
        g = geometry(m, tp, min(plan.ep, tp), plan.dp_attention)
        n, k = (g.expert_gemms or g.mlp_gemms)[0]
        r = rows[phase]
        if m.is_moe:
            r = max(1, round(r * m.top_k / m.num_experts))
        out[phase] = Gemm(phase, r, n, k, dtype, hw.name)
    return out


def tiles_of(config: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """The tiles a config sets, per regime (a regime is all or nothing)."""
    out = {}
    for phase in PHASES:
        keys = [f"{phase}_{p}" for p in TILE_PARAMS]
        given = [k for k in keys if k in config]
        if not given:
            continue
        if len(given) < len(keys):
            missing = next(k for k in keys if k not in config)
            raise BadInput(missing, f"a {phase} tile needs all of " + ", ".join(keys))
        out[phase] = {p: config[f"{phase}_{p}"] for p in TILE_PARAMS}
    return out


def tile_problems(gemms: Mapping[str, Gemm], tiles: Mapping[str, Mapping[str, int]]
                  ) -> list[str]:
    """Why a tile cannot run its GEMM on the GPU (shared memory, registers, shape rules)."""
    out = []
    for phase, tile in tiles.items():
        g = gemms[phase]
        hw = get_hardware(g.gpu)
        for reason in gemm_reasons(hw, g.m, g.n, g.k, g.dtype, tile["block_m"], tile["block_n"],
                                   tile["block_k"], tile["num_warps"], tile["num_stages"],
                                   tile["split_k"]):
            out.append(f"{phase}_tile on the {g.label()}: {reason}")
    return out


_SIM = KernelSimEvaluator()


def _time_us(g: Gemm, tile: Mapping[str, int]) -> float | None:
    r = _SIM.evaluate(g.config(tile))
    return r.metrics["time_us"] if r.status is Status.OK else None


@functools.lru_cache(maxsize=512)
def best_tile(g: Gemm) -> tuple[tuple[tuple[str, int], ...], float]:
    """The fastest tile for ``g`` and its time (us), over the choices of both regimes (an MoE
    expert's prefill share can be as small as a decode batch)."""
    choices = {k: tuple(sorted(set(TILE_CHOICES["decode"][k]) | set(TILE_CHOICES["prefill"][k])))
               for k in TILE_PARAMS}
    best: tuple[tuple[tuple[str, int], ...], float] | None = None
    for combo in itertools.product(*choices.values()):
        tile = dict(zip(choices, combo))
        t = _time_us(g, tile)
        if t is not None and (best is None or t < best[1]):
            best = (tuple(tile.items()), t)
    if best is None:
        raise BadInput("gpu", f"no tile of the choices fits the {g.label()} on {g.gpu}")
    return best


def time_scales(gemms: Mapping[str, Gemm], tiles: Mapping[str, Mapping[str, int]]
                ) -> tuple[tuple[float, float], dict[str, Any]]:
    """(decode, prefill) GEMM time multipliers and the kernel breakdown for the artifacts."""
    scales, info = {}, {}
    for phase in PHASES:
        g = gemms[phase]
        best, t_best = best_tile(g)
        tile = tiles.get(phase)
        t = _time_us(g, tile) if tile else t_best
        scales[phase] = (t or t_best) / t_best
        info[phase] = {"gemm": [g.m, g.n, g.k], "dtype": g.dtype,
                       "tile": dict(tile) if tile else dict(best), "time_us": t,
                       "best_tile": dict(best), "best_time_us": t_best,
                       "time_vs_best": scales[phase]}
    return (scales["decode"], scales["prefill"]), info


__all__ = ["DECODE_ROWS", "Gemm", "TILE_CHOICES", "best_tile", "dominant_gemms", "tile_problems",
           "tiles_of", "time_scales"]
