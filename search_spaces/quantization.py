"""Quantization mixes: bits per layer group for weights, activations and KV cache.

Context (fixed, not searched):

- ``model``: ``all-MiniLM-L6-v2`` (the real model that ``quant-real`` measures) or a catalog
  LLM name / HF id (``llama3.1-70b``, ...) for ``quant-sim``.
- ``gpu``, ``gpus`` (tensor-parallel degree), ``batch_size``, ``prompt_len``, ``output_len``,
  ``memory_fraction``: the deployment quant-sim times (catalog LLMs only).
- ``max_size_gib``, ``max_avg_bits``: optional budgets (a budget no mix in the space can meet
  is an error that names the closest feasible one).
- ``depth_bands`` (default 1): how many consecutive-layer bands get their own formats.
- ``pin``: per-unit formats that override the searched ones, e.g.
  ``{"layer0.mlp_down" = "int8", "embed" = "bf16"}``.

Parameters, per layer group (``qkv``, ``attn_out``, ``mlp_up`` (up and gate), ``mlp_down``):
``{role}_bits`` in 16 / 8 / 4; ``{role}_format`` int | fp8 (at 8 bits); ``{role}_group``
32 / 64 / 128 / -1 = per channel (at 4 bits). Then ``embed_bits`` (embeddings and LM head:
16 / 8 / 4-g128), ``act_bits`` (16 / 8, applied to the inputs of quantized linears),
``kv_bits`` (16 / 8 / 4, decoders only) and ``protect_frac``.

Why this parameterization. A per-layer space grows as 7^(4L): 10^270 points for Llama-70B,
which no sampler can search and no study can enumerate. Two facts make a compact one lose
little. (1) The layer *type* decides most of the sensitivity and all of the kernel choice: the
four groups have different shapes, outliers (MLP down sees the GELU/SiLU output) and serving
kernels, so each group gets its own format. (2) Along depth, sensitivity is concentrated in a
few layers (on MiniLM the measured int4-g128 sensitivity of a layer rises about five-fold from
the first layer to the last). So instead of a format per layer, one threshold
parameter, ``protect_frac``, raises the most sensitive fraction of layers (ordered by measured
sensitivity for MiniLM, by its resampled depth profile for catalog LLMs) one step up the
precision ladder (int4 -> int8, 8-bit -> bf16, activations and KV at 16 bits). The result is
7^4 x 3 x 2 x 3 = 43,218 points for MiniLM (x 3 KV widths for decoders), the same for any
depth; ``depth_bands`` > 1 trades that compactness for per-band freedom where it pays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tuner import BadInput, BaseSpace, Categorical, Param, UnknownName
from tuner.evaluators.quant._plan import (
    CONTEXT_KEYS,
    EIGHT_BIT_FORMATS,
    EMBED_BITS,
    INT4_GROUPS,
    KV_BITS,
    MINILM,
    PROTECT_FRACS,
    ROLES,
    Target,
    avg_bits,
    bits_per_weight,
    budget_violations,
    build_plan,
    param_name,
    parse_pins,
    resolve_target,
    size_gib,
    weight_format,
)

_SIM_DEFAULTS = {"gpu": "h100_sxm", "gpus": 1, "batch_size": 1, "prompt_len": 1024,
                 "output_len": 256, "memory_fraction": 0.9}


def _positive_int(ctx: dict[str, Any], key: str, high: int | None = None) -> None:
    v = ctx[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1 or (high and v > high):
        rng = f"1..{high}" if high else ">= 1"
        raise BadInput(f"space.context.{key}", f"{v!r} must be an integer {rng}")


class QuantSpace(BaseSpace):
    """Per-layer-group weight / activation / KV-cache precisions of one model."""

    name = "quantization"
    default_evaluator = "quant-sim"
    default_objectives = (("quality_drop", "minimize"), ("model_size_gib", "minimize"),
                          ("latency_ms", "minimize"))
    example_contexts = ({"model": MINILM},
                        {"model": "llama3.1-70b", "gpu": "h100_sxm", "batch_size": 8})

    def __init__(self, context: Mapping[str, Any] | None = None,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__(context, overrides)
        self._check_supported_values()
        self._check_budgets_reachable()

    # -- context ---------------------------------------------------------------------------
    def validate_context(self, context: dict[str, Any]) -> dict[str, Any]:
        for key in context:
            if key not in CONTEXT_KEYS:
                raise UnknownName("space.context", key, sorted(CONTEXT_KEYS))
        ctx = {"model": MINILM, **context}
        self.target: Target = resolve_target(ctx["model"], "space.context.model")
        if self.target.kind == "catalog":
            from tuner.evaluators._catalog import get_hardware

            ctx = {**_SIM_DEFAULTS, **ctx}
            get_hardware(ctx["gpu"], "space.context.gpu")
            for key in ("gpus", "batch_size", "prompt_len", "output_len"):
                _positive_int(ctx, key)
            mf = ctx["memory_fraction"]
            if isinstance(mf, bool) or not isinstance(mf, (int, float)) or not 0 < mf <= 1:
                raise BadInput("space.context.memory_fraction", f"{mf!r} must be in (0, 1]")
        ctx.setdefault("depth_bands", 1)
        _positive_int(ctx, "depth_bands", self.target.num_layers)
        for key in ("max_size_gib", "max_avg_bits"):
            v = ctx.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or v <= 0):
                raise BadInput(f"space.context.{key}", f"{v!r} must be a positive number")
        if "pin" in ctx:
            parse_pins(self.target, ctx["pin"])
        return ctx

    # -- parameters ------------------------------------------------------------------------
    def parameters(self) -> Mapping[str, Param]:
        bands = self.context["depth_bands"]
        params: dict[str, Param] = {}
        for b in range(bands):
            for r in ROLES:
                bits = param_name(f"{r}_bits", b, bands)
                params[bits] = Categorical((16, 8, 4))
                params[param_name(f"{r}_format", b, bands)] = Categorical(
                    EIGHT_BIT_FORMATS, when={bits: (8,)})
                params[param_name(f"{r}_group", b, bands)] = Categorical(
                    INT4_GROUPS, when={bits: (4,)})
        params["embed_bits"] = Categorical(EMBED_BITS)
        params["act_bits"] = Categorical((16, 8))
        if self.target.has_kv_cache:
            for b in range(bands):
                params[param_name("kv_bits", b, bands)] = Categorical(KV_BITS)
        params["protect_frac"] = Categorical(PROTECT_FRACS)
        return params

    def constraints(self, config: Mapping[str, Any]) -> list[str]:
        try:
            plan = build_plan(config, self.target)
        except BadInput as exc:
            return [str(exc)]
        return budget_violations(plan, config)

    def features(self, config: Mapping[str, Any]) -> dict[str, float]:
        plan = build_plan(config, self.target)
        t = plan.target
        by_bits = {16: 0.0, 8: 0.0, 4: 0.0}
        act8 = 0.0
        total = 0.0
        for i, layer in enumerate(t.layers):
            for r, mats in layer.items():
                fmt, act = plan.unit(i, r)
                n = sum(m.params for m in mats)
                total += n
                by_bits[16 if fmt == "bf16" else 8 if fmt in ("int8", "fp8") else 4] += n
                act8 += n if act == 8 else 0.0
        kv = [plan.kv[i] for i in range(t.num_layers)]
        out = {"avg_bits": avg_bits(plan), "model_size_gib": size_gib(plan),
               "frac_params_16bit": by_bits[16] / total, "frac_params_8bit": by_bits[8] / total,
               "frac_params_4bit": by_bits[4] / total, "frac_params_act8": act8 / total,
               "embed_bits": float(config.get("embed_bits", 16)),
               "mean_kv_bits": sum(kv) / len(kv),
               "protected_layers": float(len(plan.protected))}
        return out

    def _check_supported_values(self) -> None:
        """Study-file overrides may narrow the choices, never add unsupported ones."""
        full = self.parameters()
        for name in list(self.params) + list(self.fixed):
            allowed = full[name].values()
            values = [self.fixed[name]] if name in self.fixed else self.params[name].values()
            field = f"space.params.{name}" + ("" if name in self.fixed else ".choices")
            for v in values:
                if v not in allowed or isinstance(v, bool):
                    what = ("bit width" if name.endswith("bits") or "_bits_" in name
                            else "value")
                    raise BadInput(field, f"unsupported {what} {v!r}; allowed: "
                                   + ", ".join(map(str, allowed)))

    # -- budgets ---------------------------------------------------------------------------
    def _choices(self, name: str, default: Any) -> list[Any]:
        if name in self.fixed:
            return [self.fixed[name]]
        if name in self.params:
            return self.params[name].values()
        return [default]

    def smallest_config(self) -> dict[str, Any]:
        """The mix with the least stored bits the space allows (every choice at its
        smallest; no layer protected if the space allows that)."""
        bands = self.context["depth_bands"]
        values: dict[str, Any] = {}
        for b in range(bands):
            for r in ROLES:
                bits_key = param_name(f"{r}_bits", b, bands)
                fmt_key = param_name(f"{r}_format", b, bands)
                grp_key = param_name(f"{r}_group", b, bands)
                best: tuple[float, dict[str, Any]] = (math.inf, {})
                for bits in self._choices(bits_key, 16):
                    fmts = self._choices(fmt_key, "int") if bits == 8 else ["int"]
                    groups = self._choices(grp_key, 128) if bits == 4 else [128]
                    for f in fmts:
                        for g in groups:
                            fmt = weight_format(bits, f, g, field=bits_key)
                            cols = self.target.layers[0][r][0].cols
                            cost = bits_per_weight(fmt, cols)
                            if cost < best[0]:
                                best = (cost, {bits_key: bits, **({fmt_key: f} if bits == 8
                                                                  else {}),
                                               **({grp_key: g} if bits == 4 else {})})
                values.update(best[1])
        values["embed_bits"] = min(self._choices("embed_bits", 16))
        values["protect_frac"] = min(self._choices("protect_frac", 0.0))
        return self.config({k: v for k, v in values.items() if k in self.params})

    def _check_budgets_reachable(self) -> None:
        keys = [k for k in ("max_size_gib", "max_avg_bits") if self.context.get(k) is not None]
        if not keys:
            return
        plan = build_plan({**self.smallest_config(), "max_size_gib": None,
                           "max_avg_bits": None}, self.target)
        least = {"max_size_gib": (size_gib(plan), "GiB"), "max_avg_bits": (avg_bits(plan),
                                                                            "bits/parameter")}
        for key in keys:
            cap = self.context[key]
            need, unit = least[key]
            if cap < need:
                raise BadInput(f"space.context.{key}",
                               f"{cap:g} {unit} cannot be met by any mix in this space: the "
                               f"smallest needs {need:.4g} {unit}; closest feasible budget: "
                               f"{key} = {math.ceil(need * 1e4) / 1e4:g}")
