"""Training stack profiles: which software stack runs the plan, as named physical constants.

A profile (``profiles/<framework>.toml``, loaded by ``evaluators/_profiles.py``) holds what a
stack adds to the hardware's physics: how close its linear layers get to the GPU's GEMM
curve, which fused-attention generation it runs, how much HBM traffic its element-wise work
moves (fused kernels or eager PyTorch, with or without ``torch.compile``), the host time per
layer it cannot hide, how much of each collective it overlaps with compute, which copies of
the weights, gradients and optimizer state it keeps, and its allocator's overhead. The config
key ``framework`` picks the profile; the evaluator option ``profile`` (a ``.toml`` written by
``tuner calibrate`` or by hand) replaces it.

:data:`SCHEMA` is the contract every profile meets: each constant's type and physical range.
A shipped profile missing one, or a user file naming an unknown one or a value outside its
range, is refused with the constant's name.
"""

from __future__ import annotations

import tomllib
import weakref
from pathlib import Path
from typing import Any

from tuner import BadInput, UnknownName, as_written
from tuner.evaluators._catalog import Hardware
from tuner.evaluators._perf import eff
from tuner.evaluators._profiles import Profile, load_profile, profile_names

FRAMEWORKS = ("megatron", "torchtitan", "fsdp", "deepspeed")
DEFAULT_FRAMEWORK = "megatron"
ATTENTION_KERNELS = ("fa2", "fa3", "cudnn")
FP8_RECIPES = ("delayed", "tensorwise", "blockwise")
PIPELINE_SPLITS = ("strict", "balanced", "none")

#: constant -> (type, allowed range or choices)
SCHEMA: dict[str, tuple[type, Any]] = {
    # compute
    "gemm_efficiency": (float, (0.3, 1.2)),
    "attention_kernel": (str, ATTENTION_KERNELS),
    "elementwise_traffic": (float, (0.5, 8.0)),
    "elementwise_traffic_compiled": (float, (0.5, 8.0)),
    "layer_overhead_us": (float, (0.0, 5000.0)),
    "layer_overhead_us_compiled": (float, (0.0, 5000.0)),
    "step_overhead_ms": (float, (0.0, 10000.0)),
    "microbatch_overhead_ms": (float, (0.0, 1000.0)),
    # communication
    "grad_reduce_overlap": (float, (0.0, 1.0)),
    "fsdp_overlap": (float, (0.0, 1.0)),
    "tp_comm_overlap": (bool, None),
    "tp_backward_overlap": (bool, None),
    "tp_overlap_sm_cost": (float, (0.0, 1.0)),
    "a2a_efficiency": (float, (0.05, 1.0)),
    "deepep_efficiency": (float, (0.05, 1.4)),
    "ep_a2a_overlap": (bool, None),
    "ep_overlap_sm_cost": (float, (0.0, 1.0)),
    "moe_imbalance": (float, (1.0, 4.0)),
    "moe_sync_host_us": (float, (0.0, 20000.0)),
    "grouped_gemm": (bool, None),
    "pipeline_split": (str, PIPELINE_SPLITS),
    # memory
    "weight_bytes": (float, (0.0, 6.0)),
    "fp8_weight_bytes": (float, (0.0, 6.0)),
    "gather_bytes": (float, (0.0, 4.0)),
    "fp8_gather_bytes": (float, (0.0, 4.0)),
    "master_bytes": (float, (0.0, 4.0)),
    "grad_bytes": (float, (0.0, 4.0)),
    "optimizer_bytes": (float, (0.0, 16.0)),
    "fsdp_prefetch_layers": (int, (0, 8)),
    "cuda_context_gib": (float, (0.0, 8.0)),
    "nccl_buffer_gib": (float, (0.0, 16.0)),
    "fragmentation": (float, (0.0, 1.0)),
    "logit_bytes": (float, (2.0, 16.0)),
    # fp8
    "fp8_recipe": (str, FP8_RECIPES),
    "fp8_cast_bytes": (float, (0.0, 16.0)),
    "fp8_amax_history": (int, (0, 4096)),
}


def _check(profile: Profile, where: str) -> None:
    """Every schema constant present, of its type, inside its range; nothing else."""
    consts = profile.constants
    for key in consts:
        if key not in SCHEMA:
            raise BadInput(f"{where}.constants.{key}", "unknown training-profile constant; "
                           "allowed: " + ", ".join(SCHEMA))
    for key, (kind, allowed) in SCHEMA.items():
        if key not in consts:
            raise BadInput(f"{where}.constants.{key}", "missing (every training profile "
                           "states it)")
        v = consts[key]
        ok = isinstance(v, kind) and not (kind is not bool and isinstance(v, bool))
        if kind is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not ok:
            what = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
            raise BadInput(f"{where}.constants.{key}", f"{as_written(v)} must be {what[kind]}")
        if kind is str and v not in allowed:
            raise BadInput(f"{where}.constants.{key}", f"unknown {v!r}; allowed: "
                           + ", ".join(allowed))
        if kind in (int, float) and not allowed[0] <= v <= allowed[1]:
            raise BadInput(f"{where}.constants.{key}", f"{as_written(v)} is outside "
                           f"[{allowed[0]:g}, {allowed[1]:g}]")


#: profiles already checked, by id; weak, so calibration's one-off profiles do not pile up
_CHECKED: weakref.WeakValueDictionary[int, Profile] = weakref.WeakValueDictionary()


def checked(profile: Profile, where: str = "profile") -> Profile:
    """``profile`` after the schema check (once per profile object)."""
    if _CHECKED.get(id(profile)) is not profile:
        _check(profile, where)
        _CHECKED[id(profile)] = profile
    return profile


_SHIPPED: dict[str, Profile] = {}


def framework_profile(framework: Any) -> Profile:
    """The shipped profile of a framework name (``UnknownName`` lists the allowed ones)."""
    prof = _SHIPPED.get(framework) if isinstance(framework, str) else None
    if prof is None:
        if not isinstance(framework, str) or framework not in FRAMEWORKS:
            raise UnknownName("framework", framework, list(FRAMEWORKS))
        prof = _SHIPPED[framework] = checked(load_profile("training", framework, "framework"),
                                             f"profile {framework}")
    return prof


def profile_file(path: Any, field: str = "evaluator.options.profile") -> Profile:
    """A user's profile file (``base`` = a framework name, overriding some constants)."""
    if not isinstance(path, str) or not path.endswith(".toml"):
        raise BadInput(field, f"{path!r} must be a .toml profile path (or pick a shipped "
                       "stack with the config key framework: " + ", ".join(FRAMEWORKS) + ")")
    return checked(load_profile("training", path, field), field)


# -- attention kernel efficiencies ---------------------------------------------------------
_KERNELS_FILE = Path(__file__).parent / "data" / "attention_kernels.toml"
_KERNELS: dict[str, dict[str, list[float]]] | None = None


def attention_efficiency(hw: Hardware, kernel: str) -> tuple[float, float]:
    """(forward, backward) achieved fraction of the bf16 peak of ``kernel`` on ``hw``."""
    global _KERNELS
    if _KERNELS is None:
        with _KERNELS_FILE.open("rb") as fh:
            _KERNELS = tomllib.load(fh)
    row = _KERNELS.get(hw.name, {}).get(kernel)
    if row:
        return float(row[0]), float(row[1])
    return eff(hw, "attn_max"), eff(hw, "attn_bwd_max")


class Stack:
    """A profile's constants resolved for one GPU, as attributes for the hot loops."""

    __slots__ = ("profile", "key", "gemm", "attn_fwd", "attn_bwd", "ew", "layer_overhead",
                 "step_overhead", "micro_overhead", "grad_overlap", "fsdp_overlap",
                 "tp_overlap", "tp_bwd_overlap", "tp_sm_cost", "a2a_eff", "deepep_eff",
                 "ep_a2a", "ep_sm_cost", "imbalance", "moe_sync_host", "grouped_gemm",
                 "balanced_split",
                 "weight_bytes", "master_bytes", "grad_bytes", "optimizer_bytes", "prefetch",
                 "context_bytes", "nccl_bytes", "frag", "logit_bytes", "fp8_recipe",
                 "fp8_weight_bytes", "gather_bytes", "fp8_gather_bytes", "fp8_cast_bytes",
                 "fp8_elem", "amax_history")

    def __init__(self, profile: Profile, hw: Hardware, compiled: bool,
                 fp8_recipe: str | None = None) -> None:
        c = profile.constants
        self.profile = profile
        self.fp8_recipe = fp8_recipe or c["fp8_recipe"]  # the run's, else the stack's
        self.key = (id(profile), hw.name, compiled, self.fp8_recipe)
        self.gemm = float(c["gemm_efficiency"])
        self.attn_fwd, self.attn_bwd = attention_efficiency(hw, c["attention_kernel"])
        self.ew = float(c["elementwise_traffic_compiled" if compiled else "elementwise_traffic"])
        self.layer_overhead = 1e-6 * float(
            c["layer_overhead_us_compiled" if compiled else "layer_overhead_us"])
        self.step_overhead = 1e-3 * float(c["step_overhead_ms"])
        self.micro_overhead = 1e-3 * float(c["microbatch_overhead_ms"])
        self.grad_overlap = float(c["grad_reduce_overlap"])
        self.fsdp_overlap = float(c["fsdp_overlap"])
        self.tp_overlap = bool(c["tp_comm_overlap"])
        self.tp_bwd_overlap = bool(c["tp_backward_overlap"])
        self.tp_sm_cost = float(c["tp_overlap_sm_cost"])
        self.a2a_eff = float(c["a2a_efficiency"])
        self.deepep_eff = float(c["deepep_efficiency"])
        self.ep_a2a = bool(c["ep_a2a_overlap"])
        self.ep_sm_cost = float(c["ep_overlap_sm_cost"])
        self.imbalance = float(c["moe_imbalance"])
        self.moe_sync_host = 1e-6 * float(c.get("moe_sync_host_us", 0.0))
        self.grouped_gemm = bool(c["grouped_gemm"])
        self.balanced_split = c["pipeline_split"] == "balanced"
        self.weight_bytes = float(c["weight_bytes"])
        self.master_bytes = float(c["master_bytes"])
        self.grad_bytes = float(c["grad_bytes"])
        self.optimizer_bytes = float(c["optimizer_bytes"])
        self.prefetch = int(c["fsdp_prefetch_layers"])
        self.context_bytes = float(c["cuda_context_gib"]) * (1 << 30)
        self.nccl_bytes = float(c["nccl_buffer_gib"]) * (1 << 30)
        self.frag = float(c["fragmentation"])
        self.logit_bytes = float(c["logit_bytes"])
        self.fp8_weight_bytes = float(c["fp8_weight_bytes"])
        self.gather_bytes = float(c["gather_bytes"])
        self.fp8_gather_bytes = float(c["fp8_gather_bytes"])
        self.fp8_cast_bytes = float(c["fp8_cast_bytes"])
        self.amax_history = int(c["fp8_amax_history"])
        # HBM bytes to quantise one element; dynamic tensorwise scaling reads every bf16
        # element once more for its amax (2 bytes)
        self.fp8_elem = self.fp8_cast_bytes + (2.0 if self.fp8_recipe == "tensorwise" else 0.0)


_STACKS: dict[tuple, Stack] = {}


def stack(profile: Profile, hw: Hardware, compiled: bool,
          fp8_recipe: str | None = None) -> Stack:
    """Cached :class:`Stack` of a profile on a GPU (``fp8_recipe``: the run's, if it says)."""
    key = (id(profile), id(hw), compiled, fp8_recipe)
    s = _STACKS.get(key)
    if s is None or s.profile is not profile:
        if len(_STACKS) > 256:
            _STACKS.clear()
        s = _STACKS[key] = Stack(profile, hw, compiled, fp8_recipe)
    return s


def shipped_names() -> list[str]:
    return profile_names("training")


__all__ = ["ATTENTION_KERNELS", "DEFAULT_FRAMEWORK", "FRAMEWORKS", "SCHEMA", "Stack",
           "attention_efficiency", "checked", "framework_profile", "profile_file",
           "shipped_names", "stack"]
