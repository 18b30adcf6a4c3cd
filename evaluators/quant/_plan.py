"""From a quantization config to a per-layer plan: formats, storage bits and sensitivities.

Shared by the ``quantization`` search space and the ``quant-real`` / ``quant-sim`` evaluators
so that all three agree on what a config means and on how big the result is.

A config names, per layer group (role) and optional depth band, a weight precision
(``{role}_bits`` in 16 / 8 / 4, ``{role}_format`` int | fp8 at 8 bits, ``{role}_group``
32 | 64 | 128 | -1 at 4 bits, -1 meaning one scale per output channel as in GPTQ's
``group_size=-1``), plus ``embed_bits``, ``act_bits``, ``kv_bits`` and ``protect_frac``. It may
also ``pin`` single units (``{"layer0.mlp_down": "int8", "embed": "bf16"}``).
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner import BadInput, UnknownName, did_you_mean

DATA_DIR = Path(__file__).parent / "data"

#: the layer groups a config sets independently (QKV, attention output, MLP up/gate, MLP down)
ROLES = ("qkv", "attn_out", "mlp_up", "mlp_down")
WEIGHT_BITS = (16, 8, 4)
EIGHT_BIT_FORMATS = ("int", "fp8")
INT4_GROUPS = (32, 64, 128, -1)
ACT_BITS = (16, 8)
KV_BITS = (16, 8, 4)
EMBED_BITS = (16, 8, 4)
PROTECT_FRACS = (0.0, 0.1, 0.25)

#: canonical weight formats, in order of decreasing precision
WEIGHT_FORMATS = ("bf16", "fp8", "int8", "int4-g32", "int4-g64", "int4-g128", "int4-ch")
#: formats a "protected" (sensitive) layer is raised to: one step up the ladder
PROMOTE = {"bf16": "bf16", "fp8": "bf16", "int8": "bf16", "int4-g32": "int8",
           "int4-g64": "int8", "int4-g128": "int8", "int4-ch": "int8"}
#: 4-bit embedding tables use groups of 128 along the hidden dimension
EMBED_FORMAT = {16: "bf16", 8: "int8", 4: "int4-g128"}

MINILM = "all-MiniLM-L6-v2"
MINILM_ALIASES = ("all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2")


def weight_format(bits: Any, fmt: Any = "int", group: Any = 128, field: str = "bits") -> str:
    """Canonical format name of (bits, 8-bit format, 4-bit group size)."""
    if bits not in WEIGHT_BITS or isinstance(bits, bool):
        raise BadInput(field, f"unsupported weight bit width {bits!r}; allowed: "
                       + ", ".join(map(str, WEIGHT_BITS)))
    if bits == 16:
        return "bf16"
    if bits == 8:
        if fmt not in EIGHT_BIT_FORMATS:
            raise BadInput(field.replace("_bits", "_format"), f"unsupported 8-bit format "
                           f"{fmt!r}; allowed: {', '.join(EIGHT_BIT_FORMATS)}")
        return "int8" if fmt == "int" else "fp8"
    if group not in INT4_GROUPS or isinstance(group, bool):
        raise BadInput(field.replace("_bits", "_group"), f"unsupported 4-bit group size "
                       f"{group!r}; allowed: 32, 64, 128, -1 (per channel)")
    return "int4-ch" if group == -1 else f"int4-g{group}"


def bits_per_weight(fmt: str, in_features: int) -> float:
    """Stored bits per weight, scales included (bf16 scale per row or per group; int4 groups
    also keep a bf16 zero point, as torch's int4 pack and AWQ/GPTQ checkpoints do)."""
    if fmt == "bf16":
        return 16.0
    if fmt in ("int8", "fp8"):
        return 8.0 + 16.0 / in_features
    if fmt == "int4-ch":
        return 4.0 + 32.0 / in_features
    group = int(fmt.rsplit("g", 1)[1])
    return 4.0 + 32.0 / min(group, in_features)


def kv_bits_per_value(bits: int, head_dim: int) -> float:
    """KV cache bits per stored element: 8-bit is fp8 e4m3 with a per-tensor scale (vLLM's
    ``kv_cache_dtype=fp8``); 4-bit is int4 with a bf16 scale and zero per head vector."""
    return 16.0 if bits == 16 else 8.0 if bits == 8 else 4.0 + 32.0 / head_dim


@dataclass(frozen=True)
class Matrix:
    rows: int  # output features
    cols: int  # input features (the reduction dimension)
    count: int = 1  # identical copies (MoE experts)
    active: float = 1.0  # copies one token touches (top-k + shared experts for MoE)
    split: str = "col"  # tensor-parallel split: "col" shards rows, "row" shards cols

    @property
    def params(self) -> int:
        return self.rows * self.cols * self.count


@dataclass(frozen=True)
class Target:
    """The model being quantized, by the shapes that matter for size, time and quality."""

    name: str
    kind: str  # "real" (the packaged encoder, measured) or "catalog" (an LLM, simulated)
    num_layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    layers: tuple[Mapping[str, tuple[Matrix, ...]], ...]  # per layer: role -> matrices
    embed_params: int  # token embedding table (and the LM head when untied)
    head_matrix: Matrix | None  # LM head GEMM (decoders), None for encoders
    other_params: int  # norms, biases, position tables: always 16-bit
    kv_values_per_token_layer: int  # stored K+V elements per token per layer (0: no cache)
    kv_full_layers: int  # layers whose KV spans the whole context
    sliding_window: int  # KV length of the other (sliding-window) layers
    model: Any = None  # the catalog Model, when there is one

    @functools.cached_property
    def uniform_layers(self) -> bool:
        return all(layer == self.layers[0] for layer in self.layers)

    @property
    def has_kv_cache(self) -> bool:
        return self.kind == "catalog" and self.kv_values_per_token_layer > 0

    def unit_names(self) -> list[str]:
        # an encoder has no cache, but its K/V tensors can still be quantized (quality only)
        names = [f"layer{i}.{r}" for i in range(self.num_layers) for r in (*ROLES, "kv")]
        return names + ["embed"]


@functools.cache
def _minilm_target() -> Target:
    # dims from the packaged model's config.json (BERT encoder, 6 layers, hidden 384)
    h, ffn, layers, vocab = 384, 1536, 6, 30522
    per_layer = {"qkv": (Matrix(3 * h, h),), "attn_out": (Matrix(h, h, split="row"),),
                 "mlp_up": (Matrix(ffn, h),), "mlp_down": (Matrix(h, ffn, split="row"),)}
    biases_norms = layers * (3 * h + h + ffn + h + 4 * h) + 2 * h
    position_tables = 512 * h + 2 * h
    return Target(MINILM, "real", layers, h, 12, 12, 32, vocab, (per_layer,) * layers,
                  vocab * h, None, biases_norms + position_tables, 2 * h, layers, 0)


def _catalog_target(model: Any) -> Target:
    h, hd = model.hidden_size, model.head_dim
    layers = []
    for i in range(model.num_layers):
        if model.attention == "mla":
            q = ((Matrix(model.q_lora_rank, h), Matrix(
                model.num_heads * (model.qk_nope_head_dim + model.qk_rope_head_dim),
                model.q_lora_rank)) if model.q_lora_rank else (Matrix(
                    model.num_heads * (model.qk_nope_head_dim + model.qk_rope_head_dim), h),))
            kv = (Matrix(model.kv_lora_rank + model.qk_rope_head_dim, h),
                  Matrix(model.num_heads * (model.qk_nope_head_dim + model.v_head_dim),
                         model.kv_lora_rank))
            qkv, out_in = q + kv, model.num_heads * model.v_head_dim
        else:
            qkv = (Matrix((model.num_heads + 2 * model.num_kv_heads) * hd, h),)
            out_in = model.num_heads * hd
        up_mult = 2 if model.gated_mlp else 1
        if model.is_moe and i >= model.first_dense_layers:
            n = model.num_experts + model.num_shared_experts
            act = model.top_k + model.num_shared_experts
            f = model.moe_ffn_hidden_size
            up = (Matrix(up_mult * f, h, n, act),)
            down = (Matrix(h, f, n, act, split="row"),)
        else:
            up = (Matrix(up_mult * model.ffn_hidden_size, h),)
            down = (Matrix(h, model.ffn_hidden_size, split="row"),)
        layers.append({"qkv": qkv, "attn_out": (Matrix(h, out_in, split="row"),),
                       "mlp_up": up, "mlp_down": down})
    embed = model.vocab_size * h * (1 if model.tied_embeddings else 2)
    if model.attention == "mla":
        kv_values = model.kv_lora_rank + model.qk_rope_head_dim
    else:
        kv_values = 2 * model.num_kv_heads * hd
    full = model.num_layers
    if model.sliding_window and model.sliding_window_every:
        full = model.num_layers // model.sliding_window_every
    return Target(model.name, "catalog", model.num_layers, h, model.num_heads,
                  model.num_kv_heads if model.attention != "mla" else 1, hd, model.vocab_size,
                  tuple(layers), embed, Matrix(model.vocab_size, h),
                  model.num_layers * 2 * h + h, kv_values, full, model.sliding_window, model)


def resolve_target(name: Any, field: str = "model") -> Target:
    """The packaged MiniLM encoder or a catalog LLM (HF ids resolve through aliases)."""
    from tuner.evaluators._catalog import get_model, model_names

    if isinstance(name, str) and name.lower() in (MINILM.lower(), *MINILM_ALIASES):
        return _minilm_target()
    if not isinstance(name, str):
        raise BadInput(field, f"{name!r} must be a model name; valid: {MINILM}, "
                       + ", ".join(model_names()))
    try:
        return _catalog_cached(get_model(name, field).name)
    except UnknownName:
        raise UnknownName(field, name, [MINILM, *model_names()]) from None


@functools.cache
def _catalog_cached(name: str) -> Target:
    from tuner.evaluators._catalog import get_model

    return _catalog_target(get_model(name))


# -- sensitivity data --------------------------------------------------------------------

@functools.cache
def minilm_sensitivity() -> dict[tuple[int, str, str], float]:
    """Measured single-unit quality drops on MiniLM: (layer, role, variant) -> 1 - cos.

    ``variant`` is a weight format with activations at 16 bits (``int8``), the same with 8-bit
    activations (``int8+a8``), or ``kv8`` / ``kv4`` for the role ``kv``; layer -1 is the
    embedding table. Produced by ``python -m tuner.evaluators.quant.sensitivity``.
    """
    out: dict[tuple[int, str, str], float] = {}
    path = DATA_DIR / "minilm_sensitivity.csv"
    with path.open() as fh:
        for row in csv.DictReader(r for r in fh if not r.startswith("#")):
            out[(int(row["layer"]), row["role"], row["variant"])] = float(row["quality_drop"])
    return out


@functools.cache
def depth_profile(num_layers: int) -> tuple[float, ...]:
    """Relative per-layer sensitivity (mean 1) for a model of ``num_layers`` layers.

    MiniLM's measured profile (sum over roles at int4-g128) resampled by relative depth: the
    documented heuristic quant-sim uses for catalog LLMs, where no measurement exists.
    """
    sens = minilm_sensitivity()
    src = [sum(sens[(i, r, "int4-g128")] for r in ROLES) for i in range(6)]
    mean = sum(src) / len(src)
    src = [s / mean for s in src]
    out = []
    for i in range(num_layers):
        x = (i + 0.5) / num_layers * len(src) - 0.5  # centre-aligned relative depth
        lo = min(max(int(math.floor(x)), 0), len(src) - 1)
        hi = min(lo + 1, len(src) - 1)
        t = min(max(x - lo, 0.0), 1.0)
        out.append(src[lo] * (1 - t) + src[hi] * t)
    m = sum(out) / len(out)
    return tuple(v / m for v in out)


def sensitivity_order(target: Target) -> list[int]:
    """Layer indices, most sensitive first (measured for MiniLM, heuristic for LLMs)."""
    prof = depth_profile(target.num_layers)
    return sorted(range(target.num_layers), key=lambda i: (-prof[i], i))


# -- config -> plan ----------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """The fully expanded mix: one weight format and activation width per unit."""

    target: Target
    embed: str  # weight format of the embedding table (and LM head)
    grid: tuple[Mapping[str, tuple[str, int]], ...]  # per layer: role -> (format, act bits)
    kv: dict[int, int]  # layer -> KV bits
    protected: tuple[int, ...]

    def unit(self, layer: int, role: str) -> tuple[str, int]:
        return self.grid[layer][role]

    @functools.cached_property
    def groups(self) -> dict[tuple[int, str, str, int], int]:
        """(layer shape key, role, format, act bits) -> number of layers: identical units
        collapse so that an 80-layer model costs a handful of roofline calls. The shape key
        is -1 for models whose layers all have the same shapes."""
        t = self.target
        uniform = t.uniform_layers
        out: dict[tuple[int, str, str, int], int] = {}
        for i, row in enumerate(self.grid):
            key_layer = -1 if uniform else i
            for r, (fmt, act) in row.items():
                k = (key_layer, r, fmt, act)
                out[k] = out.get(k, 0) + 1
        return out

    @functools.cached_property
    def bits(self) -> float:
        """Total stored bits of every parameter under the plan."""
        t = self.target
        total = 16.0 * t.other_params + bits_per_weight(self.embed, t.hidden) * t.embed_params
        for (layer, r, fmt, _), n in self.groups.items():
            total += n * _role_bits(t.layers[max(layer, 0)][r], fmt)
        return total


@functools.lru_cache(maxsize=4096)
def _role_bits(mats: tuple[Matrix, ...], fmt: str) -> float:
    return sum(bits_per_weight(fmt, m.cols) * m.params for m in mats)


def band_of(layer: int, num_layers: int, bands: int) -> int:
    return min(layer * bands // num_layers, bands - 1)


def param_name(base: str, band: int, bands: int) -> str:
    return base if bands == 1 else f"{base}_b{band}"


def searched_keys(target: Target, bands: int) -> set[str]:
    keys = {"embed_bits", "act_bits", "protect_frac"}
    keys |= {param_name("kv_bits", b, bands) for b in range(bands)}
    for b in range(bands):
        for r in ROLES:
            keys |= {param_name(f"{r}_{k}", b, bands) for k in ("bits", "format", "group")}
    return keys


def _choice(config: Mapping[str, Any], key: str, allowed: tuple, default: Any) -> Any:
    v = config.get(key, default)
    if isinstance(v, bool) or v not in allowed:
        raise BadInput(key, f"unsupported value {v!r}; allowed: "
                       + ", ".join(map(str, allowed)))
    return v


def parse_pins(target: Target, pins: Any) -> dict[str, str]:
    """Validated ``pin`` table: unit name -> weight format (or ``kv8``-style for KV units)."""
    if pins is None:
        return {}
    if not isinstance(pins, Mapping):
        raise BadInput("pin", f"{pins!r} must be a table of unit name -> format")
    names = target.unit_names()
    out = {}
    for unit, fmt in pins.items():
        if unit not in names:
            raise BadInput(f"pin.{unit}", f"unknown layer name {unit!r}"
                           f"{did_you_mean(unit, names)}; valid: "
                           f"layer0..layer{target.num_layers - 1}.{{{','.join(ROLES)},kv}}"
                           ", embed")
        allowed = ("kv16", "kv8", "kv4") if unit.endswith(".kv") else WEIGHT_FORMATS
        if fmt not in allowed:
            raise BadInput(f"pin.{unit}", f"unsupported format {fmt!r}; allowed: "
                           + ", ".join(allowed))
        out[unit] = fmt
    return out


def build_plan(config: Mapping[str, Any], target: Target | None = None) -> Plan:
    """Expand a config into per-unit formats. Raises ``BadInput`` naming the bad key."""
    target = target or resolve_target(config.get("model"))
    bands = config.get("depth_bands", 1)
    if isinstance(bands, bool) or not isinstance(bands, int) or not 1 <= bands <= \
            target.num_layers:
        raise BadInput("depth_bands", f"{bands!r} must be an integer in 1..{target.num_layers}")
    protect = _choice(config, "protect_frac", PROTECT_FRACS, 0.0)
    act_bits = _choice(config, "act_bits", ACT_BITS, 16)
    embed_bits = _choice(config, "embed_bits", EMBED_BITS, 16)
    n_protect = 0 if protect == 0 else max(1, round(protect * target.num_layers))
    protected = tuple(sorted(sensitivity_order(target)[:n_protect])) if n_protect else ()
    band_fmt = {}
    for b in range(bands):
        for r in ROLES:
            key = param_name(f"{r}_bits", b, bands)
            band_fmt[(b, r)] = weight_format(
                config.get(key, 16), config.get(param_name(f"{r}_format", b, bands), "int"),
                config.get(param_name(f"{r}_group", b, bands), 128), field=key)
    band_kv = [_choice(config, param_name("kv_bits", b, bands), KV_BITS, 16)
               for b in range(bands)]
    rows: list[dict[str, tuple[str, int]]] = []
    kv: dict[int, int] = {}
    prot = set(protected)
    for i in range(target.num_layers):
        b = band_of(i, target.num_layers, bands)
        row = {}
        for r in ROLES:
            fmt = band_fmt[(b, r)]
            if i in prot:  # one step up the ladder, activations at 16 bits
                row[r] = (PROMOTE[fmt], 16)
            else:  # activations follow act_bits only where the weights are quantized
                row[r] = (fmt, 16 if fmt == "bf16" else act_bits)
        rows.append(row)
        kv[i] = 16 if i in prot else band_kv[b]
    embed = EMBED_FORMAT[embed_bits]
    for unit, fmt in parse_pins(target, config.get("pin")).items():
        if unit == "embed":
            embed = fmt
        elif unit.endswith(".kv"):
            kv[int(unit[5:].split(".")[0])] = int(fmt[2:])
        else:
            layer, role = unit[5:].split(".")
            rows[int(layer)][role] = (fmt, 16 if fmt == "bf16" else act_bits)
    return Plan(target, embed, tuple(rows), kv, protected)


#: context keys either quantization evaluator accepts (so one config works with both)
CONTEXT_KEYS = {"model", "gpu", "gpus", "batch_size", "prompt_len", "output_len",
                "memory_fraction", "max_avg_bits", "max_size_gib", "depth_bands", "pin"}


def budget_violations(plan: Plan, config: Mapping[str, Any]) -> list[str]:
    """Reasons the mix breaks the config's optional size budgets, with the numbers."""
    out = []
    size, bits = size_gib(plan), avg_bits(plan)
    cap = config.get("max_size_gib")
    if cap is not None and size > cap:
        out.append(f"model size {size:.4g} GiB exceeds max_size_gib {cap:g}")
    cap = config.get("max_avg_bits")
    if cap is not None and bits > cap:
        out.append(f"average {bits:.3f} bits/parameter exceeds max_avg_bits {cap:g}")
    return out


def check_keys(config: Mapping[str, Any], target: Target, context_keys: set[str]) -> None:
    """Unknown keys are typos or unknown layer groups: name the closest valid key."""
    bands = config.get("depth_bands", 1)
    bands = bands if isinstance(bands, int) and not isinstance(bands, bool) and bands >= 1 else 1
    valid = searched_keys(target, bands) | context_keys
    for key in config:
        if key not in valid:
            raise UnknownName("config", key, sorted(valid))


# -- size --------------------------------------------------------------------------------

def weight_bits(plan: Plan) -> float:
    """Total stored bits of every parameter under the plan."""
    return plan.bits


@functools.cache
def _total_params(name: str) -> int:
    target = resolve_target(name)
    return target.other_params + target.embed_params + sum(
        m.params for layer in target.layers for mats in layer.values() for m in mats)


def total_params(target: Target) -> int:
    return _total_params(target.name)


def size_gib(plan: Plan) -> float:
    return plan.bits / 8 / 2**30


def avg_bits(plan: Plan) -> float:
    """Stored bits per parameter over the whole model (scales included)."""
    return plan.bits / total_params(plan.target)


def uniform_config(target: Target, weight: str, act_bits: int = 16, kv_bits: int = 16,
                   embed_bits: int | None = None) -> dict[str, Any]:
    """A config with one weight format everywhere (the uniform int8 / int4 baselines)."""
    bits = 16 if weight == "bf16" else 8 if weight in ("int8", "fp8") else 4
    cfg: dict[str, Any] = {"model": target.name, "act_bits": act_bits, "protect_frac": 0.0,
                           "embed_bits": bits if embed_bits is None else embed_bits}
    for r in ROLES:
        cfg[f"{r}_bits"] = bits
        if bits == 8:
            cfg[f"{r}_format"] = "fp8" if weight == "fp8" else "int"
        if bits == 4:
            cfg[f"{r}_group"] = -1 if weight == "int4-ch" else int(weight.rsplit("g", 1)[1])
    if target.has_kv_cache or kv_bits != 16:
        cfg["kv_bits"] = kv_bits
    return cfg
