"""From a serving config to a checked plan: engine, keys, defaults, memory and feasibility.

Shared by the ``serving`` search space and the ``serving-sim`` evaluator so both agree on what a
config means, what it costs in memory and why it cannot run.

The config key ``engine`` (vllm | sglang | trtllm | llama.cpp) picks the serving stack; its
profile (``profiles/<engine>.toml``, or the evaluator option ``profile``) supplies the
defaults each engine ships with (token budget, running-request cap, chunked prefill, KV block
size, memory fraction) and the constants of the step model. GPU engines take the plan and
scheduler keys in ``GPU_KEYS``; llama.cpp takes exactly the knobs of ``llama-server`` that
``serving-real`` drives (``LLAMA_CPP_KEYS``, parsed in ``_cpu_plan``).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner import BadInput, UnknownName, as_written
from tuner.evaluators._catalog import (
    INLINE_MODEL_KEYS,
    MODEL_KEYS,
    Hardware,
    Model,
    get_hardware,
    model_from_config,
)
from tuner.evaluators._profiles import Profile, load_profile
from tuner.evaluators.serving._geometry import (
    GIB,
    Geometry,
    Memory,
    WeightMix,
    element_bytes,
    geometry,
    memory,
    weight_bytes_per_gpu,
    weight_element_bytes,
)
from tuner.evaluators.serving._profile_check import ADMISSIONS, checked

ENGINES = ("vllm", "sglang", "trtllm", "llama.cpp")
GPU_ENGINES = ("vllm", "sglang", "trtllm")
WEIGHT_DTYPES = ("bf16", "fp8", "int4")
#: formats routed experts may ship in apart from the rest (gpt-oss: MXFP4 experts, bf16 attention)
EXPERT_WEIGHT_DTYPES = (*WEIGHT_DTYPES, "mxfp4")
KV_DTYPES = ("bf16", "fp8")
#: how fp8 weights carry their scales: per tensor or channel (ModelOpt, vLLM's dynamic fp8) or
#: per 128x128 block with 1x128 activation groups (DeepSeek-V3/R1, Qwen3-*-FP8 checkpoints)
FP8_RECIPES = ("tensorwise", "blockwise")
PREEMPTION_MODES = ("recompute", "swap")
POLICIES = ("fcfs", "shortest_prompt_first", "priority")

#: keys every engine takes (the deployment, the load, the SLOs)
COMMON_KEYS = ("engine", "model", "gpu", "num_gpus", "replicas", "workload", "slo_ttft_ms",
               "slo_tpot_ms", "api_overhead_ms", "max_model_len")
#: keys of the GPU engines (vLLM, SGLang, TensorRT-LLM)
GPU_KEYS = COMMON_KEYS + (
    "tp", "pp", "ep", "dp_attention", "disaggregated", "prefill_workers", "prefill_tp",
    "decode_workers", "decode_tp", "weight_dtype", "expert_weight_dtype", "fp8_recipe",
    "kv_dtype", "max_num_seqs", "max_num_batched_tokens", "chunked_prefill", "prefill_chunk_size",
    "mixed_prefill", "kv_block_size", "gpu_memory_utilization", "preemption_mode",
    "scheduling_policy", "swap_space_gib", "kv_link_gbit_s", "offline", "num_scheduler_steps",
    "async_scheduling")
#: llama-server's knobs as serving-real maps them (evaluators/serving/_engines.py), plus the
#: weights' format (a property of the GGUF file, like ``model``)
LLAMA_CPP_KEYS = COMMON_KEYS + (
    "max_num_seqs", "max_num_batched_tokens", "ubatch_size", "kv_dtype", "kv_cache_tokens",
    "threads", "threads_batch", "flash_attn", "chunked_prefill", "tp", "pp", "weight_dtype",
    "disaggregated")
#: every key a serving-sim config may hold besides the model's inline dimensions
CONFIG_KEYS = tuple(dict.fromkeys(GPU_KEYS + LLAMA_CPP_KEYS))
ALLOWED_KEYS = frozenset(CONFIG_KEYS) | frozenset(MODEL_KEYS)


def stack_profile(config: Mapping[str, Any], override: Profile | None = None) -> Profile:
    """The profile a config runs under: ``override`` (the evaluator option ``profile``, a file
    refining a shipped profile; a config that names no ``engine`` runs on its engine) or the
    shipped profile of its ``engine``."""
    engine = engine_of(config)
    if override is not None:
        if "engine" in config and override.name != engine:
            raise BadInput("evaluator.options.profile", f"{override.path} refines the "
                           f"{override.name!r} profile but the config's engine is {engine!r}")
        return override
    return load_profile("serving", engine, "engine")


def engine_of(config: Mapping[str, Any]) -> str:
    engine = config.get("engine", "vllm")
    if engine not in ENGINES:
        raise UnknownName("engine", engine, list(ENGINES))
    return engine


# -- config parsing helpers ----------------------------------------------------------------
def _field(config: Mapping[str, Any], key: str) -> str:
    """The key, or where its default came from when the config leaves it to the profile."""
    return key if key in config else f"{key} (the engine profile's default)"


def _int(config: Mapping[str, Any], key: str, default: int | None, low: int = 1) -> int | None:
    v = config.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise BadInput(_field(config, key), f"{as_written(v)} must be an integer >= {low}")
    return v


def _choice(config: Mapping[str, Any], key: str, default: str, valid: tuple[str, ...]) -> str:
    v = config.get(key, default)
    if v not in valid:
        raise UnknownName(_field(config, key), v, list(valid))
    return v


def _bool(config: Mapping[str, Any], key: str, default: bool) -> bool:
    v = config.get(key, default)
    if not isinstance(v, bool):
        raise BadInput(_field(config, key), f"{as_written(v)} must be true or false")
    return v


def _float(config: Mapping[str, Any], key: str, default: float | None, high: float = math.inf,
           zero_ok: bool = False) -> float | None:
    v = config.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) \
            or not ((v >= 0 if zero_ok else v > 0) and v <= high):
        want = (">= 0" if zero_ok else "> 0") + ("" if high == math.inf else f" and <= {high:g}")
        raise BadInput(_field(config, key), f"{as_written(v)} must be a number {want}")
    return float(v)


@dataclass(frozen=True)
class Plan:
    """A validated serving config with every default filled in."""

    model: Model
    hw: Hardware
    engine: str
    profile: Profile
    num_gpus: int | None
    tp: int
    pp: int
    ep: int
    replicas: int
    disaggregated: bool
    prefill_workers: int
    prefill_tp: int
    decode_workers: int
    decode_tp: int
    weight_dtype: str
    kv_dtype: str
    max_num_seqs: int
    max_num_batched_tokens: int
    chunked_prefill: bool
    prefill_chunk_size: int
    mixed_prefill: bool
    kv_block_size: int
    gpu_memory_utilization: float
    preemption_mode: str
    scheduling_policy: str
    swap_space_gib: float
    max_model_len: int
    kv_link_gbit_s: float | None
    api_overhead_ms: float  # front-end latency at no load (0: offline, no API server)
    workload: Any
    slo_ttft_ms: float | None
    slo_tpot_ms: float | None
    dp_attention: bool = False
    offline: bool = False
    #: decode steps per scheduler call (vLLM V0's ``--num-scheduler-steps``; 1: every step)
    num_scheduler_steps: int = 1
    #: attention-DP ranks that share the token budget and a given max_num_seqs (SGLang divides
    #: them; the plan's values are per rank)
    budget_ranks: int = 1
    #: host work of step n+1 overlaps GPU step n (vLLM ``--async-scheduling``, SGLang's and
    #: TensorRT-LLM's overlap schedulers); by default the profile's ``cpu_overlap``
    async_scheduling: bool = False
    fp8_recipe: str = "tensorwise"
    #: the routed experts' format where the checkpoint stores them apart (None: weight_dtype)
    expert_weight_dtype: str | None = None
    # llama.cpp only
    ubatch_size: int = 512
    kv_cache_tokens: int = 0
    threads: int = 1
    threads_batch: int = 1
    flash_attn: bool = True
    # set by composing evaluators (deployment-sim), never by a serving-sim config: a
    # per-layer-group weight mix, and GEMM time multipliers for (decode-sized, prefill-sized)
    # row counts from the kernel model's efficiency at the chosen tiles
    weight_mix: WeightMix | None = None
    gemm_time_scale: tuple[float, float] = (1.0, 1.0)

    def c(self, key: str) -> Any:
        """A constant of the engine's profile."""
        return self.profile.constants[key]

    @property
    def admission(self) -> str:
        return str(self.c("admission"))

    @property
    def gpus_used(self) -> int:
        if self.disaggregated:
            return self.prefill_workers * self.prefill_tp + self.decode_workers * self.decode_tp
        return self.replicas * self.tp * self.pp

    def engine_kinds(self) -> list[tuple[str, int, int, int, int]]:
        """(role, engines, tp, pp, ep) for each kind of engine in the deployment. Under
        attention data parallelism every GPU of a replica is an engine of its own (its
        requests, its KV cache); its MoE layers still span the replica's ``tp`` GPUs."""
        if self.disaggregated:
            return [("prefill", self.prefill_workers, self.prefill_tp, 1,
                     min(self.ep, self.prefill_tp)),
                    ("decode", self.decode_workers, self.decode_tp, 1,
                     min(self.ep, self.decode_tp))]
        count = self.replicas * (self.tp if self.dp_attention else 1)
        return [("mixed", count, self.tp, self.pp, self.ep)]

    @property
    def frontends(self) -> int:
        """API servers (one per replica or prefill worker) serving the client."""
        return self.prefill_workers if self.disaggregated else self.replicas


def _check_keys(config: Mapping[str, Any], engine: str) -> None:
    unknown = sorted(set(config) - ALLOWED_KEYS)
    if unknown:
        raise BadInput(unknown[0], "unknown config key; allowed: " + ", ".join(CONFIG_KEYS)
                       + " (or inline model dimensions: " + ", ".join(INLINE_MODEL_KEYS)
                       + ", ...)")
    keys = LLAMA_CPP_KEYS if engine == "llama.cpp" else GPU_KEYS
    foreign = sorted(k for k in set(config) - set(keys) if k in CONFIG_KEYS)
    if foreign:
        raise BadInput(foreign[0], f"{engine} has no such knob; its keys: " + ", ".join(keys))


def default_memory_fraction(prof: Profile, hw: Hardware, tp: int, pp: int, budget: int,
                            dp_attention: bool) -> float:
    """The engine's memory fraction when the config leaves it unset: the profile's fixed value,
    or (``reserve_mib`` > 0: SGLang 0.5.3+, ``server_args._handle_gpu_memory_settings``) what
    is left of the GPU after the reserve for activations and CUDA graphs."""
    fixed = float(prof["reserve_mib"])
    if fixed <= 0:
        return float(prof["default_memory_fraction"])
    gpu_mib = hw.hbm_gib * 1024 * float(prof["visible_fraction"])
    graphs = graph_max_batch(prof, hw, tp)
    reserve = (fixed + prof["reserve_mib_per_prefill_token"] * max(budget, 2048)
               + prof["reserve_mib_per_graph_batch"] * graphs
               + prof["reserve_mib_per_gpu"] * tp * pp)
    if dp_attention:  # padding per attention-DP rank; SGLang adds half again above 300 graphs
        reserve += prof["reserve_mib_per_dp_graph_batch"] * graphs * tp * (
            1.5 if graphs > 300 else 1.0)
    if gpu_mib > 60 * 1024:  # SGLang's floor on large GPUs
        reserve = max(reserve, float(prof["reserve_min_mib"]))
    return max(0.0, round((gpu_mib - reserve) / gpu_mib, 3))


def gpu_size(prof: Profile, hw: Hardware) -> str:
    """Suffix of the engine defaults for this GPU: ``"_small_gpu"`` below the engine's size
    threshold (vLLM also counts the A100 80GB as small), else ``""``."""
    small = hw.hbm_gib < float(prof["small_gpu_below_gib"]) or (
        bool(prof["a100_is_small_gpu"]) and hw.name.startswith("a100"))
    return "_small_gpu" if small else ""


def graph_max_batch(prof: Profile, hw: Hardware, tp: int) -> int:
    """Largest decode batch the engine captures a CUDA graph for on this GPU at this tp."""
    return int(prof["cuda_graph_max_batch" + ("_tp4" if tp >= 4 else "") + gpu_size(prof, hw)])


def parse(config: Mapping[str, Any], profile: Profile | None = None) -> Plan:
    """Check types and names, fill the engine's defaults; raise ``BadInput`` for unusable
    input. ``profile`` replaces the engine's shipped profile (calibration, user profiles)."""
    for key, value in config.items():
        if value is None:  # JSON null: not a value of any key
            raise BadInput(key, "null: give a value, or leave the key out for its default")
    engine = engine_of(config) if profile is None or "engine" in config else profile.name
    _check_keys(config, engine)
    if "workload" not in config:
        raise BadInput("workload", "required: a table such as {\"mode\": \"poisson\", "
                       "\"rate\": 8, \"num_requests\": 1000, \"input_len\": 512, "
                       "\"output_len\": 256} or a catalog workload name")
    prof = checked(profile or stack_profile(config))
    if prof.name != engine:
        raise BadInput("engine", f"{engine!r} runs under the {engine!r} profile, not "
                       f"{prof.name!r}")
    if engine == "llama.cpp":
        from tuner.evaluators.serving._cpu_plan import parse_llama_cpp

        return parse_llama_cpp(config, prof)
    if config.get("weight_dtype") == "mxfp4":
        raise BadInput("weight_dtype", "mxfp4 is a format of routed experts: set "
                       "expert_weight_dtype = \"mxfp4\" (MoE models); weight_dtype takes "
                       + ", ".join(WEIGHT_DTYPES))
    model = model_from_config(config)
    hw = get_hardware(config.get("gpu", "h100_sxm"))
    if hw.kind != "gpu":
        raise BadInput("gpu", f"{hw.name} is a {hw.kind} profile: {engine} is modelled on "
                       "GPUs (engine = \"llama.cpp\" runs on CPU profiles)")
    tp, pp = _int(config, "tp", 1), _int(config, "pp", 1)
    dp_attention = _bool(config, "dp_attention", False)
    disagg = _bool(config, "disaggregated", False)
    small = gpu_size(prof, hw)
    max_tokens = _int(config, "max_num_batched_tokens", int(prof[f"default_token_budget{small}"]))
    chunk = _int(config, "prefill_chunk_size", int(prof["default_prefill_chunk"]) or None)
    max_seqs = _int(config, "max_num_seqs", int(prof[f"default_max_num_seqs{small}"]))
    rank_tokens, rank_chunk = max_tokens, chunk
    split = dp_attention and bool(prof["dp_attention_splits_budgets"])
    if split:
        # the budgets are the replica's, shared by its attention-DP ranks (a default
        # max_num_seqs is already per rank: the engine sizes it from the rank's KV pool)
        # (below one per rank: ``problems`` names it)
        rank_tokens = max_tokens // tp
        rank_chunk = max(1, chunk // tp) if chunk else chunk
        if "max_num_seqs" in config:
            max_seqs //= tp
    offline = _bool(config, "offline", False)
    api = 0.0 if offline else _float(config, "api_overhead_ms", float(prof["api_latency_ms"]),
                                     zero_ok=True)
    plan = Plan(
        model=model, hw=hw, engine=engine, profile=prof, num_gpus=_int(config, "num_gpus", None),
        tp=tp, pp=pp, ep=_int(config, "ep", 1),
        replicas=_int(config, "replicas", 1),
        disaggregated=disagg, prefill_workers=_int(config, "prefill_workers", 1),
        prefill_tp=_int(config, "prefill_tp", tp),
        decode_workers=_int(config, "decode_workers", 1), decode_tp=_int(config, "decode_tp", tp),
        weight_dtype=_choice(config, "weight_dtype", "bf16", WEIGHT_DTYPES),
        kv_dtype=_choice(config, "kv_dtype", "bf16", KV_DTYPES),
        max_num_seqs=max_seqs,
        max_num_batched_tokens=rank_tokens,
        chunked_prefill=_bool(config, "chunked_prefill", bool(prof["default_chunked_prefill"])),
        prefill_chunk_size=min(rank_chunk, rank_tokens) if rank_chunk else rank_tokens,
        mixed_prefill=_bool(config, "mixed_prefill", bool(prof["default_mixed_prefill"])),
        kv_block_size=_int(config, "kv_block_size", int(prof["default_kv_block_size"])),
        gpu_memory_utilization=_float(config, "gpu_memory_utilization", default_memory_fraction(
            prof, hw, tp, pp, max_tokens, dp_attention), 1.0),
        preemption_mode=_choice(config, "preemption_mode", "recompute", PREEMPTION_MODES),
        scheduling_policy=_choice(config, "scheduling_policy", "fcfs", POLICIES),
        swap_space_gib=_float(config, "swap_space_gib", 4.0, zero_ok=True),
        max_model_len=_int(config, "max_model_len", model.max_seq_len),
        kv_link_gbit_s=_float(config, "kv_link_gbit_s", None),
        api_overhead_ms=api,
        workload=config["workload"],
        slo_ttft_ms=_float(config, "slo_ttft_ms", None),
        slo_tpot_ms=_float(config, "slo_tpot_ms", None),
        dp_attention=dp_attention, offline=offline,
        num_scheduler_steps=_int(config, "num_scheduler_steps", 1) or 1,
        async_scheduling=_bool(config, "async_scheduling", bool(prof["cpu_overlap"])),
        budget_ranks=tp if split else 1,
        fp8_recipe=_choice(config, "fp8_recipe", "tensorwise", FP8_RECIPES),
        expert_weight_dtype=(_choice(config, "expert_weight_dtype", "", EXPERT_WEIGHT_DTYPES)
                             if "expert_weight_dtype" in config else None),
    )
    if plan.model.is_moe is False and plan.ep != 1:
        raise BadInput("ep", f"{plan.ep}: expert parallelism needs an MoE model "
                       f"({plan.model.name} is dense); use 1")
    if plan.expert_weight_dtype is not None and not plan.model.is_moe:
        raise BadInput("expert_weight_dtype", f"{plan.model.name} is dense (no routed experts); "
                       "leave it unset and use weight_dtype")
    if plan.dp_attention and not plan.model.is_moe:
        raise BadInput("dp_attention", f"attention data parallelism shares MoE layers across "
                       f"GPUs; {plan.model.name} is dense (use replicas)")
    return plan


def workload_key(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


@functools.lru_cache(maxsize=64)
def _cached_workload(key: str) -> Any:
    from tuner.evaluators.serving._workloads import load_workload

    return load_workload(json.loads(key))


def plan_workload(plan: Plan) -> Any:
    """The plan's workload (cached: the space's constraints and the evaluator share it)."""
    return _cached_workload(workload_key(plan.workload))


def _parallel_problems(plan: Plan, tp: int, ep: int, who: str) -> list[str]:
    model, out = plan.model, []
    atp = 1 if plan.dp_attention else tp
    if model.num_heads % atp:
        out.append(f"{who}tp {tp} does not divide {model.num_heads} attention heads")
    kv = model.num_kv_heads
    if model.attention != "mla" and (kv % atp if atp <= kv else atp % kv):
        out.append(f"{who}tp {tp} and {kv} KV heads: one must divide the other")
    if tp > plan.hw.gpus_per_node:
        out.append(f"{who}tp {tp} spans nodes ({plan.hw.gpus_per_node} GPUs per node): tensor "
                   "parallelism across nodes is not modelled")
    if ep > 1:
        if tp % ep:
            out.append(f"{who}ep {ep} does not divide tp {tp}")
        if model.num_experts % ep:
            out.append(f"{who}ep {ep} does not divide {model.num_experts} experts")
    return out


def problems(plan: Plan) -> list[str]:
    """Why this plan cannot run (empty when it can), each reason with its numbers."""
    if plan.engine == "llama.cpp":
        from tuner.evaluators.serving._cpu_plan import llama_cpp_problems

        return llama_cpp_problems(plan)
    m, hw = plan.model, plan.hw
    out: list[str] = []
    if plan.dp_attention and (plan.disaggregated or plan.pp > 1):
        out.append("dp_attention is modelled for aggregated plans without pipeline stages")
    for key in ("max_num_batched_tokens", "max_num_seqs"):
        if getattr(plan, key) < 1:  # a replica's budget split among its attention-DP ranks
            n = plan.budget_ranks
            out.append(f"{key} is shared by {n} attention-DP ranks ({plan.engine} gives each "
                       f"{key} // {n} = 0): use at least {n}")
    if out:
        return out
    for role, _, tp, pp, ep in plan.engine_kinds():
        who = "" if role == "mixed" else f"{role} "
        out += _parallel_problems(plan, tp, ep, who)
        if pp > m.num_layers:
            out.append(f"pp {pp} exceeds {m.num_layers} layers")
    if plan.num_gpus is not None and plan.gpus_used > plan.num_gpus:
        out.append(f"uses {plan.gpus_used} GPUs, budget is {plan.num_gpus}")
    # vLLM refuses a budget below max_num_seqs (SchedulerConfig); elsewhere the decodes run
    # and prompts get what budget is left
    if plan.engine == "vllm" and plan.mixed_prefill \
            and plan.max_num_batched_tokens < plan.max_num_seqs:
        out.append(f"max_num_batched_tokens {plan.max_num_batched_tokens} < max_num_seqs "
                   f"{plan.max_num_seqs}: every running sequence needs a token per step")
    wl = plan_workload(plan)
    stats = wl.stats()
    longest = int(stats["max_total_len"])
    if longest > plan.max_model_len:
        out.append(f"a request needs {longest} tokens > max_model_len {plan.max_model_len}")
    if not plan.chunked_prefill and stats["max_input_len"] > plan.max_num_batched_tokens:
        per_rank = (f" per rank ({plan.budget_ranks} attention-DP ranks share "
                    f"{plan.max_num_batched_tokens * plan.budget_ranks})"
                    if plan.budget_ranks > 1 else "")
        out.append(f"without chunked prefill a {int(stats['max_input_len'])}-token prompt "
                   f"needs max_num_batched_tokens >= that, has {plan.max_num_batched_tokens}"
                   + per_rank)
    if out:
        return out
    for role, _, tp, pp, ep in plan.engine_kinds():
        who = "" if role == "mixed" else f"{role} workers: "
        mem = engine_memory(plan, tp, pp, ep)
        # at least one longest request (and its sliding-window share) must fit in the cache of
        # one (virtual) engine, which holds 1/pp of it
        need_kv = (min(longest, plan.max_model_len) * mem.kv_bytes_per_token
                   + mem.swa_bytes_per_seq) * pp
        if need_kv > mem.kv:
            need = mem.overhead_in_usable + need_kv
            out.append(f"{who}needs {need / GIB:.1f} GiB per GPU (weights "
                       f"{mem.weights / GIB:.1f}, activations {mem.activation / GIB:.1f}, "
                       f"runtime {mem.non_torch / GIB:.1f}, KV for one {longest}-token request "
                       f"{need_kv / GIB:.1f}), has {mem.usable / GIB:.1f} GiB "
                       f"({plan.gpu_memory_utilization:g} x the {hw.hbm_gib:g} GiB {hw.name}'s "
                       f"{hw.hbm_gib * plan.c('visible_fraction'):.1f} GiB visible, "
                       f"{plan.engine}'s '{plan.c('memory_fraction_of')}' KV sizing)")
    return out


def plan_geometry(plan: Plan, tp: int, ep: int) -> Geometry:
    """Shapes of one engine kind of a plan, MXFP4 experts in its engine's padded layout."""
    pad = [1, 1]
    if plan.expert_weight_dtype == "mxfp4":  # whole numbers >= 1 (_profile_check)
        pad = [plan.c("mxfp4_expert_hidden_multiple"), plan.c("mxfp4_expert_ffn_multiple")]
    return geometry(plan.model, tp, ep, plan.dp_attention, (pad[0], pad[1]))


def engine_memory(plan: Plan, tp: int, pp: int, ep: int) -> Memory:
    g = plan_geometry(plan, tp, ep)
    return memory(g, plan.hw, pp, plan.weight_dtype, plan.kv_dtype,
                  plan.gpu_memory_utilization, plan.max_num_batched_tokens, plan.max_num_seqs,
                  plan.profile, plan.weight_mix, plan.expert_weight_dtype)


__all__ = ["ADMISSIONS", "ALLOWED_KEYS", "CONFIG_KEYS", "ENGINES", "EXPERT_WEIGHT_DTYPES",
           "FP8_RECIPES", "GIB", "GPU_ENGINES", "GPU_KEYS", "Geometry", "KV_DTYPES",
           "LLAMA_CPP_KEYS", "Memory", "POLICIES", "PREEMPTION_MODES", "Plan", "WEIGHT_DTYPES",
           "WeightMix", "element_bytes", "engine_memory", "engine_of", "geometry", "memory",
           "parse", "plan_geometry", "plan_workload", "problems", "stack_profile",
           "weight_bytes_per_gpu", "weight_element_bytes"]
