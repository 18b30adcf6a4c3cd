"""One small adapter per serving engine: a config's plan and scheduler knobs -> its flags.

The config keys are ``serving-sim``'s (``tp``, ``max_num_seqs``, ``max_num_batched_tokens``,
``kv_dtype``...) plus the CPU engine's own (``threads``, ``ubatch_size``, ``flash_attn``,
``kv_cache_tokens``), so one config is simulated and measured alike. A knob an engine does not
have makes the config infeasible for it, with the reason; a knob left out takes the engine's
default. Flags are those of the pinned/current releases: llama.cpp ``llama-server`` (build
11434), vLLM ``vllm serve`` (0.11) and SGLang ``sglang.launch_server`` (0.5).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tuner.evaluators.serving._cpu_plan import quantized_v_problem

#: config keys that only shape the simulation or the load, never an engine flag
NOT_ENGINE_KEYS = frozenset({"model", "gpu", "num_gpus", "workload", "slo_ttft_ms",
                             "slo_tpot_ms", "api_overhead_ms", "engine", "max_model_len",
                             "offline"})
#: plan keys that a single measured engine instance cannot honour, with the default it must have
SINGLE_INSTANCE = {"replicas": 1, "disaggregated": False}

_OOM = re.compile(r"out of memory|failed to allocate|cannot allocate|OutOfMemoryError|"
                  r"not enough memory|insufficient memory|KV cache is too small|"
                  r"No available memory for the cache blocks", re.IGNORECASE)


def looks_out_of_memory(log_tail: str) -> bool:
    """An engine that died for lack of memory: the config is infeasible, not a failure."""
    return bool(_OOM.search(log_tail))


# llama-server's answer when the shared KV cache cannot hold the running requests
_CONTEXT = re.compile(r"context size has been exceeded|exceeds the available context|"
                      r"failed to find (a )?(free )?(memory slot|space in the KV cache)",
                      re.IGNORECASE)


def looks_out_of_context(error: str) -> bool:
    """A request refused because the KV cache is too small for the load: the config is
    infeasible at this load (the simulator says so too), not a broken engine."""
    return bool(_CONTEXT.search(error))


@dataclass(frozen=True)
class Adapter:
    name: str
    #: config key -> function(value, config) -> flags (empty: engine default)
    flags: Mapping[str, Callable[[Any, Mapping[str, Any]], list[str]]]
    #: config key -> reason a value cannot run on this engine (None: it can)
    limits: Mapping[str, Callable[[Any], str | None]]
    health_path: str = "/health"
    #: reasons a combination of knobs cannot run (each returns None when it can)
    rules: tuple[Callable[[Mapping[str, Any]], str | None], ...] = ()

    def problems(self, config: Mapping[str, Any]) -> list[str]:
        reasons = []
        for key, default in SINGLE_INSTANCE.items():
            if config.get(key, default) != default:
                reasons.append(f"{key}={config[key]!r}: serving-real measures one engine "
                               f"instance (use {key}={default!r}, or serving-sim)")
        for key, value in config.items():
            if key in NOT_ENGINE_KEYS or key in SINGLE_INSTANCE:
                continue
            if key not in self.flags:
                reasons.append(f"{key}: {self.name} has no such knob (its knobs: "
                               f"{', '.join(sorted(self.flags))})")
                continue
            why = self.limits.get(key, lambda v: None)(value)
            if why:
                reasons.append(f"{key}={value!r}: {why}")
        return reasons + [why for rule in self.rules if (why := rule(config))]

    def engine_flags(self, config: Mapping[str, Any]) -> list[str]:
        out: list[str] = []
        for key, value in config.items():
            if key in self.flags:
                out += self.flags[key](value, config)
        return out


def _flag(name: str) -> Callable[[Any, Mapping[str, Any]], list[str]]:
    return lambda v, c: [name, str(v)]


def _switch(on: str, off: str) -> Callable[[Any, Mapping[str, Any]], list[str]]:
    return lambda v, c: [on if v else off]


def _one_of(*allowed: Any) -> Callable[[Any], str | None]:
    return lambda v: None if v in allowed else f"allowed: {', '.join(map(str, allowed))}"


def _checkpoint(value: Any, config: Mapping[str, Any]) -> list[str]:
    """A property of the checkpoint served (its fp8 scaling, its experts' format): no flag,
    the weights given decide."""
    return []


# -- llama.cpp's llama-server (CPU machines) -----------------------------------------------
LLAMA_CPP_KV = {"bf16": "bf16", "f16": "f16", "q8_0": "q8_0", "q4_0": "q4_0"}
LLAMA_CPP = Adapter(
    "llama.cpp",
    flags={
        "max_num_seqs": _flag("--parallel"),
        "max_num_batched_tokens": _flag("--batch-size"),
        "ubatch_size": _flag("--ubatch-size"),
        "kv_dtype": lambda v, c: ["--cache-type-k", LLAMA_CPP_KV[v],
                                  "--cache-type-v", LLAMA_CPP_KV[v]],
        "kv_cache_tokens": _flag("--ctx-size"),
        "threads": _flag("--threads"),
        "threads_batch": _flag("--threads-batch"),
        "flash_attn": lambda v, c: ["--flash-attn", "on" if v else "off"],
        "chunked_prefill": lambda v, c: [],  # always: prompts share the logical batch
        "weight_dtype": lambda v, c: [],  # describes the GGUF file (option `weights`)
        "tp": lambda v, c: [], "pp": lambda v, c: [],
    },
    limits={
        "kv_dtype": _one_of(*LLAMA_CPP_KV),
        "chunked_prefill": lambda v: None if v else "llama-server always splits prompts "
                                                    "across steps",
        "tp": lambda v: None if v == 1 else "llama-server runs one process on one device",
        "pp": lambda v: None if v == 1 else "llama-server runs one process on one device",
    },
    rules=(lambda c: quantized_v_problem(c.get("kv_dtype", "f16"),
                                         c.get("flash_attn", True)),),
)

# -- vLLM (GPU machines) --------------------------------------------------------------------
VLLM = Adapter(
    "vllm",
    flags={
        "tp": _flag("--tensor-parallel-size"),
        "pp": _flag("--pipeline-parallel-size"),
        "ep": lambda v, c: ["--enable-expert-parallel"] if v > 1 else [],
        "max_num_seqs": _flag("--max-num-seqs"),
        "max_num_batched_tokens": _flag("--max-num-batched-tokens"),
        "chunked_prefill": _switch("--enable-chunked-prefill", "--no-enable-chunked-prefill"),
        "kv_block_size": _flag("--block-size"),
        "gpu_memory_utilization": _flag("--gpu-memory-utilization"),
        "kv_dtype": lambda v, c: ["--kv-cache-dtype", "fp8" if v == "fp8" else "auto"],
        "weight_dtype": lambda v, c: ["--quantization", "fp8"] if v == "fp8" else [],
        "fp8_recipe": _checkpoint,
        "expert_weight_dtype": _checkpoint,
        "swap_space_gib": _flag("--swap-space"),
        "scheduling_policy": lambda v, c: ["--scheduling-policy", v],
    },
    limits={
        "ep": lambda v: None,
        "kv_dtype": _one_of("bf16", "fp8"),
        "weight_dtype": _one_of("bf16", "fp8"),
        "scheduling_policy": _one_of("fcfs", "priority"),
    },
)

# -- SGLang (GPU machines) ------------------------------------------------------------------
SGLANG = Adapter(
    "sglang",
    flags={
        "tp": _flag("--tp-size"),
        "pp": _flag("--pp-size"),
        "ep": lambda v, c: ["--ep-size", str(v)] if v > 1 else [],
        "max_num_seqs": _flag("--max-running-requests"),
        "max_num_batched_tokens": _flag("--max-prefill-tokens"),
        "prefill_chunk_size": _flag("--chunked-prefill-size"),
        "chunked_prefill": lambda v, c: [] if v else ["--chunked-prefill-size", "-1"],
        "gpu_memory_utilization": _flag("--mem-fraction-static"),
        "kv_dtype": lambda v, c: ["--kv-cache-dtype", "fp8_e5m2" if v == "fp8" else "auto"],
        "weight_dtype": lambda v, c: ["--quantization", "fp8"] if v == "fp8" else [],
        "fp8_recipe": _checkpoint,
        "expert_weight_dtype": _checkpoint,
        "scheduling_policy": lambda v, c: ["--schedule-policy",
                                           {"fcfs": "fcfs", "shortest_prompt_first": "lpm",
                                            "priority": "fcfs"}[v]],
        "kv_block_size": _flag("--page-size"),
        "dp_attention": lambda v, c: (["--enable-dp-attention", "--dp-size",
                                       str(c.get("tp", 1))] if v else []),
    },
    limits={
        "kv_dtype": _one_of("bf16", "fp8"),
        "weight_dtype": _one_of("bf16", "fp8"),
        "scheduling_policy": _one_of("fcfs", "shortest_prompt_first"),
    },
)

ADAPTERS = {a.name: a for a in (LLAMA_CPP, VLLM, SGLANG)}


def launch_argv(engine: str, weights: str, port: int, config: Mapping[str, Any],
                executable: str | None = None, extra: list[str] | None = None) -> list[str]:
    """The command line that serves ``weights`` on 127.0.0.1:``port`` with ``config``'s knobs."""
    a = ADAPTERS[engine]
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if engine == "llama.cpp":
        # a knob left out keeps llama-server's default (e.g. 4 slots sharing the model's
        # context), as serving-sim's llama.cpp defaults assume
        head = [executable or "llama-server", "--model", weights, *host, "--kv-unified",
                "--cont-batching", "--no-webui"]
    elif engine == "vllm":
        head = [*(executable.split() if executable else ["vllm"]), "serve", weights, *host]
        if config.get("max_model_len"):
            head += ["--max-model-len", str(config["max_model_len"])]
    else:
        head = [*(executable.split() if executable else ["python", "-m",
                                                         "sglang.launch_server"]),
                "--model-path", weights, *host]
        if config.get("max_model_len"):
            head += ["--context-length", str(config["max_model_len"])]
    return head + a.engine_flags(config) + list(extra or [])


__all__ = ["ADAPTERS", "Adapter", "NOT_ENGINE_KEYS", "launch_argv", "looks_out_of_memory"]
