"""Strict loader for the hardware and model catalogs (TOML files beside this module).

Every file is one entry; unknown or missing keys are errors that name the key and the file.
Users add a GPU or a model by adding a file, or by giving the dimensions inline in a config.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner import BadInput, CatalogError, UnknownName

CATALOG_DIR = Path(__file__).parent / "catalog"


@dataclass(frozen=True)
class Hardware:
    """One accelerator and its usual node. Peaks are dense (no sparsity), per GPU."""

    name: str
    description: str
    peak_tflops: Mapping[str, float]  # dtype -> dense TFLOP/s (bf16, fp16, fp8, tf32, fp32, int8)
    hbm_gib: float  # usable device memory
    hbm_tb_s: float  # peak HBM bandwidth
    sm_count: int
    smem_per_sm_kib: float  # shared memory per SM
    smem_per_block_kib: float  # max shared memory one block may use
    regs_per_sm: int
    l2_mib: float
    clock_mhz: float  # boost clock
    nvlink_gb_s: float  # per GPU, per direction, inside a node
    network_gbit_s: float  # per GPU, per direction, across nodes
    gpus_per_node: int
    price_usd_per_hour: float
    source: str
    #: measured/fitted efficiency curves (see evaluators/_perf.py); empty means defaults
    efficiency: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    kind: str = "gpu"  # gpu | cpu (a profile of the local CPU: no tiles, no tensor cores)
    #: raw microbenchmarks of a measured profile (``tuner profile-hardware``)
    measurements: Mapping[str, Any] = field(default_factory=dict)

    def peak(self, dtype: str) -> float:
        try:
            return self.peak_tflops[dtype] * 1e12
        except KeyError:
            raise BadInput("dtype", f"{dtype!r} is not supported on {self.name}; supported: "
                           + ", ".join(sorted(self.peak_tflops))) from None


@dataclass(frozen=True)
class Model:
    """A dense or MoE decoder-only transformer by its dimensions."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    ffn_hidden_size: int  # dense MLP width (for MoE: the dense layers' width)
    vocab_size: int
    head_dim: int = 0  # 0: hidden_size // num_heads
    gated_mlp: bool = True  # SwiGLU-style (3 matrices) vs GELU (2 matrices)
    tied_embeddings: bool = False
    num_experts: int = 0  # routed experts; 0 for dense
    top_k: int = 0
    moe_ffn_hidden_size: int = 0
    num_shared_experts: int = 0
    first_dense_layers: int = 0  # leading layers with a dense MLP (DeepSeek-V3: 3)
    #: group-limited routing: experts in ``router_groups`` equal groups, a token uses at most
    #: ``router_group_topk`` of them (DeepSeek-V3: 8 and 4); 0 = every expert is eligible
    router_groups: int = 0
    router_group_topk: int = 0
    attention: str = "gqa"  # mha | gqa | mla
    kv_lora_rank: int = 0  # MLA only
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    sliding_window: int = 0  # window of the sliding-window layers; 0 = none
    sliding_window_every: int = 0  # every n-th layer is full attention, the rest sliding
    max_seq_len: int = 4096
    description: str = ""
    source: str = ""
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0


INLINE_MODEL_KEYS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "ffn_hidden_size",
                     "vocab_size")
#: what an inline model must also state when its caller asks (``require_architecture``): the
#: dimensions alone do not say how many matrices the MLP has or whether the output head is
#: the embedding, and a silent default would change the FLOPs and parameter count
INLINE_ARCHITECTURE_KEYS = {
    "gated_mlp": "true (SwiGLU/GeGLU: gate, up and down matrices) or false (GELU/ReLU: 2)",
    "tied_embeddings": "true (output head shares the input embedding) or false",
    "attention": "mha (num_kv_heads = num_heads), gqa (fewer KV heads) or mla (DeepSeek "
                 "latent attention: kv_lora_rank, qk_rope_head_dim, qk_nope_head_dim, "
                 "v_head_dim)",
}
ATTENTION_TYPES = ("mha", "gqa", "mla")
_MLA_KEYS = ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
#: catalog bookkeeping, not a dimension: an inline model has none
_MODEL_METADATA = ("name", "description", "source", "aliases")
_MODEL_OPTIONAL = tuple(f.name for f in dataclasses.fields(Model)
                        if f.name not in INLINE_MODEL_KEYS + _MODEL_METADATA)
#: every key of an inline model (its required dimensions, then the optional ones)
MODEL_KEYS = INLINE_MODEL_KEYS + _MODEL_OPTIONAL


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise CatalogError(where, f"unknown key {sorted(unknown)[0]!r}; allowed: "
                           + ", ".join(fields))
    missing = [n for n, f in fields.items() if n not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise CatalogError(where, f"missing key {missing[0]!r}")
    if "aliases" in data:
        data = {**data, "aliases": tuple(data["aliases"])}
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise CatalogError(where, str(exc)) from None


@functools.cache
def _load_dir(kind: str) -> dict[str, Any]:
    cls = {"hardware": Hardware, "models": Model}[kind]
    entries: dict[str, Any] = {}
    for path in sorted((CATALOG_DIR / kind).glob("*.toml")):
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        data.setdefault("name", path.stem)
        entries[data["name"]] = _build(cls, data, f"catalog/{kind}/{path.name}")
    return entries


def _index(kind: str) -> dict[str, Any]:
    idx: dict[str, Any] = {}
    for entry in _load_dir(kind).values():
        for key in (entry.name, *entry.aliases):
            idx[key.lower()] = entry
    return idx


def hardware_names() -> list[str]:
    return list(_load_dir("hardware"))


def model_names() -> list[str]:
    return list(_load_dir("models"))


@functools.lru_cache(maxsize=32)
def _hardware_file(path: str, mtime: float) -> Hardware:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(path, f"cannot read a hardware profile: {exc}") from None
    data.setdefault("name", Path(path).stem)
    return _build(Hardware, data, path)


#: the project root: shipped data files are named relative to it (studies, examples)
_SHIPPED_ROOT = Path(__file__).resolve().parents[1]


def get_hardware(name: str, field_: str = "gpu") -> Hardware:
    """A catalog entry by name or alias, or a hardware profile file by its path (``.toml``)."""
    if not isinstance(name, str):
        raise BadInput(field_, f"{name!r} must be a catalog name; valid: "
                       + ", ".join(hardware_names()))
    if name.endswith(".toml"):
        path = Path(name).expanduser()
        if not path.is_file() and not path.is_absolute() and (_SHIPPED_ROOT / path).is_file():
            path = _SHIPPED_ROOT / path  # a profile the project ships, named from its root
        if not path.is_file():
            raise BadInput(field_, f"{name}: no such hardware profile file (write one with "
                           "`tuner profile-hardware --out FILE.toml`, or use a catalog name: "
                           + ", ".join(hardware_names()) + ")")
        return _hardware_file(str(path.resolve()), path.stat().st_mtime)
    hw = _index("hardware").get(name.lower())
    if hw is None:
        raise UnknownName(field_, name, hardware_names())
    return hw


def get_model(name: str, field_: str = "model") -> Model:
    if not isinstance(name, str):
        raise BadInput(field_, f"{name!r} must be a catalog name; valid: "
                       + ", ".join(model_names()))
    m = _index("models").get(name.lower())
    if m is None:
        raise UnknownName(field_, name, model_names())
    return m


def _check_architecture(config: Mapping[str, Any]) -> None:
    for k, meaning in INLINE_ARCHITECTURE_KEYS.items():
        if k not in config:
            raise BadInput(k, f"missing: a model given by its dimensions states it ({meaning})")
    for k in ("gated_mlp", "tied_embeddings"):
        if not isinstance(config[k], bool):
            raise BadInput(k, f"{config[k]!r} must be true or false")
    att = config["attention"]
    if att not in ATTENTION_TYPES:
        raise BadInput("attention", f"{att!r}; allowed: " + ", ".join(ATTENTION_TYPES))
    heads, kv = config["num_heads"], config["num_kv_heads"]
    if att == "mha" and kv != heads:
        raise BadInput("attention", f"mha needs num_kv_heads = num_heads ({kv} != {heads}); "
                       "use gqa")
    if att == "gqa" and isinstance(kv, int) and isinstance(heads, int) and kv >= heads:
        raise BadInput("attention", f"gqa needs fewer KV heads than query heads "
                       f"(num_kv_heads {kv}, num_heads {heads})"
                       + ("; use mha for as many" if kv == heads else ""))
    if att == "mla":
        for k in _MLA_KEYS:
            v = config.get(k)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise BadInput(k, f"{v!r}: mla attention needs a positive integer")


def check_one_model(config: Mapping[str, Any]) -> None:
    """A catalog ``model`` and a model key of an inline model are not given together: the
    catalog model's own values would silently win."""
    extra = [k for k in MODEL_KEYS if k in config]
    if extra:
        raise BadInput("model", "give a catalog name or inline dimensions "
                       f"({', '.join(INLINE_MODEL_KEYS)}), not both ({extra[0]} is a key "
                       "of an inline model)")


def model_from_config(config: Mapping[str, Any]) -> Model:
    """The config's ``model`` (a catalog name or HF id) or its inline dimensions.

    An inline model must also state ``gated_mlp``, ``tied_embeddings`` and ``attention``
    (:data:`INLINE_ARCHITECTURE_KEYS`); a missing or inconsistent dimension is a ``BadInput``
    naming it.
    """
    if config.get("model") is not None:
        check_one_model(config)
        return get_model(config["model"])
    missing = [k for k in INLINE_MODEL_KEYS if k not in config]
    if len(missing) == len(INLINE_MODEL_KEYS):
        raise BadInput("model", "missing: give a catalog name (valid: "
                       + ", ".join(model_names()) + ") or inline dimensions")
    if missing:
        raise BadInput(missing[0], "missing inline model dimension (needed: "
                       + ", ".join(INLINE_MODEL_KEYS) + ")")
    data: dict[str, Any] = {"name": "inline"}
    for k in INLINE_MODEL_KEYS:
        v = config[k]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise BadInput(k, f"{v!r} must be a positive integer")
        data[k] = v
    _check_architecture(config)
    for k in _MODEL_OPTIONAL:
        if k in config:
            if isinstance(config[k], bool) and k not in INLINE_ARCHITECTURE_KEYS:
                raise BadInput(k, f"{str(config[k]).lower()} must be a number, not a boolean")
            data[k] = config[k]
    if not config.get("head_dim") and data["hidden_size"] % data["num_heads"]:
        # without head_dim the heads split hidden_size; a remainder is a typo, not a model
        raise BadInput("head_dim", f"missing: hidden_size {data['hidden_size']} does not "
                       f"split into num_heads {data['num_heads']} heads; state head_dim")
    m = _build(Model, data, "model")
    _check_inline_model(m)
    return m


def _check_router_groups(m: Model) -> None:
    """Group-limited routing: both keys or neither; groups that split the experts evenly and,
    as many as a token may use, hold its top_k experts."""
    g, gk = m.router_groups, m.router_group_topk
    if not g and not gk:
        return
    if not m.num_experts:
        raise BadInput("router_groups", "group-limited routing needs an MoE model "
                       "(num_experts > 0)")
    if not g:
        raise BadInput("router_groups", "missing: router_group_topk limits a token to that "
                       "many expert groups; state how many groups the experts form")
    if g < 2 or m.num_experts % g:
        raise BadInput("router_groups", f"{g!r} must divide num_experts ({m.num_experts}) "
                       "into at least 2 equal groups (leave both keys out for no limit)")
    if not gk:
        raise BadInput("router_group_topk", f"missing: how many of the {g} expert groups a "
                       "token may use")
    if gk > g:
        raise BadInput("router_group_topk", f"{gk!r} must be in 1..router_groups ({g})")
    if gk * (m.num_experts // g) < m.top_k:
        raise BadInput("router_group_topk", f"{gk!r} groups of {m.num_experts // g} experts "
                       f"cannot hold top_k ({m.top_k}) experts")


def _check_inline_model(m: Model) -> None:
    for k in ("num_experts", "top_k", "moe_ffn_hidden_size", "head_dim", "first_dense_layers",
              "num_shared_experts", "router_groups", "router_group_topk"):
        v = getattr(m, k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise BadInput(k, f"{v!r} must be a non-negative integer")
    if m.num_experts:
        if not m.top_k:
            raise BadInput("top_k", f"missing: an MoE model states how many of its "
                           f"{m.num_experts} experts each token uses")
        if not 0 < m.top_k <= m.num_experts:
            raise BadInput("top_k", f"{m.top_k!r} must be in 1..num_experts ({m.num_experts})")
        if m.moe_ffn_hidden_size <= 0:
            raise BadInput("moe_ffn_hidden_size", "must be a positive integer for an MoE model")
    _check_router_groups(m)
    if m.first_dense_layers > m.num_layers:
        raise BadInput("first_dense_layers", f"{m.first_dense_layers} exceeds num_layers "
                       f"{m.num_layers}")
    if m.num_heads % m.num_kv_heads:
        raise BadInput("num_kv_heads", f"{m.num_kv_heads} must divide num_heads {m.num_heads}")
