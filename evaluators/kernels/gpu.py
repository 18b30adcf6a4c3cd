"""kernel-gpu: compile the Triton kernel for one tile config, check it, time it on the GPU.

Per evaluation:

1. the shape is checked (bad sizes or dtypes raise ``BadInput``) and the tile rules of
   ``_tiles`` are applied (a broken rule is ``infeasible``, nothing is compiled);
2. fresh random inputs are drawn (normal, never zeros) and the output is pre-filled with NaN so
   that an element the kernel never writes cannot pass;
3. the kernel is compiled and run once; compile errors, out-of-resources (shared memory,
   registers) and launch errors become ``failed`` with the reason, never a crash;
4. the result is checked against torch in higher precision (fp64 for fp32/tf32, fp32 otherwise):
   ``max |out - ref| / (|ref| + rms(ref))`` must stay under :data:`TOLERANCE`; a wrong result is
   ``failed`` and no time is accepted;
5. the kernel is timed with ``triton.testing.do_bench`` (L2 flushed before every repetition,
   warmup sized by time) keeping every sample: median, p20 and p80 are reported;
6. torch's own kernel on the same shape is timed the same way once per shape and evaluator
   (``torch.matmul``, i.e. cuBLAS, for GEMMs; ``scaled_dot_product_attention`` for attention),
   giving ``pct_of_cublas`` / ``pct_of_sdpa`` (100 = as fast as torch).

Without a CUDA GPU every evaluation is ``failed`` with "no CUDA GPU present". With the option
``interpret=True`` and ``TRITON_INTERPRET=1`` set before start, configs run on CPU tensors in
Triton's interpreter: useful to check kernels and to record a small labelled replay table, and
the timings are CPU interpreter timings (no ``pct_of_peak``, no torch comparison). The timer is
injectable (option ``timer``: a callable ``fn -> list of milliseconds``).
"""

from __future__ import annotations

import hashlib
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tuner import BadInput, BaseEvaluator, EvalResult, MissingExtra, Option
from tuner.evaluators._catalog import get_hardware
from tuner.evaluators.kernels._tiles import (
    CONFIG_KEYS,
    attention_context,
    attention_reasons,
    gemm_context,
    gemm_reasons,
)

#: max |out - ref| / (|ref| + rms(ref)) accepted per (kernel, dtype): output rounding of the
#: dtype (bf16 keeps 8 significant bits: 2^-8 = 3.9e-3) with room for accumulation order
TOLERANCE = {
    ("gemm", "fp32"): 1e-4, ("gemm", "tf32"): 1e-2, ("gemm", "fp16"): 5e-3,
    ("gemm", "bf16"): 2e-2, ("gemm", "fp8"): 2e-2,
    ("attention", "fp16"): 5e-3, ("attention", "bf16"): 2e-2,
}

NO_GPU = "no CUDA GPU present"


def _imports() -> tuple[Any, Any]:
    try:
        import torch
        import triton
    except ImportError as exc:  # pragma: no cover - both are installed in the dev venv
        raise MissingExtra(exc.name or "torch/triton", "gpu") from None
    return torch, triton


def kernels_digest() -> str:
    """Hash of the kernels' source: a changed kernel invalidates cached and recorded times."""
    src = (Path(__file__).parent / "_triton.py").read_bytes()
    return hashlib.sha256(src).hexdigest()[:12]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def max_rel_error(out: Any, ref: Any) -> float:
    """max |out - ref| / (|ref| + rms(ref)); NaN anywhere gives inf."""
    import torch

    diff = (out.to(ref.dtype) - ref).abs()
    if not bool(torch.isfinite(diff).all()):
        return float("inf")
    rms = ref.pow(2).mean().sqrt()
    return float((diff / (ref.abs() + rms)).max())


class KernelGpuEvaluator(BaseEvaluator):
    """Real Triton kernels timed on the GPU (or checked in the CPU interpreter).

    Options:
        warmup_ms: do_bench warmup time (default 25).
        rep_ms: do_bench measuring time (default 100).
        seed: base seed of the random inputs (default 0); each evaluation draws new inputs.
        interpret: allow CPU tensors in Triton's interpreter when no GPU is present (default
            False; needs ``TRITON_INTERPRET=1`` before start).
        cpu_reps: timed repetitions in interpreter mode (default 3).
        compare_torch: time torch's kernel on the same shape (default True, GPU only).
        timer: callable ``fn -> list[float]`` of milliseconds replacing do_bench.
    """

    name = "kernel-gpu"
    version = "1"
    domains = ("kernel-gemm", "kernel-attention")
    #: always reported on a GPU; ``torch_time_us`` and ``pct_of_cublas`` (GEMM) or
    #: ``pct_of_sdpa`` (attention) too when torch's kernel ran on the shape. Interpreter runs
    #: report only the times and ``tflops`` (a CPU has no GPU peak to compare with).
    metrics = ("time_us", "time_us_p20", "time_us_p80", "tflops", "pct_of_peak")
    _MS = {"check": lambda v: v > 0, "must": "a number of milliseconds > 0"}
    options_table = {
        "warmup_ms": Option((int, float), 25, "do_bench warmup time", **_MS),
        "rep_ms": Option((int, float), 100, "do_bench measuring time", **_MS),
        "seed": Option(int, 0, "base seed of the random inputs"),
        "interpret": Option(bool, False, "run in Triton's CPU interpreter when no GPU is "
                            "present (needs TRITON_INTERPRET=1)"),
        "cpu_reps": Option(int, 3, "timed repetitions in interpreter mode",
                           check=lambda v: v >= 1, must="an integer >= 1"),
        "compare_torch": Option(bool, True, "time torch's kernel on the same shape"),
        "timer": Option(object, None, "callable fn -> list of milliseconds (in-process use)",
                        check=callable, must="a callable"),
    }
    config_keys = CONFIG_KEYS

    @classmethod
    def preflight(cls, options: Mapping[str, Any]) -> None:
        """No CUDA device (and no interpreter asked for): no config could run, so say it
        once, up front, instead of failing every trial."""
        import os

        hint = ("use kernel-sim (the analytical tile model) or kernel-replay (recorded GPU "
                "measurements), or set evaluator option interpret = true with "
                "TRITON_INTERPRET=1 for Triton's CPU interpreter")
        try:
            torch, _ = _imports()
        except MissingExtra as exc:
            raise BadInput("evaluator.name", f"kernel-gpu: {exc}; or {hint}") from None
        if torch.cuda.is_available() or options.get("timer"):
            return
        if options.get("interpret") and os.environ.get("TRITON_INTERPRET") == "1":
            return
        raise BadInput("evaluator.name", "kernel-gpu needs a CUDA GPU and none is visible "
                       f"(torch.cuda.is_available() is false); {hint}")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._baselines: dict[tuple, float] = {}
        self._draws = 0

    # -- environment ------------------------------------------------------------------------
    def _device(self) -> str | None:
        """"cuda", "cpu" (interpreter) or None (no way to run)."""
        torch, _ = _imports()
        if torch.cuda.is_available():
            return "cuda"
        if self.options.get("interpret"):
            from tuner.evaluators.kernels._triton import interpreting

            if interpreting():
                return "cpu"
        return None

    def environment(self) -> dict[str, str]:
        env = {"python": platform.python_version(), "kernels": kernels_digest()}
        try:
            torch, triton = _imports()
        except MissingExtra:
            return {**env, "torch": "missing"}
        env.update(torch=torch.__version__, triton=triton.__version__)
        if torch.cuda.is_available():
            env.update(device=torch.cuda.get_device_name(), cuda=str(torch.version.cuda))
        elif self.options.get("interpret"):
            from tuner.evaluators.kernels._triton import interpreting

            env["device"] = "cpu (TRITON_INTERPRET=1)" if interpreting() else "none"
        else:
            env["device"] = "none"
        return env

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        kernel = config.get("kernel") or ("attention" if "head_dim" in config else "gemm")
        if kernel not in ("gemm", "attention"):
            raise BadInput("kernel", f"{kernel!r} is not a kernel; allowed: attention, gemm")
        keys = (("m", "n", "k", "dtype", "gpu") if kernel == "gemm" else
                ("batch", "heads", "seq_len", "head_dim", "dtype", "causal", "gpu"))
        ctx = (gemm_context if kernel == "gemm" else attention_context)(
            {k: config[k] for k in keys if k in config})
        try:
            tile = self._tile(kernel, config)
        except (KeyError, TypeError) as exc:
            return EvalResult.infeasible(f"missing or malformed tile parameter: {exc}")
        hw = get_hardware(ctx["gpu"])
        if kernel == "gemm":
            reasons = gemm_reasons(hw, ctx["m"], ctx["n"], ctx["k"], ctx["dtype"],
                                   tile["block_m"], tile["block_n"], tile["block_k"],
                                   tile["num_warps"], tile["num_stages"], tile["split_k"])
        else:
            reasons = attention_reasons(hw, ctx["seq_len"], ctx["head_dim"], ctx["dtype"],
                                        ctx["causal"], tile["block_m"], tile["block_n"],
                                        tile["num_warps"], tile["num_stages"])
        if reasons:
            return EvalResult.infeasible("; ".join(reasons))
        try:
            device = self._device()
        except MissingExtra as exc:
            return EvalResult.failed(str(exc))
        if device is None:
            return EvalResult.failed(NO_GPU)
        if device == "cuda":
            mismatch = self._gpu_mismatch(ctx["gpu"])
            if mismatch:
                return EvalResult.failed(mismatch)
        try:
            if kernel == "gemm":
                return self._run_gemm(ctx, tile, device)
            return self._run_attention(ctx, tile, device)
        except Exception as exc:  # compile errors, out of resources, launch failures
            return EvalResult.failed(_first_line(exc))

    @staticmethod
    def _tile(kernel: str, config: Mapping[str, Any]) -> dict[str, int]:
        names = (("block_m", "block_n", "block_k", "group_m", "num_warps", "num_stages",
                  "split_k") if kernel == "gemm" else
                 ("block_m", "block_n", "num_warps", "num_stages"))
        tile = {}
        for n in names:
            v = config[n]
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{n}={v!r} must be an integer")
            tile[n] = v
        return tile

    @staticmethod
    def _gpu_mismatch(gpu: str) -> str | None:
        """A reason when the config's catalog GPU is not the device (metrics would lie)."""
        torch, _ = _imports()
        device = torch.cuda.get_device_name()
        family = gpu.split("_")[0].upper()  # "h100_sxm" -> "H100"
        if family not in device.upper().replace("-", " ").replace("_", " "):
            return f"config gpu {gpu!r} but the device is {device!r}"
        return None

    def _generator(self, device: str) -> Any:
        torch, _ = _imports()
        self._draws += 1
        g = torch.Generator(device=device)
        g.manual_seed(int(self.options.get("seed", 0)) * 1_000_003 + self._draws)
        return g

    def _time(self, fn: Callable[[], Any], device: str) -> list[float]:
        """Timing samples in milliseconds."""
        timer = self.options.get("timer")
        if timer is not None:
            return [float(x) for x in timer(fn)]
        if device == "cuda":
            _, triton = _imports()
            return [float(x) for x in triton.testing.do_bench(
                fn, warmup=self.options.get("warmup_ms", 25), rep=self.options.get("rep_ms", 100),
                return_mode="all")]
        samples = []
        for _ in range(int(self.options.get("cpu_reps", 3))):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        return samples

    def _result(self, samples_ms: list[float], flops: float, ctx: Mapping[str, Any],
                device: str, err: float, baseline_us: float | None,
                baseline_name: str) -> EvalResult:
        samples_us = sorted(s * 1e3 for s in samples_ms)
        med = statistics.median(samples_us)
        q = statistics.quantiles(samples_us, n=5) if len(samples_us) >= 2 else [med] * 4
        metrics = {"time_us": med, "time_us_p20": q[0], "time_us_p80": q[3],
                   "tflops": flops / (med * 1e-6) * 1e-12}
        if device == "cuda":
            peak = get_hardware(ctx["gpu"]).peak(ctx["dtype"])
            metrics["pct_of_peak"] = 100.0 * flops / (med * 1e-6) / peak
            if baseline_us is not None:
                metrics["torch_time_us"] = baseline_us
                metrics[baseline_name] = 100.0 * baseline_us / med
        env = self.environment()
        return EvalResult.ok(metrics, artifacts={
            "device": env.get("device"), "samples": len(samples_us), "max_rel_error": err,
            "timer": "custom" if self.options.get("timer") else (
                "triton.testing.do_bench (L2 flushed)" if device == "cuda"
                else "time.perf_counter (Triton interpreter on CPU)")})

    def _run_gemm(self, ctx: Mapping[str, Any], tile: Mapping[str, int],
                  device: str) -> EvalResult:
        torch, _ = _imports()
        from tuner.evaluators.kernels import _triton as tk

        m, n, k, dtype = ctx["m"], ctx["n"], ctx["k"], ctx["dtype"]
        g = self._generator(device)
        a = torch.randn((m, k), generator=g, device=device).to(tk.TORCH_DTYPES[dtype])
        b = torch.randn((k, n), generator=g, device=device).to(tk.TORCH_DTYPES[dtype])
        out = torch.full((m, n), float("nan"), dtype=tk.TORCH_OUT[dtype], device=device)
        ws = (torch.empty((tile["split_k"], m, n), dtype=torch.float32, device=device)
              if tile["split_k"] > 1 else None)

        def run() -> Any:
            return tk.gemm(a, b, dtype, out=out, workspace=ws, **tile)

        run()
        ref_dtype = torch.float64 if dtype in ("fp32", "tf32") else torch.float32
        with _no_tf32(torch):
            ref = a.to(ref_dtype) @ b.to(ref_dtype)
        err = max_rel_error(out, ref)
        del ref
        tol = TOLERANCE[("gemm", dtype)]
        if not err <= tol:
            return EvalResult.failed(f"wrong result: max relative error {err:.3g} > {tol:g} "
                                     "against torch in higher precision")
        samples = self._time(run, device)
        baseline = None
        if device == "cuda" and self.options.get("compare_torch", True):
            baseline = self._baseline(("gemm", m, n, k, dtype),
                                      lambda: self._torch_gemm(a, b, dtype), device)
        return self._result(samples, 2.0 * m * n * k, ctx, device, err, baseline,
                            "pct_of_cublas")

    def _torch_gemm(self, a: Any, b: Any, dtype: str) -> Callable[[], Any]:
        torch, _ = _imports()
        if dtype == "fp8":  # cuBLASLt fp8 wants B column-major and explicit scales
            b_col = b.t().contiguous().t()
            one = torch.ones((), device=a.device, dtype=torch.float32)
            return lambda: torch._scaled_mm(a, b_col, scale_a=one, scale_b=one,
                                            out_dtype=torch.bfloat16)
        allow = dtype == "tf32"

        def fn() -> Any:
            prev = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = allow
            try:
                return torch.matmul(a, b)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = prev
        return fn

    def _baseline(self, key: tuple, make: Callable[[], Callable[[], Any]],
                  device: str) -> float | None:
        if key not in self._baselines:
            try:
                fn = make()
                fn()
                samples = self._time(fn, device)
                self._baselines[key] = statistics.median(samples) * 1e3
            except Exception:  # e.g. no fp8 cuBLASLt kernel for this shape
                return None
        return self._baselines[key]

    def _run_attention(self, ctx: Mapping[str, Any], tile: Mapping[str, int],
                       device: str) -> EvalResult:
        torch, _ = _imports()
        from tuner.evaluators.kernels import _triton as tk

        shape = (ctx["batch"], ctx["heads"], ctx["seq_len"], ctx["head_dim"])
        dt = tk.TORCH_DTYPES[ctx["dtype"]]
        g = self._generator(device)
        q, k, v = (torch.randn(shape, generator=g, device=device).to(dt) for _ in range(3))
        out = torch.full(shape, float("nan"), dtype=dt, device=device)
        causal = ctx["causal"]

        def run() -> Any:
            return tk.attention_fwd(q, k, v, causal, out=out, **tile)

        run()
        err = max_rel_error(out, reference_attention(q, k, v, causal))
        tol = TOLERANCE[("attention", ctx["dtype"])]
        if not err <= tol:
            return EvalResult.failed(f"wrong result: max relative error {err:.3g} > {tol:g} "
                                     "against torch in higher precision")
        samples = self._time(run, device)
        s, d, bh = ctx["seq_len"], ctx["head_dim"], ctx["batch"] * ctx["heads"]
        pairs = s * (s + 1) / 2 if causal else float(s) * s
        baseline = None
        if device == "cuda" and self.options.get("compare_torch", True):
            sdpa = torch.nn.functional.scaled_dot_product_attention
            baseline = self._baseline(("attention", *shape, ctx["dtype"], causal),
                                      lambda: (lambda: sdpa(q, k, v, is_causal=causal)), device)
        return self._result(samples, 4.0 * bh * d * pairs, ctx, device, err, baseline,
                            "pct_of_sdpa")


def reference_attention(q: Any, k: Any, v: Any, causal: bool) -> Any:
    """Attention in fp32 (fp64 on CPU), one (batch, head) slice at a time to bound memory."""
    import torch

    ref_dtype = torch.float64 if q.device.type == "cpu" else torch.float32
    out = torch.empty(q.shape, dtype=ref_dtype, device=q.device)
    s = q.shape[2]
    scale = q.shape[-1] ** -0.5
    mask = torch.ones((s, s), dtype=torch.bool, device=q.device).triu(1) if causal else None
    with _no_tf32(torch):
        for z in range(q.shape[0]):
            for h in range(q.shape[1]):
                scores = (q[z, h].to(ref_dtype) @ k[z, h].to(ref_dtype).T) * scale
                if mask is not None:
                    scores = scores.masked_fill(mask, float("-inf"))
                out[z, h] = torch.softmax(scores, dim=-1) @ v[z, h].to(ref_dtype)
    return out


class _no_tf32:
    """Reference products in true fp32 (torch may default to tf32 on Ampere and later)."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def __enter__(self) -> None:
        self.prev = self.torch.backends.cuda.matmul.allow_tf32
        self.torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc: Any) -> None:
        self.torch.backends.cuda.matmul.allow_tf32 = self.prev


__all__ = ["KernelGpuEvaluator", "NO_GPU", "TOLERANCE", "max_rel_error", "reference_attention"]
