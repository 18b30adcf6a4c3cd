"""README figures from a kernel replay table: tuned vs torch, model ranking, search cost.

    python -m tuner.benchmarks.kernel_analysis evaluators/kernels/data/replay/h100_sxm.json \\
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
  The figures are computed by ``evaluators/kernels/_replay_analysis.py``; this script adds the
  TPE column and prints them as a Markdown table.

"Space" means the recorded configs; when a sweep sampled a shape (``--max-configs``), the
figures are relative to that sample. Tables recorded in Triton's CPU interpreter (``gpu`` is
null) can be analysed to exercise this code, but their times are interpreter times: the output
says so, and such figures must never be reported as GPU results.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from dataclasses import asdict
from typing import Any

from tuner.evaluators.kernels import (
    WITHIN,
    KernelReplayEvaluator,
    ShapeResult,
    analyse,
    measurements_to_within,
    resolve_table,
    summary,
)


def _tpe_fraction(table_path: str, kernel: str, shape: dict[str, Any], gpu: str,
                  records: list[dict[str, Any]], best_us: float, seeds: int) -> float:
    """Mean fraction of the recorded space TPE measures before reaching within 3% of best.

    Suggestions outside the recorded configs are answered ``failed`` by kernel-replay and not
    counted as measurements (they would not exist in a full sweep).
    """
    import optuna

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


__all__ = ["ShapeResult", "analyse", "markdown", "measurements_to_within", "summary"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("table", help="replay table JSON (a path or a name in the data folder)")
    ap.add_argument("--gpu", default=None, help="kernel-sim GPU (default: the table's)")
    ap.add_argument("--random-trials", type=int, default=200)
    ap.add_argument("--tpe-seeds", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    from tuner import BadInput

    try:
        path = str(resolve_table(args.table))
        tpe = (functools.partial(_tpe_fraction, path, seeds=args.tpe_seeds)
               if args.tpe_seeds else None)
        table, results = analyse(path, args.gpu, args.random_trials, search_cost=tpe)
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
