"""A quantization mix, composed: the quantization model's plan, size and quality proxy, and
what the serving model needs of it (bytes and compute dtype per layer group, the KV dtype).

Nothing here re-derives the quantization model: the plan is ``tuner.evaluators.quant``'s
``build_plan`` of the same keys, the size its ``size_gib``, the quality ``quant-sim``'s proxy.
What is added is the translation to the serving model's :class:`WeightMix`: per layer group,
the stored bytes per weight averaged over the layers (weighted by their parameters, so a
protected layer raised to 8 bits counts for its share) and the compute dtype that most of the
group's parameters run in (``quant-sim``'s rule: W8A8 fp8 computes in fp8, int W8A8 / W4A8 in
int8, weight-only formats in bf16).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner import BadInput
from tuner.evaluators._catalog import Hardware
from tuner.evaluators.quant import ROLES, bits_per_weight, build_plan, resolve_target, size_gib
from tuner.evaluators.quant._plan import Plan as QuantPlan
from tuner.evaluators.quant._plan import avg_bits
from tuner.evaluators.quant.sim import compute_dtype, quality_proxy
from tuner.evaluators.serving._geometry import WeightMix

#: KV-cache widths the serving engines store (vLLM/SGLang/TRT-LLM: bf16 or fp8; no int4 KV)
KV_DTYPES = {16: "bf16", 8: "fp8"}


def quant_config(config: Mapping[str, Any], hw: Hardware) -> dict[str, Any]:
    """The quantization slice of a deployment config, with the serving defaults filled in:
    8-bit weights are fp8 where the GPU has fp8 tensor cores (int8 elsewhere), 4-bit weights
    use groups of 128 (AWQ/GPTQ/Marlin checkpoints), embeddings stay in 16 bits."""
    eight = "fp8" if "fp8" in hw.peak_tflops else "int"
    out: dict[str, Any] = {"model": config["model"]}
    for r in ROLES:
        out[f"{r}_bits"] = config.get(f"{r}_bits", 16)
        out[f"{r}_format"] = config.get(f"{r}_format", eight)
        out[f"{r}_group"] = config.get(f"{r}_group", 128)
    for key, default in (("act_bits", 16), ("kv_bits", 16), ("protect_frac", 0.0)):
        out[key] = config.get(key, default)
    if out["kv_bits"] not in KV_DTYPES or isinstance(out["kv_bits"], bool):
        raise BadInput("kv_bits", f"{out['kv_bits']!r}: serving engines store the KV cache "
                       "in 16 or 8 bits; allowed: 16, 8")
    return out


@dataclass(frozen=True)
class Mix:
    """One quantization mix as both models see it."""

    plan: QuantPlan
    weights: WeightMix
    kv_dtype: str
    #: the serving ``weight_dtype`` naming the mix's widest compute path (labels only: bytes
    #: and compute dtypes come from ``weights``)
    weight_dtype: str
    quality_drop: float
    size_gib: float
    avg_bits: float

    def breakdown(self) -> dict[str, Any]:
        return {"quality_drop": self.quality_drop, "model_size_gib": self.size_gib,
                "avg_bits": self.avg_bits, "kv_dtype": self.kv_dtype,
                "bytes_per_weight": dict(self.weights.element_bytes),
                "compute_dtype": dict(self.weights.compute_dtype),
                "protected_layers": list(self.plan.protected)}


def mix_of(config: Mapping[str, Any], hw: Hardware) -> Mix:
    """The deployment config's mix (``BadInput`` naming a bad quantization key)."""
    qcfg = quant_config(config, hw)
    try:
        key = tuple(sorted(qcfg.items()))
        hash(key)
    except TypeError:  # an unhashable value: let build_plan name it
        return _mix(qcfg, hw)
    got = _CACHE.get((key, hw.name))
    if got is None:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        got = _CACHE[(key, hw.name)] = _mix(qcfg, hw)
    return got


#: mixes by (quantization slice, GPU name): a space's constraints ask for the same mix often
_CACHE: dict[tuple, Mix] = {}


def _mix(qcfg: dict[str, Any], hw: Hardware) -> Mix:
    target = resolve_target(qcfg["model"])
    plan = build_plan(qcfg, target)
    nbytes, dtypes = [], []
    for r in ROLES:
        bits = params = 0.0
        by_dtype: dict[str, float] = {}
        for i, layer in enumerate(target.layers):
            fmt, act = plan.unit(i, r)
            n = sum(m.params for m in layer[r])
            bits += sum(bits_per_weight(fmt, m.cols) * m.params for m in layer[r])
            params += n
            dt = compute_dtype(fmt, act, hw)
            by_dtype[dt] = by_dtype.get(dt, 0.0) + n
        nbytes.append((r, bits / params / 8))
        dtypes.append((r, max(by_dtype, key=by_dtype.__getitem__)))
    computes = {d for _, d in dtypes}
    widest = "fp8" if "fp8" in computes else "int4" if any(b < 0.75 for _, b in nbytes) \
        else "bf16"
    return Mix(plan, WeightMix(tuple(nbytes), tuple(dtypes)), KV_DTYPES[qcfg["kv_bits"]],
               widest, quality_proxy(plan), size_gib(plan), avg_bits(plan))


__all__ = ["KV_DTYPES", "Mix", "mix_of", "quant_config"]
