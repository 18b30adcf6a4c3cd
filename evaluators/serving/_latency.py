"""Latency of one engine step (one forward pass over a continuous batch) from the roofline.

A step runs ``T`` new tokens through every layer: decode sequences contribute one token each,
prefill chunks contribute their chunk. Its time is the sum over layers of

* the GEMMs (QKV/O or MLA projections, MLP or routed experts + shared experts) at ``T`` rows,
  from ``_perf.gemm_seconds`` (compute-bound for prefill, weight-streaming for decode);
* attention: decode reads every sequence's KV cache, prefill is quadratic in the chunk
  (``_perf.attention_time``);
* two tensor-parallel all-reduces of the hidden states (``_perf.collective_time``'s bandwidth
  term plus a small-message latency);
* the non-GEMM kernels (norms, rotary, cache write, activation) as launch + traffic;

plus the LM head and sampler over the sequences that emit a token, pipeline hand-offs, and a
host-side overhead per step. Pipeline parallelism does not shorten a step: a request's token
still passes every layer, so a ``pp``-stage engine runs ``pp`` micro-batches concurrently
(modelled as ``pp`` virtual engines, see ``_cluster``).

MoE layers route ``T * top_k`` token-expert pairs uniformly: the expected number of distinct
experts hit is ``E * (1 - (1 - k/E)^T)``; under expert parallelism the busiest rank sets the
time (mean + sqrt(2 ln ep) standard deviations of a binomial split).
"""

from __future__ import annotations

import math

from evaluators._perf import BYTES, attention_time, collective_seconds, consts, eff, \
    gemm_seconds, memory_time, p2p_time
from evaluators.serving._plan import Plan, constant, geometry

US = 1e-6


class StepModel:
    """Step latency of one engine kind (tp, pp, ep) of a plan. Memoised by token count."""

    def __init__(self, plan: Plan, tp: int, pp: int, ep: int) -> None:
        hw, m = plan.hw, plan.model
        self.hw, self.model, self.tp, self.pp, self.ep = hw, m, tp, pp, ep
        self.c = consts(hw)
        self.g = geometry(m, tp, ep)
        wd = plan.weight_dtype
        # operand bytes: the weights dominate the traffic of every GEMM that streams them
        # (decode); prefill GEMMs are compute-bound, so the activations' width hardly matters
        self.in_bytes = BYTES[wd]
        if wd == "fp8" and "fp8" in hw.peak_tflops:
            self.cdtype = "fp8"  # W8A8 fp8 GEMMs
        else:  # bf16, or weight-only int4 (Marlin W4A16) / fp8 without fp8 tensor cores
            self.cdtype = "bf16"
        self.kvdtype = plan.kv_dtype
        self.launch = eff(hw, "kernel_launch_us") * US
        self.n_elem = constant(hw, "step", "elementwise_kernels_per_layer")
        self.n_moe_extra = constant(hw, "step", "moe_extra_kernels_per_layer")
        if m.attention == "mla":
            self.n_elem += constant(hw, "step", "mla_extra_kernels_per_layer")
        self.step_us = constant(hw, "step", "step_overhead_us") * US
        self.seq_us = constant(hw, "step", "per_seq_overhead_us") * US
        self.ar_lat = constant(hw, "comm", "allreduce_latency_us") * US
        self.moe_eff = constant(hw, "moe", "expert_efficiency")
        self.layers = self.g.num_layers
        self._linear: dict[int, float] = {}
        self._head: dict[int, float] = {}
        # attention geometry (MLA decodes on the latent cache with absorbed projections)
        if m.attention == "mla":
            rope = m.qk_rope_head_dim
            self.dec_attn = (self.g.heads, 1, m.kv_lora_rank + rope, m.kv_lora_rank)
            self.pre_attn = (self.g.heads, self.g.heads, m.qk_nope_head_dim + rope,
                             m.v_head_dim or m.head_dim)
        else:
            self.dec_attn = (self.g.heads, self.g.kv_heads, m.head_dim, m.head_dim)
            self.pre_attn = self.dec_attn
        self.window = m.sliding_window if self.g.swa_layers else 0

    # -- pieces --------------------------------------------------------------------------
    def _gemm(self, t: float, n: int, k: int, batch: float = 1) -> float:
        return gemm_seconds(self.c, t, n, k, self.cdtype, batch, self.in_bytes)

    def _allreduce(self, t: float) -> float:
        if self.tp == 1:
            return 0.0
        nbytes = t * self.model.hidden_size * BYTES["bf16"]
        ring = collective_seconds(self.c, "all_reduce", nbytes, self.tp,
                                  self.hw.gpus_per_node, self.c.nic_bw)
        # small messages: vLLM's custom one-shot all-reduce latency instead of NCCL's
        return ring - self.c.coll_lat + self.ar_lat

    def _elementwise(self, t: float, kernels: float) -> float:
        # each kernel reads and writes the hidden states once
        traffic = 2 * t * self.model.hidden_size * BYTES["bf16"]
        return kernels * (self.launch + memory_time(self.hw, traffic))

    def _experts(self, t: int) -> float:
        m, g = self.model, self.g
        pairs = t * m.top_k
        p_hit = 1.0 - (1.0 - m.top_k / m.num_experts) ** t
        local = g.experts_local
        active = local * p_hit
        tokens = pairs / self.ep
        if self.ep > 1:
            z = math.sqrt(2 * math.log(self.ep))
            active = min(local, active + z * math.sqrt(local * p_hit * (1 - p_hit)))
            tokens += z * math.sqrt(tokens * (1 - 1 / self.ep))
        active = max(active, 1.0)
        per_expert = max(tokens / active, 1.0)
        # grouped expert GEMMs reach only a fraction of the dense roofline when compute-bound
        # (as many FLOPs as 1/eff times the rows); weight streaming (decode) is unaffected
        slow = per_expert / self.moe_eff
        gemms = sum(max(self._gemm(slow, n, k, active), self._gemm(per_expert, n, k, active))
                    for n, k in g.expert_gemms)
        return gemms + self._elementwise(tokens, 1)

    def linear(self, t: int) -> float:
        """Seconds for everything but attention scores and the LM head, ``t`` new tokens."""
        got = self._linear.get(t)
        if got is not None:
            return got
        g, m = self.g, self.model
        attn = sum(self._gemm(t, n, k) for n, k in g.attn_gemms)
        common = attn + 2 * self._allreduce(t) + self._elementwise(t, self.n_elem)
        total = 0.0
        if g.dense_layers:
            total += g.dense_layers * (common + sum(self._gemm(t, n, k) for n, k in g.mlp_gemms))
        if g.moe_layers:
            shared = sum(self._gemm(t, n, k) for n, k in g.shared_gemms)
            if g.shared_gemms:
                shared += self._elementwise(t, 1)  # the shared expert's activation
            moe = (common + gemm_seconds(self.c, t, m.num_experts, m.hidden_size, "bf16")
                   + self._experts(t) + shared + self._elementwise(t, self.n_moe_extra))
            total += g.moe_layers * moe
        if self.pp > 1:
            act = t * m.hidden_size * BYTES["bf16"]
            total += (self.pp - 1) * p2p_time(self.hw, act, inter_node=False)
        self._linear[t] = total
        return total

    def head(self, n: int) -> float:
        """LM head + sampling for ``n`` sequences that emit a token this step."""
        got = self._head.get(n)
        if got is None:
            m = self.model
            vocab = m.vocab_size / self.tp
            got = gemm_seconds(self.c, n, vocab, m.hidden_size, "bf16") \
                + memory_time(self.hw, 3 * n * vocab * 4) + self.launch * 3
            self._head[n] = got
        return got

    def overhead(self, seqs: int) -> float:
        return self.step_us + self.seq_us * seqs

    def attn_decode(self, b: int, kv_sum: float) -> float:
        """All layers' decode attention for ``b`` sequences holding ``kv_sum`` KV tokens."""
        if b <= 0:
            return 0.0
        heads, kvh, d, dv = self.dec_attn
        mean = kv_sum / b
        full = attention_time(self.hw, b, 1, mean, heads, kvh, d, self.kvdtype, v_head_dim=dv)
        t = self.g.full_attn_layers * full
        if self.g.swa_layers:
            win = attention_time(self.hw, b, 1, min(mean, self.window), heads, kvh, d,
                                 self.kvdtype, v_head_dim=dv)
            t += self.g.swa_layers * win
        return t

    def attn_prefill(self, q: int, kv_end: int) -> float:
        """All layers' attention for a prefill chunk of ``q`` tokens ending at ``kv_end``."""
        heads, kvh, d, dv = self.pre_attn
        full = attention_time(self.hw, 1, q, kv_end, heads, kvh, d, self.kvdtype,
                              v_head_dim=dv)
        t = self.g.full_attn_layers * full
        if self.g.swa_layers:
            win = attention_time(self.hw, 1, q, min(kv_end, q + self.window), heads, kvh, d,
                                 self.kvdtype, v_head_dim=dv)
            t += self.g.swa_layers * win
        if self.model.attention == "mla" and kv_end > q:
            # cached latents of the earlier context are up-projected for the chunk's attention
            m = self.model
            n = self.g.heads * (m.qk_nope_head_dim + (m.v_head_dim or m.head_dim))
            t += self.layers * self._gemm(kv_end - q, n, m.kv_lora_rank)
        return t

    def attention_launch_saving(self, calls: int) -> float:
        """One fused attention kernel serves the whole batch: refund the extra launches."""
        return max(calls - 1, 0) * self.layers * self.launch

    # -- whole steps ---------------------------------------------------------------------
    def decode_step(self, b: int, kv_sum: float) -> float:
        """A decode-only step of ``b`` sequences whose KV caches hold ``kv_sum`` tokens."""
        return self.linear(b) + self.head(b) + self.attn_decode(b, kv_sum) + self.overhead(b)

    def step(self, tokens: int, logits: int, seqs: int, dec_b: int, dec_kv: float,
             chunks: list[tuple[int, int]]) -> float:
        """A mixed step: ``dec_b`` decodes over ``dec_kv`` KV tokens plus prefill ``chunks``
        of (new tokens, context length after the chunk)."""
        t = self.linear(tokens) + self.head(logits) + self.overhead(seqs)
        calls = 0
        if dec_b:
            t += self.attn_decode(dec_b, dec_kv)
            calls += 1
        for q, kv_end in chunks:
            t += self.attn_prefill(q, kv_end)
            calls += 1
        return t - self.attention_launch_saving(calls)


__all__ = ["StepModel"]
