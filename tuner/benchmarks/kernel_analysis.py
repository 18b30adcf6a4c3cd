"""README figures from a kernel replay table: tuned vs torch, model ranking, search cost.

    python -m tuner.benchmarks.kernel_analysis evaluators/data/kernel_replay/h100_sxm.json \\
        [--json out.json] [--tpe-seeds 3]

Per recorded shape:

* **best tuned vs torch**: the fastest measured config and ``100 * torch_time / best_time``
  (% of cuBLAS for GEMMs, of torch SDPA for attention);
* **model ranking**: Spearman rank correlation between kernel-sim's predicted time and the
  measured median over the successful configs, and whether kernel-sim's top 10 (over every
  recorded config) contains the measured best;
* **search cost**: measurements until a config within 3% of the best recorded one has been
  measured, as a fraction of the recorded space, for three orders: kernel-sim's ranking
  (measure the predicted-fastest first, like Triton's ``perf_model`` pruning), uniformly random
  (mean over shuffles) and optionally Optuna's TPE driven by kernel-replay (mean over seeds).

"Space" means the recorded configs; when a sweep sampled a shape (``--max-configs``), the
figures are relative to that sample. Tables recorded in Triton's CPU interpreter (``gpu`` is
null) can be analysed to exercise this code, but their times are interpreter times: the output
says so, and such figures must never be reported as GPU results.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from dataclasses import asdict, dataclass
from typing import Any

WITHIN = 1.03


@dataclass
class ShapeResult:
    label: str
    configs: int  # recorded configs (ok + failed)
    ok: int
    best_us: float
    best_config: dict[str, Any]
    torch_us: float | None
    pct_of_torch: float | None
    spearman: float | None
    model_top10_has_best: bool
    model_rank_of_best: int  # 1-based rank of the measured best in kernel-sim's order
    frac_to_3pct_model: float
    frac_to_3pct_random: float
    frac_to_3pct_tpe: float | None


def _label(kernel: str, shape: dict[str, Any]) -> str:
    if kernel == "gemm":
        return f"gemm {shape['m']}x{shape['n']}x{shape['k']} {shape['dtype']}"
    return (f"attention b{shape['batch']} h{shape['heads']} s{shape['seq_len']} "
            f"d{shape['head_dim']} {shape['dtype']}{' causal' if shape['causal'] else ''}")


def measurements_to_within(order: list[dict[str, Any]], best_us: float,
                           within: float = WITHIN) -> int:
    """How many records of ``order`` are measured until one is within ``within`` of best."""
    for i, r in enumerate(order, 1):
        if r["status"] == "ok" and r["time_us"] <= within * best_us:
            return i
    return len(order)


def spearman(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return None if rho != rho else float(rho)  # NaN when one side is constant


def _tpe_fraction(table_path: str, kernel: str, shape: dict[str, Any], gpu: str,
                  records: list[dict[str, Any]], best_us: float, seeds: int) -> float:
    """Mean fraction of the recorded space TPE measures before reaching within 3% of best.

    Suggestions outside the recorded configs are answered ``failed`` by kernel-replay and not
    counted as measurements (they would not exist in a full sweep).
    """
    import optuna

    from evaluators.kernel_replay import KernelReplayEvaluator
    from tuner import registry

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    domain = "kernel-gemm" if kernel == "gemm" else "kernel-attention"
    space = registry.space_class(domain)({**shape, "gpu": gpu})
    ev = KernelReplayEvaluator(table=table_path)
    fracs = []
    for seed in range(seeds):
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        measured, seen = 0, set()
        for _ in range(20 * len(records)):
            trial = study.ask()
            cfg = space.suggest(trial)
            reasons = space.constraints(cfg)
            if reasons:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            res = ev.evaluate(cfg)
            key = tuple(sorted(space.param_values(cfg).items()))
            if res.reason and "not recorded" in res.reason:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            if key not in seen:
                seen.add(key)
                measured += 1
            if res.status.value != "ok":
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            study.tell(trial, res.metrics["time_us"])
            if res.metrics["time_us"] <= WITHIN * best_us or measured >= len(records):
                break
        fracs.append(measured / len(records))
    return statistics.fmean(fracs)


def analyse(table_path: str, gpu: str | None = None, random_trials: int = 200,
            tpe_seeds: int = 0, seed: int = 0) -> tuple[Any, list[ShapeResult]]:
    from evaluators.kernel_replay import ReplayTable, iter_shapes
    from evaluators.kernel_sim import KernelSimEvaluator

    table = ReplayTable.load(table_path)
    gpu = gpu or table.gpu or "h100_sxm"
    sim = KernelSimEvaluator()
    rng = random.Random(seed)
    out = []
    for kernel, shape in iter_shapes(table):
        recs = table.shape_records(kernel, shape)
        ok = [r for r in recs if r["status"] == "ok"]
        if not ok:
            continue
        best = min(ok, key=lambda r: r["time_us"])
        pred = {}
        for r in recs:
            res = sim.evaluate({"kernel": kernel, **shape, "gpu": gpu, **r["config"]})
            pred[id(r)] = res.metrics["time_us"] if res.status.value == "ok" else float("inf")
        by_model = sorted(recs, key=lambda r: pred[id(r)])
        rank_best = next(i for i, r in enumerate(by_model, 1) if r is best)
        rho = spearman([pred[id(r)] for r in ok], [r["time_us"] for r in ok])
        rand = []
        for _ in range(random_trials):
            order = recs[:]
            rng.shuffle(order)
            rand.append(measurements_to_within(order, best["time_us"]))
        torch_us = table.baseline(kernel, shape)
        tpe = (_tpe_fraction(table_path, kernel, shape, gpu, recs, best["time_us"], tpe_seeds)
               if tpe_seeds else None)
        out.append(ShapeResult(
            label=_label(kernel, shape), configs=len(recs), ok=len(ok),
            best_us=best["time_us"], best_config=best["config"], torch_us=torch_us,
            pct_of_torch=100.0 * torch_us / best["time_us"] if torch_us else None,
            spearman=rho, model_top10_has_best=rank_best <= 10, model_rank_of_best=rank_best,
            frac_to_3pct_model=measurements_to_within(by_model, best["time_us"]) / len(recs),
            frac_to_3pct_random=statistics.fmean(rand) / len(recs), frac_to_3pct_tpe=tpe))
    return table, out


def summary(results: list[ShapeResult]) -> dict[str, Any]:
    rhos = [r.spearman for r in results if r.spearman is not None]

    def med(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    tpe = [r.frac_to_3pct_tpe for r in results if r.frac_to_3pct_tpe is not None]
    return {
        "shapes": len(results),
        "spearman_mean": statistics.fmean(rhos) if rhos else None,
        "spearman_min": min(rhos) if rhos else None,
        "top10_hit_rate": (sum(r.model_top10_has_best for r in results) / len(results)
                           if results else None),
        "median_frac_to_3pct_model": med([r.frac_to_3pct_model for r in results]),
        "median_frac_to_3pct_random": med([r.frac_to_3pct_random for r in results]),
        "median_frac_to_3pct_tpe": med(tpe),
    }


def markdown(table: Any, results: list[ShapeResult]) -> str:
    lines = []
    if table.gpu is None:
        lines.append(f"> Device: {table.device}. These are Triton-interpreter timings on a CPU: "
                     "they exercise the analysis, they are NOT GPU results.\n")
    else:
        lines.append(f"Device: {table.device} ({table.gpu}); software: "
                     + ", ".join(f"{k} {v}" for k, v in table.software.items()) + "\n")
    lines.append("| shape | configs (ok) | best us | % of torch | Spearman | best's rank "
                 "in kernel-sim | to 3%: kernel-sim order | random | TPE |")
    lines.append("|---|---|---|---|---|---|---|---|---|")

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    for r in results:
        lines.append(
            f"| {r.label} | {r.configs} ({r.ok}) | {r.best_us:.1f} | "
            f"{'-' if r.pct_of_torch is None else f'{r.pct_of_torch:.0f}%'} | "
            f"{'-' if r.spearman is None else f'{r.spearman:.2f}'} | {r.model_rank_of_best} | "
            f"{pct(r.frac_to_3pct_model)} | {pct(r.frac_to_3pct_random)} | "
            f"{pct(r.frac_to_3pct_tpe)} |")
    s = summary(results)
    fmt = {k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in s.items()}
    lines.append("")
    lines.append(f"Spearman mean {fmt['spearman_mean']} (min {fmt['spearman_min']}); kernel-sim "
                 f"top-10 holds the measured best in {fmt['top10_hit_rate']} of shapes; median "
                 f"fraction of the space measured to get within 3% of the best: kernel-sim order "
                 f"{fmt['median_frac_to_3pct_model']}, random {fmt['median_frac_to_3pct_random']}"
                 f", TPE {fmt['median_frac_to_3pct_tpe']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("table", help="replay table JSON (a path or a name in the data folder)")
    ap.add_argument("--gpu", default=None, help="kernel-sim GPU (default: the table's)")
    ap.add_argument("--random-trials", type=int, default=200)
    ap.add_argument("--tpe-seeds", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    from evaluators.kernel_replay import resolve_table
    from tuner._errors import BadInput

    try:
        path = str(resolve_table(args.table))
        table, results = analyse(path, args.gpu, args.random_trials, args.tpe_seeds)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(table, results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": table.device, "gpu": table.gpu, "summary": summary(results),
                       "shapes": [asdict(r) for r in results]}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
