"""Serving plans and scheduler knobs for one model, GPU budget, workload and SLOs.

Context (fixed, not searched): ``model``, ``gpu`` (one name, or a list of names to search over),
``num_gpus`` (budget; plans may use fewer), ``workload``, ``slo_ttft_ms``, ``slo_tpot_ms``,
and optionally any other ``serving-sim`` config key to pin it (``max_model_len``,
``kv_link_gbit_s``, ...).

Parameters: the plan (aggregated ``tp`` x ``pp`` x ``replicas``, or disaggregated prefill and
decode workers with their own ``tp``; ``ep`` for MoE models), precisions, and the scheduler
(``max_num_seqs``, ``max_num_batched_tokens``, chunked prefill and its chunk size or, without
it, whether whole prompts share steps with decodes; KV block size, ``gpu_memory_utilization``,
preemption mode, scheduling policy). Every parameter is categorical
so studies can enumerate their space for ground truth; narrow it in the study file.

Constraints (with their numbers) come from ``tuner.evaluators.serving._plan.problems``: heads
divisible by ``tp``, ``ep`` dividing ``tp`` and the experts, the GPU budget, weights + activations
+ the longest request's KV fitting in memory, prompts fitting the token budget without chunked
prefill, and no duplicate spellings of one plan.

``engine`` in the context picks the stack (vllm, sglang, trtllm: the GPU knobs above, plus
``dp_attention`` for MoE models; defaults are that engine's). ``engine = "llama.cpp"`` searches
``llama-server``'s knobs instead, with ``gpu`` a CPU hardware profile file: slots
(``max_num_seqs``), ``max_num_batched_tokens``, ``ubatch_size``, ``kv_dtype``,
``kv_cache_tokens``, ``threads``, ``threads_batch`` and ``flash_attn`` (the knobs serving-real
drives, so a study can screen with serving-sim and measure with serving-real).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuner import BadInput, BaseSpace, Categorical, Param
from tuner.evaluators._catalog import get_hardware, model_from_config
from tuner.evaluators.serving._cpu_plan import kv_bytes_per_token, weight_bytes
from tuner.evaluators.serving._plan import (
    ALLOWED_KEYS,
    CONFIG_KEYS,
    GIB,
    KV_DTYPES,
    POLICIES,
    PREEMPTION_MODES,
    WEIGHT_DTYPES,
    engine_memory,
    engine_of,
    parse,
    plan_workload,
    problems,
)

AGG = {"disaggregated": (False,)}
DISAGG = {"disaggregated": (True,)}
CHUNKED = {"chunked_prefill": (True,)}
WHOLE = {"chunked_prefill": (False,)}
_SMALL_WORKLOAD = {"mode": "poisson", "rate": 4.0, "num_requests": 60, "seed": 0,
                   "input_len": {"dist": "uniform", "low": 64, "high": 512}, "output_len": 64}
#: a CPU hardware profile measured on a small VM, for the llama.cpp example
CPU_EXAMPLE = str(Path(__file__).resolve().parents[1] / "evaluators" / "serving" / "data"
                  / "cpu_example.toml")


class ServingSpace(BaseSpace):
    """Serving plan x scheduler configuration (domain ``serving``, evaluator ``serving-sim``)."""

    name = "serving"
    default_evaluator = "serving-sim"
    default_objectives = (("goodput_req_s_per_gpu", "maximize"), ("cost_usd_per_mtok", "minimize"))
    example_contexts = (
        {"model": "llama3.1-8b", "gpu": "h100_sxm", "num_gpus": 2, "workload": _SMALL_WORKLOAD,
         "slo_ttft_ms": 500.0, "slo_tpot_ms": 50.0},
        {"model": "mixtral-8x7b", "gpu": ["h100_sxm", "h200_sxm"], "num_gpus": 4,
         "workload": _SMALL_WORKLOAD},
        {"engine": "llama.cpp", "model": "smollm2-135m", "gpu": CPU_EXAMPLE,
         "workload": {"mode": "closed", "concurrency": 4, "num_requests": 16,
                      "input_len": 128, "output_len": 16}},
    )

    def validate_context(self, context: dict[str, Any]) -> dict[str, Any]:
        ctx = dict(context)
        unknown = sorted(set(ctx) - ALLOWED_KEYS)
        if unknown:
            raise BadInput(f"space.context.{unknown[0]}", "unknown key; allowed: "
                           + ", ".join(CONFIG_KEYS) + " (or inline model dimensions)")
        model_from_config(ctx)  # unknown model / bad inline dimensions -> BadInput
        self._engine = engine_of(ctx)
        if self._engine == "llama.cpp":
            return self._validate_cpu(ctx)
        gpus = ctx.get("gpu", "h100_sxm")
        names = gpus if isinstance(gpus, list) else [gpus]
        if not names:
            raise BadInput("space.context.gpu", "an empty list; give one or more GPU names")
        self._gpus = tuple(get_hardware(g, "space.context.gpu").name for g in names)
        if isinstance(gpus, list):
            ctx.pop("gpu")
        else:
            ctx["gpu"] = self._gpus[0]
        budget = ctx.setdefault("num_gpus", 8)
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise BadInput("space.context.num_gpus", f"{budget!r} must be a positive integer")
        if "workload" not in ctx:
            raise BadInput("space.context.workload", "required (a table, a catalog name or "
                           "{\"trace\": \"file.csv\"})")
        # a trial config must be a valid serving-sim config: check types and the workload now
        probe = parse({**ctx, "gpu": self._gpus[0]})
        plan_workload(probe)
        self._moe = probe.model.is_moe
        return ctx

    def _validate_cpu(self, ctx: dict[str, Any]) -> dict[str, Any]:
        if "workload" not in ctx:
            raise BadInput("space.context.workload", "required (a table, a catalog name or "
                           "{\"trace\": \"file.csv\"})")
        probe = parse(ctx)  # a CPU profile in gpu, valid knobs and workload
        plan_workload(probe)
        self._cores = max(1, probe.hw.sm_count)
        self._ctx_max = probe.model.max_seq_len
        return ctx

    def _cpu_parameters(self) -> dict[str, Param]:
        c = self._cores
        threads = tuple(sorted({1, max(1, c // 2), c, 2 * c}))
        ctx = tuple(v for v in (2048, 4096, 8192, 16384, 32768) if v <= self._ctx_max) \
            or (self._ctx_max,)
        return {"max_num_seqs": Categorical((1, 2, 4, 8, 16)),
                "max_num_batched_tokens": Categorical((256, 512, 1024, 2048)),
                "ubatch_size": Categorical((64, 128, 256, 512)),
                "kv_dtype": Categorical(("f16", "q8_0", "q4_0")),
                "kv_cache_tokens": Categorical(ctx),
                "threads": Categorical(threads), "threads_batch": Categorical(threads),
                "flash_attn": Categorical((True, False))}

    def parameters(self) -> Mapping[str, Param]:
        if self._engine == "llama.cpp":
            return self._cpu_parameters()
        p: dict[str, Param] = {}
        if len(self._gpus) > 1:
            p["gpu"] = Categorical(self._gpus)
        p["disaggregated"] = Categorical((False, True))
        p["tp"] = Categorical((1, 2, 4, 8), when=AGG)
        p["pp"] = Categorical((1, 2), when=AGG)
        p["replicas"] = Categorical((1, 2, 4, 8), when=AGG)
        p["prefill_workers"] = Categorical((1, 2, 4), when=DISAGG)
        p["prefill_tp"] = Categorical((1, 2, 4, 8), when=DISAGG)
        p["decode_workers"] = Categorical((1, 2, 4), when=DISAGG)
        p["decode_tp"] = Categorical((1, 2, 4, 8), when=DISAGG)
        if self._moe:
            p["ep"] = Categorical((1, 2, 4, 8))
            p["dp_attention"] = Categorical((False, True), when=AGG)
        p["weight_dtype"] = Categorical(WEIGHT_DTYPES)
        p["kv_dtype"] = Categorical(KV_DTYPES)
        p["max_num_seqs"] = Categorical((64, 128, 256, 512, 1024))
        p["max_num_batched_tokens"] = Categorical((2048, 4096, 8192, 16384))
        p["chunked_prefill"] = Categorical((True, False))
        p["prefill_chunk_size"] = Categorical((512, 2048, 8192, 16384), when=CHUNKED)
        p["mixed_prefill"] = Categorical((True, False), when=WHOLE)
        p["kv_block_size"] = Categorical((16, 32, 64))
        p["gpu_memory_utilization"] = Categorical((0.85, 0.9, 0.95))
        p["preemption_mode"] = Categorical(PREEMPTION_MODES)
        p["scheduling_policy"] = Categorical(POLICIES)
        return p

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        try:
            plan = parse(config)
        except BadInput as exc:
            return [str(exc)]
        out = []
        if plan.engine == "llama.cpp" and config.get("ubatch_size", 512) > \
                plan.max_num_batched_tokens:
            out.append(f"ubatch_size {config.get('ubatch_size', 512)} > max_num_batched_tokens "
                       f"{plan.max_num_batched_tokens} (llama.cpp clamps it: the same plan as "
                       "ubatch = batch)")
        chunk = config.get("prefill_chunk_size")
        budget = plan.max_num_batched_tokens * plan.budget_ranks  # the replica's, as set
        if chunk is not None and chunk > budget:
            out.append(f"prefill_chunk_size {chunk} exceeds max_num_batched_tokens "
                       f"{budget} (the same plan as chunk = budget)")
        return out + problems(plan)

    def features(self, config: Mapping[str, Any]) -> dict[str, float]:
        try:
            plan = parse(config)
            wl = plan_workload(plan)
        except BadInput:
            return {}
        stats = wl.stats()
        feats: dict[str, float] = {"num_gpus": float(plan.gpus_used),
                                   "mean_request_tokens": stats["mean_input_len"]
                                   + stats["mean_output_len"]}
        if plan.engine == "llama.cpp":
            kv = kv_bytes_per_token(plan.model, plan.kv_dtype)
            feats["weight_gib"] = weight_bytes(plan.model, plan.weight_dtype) / GIB
            feats["kv_cache_gib"] = plan.kv_cache_tokens * kv / GIB
            feats["requests_in_kv"] = plan.kv_cache_tokens / feats["mean_request_tokens"]
            feats["threads_per_core"] = plan.threads_batch / max(1, plan.hw.sm_count)
            return feats
        for role, count, tp, pp, ep in plan.engine_kinds():
            mem = engine_memory(plan, tp, pp, ep)
            prefix = "" if role == "mixed" else f"{role}_"
            kv_tokens = mem.kv_tokens(plan.kv_block_size) * count
            feats[f"{prefix}weight_gib_per_gpu"] = mem.weights / GIB
            feats[f"{prefix}kv_capacity_tokens"] = float(kv_tokens)
            feats[f"{prefix}requests_in_kv"] = kv_tokens / feats["mean_request_tokens"]
            feats[f"{prefix}gpus_per_engine"] = float(tp * pp)
        return feats


__all__ = ["ServingSpace"]
