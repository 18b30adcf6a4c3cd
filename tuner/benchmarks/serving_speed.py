"""How fast serving-sim simulates 10,000 requests on one CPU core (target: <= 2 s).

Each scenario is one ``serving-sim`` evaluation (workload generation + simulation + metrics),
pinned to one core, best of ``--repeat`` runs (wall and process CPU time). For reference, Vidur
reports about 4.6 s for 1,000 requests, after roughly 15 minutes of training its predictors.

Usage::

    python -m tuner.benchmarks.serving_speed [--requests 10000] [--repeat 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

TARGET_S = 2.0
CPU_PROFILE = str(Path(__file__).resolve().parents[2] / "evaluators" / "serving" / "data"
                  / "cpu_example.toml")


def scenarios(n: int) -> list[tuple[str, dict[str, Any]]]:
    chat = {"name": "sharegpt-like", "num_requests": n}
    return [
        ("llama3.1-8b 1xH100, ShareGPT-like Poisson 20 req/s",
         {"model": "llama3.1-8b", "gpu": "h100_sxm", "workload": {**chat, "rate": 20.0}}),
        ("llama3.1-70b 2 replicas x TP4 H100, bursty 10 req/s",
         {"model": "llama3.1-70b", "gpu": "h100_sxm", "tp": 4, "replicas": 2,
          "workload": {"name": "bursty-chat-10rps", "num_requests": n}}),
        ("llama3.1-70b disaggregated 1P TP4 + 1D TP4, bursty 10 req/s",
         {"model": "llama3.1-70b", "gpu": "h100_sxm", "disaggregated": True,
          "prefill_workers": 1, "prefill_tp": 4, "decode_workers": 1, "decode_tp": 4,
          "workload": {"name": "bursty-chat-10rps", "num_requests": n}}),
        ("qwen3-235b-a22b TP8 EP8 fp8 H200, closed loop 256 users",
         {"model": "qwen3-235b-a22b", "gpu": "h200_sxm", "tp": 8, "ep": 8,
          "weight_dtype": "fp8", "workload": {**chat, "mode": "closed", "concurrency": 256}}),
        ("llama3.1-8b 1xA100 small KV (preemption), Poisson 30 req/s",
         {"model": "llama3.1-8b", "gpu": "a100_sxm_80gb", "gpu_memory_utilization": 0.3,
          "workload": {**chat, "rate": 30.0}}),
        ("sglang llama3.1-8b 1xH100, ShareGPT-like Poisson 20 req/s",
         {"engine": "sglang", "model": "llama3.1-8b", "gpu": "h100_sxm",
          "workload": {**chat, "rate": 20.0}}),
        ("trtllm deepseek-v3 8xH200 DP attention + EP8, closed loop 512 users",
         {"engine": "trtllm", "model": "deepseek-v3", "gpu": "h200_sxm", "tp": 8, "ep": 8,
          "dp_attention": True, "weight_dtype": "fp8",
          "workload": {**chat, "mode": "closed", "concurrency": 512}}),
        ("llama.cpp smollm2-135m on a 2-core CPU profile, 8 slots, closed loop 8 users",
         {"engine": "llama.cpp", "model": "smollm2-135m", "gpu": CPU_PROFILE,
          "max_num_seqs": 8, "workload": {**chat, "mode": "closed", "concurrency": 8}}),
    ]


def run(n: int = 10_000, repeat: int = 3) -> list[dict[str, Any]]:
    from tuner.evaluators.serving import ServingSimEvaluator, clear_caches

    ev = ServingSimEvaluator()
    out = []
    for name, cfg in scenarios(n):
        walls, cpus = [], []
        res = None
        for _ in range(repeat):
            clear_caches()  # time workload generation too
            w0, c0 = time.perf_counter(), time.process_time()
            res = ev.evaluate(cfg)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        assert res is not None and res.status.value == "ok", res and res.reason
        out.append({"scenario": name, "requests": n, "wall_s": min(walls), "cpu_s": min(cpus),
                    "steps": res.artifacts.get("steps"),
                    "throughput_tok_s": res.metrics["throughput_tok_s"],
                    "meets_target": min(walls) <= TARGET_S})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rows = run(args.requests, args.repeat)
    for r in rows:
        print(f"{r['wall_s']:6.2f} s wall  {r['cpu_s']:6.2f} s cpu  {r['steps']:>7} events  "
              f"{'ok ' if r['meets_target'] else 'SLOW'}  {r['scenario']}")
    print(f"target: {args.requests} requests in <= {TARGET_S} s on one core")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
