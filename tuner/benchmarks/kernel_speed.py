"""kernel-sim throughput: configs evaluated per second on one core through the Python API.

    python -m tuner.benchmarks.kernel_speed [--repeat 3] [--min-rate 100000]

Evaluates every config (valid and invalid: the runner and samplers send both) of three spaces,
GEMM prefill, GEMM decode and attention, with ``KernelSimEvaluator.evaluate`` in one process,
and reports the best of ``--repeat`` passes (the least disturbed by other load on the machine),
both per wall-clock second and per CPU second of this process (``time.process_time``: on a
shared machine the wall-clock rate counts other processes' time slices too). Exit code 1 when
the CPU-time rate is below ``--min-rate``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

SPACES = (
    ("kernel-gemm", {"m": 8192, "n": 28672, "k": 8192, "dtype": "bf16", "gpu": "h100_sxm"}),
    ("kernel-gemm", {"m": 16, "n": 8192, "k": 28672, "dtype": "fp8", "gpu": "h100_sxm"}),
    ("kernel-attention", {"batch": 1, "heads": 64, "seq_len": 8192, "head_dim": 128,
                          "dtype": "bf16", "causal": True, "gpu": "h100_sxm"}),
)


def measure(repeat: int = 3, seed: int = 0) -> dict[str, float]:
    from tuner import registry
    from tuner.evaluators.kernels import KernelSimEvaluator

    configs = []
    for domain, ctx in SPACES:
        configs += list(registry.space_class(domain)(ctx).enumerate(valid_only=False))
    random.Random(seed).shuffle(configs)  # no shape-after-shape cache luck
    ev = KernelSimEvaluator()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for cfg in configs:
            ev.evaluate(cfg)
        wall.append(len(configs) / (time.perf_counter() - t0))
        cpu.append(len(configs) / (time.process_time() - c0))
    return {"configs": len(configs), "best_configs_per_wall_s": max(wall),
            "best_configs_per_cpu_s": max(cpu), "median_configs_per_cpu_s": sorted(cpu)[
                len(cpu) // 2], "load_average_1min": os.getloadavg()[0],
            "cpus": os.cpu_count() or 0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-rate", type=float, default=100_000.0)
    args = ap.parse_args(argv)
    res = measure(args.repeat)
    print(json.dumps(res, indent=1))
    return 0 if res["best_configs_per_cpu_s"] >= args.min_rate else 1


if __name__ == "__main__":
    sys.exit(main())
