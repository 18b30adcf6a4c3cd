"""Latency of one GPU engine step (one forward pass over a continuous batch) from the roofline.

A step runs ``T`` new tokens through every layer: decode sequences contribute one token each,
prefill chunks contribute their chunk. Its GPU time is the sum over layers of

* the GEMMs (QKV/O or MLA projections, MLP or routed experts + shared experts) at ``T`` rows,
  from ``_perf.gemm_seconds`` (compute-bound for prefill, weight-streaming for decode) at the
  GPU's ``sustained_clock`` (a benchmark keeps the GPU busy for minutes, as training does); fp8
  weights with 128-block scales (``fp8_recipe = "blockwise"``) compute at the GPU's
  ``gemm_fp8_block_scale`` of the fp8 rate;
* attention: decode reads every sequence's KV cache, prefill is quadratic in the chunk
  (``_perf.attention_time``, at the engine's ``prefill_attention_efficiency`` of the fused
  kernel's roofline: chunked prefill attends through the paged cache with varlen kernels);
* two tensor-parallel all-reduces of the hidden states (``_perf.collective_seconds``'s
  bandwidth term plus the engine's small-message latency);
* the non-GEMM kernels (norms, rotary, cache write, activation) as launch + traffic;

plus the LM head and sampler over the sequences that emit a token and pipeline hand-offs.
The engine's profile adds what its software does around that GPU work:

* CUDA graphs: a decode batch up to ``cuda_graph_max_batch`` (``cuda_graph_max_batch_tp4`` at
  TP >= 4) replays the graph captured for the next size (multiples of ``cuda_graph_pad``), so
  it computes padded rows (without padding, ``cuda_graph_pad = 0``, only a batch of a captured
  size replays one: every size below ``cuda_graph_all_sizes_below``, then powers of two);
  mixed steps of up to that many tokens replay one too where the engine captures them
  (``cuda_graph_mixed``: vLLM V1's piecewise graphs); any other step
  launches its kernels from the host, which costs ``eager_launch_us_per_layer`` per layer and
  overlaps the GPU work it launches (``max(GPU, launches)``);
* host work per step (``step_overhead_us`` + ``per_seq_overhead_us`` per running request):
  between steps, or overlapped with the GPU step when the engine schedules ahead
  (config ``async_scheduling``, default the profile's ``cpu_overlap``: vLLM's
  ``--async-scheduling``, SGLang's and TensorRT-LLM's overlap schedulers).
  With multi-step scheduling (``num_scheduler_steps`` n > 1, vLLM V0's
  ``--num-scheduler-steps``) one scheduler call and one input preparation serve n decode steps
  that run back to back, so a decode step carries 1/n of that host work.

MoE layers route ``T * top_k`` token-expert pairs uniformly: the expected number of distinct
experts hit is ``E * (1 - (1 - k/E)^T)``; under expert parallelism the busiest rank sets the
time (mean + sqrt(2 ln ep) standard deviations of a binomial split). Under attention data
parallelism every GPU runs attention and dense layers for its own requests with whole weights,
and the MoE layers see the tokens of all ``tp`` GPUs (``moe_tokens``: the ranks' own, summed by
``_dp_group``, which steps them together; equal loads where not given), dispatched to the
experts' GPUs and combined back by two all-to-alls (or, with tensor-parallel experts, gathered
to every GPU and reduce-scattered back).
"""

from __future__ import annotations

import math

from tuner.evaluators._catalog import Hardware
from tuner.evaluators._perf import (
    BYTES,
    attention_time,
    collective_seconds,
    consts,
    eff,
    gemm_seconds,
    memory_time,
    p2p_time,
)
from tuner.evaluators.serving._geometry import attn_roles, element_bytes, mlp_roles
from tuner.evaluators.serving._plan import Plan, graph_max_batch, plan_geometry

US = 1e-6
#: GEMMs of at most this many rows are decode-sized (weight streaming) and take the plan's
#: decode time multiplier; larger ones (prefill chunks) take its prefill multiplier
DECODE_ROWS = 256


def _gemm_format(dtype: str, hw: Hardware) -> tuple[str, float]:
    """(compute dtype, bytes per weight with scales) of GEMMs on weights stored as ``dtype``:
    fp8 runs W8A8 on GPUs with fp8 tensor cores; int4, MXFP4 (Marlin W4A16) and fp8 elsewhere
    are weight-only, computing in bf16."""
    compute = "fp8" if dtype == "fp8" and "fp8" in hw.peak_tflops else "bf16"
    return compute, element_bytes(dtype)


class StepModel:
    """Step latency of one engine kind (tp, pp, ep) of a plan. Memoised by token count."""

    def __init__(self, plan: Plan, tp: int, pp: int, ep: int) -> None:
        hw, m = plan.hw, plan.model
        self.hw, self.model, self.tp, self.pp, self.ep = hw, m, tp, pp, ep
        self.c = consts(hw, sustained=True, fp8_block=plan.fp8_recipe == "blockwise",
                        compute_scale=float(plan.c("gemm_efficiency")))
        self.g = plan_geometry(plan, tp, ep)
        self.dp = tp if plan.dp_attention else 1
        # operand bytes: the weights dominate the traffic of every GEMM that streams them
        # (decode); prefill GEMMs are compute-bound, so the activations' width hardly matters
        self.cdtype, self.in_bytes = _gemm_format(plan.weight_dtype, hw)
        self.expert = _gemm_format(plan.expert_weight_dtype or plan.weight_dtype, hw)
        # a quantization mix: each layer group streams its own bytes in its own compute dtype
        mix = plan.weight_mix
        self.role = {r: (mix.dtype_of(r), mix.bytes_of(r)) for r in
                     ("qkv", "attn_out", "mlp_up", "mlp_down")} if mix else None
        self.scale_decode, self.scale_prefill = plan.gemm_time_scale
        self.attn_roles = attn_roles(self.g.attn_gemms)
        self.kvdtype = plan.kv_dtype
        c = plan.c
        self.launch = eff(hw, "kernel_launch_us") * US
        self.n_elem = float(c("elementwise_kernels_per_layer"))
        self.n_moe_extra = float(c("moe_extra_kernels_per_layer"))
        if m.attention == "mla":
            self.n_elem += float(c("mla_extra_kernels_per_layer"))
        self.step_us = float(c("step_overhead_us")) * US
        self.seq_us = float(c("per_seq_overhead_us")) * US
        self.overlap = plan.async_scheduling
        self.host_share = 1.0 / max(1, plan.num_scheduler_steps)
        self.ar_lat = float(c("allreduce_latency_us")) * US
        self.moe_eff = float(c("expert_efficiency"))
        self.pre_attn_eff = float(c("prefill_attention_efficiency"))
        self.graph_max = graph_max_batch(plan.profile, hw, tp)
        self.graph_pad = int(c("cuda_graph_pad"))
        self.graph_all_below = int(c("cuda_graph_all_sizes_below"))
        self.graph_mixed = bool(c("cuda_graph_mixed"))
        self.layers = self.g.num_layers
        self.eager = float(c("eager_launch_us_per_layer")) * US * self.layers
        self._local: dict[int, float] = {}  # linear() without the routed experts, by tokens
        self._routed: dict[int, float] = {}  # the routed experts of every MoE layer, by tokens
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
    def _gemm(self, t: float, n: int, k: int, batch: float = 1, role: str = "",
              expert: bool = False) -> float:
        if self.role and role:
            dtype, wb = self.role[role]
        else:
            dtype, wb = self.expert if expert else (self.cdtype, self.in_bytes)
        s = gemm_seconds(self.c, t, n, k, dtype, batch, wb)
        return s * (self.scale_decode if t <= DECODE_ROWS else self.scale_prefill)

    def _gemms(self, t: float, gemms: tuple[tuple[int, int], ...], roles: tuple[str, ...],
               batch: float = 1) -> float:
        return sum(self._gemm(t, n, k, batch, r) for (n, k), r in zip(gemms, roles))

    def _allreduce(self, t: float) -> float:
        if self.g.attn_tp == 1:
            return 0.0
        nbytes = t * self.model.hidden_size * BYTES["bf16"]
        ring = collective_seconds(self.c, "all_reduce", nbytes, self.g.attn_tp,
                                  self.hw.gpus_per_node, self.c.nic_bw)
        # small messages: the engine's one-shot all-reduce latency instead of NCCL's
        return ring - self.c.coll_lat + self.ar_lat

    def _moe_exchange(self, t: float) -> float:
        """Moving ``t`` local tokens to the experts and back under attention data parallelism:
        with expert parallelism an all-to-all of their top-k copies each way (dispatch,
        combine); with tensor-parallel experts an all-gather of every rank's tokens and a
        reduce-scatter of the outputs."""
        h = self.model.hidden_size * BYTES["bf16"]
        gpn, nic = self.hw.gpus_per_node, self.c.nic_bw
        if self.ep > 1:
            one = collective_seconds(self.c, "all_to_all", t * self.model.top_k * h, self.tp,
                                     gpn, nic)
            return 2 * (one - self.c.coll_lat + self.ar_lat)
        full = t * self.dp * h  # every rank's tokens
        return sum(collective_seconds(self.c, k, full, self.tp, gpn, nic) - self.c.coll_lat
                   + self.ar_lat for k in ("all_gather", "reduce_scatter"))

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
        gemms = sum(max(self._gemm(slow, n, k, active, r, True),
                        self._gemm(per_expert, n, k, active, r, True))
                    for (n, k), r in zip(g.expert_gemms, mlp_roles(g.expert_gemms)))
        return gemms + self._elementwise(tokens, 1)

    def linear(self, t: int, moe_tokens: int | None = None) -> float:
        """Seconds for everything but attention scores and the LM head, ``t`` new tokens on
        this GPU; the MoE layers' experts see ``moe_tokens`` (default: ``dp`` x ``t``, every
        attention-DP rank as loaded as this one)."""
        local = self._local.get(t)
        if local is None:
            local = self._local[t] = self._local_seconds(t)
        if not self.g.moe_layers:
            return local
        total = t * self.dp if moe_tokens is None else moe_tokens
        routed = self._routed.get(total)
        if routed is None:
            routed = self._routed[total] = self.g.moe_layers * self._experts(total)
        return local + routed

    def _local_seconds(self, t: int) -> float:
        g, m = self.g, self.model
        attn = self._gemms(t, g.attn_gemms, self.attn_roles)
        common = attn + 2 * self._allreduce(t) + self._elementwise(t, self.n_elem)
        total = 0.0
        if g.dense_layers:
            total += g.dense_layers * (common + self._gemms(t, g.mlp_gemms,
                                                            mlp_roles(g.mlp_gemms)))
        if g.moe_layers:
            shared = self._gemms(t, g.shared_gemms, mlp_roles(g.shared_gemms))
            if g.shared_gemms:
                shared += self._elementwise(t, 1)  # the shared expert's activation
            moe = (common + gemm_seconds(self.c, t, m.num_experts, m.hidden_size, "bf16")
                   + shared + self._elementwise(t, self.n_moe_extra))
            if self.dp > 1:
                moe += self._moe_exchange(t)
            total += g.moe_layers * moe
        if self.pp > 1:
            act = t * m.hidden_size * BYTES["bf16"]
            total += (self.pp - 1) * p2p_time(self.hw, act, inter_node=False)
        return total

    def head(self, n: int) -> float:
        """LM head + sampling for ``n`` sequences that emit a token this step."""
        got = self._head.get(n)
        if got is None:
            m = self.model
            vocab = m.vocab_size / self.g.attn_tp
            got = gemm_seconds(self.c, n, vocab, m.hidden_size, "bf16") \
                + memory_time(self.hw, 3 * n * vocab * 4) + self.launch * 3
            self._head[n] = got
        return got

    def _host(self, seqs: int) -> float:
        return self.step_us + self.seq_us * seqs

    def _finish(self, gpu: float, seqs: int, graph: bool, share: float = 1.0) -> float:
        """Wall time of a step: GPU work, kernel launches and the engine's host work (``share``
        of it: a multi-step run's decode steps split one scheduler call)."""
        launch = 0.0 if graph else self.eager
        if self.overlap:
            return max(gpu, launch + share * self._host(seqs))
        return max(gpu, launch) + share * self._host(seqs)

    def padded(self, b: int) -> int:
        """Rows a graph-captured decode batch of ``b`` computes."""
        if self.graph_pad <= 0:
            return b
        if b <= 4:
            return 4 if b == 3 else b
        return -(-b // self.graph_pad) * self.graph_pad

    def captured(self, b: int) -> bool:
        """Whether a decode batch of ``b`` replays a CUDA graph: up to the largest captured
        size when batches are padded; without padding only at a captured size."""
        if b > self.graph_max:
            return False
        return self.graph_pad > 0 or b < self.graph_all_below or b & (b - 1) == 0

    def overhead(self, seqs: int) -> float:
        return self._host(seqs)

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
            t += self.layers * self._gemm(kv_end - q, n, m.kv_lora_rank, role="qkv")
        return t / self.pre_attn_eff

    def attention_launch_saving(self, calls: int) -> float:
        """One fused attention kernel serves the whole batch: refund the extra launches."""
        return max(calls - 1, 0) * self.layers * self.launch

    # -- whole steps ---------------------------------------------------------------------
    def decode_step(self, b: int, kv_sum: float, moe_tokens: int | None = None) -> float:
        """A decode-only step of ``b`` sequences whose KV caches hold ``kv_sum`` tokens."""
        graph = self.captured(b)
        rows = self.padded(b) if graph else b
        gpu = self.linear(rows, moe_tokens) + self.head(rows) + self.attn_decode(b, kv_sum)
        return self._finish(gpu, b, graph, self.host_share)

    def step(self, tokens: int, logits: int, seqs: int, dec_b: int, dec_kv: float,
             chunks: list[tuple[int, int]], moe_tokens: int | None = None) -> float:
        """A mixed step: ``dec_b`` decodes over ``dec_kv`` KV tokens plus prefill ``chunks``
        of (new tokens, context length after the chunk); the experts see ``moe_tokens``
        (``linear``)."""
        if not chunks:
            return self.decode_step(dec_b, dec_kv, moe_tokens)
        gpu = self.linear(tokens, moe_tokens) + self.head(logits)
        calls = 0
        if dec_b:
            gpu += self.attn_decode(dec_b, dec_kv)
            calls += 1
        for q, kv_end in chunks:
            gpu += self.attn_prefill(q, kv_end)
            calls += 1
        graph = self.graph_mixed and tokens <= self.graph_max
        return self._finish(gpu - self.attention_launch_saving(calls), seqs, graph)


__all__ = ["StepModel"]
