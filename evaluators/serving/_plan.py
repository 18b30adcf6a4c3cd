"""From a serving config to a checked plan: keys, defaults, model geometry and GPU memory.

Shared by the ``serving`` search space and the ``serving-sim`` evaluator so both agree on what a
config means, what it costs in memory and why it cannot run.

Memory per GPU follows vLLM's start-up profile (``gpu_worker.determine_available_memory``):
``gpu_memory_utilization x visible memory - weights - activation peak - non-torch memory``
is left for the KV cache; constants are in ``data/engine.toml`` with their sources.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from evaluators._catalog import (INLINE_MODEL_KEYS, Hardware, Model, get_hardware,
                                 model_from_config)
from evaluators._perf import BYTES
from tuner import BadInput, UnknownName

ENGINE_DATA = Path(__file__).parent / "data" / "engine.toml"

WEIGHT_DTYPES = ("bf16", "fp8", "int4")
KV_DTYPES = ("bf16", "fp8")
PREEMPTION_MODES = ("recompute", "swap")
POLICIES = ("fcfs", "shortest_prompt_first", "priority")
GIB = 2**30

#: every key a serving-sim config may hold besides the model's inline dimensions
CONFIG_KEYS = (
    "model", "gpu", "num_gpus", "tp", "pp", "ep", "replicas",
    "disaggregated", "prefill_workers", "prefill_tp", "decode_workers", "decode_tp",
    "weight_dtype", "kv_dtype", "max_num_seqs", "max_num_batched_tokens", "chunked_prefill",
    "prefill_chunk_size", "mixed_prefill", "kv_block_size", "gpu_memory_utilization",
    "preemption_mode", "scheduling_policy", "swap_space_gib", "max_model_len", "kv_link_gbit_s",
    "api_overhead_ms", "workload", "slo_ttft_ms", "slo_tpot_ms",
)
MODEL_KEYS = tuple(f.name for f in dataclasses.fields(Model) if f.name not in ("name",))
ALLOWED_KEYS = frozenset(CONFIG_KEYS) | frozenset(MODEL_KEYS)


@functools.cache
def engine_constants() -> dict[str, Any]:
    """Calibration constants of the serving engine model (data, each with its source)."""
    with ENGINE_DATA.open("rb") as fh:
        return tomllib.load(fh)


def constant(hw: Hardware, section: str, key: str) -> float:
    """``[section] key`` of engine.toml; a GPU's ``[efficiency]`` table may override it
    as ``serving_<key>``."""
    override = hw.efficiency.get(f"serving_{key}")
    if override is not None:
        return float(override)
    table = engine_constants()[section]
    per_gpu = table.get(hw.name, {}) if isinstance(table.get(hw.name), dict) else {}
    return float(per_gpu.get(key, table[key]))


# -- model geometry ----------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """Per-GPU shapes of one model under tensor parallelism ``tp`` and expert parallelism
    ``ep`` (``ep`` divides ``tp``; experts are split ``ep`` ways and each expert ``tp/ep``
    ways, as vLLM does with ``--enable-expert-parallel`` when ``ep == tp``)."""

    model: Model
    tp: int
    ep: int
    #: (n, k) of each attention GEMM per layer on one GPU ("replicated" ones not divided)
    attn_gemms: tuple[tuple[int, int], ...]
    #: (n, k) of the dense MLP GEMMs of a dense layer
    mlp_gemms: tuple[tuple[int, int], ...]
    #: (n, k) of one routed expert's GEMMs (after expert TP) and shared-expert GEMMs
    expert_gemms: tuple[tuple[int, int], ...]
    shared_gemms: tuple[tuple[int, int], ...]
    heads: int  # query heads per GPU
    kv_heads: int  # KV heads per GPU (replicated when tp > kv heads)
    experts_local: int
    dense_layers: int
    moe_layers: int
    kv_bytes_per_token_layer: float  # per GPU, at 1 byte per element
    full_attn_layers: int
    swa_layers: int

    @property
    def num_layers(self) -> int:
        return self.dense_layers + self.moe_layers


def geometry(model: Model, tp: int, ep: int = 1) -> Geometry:
    h, hd = model.hidden_size, model.head_dim
    heads = max(1, model.num_heads // tp)
    kvh = max(1, model.num_kv_heads // tp)
    if model.attention == "mla":
        nope, rope = model.qk_nope_head_dim, model.qk_rope_head_dim
        v = model.v_head_dim or hd
        q = ((model.q_lora_rank, h), (heads * (nope + rope), model.q_lora_rank)) \
            if model.q_lora_rank else ((heads * (nope + rope), h),)
        attn = (*q, (model.kv_lora_rank + rope, h), (heads * (nope + v), model.kv_lora_rank),
                (h, heads * v))
        kv_elems = model.kv_lora_rank + rope  # the latent cache is replicated on every rank
    else:
        attn = ((heads * hd + 2 * kvh * hd, h), (h, heads * hd))
        kv_elems = 2 * kvh * hd
    up = 2 if model.gated_mlp else 1
    ffn = max(1, model.ffn_hidden_size // tp)
    mlp = ((up * ffn, h), (h, ffn))
    expert: tuple[tuple[int, int], ...] = ()
    shared: tuple[tuple[int, int], ...] = ()
    moe_layers = dense_layers = 0
    if model.is_moe:
        etp = max(1, tp // ep)
        effn = max(1, model.moe_ffn_hidden_size // etp)
        expert = ((up * effn, h), (h, effn))
        if model.num_shared_experts:
            sffn = max(1, model.moe_ffn_hidden_size * model.num_shared_experts // tp)
            shared = ((up * sffn, h), (h, sffn))
        dense_layers = model.first_dense_layers
        moe_layers = model.num_layers - dense_layers
    else:
        dense_layers = model.num_layers
    swa = 0
    if model.sliding_window and model.sliding_window_every:
        # every n-th layer is full attention, the others use the sliding window
        swa = model.num_layers - model.num_layers // model.sliding_window_every
    return Geometry(model, tp, ep, attn, mlp, expert, shared, heads, kvh,
                    model.num_experts // ep if model.is_moe else 0, dense_layers, moe_layers,
                    float(kv_elems), model.num_layers - swa, swa)


def _gemm_params(gemms: tuple[tuple[int, int], ...]) -> int:
    return sum(n * k for n, k in gemms)


def weight_bytes_per_gpu(g: Geometry, pp: int, weight_dtype: str) -> float:
    """Weights on the most loaded GPU (largest pipeline stage, embedding or LM head on it)."""
    m = g.model
    wb = weight_element_bytes(weight_dtype)
    layer_dense = _gemm_params(g.attn_gemms) + _gemm_params(g.mlp_gemms)
    layer_moe = (_gemm_params(g.attn_gemms) + g.experts_local * _gemm_params(g.expert_gemms)
                 + _gemm_params(g.shared_gemms))
    router = m.hidden_size * m.num_experts * BYTES["bf16"] if m.is_moe else 0
    per_layer_dense = layer_dense * wb + 4 * m.hidden_size  # + two RMSNorm vectors
    per_layer_moe = layer_moe * wb + router + 4 * m.hidden_size
    total_layers = (g.dense_layers * per_layer_dense + g.moe_layers * per_layer_moe)
    # the largest stage holds ceil(L/pp) layers of the average kind
    stage = total_layers * math.ceil(g.num_layers / pp) / g.num_layers
    vocab = m.vocab_size * m.hidden_size / g.tp * BYTES["bf16"]  # vocab-parallel, kept bf16
    ends = vocab * (1 if m.tied_embeddings or pp > 1 else 2)
    return stage + ends


def weight_element_bytes(dtype: str) -> float:
    """Bytes per weight element including quantization scales (int4: one bf16 scale per
    group of 128, as AWQ/GPTQ/Marlin checkpoints store)."""
    return BYTES[dtype] + (2 / 128 if dtype == "int4" else 0.0)


# -- memory ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Memory:
    """Per-GPU memory of one engine, in bytes, and what is left for the KV cache."""

    usable: float
    weights: float
    activation: float
    non_torch: float
    kv: float
    kv_bytes_per_token: float  # all full-attention layers of the GPU's stage
    swa_bytes_per_seq: float  # sliding-window layers: a window's worth per running sequence

    def kv_tokens(self, block_size: int) -> int:
        if self.kv <= 0:
            return 0
        return int(self.kv // (self.kv_bytes_per_token * block_size)) * block_size


def memory(g: Geometry, hw: Hardware, pp: int, weight_dtype: str, kv_dtype: str,
           utilization: float, max_tokens: int, max_seqs: int) -> Memory:
    m = g.model
    visible = hw.hbm_gib * GIB * constant(hw, "memory", "visible_fraction")
    usable = utilization * visible
    weights = weight_bytes_per_gpu(g, pp, weight_dtype)
    # activation peak of vLLM's profiling forward pass with max_num_batched_tokens tokens:
    # the widest live tensors (MLP up-projection output + activation output, QKV, residual
    # stream) in bf16, plus fp32 logits for max_num_seqs sequences (the dummy sampler run).
    ffn = max(m.ffn_hidden_size / g.tp, m.moe_ffn_hidden_size * (m.top_k or 1) / g.tp)
    width = 3 * ffn + sum(n for n, _ in g.attn_gemms[:1]) + 4 * m.hidden_size
    act = max_tokens * width * BYTES["bf16"] + max_seqs * m.vocab_size / g.tp * 4
    non_torch = constant(hw, "memory", "non_torch_gib") * GIB
    if g.tp * pp > 1:
        non_torch += constant(hw, "memory", "non_torch_gib_multi_gpu") * GIB
    kv = usable - weights - act - non_torch
    layers_stage = math.ceil(g.num_layers / pp)
    frac_full = g.full_attn_layers / g.num_layers
    per_layer = g.kv_bytes_per_token_layer * BYTES[kv_dtype]
    kv_tok = per_layer * layers_stage * frac_full
    swa = per_layer * layers_stage * (1 - frac_full) * m.sliding_window
    return Memory(usable, weights, act, non_torch, kv, kv_tok, swa)


# -- config ------------------------------------------------------------------------------
def _int(config: Mapping[str, Any], key: str, default: int | None, low: int = 1) -> int | None:
    v = config.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise BadInput(key, f"{v!r} must be an integer >= {low}")
    return v


def _choice(config: Mapping[str, Any], key: str, default: str, valid: tuple[str, ...]) -> str:
    v = config.get(key, default)
    if v not in valid:
        raise UnknownName(key, v, list(valid))
    return v


def _bool(config: Mapping[str, Any], key: str, default: bool) -> bool:
    v = config.get(key, default)
    if not isinstance(v, bool):
        raise BadInput(key, f"{v!r} must be true or false")
    return v


def _float(config: Mapping[str, Any], key: str, default: float | None, low: float = 0.0,
           high: float = math.inf) -> float | None:
    v = config.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low < v <= high):
        raise BadInput(key, f"{v!r} must be a number in ({low:g}, {high:g}]")
    return float(v)


@dataclass(frozen=True)
class Plan:
    """A validated serving config with every default filled in."""

    model: Model
    hw: Hardware
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
    api_overhead_ms: float
    workload: Any
    slo_ttft_ms: float | None
    slo_tpot_ms: float | None

    @property
    def gpus_used(self) -> int:
        if self.disaggregated:
            return self.prefill_workers * self.prefill_tp + self.decode_workers * self.decode_tp
        return self.replicas * self.tp * self.pp

    def engine_kinds(self) -> list[tuple[str, int, int, int, int]]:
        """(role, engines, tp, pp, ep) for each kind of engine in the deployment."""
        if self.disaggregated:
            return [("prefill", self.prefill_workers, self.prefill_tp, 1,
                     min(self.ep, self.prefill_tp)),
                    ("decode", self.decode_workers, self.decode_tp, 1,
                     min(self.ep, self.decode_tp))]
        return [("mixed", self.replicas, self.tp, self.pp, self.ep)]


def parse(config: Mapping[str, Any]) -> Plan:
    """Check types and names, fill defaults; raise ``BadInput`` for unusable input."""
    unknown = sorted(set(config) - ALLOWED_KEYS)
    if unknown:
        raise BadInput(unknown[0], "unknown config key; allowed: "
                       + ", ".join(CONFIG_KEYS) + " (or inline model dimensions: "
                       + ", ".join(INLINE_MODEL_KEYS) + ", ...)")
    if "workload" not in config:
        raise BadInput("workload", "required: a table such as {\"mode\": \"poisson\", "
                       "\"rate\": 8, \"num_requests\": 1000, \"input_len\": 512, "
                       "\"output_len\": 256} or a catalog workload name")
    model = model_from_config(config)
    hw = get_hardware(config.get("gpu", "h100_sxm"))
    big = hw.hbm_gib >= 70 and not hw.name.startswith("a100")
    tp = _int(config, "tp", 1)
    disagg = _bool(config, "disaggregated", False)
    block = _int(config, "kv_block_size", 16)
    max_tokens = _int(config, "max_num_batched_tokens", 8192 if big else 2048)
    chunk = _int(config, "prefill_chunk_size", None)
    plan = Plan(
        model=model, hw=hw, num_gpus=_int(config, "num_gpus", None), tp=tp,
        pp=_int(config, "pp", 1), ep=_int(config, "ep", 1), replicas=_int(config, "replicas", 1),
        disaggregated=disagg, prefill_workers=_int(config, "prefill_workers", 1),
        prefill_tp=_int(config, "prefill_tp", tp),
        decode_workers=_int(config, "decode_workers", 1), decode_tp=_int(config, "decode_tp", tp),
        weight_dtype=_choice(config, "weight_dtype", "bf16", WEIGHT_DTYPES),
        kv_dtype=_choice(config, "kv_dtype", "bf16", KV_DTYPES),
        max_num_seqs=_int(config, "max_num_seqs", 1024 if big else 256),
        max_num_batched_tokens=max_tokens,
        chunked_prefill=_bool(config, "chunked_prefill", True),
        prefill_chunk_size=min(chunk, max_tokens) if chunk else max_tokens,
        mixed_prefill=_bool(config, "mixed_prefill", True),
        kv_block_size=block,
        gpu_memory_utilization=_float(config, "gpu_memory_utilization", 0.9, 0.0, 1.0),
        preemption_mode=_choice(config, "preemption_mode", "recompute", PREEMPTION_MODES),
        scheduling_policy=_choice(config, "scheduling_policy", "fcfs", POLICIES),
        swap_space_gib=_float(config, "swap_space_gib", 4.0, -1e-9),
        max_model_len=_int(config, "max_model_len", model.max_seq_len),
        kv_link_gbit_s=_float(config, "kv_link_gbit_s", None),
        api_overhead_ms=_float(config, "api_overhead_ms",
                               constant(hw, "frontend", "request_overhead_ms"), -1e-9),
        workload=config["workload"],
        slo_ttft_ms=_float(config, "slo_ttft_ms", None),
        slo_tpot_ms=_float(config, "slo_tpot_ms", None),
    )
    if plan.model.is_moe is False and plan.ep != 1:
        raise BadInput("ep", f"{plan.ep}: expert parallelism needs an MoE model "
                       f"({plan.model.name} is dense); use 1")
    return plan


def workload_key(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


@functools.lru_cache(maxsize=64)
def _cached_workload(key: str) -> Any:
    from evaluators.serving._workloads import load_workload

    return load_workload(json.loads(key))


def plan_workload(plan: Plan) -> Any:
    """The plan's workload (cached: the space's constraints and the evaluator share it)."""
    return _cached_workload(workload_key(plan.workload))


def _parallel_problems(model: Model, tp: int, ep: int, gpus_per_node: int, who: str) -> list[str]:
    out = []
    if model.num_heads % tp:
        out.append(f"{who}tp {tp} does not divide {model.num_heads} attention heads")
    kv = model.num_kv_heads
    if model.attention != "mla" and (kv % tp if tp <= kv else tp % kv):
        out.append(f"{who}tp {tp} and {kv} KV heads: one must divide the other")
    if tp > gpus_per_node:
        out.append(f"{who}tp {tp} spans nodes ({gpus_per_node} GPUs per node): tensor "
                   "parallelism across nodes is not modelled")
    if ep > 1:
        if tp % ep:
            out.append(f"{who}ep {ep} does not divide tp {tp}")
        if model.num_experts % ep:
            out.append(f"{who}ep {ep} does not divide {model.num_experts} experts")
    return out


def problems(plan: Plan) -> list[str]:
    """Why this plan cannot run (empty when it can), each reason with its numbers."""
    m, hw = plan.model, plan.hw
    out: list[str] = []
    for role, _, tp, pp, ep in plan.engine_kinds():
        who = "" if role == "mixed" else f"{role} "
        out += _parallel_problems(m, tp, ep, hw.gpus_per_node, who)
        if pp > m.num_layers:
            out.append(f"pp {pp} exceeds {m.num_layers} layers")
    if plan.num_gpus is not None and plan.gpus_used > plan.num_gpus:
        out.append(f"uses {plan.gpus_used} GPUs, budget is {plan.num_gpus}")
    if plan.max_num_batched_tokens < plan.max_num_seqs:
        out.append(f"max_num_batched_tokens {plan.max_num_batched_tokens} < max_num_seqs "
                   f"{plan.max_num_seqs}: every running sequence needs a token per step")
    wl = plan_workload(plan)
    stats = wl.stats()
    longest = int(stats["max_total_len"])
    if longest > plan.max_model_len:
        out.append(f"a request needs {longest} tokens > max_model_len {plan.max_model_len}")
    if not plan.chunked_prefill and stats["max_input_len"] > plan.max_num_batched_tokens:
        out.append(f"without chunked prefill a {int(stats['max_input_len'])}-token prompt "
                   f"needs max_num_batched_tokens >= that, has {plan.max_num_batched_tokens}")
    if out:
        return out
    for role, _, tp, pp, ep in plan.engine_kinds():
        who = "" if role == "mixed" else f"{role} workers: "
        mem = engine_memory(plan, tp, pp, ep)
        # at least one longest request (and its sliding-window share) must fit in the cache of
        # one (virtual) engine, which holds 1/pp of it
        need_kv = (min(longest, plan.max_model_len) * mem.kv_bytes_per_token
                   + mem.swa_bytes_per_seq) * pp
        need = mem.weights + mem.activation + mem.non_torch + need_kv
        if need > mem.usable:
            out.append(f"{who}needs {need / GIB:.1f} GiB per GPU (weights "
                       f"{mem.weights / GIB:.1f}, activations {mem.activation / GIB:.1f}, "
                       f"runtime {mem.non_torch / GIB:.1f}, KV for one {longest}-token request "
                       f"{need_kv / GIB:.1f}), has {mem.usable / GIB:.1f} GiB "
                       f"({plan.gpu_memory_utilization:g} x {hw.hbm_gib:g} GiB {hw.name})")
    return out


def engine_memory(plan: Plan, tp: int, pp: int, ep: int) -> Memory:
    g = geometry(plan.model, tp, ep)
    return memory(g, plan.hw, pp, plan.weight_dtype, plan.kv_dtype,
                  plan.gpu_memory_utilization, plan.max_num_batched_tokens, plan.max_num_seqs)


__all__ = ["ALLOWED_KEYS", "CONFIG_KEYS", "Geometry", "KV_DTYPES", "Memory", "POLICIES",
           "PREEMPTION_MODES", "Plan", "WEIGHT_DTYPES", "constant", "engine_memory",
           "geometry", "memory", "parse", "plan_workload", "problems",
           "weight_bytes_per_gpu"]
