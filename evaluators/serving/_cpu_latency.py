"""Latency of one ``llama-server`` step on a CPU (llama.cpp's ggml CPU backend).

A step is one ``llama_decode`` call: the decoding slots' tokens plus prompt tokens, up to
``--batch-size``, run as forward passes of at most ``--ubatch-size`` tokens each. One pass
costs

* the matmuls: ``FLOPs / compute rate + weight bytes / bandwidth``. Every pass streams all
  layer weights once (quantized blocks dequantized inside the dot products); the output matrix
  is streamed only by passes that produce logits (llama.cpp computes logits only for the
  tokens that sample). The two add up rather than overlap: measured with llama-server on a
  2-core VM (``python -m tuner.benchmarks.llama_cpp_steps``), a prompt run one token per pass
  costs 1.6-2.1x per token what 256-token passes cost. The compute rate is the hardware
  profile's fp32 GEMM peak times the profile constant ``matmul_efficiency`` (ggml's quantized
  kernels vs torch's GEMM);
* attention per layer: with flash attention each sequence reads its own KV cells (masked cells
  of the unified cache are skipped); without it the KQ product spans every used cell of the
  unified cache for every token of the pass, so its cost grows with all slots' contexts;
* ``graph_nodes_per_layer`` ggml ops per layer, each ending in a barrier of the worker threads
  (``op_overhead_us``).

A pass of one token uses ``threads`` threads, larger passes ``threads_batch`` (llama-context:
``n_threads = n_tokens == 1 ? n_threads : n_threads_batch``). Threads share the profile's
cores: rates scale with ``min(threads, cores) / cores``. More threads than cores time-share the
cores at the same total rate, but every op's barrier then waits for a descheduled thread:
``oversubscribed_barrier_us`` per op per extra thread per core (measured: 4 threads on 2 cores
add ~20 ms to every ~600-op decode pass, whatever its size). Host work per step:
``step_overhead_us`` and ``per_seq_overhead_us`` per sequence that samples a token (the
sampler chain over the vocabulary, detokenizing, streaming).
"""

from __future__ import annotations

import math

from tuner.evaluators.serving._cpu_plan import embedding_dtype, layer_params
from tuner.evaluators.serving._geometry import element_bytes

US = 1e-6


class CpuStepModel:
    """Step latency of ``llama-server`` on a CPU hardware profile (same interface as the GPU
    ``StepModel``: ``step`` and ``decode_step``)."""

    def __init__(self, plan: object) -> None:
        m, hw, c = plan.model, plan.hw, plan.c  # type: ignore[attr-defined]
        self.model = m
        self.cores = max(1, int(hw.sm_count))
        peak = hw.peak_tflops.get("fp32") or max(hw.peak_tflops.values())
        self.peak = peak * 1e12
        self.bw = hw.hbm_tb_s * 1e12
        self.mm_eff = float(c("matmul_efficiency"))
        self.attn_eff = float(c("attention_efficiency"))
        self.w_eff = float(c("weight_bandwidth_efficiency"))
        self.op_s = float(c("op_overhead_us")) * US
        self.nodes = float(c("graph_nodes_per_layer")) * m.num_layers
        self.barrier_s = float(c("oversubscribed_barrier_us")) * US
        self.step_s = float(c("step_overhead_us")) * US
        self.seq_s = float(c("per_seq_overhead_us")) * US
        self.threads = plan.threads  # type: ignore[attr-defined]
        self.threads_batch = plan.threads_batch  # type: ignore[attr-defined]
        self.ubatch = plan.ubatch_size  # type: ignore[attr-defined]
        self.fa = plan.flash_attn  # type: ignore[attr-defined]
        self.layer_params = layer_params(m)
        self.layer_bytes = self.layer_params * element_bytes(plan.weight_dtype)  # type: ignore
        self.out_params = m.vocab_size * m.hidden_size
        self.out_bytes = self.out_params * element_bytes(
            embedding_dtype(plan.weight_dtype, m))  # type: ignore[attr-defined]
        # attention: FLOPs per (query, key) pair over all layers, KV bytes per cell
        hd = m.head_dim
        self.pair_flops = 4.0 * m.num_heads * hd * m.num_layers
        self.cell_bytes = 2 * m.num_kv_heads * hd * m.num_layers \
            * element_bytes(plan.kv_dtype)  # type: ignore[attr-defined]
        self._pass: dict[tuple[int, int], float] = {}

    def _share(self, n: int) -> tuple[float, float]:
        """(fraction of the cores' rate, seconds per op) with ``n`` threads."""
        over = max(0, n - self.cores) / self.cores
        return min(n, self.cores) / self.cores, self.op_s + self.barrier_s * over

    def _matmuls(self, u: int, outputs: int) -> float:
        """One forward pass's matmuls and op overheads for ``u`` tokens, ``outputs`` of them
        producing logits."""
        key = (u, outputs)
        got = self._pass.get(key)
        if got is None:
            share, op_s = self._share(self.threads if u == 1 else self.threads_batch)
            flops = 2.0 * self.layer_params * u + 2.0 * self.out_params * outputs
            nbytes = self.layer_bytes + (self.out_bytes if outputs else 0.0)
            compute = flops / (self.peak * share * self.mm_eff)
            stream = nbytes / (self.bw * share * self.w_eff)
            got = compute + stream + self.nodes * op_s
            self._pass[key] = got
        return got

    def _attention(self, u: int, pairs: float, kv_cells: float) -> float:
        share, _ = self._share(self.threads if u == 1 else self.threads_batch)
        compute = pairs * self.pair_flops / (self.peak * share * self.attn_eff)
        return compute + kv_cells * self.cell_bytes / (self.bw * share * self.w_eff)

    def _passes(self, tokens: int, outputs: int) -> float:
        """All forward passes of a ``tokens``-token batch (split into ubatches)."""
        full, rest = divmod(tokens, self.ubatch)
        t = 0.0
        # the logits rows (decoders first, prompt ends last) fall in at most two passes
        n_out = min(full + (1 if rest else 0), 2) if outputs else 0
        left = outputs
        sizes = [self.ubatch] * full + ([rest] if rest else [])
        for i, u in enumerate(sizes):
            o = 0
            if n_out and (i == 0 or i == len(sizes) - 1):
                o = left if (i == len(sizes) - 1 or n_out == 1) else min(left, u)
                left -= o
            t += self._matmuls(u, o)
        return t

    def _host(self, outputs: int) -> float:
        return self.step_s + self.seq_s * outputs

    def decode_step(self, b: int, kv_sum: float) -> float:
        """``b`` decoding slots whose contexts hold ``kv_sum`` cells in all."""
        if b <= 0:
            return 0.0
        passes = self._passes(b, b)
        u = min(b, self.ubatch)
        if self.fa:
            attn = self._attention(u, kv_sum, kv_sum)
        else:  # every token of the pass scores every used cell of the unified cache
            attn = self._attention(u, b * kv_sum, kv_sum * math.ceil(b / self.ubatch))
        return passes + attn + self._host(b)

    def step(self, tokens: int, logits: int, seqs: int, dec_b: int, dec_kv: float,
             chunks: list[tuple[int, int]]) -> float:
        if not chunks:
            return self.decode_step(dec_b, dec_kv)
        passes = self._passes(tokens, logits)
        used = dec_kv + sum(end for _, end in chunks)
        u = min(tokens, self.ubatch)
        if self.fa:
            pairs = dec_kv + sum(q * (end - q) + q * (q + 1) / 2 for q, end in chunks)
            attn = self._attention(u, pairs, used)
        else:
            npass = math.ceil(tokens / self.ubatch)
            attn = self._attention(u, tokens * used, used * npass)
        return passes + attn + self._host(logits)


__all__ = ["CpuStepModel"]
