"""One study across domains: a serving plan x a quantization mix x scheduler knobs x (optionally)
the tiles of the dominant GEMM, scored jointly by ``deployment-sim``.

Context (fixed): ``model`` (a catalog LLM), ``gpu`` (one name or a list to search over),
``engine`` (vllm | sglang | trtllm), ``num_gpus`` (budget), ``workload``, ``slo_ttft_ms``,
``slo_tpot_ms``, optionally ``max_model_len``, and ``search_tiles`` (default false: the best
tile per shape is assumed; true adds the ``decode_*`` / ``prefill_*`` tile parameters).

Parameters, by domain (``domain_of`` says which; the dashboard groups a front by it):

* serving plan: ``gpu`` (when a list), aggregated ``tp`` x ``pp`` x ``replicas`` or disaggregated
  prefill and decode workers with their own ``tp``; ``ep`` and ``dp_attention`` for MoE models;
* quantization: ``{qkv,attn_out,mlp_up,mlp_down}_bits`` (16 / 8 / 4: bf16, fp8 where the GPU
  has it, int4 with groups of 128), ``act_bits`` (16 / 8), ``kv_bits`` (16 / 8: the KV dtypes
  serving engines store), ``protect_frac`` (0 / 0.1 of the most sensitive layers one step up);
* scheduler: ``serving``'s knobs (``max_num_seqs``, token budget, chunked prefill, KV block,
  memory fraction, preemption, policy);
* kernels: block sizes, warps, stages and split-K of the decode and prefill tiles.

Constraints are ``tuner.evaluators.deployment._compose.problems``: across domains (the mix's
weights and the longest request's KV in its dtype must fit each GPU at this ``tp``; a tile must
fit the GPU's shared memory and registers, fp8 tiles need ``block_k >= 32``, a tile no larger
than its GEMM) and within serving (heads divisible by ``tp``, ``ep`` dividing ``tp`` and the
experts, the GPU budget), each with its numbers, checked before anything is simulated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner import BadInput, BaseSpace, Param
from tuner.evaluators._catalog import get_hardware, model_from_config
from tuner.evaluators.deployment import DOMAIN_OF, problems
from tuner.evaluators.deployment._params import deployment_params

_SMALL_WORKLOAD = {"mode": "poisson", "rate": 4.0, "num_requests": 60, "seed": 0,
                   "input_len": {"dist": "uniform", "low": 64, "high": 512}, "output_len": 64}


class DeploymentSpace(BaseSpace):
    """Serving plan x quantization mix x scheduler x kernel tiles (``deployment-sim``)."""

    name = "deployment"
    default_evaluator = "deployment-sim"
    default_objectives = (("cost_usd_per_mtok", "minimize"), ("quality_drop", "minimize"))
    example_contexts = (
        {"model": "llama3.1-8b", "gpu": "h100_sxm", "num_gpus": 2, "workload": _SMALL_WORKLOAD,
         "slo_ttft_ms": 500.0, "slo_tpot_ms": 50.0},
        {"model": "mixtral-8x7b", "gpu": ["h100_sxm", "h200_sxm"], "num_gpus": 4,
         "workload": _SMALL_WORKLOAD, "search_tiles": True},
    )

    def validate_context(self, context: dict[str, Any]) -> dict[str, Any]:
        ctx = dict(context)
        tiles = ctx.pop("search_tiles", False)
        if not isinstance(tiles, bool):
            raise BadInput("space.context.search_tiles", f"{tiles!r} must be true or false")
        self._tiles = tiles
        allowed = ("model", "gpu", "engine", "num_gpus", "workload", "slo_ttft_ms",
                   "slo_tpot_ms", "max_model_len", "api_overhead_ms")
        unknown = sorted(set(ctx) - set(allowed))
        if unknown:
            raise BadInput(f"space.context.{unknown[0]}", "unknown key; allowed: "
                           + ", ".join((*allowed, "search_tiles")))
        if "model" not in ctx:
            raise BadInput("space.context.model", "required: a catalog LLM such as "
                           "'llama3.1-70b'")
        model = model_from_config(ctx)
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
        from tuner.evaluators.deployment._compose import compose

        compose({**ctx, "gpu": self._gpus[0]})  # types, engine and workload checked now
        self._moe = model.is_moe
        return ctx

    def parameters(self) -> Mapping[str, Param]:
        return deployment_params(self._gpus, self._moe, self._tiles)

    def domain_of(self) -> dict[str, str]:
        """Parameter -> the domain it belongs to (serving plan, quantization, scheduler,
        kernels)."""
        return {k: DOMAIN_OF[k] for k in self.params}

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        return problems(config)


__all__ = ["DeploymentSpace"]
