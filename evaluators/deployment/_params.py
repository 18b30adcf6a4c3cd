"""The deployment space's parameters, by domain (shared by ``search_spaces/deployment.py`` and
the pipelines, which search sub-spaces of it without importing the space)."""

from __future__ import annotations

from tuner import Categorical, Param
from tuner.evaluators.deployment._kernels import TILE_CHOICES
from tuner.evaluators.quant import ROLES
from tuner.evaluators.serving._plan import POLICIES, PREEMPTION_MODES

AGG = {"disaggregated": (False,)}
DISAGG = {"disaggregated": (True,)}
CHUNKED = {"chunked_prefill": (True,)}
WHOLE = {"chunked_prefill": (False,)}


def deployment_params(gpus: tuple[str, ...], moe: bool, tiles: bool) -> dict[str, Param]:
    """Parameters in suggestion order (conditions refer to earlier ones)."""
    p: dict[str, Param] = {}
    # serving plan
    if len(gpus) > 1:
        p["gpu"] = Categorical(gpus)
    p["disaggregated"] = Categorical((False, True))
    p["tp"] = Categorical((1, 2, 4, 8), when=AGG)
    p["pp"] = Categorical((1, 2), when=AGG)
    p["replicas"] = Categorical((1, 2, 4, 8), when=AGG)
    p["prefill_workers"] = Categorical((1, 2, 4), when=DISAGG)
    p["prefill_tp"] = Categorical((1, 2, 4, 8), when=DISAGG)
    p["decode_workers"] = Categorical((1, 2, 4), when=DISAGG)
    p["decode_tp"] = Categorical((1, 2, 4, 8), when=DISAGG)
    if moe:
        p["ep"] = Categorical((1, 2, 4, 8))
        p["dp_attention"] = Categorical((False, True), when=AGG)
    # quantization mix (8-bit weights are fp8 where the GPU has it, 4-bit int4 g128)
    for r in ROLES:
        p[f"{r}_bits"] = Categorical((4, 8, 16))
    p["act_bits"] = Categorical((16, 8))
    p["kv_bits"] = Categorical((16, 8))
    p["protect_frac"] = Categorical((0.0, 0.1))
    # scheduler
    p["max_num_seqs"] = Categorical((64, 128, 256, 512))
    p["max_num_batched_tokens"] = Categorical((2048, 4096, 8192))
    p["chunked_prefill"] = Categorical((True, False))
    p["prefill_chunk_size"] = Categorical((512, 2048, 8192), when=CHUNKED)
    p["mixed_prefill"] = Categorical((True, False), when=WHOLE)
    p["kv_block_size"] = Categorical((16, 32))
    p["gpu_memory_utilization"] = Categorical((0.85, 0.9, 0.95))
    p["preemption_mode"] = Categorical(PREEMPTION_MODES)
    p["scheduling_policy"] = Categorical(POLICIES)
    # kernels
    if tiles:
        for phase, choices in TILE_CHOICES.items():
            for name, values in choices.items():
                p[f"{phase}_{name}"] = Categorical(values)
    return p


__all__ = ["deployment_params"]
