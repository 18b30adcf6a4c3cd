"""Memory per GPU of one pipeline stage: weights, gradients, optimizer state, activations.

Activations per layer and micro-batch follow Korthikanti et al., "Reducing Activation
Recomputation in Large Transformer Models" (MLSys'23), Sec. 4: ``s*b*h*(34 + 5*a*s/h)`` bytes
for a GPT layer with dropout, split into the parts replicated across tensor-parallel ranks
(``10*s*b*h``: norm inputs, GEMM inputs, dropout masks; divided by ``t`` with sequence
parallelism), the TP-sharded parts (``24*s*b*h/t``) and the attention scores
(``5*a*s^2*b/t``). The same accounting is generalized tensor by tensor to GQA/MLA attention,
gated MLPs, MoE blocks, models without dropout, and FlashAttention (which keeps only the
output and the log-sum-exp instead of the scores). Selective recomputation drops the attention
core; full recomputation keeps each layer's input plus one layer's working set.

Recomputation: ``selective`` rebuilds the ``recompute_modules`` in backward (default the
attention core, Korthikanti et al.; Megatron-Core's ``--recompute-modules``: ``layernorm`` the
two norm outputs, ``mlp_act`` / ``moe_act`` the MLP / expert activation outputs, ``mlp`` the
dense MLP's intermediates, ``moe`` the whole MoE block's, ``mla_up_proj`` MLA's up-projected
Q/K/V); ``full`` keeps each layer's input only; ``recompute_layers`` limits full recomputation
to that many layers per stage (Megatron's block method, torchtitan's every-n-th layer).

Pipeline schedules (same paper, Sec. 4.2.3): 1F1B stage ``r`` of ``p`` holds ``min(m, p-r)``
micro-batches of its ``L/p`` layers; the interleaved schedule holds
``(v-1)*p + 2*(p-r-1) + 1`` chunk-micro-batches of ``L/(p*v)`` layers (the first stage:
``L * (1 + (p-1)/(p*v))`` layer-micro-batches).

Model state per parameter comes from the stack profile (which copies it keeps): Megatron-LM
keeps 16-bit weights (fp8 primary weights and their transposes in fp8 runs), fp32 main
gradients and fp32 master weights + Adam moments in the (distributed) optimizer; PyTorch FSDP
keeps only fp32 shards (master weights, gradients, moments) and gathers 16-bit (or fp8) copies
of ``1 + fsdp_prefetch_layers`` layers at a time. ZeRO stage 1/2/3 shard optimizer /
+ gradients / + weights across the data-parallel (x context-parallel) ranks, or across
``zero_shard_size`` of them (hybrid sharding); expert parameters across the expert
data-parallel ranks. FP8 delayed scaling adds an amax history per GEMM tensor.

On top: the CUDA context and library workspaces, NCCL buffers, and the caching allocator's
fragmentation as a share of the dynamic (activation + transient) memory, all from the profile.
"""

from __future__ import annotations

from typing import NamedTuple

from tuner.evaluators.training._moe import load_factor, tokens_in
from tuner.evaluators.training._plan import Plan
from tuner.evaluators.training._shapes import LayerShapes

GIB = float(1 << 30)


_ACT_CACHE: dict[tuple, tuple[float, float]] = {}


def layer_activation_bytes(p: Plan, sh: LayerShapes, recompute: str) -> tuple[float, float]:
    """(stored bytes, working-set bytes) of one layer and micro-batch on one GPU (memoized)."""
    key = (p.model_key, sh.moe, p.tp, p.ep, p.etp, p.cp, p.micro_batch, p.seq_len,
           p.sequence_parallel, p.attention_impl, p.dropout, recompute, p.recompute_set,
           p.moe_force_balance, p.moe_capacity_factor, p.stack.key)
    v = _ACT_CACHE.get(key)
    if v is None:
        if len(_ACT_CACHE) > 1 << 14:
            _ACT_CACHE.clear()
        v = _ACT_CACHE[key] = _layer_activation_bytes(p, sh, recompute)
    return v


def _layer_activation_bytes(p: Plan, sh: LayerShapes, recompute: str) -> tuple[float, float]:
    """(stored bytes, working-set bytes) of one layer and micro-batch on one GPU.

    The working set is what the backward pass of one layer materializes on top of the stored
    activations (full recomputation rebuilds the whole layer's activations).
    """
    m = p.model
    b, t = p.micro_batch, p.tp
    tokens = b * p.seq_len / p.cp
    h = m.hidden_size
    rep = tokens / t if p.sequence_parallel and t > 1 else tokens
    drop = 1.0 if p.dropout else 0.0
    # replicated across TP (sharded with SP): norm inputs, first GEMM inputs, dropout masks
    replicated = (2 + 2 + drop + 2 + 2 + drop) * h * rep
    if m.attention == "mla":
        replicated += 2.0 * (m.q_lora_rank + m.kv_lora_rank) * tokens
    # TP-sharded: Q, K, V, attention output (= projection input), MLP intermediate tensors
    qkv = 2.0 * tokens * (sh.heads * sh.d_qk + sh.kv_heads * (sh.d_qk + sh.d_v))
    context = 2.0 * tokens * sh.heads * sh.d_v
    up_factor = 2 if sh.gated else 1
    dense_mlp = moe_block = moe_act = dense_act = 0.0
    if sh.moe:
        # routed copies on the slowest rank: dispatched input, FC1 output, activation output
        routed = tokens_in(p, tokens) * sh.top_k * load_factor(p, p.stack)
        moe_block = 2.0 * routed * (h + sh.expert_f * (up_factor + 1))
        moe_act = 2.0 * routed * sh.expert_f
        moe_block += 4.0 * rep * m.num_experts  # router probabilities (fp32) of own tokens
        if m.num_shared_experts:
            f = m.moe_ffn_hidden_size * m.num_shared_experts / t
            dense_mlp = 2.0 * tokens * f * (up_factor + 1)
            dense_act = 2.0 * tokens * f
    else:
        f = m.ffn_hidden_size / t
        dense_mlp = 2.0 * tokens * f * (up_factor + 1)
        dense_act = 2.0 * tokens * f
    mlp = dense_mlp + moe_block
    # attention core: scores (unfused) or the log-sum-exp (flash)
    if p.attention_impl == "unfused":
        scores = b * sh.heads * p.seq_len * p.seq_len * (2.0 + 3.0 * drop)
    else:
        scores = 4.0 * tokens * sh.heads
    full = replicated + qkv + context + mlp + scores
    if recompute == "none":
        return full, 0.0
    if recompute == "selective":
        mods = p.recompute_set
        rebuilt = 0.0
        if "core_attn" in mods and p.attention_impl == "unfused":
            rebuilt += scores
        if "layernorm" in mods:
            rebuilt += 4.0 * h * rep
        rebuilt += dense_mlp if "mlp" in mods else (dense_act if "mlp_act" in mods else 0.0)
        rebuilt += moe_block if "moe" in mods else (moe_act if "moe_act" in mods else 0.0)
        if "mla_up_proj" in mods and m.attention == "mla":
            rebuilt += qkv
        return full - rebuilt, rebuilt
    return 2.0 * h * rep, full  # full: keep the layer input only


def in_flight(p: Plan, rank: int) -> float:
    """Layer-micro-batches of activations stage ``rank`` holds at its peak, per layer of it."""
    pp, v, mb = p.pp, p.pp_interleave, max(p.num_micro, 1)
    if pp == 1:
        return 1.0
    if v == 1:
        return float(min(mb, pp - rank))
    chunks = min(mb * v, (v - 1) * pp + 2 * (pp - rank - 1) + 1)
    return chunks / v


def recompute_fraction(p: Plan, layers: int) -> float:
    """Share of a stage's layers that recompute (``recompute_layers`` of full recompute)."""
    if p.recompute != "full" or not p.recompute_layers or layers <= 0:
        return 1.0
    return min(p.recompute_layers, layers) / layers


class StageMemory(NamedTuple):
    """Bytes on one GPU of one pipeline stage."""

    weights: float
    grads: float
    optimizer: float
    activations: float  # stored activations at the schedule's peak
    working: float  # transient: recompute working set, logits, ZeRO-3 gathered layers
    params: float  # parameters held (before ZeRO sharding)
    offloaded: float  # activations of one micro-batch moved to the host (offload on)
    fixed: float  # CUDA context + workspaces + NCCL buffers + fp8 amax histories

    @property
    def model_state(self) -> float:
        return self.weights + self.grads + self.optimizer

    def allocated(self) -> float:
        """Tensors the framework allocates at the peak (``max_memory_allocated``)."""
        return self.model_state + self.activations + self.working

    def total(self, frag: float, fixed: float | None = None) -> float:
        """Device memory needed: tensors, allocator fragmentation, context and buffers."""
        return (self.allocated() + frag * (self.activations + self.working)
                + (self.fixed if fixed is None else fixed))


def shard_groups(p: Plan) -> tuple[int, int]:
    """Ranks that shard (dense, expert) parameter state under ZeRO/FSDP."""
    group = max(p.dp * p.cp, 1)
    expert = max(p.edp, 1)
    if p.zero_shard_size and p.zero_shard_size < group:
        expert = max(expert * p.zero_shard_size // group, 1)
        group = p.zero_shard_size
    return group, expert


def stage_memory(p: Plan, rank: int, n_dense: int, n_moe: int, dense: LayerShapes,
                 moe: LayerShapes | None) -> StageMemory:
    """Memory of pipeline stage ``rank`` holding ``n_dense`` dense and ``n_moe`` MoE layers."""
    m = p.model
    st = p.stack
    t = p.tp
    last = rank == p.pp - 1
    first = rank == 0
    # parameters on this GPU (TP-sharded parts divided by t, experts by etp * ep)
    p_dense = n_dense * (dense.params_dense + dense.params_replicated)
    p_expert = 0.0
    layer_moe = 0.0
    if moe is not None:
        layer_moe = moe.params_dense + moe.params_replicated + moe.params_expert
        if n_moe:
            p_dense += n_moe * (moe.params_dense + moe.params_replicated)
            p_expert = n_moe * moe.params_expert
    emb = m.vocab_size * m.hidden_size / t
    if first:
        p_dense += emb
    if last:
        if p.pp > 1 or not m.tied_embeddings:
            p_dense += emb
        if p.mtp_layers:  # MTP modules: a layer and a 2h x h projection each
            p_dense += p.mtp_layers * 2.0 * m.hidden_size * m.hidden_size / t
            if moe is not None:
                p_dense += p.mtp_layers * (moe.params_dense + moe.params_replicated)
                p_expert += p.mtp_layers * moe.params_expert
            else:
                p_dense += p.mtp_layers * (dense.params_dense + dense.params_replicated)
    shard_dense, shard_expert = shard_groups(p)
    z = p.zero_stage
    fp8 = p.dtype == "fp8"

    def held(nbytes: float, stage: int) -> float:
        if z >= stage:
            return nbytes * (p_dense / shard_dense + p_expert / shard_expert)
        return nbytes * (p_dense + p_expert)

    weights = held(st.fp8_weight_bytes if fp8 else st.weight_bytes, 3)
    if z == 2:  # nothing reshards after forward: a stack that gathers its compute copies
        # (FSDP's SHARD_GRAD_OP) holds the whole stage's until backward ends
        gather = st.fp8_gather_bytes if fp8 else st.gather_bytes
        weights = max(weights, gather * (p_dense + p_expert))
    grads = held(p.grad_bytes, 2)
    optimizer = 0.0 if p.offload_optimizer else held(st.master_bytes + p.moment_bytes, 1)

    # activations (``recompute_layers``: only that many layers of the stage recompute fully)
    n_layers = n_dense + n_moe + (p.mtp_layers if last else 0)
    store_d, work_d = layer_activation_bytes(p, dense, p.recompute)
    store_m, work_m = (layer_activation_bytes(p, moe, p.recompute) if moe is not None
                       else (0.0, 0.0))
    frac = recompute_fraction(p, n_layers)
    if frac < 1.0:
        keep_d = layer_activation_bytes(p, dense, "none")[0]
        keep_m = layer_activation_bytes(p, moe, "none")[0] if moe is not None else 0.0
        store_d = frac * store_d + (1.0 - frac) * keep_d
        store_m = frac * store_m + (1.0 - frac) * keep_m
    per_mb = n_dense * store_d + n_moe * store_m
    if last and p.mtp_layers:
        per_mb += p.mtp_layers * (store_m if moe is not None else store_d)
    tokens = p.micro_batch * p.seq_len / p.cp
    rep = tokens / t if p.sequence_parallel and t > 1 else tokens
    if first and p.dropout:
        per_mb += m.hidden_size * rep  # embedding dropout mask
    working = max(work_d, work_m if n_moe else 0.0)
    offloaded = 0.0
    if p.offload_activations:
        # stored activations live on the host; two layers stay resident (double buffering)
        acts = 2.0 * max(store_d, store_m)
        offloaded = per_mb
    else:
        acts = per_mb * in_flight(p, rank)
    if last:  # the logits and what the stack's cross entropy keeps beside them
        heads = 1 + p.mtp_layers
        shard = m.vocab_size / t
        if p.loss_parallel or t == 1:
            logits = shard * st.logit_bytes
        else:  # the local 16-bit shard, then the full vocabulary on every TP rank
            logits = 2.0 * shard + m.vocab_size * st.logit_bytes
        working = max(working, heads * tokens * logits + 2.0 * m.hidden_size * tokens)
    if z == 3:
        # the gathered units (current + prefetched layers, or the embedding / output head)
        # and one unit's unsharded gradients
        layer = max((dense.params_dense + dense.params_replicated) if n_dense else 0.0,
                    layer_moe if n_moe else 0.0, emb if first or last else 0.0)
        gather = st.fp8_gather_bytes if fp8 else st.gather_bytes
        working += layer * ((1 + st.prefetch) * gather + p.grad_bytes)
    fixed = st.context_bytes + st.nccl_bytes
    if fp8 and st.amax_history:  # 3 fp32 tensors (input, weight, grad) per fp8 GEMM
        fixed += n_layers * 6 * 3 * 4.0 * st.amax_history
    return StageMemory(weights, grads, optimizer, acts, working, p_dense + p_expert,
                       offloaded, fixed)


__all__ = ["GIB", "StageMemory", "in_flight", "layer_activation_bytes", "recompute_fraction",
           "shard_groups", "stage_memory"]
