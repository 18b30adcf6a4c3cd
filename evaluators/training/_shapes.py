"""Per-layer GEMM shapes, parameter counts and model FLOPs of a decoder-only transformer.

Covers dense and MoE layers, MHA/GQA/MQA and MLA (DeepSeek) attention, gated (SwiGLU) and
plain (GELU) MLPs, sliced by tensor parallelism ``t``, expert parallelism ``ep`` and expert
tensor parallelism ``etp``. GEMMs are listed per token: a GEMM on ``T`` tokens is
``(M=T, N, K)``; the routed experts' GEMMs, whose ``M`` is each expert's own token count,
are timed by ``_moe.py`` from ``expert_n1`` / ``expert_f`` / ``local_experts``.

Model FLOPs follow PaLM (Chowdhery et al. 2022, App. B) / Megatron-LM (Narayanan et al. 2021,
Eq. 3): ``2 * (matmul parameters touched)`` per token forward, plus ``2 * s * heads *
(d_qk + d_v)`` per token and layer for attention scores and values (the full ``s x s`` score
matrix, as both papers count it); backward is twice the forward.
"""

from __future__ import annotations

from typing import NamedTuple

from tuner.evaluators._catalog import Model


class Gemm(NamedTuple):
    """One linear layer on one GPU: ``N`` outputs from ``K`` inputs per token.

    ``kind``: ``col`` (input replicated across TP, output sharded: its backward all-reduces or
    reduce-scatters the input gradient), ``row`` (input sharded, output reduced across TP), or
    ``rep`` (replicated weights, no TP communication).
    """

    name: str
    n: int
    k: int
    kind: str
    #: grouped GEMM: ``groups`` experts, each seeing ``token_share`` x tokens (MoE experts)
    groups: int = 1
    token_share: float = 1.0


class LayerShapes(NamedTuple):
    attn_gemms: tuple[Gemm, ...]
    mlp_gemms: tuple[Gemm, ...]
    heads: int  # query heads per TP rank
    kv_heads: int  # KV heads per TP rank (MLA: expanded, = heads)
    d_qk: int
    d_v: int
    mlp_act_width: int  # per-token width of the MLP activation input on one GPU
    gated: bool
    moe: bool
    top_k: int
    local_experts: int  # routed experts on one GPU (E / ep)
    expert_f: int  # one expert's FFN width on one GPU (moe_ffn_hidden_size / etp)
    expert_n1: int  # output width of an expert's first GEMM (2 * expert_f when gated)
    #: per-layer parameters on one GPU: (TP-sharded dense, replicated, expert) counts
    params_dense: float
    params_replicated: float
    params_expert: float
    #: model FLOPs per token (forward, whole layer across all GPUs, attention excluded)
    matmul_flops_per_token: float


def _attention(m: Model, t: int) -> tuple[list[Gemm], float, float, int, int]:
    """GEMMs, sharded params, replicated params, d_qk, d_v of one attention block."""
    h, a = m.hidden_size, m.num_heads
    if m.attention == "mla":
        d_qk, d_v = m.qk_nope_head_dim + m.qk_rope_head_dim, m.v_head_dim
        g: list[Gemm] = []
        rep = 0.0
        if m.q_lora_rank:
            g.append(Gemm("q_down", m.q_lora_rank, h, "rep"))
            g.append(Gemm("q_up", a * d_qk // t, m.q_lora_rank, "col"))
            rep += h * m.q_lora_rank
            sharded = m.q_lora_rank * a * d_qk
        else:
            g.append(Gemm("q", a * d_qk // t, h, "col"))
            sharded = h * a * d_qk
        kv_in = m.kv_lora_rank + m.qk_rope_head_dim
        g.append(Gemm("kv_down", kv_in, h, "rep"))
        g.append(Gemm("kv_up", a * (m.qk_nope_head_dim + d_v) // t, m.kv_lora_rank, "col"))
        g.append(Gemm("proj", h, a * d_v // t, "row"))
        rep += h * kv_in
        sharded += m.kv_lora_rank * a * (m.qk_nope_head_dim + d_v) + a * d_v * h
        return g, sharded, rep, d_qk, d_v
    d, kv = m.head_dim, m.num_kv_heads
    g = [Gemm("qkv", (a + 2 * kv) * d // t, h, "col"), Gemm("proj", h, a * d // t, "row")]
    return g, h * (a + 2 * kv) * d + a * d * h, 0.0, d, d


def _mlp(width: int, m: Model, t: int, name: str = "fc") -> tuple[list[Gemm], float]:
    h, mats = m.hidden_size, 3 if m.gated_mlp else 2
    up = (2 if m.gated_mlp else 1) * width // t
    return ([Gemm(f"{name}1", up, h, "col"), Gemm(f"{name}2", h, width // t, "row")],
            mats * h * width)


def layer_shapes(m: Model, t: int, ep: int, moe: bool, etp: int = 0) -> LayerShapes:
    """Shapes of one layer on one GPU (``moe``: the layer's MLP is a routed MoE block;
    ``etp``: expert tensor parallelism, default ``t``)."""
    etp = etp or t
    h = m.hidden_size
    attn, p_attn, p_rep, d_qk, d_v = _attention(m, t)
    norms = (2 if m.gated_mlp else 4) * h  # RMSNorm weights, or LayerNorm weight + bias
    p_rep += norms
    flops = 2.0 * (p_attn + p_rep - norms)
    if not moe:
        mlp, p_mlp = _mlp(m.ffn_hidden_size, m, t)
        return LayerShapes(tuple(attn), tuple(mlp), m.num_heads // t,
                           (m.num_heads if m.attention == "mla" else m.num_kv_heads) // t,
                           d_qk, d_v, m.ffn_hidden_size // t, m.gated_mlp, False, 0, 0, 0, 0,
                           (p_attn + p_mlp) / t, p_rep, 0.0, flops + 2.0 * p_mlp)
    e, k, f = m.num_experts, m.top_k, m.moe_ffn_hidden_size
    mats = 3 if m.gated_mlp else 2
    local = e // ep
    fe = f // etp
    mlp: list[Gemm] = []  # the router and the routed experts are timed by _moe.py
    p_shared = 0.0
    if m.num_shared_experts:
        shared, p_shared = _mlp(f * m.num_shared_experts, m, t, "shared_fc")
        mlp += shared
    p_router = h * e
    p_experts = e * mats * h * f
    flops += 2.0 * (p_router + k * mats * h * f + p_shared)
    return LayerShapes(tuple(attn), tuple(mlp), m.num_heads // t,
                       (m.num_heads if m.attention == "mla" else m.num_kv_heads) // t,
                       d_qk, d_v, k * fe, m.gated_mlp, True, k, local, fe,
                       (2 if m.gated_mlp else 1) * fe,
                       (p_attn + p_shared) / t, p_rep + p_router, p_experts / (etp * ep), flops)


def attention_flops_per_token(m: Model, seq_len: int, d_qk: int, d_v: int) -> float:
    """Forward score + value FLOPs per token and layer (full ``s x s``, PaLM convention)."""
    return 2.0 * seq_len * m.num_heads * (d_qk + d_v)


def num_moe_layers(m: Model) -> int:
    return m.num_layers - m.first_dense_layers if m.num_experts else 0


def total_params(m: Model) -> float:
    """All parameters (embedding and untied output head included)."""
    dense = layer_shapes(m, 1, 1, False)
    per_dense = dense.params_dense + dense.params_replicated
    n_moe = num_moe_layers(m)
    total = (m.num_layers - n_moe) * per_dense
    if n_moe:
        moe = layer_shapes(m, 1, 1, True)
        total += n_moe * (moe.params_dense + moe.params_replicated + moe.params_expert)
    emb = m.vocab_size * m.hidden_size
    return total + emb * (1 if m.tied_embeddings else 2) + m.hidden_size


def model_flops_per_token(m: Model, seq_len: int, mtp_layers: int = 0) -> float:
    """Forward + backward model FLOPs per token (no recomputation): the MFU numerator.

    ``mtp_layers`` multi-token-prediction modules (DeepSeek-V3 Sec. 2.2) each add one more
    layer of the model's last kind, a ``2h -> h`` projection and another output head.
    """
    dense = layer_shapes(m, 1, 1, False)
    n_moe = num_moe_layers(m)
    per_dense = dense.matmul_flops_per_token + attention_flops_per_token(
        m, seq_len, dense.d_qk, dense.d_v)
    fwd = (m.num_layers - n_moe) * per_dense
    last = per_dense
    if n_moe:
        moe = layer_shapes(m, 1, 1, True)
        last = moe.matmul_flops_per_token + attention_flops_per_token(m, seq_len, moe.d_qk,
                                                                        moe.d_v)
        fwd += n_moe * last
    head = 2.0 * m.hidden_size * m.vocab_size  # output head (logits)
    fwd += head + mtp_layers * (last + head + 4.0 * m.hidden_size * m.hidden_size)
    return 3.0 * fwd


__all__ = ["Gemm", "LayerShapes", "attention_flops_per_token", "layer_shapes",
           "model_flops_per_token", "num_moe_layers", "total_params"]
