"""``serving-real``: start a real OpenAI-compatible engine per config and measure it.

For each config: start the engine (``engine`` config key: ``llama.cpp`` on CPU machines,
``vllm`` or ``sglang`` on GPU machines) with the config's plan and scheduler knobs, wait until
healthy, send the config's ``workload`` (the same spec ``serving-sim`` takes, warm-up excluded
the same way), stream every reply, compute ``serving-sim``'s metric names from the measured
request times, and stop the engine, whatever happened.

Options:

=====================  ============================================================================
``weights``            what the engine serves: a GGUF path for llama.cpp (default: the SmolLM2-135M
                       GGUF of the ``llm-server`` extra), a Hugging Face id or path for vLLM/SGLang
``executable``         the engine's command (default: ``llama-server`` of the ``llm-server`` extra,
                       ``vllm``, ``python -m sglang.launch_server``)
``extra_args``         more engine flags, as a list
``device_usd_per_hour``  price of the device(s), for ``cost_usd_per_mtok`` (default 0: unpriced)
``devices``            number of devices the engine uses, for the per-device metrics (default:
                       tp x pp, and 1 for llama.cpp)
``startup_timeout_s``  how long the engine may take to become healthy (default 300)
``request_timeout_s``  how long one request may stay silent (default 300)
``log_dir``            where engine logs go (default: a temporary folder, removed after a success)
``seed``               prompt token ids (default 0)
=====================  ============================================================================

Outcomes: the engine fails to start for lack of memory, requests are refused because the KV
cache cannot hold the load, or a knob this engine does not have -> ``infeasible`` with the
reason; a bad flag, a crash, a hang or a broken stream -> ``failed``
with the exit code or signal and the tail of the engine's log. The engine runs in its own
process group and dies with the evaluating process.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tuner import (
    BadInput,
    BaseEvaluator,
    EvalResult,
    Option,
    ServerError,
    ServerProcess,
    UnknownName,
    free_port,
)
from tuner.evaluators.serving._engines import (
    ADAPTERS,
    launch_argv,
    looks_out_of_context,
    looks_out_of_memory,
)
from tuner.evaluators.serving._llama_cpp import server_binary, smollm2_gguf
from tuner.evaluators.serving._load import drive
from tuner.evaluators.serving._plan import ALLOWED_KEYS
from tuner.evaluators.serving._workloads import load_workload
from tuner.evaluators.serving.sim import METRICS as SIM_METRICS
from tuner.evaluators.serving.sim import percentile, serving_metrics

_OPTIONS = ("weights", "executable", "extra_args", "device_usd_per_hour", "devices",
            "startup_timeout_s", "request_timeout_s", "log_dir", "seed")
#: measured only: the spread of inter-token gaps
EXTRA_METRICS = ("itl_ms_p50", "itl_ms_p99")
METRICS = tuple(m for m in SIM_METRICS if m != "preemptions") + EXTRA_METRICS


def _positive(options: Mapping[str, Any], key: str, default: float) -> float:
    v = options.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
        raise BadInput(f"evaluator.options.{key}", f"{v!r} must be a non-negative number")
    return float(v)


class ServingRealEvaluator(BaseEvaluator):
    """Measures a live engine under the config's workload (one engine start per config)."""

    name = "serving-real"
    version = "1"
    metrics = METRICS
    domains = ("serving",)
    example_options = {"weights": "Qwen/Qwen3-0.6B", "startup_timeout_s": 60}
    _SECONDS = {"check": lambda v: 0 <= v < math.inf, "must": "a non-negative number"}
    options_table = {
        "weights": Option(str, None, "Hugging Face model id or local path (llama.cpp: the "
                          "bundled SmolLM2 GGUF)"),
        "executable": Option(str, None, "the engine's server binary"),
        "extra_args": Option(list, None, "extra server arguments",
                             check=lambda v: all(isinstance(a, str) for a in v),
                             must="a list of strings"),
        "device_usd_per_hour": Option((int, float), 0.0, "price for cost metrics", **_SECONDS),
        "devices": Option(int, None, "devices the engine uses (default: tp x pp)"),
        "startup_timeout_s": Option((int, float), 300.0, "engine start limit", **_SECONDS),
        "request_timeout_s": Option((int, float), 300.0, "per-request limit", **_SECONDS),
        "log_dir": Option(str, None, "where engine logs are kept"),
        "seed": Option(int, 0, "seed of the request stream"),
    }
    config_keys = ALLOWED_KEYS | {"engine"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise BadInput(f"evaluator.options.{unknown[0]}",
                           "unknown option; allowed: " + ", ".join(_OPTIONS))
        extra = options.get("extra_args", [])
        if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
            raise BadInput("evaluator.options.extra_args", "must be a list of strings")
        self.price = _positive(options, "device_usd_per_hour", 0.0)
        self.startup_timeout_s = _positive(options, "startup_timeout_s", 300.0)
        self.request_timeout_s = _positive(options, "request_timeout_s", 300.0)

    # -- what runs --------------------------------------------------------------------------
    def _weights(self, engine: str) -> str:
        weights = self.options.get("weights")
        if weights:
            return str(weights)
        if engine != "llama.cpp":
            raise BadInput("evaluator.options.weights", f"required for {engine}: a Hugging "
                           "Face model id or a local path")
        return str(smollm2_gguf())

    def _executable(self, engine: str) -> str | None:
        exe = self.options.get("executable")
        if exe or engine != "llama.cpp":
            return exe
        return str(server_binary())

    # -- one evaluation ---------------------------------------------------------------------
    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        engine = config.get("engine", "vllm")
        if engine not in ADAPTERS:
            raise UnknownName("engine", engine, list(ADAPTERS))
        if "workload" not in config:
            raise BadInput("workload", "required: the load to measure under (the same spec "
                           "serving-sim takes)")
        workload = load_workload(config["workload"])
        reasons = ADAPTERS[engine].problems(config)
        if reasons:
            return EvalResult.infeasible("; ".join(reasons))
        port = free_port()
        argv = launch_argv(engine, self._weights(engine), port, config,
                           self._executable(engine), self.options.get("extra_args"))
        log_dir = Path(self.options.get("log_dir") or tempfile.mkdtemp(prefix="tuner-engine-"))
        server = ServerProcess(argv, f"http://127.0.0.1:{port}{ADAPTERS[engine].health_path}",
                               log_dir / f"{engine}-{port}.log", name=engine)
        try:
            try:
                server.start(self.startup_timeout_s)
            except ServerError as exc:
                if looks_out_of_memory(server.log_tail(40)):
                    return EvalResult.infeasible(f"{engine} ran out of memory at start: {exc}")
                return EvalResult.failed(str(exc))
            timeline = drive(f"http://127.0.0.1:{port}/v1", workload,
                             seed=int(self.options.get("seed", 0)),
                             request_timeout_s=self.request_timeout_s)
            if timeline.failed:
                i = timeline.failed[0]
                why = timeline.errors[i]
                if server.died_within(2.0):
                    return EvalResult.failed(f"{engine} {server.death('during the load')}")
                if looks_out_of_context(why):
                    return EvalResult.infeasible(
                        f"the KV cache is too small for this load: {len(timeline.failed)} of "
                        f"{len(workload)} requests refused; request {i}: {why}")
                return EvalResult.failed(f"{len(timeline.failed)} of {len(workload)} requests "
                                         f"failed; request {i}: {why}")
            metrics = self._metrics(config, timeline, workload)
        finally:
            server.stop()
        if not self.options.get("log_dir"):
            shutil.rmtree(log_dir, ignore_errors=True)
        return EvalResult.ok(metrics, artifacts={"argv": argv, "workload": workload.description})

    def _metrics(self, config: Mapping[str, Any], tl: Any, workload: Any) -> dict[str, float]:
        engine = config.get("engine", "vllm")
        devices = self.options.get("devices") or (
            1 if engine == "llama.cpp" else int(config.get("tp", 1)) * int(config.get("pp", 1)))
        plan = SimpleNamespace(slo_ttft_ms=config.get("slo_ttft_ms"),
                               slo_tpot_ms=config.get("slo_tpot_ms"), gpus_used=devices,
                               hw=SimpleNamespace(price_usd_per_hour=self.price))
        metrics = serving_metrics(plan, tl, workload)
        metrics.pop("preemptions", None)
        gaps = sorted(g for gs in tl.gaps[workload.warmup:] for g in gs)
        metrics["itl_ms_p50"] = 1e3 * percentile(gaps, 50) if gaps else 0.0
        metrics["itl_ms_p99"] = 1e3 * percentile(gaps, 99) if gaps else 0.0
        return metrics


__all__ = ["METRICS", "ServingRealEvaluator"]
