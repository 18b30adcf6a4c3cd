"""``training-sim``: an analytical model of one LLM training step under a parallel plan.

Config keys (``tuner evaluate training-sim --config '{...}'``):

* model: ``model`` (catalog name or HF id) or inline dimensions (``hidden_size``,
  ``num_layers``, ``num_heads``, ``num_kv_heads``, ``ffn_hidden_size``, ``vocab_size`` and
  the architecture keys ``gated_mlp``, ``tied_embeddings``, ``attention``; + ``num_experts``,
  ``top_k``, ``moe_ffn_hidden_size`` ... for MoE; see ``evaluators/_catalog.py``);
* shape: ``seq_len``, ``global_batch`` (sequences per step), ``micro_batch``;
* cluster: ``gpu`` (catalog name), ``num_gpus``, ``gpus_per_node`` (default: the GPU's usual
  node, 8), ``inter_node_gbps`` (network Gbit/s per GPU; default: the GPU's usual cluster);
* stack: ``framework`` (megatron | torchtitan | fsdp | deepspeed: a profile of constants in
  ``profiles/``), ``compile`` (torch.compile, PyTorch-native stacks);
* plan: ``tp``, ``pp``, ``cp``, ``ep``, ``etp`` (expert tensor parallel, default tp),
  ``pp_interleave``, ``zero_stage`` (0-3; 3 = FSDP full shard), ``zero_shard_size`` (hybrid
  sharding), ``recompute`` (none | selective | full), ``sequence_parallel``, ``dtype`` (bf16 |
  fp16 | fp8), ``offload_optimizer``, ``offload_activations``;
* uneven pipelines: ``pp_first_stage_layers``, ``pp_last_stage_layers``,
  ``pp_embedding_as_layer``, ``pp_loss_as_layer``;
* MoE: ``moe_force_balance``, ``moe_capacity_factor`` (0: dropless), ``moe_a2a_overlap``;
  ``mtp_layers`` (multi-token prediction);
* implementation: ``attention_impl`` (flash | unfused: Megatron-LM's pre-FlashAttention path),
  ``dropout`` (false), ``overlap_grad_reduce`` (true), ``tp_comm_overlap`` (false).

Data parallelism is derived: ``dp = num_gpus / (tp * pp * cp)``; gradient accumulation is
``global_batch / (dp * micro_batch)`` micro-batches per step.

Metrics:

* ``step_time_s``: one optimizer step; ``tokens_per_s`` = global_batch * seq_len / step.
* ``tflops_per_gpu``: FLOPs per second per GPU counted as Narayanan et al. (SC'21, Eq. 3):
  model FLOPs of forward + backward plus the FLOPs of recomputation actually performed
  (full recomputation: another forward of every layer; selective: the attention core).
* ``mfu``: model FLOPs utilization (PaLM, Chowdhery et al. 2022, App. B; Megatron-LM): model
  FLOPs without recomputation per second / (num_gpus x dense peak of ``dtype``), 0..1.
  Attention is counted over the full ``s x s`` score matrix as both papers do.
* ``peak_memory_gib``: the largest per-GPU device memory over pipeline stages: tensors plus
  the profile's CUDA context, NCCL buffers and allocator fragmentation.
* ``cost_usd_per_mtok``: GPU-hours price of a million training tokens.

A plan that breaks a rule (degrees, divisibility) is ``infeasible`` with the reasons; one that
does not fit is ``infeasible`` with "needs X GiB per GPU, has Y GiB" and still reports its
metrics (what it would achieve if it fit), so samplers learn from it. Artifacts hold the time
and memory breakdowns, the profile's name and, when the profile carries an uncertainty (a
calibrated one), ``<metric>_lo`` / ``<metric>_hi``: a 90% band around each metric.

Calibration contract (``evaluators/_calibration.py``): ``profile_domain``,
``stack_profile(config)`` and ``evaluate_with(config, profile)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tuner import BadInput, BaseEvaluator, EvalResult, Option
from tuner.evaluators._profiles import Profile, check_bands
from tuner.evaluators.training._plan import ALLOWED_KEYS, parse_plan, plan_errors
from tuner.evaluators.training._profile import FRAMEWORKS, checked, framework_profile, profile_file
from tuner.evaluators.training._step import breakdown, clear_caches, estimate

#: evaluator options; None = the stack profile's value
DEFAULT_OPTIONS: dict[str, Any] = {
    # CUDA context, cuBLAS/cuDNN workspaces and NCCL buffers (GiB); default: the profile's
    "workspace_gib": None,
    # caching-allocator fragmentation, as a share of activation + transient memory
    "fragmentation": None,
    # a profile file (.toml) replacing the framework's shipped profile
    "profile": None,
}


class TrainingSimEvaluator(BaseEvaluator):
    """Scores a parallel training plan analytically in tens of microseconds.

    Options: ``workspace_gib`` and ``fragmentation`` (override the profile's memory
    allowance), ``profile`` (a calibrated profile file, ``tuner calibrate``).
    """

    name = "training-sim"
    version = "2"
    metrics = ("step_time_s", "tokens_per_s", "tflops_per_gpu", "mfu", "peak_memory_gib",
               "cost_usd_per_mtok")
    domains = ("training",)
    options_table = {
        "workspace_gib": Option((int, float), None, check=lambda x: x >= 0,
                                must="a number >= 0"),
        "fragmentation": Option((int, float), None, check=lambda x: x >= 0,
                                must="a number >= 0"),
        "profile": Option(str, None, "a calibrated framework profile (tuner calibrate)",
                          check=lambda p: p.endswith(".toml"), must="a profile file (.toml)"),
    }
    config_keys = ALLOWED_KEYS
    profile_domain = "training"
    #: what a calibration fit weighs (step time, tokens/s, TFLOP/s and MFU restate one figure)
    calibration_metrics = ("tokens_per_s", "peak_memory_gib")
    analytical = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._checked = False
        self._override: Profile | None = None

    def _check_options(self) -> None:
        for k, v in self.options.items():
            if k not in DEFAULT_OPTIONS:
                raise BadInput(f"evaluator.options.{k}", "unknown option; allowed: "
                               + ", ".join(DEFAULT_OPTIONS))
            if k == "profile":
                self._override = profile_file(v)
                check_bands(self._override, self.metrics, "evaluator.options.profile")
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise BadInput(f"evaluator.options.{k}", f"{v!r} must be a number >= 0")
        self._checked = True

    def environment(self) -> dict[str, str]:
        env = {**super().environment(), "model": "analytical-v2"}
        if not self._checked:
            self._check_options()
        prof = self._override
        if prof is not None:  # the file's content, not its path, decides cached results
            raw = json.dumps({"c": dict(prof.constants), "u": dict(prof.uncertainty)},
                             sort_keys=True, default=str)
            env["profile"] = hashlib.sha256(raw.encode()).hexdigest()[:16]
        else:
            shipped = {f: dict(framework_profile(f).constants) for f in FRAMEWORKS}
            raw = json.dumps(shipped, sort_keys=True, default=str)
            env["profiles"] = hashlib.sha256(raw.encode()).hexdigest()[:16]
        return env

    def check_context(self, context: Mapping[str, Any]) -> None:
        if "profile" in self.options:  # a profile for another framework than the context's
            self.stack_profile(context)

    # -- calibration contract ------------------------------------------------------------
    def stack_profile(self, config: Mapping[str, Any]) -> Profile:
        """The profile a config runs under: the ``profile`` option, else its framework's."""
        if not self._checked:
            self._check_options()
        prof = self._override
        if prof is not None:
            fw = config.get("framework") if isinstance(config, Mapping) else None
            if fw is not None and fw != prof.name:  # one of the two is a mistake
                raise BadInput("evaluator.options.profile", f"{prof.path} refines the "
                               f"{prof.name!r} profile but the config's framework is {fw!r}")
            return prof
        fw = config.get("framework", "megatron") if isinstance(config, Mapping) else None
        return framework_profile(fw)

    def evaluate_with(self, config: Mapping[str, Any], profile: Profile) -> EvalResult:
        if not self._checked:
            self._check_options()
        p = parse_plan(config, checked(profile, "profile"))
        errs = plan_errors(p)
        if errs:
            return EvalResult.infeasible("; ".join(errs))
        metrics, artifacts, need, peak = estimate(p, self.options.get("workspace_gib"),
                                                  self.options.get("fragmentation"))
        if profile.uncertainty:
            artifacts.update(profile.bands(metrics))
        cap = float(p.hw.hbm_gib)
        if need > cap:
            return EvalResult.infeasible(
                f"out of memory: needs {need:.1f} GiB per GPU, has {cap:g} GiB "
                f"({breakdown(*peak)})", metrics, artifacts)
        return EvalResult.ok(metrics, artifacts)

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        return self.evaluate_with(config, self.stack_profile(config))


__all__ = ["DEFAULT_OPTIONS", "TrainingSimEvaluator", "clear_caches", "estimate"]
