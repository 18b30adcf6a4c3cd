"""A training plan: the config keys of ``training-sim``, their checks and derived degrees.

Shared by ``evaluators/training/sim.py`` (which scores a plan) and
``search_spaces/training.py`` (whose constraints are exactly :func:`plan_errors`), so that the
space and the simulator never disagree on what is valid.

Rank order (Megatron-LM ``tp-cp-dp-pp``): tensor-parallel ranks are adjacent, then context
parallel, then data parallel, pipeline stages outermost. MoE layers fold the same
``tp*cp*dp`` ranks of a stage into ``etp-ep-edp`` (Megatron-Core's parallel folding, Liu et
al. 2025): expert-tensor ranks adjacent, then expert-parallel ranks. The strides below follow
from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner import BadInput, as_written
from tuner.evaluators._catalog import (
    MODEL_KEYS,
    Hardware,
    Model,
    check_one_model,
    get_hardware,
    get_model,
    hardware_names,
    model_from_config,
)
from tuner.evaluators._profiles import Profile
from tuner.evaluators.training._profile import (
    DEFAULT_FRAMEWORK,
    FP8_RECIPES,
    framework_profile,
    stack,
)
from tuner.evaluators.training._stages import Layout, layout

RECOMPUTE = ("none", "selective", "full")
#: what selective recomputation may rebuild (Megatron-Core ``--recompute-modules``)
RECOMPUTE_MODULES = ("core_attn", "layernorm", "mlp_act", "moe_act", "mlp", "moe", "mla_up_proj")
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
    # software stack (a profile of constants: _profile.py) and torch.compile
    "framework": DEFAULT_FRAMEWORK, "compile": False,
    # uneven pipeline stages
    "pp_first_stage_layers": 0, "pp_last_stage_layers": 0, "pp_embedding_as_layer": False,
    "pp_loss_as_layer": False,
    # MoE: expert tensor parallelism (0: = tp), routing, all-to-all overlap
    "etp": 0, "moe_force_balance": False, "moe_capacity_factor": 0.0, "moe_a2a_overlap": False,
    "moe_dispatcher": "alltoall",
    # multi-token-prediction layers trained with the model (DeepSeek-V3: 1)
    "mtp_layers": 0,
    # hybrid sharding: ZeRO/FSDP shard group size (0: every data-parallel rank)
    "zero_shard_size": 0,
    # full recomputation of only this many layers per pipeline stage (0: all)
    "recompute_layers": 0,
    # gradient buffer / reduction and Adam-moment dtypes (default: the stack profile's)
    "grad_dtype": None, "optimizer_dtype": None,
    # experts as one grouped GEMM (default: the stack profile's) or a loop of GEMMs
    "moe_grouped_gemm": None,
    # fp8 scaling recipe of an fp8 run (default: the stack profile's)
    "fp8_recipe": None,
    # what selective recomputation rebuilds (default: the attention core)
    "recompute_modules": None,
    # with TP, the cross entropy runs on vocabulary-sharded logits (Megatron's vocab-parallel
    # loss, torchtitan's loss_parallel); false: the logits are all-gathered to the full
    # vocabulary on every TP rank first (DTensor ColwiseParallel output Replicate)
    "loss_parallel": True,
}
_POSITIVE_INTS = ("seq_len", "global_batch", "micro_batch", "num_gpus", "tp", "pp", "cp", "ep",
                  "pp_interleave")
_NONNEG_INTS = ("etp", "pp_first_stage_layers", "pp_last_stage_layers", "mtp_layers",
                "zero_shard_size", "recompute_layers")
_BOOLS = ("sequence_parallel", "offload_optimizer", "offload_activations", "dropout",
          "overlap_grad_reduce", "tp_comm_overlap", "allow_cross_node_tp", "compile",
          "pp_embedding_as_layer", "pp_loss_as_layer", "moe_force_balance", "moe_a2a_overlap",
          "loss_parallel")
STATE_DTYPES = ("fp32", "bf16")
MOE_DISPATCHERS = ("alltoall", "deepep")
_CHOICES = {"recompute": RECOMPUTE, "dtype": DTYPES, "attention_impl": ATTENTION_IMPLS,
            "moe_dispatcher": MOE_DISPATCHERS}
_OPTIONAL_CHOICES = {"grad_dtype": STATE_DTYPES, "optimizer_dtype": STATE_DTYPES,
                     "fp8_recipe": FP8_RECIPES}
ALLOWED_KEYS = frozenset(PLAN_DEFAULTS) | {"model"} | set(MODEL_KEYS)


class Plan:
    """A parsed, type-checked plan (validity is checked separately by :func:`plan_errors`).

    Attributes: every key of ``PLAN_DEFAULTS``, plus ``model`` (a catalog ``Model``), ``hw``
    (a ``Hardware``), ``dp``, ``num_micro`` (micro-batches per step; 0 when the degrees do
    not divide), ``model_key`` (hashable identity of the model, for caches), ``profile`` and
    ``stack`` (the software stack's constants, ``_profile.Stack``), ``etp`` resolved (= tp
    when not given), ``edp`` (expert data parallel: ``tp*cp*dp / (etp*ep)``) and ``layout``
    (``_stages.Layout``: layers per pipeline rank).
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
    if name is not None:
        check_one_model(config)
    if isinstance(name, str):
        m = _MODEL_CACHE.get(name)
        if m is None:
            m = _MODEL_CACHE[name] = get_model(name)
        return m, m.name
    if name is not None:
        get_model(name)  # raises BadInput with the valid names
    # the type is part of the key: 8.0 == 8 and True == 1, but only the int is a valid size
    key = tuple((k, type(config[k]).__name__, _hashable(config[k]))
                for k in MODEL_KEYS if k in config)
    m = _MODEL_CACHE.get(key)
    if m is None:
        m = _MODEL_CACHE[key] = model_from_config(config)
    return m, key


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


_OPTIONAL = ("inter_node_gbps", "grad_dtype", "optimizer_dtype", "moe_grouped_gemm",
             "recompute_modules", "fp8_recipe")
_REQUIRED = tuple(k for k, v in PLAN_DEFAULTS.items() if v is None and k not in _OPTIONAL)


def parse_plan(config: Mapping[str, Any], profile: Profile | None = None) -> Plan:
    """Type-check a config; raise ``BadInput`` naming the field for unusable input.

    ``profile``: the stack profile to run under (default: the one the config's
    ``framework`` names).
    """
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
            raise BadInput(k, f"{as_written(v)} must be a positive integer")
    for k in _NONNEG_INTS:
        v = d[k]
        if type(v) is not int or v < 0:
            raise BadInput(k, f"{as_written(v)} must be a non-negative integer")
    cf = d["moe_capacity_factor"]
    if isinstance(cf, bool) or not isinstance(cf, (int, float)) or not 0 <= cf < 1e6:
        raise BadInput("moe_capacity_factor", f"{cf!r} must be a number >= 0 (0: dropless)")
    z = d["zero_stage"]
    if type(z) is not int or z not in ZERO_STAGES:
        raise BadInput("zero_stage", f"{z!r}; allowed: 0, 1, 2, 3 (3 = FSDP full shard)")
    for k in _BOOLS:
        if type(d[k]) is not bool:
            raise BadInput(k, f"{as_written(d[k])} must be true or false")
    mods = d["recompute_modules"]
    if mods is None:
        d["recompute_set"] = ("core_attn",) if d["recompute"] == "selective" else ()
    else:
        if not isinstance(mods, (list, tuple)) or not all(
                isinstance(x, str) and x in RECOMPUTE_MODULES for x in mods):
            raise BadInput("recompute_modules", f"{mods!r} must be a list of: "
                           + ", ".join(RECOMPUTE_MODULES))
        if d["recompute"] != "selective":
            raise BadInput("recompute_modules", "needs recompute = selective")
        d["recompute_set"] = tuple(sorted(set(mods)))
    gg = d["moe_grouped_gemm"]
    if gg is not None and type(gg) is not bool:
        raise BadInput("moe_grouped_gemm", f"{gg!r} must be true or false")
    for k, allowed in _CHOICES.items():
        if d[k] not in allowed:
            raise BadInput(k, f"unknown {as_written(d[k])}; allowed: " + ", ".join(allowed))
    for k, allowed in _OPTIONAL_CHOICES.items():
        if d[k] is not None and d[k] not in allowed:
            raise BadInput(k, f"unknown {as_written(d[k])}; allowed: " + ", ".join(allowed)
                           + " (or leave it out for the stack's default)")
    gpn = config.get("gpus_per_node", hw.gpus_per_node)  # 0 is not "the GPU's default"
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
    prof = profile if profile is not None else framework_profile(d["framework"])
    d["profile"] = prof
    d["stack"] = st = stack(prof, hw, d["compile"], d["fp8_recipe"])
    d["etp"] = etp = d["etp"] or d["tp"]
    # bytes per parameter of the gradient buffer and of the Adam moments
    d["grad_bytes"] = 2.0 if d["grad_dtype"] == "bf16" else (
        4.0 if d["grad_dtype"] == "fp32" else st.grad_bytes)
    d["grouped_gemm"] = st.grouped_gemm if gg is None else gg
    d["moment_bytes"] = 4.0 if d["optimizer_dtype"] == "bf16" else (
        8.0 if d["optimizer_dtype"] == "fp32" else st.optimizer_bytes)
    expert_world = d["tp"] * d["cp"] * dp
    d["edp"] = expert_world // (etp * d["ep"]) if expert_world % (etp * d["ep"]) == 0 else 0
    d["layout"] = layout(model.num_layers,
                         model.first_dense_layers if model.num_experts else model.num_layers,
                         d["pp"], d["pp_interleave"], d["pp_first_stage_layers"],
                         d["pp_last_stage_layers"], d["pp_embedding_as_layer"],
                         d["pp_loss_as_layer"], st.balanced_split)
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
                    "(config key allow_cross_node_tp = true allows it)")
    if p.pp_interleave > 1 and p.pp == 1:
        errs.append(f"pp_interleave {p.pp_interleave} needs pp > 1")
    lay: Layout = p.layout
    if p.pp > 1 and p.profile["pipeline_split"] == "none":
        errs.append(f"pp {p.pp}: the {p.profile.name} stack has no pipeline parallelism")
    elif lay.error:
        errs.append(lay.error)
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
    if p.ep > 1 and not m.num_experts:
        errs.append(f"ep {p.ep} needs an MoE model ({m.name} is dense)")
    if m.num_experts:
        if m.num_experts % p.ep:
            errs.append(f"ep {p.ep} does not divide num_experts {m.num_experts}")
        if p.dp and not p.edp:
            world = p.tp * p.cp * p.dp
            errs.append(f"etp*ep = {p.etp}*{p.ep} does not divide tp*cp*dp = {world} (expert "
                        "parallel groups fold the attention's TP, CP and DP ranks)")
        if m.moe_ffn_hidden_size % p.etp:
            errs.append(f"etp {p.etp} does not divide moe_ffn_hidden_size "
                        f"{m.moe_ffn_hidden_size}")
        if p.etp != p.tp and p.tp > 1 and not p.sequence_parallel:
            errs.append(f"etp {p.etp} != tp {p.tp} needs sequence_parallel (each TP rank "
                        "routes its own share of the tokens)")
    if p.tp > 1 and p.tp_comm_overlap:
        if not p.stack.tp_overlap:
            errs.append(f"tp_comm_overlap: the {p.profile.name} stack does not overlap TP "
                        "communication with GEMMs")
        elif not p.sequence_parallel:
            errs.append("tp_comm_overlap needs sequence_parallel (the overlapped collectives "
                        "are the all-gather/reduce-scatter pair)")
    if p.moe_a2a_overlap and not p.stack.ep_a2a:
        errs.append(f"moe_a2a_overlap: the {p.profile.name} stack does not overlap the expert "
                    "all-to-all with another micro-batch's compute")
    if p.zero_shard_size:
        group = p.dp * p.cp
        if p.zero_stage == 0:
            errs.append("zero_shard_size needs zero_stage >= 1")
        elif group and group % p.zero_shard_size:
            errs.append(f"zero_shard_size {p.zero_shard_size} does not divide dp*cp = {group}")
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
    return {"tp": 1, "cp": p.tp, "ep": p.etp, "dp": p.tp * p.cp,
            "pp": p.tp * p.cp * max(p.dp, 1)}


__all__ = ["ALLOWED_KEYS", "ATTENTION_IMPLS", "DTYPES", "PLAN_DEFAULTS", "Plan", "RECOMPUTE",
           "RECOMPUTE_MODULES",
           "ZERO_STAGES", "parse_plan", "plan_errors", "resolve_hardware", "resolve_model",
           "strides"]
