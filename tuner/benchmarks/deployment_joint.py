"""What the joint deployment search buys over the pipeline practitioners run one domain at a time.

``python -m tuner.benchmarks.deployment_joint [--trials N] [--seeds N] [--study NAME] [--json P]``

For each shipped deployment study (its model, GPUs, budget, workload, SLOs and quality budget),
``tuner.evaluators.deployment.pipelines`` runs, with the same space, SLOs, quality budget and TPE
budget of ``--trials`` suggestions each:

* joint: plan x mix x scheduler searched together, then the best tiles, once per TPE seed
  (``--seeds``: 0..N-1; a single seed varies widely, the median over seeds is the figure);
* sequential: the smallest mix within the quality budget (quantization model alone), then plan
  and scheduler for that model, then the best tiles;
* uniform fp8 (W8A8 + fp8 KV) and uniform int4 (W4A16 g128, bf16 KV): plan and scheduler.

It prints each pipeline's cheapest config meeting TTFT/TPOT p99 SLOs (and the quality budget),
the cost difference of joint vs sequential, and per domain what the joint winner changed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from tuner.evaluators.deployment.pipelines import Goal, Outcome, compare, domain_diff

#: the studies of ``studies/deployment-*.toml``, as the pipelines take them: context, the
#: narrowing both pipelines share (scheduler knobs that hardly move cost held at engine
#: defaults, no pipeline stages), and the SLOs and quality budget
STUDIES: dict[str, dict[str, Any]] = {
    "deployment-llama70b-h100-h200-bursty": {
        "context": {"model": "llama3.1-70b", "gpu": ["h100_sxm", "h200_sxm"], "num_gpus": 8,
                    "workload": "bursty-chat-10rps", "slo_ttft_ms": 2000.0,
                    "slo_tpot_ms": 100.0},
        "goal": Goal(2000.0, 100.0, 0.02),
    },
    "deployment-qwen3-235b-h200": {
        "context": {"model": "qwen3-235b-a22b", "gpu": "h200_sxm", "num_gpus": 16,
                    "workload": "bursty-chat-10rps", "slo_ttft_ms": 3000.0,
                    "slo_tpot_ms": 100.0},
        "goal": Goal(3000.0, 100.0, 0.02),
    },
}
SHARED_OVERRIDES = {"pp": {"fixed": 1}, "chunked_prefill": {"fixed": True},
                    "kv_block_size": {"fixed": 16}, "gpu_memory_utilization": {"fixed": 0.9},
                    "preemption_mode": {"fixed": "recompute"},
                    "scheduling_policy": {"fixed": "fcfs"}}


def _plan_text(cfg: dict[str, Any]) -> str:
    gpu = cfg.get("gpu", "?")
    if cfg.get("disaggregated"):
        return (f"{gpu} disagg {cfg['prefill_workers']}x tp{cfg['prefill_tp']} prefill + "
                f"{cfg['decode_workers']}x tp{cfg['decode_tp']} decode")
    ep = f" ep{cfg['ep']}" if cfg.get("ep", 1) > 1 else ""
    dp = " dp-attention" if cfg.get("dp_attention") else ""
    return f"{gpu} {cfg['replicas']}x tp{cfg['tp']}{ep}{dp}"


def _mix_text(cfg: dict[str, Any]) -> str:
    bits = "/".join(str(cfg[f"{r}_bits"]) for r in ("qkv", "attn_out", "mlp_up", "mlp_down"))
    return (f"W{bits} A{cfg['act_bits']} KV{cfg['kv_bits']}"
            + (f" protect {cfg['protect_frac']}" if cfg.get("protect_frac") else ""))


def _row(o: Outcome) -> str:
    if o.metrics is None:
        return f"{o.name:<14} no config met the SLOs ({o.simulations} simulations) {o.note}"
    m, c = o.metrics, o.config or {}
    return (f"{o.name:<14} ${m['cost_usd_per_mtok']:7.3f}/Mtok  ttft p99 "
            f"{m['ttft_ms_p99']:6.0f} ms  tpot p99 {m['tpot_ms_p99']:5.1f} ms  quality_drop "
            f"{m['quality_drop']:.4f}  {int(m['num_gpus'])} GPUs  {_plan_text(c)}  "
            f"{_mix_text(c)}  seqs {c['max_num_seqs']} budget {c['max_num_batched_tokens']}  "
            f"({o.simulations} sims) {o.note}")


def run(name: str, trials: int, seeds: list[int]) -> dict[str, Any]:
    st = STUDIES[name]
    t0 = time.perf_counter()
    outcomes = compare(st["context"], SHARED_OVERRIDES, st["goal"], trials, seeds)
    wall = time.perf_counter() - t0
    g = st["goal"]
    print(f"\n== {name}: cheapest $/Mtok with TTFT p99 <= {g.slo_ttft_ms:g} ms, TPOT p99 <= "
          f"{g.slo_tpot_ms:g} ms, quality_drop <= {g.quality_budget:g} "
          f"({trials} TPE trials per joint search, seeds {seeds}, {wall:.0f} s)")
    for o in outcomes:
        print(_row(o))
    joints, seq = outcomes[:len(seeds)], outcomes[len(seeds)]
    out: dict[str, Any] = {"study": name, "wall_s": wall,
                           "outcomes": [{"name": o.name, "config": o.config,
                                         "metrics": o.metrics, "simulations": o.simulations,
                                         "note": o.note} for o in outcomes]}
    if seq.metrics is None:
        return out
    gains = [1 - o.cost / seq.cost for o in joints]  # inf cost (nothing met the SLOs): -inf
    out["joint_vs_sequential"] = dict(zip(map(str, seeds), gains))
    out["joint_vs_sequential_median"] = median = statistics.median(gains)
    print("joint vs sequential, cheaper per million tokens: "
          + ", ".join(f"seed {s} {100 * x:+.1f}%" for s, x in zip(seeds, gains))
          + f"; median {100 * median:+.1f}%")
    # what the joint search changed, on the seed whose result is the median one
    mid = joints[sorted(range(len(joints)), key=lambda k: gains[k])[len(joints) // 2]]
    if mid.metrics is None:
        return out
    for domain, changes in domain_diff(seq.config or {}, mid.config or {}).items():
        print(f"  {domain}: " + "; ".join(changes))
    for o in (seq, mid):
        m = o.metrics or {}
        weights = m.get("weight_gib_per_gpu", m.get("decode_weight_gib_per_gpu", 0.0))
        kv = m.get("kv_cache_tokens", m.get("decode_kv_cache_tokens", 0.0))
        print(f"  {o.name}: weights {weights:.1f} GiB/GPU, KV capacity {kv:.0f} tokens per "
              f"(decode) engine, throughput {m['throughput_tok_s']:.0f} tok/s")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="joint deployment search vs a sequential pipeline")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=5,
                    help="joint searches with TPE seeds 0..N-1 (default 5)")
    ap.add_argument("--study", choices=sorted(STUDIES), action="append")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    for flag, value in (("--trials", args.trials), ("--seeds", args.seeds)):
        if value < 1:
            ap.error(f"{flag}: {value} must be >= 1")
    seeds = list(range(args.seeds))
    results = [run(n, args.trials, seeds) for n in (args.study or list(STUDIES))]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
