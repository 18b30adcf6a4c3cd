"""``serving-sim``: a discrete-event simulator of LLM serving (vLLM/SGLang-style engines).

Config keys (all optional but ``workload``; defaults are vLLM's on the chosen GPU):

==========================  =================================================================
``model``                   catalog name or Hugging Face id (or inline dimensions)
``gpu``                     ``h100_sxm`` (default), ``h200_sxm``, ``a100_sxm_80gb``, ``b200``...
``tp``, ``pp``, ``ep``      parallelism of one replica (``ep`` divides ``tp``; MoE only)
``replicas``                independent replicas behind a least-outstanding-requests router
``disaggregated``           prefill/decode split: ``prefill_workers`` x ``prefill_tp`` GPUs and
                            ``decode_workers`` x ``decode_tp`` GPUs; ``kv_link_gbit_s``
                            overrides the KV-transfer link (default NVLink inside a node,
                            the GPU's network otherwise)
``weight_dtype``            bf16 | fp8 (W8A8; weight-only on GPUs without fp8) | int4 (W4A16)
``kv_dtype``                bf16 | fp8
``max_num_seqs``            running-request cap (1024 on H100-class GPUs, 256 on A100)
``max_num_batched_tokens``  token budget per step (8192 on H100-class GPUs, 2048 on A100)
``chunked_prefill``         true (vLLM V1, Sarathi) | false (whole prompts per step)
``prefill_chunk_size``      max prompt tokens of one request per step (default: the budget)
``mixed_prefill``           without chunking: whole prompts join the decodes' step (true,
                            TensorRT-LLM/SGLang) or get prefill-only steps (false, vLLM V0)
``kv_block_size``           tokens per KV block (16)
``gpu_memory_utilization``  fraction of GPU memory for weights + activations + KV cache (0.9)
``preemption_mode``         recompute | swap (``swap_space_gib`` of host memory per GPU, 4)
``scheduling_policy``       fcfs | shortest_prompt_first | priority (lower value first)
``max_model_len``           longest request accepted (default: the model's)
``api_overhead_ms``         API-server time before the engine sees a request (added to TTFT;
                            default from ``data/engine.toml``; 0 for offline runs)
``workload``                see ``evaluators/serving/_workloads.py``
``slo_ttft_ms``,            SLOs for ``goodput_req_s`` (requests meeting both per second);
``slo_tpot_ms``             unset means no limit
``num_gpus``                GPU budget: plans using more are infeasible
==========================  =================================================================

Approximations worth knowing: replicas are all simulated behind one router (not one replica
with a share of the traffic); a ``pp``-stage replica is ``pp`` virtual engines, each with 1/pp
of the KV blocks (vLLM V0's layout); prefix caching, speculative decoding, CUDA-graph padding
and detokenisation are not modelled; requests generate exactly ``output_len`` tokens.
"""

from __future__ import annotations

import hashlib
import math
import platform
from typing import Any, Mapping

from evaluators._catalog import CATALOG_DIR
from evaluators.serving._cluster import simulate
from evaluators.serving._plan import ENGINE_DATA, GIB, _cached_workload, engine_memory, parse, \
    plan_workload, problems
from tuner import BaseEvaluator, EvalResult

METRICS = ("ttft_ms_p50", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p99", "e2e_ms_p50",
           "throughput_tok_s", "throughput_tok_s_per_gpu", "goodput_req_s", "cost_usd_per_mtok",
           # beyond the shared names: per-GPU goodput (the usual objective under SLOs), means
           # as NIM/AIPerf report them, total (input + output) token rate, SLO attainment
           "goodput_req_s_per_gpu", "ttft_ms_mean", "tpot_ms_mean", "total_tok_s",
           "request_throughput_req_s", "slo_attainment", "preemptions")


def clear_caches() -> None:
    """Forget the generated workloads (so that a timing includes generating them)."""
    _cached_workload.cache_clear()


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of an ascending list."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def serving_metrics(plan: Any, res: Any, workload: Any) -> dict[str, float]:
    """Benchmark-style metrics (as ``vllm bench serve`` reports them) from request times."""
    ttft, tpot, e2e = [], [], []
    good = 0
    slo_ttft = plan.slo_ttft_ms / 1e3 if plan.slo_ttft_ms else math.inf
    slo_tpot = plan.slo_tpot_ms / 1e3 if plan.slo_tpot_ms else math.inf
    w = workload.warmup  # requests issued before the measurement starts
    for a, f, d, o in zip(res.arrival[w:], res.first[w:], res.finish[w:], res.out[w:]):
        t1 = f - a
        ttft.append(t1)
        e2e.append(d - a)
        tp = (d - f) / (o - 1) if o > 1 else 0.0
        if o > 1:
            tpot.append(tp)
        if t1 <= slo_ttft and tp <= slo_tpot:
            good += 1
    ttft.sort()
    tpot.sort()
    e2e.sort()
    start = min(res.arrival[w:])
    duration = max(res.finish[w:]) - start
    out_tokens = sum(res.out[w:])
    in_tokens = sum(workload.input_len[w:])
    tok_s = out_tokens / duration
    gpus = plan.gpus_used
    usd_per_s = gpus * plan.hw.price_usd_per_hour / 3600.0
    return {
        "ttft_ms_p50": 1e3 * percentile(ttft, 50), "ttft_ms_p99": 1e3 * percentile(ttft, 99),
        "tpot_ms_p50": 1e3 * percentile(tpot, 50) if tpot else 0.0,
        "tpot_ms_p99": 1e3 * percentile(tpot, 99) if tpot else 0.0,
        "e2e_ms_p50": 1e3 * percentile(e2e, 50),
        "throughput_tok_s": tok_s, "throughput_tok_s_per_gpu": tok_s / gpus,
        "goodput_req_s": good / duration,
        "goodput_req_s_per_gpu": good / duration / gpus,
        "cost_usd_per_mtok": usd_per_s / tok_s * 1e6,
        "ttft_ms_mean": 1e3 * sum(ttft) / len(ttft),
        "tpot_ms_mean": 1e3 * sum(tpot) / len(tpot) if tpot else 0.0,
        "request_throughput_req_s": len(e2e) / duration,
        "total_tok_s": (in_tokens + out_tokens) / duration,
        "slo_attainment": good / len(e2e),
        "duration_s": duration,
        "num_gpus": float(gpus),
        "preemptions": float(res.preemptions),
    }


class ServingSimEvaluator(BaseEvaluator):
    """Discrete-event continuous-batching simulator over the shared roofline."""

    name = "serving-sim"
    version = "1"
    metrics = METRICS
    domains = ("serving",)
    analytical = True

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        plan = parse(config)  # unusable input raises BadInput (the CLI exits 2)
        workload = plan_workload(plan)
        reasons = problems(plan)
        if reasons:
            return EvalResult.infeasible("; ".join(reasons))
        res = simulate(plan, workload)
        if res.unfinished:
            return EvalResult.infeasible(
                f"{res.unfinished} of {len(workload)} requests never completed "
                "(KV cache too small for the requests admitted together)")
        metrics = serving_metrics(plan, res, workload)
        for role, _, tp, pp, ep in plan.engine_kinds():
            mem = engine_memory(plan, tp, pp, ep)
            prefix = "" if role == "mixed" else f"{role}_"
            metrics[f"{prefix}weight_gib_per_gpu"] = mem.weights / GIB
            metrics[f"{prefix}kv_cache_tokens"] = float(mem.kv_tokens(plan.kv_block_size))
        return EvalResult.ok(metrics, artifacts={"steps": res.steps,
                                                 "workload": workload.description})

    def environment(self) -> dict[str, str]:
        # constants, GPU and model catalogs and the workload catalog (named workloads and the
        # bundled traces): a change to any of them changes what a config simulates to
        digest = hashlib.sha256(ENGINE_DATA.read_bytes())
        for sub in ("hardware", "models", "workloads"):
            for path in sorted((CATALOG_DIR / sub).glob("*")):
                digest.update(path.name.encode() + path.read_bytes())
        return {"python": platform.python_version(),
                "serving_constants": digest.hexdigest()[:12]}


__all__ = ["METRICS", "ServingSimEvaluator", "clear_caches", "percentile", "serving_metrics"]
