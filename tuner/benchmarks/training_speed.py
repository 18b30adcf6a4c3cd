"""training-sim speed and exhaustive ground truth of every training study.

    python -m tuner.benchmarks.training_speed [--repeat 3] [--min-rate 10000] [--json]

1. Evaluation rate: plan evaluations per second on one core through the Python API
   (``TrainingSimEvaluator.evaluate``), over random plans of the studies' spaces: valid ones
   only (every one fully simulated) and as uniform sampling draws them (invalid ones are
   answered early). Reported warm (the evaluator's memo tables of per-layer times filled, as
   in a long search) and cold (tables cleared before every evaluation), per wall-clock second
   and per CPU second of this process (on a shared machine the wall-clock rate counts other
   processes' time slices too). The process pins itself to one core.
2. For each ``studies/training-*.toml``: the size of its valid space, the time to enumerate it
   and to evaluate every point, and the exact optimum of its first objective among the plans
   that satisfy the study's constraints: the ground truth the sampler benchmark compares with.

Exit code 1 when the warm CPU-time rate on valid plans is below ``--min-rate``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def _pin_one_core() -> int | None:
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):
        return None


def _spaces() -> list[tuple[str, Any, Any]]:
    from tuner.runner import build
    from tuner.spec import load_spec

    out = []
    for path in sorted(STUDIES.glob("training-*.toml")):
        spec = load_spec(path)
        space, _, _, _ = build(spec, sampler_name="random")
        out.append((spec.name, spec, space))
    return out


def _plans(spaces: list, n: int, valid: bool, rng: random.Random) -> list[dict[str, Any]]:
    """``n`` random plans from the spaces: valid ones only, or as uniform sampling gives."""
    out: list[dict[str, Any]] = []
    per = n // max(len(spaces), 1)
    for _, _, space in spaces:
        got = 0
        while got < per:
            cfg = space.sample(rng)
            if valid and space.constraints(cfg):
                continue
            out.append(cfg)
            got += 1
    rng.shuffle(out)
    return out


def measure_rate(spaces: list, repeat: int, n: int = 4000, seed: int = 0) -> dict[str, float]:
    from tuner.evaluators.training import TrainingSimEvaluator, clear_caches

    rng = random.Random(seed)
    sets = {"valid": _plans(spaces, n, True, rng), "mixed": _plans(spaces, n, False, rng)}
    ev = TrainingSimEvaluator()
    out: dict[str, float] = {"plans": float(n)}
    for kind, configs in sets.items():
        for mode in ("warm", "cold"):
            wall, cpu = [], []
            for _ in range(repeat):
                if mode == "warm":
                    for cfg in configs:  # fill the memo tables first
                        ev.evaluate(cfg)
                t0, c0 = time.perf_counter(), time.process_time()
                for cfg in configs:
                    if mode == "cold":
                        clear_caches()
                    ev.evaluate(cfg)
                wall.append(len(configs) / (time.perf_counter() - t0))
                cpu.append(len(configs) / (time.process_time() - c0))
            out[f"{kind}_{mode}_evals_per_wall_s"] = max(wall)
            out[f"{kind}_{mode}_evals_per_cpu_s"] = max(cpu)
    return out


def _satisfies(metrics: dict[str, float], constraints: list) -> bool:
    return all(c.violation(metrics) <= 0 for c in constraints)


def ground_truth(name: str, spec: Any, space: Any) -> dict[str, Any]:
    from tuner.evaluators.training import TrainingSimEvaluator

    ev = TrainingSimEvaluator(**spec.evaluator.options)
    t0 = time.perf_counter()
    configs = list(space.enumerate())
    t_enum = time.perf_counter() - t0
    obj = spec.objectives[0]
    sign = 1.0 if obj.direction == "maximize" else -1.0
    best: tuple[float, dict, dict] | None = None
    feasible = 0
    t0 = time.perf_counter()
    for cfg in configs:
        res = ev.evaluate(cfg)
        if res.status.value != "ok" or not _satisfies(dict(res.metrics), spec.constraints):
            continue
        feasible += 1
        score = sign * res.metrics[obj.metric]
        if best is None or score > best[0]:
            best = (score, cfg, dict(res.metrics))
    t_eval = time.perf_counter() - t0
    row: dict[str, Any] = {"study": name, "grid_points": _grid_size(space),
                           "valid_plans": len(configs), "feasible_plans": feasible,
                           "enumerate_s": round(t_enum, 2), "evaluate_all_s": round(t_eval, 2),
                           "objective": f"{obj.direction} {obj.metric}"}
    if best is not None:
        row["optimum"] = round(best[2][obj.metric], 6)
        row["optimum_plan"] = space.param_values(best[1])
        row["optimum_metrics"] = {k: round(v, 4) for k, v in best[2].items()}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-rate", type=float, default=10_000.0)
    ap.add_argument("--skip-studies", action="store_true", help="only the evaluation rate")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = ap.parse_args(argv)
    cpu = _pin_one_core()
    spaces = _spaces()
    rate = measure_rate(spaces, args.repeat)
    rate.update({"pinned_cpu": -1 if cpu is None else cpu,
                 "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count() or 0})
    studies = [] if args.skip_studies else [ground_truth(*s) for s in spaces]
    if args.json:
        print(json.dumps({"rate": rate, "studies": studies}, indent=1, default=str))
    else:
        print(f"training-sim on one core (cpu {rate['pinned_cpu']}, load average "
              f"{rate['load_average_1min']:.1f}, {int(rate['plans'])} plans from "
              f"{len(spaces)} study spaces):")
        for kind in ("valid", "mixed"):
            for mode in ("warm", "cold"):
                k = f"{kind}_{mode}"
                print(f"  {kind} plans, {mode} tables: {rate[k + '_evals_per_cpu_s']:>9,.0f} "
                      f"evals per CPU second, {rate[k + '_evals_per_wall_s']:>9,.0f} per wall "
                      "second")
        for row in studies:
            print(f"\n{row['study']}: {row['valid_plans']:,} valid plans of {row['grid_points']:,}"
                  f" grid points ({row['feasible_plans']:,} fit), enumerated in "
                  f"{row['enumerate_s']} s, all evaluated in {row['evaluate_all_s']} s")
            if "optimum" in row:
                print(f"  optimum ({row['objective']}): {row['optimum']:,.6g}")
                print(f"  plan: {json.dumps(row['optimum_plan'])}")
                print(f"  metrics: {json.dumps(row['optimum_metrics'])}")
    return 0 if rate["valid_warm_evals_per_cpu_s"] >= args.min_rate else 1


def _grid_size(space: Any) -> int:
    """Points of the full grid (conditional parameters counted where active)."""
    import math

    params = space.params
    size = 0
    names = list(params)
    # conditional parameters of this space depend only on tp and pp: count per (tp, pp)
    base = math.prod(len(p.values()) for n, p in params.items()
                     if not p.when and n not in ("tp", "pp"))
    for tp in params["tp"].values() if "tp" in params else [space.fixed.get("tp", 1)]:
        for pp in params["pp"].values() if "pp" in params else [space.fixed.get("pp", 1)]:
            k = base
            for n in names:
                p = params[n]
                if p.when and all(({"tp": tp, "pp": pp}.get(c, None) in v)
                                  for c, v in p.when.items()):
                    k *= len(p.values())
            size += k
    return size


if __name__ == "__main__":
    sys.exit(main())
