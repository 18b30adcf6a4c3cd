"""``tuner profile-hardware``: measure the local device and write a hardware profile.

The profile is a hardware catalog file (``catalog/hardware/*.toml`` layout) whose numbers were
measured here rather than read off a datasheet, so ``training-sim``, ``serving-sim`` and
``kernel-sim`` take its path wherever a catalog GPU name goes (``"gpu": "my-cpu.toml"``).
The fitted constants are those of ``evaluators/_perf.py``:

* ``peak_tflops[dtype]``: the best GEMM throughput measured in that dtype, so ``gemm_max`` is 1
  and the GEMM curve ``e(k) = min(1, gemm_k_peak k / (k + gemm_k_half))`` plus the fixed cost
  ``gemm_overhead_us`` are least-squares fits (in log time) over the measured grid;
* ``hbm_tb_s``: streaming copy bandwidth (``hbm`` efficiency 1);
* ``attn_max``: fused attention (prefill) throughput over the GEMM peak;
* ``kernel_launch_us``: a tiny op's fixed cost;
* ``nvlink_gb_s`` and ``collective_latency_us``: bus bandwidth and latency fitted to all-reduce
  across local processes (the "node" is this machine; ``gpus_per_node`` = that many ranks).

The raw medians and spreads are kept under ``[measurements]`` beside the fit.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuner.evaluators import _microbench as mb

CPU_GEMM_SHAPES = [(m, n, k) for m in (1, 8, 64, 256, 1024)
                   for n, k in ((576, 576), (1536, 576), (576, 1536), (2048, 2048))]
GPU_GEMM_SHAPES = [(m, n, k) for m in (16, 128, 1024, 4096, 8192)
                   for n, k in ((4096, 4096), (8192, 8192), (28672, 8192), (8192, 28672))]
ATTENTION_CASES = {
    "cpu": [{"batch": 1, "heads": 9, "q_len": q, "kv_len": q, "head_dim": 64} for q in (256, 1024)]
    + [{"batch": 8, "heads": 9, "q_len": 1, "kv_len": kv, "head_dim": 64} for kv in (512, 2048)],
    "cuda": [{"batch": 4, "heads": 32, "q_len": q, "kv_len": q, "head_dim": 128}
             for q in (2048, 8192)]
    + [{"batch": 64, "heads": 32, "q_len": 1, "kv_len": kv, "head_dim": 128}
       for kv in (2048, 8192)],
}
ALLREDUCE_SIZES = [2**p for p in (12, 16, 20, 23, 25)]


def measure(device: str = "cpu", ranks: int = 2, log: Callable[[str], None] = print,
            quick: bool = False) -> dict[str, Any]:
    """Every microbenchmark of the profile, raw (``quick``: every 3rd GEMM shape, shorter
    timing windows, fewer all-reduce sizes)."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    shapes = GPU_GEMM_SHAPES if kind == "cuda" else CPU_GEMM_SHAPES
    window = 0.05 if quick else 0.2
    if quick:
        shapes = shapes[::3]
    dtypes = ("bf16", "fp16") if kind == "cuda" else ("fp32", "bf16")
    out: dict[str, Any] = {"info": mb.device_info(device)}
    log(f"profiling {out['info']['name']} ({device})")
    out["gemm"] = {}
    for dt in dtypes:
        log(f"  GEMM {dt}: {len(shapes)} shapes")
        out["gemm"][dt] = mb.gemm(device, dt, shapes, min_time_s=window)
    log("  attention (prefill and decode)")
    out["attention"] = mb.attention(device, dtypes[-1] if kind == "cpu" else "bf16",
                                    ATTENTION_CASES[kind], min_time_s=window)
    log("  memory bandwidth")
    out["memory"] = mb.memory_bandwidth(device, mib=1024 if kind == "cuda" else 256,
                                        min_time_s=window)
    out["launch"] = mb.launch_cost(device)
    out["ranks"] = ranks
    if ranks > 1:
        log(f"  all-reduce across {ranks} local processes")
        out["allreduce"] = mb.allreduce(ranks, "nccl" if kind == "cuda" else "gloo",
                                        ALLREDUCE_SIZES[::2] if quick else ALLREDUCE_SIZES)
    return out


# -- fitting --------------------------------------------------------------------------------
def _fit_gemm(rows: list[dict[str, float]], peak: float, bw: float, in_bytes: float
              ) -> tuple[dict[str, float], float]:
    """(k_peak, k_half, overhead_us) minimising squared log error; and the median error."""
    import numpy as np
    from scipy.optimize import least_squares

    # the fastest repeat: on a shared machine the noise only ever adds time
    m, n, k, t = (np.array([r[key] for r in rows]) for key in ("m", "n", "k", "min_s"))

    def predict(p: Any) -> Any:
        k_peak, k_half, t0 = p
        e = np.minimum(1.0, k_peak * k / (k + k_half))
        compute = 2 * m * n * k / (peak * e)
        memory = ((m * k + k * n) * in_bytes + m * n * in_bytes) / bw
        return np.maximum(compute, memory) + t0 * 1e-6

    fit = least_squares(lambda p: np.log(predict(p) / t), x0=[1.0, 100.0, 5.0],
                        bounds=([0.05, 0.0, 0.0], [2.0, 1e5, 1e5]))
    err = float(np.median(np.abs(predict(fit.x) / t - 1)))
    return {"gemm_k_peak": float(fit.x[0]), "gemm_k_half": float(fit.x[1]),
            "gemm_overhead_us": float(fit.x[2])}, err


def _fit_allreduce(rows: list[dict[str, float]], ranks: int) -> tuple[float, float]:
    """(bus GB/s, latency us) of ``t = latency + 2 (n-1)/n bytes / bw``."""
    import numpy as np

    x = np.array([2 * (ranks - 1) / ranks * r["bytes"] for r in rows])
    t = np.array([r["min_s"] for r in rows])
    slope, intercept = np.polyfit(x, t, 1)
    return float(1 / max(slope, 1e-15) / 1e9), float(max(intercept, 0.0) * 1e6)


def fit(raw: dict[str, Any], name: str | None = None, price_usd_per_hour: float = 0.0
        ) -> dict[str, Any]:
    """A hardware catalog entry (as TOML-ready data) from ``measure``'s output."""
    info = raw["info"]
    cuda = info["device"].startswith("cuda")
    bw = raw["memory"]["gb_s"] * 1e9
    peaks = {dt: max(r["tflops"] for r in rows) for dt, rows in raw["gemm"].items()}
    main = "bf16" if "bf16" in peaks else next(iter(peaks))
    bytes_of = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0}
    curve, err = _fit_gemm(raw["gemm"][main], peaks[main] * 1e12, bw, bytes_of[main])
    prefill = [r["tflops"] for r in raw["attention"] if r["q_len"] == r["kv_len"]]
    eff = {"gemm_max": 1.0, "gemm_max_fp8": 1.0, **curve, "hbm": 1.0,
           "attn_max": min(1.0, sorted(prefill)[len(prefill) // 2] / peaks[main]),
           "attn_bwd_max": min(1.0, sorted(prefill)[len(prefill) // 2] / peaks[main]),
           "kernel_launch_us": raw["launch"]["median_s"] * 1e6, "nvlink": 1.0, "network": 1.0}
    ranks = int(raw.get("ranks", 1))
    link_gb_s = bw / 1e9
    if raw.get("allreduce"):
        link_gb_s, lat_us = _fit_allreduce(raw["allreduce"], ranks)
        eff["collective_latency_us"] = lat_us
    slug = re.sub(r"[^a-z0-9]+", "-", info["name"].lower()).strip("-")[:40]
    return {
        "name": name or f"{'gpu' if cuda else 'cpu'}-{slug}",
        "description": f"{info['name']}: measured by tuner profile-hardware "
                       f"({'GPU' if cuda else 'CPU'}, torch {info['torch']})",
        "kind": "gpu" if cuda else "cpu",
        "hbm_gib": round(info["memory_gib"], 2),
        "hbm_tb_s": bw / 1e12,
        "sm_count": int(info.get("multiprocessors") or info.get("cores") or 1),
        "smem_per_sm_kib": 228.0 if cuda else 48.0,
        "smem_per_block_kib": 227.0 if cuda else 48.0,
        "regs_per_sm": 65536,
        "l2_mib": 50.0 if cuda else 2.0,
        "clock_mhz": 0.0,
        "nvlink_gb_s": link_gb_s,
        "network_gbit_s": link_gb_s * 8,
        "gpus_per_node": ranks,
        "price_usd_per_hour": price_usd_per_hour,
        "source": f"tuner profile-hardware on {info['host']}, "
                  f"{datetime.date.today().isoformat()}; GEMM curve median error "
                  f"{100 * err:.1f}% over {len(raw['gemm'][main])} {main} shapes",
        "peak_tflops": peaks,
        "efficiency": eff,
        "measurements": {"info": json.dumps(info, default=str),
                         **{k: json.dumps(v) for k, v in raw.items()
                            if k not in ("info", "ranks")}},
    }


# -- writing --------------------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"not writable to TOML: {v}")
        return repr(round(v, 6) if isinstance(v, float) else v)
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def to_toml(data: dict[str, Any]) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def profile_hardware(out: str | Path, device: str = "cpu", ranks: int = 2,
                     name: str | None = None, price_usd_per_hour: float = 0.0,
                     log: Callable[[str], None] = print, quick: bool = False
                     ) -> dict[str, Any]:
    data = fit(measure(device, ranks, log, quick), name, price_usd_per_hour)
    Path(out).write_text("# Written by `tuner profile-hardware`; measured, not from a datasheet."
                         "\n" + to_toml(data), encoding="utf-8")
    return data


__all__ = ["fit", "measure", "profile_hardware", "to_toml"]
