"""From a deployment config to one composed serving plan and the reasons it cannot run.

The quantization mix (``_mix``) sets the plan's per-group weight bytes and compute dtypes and
its KV dtype; the kernel model (``_kernels``) sets its GEMM time multipliers; the serving
model's own ``parse`` and ``problems`` check the rest, now with the mix's weights and KV bytes
(so "this mix does not fit this tp" is the serving model's memory check, with its numbers).
The search space's constraints are :func:`problems`, so space and evaluator agree and an
infeasible combination is refused before anything is simulated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner import BadInput
from tuner.evaluators._catalog import get_hardware
from tuner.evaluators.deployment._kernels import Gemm, dominant_gemms, tile_problems, tiles_of
from tuner.evaluators.deployment._keys import (
    CONFIG_KEYS,
    CONTEXT_KEYS,
    PLAN_KEYS,
    SCHEDULER_KEYS,
)
from tuner.evaluators.deployment._mix import Mix, mix_of
from tuner.evaluators.serving._plan import GPU_ENGINES, Plan, parse
from tuner.evaluators.serving._plan import problems as serving_problems


@dataclass(frozen=True)
class Composed:
    plan: Plan  # the serving plan with the mix's weights and KV dtype
    mix: Mix
    gemms: dict[str, Gemm]
    tiles: dict[str, dict[str, int]]


def check_keys(config: Mapping[str, Any]) -> None:
    unknown = sorted(set(config) - CONFIG_KEYS, key=str)
    if unknown:
        raise BadInput(str(unknown[0]), "unknown deployment key; allowed: "
                       + ", ".join(sorted(CONFIG_KEYS)))


def compose(config: Mapping[str, Any]) -> Composed:
    """The composed plan (``BadInput`` naming the field for unusable input)."""
    check_keys(config)
    if "model" not in config:
        raise BadInput("model", "required: a catalog model name such as 'llama3.1-70b'")
    engine = config.get("engine", "vllm")
    if engine not in GPU_ENGINES:
        raise BadInput("engine", f"{engine!r}: deployments are modelled on GPU engines; "
                       f"allowed: {', '.join(GPU_ENGINES)}")
    hw = get_hardware(config.get("gpu", "h100_sxm"))
    mix = mix_of(config, hw)
    serving = {k: config[k] for k in (*CONTEXT_KEYS, *PLAN_KEYS, *SCHEDULER_KEYS)
               if k in config}
    serving.update(weight_dtype=mix.weight_dtype, kv_dtype=mix.kv_dtype)
    plan = dataclasses.replace(parse(serving), weight_mix=mix.weights)
    return Composed(plan, mix, dominant_gemms(plan), tiles_of(config))


def composed_problems(c: Composed) -> list[str]:
    """Tile reasons first (cheap), then the serving model's, each with its numbers."""
    return tile_problems(c.gemms, c.tiles) + serving_problems(c.plan)


def spelling_problems(config: Mapping[str, Any]) -> list[str]:
    """Duplicate spellings of one plan (the serving model clamps the chunk to the budget)."""
    chunk, budget = config.get("prefill_chunk_size"), config.get("max_num_batched_tokens")
    if isinstance(chunk, int) and isinstance(budget, int) and chunk > budget:
        return [f"prefill_chunk_size {chunk} exceeds max_num_batched_tokens {budget} "
                "(the same plan as chunk = budget)"]
    return []


def problems(config: Mapping[str, Any]) -> list[str]:
    """Why a deployment config cannot run (empty when it can)."""
    out = spelling_problems(config)
    try:
        return out + composed_problems(compose(config))
    except BadInput as exc:
        return [*out, str(exc)]


__all__ = ["Composed", "check_keys", "compose", "composed_problems", "problems",
           "spelling_problems"]
