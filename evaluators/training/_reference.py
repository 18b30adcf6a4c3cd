"""Published training runs as simulator configs: ``data/validation/*.csv``.

Each file is one source. Its ``#`` header keeps the source's citation lines and says how the
rows are used::

    # group: megatron-dense | moe | pytorch-native | deepspeed
    # split: fit | validation     (fit: this source fitted the constants named by ``fits``)
    # fits: gemm_efficiency, ...
    # defaults: {"framework": "megatron", "gpu": "h100_sxm", ...}

Columns are config keys of ``training-sim`` (blank = not set) plus ``ref_*`` reference
figures, converted to the simulator's metrics by the source's own definitions:

* ``ref_tokens_per_s`` / ``ref_tokens_per_s_per_gpu`` / ``ref_step_time_s``: throughput;
* ``ref_model_tflops_nemo``: NeMo's GPT formula ``72 L h^2 (1 + s/6h) + 6 h V`` per token;
* ``ref_model_tflops_megatron``: Megatron-Core's ``num_floating_point_operations`` (2025:
  causal attention counted half, gated MLPs 3 matrices, routed + shared experts, MTP);
* ``ref_mfu_pct``: PaLM-style MFU (compared with the simulator's ``mfu``: same definition);
* ``ref_allocated_gib`` (``torch.cuda.max_memory_allocated``), ``ref_reserved_gib`` (the
  caching allocator's reserved memory), ``ref_device_gib`` (``nvidia-smi``): memory;
* ``ref_oom``: the source reports the run out of memory.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.evaluators._catalog import Model
from tuner.evaluators.training._plan import resolve_model

DATA = Path(__file__).parent / "data" / "validation"
GROUPS = ("megatron-dense", "moe", "pytorch-native", "deepspeed")
_THROUGHPUT = ("ref_tokens_per_s", "ref_tokens_per_s_per_gpu", "ref_step_time_s",
               "ref_model_tflops_nemo", "ref_model_tflops_megatron")
_MEMORY = ("ref_allocated_gib", "ref_reserved_gib", "ref_device_gib")


@dataclass(frozen=True)
class Reference:
    """One published run: its config, and what was measured."""

    id: str
    file: str
    group: str
    split: str  # "fit" or "validation"
    config: Mapping[str, Any]
    refs: Mapping[str, float]  # ref_* column -> value
    source: str
    fits: tuple[str, ...] = ()
    note: str = ""
    oom: bool = False
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def throughput_key(self) -> str | None:
        for k in _THROUGHPUT + ("ref_mfu_pct",):
            if k in self.refs:
                return k
        return None

    @property
    def memory_key(self) -> str | None:
        for k in _MEMORY:
            if k in self.refs:
                return k
        return None


def _value(text: str) -> Any:
    t = text.strip()
    if t == "":
        return None
    if t in ("true", "false"):
        return t == "true"
    if t.startswith("["):
        return json.loads(t)
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def read(path: Path) -> list[Reference]:
    lines = path.read_text(encoding="utf-8").splitlines()
    meta: dict[str, str] = {}
    sources = []
    for ln in lines:
        if not ln.startswith("#"):
            continue
        body = ln[1:].strip()
        key, _, rest = body.partition(":")
        if key in ("group", "split", "fits", "defaults", "framework"):
            meta[key] = rest.strip()
        elif key == "source" or key.startswith("source"):
            sources.append(rest.strip())
    defaults = json.loads(meta.get("defaults", "{}"))
    fits = tuple(x.strip() for x in meta.get("fits", "").split(",") if x.strip())
    out = []
    for row in csv.DictReader(ln for ln in lines if ln and not ln.startswith("#")):
        cfg = dict(defaults)
        refs: dict[str, float] = {}
        oom = False
        for k, v in row.items():
            if k in ("id", "note"):
                continue
            val = _value(v or "")
            if val is None:
                continue
            if k == "ref_oom":
                oom = bool(val)
            elif k.startswith("ref_"):
                refs[k] = float(val)
            else:
                cfg[k] = val
        if "model" in cfg and "hidden_size" in cfg:
            del cfg["model"]
        out.append(Reference(row["id"], path.name, meta["group"], meta["split"], cfg, refs,
                             "; ".join(sources)[:400] or path.name, fits,
                             (row.get("note") or "").strip(), oom, meta))
    return out


def references(files: list[str] | None = None) -> Iterator[Reference]:
    for path in sorted(DATA.glob("*.csv")):
        if files is None or path.name in files:
            yield from read(path)


# -- the sources' FLOP definitions ------------------------------------------------------------
def nemo_flops_per_token(m: Model, seq: int) -> float:
    """NeMo's GPT formula (nemo/utils/flops_formulas.py ``gpt3``): per token, fwd + bwd."""
    h, L = m.hidden_size, m.num_layers
    return 72.0 * L * h * h * (1.0 + seq / (6.0 * h)) + 6.0 * h * m.vocab_size


def megatron_flops_per_token(m: Model, seq: int, mtp: int = 0) -> float:
    """Megatron-Core's ``num_floating_point_operations`` / tokens (training.py, 2025)."""
    h, a = m.hidden_size, m.num_heads
    L = m.num_layers + mtp
    g = m.num_kv_heads
    kv = m.head_dim
    gl = 1.5 if m.gated_mlp else 1.0
    n_moe = (m.num_layers - m.first_dense_layers if m.num_experts else 0)
    n_moe += mtp if m.num_experts else 0
    n_dense = L - n_moe
    mlp = 12.0 * L * h * (m.ffn_hidden_size * gl * n_dense / L
                          + m.moe_ffn_hidden_size * m.top_k * gl * n_moe / L
                          + m.moe_ffn_hidden_size * m.num_shared_experts * gl * n_moe / L)
    if m.attention == "mla":
        q = (m.q_lora_rank * (h + a * (m.qk_nope_head_dim + m.qk_rope_head_dim) + 1)
             if m.q_lora_rank else h * a * (m.qk_nope_head_dim + m.qk_rope_head_dim))
        attn = 6.0 * L * (q + m.kv_lora_rank * (h + a * (m.qk_nope_head_dim + m.v_head_dim) + 1)
                          + h * m.qk_rope_head_dim + a * m.v_head_dim * h
                          + seq * a * (m.qk_nope_head_dim + m.qk_rope_head_dim) * 0.5
                          + seq * a * m.v_head_dim * 0.5)
    else:
        attn = 12.0 * L * h * h * (1.0 + g / a + seq / h * 0.5) * (kv * a / h)
    mtp_proj = 6.0 * mtp * (3 * h + 2 * h * h)
    return mlp + attn + mtp_proj + 6.0 * h * m.vocab_size * (mtp + 1)


def reference_tokens_per_s(r: Reference) -> float | None:
    """The run's throughput (tokens/s over all GPUs) by the source's own definitions."""
    cfg = r.config
    gpus = cfg["num_gpus"]
    if "ref_tokens_per_s" in r.refs:
        return r.refs["ref_tokens_per_s"]
    if "ref_tokens_per_s_per_gpu" in r.refs:
        return r.refs["ref_tokens_per_s_per_gpu"] * gpus
    if "ref_step_time_s" in r.refs:
        return cfg["global_batch"] * cfg["seq_len"] / r.refs["ref_step_time_s"]
    model, _ = resolve_model(cfg)
    if "ref_model_tflops_nemo" in r.refs:
        return r.refs["ref_model_tflops_nemo"] * 1e12 * gpus / nemo_flops_per_token(
            model, cfg["seq_len"])
    if "ref_model_tflops_megatron" in r.refs:
        return r.refs["ref_model_tflops_megatron"] * 1e12 * gpus / megatron_flops_per_token(
            model, cfg["seq_len"], int(cfg.get("mtp_layers", 0)))
    return None


__all__ = ["DATA", "GROUPS", "Reference", "megatron_flops_per_token", "nemo_flops_per_token",
           "read", "reference_tokens_per_s", "references"]
