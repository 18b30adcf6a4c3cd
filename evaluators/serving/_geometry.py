"""Per-GPU model shapes and GPU memory of one serving engine.

Shapes follow the parallel layout: attention and dense MLP split ``attn_tp`` ways (the tensor
parallel group, or 1 under attention data parallelism, where every GPU runs attention for its
own requests with the whole attention weights), routed experts split ``ep`` ways and each
expert ``tp/ep`` ways (vLLM's ``--enable-expert-parallel``, SGLang/TensorRT-LLM EP).

Memory per GPU follows the engine's KV sizing rule (``memory_fraction_of`` in its profile):

* ``total`` (vLLM, ``gpu_worker.determine_available_memory``): fraction x visible memory -
  weights - activation peak - non-torch memory;
* ``static`` (SGLang ``mem_fraction_static``): fraction x visible memory holds weights + KV
  pool; activations and runtime buffers live in the rest;
* ``free`` (TensorRT-LLM ``free_gpu_memory_fraction``): fraction of what is free after weights,
  activations and runtime buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tuner.evaluators._catalog import Hardware, Model
from tuner.evaluators._perf import BYTES

GIB = 2**30

#: bytes per element of weight formats (scales included): int4 keeps one bf16 scale per group
#: of 128 (AWQ/GPTQ/Marlin); GGUF blocks of 32 weights (ggml-common.h): q4_0 = 16 B of nibbles
#: + fp16 scale (4.5 bits), q4_1 = + fp16 min (5 bits), q8_0 = 32 B + fp16 scale (8.5 bits),
#: q6_K = 210 B per 256 weights (6.5625 bits); MXFP4 (OCP Microscaling) one 8-bit power-of-two
#: scale per block of 32 fp4 weights (4.25 bits)
ELEMENT_BYTES = {"bf16": 2.0, "f16": 2.0, "fp16": 2.0, "fp8": 1.0, "int4": 0.5 + 2 / 128,
                 "mxfp4": 0.5 + 1 / 32,
                 "q4_0": 18 / 32, "q4_1": 20 / 32, "q8_0": 34 / 32, "q6_K": 210 / 256}


def element_bytes(dtype: str) -> float:
    return ELEMENT_BYTES.get(dtype) or float(BYTES[dtype])


#: the layer groups a quantization mix sets independently (as ``evaluators/quant`` names them)
MIX_ROLES = ("qkv", "attn_out", "mlp_up", "mlp_down")


@dataclass(frozen=True)
class WeightMix:
    """A mixed-precision model as the serving model needs it: per layer group, the stored
    bytes per weight element (scales included) and the dtype its GEMMs compute in. Set by a
    composing evaluator (the quantization model decides both); ``None`` on a plan means one
    ``weight_dtype`` everywhere."""

    element_bytes: tuple[tuple[str, float], ...]
    compute_dtype: tuple[tuple[str, str], ...]

    def bytes_of(self, role: str) -> float:
        return dict(self.element_bytes)[role]

    def dtype_of(self, role: str) -> str:
        return dict(self.compute_dtype)[role]


def attn_roles(gemms: tuple[tuple[int, int], ...]) -> tuple[str, ...]:
    """Layer group of each attention GEMM: the projections into attention, then the output."""
    return ("qkv",) * (len(gemms) - 1) + ("attn_out",)


def mlp_roles(gemms: tuple[tuple[int, int], ...]) -> tuple[str, ...]:
    """Layer group of each MLP / expert GEMM: up (with gate), then down."""
    return ("mlp_up", "mlp_down")[:len(gemms)]


@dataclass(frozen=True)
class Geometry:
    """Per-GPU shapes of one model: attention and dense MLP split ``attn_tp`` ways, routed
    experts ``ep`` ways (each expert ``tp/ep`` ways)."""

    model: Model
    tp: int
    ep: int
    attn_tp: int
    #: (n, k) of each attention GEMM per layer on one GPU
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

    @property
    def dp_attention(self) -> bool:
        return self.attn_tp < self.tp


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def geometry(model: Model, tp: int, ep: int = 1, dp_attention: bool = False,
             expert_pad: tuple[int, int] = (1, 1)) -> Geometry:
    """``expert_pad``: multiples the engine pads the routed experts' hidden and per-rank
    intermediate sizes to (its kernel's layout, as stored and computed)."""
    h, hd = model.hidden_size, model.head_dim
    atp = 1 if dp_attention else tp
    heads = max(1, model.num_heads // atp)
    kvh = max(1, model.num_kv_heads // atp)
    if model.attention == "mla":
        nope, rope = model.qk_nope_head_dim, model.qk_rope_head_dim
        v = model.v_head_dim or hd
        q = ((model.q_lora_rank, h), (heads * (nope + rope), model.q_lora_rank)) \
            if model.q_lora_rank else ((heads * (nope + rope), h),)
        attn = (*q, (model.kv_lora_rank + rope, h), (heads * (nope + v), model.kv_lora_rank),
                (h, heads * v))
        kv_elems = model.kv_lora_rank + rope  # the latent cache is replicated on every TP rank
    else:
        attn = ((heads * hd + 2 * kvh * hd, h), (h, heads * hd))
        kv_elems = 2 * kvh * hd
    up = 2 if model.gated_mlp else 1
    ffn = max(1, model.ffn_hidden_size // atp)
    mlp = ((up * ffn, h), (h, ffn))
    expert: tuple[tuple[int, int], ...] = ()
    shared: tuple[tuple[int, int], ...] = ()
    moe_layers = dense_layers = 0
    if model.is_moe:
        etp = max(1, tp // ep)
        effn = _round_up(max(1, model.moe_ffn_hidden_size // etp), expert_pad[1])
        eh = _round_up(h, expert_pad[0])
        expert = ((up * effn, eh), (eh, effn))
        if model.num_shared_experts:
            sffn = max(1, model.moe_ffn_hidden_size * model.num_shared_experts // atp)
            shared = ((up * sffn, h), (h, sffn))
        dense_layers = model.first_dense_layers
        moe_layers = model.num_layers - dense_layers
    else:
        dense_layers = model.num_layers
    swa = 0
    if model.sliding_window and model.sliding_window_every:
        # every n-th layer is full attention, the others use the sliding window
        swa = model.num_layers - model.num_layers // model.sliding_window_every
    return Geometry(model, tp, ep, atp, attn, mlp, expert, shared, heads, kvh,
                    model.num_experts // ep if model.is_moe else 0, dense_layers, moe_layers,
                    float(kv_elems), model.num_layers - swa, swa)


def _gemm_params(gemms: tuple[tuple[int, int], ...]) -> int:
    return sum(n * k for n, k in gemms)


def _gemm_bytes(gemms: tuple[tuple[int, int], ...], roles: tuple[str, ...],
                mix: WeightMix) -> float:
    return sum(n * k * mix.bytes_of(r) for (n, k), r in zip(gemms, roles))


def weight_bytes_per_gpu(g: Geometry, pp: int, weight_dtype: str,
                         embedding_dtype: str = "bf16", mix: WeightMix | None = None,
                         expert_dtype: str | None = None) -> float:
    """Weights on the most loaded GPU (largest pipeline stage, embedding or LM head on it);
    ``mix`` stores each layer group in its own format instead of ``weight_dtype``;
    ``expert_dtype`` stores the routed experts in their own format."""
    m = g.model
    router = m.hidden_size * m.num_experts * BYTES["bf16"] if m.is_moe else 0
    if mix is None:
        wb = element_bytes(weight_dtype)
        eb = element_bytes(expert_dtype or weight_dtype)
        layer_dense = (_gemm_params(g.attn_gemms) + _gemm_params(g.mlp_gemms)) * wb
        layer_moe = ((_gemm_params(g.attn_gemms) + _gemm_params(g.shared_gemms)) * wb
                     + g.experts_local * _gemm_params(g.expert_gemms) * eb)
    else:
        attn = _gemm_bytes(g.attn_gemms, attn_roles(g.attn_gemms), mix)
        layer_dense = attn + _gemm_bytes(g.mlp_gemms, mlp_roles(g.mlp_gemms), mix)
        layer_moe = (attn + g.experts_local * _gemm_bytes(g.expert_gemms,
                                                          mlp_roles(g.expert_gemms), mix)
                     + _gemm_bytes(g.shared_gemms, mlp_roles(g.shared_gemms), mix))
    per_layer_dense = layer_dense + 4 * m.hidden_size  # + two RMSNorm vectors
    per_layer_moe = layer_moe + router + 4 * m.hidden_size
    total_layers = (g.dense_layers * per_layer_dense + g.moe_layers * per_layer_moe)
    # the largest stage holds ceil(L/pp) layers of the average kind
    stage = total_layers * math.ceil(g.num_layers / pp) / g.num_layers
    # vocab-parallel over the attention TP group, kept in 16 bits on GPUs
    vocab = m.vocab_size * m.hidden_size / g.attn_tp * element_bytes(embedding_dtype)
    ends = vocab * (1 if m.tied_embeddings or pp > 1 else 2)
    return stage + ends


def weight_element_bytes(dtype: str) -> float:
    """Bytes per weight element including quantization scales."""
    return element_bytes(dtype)


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
    #: bytes the KV rule needs besides the KV cache within ``usable`` (weights, and for the
    #: "total" rule activations and runtime; "static" keeps those outside the fraction)
    overhead_in_usable: float = 0.0

    def kv_tokens(self, block_size: int) -> int:
        if self.kv <= 0:
            return 0
        return int(self.kv // (self.kv_bytes_per_token * block_size)) * block_size


#: how an engine sizes its KV pool (profile constant ``memory_fraction_of``)
MEMORY_RULES = ("total", "free", "static")


def memory(g: Geometry, hw: Hardware, pp: int, weight_dtype: str, kv_dtype: str,
           utilization: float, max_tokens: int, max_seqs: int, prof: Any,
           mix: WeightMix | None = None, expert_dtype: str | None = None) -> Memory:
    """Memory of one GPU of an engine; ``prof`` is the engine's stack profile."""
    m = g.model
    visible = hw.hbm_gib * GIB * prof["visible_fraction"]
    weights = weight_bytes_per_gpu(g, pp, weight_dtype, mix=mix, expert_dtype=expert_dtype)
    # activation peak of the profiling forward pass with max_num_batched_tokens tokens: the
    # widest live tensors (MLP up-projection output + activation output, QKV, residual stream)
    # in bf16, plus fp32 logits for max_num_seqs sequences (the dummy sampler run)
    ffn = max(m.ffn_hidden_size / g.attn_tp, m.moe_ffn_hidden_size * (m.top_k or 1) / g.tp)
    width = 3 * ffn + sum(n for n, _ in g.attn_gemms[:1]) + 4 * m.hidden_size
    act = max_tokens * width * BYTES["bf16"] + max_seqs * m.vocab_size / g.attn_tp * 4
    non_torch = prof["non_torch_gib"] * GIB
    if g.tp * pp > 1:
        non_torch += prof["non_torch_gib_multi_gpu"] * GIB
    rule = prof["memory_fraction_of"]
    if rule == "static":
        usable = utilization * visible
        kv = usable - weights
        inside = weights
        if act + non_torch > visible - usable:  # the runtime does not fit beside the pool
            kv = min(kv, visible - weights - act - non_torch)
    elif rule == "free":
        usable = visible
        kv = utilization * (visible - weights - act - non_torch)
        inside = weights + act + non_torch
    else:
        usable = utilization * visible
        kv = usable - weights - act - non_torch
        inside = weights + act + non_torch
    layers_stage = math.ceil(g.num_layers / pp)
    # engines without a sliding-window pool give those layers a token's KV like the others
    frac_full = 1.0 if prof["sliding_window_full_kv"] else g.full_attn_layers / g.num_layers
    per_layer = g.kv_bytes_per_token_layer * element_bytes(kv_dtype)
    kv_tok = per_layer * layers_stage * frac_full
    swa = per_layer * layers_stage * (1 - frac_full) * m.sliding_window
    return Memory(usable, weights, act, non_torch, kv, kv_tok, swa, inside)


__all__ = ["ELEMENT_BYTES", "GIB", "MIX_ROLES", "Geometry", "Memory", "WeightMix", "attn_roles",
           "element_bytes", "geometry", "memory", "mlp_roles", "weight_bytes_per_gpu",
           "weight_element_bytes"]
