"""The keys of a deployment config, grouped by the domain whose model reads them.

One config spans four domains; each key belongs to exactly one, so the evaluator can hand
each sub-model its own slice and the analysis can say which domain's choice moved an
objective. ``DOMAIN_OF`` is that grouping (the search space exposes it to the dashboard).
"""

from __future__ import annotations

from tuner.evaluators.quant import ROLES

#: the deployment itself (what a serving plan fixes before any knob): fixed context and plan
CONTEXT_KEYS = ("model", "gpu", "engine", "num_gpus", "workload", "slo_ttft_ms",
                "slo_tpot_ms", "max_model_len", "api_overhead_ms")
PLAN_KEYS = ("tp", "pp", "ep", "replicas", "disaggregated", "prefill_workers", "prefill_tp",
             "decode_workers", "decode_tp", "dp_attention")
#: the quantization mix, as the quantization domain names it (one band of layers)
QUANT_KEYS = (*(f"{r}_{k}" for r in ROLES for k in ("bits", "format", "group")),
              "act_bits", "kv_bits", "embed_bits", "protect_frac")
SCHEDULER_KEYS = ("max_num_seqs", "max_num_batched_tokens", "chunked_prefill",
                  "prefill_chunk_size", "mixed_prefill", "kv_block_size",
                  "gpu_memory_utilization", "preemption_mode", "scheduling_policy")
#: tiles of the dominant GEMM (the MLP up-projection) in its two regimes
TILE_PARAMS = ("block_m", "block_n", "block_k", "num_warps", "num_stages", "split_k")
PHASES = ("decode", "prefill")
TILE_KEYS = tuple(f"{p}_{t}" for p in PHASES for t in TILE_PARAMS)

DOMAINS = ("serving plan", "quantization", "scheduler", "kernels")
DOMAIN_OF: dict[str, str] = {
    **{k: "serving plan" for k in ("gpu", *PLAN_KEYS)},
    **{k: "quantization" for k in QUANT_KEYS},
    **{k: "scheduler" for k in SCHEDULER_KEYS},
    **{k: "kernels" for k in TILE_KEYS},
}
CONFIG_KEYS = frozenset((*CONTEXT_KEYS, *PLAN_KEYS, *QUANT_KEYS, *SCHEDULER_KEYS, *TILE_KEYS))

__all__ = ["CONFIG_KEYS", "CONTEXT_KEYS", "DOMAINS", "DOMAIN_OF", "PHASES", "PLAN_KEYS",
           "QUANT_KEYS", "SCHEDULER_KEYS", "TILE_KEYS", "TILE_PARAMS"]
