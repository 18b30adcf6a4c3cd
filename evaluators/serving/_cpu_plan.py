"""llama.cpp's ``llama-server`` on a CPU: its knobs, defaults, memory and feasibility.

The keys and their meanings are those ``serving-real`` maps to ``llama-server`` flags
(``_engines.LLAMA_CPP``), so one config is simulated and measured alike:

=========================  =====================================================================
``max_num_seqs``           ``--parallel``: server slots, each serving one request (default 4:
                           build 11434's "auto" without the flag, as its ``/props`` reports)
``max_num_batched_tokens`` ``--batch-size``: tokens one ``llama_decode`` call takes (2048)
``ubatch_size``            ``--ubatch-size``: tokens per forward pass (512; at most the batch)
``kv_cache_tokens``        ``--ctx-size``: cells of the one unified KV cache the slots share
                           (default: the model's training context)
``kv_dtype``               ``bf16`` | ``f16`` (default) | ``q8_0`` | ``q4_0`` for K and V
``threads``                ``--threads``: threads of single-token passes (default: the
                           profile's cores, llama.cpp's ``cpu_get_num_math``)
``threads_batch``          ``--threads-batch``: threads of multi-token passes (default threads)
``flash_attn``             ``--flash-attn on|off`` (default true: ``auto`` enables it on CPU)
``weight_dtype``           the GGUF's layer weights: q4_0 | q4_1 (default, the packaged
                           SmolLM2 GGUF) | q8_0 | f16 | bf16
``tp``, ``pp``             1 only; ``chunked_prefill`` true only (prompts always share steps)
=========================  =====================================================================

``gpu`` names a CPU hardware profile (``tuner profile-hardware --out cpu.toml``): its
``sm_count`` is the core count, ``hbm_gib`` the RAM, ``hbm_tb_s`` the measured memory
bandwidth and ``peak_tflops`` the measured GEMM peaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner import BadInput
from tuner.evaluators._catalog import Model, get_hardware, model_from_config
from tuner.evaluators._profiles import Profile
from tuner.evaluators.serving._geometry import GIB, element_bytes

LLAMA_WEIGHT_DTYPES = ("q4_0", "q4_1", "q8_0", "f16", "bf16")
LLAMA_KV_DTYPES = ("bf16", "f16", "q8_0", "q4_0")


def embedding_dtype(weight_dtype: str, model: Model) -> str:
    """Type of the token embedding / output matrix in a GGUF quantized to ``weight_dtype``:
    llama-quantize keeps the output tensor at q6_K for sub-8-bit types and falls back to q8_0
    when rows are not a multiple of 256 (llama-quant.cpp); the SmolLM2 Q4_1 GGUF has a q8_0
    ``token_embd.weight`` (read from its header)."""
    if weight_dtype in ("q4_0", "q4_1"):
        return "q6_K" if model.hidden_size % 256 == 0 else "q8_0"
    return weight_dtype


def quantized_v_problem(kv_dtype: str, flash_attn: bool) -> str | None:
    """Why llama.cpp cannot run this KV-cache type (llama-server exits at start), or None."""
    if kv_dtype in ("q8_0", "q4_0") and not flash_attn:
        return (f"kv_dtype={kv_dtype} with flash_attn off: llama.cpp quantizes the V cache "
                "only with flash attention")
    return None


def layer_params(model: Model) -> float:
    """Weights of the transformer layers (the embedding / output matrix apart)."""
    h, hd = model.hidden_size, model.head_dim
    attn = h * model.num_heads * hd * 2 + 2 * h * model.num_kv_heads * hd
    mlp = (3 if model.gated_mlp else 2) * h * model.ffn_hidden_size
    return model.num_layers * (attn + mlp)


def weight_bytes(model: Model, weight_dtype: str) -> float:
    emb = model.vocab_size * model.hidden_size * element_bytes(embedding_dtype(weight_dtype,
                                                                               model))
    return layer_params(model) * element_bytes(weight_dtype) \
        + emb * (1 if model.tied_embeddings else 2)


def kv_bytes_per_token(model: Model, kv_dtype: str) -> float:
    return 2 * model.num_layers * model.num_kv_heads * model.head_dim * element_bytes(kv_dtype)


def parse_llama_cpp(config: Mapping[str, Any], prof: Profile) -> Any:
    from tuner.evaluators.serving._plan import Plan, _bool, _choice, _float, _int

    model = model_from_config(config)
    if "gpu" not in config:
        raise BadInput("gpu", "required for llama.cpp: a CPU hardware profile file "
                       "(tuner profile-hardware --out cpu.toml)")
    hw = get_hardware(config["gpu"])
    if hw.kind != "cpu":
        raise BadInput("gpu", f"{hw.name} is a {hw.kind}: llama.cpp is modelled on CPU "
                       "hardware profiles (kind = \"cpu\", from tuner profile-hardware)")
    batch = _int(config, "max_num_batched_tokens", 2048)
    ubatch = min(_int(config, "ubatch_size", 512), batch)  # llama.cpp clamps it to the batch
    ctx = _int(config, "kv_cache_tokens", model.max_seq_len)
    threads = _int(config, "threads", max(1, hw.sm_count))
    return Plan(
        model=model, hw=hw, engine="llama.cpp", profile=prof,
        num_gpus=_int(config, "num_gpus", None), tp=_int(config, "tp", 1),
        pp=_int(config, "pp", 1), ep=1, replicas=_int(config, "replicas", 1),
        disaggregated=_bool(config, "disaggregated", False), prefill_workers=1, prefill_tp=1,
        decode_workers=1, decode_tp=1,
        weight_dtype=_choice(config, "weight_dtype", "q4_1", LLAMA_WEIGHT_DTYPES),
        kv_dtype=_choice(config, "kv_dtype", "f16", LLAMA_KV_DTYPES),
        max_num_seqs=_int(config, "max_num_seqs", 4), max_num_batched_tokens=batch,
        chunked_prefill=_bool(config, "chunked_prefill", True), prefill_chunk_size=batch,
        mixed_prefill=True, kv_block_size=1, gpu_memory_utilization=1.0,
        preemption_mode="recompute", scheduling_policy="fcfs", swap_space_gib=0.0,
        max_model_len=_int(config, "max_model_len", ctx), kv_link_gbit_s=None,
        api_overhead_ms=_float(config, "api_overhead_ms", float(prof["api_latency_ms"]),
                               zero_ok=True),
        workload=config["workload"], slo_ttft_ms=_float(config, "slo_ttft_ms", None),
        slo_tpot_ms=_float(config, "slo_tpot_ms", None),
        ubatch_size=ubatch, kv_cache_tokens=ctx, threads=threads,
        threads_batch=_int(config, "threads_batch", threads),
        flash_attn=_bool(config, "flash_attn", True))


def compute_buffer_bytes(plan: Any) -> float:
    """ggml's compute buffer: the widest activations of one ubatch (f32 logits over the
    vocabulary, the MLP, and without flash attention the KQ scores over the whole cache)."""
    m = plan.model
    u = plan.ubatch_size
    width = m.vocab_size + 3 * m.ffn_hidden_size + 4 * m.hidden_size
    scores = 0 if plan.flash_attn else u * plan.kv_cache_tokens * m.num_heads
    return 4.0 * (u * width + scores)


def llama_cpp_problems(plan: Any) -> list[str]:
    """Why llama-server cannot run this config (serving-real's wording where it has one)."""
    from tuner.evaluators.serving._plan import plan_workload

    out = []
    for key in ("tp", "pp"):
        if getattr(plan, key) != 1:
            out.append(f"{key}={getattr(plan, key)}: llama-server runs one process on one device")
    if not plan.chunked_prefill:
        out.append("chunked_prefill=False: llama-server always splits prompts across steps")
    if plan.disaggregated:
        out.append("disaggregated=True: llama-server has no prefill/decode split")
    why = quantized_v_problem(plan.kv_dtype, plan.flash_attn)
    if why:
        out.append(why)
    stats = plan_workload(plan).stats()
    longest = int(stats["max_total_len"])
    limit = min(plan.max_model_len, plan.kv_cache_tokens)
    if longest > limit:
        out.append(f"a request needs {longest} tokens > the {limit}-token context "
                   f"(kv_cache_tokens {plan.kv_cache_tokens}, max_model_len "
                   f"{plan.max_model_len})")
    weights = weight_bytes(plan.model, plan.weight_dtype)
    kv = plan.kv_cache_tokens * kv_bytes_per_token(plan.model, plan.kv_dtype)
    buf = compute_buffer_bytes(plan)
    if weights + kv + buf > plan.hw.hbm_gib * GIB:
        out.append(f"needs {(weights + kv + buf) / GIB:.2f} GiB of RAM (weights "
                   f"{weights / GIB:.2f}, KV cache {kv / GIB:.2f}, compute buffer "
                   f"{buf / GIB:.2f}), has {plan.hw.hbm_gib:g} GiB")
    if plan.num_gpus is not None and plan.replicas > plan.num_gpus:
        out.append(f"uses {plan.replicas} machines, budget is {plan.num_gpus}")
    return out


__all__ = ["LLAMA_KV_DTYPES", "LLAMA_WEIGHT_DTYPES", "compute_buffer_bytes", "embedding_dtype",
           "kv_bytes_per_token", "layer_params", "llama_cpp_problems", "parse_llama_cpp",
           "weight_bytes"]
