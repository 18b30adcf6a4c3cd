"""A training plan: the config keys of ``training-sim``, their checks and derived degrees.

Shared by ``evaluators/training/sim.py`` (which scores a plan) and
``search_spaces/training.py`` (whose constraints are exactly :func:`plan_errors`), so that the
space and the simulator never disagree on what is valid.

Rank order (Megatron-LM ``tp-cp-ep-dp-pp``): tensor-parallel ranks are adjacent, then context
parallel, then data parallel (expert parallel groups are carved out of DP x CP), pipeline stages
outermost. The strides below follow from it.
"""

from __future__ import annotations

from typing import Any, Mapping

from evaluators._catalog import (INLINE_MODEL_KEYS, Hardware, Model, _MODEL_OPTIONAL,
                                 get_hardware, get_model, hardware_names, model_from_config)
from tuner import BadInput

RECOMPUTE = ("none", "selective", "full")
DTYPES = ("bf16", "fp16", "fp8")
ATTENTION_IMPLS = ("flash", "unfused")
ZERO_STAGES = (0, 1, 2, 3)

#: config keys with their defaults (None: required)
PLAN_DEFAULTS: dict[str, Any] = {
    "seq_len": None, "global_batch": None, "micro_batch": None,
    "gpu": None, "num_gpus": None, "gpus_per_node": 0, "inter_node_gbps": None,
    "tp": 1, "pp": 1, "cp": 1, "ep": 1, "pp_interleave": 1, "zero_stage": 0,
    "recompute": "none", "sequence_parallel": False, "dtype": "bf16",
    "offload_optimizer": False, "offload_activations": False,
    "attention_impl": "flash", "dropout": False, "overlap_grad_reduce": True,
    "tp_comm_overlap": False, "allow_cross_node_tp": False,
}
_POSITIVE_INTS = ("seq_len", "global_batch", "micro_batch", "num_gpus", "tp", "pp", "cp", "ep",
                  "pp_interleave")
_BOOLS = ("sequence_parallel", "offload_optimizer", "offload_activations", "dropout",
          "overlap_grad_reduce", "tp_comm_overlap", "allow_cross_node_tp")
_CHOICES = {"recompute": RECOMPUTE, "dtype": DTYPES, "attention_impl": ATTENTION_IMPLS}
ALLOWED_KEYS = frozenset(PLAN_DEFAULTS) | {"model"} | set(INLINE_MODEL_KEYS) | set(_MODEL_OPTIONAL)


class Plan:
    """A parsed, type-checked plan (validity is checked separately by :func:`plan_errors`).

    Attributes: every key of ``PLAN_DEFAULTS``, plus ``model`` (a catalog ``Model``), ``hw``
    (a ``Hardware``), ``dp``, ``num_micro`` (micro-batches per step; 0 when the degrees do
    not divide) and ``model_key`` (hashable identity of the model, for caches).
    """

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in PLAN_DEFAULTS}


_HW_CACHE: dict[str, Hardware] = {}
_MODEL_CACHE: dict[Any, Model] = {}


def resolve_hardware(name: Any) -> Hardware:
    hw = _HW_CACHE.get(name) if isinstance(name, str) else None
    if hw is None:
        if name is None:
            raise BadInput("gpu", "missing; valid: " + ", ".join(hardware_names()))
        hw = get_hardware(name, "gpu")
        _HW_CACHE[name] = hw
    return hw


def resolve_model(config: Mapping[str, Any]) -> tuple[Model, Any]:
    """The model and a hashable key for it (catalog name or the inline dimensions)."""
    name = config.get("model")
    if name is not None and any(k in config for k in INLINE_MODEL_KEYS):
        raise BadInput("model", "give a catalog name or inline dimensions "
                       f"({', '.join(INLINE_MODEL_KEYS)}), not both")
    if isinstance(name, str):
        m = _MODEL_CACHE.get(name)
        if m is None:
            m = _MODEL_CACHE[name] = get_model(name)
        return m, m.name
    if name is not None:
        get_model(name)  # raises BadInput with the valid names
    key = tuple((k, _hashable(config[k])) for k in INLINE_MODEL_KEYS + _MODEL_OPTIONAL
                if k in config)
    m = _MODEL_CACHE.get(key)
    if m is None:
        m = _MODEL_CACHE[key] = model_from_config(config)
        _check_inline_model(m)
    return m, key


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _check_inline_model(m: Model) -> None:
    for k in ("num_experts", "top_k", "moe_ffn_hidden_size", "head_dim", "first_dense_layers",
              "num_shared_experts"):
        v = getattr(m, k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise BadInput(k, f"{v!r} must be a non-negative integer")
    if m.num_experts:
        if not 0 < m.top_k <= m.num_experts:
            raise BadInput("top_k", f"{m.top_k!r} must be in 1..num_experts ({m.num_experts})")
        if m.moe_ffn_hidden_size <= 0:
            raise BadInput("moe_ffn_hidden_size", "must be a positive integer for an MoE model")
    if m.num_heads % m.num_kv_heads:
        raise BadInput("num_kv_heads", f"{m.num_kv_heads} must divide num_heads {m.num_heads}")


_REQUIRED = tuple(k for k, v in PLAN_DEFAULTS.items() if v is None and k != "inter_node_gbps")


def parse_plan(config: Mapping[str, Any]) -> Plan:
    """Type-check a config; raise ``BadInput`` naming the field for unusable input."""
    if type(config) is not dict and not isinstance(config, Mapping):
        raise BadInput("config", f"{type(config).__name__} must be a JSON object")
    for k in config:
        if k not in ALLOWED_KEYS:
            raise BadInput(k, "unknown config key; allowed: "
                           + ", ".join(sorted(PLAN_DEFAULTS) + ["model", "<model dims>"]))
    model, model_key = resolve_model(config)
    hw = resolve_hardware(config.get("gpu"))
    p = Plan()
    d = p.__dict__
    d.update(PLAN_DEFAULTS)
    d.update(config)
    for k in _REQUIRED:
        if d[k] is None:
            raise BadInput(k, "missing (required)")
    for k in _POSITIVE_INTS:
        v = d[k]
        if type(v) is not int or v <= 0:
            raise BadInput(k, f"{v!r} must be a positive integer")
    z = d["zero_stage"]
    if type(z) is not int or z not in ZERO_STAGES:
        raise BadInput("zero_stage", f"{z!r}; allowed: 0, 1, 2, 3 (3 = FSDP full shard)")
    for k in _BOOLS:
        if type(d[k]) is not bool:
            raise BadInput(k, f"{d[k]!r} must be true or false")
    for k, allowed in _CHOICES.items():
        if d[k] not in allowed:
            raise BadInput(k, f"{d[k]!r}; allowed: " + ", ".join(allowed))
    gpn = d["gpus_per_node"] or hw.gpus_per_node
    if type(gpn) is not int or gpn <= 0:
        raise BadInput("gpus_per_node", f"{gpn!r} must be a positive integer")
    d["gpus_per_node"] = gpn
    ib = d["inter_node_gbps"]
    if ib is not None and (isinstance(ib, bool) or not isinstance(ib, (int, float)) or ib <= 0):
        raise BadInput("inter_node_gbps", f"{ib!r} must be a positive number (Gbit/s per GPU)")
    model_par = d["tp"] * d["pp"] * d["cp"]
    dp = d["num_gpus"] // model_par if d["num_gpus"] % model_par == 0 else 0
    per_step = dp * d["micro_batch"]
    d["dp"] = dp
    d["num_micro"] = (d["global_batch"] // per_step
                      if per_step and d["global_batch"] % per_step == 0 else 0)
    d["model"] = model
    d["model_key"] = model_key
    d["hw"] = hw
    return p


def plan_errors(p: Plan) -> list[str]:
    """Why a parsed plan cannot run (empty when it can), each reason with its numbers."""
    m, errs = p.model, []
    if p.dtype not in p.hw.peak_tflops:
        errs.append(f"dtype {p.dtype} is not supported on {p.hw.name} (supported: "
                    + ", ".join(d for d in DTYPES if d in p.hw.peak_tflops) + ")")
    model_par = p.tp * p.pp * p.cp
    if p.num_gpus % model_par:
        errs.append(f"tp*pp*cp = {p.tp}*{p.pp}*{p.cp} = {model_par} does not divide "
                    f"num_gpus {p.num_gpus}")
    if p.num_gpus % p.gpus_per_node and p.num_gpus > p.gpus_per_node:
        errs.append(f"num_gpus {p.num_gpus} is not a whole number of {p.gpus_per_node}-GPU nodes")
    if m.num_heads % p.tp:
        errs.append(f"tp {p.tp} does not divide num_heads {m.num_heads}")
    elif m.num_kv_heads % p.tp:
        errs.append(f"tp {p.tp} does not divide num_kv_heads {m.num_kv_heads} "
                    "(each TP rank needs whole KV heads)")
    if p.tp > p.gpus_per_node and not p.allow_cross_node_tp:
        errs.append(f"tp {p.tp} spans nodes of {p.gpus_per_node} GPUs "
                    "(set allow_cross_node_tp to allow it)")
    chunks = p.pp * p.pp_interleave
    if p.pp_interleave > 1 and p.pp == 1:
        errs.append(f"pp_interleave {p.pp_interleave} needs pp > 1")
    if m.num_layers % chunks:
        errs.append(f"num_layers {m.num_layers} is not divisible by pp*pp_interleave = {chunks}")
    if p.dp:
        per_step = p.dp * p.micro_batch
        if p.global_batch % per_step:
            errs.append(f"global_batch {p.global_batch} is not divisible by dp*micro_batch = "
                        f"{p.dp}*{p.micro_batch} = {per_step}")
        elif p.pp > 1:
            mb = p.num_micro
            if mb < p.pp:
                errs.append(f"{mb} micro-batches cannot fill a {p.pp}-stage pipeline "
                            f"(need global_batch/(dp*micro_batch) >= pp)")
            elif p.pp_interleave > 1 and mb % p.pp:
                errs.append(f"interleaved schedule needs micro-batches ({mb}) to be a multiple "
                            f"of pp ({p.pp})")
    if p.ep > 1:
        if not m.num_experts:
            errs.append(f"ep {p.ep} needs an MoE model ({m.name} is dense)")
        else:
            if m.num_experts % p.ep:
                errs.append(f"ep {p.ep} does not divide num_experts {m.num_experts}")
            if p.dp and (p.dp * p.cp) % p.ep:
                errs.append(f"ep {p.ep} does not divide dp*cp = {p.dp * p.cp} "
                            "(expert-parallel groups are carved out of data parallel)")
    if p.cp > 1:
        if p.seq_len % (2 * p.cp):
            errs.append(f"seq_len {p.seq_len} is not divisible by 2*cp = {2 * p.cp} "
                        "(load-balanced causal context parallelism)")
        if p.attention_impl != "flash":
            errs.append("context parallelism needs attention_impl = flash")
    if p.offload_optimizer and p.zero_stage == 0:
        errs.append("offload_optimizer needs zero_stage >= 1 (ZeRO-Offload shards the "
                    "optimizer first)")
    return errs


def strides(p: Plan) -> dict[str, int]:
    """Distance between consecutive ranks of each group in the global rank order."""
    return {"tp": 1, "cp": p.tp, "ep": p.tp * p.cp, "dp": p.tp * p.cp,
            "pp": p.tp * p.cp * max(p.dp, 1)}


__all__ = ["ALLOWED_KEYS", "ATTENTION_IMPLS", "DTYPES", "PLAN_DEFAULTS", "Plan", "RECOMPUTE",
           "ZERO_STAGES", "parse_plan", "plan_errors", "resolve_hardware", "resolve_model",
           "strides"]
