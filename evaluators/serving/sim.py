"""``serving-sim``: a discrete-event simulator of LLM serving engines.

Config keys (all optional but ``workload``; defaults are the chosen engine's on the chosen GPU):

==========================  =================================================================
``engine``                  vllm (default) | sglang | trtllm | llama.cpp: the serving stack,
                            whose profile (``profiles/<engine>.toml``) sets its defaults,
                            admission policy and step constants
``model``                   catalog name or Hugging Face id (or inline dimensions)
``gpu``                     ``h100_sxm`` (default), ``h200_sxm``, ``a100_sxm_80gb``, ``b200``...
                            or a hardware profile file (``*.toml``)
``tp``, ``pp``, ``ep``      parallelism of one replica (``ep`` divides ``tp``; MoE only; a
                            disaggregated worker uses ``min(ep, its tp)``)
``dp_attention``            attention data parallel across the replica's ``tp`` GPUs (SGLang
                            ``--enable-dp-attention``, TensorRT-LLM ``enable_attention_dp``):
                            each GPU serves its own requests from its own KV cache, MoE layers
                            exchange tokens by all-to-all over the expert-parallel group
``replicas``                independent replicas behind a least-outstanding-requests router
``disaggregated``           prefill/decode split: ``prefill_workers`` x ``prefill_tp`` GPUs and
                            ``decode_workers`` x ``decode_tp`` GPUs; ``kv_link_gbit_s``
                            overrides the KV-transfer link (default NVLink inside a node,
                            the GPU's network otherwise)
``weight_dtype``            bf16 | fp8 (W8A8; weight-only on GPUs without fp8) | int4 (W4A16)
``expert_weight_dtype``     MoE only: the routed experts' own format where the checkpoint
                            stores them apart, ``weight_dtype`` values or mxfp4 (gpt-oss:
                            MXFP4 experts, bf16 rest; weight-only W4A16 GEMMs)
``fp8_recipe``              tensorwise (default) | blockwise: how fp8 weights are scaled
``kv_dtype``                bf16 | fp8
``max_num_seqs``            running-request cap (engine default)
``max_num_batched_tokens``  token budget per step (engine default)
``chunked_prefill``         split prompts across steps (engine default)
``prefill_chunk_size``      max prompt tokens of one request per step (default: the budget)
``mixed_prefill``           prompt tokens share steps with decodes (vLLM, TensorRT-LLM) or get
                            prefill-only steps (SGLang's default, vLLM V0)
``kv_block_size``           tokens per KV block (engine default: 16, SGLang 1, TRT-LLM 32)
``gpu_memory_utilization``  the engine's KV memory fraction (its own meaning: of total memory
                            for vLLM, of total for weights + KV for SGLang, of free memory
                            after weights for TensorRT-LLM; SGLang's default is what its
                            reserve for activations and CUDA graphs leaves)
``preemption_mode``         recompute | swap (``swap_space_gib`` of host memory per GPU, 4)
``scheduling_policy``       fcfs | shortest_prompt_first | priority (lower value first)
``max_model_len``           longest request accepted (default: the model's)
``api_overhead_ms``         the API server's latency per request (default from the profile)
``offline``                 no API server (offline benchmarks such as ``vllm bench latency``)
``workload``                see ``evaluators/serving/_workloads.py``
``slo_ttft_ms``,            SLOs for ``goodput_req_s`` (requests meeting both per second);
``slo_tpot_ms``             unset means no limit
``num_gpus``                GPU budget: plans using more are infeasible
==========================  =================================================================

``engine = "llama.cpp"`` takes ``llama-server``'s knobs instead (``_cpu_plan``: slots, batch
and ubatch sizes, KV cache cells and type, threads, flash attention) on a CPU hardware profile.

Options: ``profile``, a profile file (``tuner calibrate`` writes one) refining the engine's
shipped profile; with an ``[uncertainty]`` table every prediction carries a 90% band
(``<metric>_lo`` / ``_hi`` in the artifacts).

Approximations worth knowing: replicas are all simulated behind one router (not one replica
with a share of the traffic); a ``pp``-stage replica is ``pp`` virtual engines, each with 1/pp
of the KV blocks (vLLM V0's layout); attention-DP ranks are engines of their own that step
together; cross-request prefix sharing and speculative decoding are not modelled; requests
generate exactly ``output_len`` tokens.
"""

from __future__ import annotations

import hashlib
import math
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuner import BaseEvaluator, EvalResult, Option
from tuner.evaluators._catalog import CATALOG_DIR
from tuner.evaluators._profiles import Profile, check_bands, load_profile, profile_dir
from tuner.evaluators.serving._cluster import simulate
from tuner.evaluators.serving._plan import (
    ALLOWED_KEYS,
    GIB,
    _cached_workload,
    engine_memory,
    parse,
    plan_workload,
    problems,
)
from tuner.evaluators.serving._plan import stack_profile as _stack_profile
from tuner.evaluators.serving._profile_check import checked

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
    version = "2"
    metrics = METRICS
    domains = ("serving",)
    options_table = {"profile": Option(str, None, "a calibrated engine profile (tuner "
                                       "calibrate)", check=lambda p: p.endswith(".toml"),
                                       must="a profile file (.toml) refining a shipped "
                                       "engine profile")}
    config_keys = ALLOWED_KEYS
    #: calibration contract (evaluators/_calibration.py): profiles of this domain, and the
    #: metrics a fit weighs (the others restate these: totals, per-GPU, means)
    profile_domain = "serving"
    calibration_metrics = ("ttft_ms_p50", "tpot_ms_p50", "throughput_tok_s", "ttft_ms_p99",
                           "tpot_ms_p99")

    analytical = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # the option's file, read and checked once: a bad file is named before any trial runs
        self._profile: Profile | None = None
        if "profile" in options:
            field = "evaluator.options.profile"
            self._profile = checked(load_profile("serving", options["profile"], field),
                                    f"{field}.constants.")
            check_bands(self._profile, METRICS, field)

    def check_context(self, context: Mapping[str, Any]) -> None:
        if self._profile is not None:  # a profile for another engine than the context's
            self.stack_profile(context)

    def stack_profile(self, config: Mapping[str, Any]) -> Profile:
        """The profile ``config`` runs under (the ``profile`` option, else its engine's)."""
        return _stack_profile(config, self._profile)

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        return self.evaluate_with(config, self.stack_profile(config))

    def evaluate_with(self, config: Mapping[str, Any], profile: Profile) -> EvalResult:
        """Simulate ``config`` under ``profile`` (calibration moves its constants)."""
        plan = parse(config, profile)  # unusable input raises BadInput (the CLI exits 2)
        workload = plan_workload(plan)
        reasons = problems(plan)
        if reasons:
            return EvalResult.infeasible("; ".join(reasons))
        res = simulate(plan, workload)
        overflow = res.kv_overflow()
        if overflow:
            return EvalResult.infeasible(
                f"the {overflow[1]}-cell KV cache overflows (the running slots need "
                f"{overflow[0]} cells): llama-server fails every request then ('Context size "
                "has been exceeded'); raise kv_cache_tokens or lower max_num_seqs")
        if res.unfinished:
            return EvalResult.infeasible(
                f"{res.unfinished} of {len(workload)} requests never completed "
                "(KV cache too small for the requests admitted together)")
        metrics = serving_metrics(plan, res, workload)
        if plan.engine == "llama.cpp":
            metrics["kv_cache_tokens"] = float(plan.kv_cache_tokens)
            metrics["kv_peak_tokens"] = float(max(e.peak_used for e in res.engines))
        else:
            for role, _, tp, pp, ep in plan.engine_kinds():
                mem = engine_memory(plan, tp, pp, ep)
                prefix = "" if role == "mixed" else f"{role}_"
                metrics[f"{prefix}weight_gib_per_gpu"] = mem.weights / GIB
                metrics[f"{prefix}kv_cache_tokens"] = float(mem.kv_tokens(plan.kv_block_size))
        artifacts: dict[str, Any] = {"steps": res.steps, "workload": workload.description,
                                     "engine": plan.engine, "profile": profile.path}
        bands = profile.bands({m: metrics[m] for m in METRICS if m in metrics})
        if bands:
            artifacts["bands"] = bands
            artifacts.update(bands)
        return EvalResult.ok(metrics, artifacts=artifacts)

    def environment(self) -> dict[str, str]:
        # engine profiles, GPU and model catalogs and the workload catalog (named workloads
        # and the bundled traces): a change to any of them changes what a config simulates to
        digest = hashlib.sha256()
        paths = sorted(profile_dir("serving").glob("*.toml"))
        for sub in ("hardware", "models", "workloads"):
            paths += sorted((CATALOG_DIR / sub).glob("*"))
        if self.options.get("profile"):
            paths.append(Path(self.options["profile"]).expanduser())
        for path in paths:
            digest.update(path.name.encode())
            if path.is_file():
                digest.update(path.read_bytes())
        return {"python": platform.python_version(),
                "serving_constants": digest.hexdigest()[:12]}


__all__ = ["METRICS", "ServingSimEvaluator", "clear_caches", "percentile", "serving_metrics"]
