"""``deployment-sim``: a serving plan x a quantization mix x scheduler knobs x kernel tiles, scored
jointly by composing the domain models (none is copied here):

* quantization (``tuner.evaluators.quant``): the mix's plan, model size and ``quant-sim``'s quality
  proxy, translated into bytes and compute dtype per layer group and the KV dtype (``_mix``);
* kernels (``tuner.evaluators.kernels``): the dominant GEMM's decode and prefill shapes on this GPU
  at this ``tp`` and format, checked against the GPU and priced by ``kernel-sim`` relative to
  the best tile (``_kernels``);
* serving (``tuner.evaluators.serving``): the discrete-event simulation of the plan, whose memory
  and step times now use the mix's weight and KV bytes and the kernel multipliers (``_compose``
  sets the serving plan's ``weight_mix`` and ``gemm_time_scale`` hooks).

Config keys: ``model``, ``gpu``, ``engine`` (vllm | sglang | trtllm), ``num_gpus``, ``workload``,
``slo_ttft_ms``, ``slo_tpot_ms`` as in ``serving-sim``; the plan (``tp``, ``pp``, ``ep``,
``replicas``, ``disaggregated`` with ``prefill_*`` / ``decode_*`` workers, ``dp_attention``); the
mix as the quantization domain names it (``{qkv,attn_out,mlp_up,mlp_down}_bits`` 16 / 8 / 4,
``_format`` (8-bit: fp8 default where the GPU has it, int), ``_group`` (4-bit, default 128),
``act_bits``, ``kv_bits`` 16 / 8, ``protect_frac``); the scheduler knobs of ``serving-sim``; and
optionally the tiles ``{decode,prefill}_{block_m,block_n,block_k,num_warps,num_stages,split_k}``.

Metrics: ``cost_usd_per_mtok``, ``ttft_ms_p99``, ``tpot_ms_p99``, ``goodput_req_s_per_gpu``,
``quality_drop`` (and the rest of ``serving-sim``'s, ``model_size_gib``, ``avg_bits``,
``weight_gib_per_gpu``, ``kv_cache_tokens``); the artifacts hold each sub-model's breakdown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
from collections.abc import Mapping
from typing import Any

from tuner import BaseEvaluator, EvalResult
from tuner.evaluators._catalog import CATALOG_DIR
from tuner.evaluators._profiles import profile_dir
from tuner.evaluators.deployment._compose import compose, composed_problems, spelling_problems
from tuner.evaluators.deployment._kernels import time_scales
from tuner.evaluators.deployment._keys import CONFIG_KEYS
from tuner.evaluators.serving._cluster import simulate
from tuner.evaluators.serving._plan import GIB, engine_memory, plan_workload
from tuner.evaluators.serving.sim import serving_metrics

METRICS = ("cost_usd_per_mtok", "ttft_ms_p99", "tpot_ms_p99", "goodput_req_s_per_gpu",
           "quality_drop", "ttft_ms_p50", "tpot_ms_p50", "throughput_tok_s", "slo_attainment",
           "model_size_gib", "avg_bits", "num_gpus")


class DeploymentSimEvaluator(BaseEvaluator):
    """Joint deployment model: quantization -> kernels -> serving simulation."""

    name = "deployment-sim"
    version = "1"
    metrics = METRICS
    domains = ("deployment",)
    analytical = True
    options_table: dict = {}
    config_keys = CONFIG_KEYS

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        self.check_config(config)
        c = compose(config)  # unusable input raises BadInput (the CLI exits 2)
        quality = {"quality_drop": c.mix.quality_drop, "model_size_gib": c.mix.size_gib,
                   "avg_bits": c.mix.avg_bits}
        reasons = spelling_problems(config) + composed_problems(c)
        if reasons:
            return EvalResult.infeasible("; ".join(reasons), quality)
        scales, kernels = time_scales(c.gemms, c.tiles)
        plan = dataclasses.replace(c.plan, gemm_time_scale=scales)
        workload = plan_workload(plan)
        res = simulate(plan, workload)
        if res.unfinished:
            return EvalResult.infeasible(
                f"{res.unfinished} of {len(workload)} requests never completed "
                "(KV cache too small for the requests admitted together)", quality)
        metrics = {**serving_metrics(plan, res, workload), **quality}
        serving: dict[str, Any] = {"gpus": plan.gpus_used, "gpu": plan.hw.name,
                                   "price_usd_per_hour": plan.hw.price_usd_per_hour}
        for role, _, tp, pp, ep in plan.engine_kinds():
            mem = engine_memory(plan, tp, pp, ep)
            prefix = "" if role == "mixed" else f"{role}_"
            metrics[f"{prefix}weight_gib_per_gpu"] = mem.weights / GIB
            metrics[f"{prefix}kv_cache_tokens"] = float(mem.kv_tokens(plan.kv_block_size))
            serving[f"{prefix}kv_bytes_per_token"] = mem.kv_bytes_per_token
        serving.update({k: metrics[k] for k in ("ttft_ms_p99", "tpot_ms_p99",
                                                "goodput_req_s_per_gpu", "cost_usd_per_mtok")})
        metrics["decode_gemm_time_vs_best"], metrics["prefill_gemm_time_vs_best"] = scales
        artifacts = {"breakdown": {"quantization": c.mix.breakdown(), "kernels": kernels,
                                   "serving": serving},
                     "workload": workload.description}
        return EvalResult.ok(metrics, artifacts=artifacts)

    def environment(self) -> dict[str, str]:
        # everything a composed result depends on: engine profiles, catalogs, sensitivities
        from tuner.evaluators.quant._plan import DATA_DIR

        digest = hashlib.sha256()
        paths = sorted(profile_dir("serving").glob("*.toml"))
        for sub in ("hardware", "models", "workloads"):
            paths += sorted((CATALOG_DIR / sub).glob("*"))
        paths.append(DATA_DIR / "minilm_sensitivity.csv")
        for path in paths:
            digest.update(path.name.encode())
            if path.is_file():
                digest.update(path.read_bytes())
        return {"python": platform.python_version(), "constants": digest.hexdigest()[:12]}


__all__ = ["METRICS", "DeploymentSimEvaluator"]
