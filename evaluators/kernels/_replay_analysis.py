"""Analysis of a kernel replay table: tuned vs torch, kernel-sim's ranking, search cost.

Per recorded shape:

* **best tuned vs torch**: the fastest measured config and ``100 * torch_time / best_time``
  (% of cuBLAS for GEMMs, of torch SDPA for attention);
* **model ranking**: Spearman rank correlation between kernel-sim's predicted time and the
  measured median over the successful configs, and whether kernel-sim's top 10 (over every
  recorded config) contains the measured best;
* **search cost**: measurements until a config within 3% of the best recorded one has been
  measured, as a fraction of the recorded space, for kernel-sim's ranking (measure the
  predicted-fastest first, like Triton's ``perf_model`` pruning), uniformly random (mean over
  shuffles) and optionally another search given as a callable (the figure script passes
  Optuna's TPE driven by kernel-replay).

"Space" means the recorded configs; when a sweep sampled a shape, the figures are relative to
that sample. ``tuner validate kernels`` and ``python -m tuner.benchmarks.kernel_analysis`` both
read these figures.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuner.evaluators.kernels.replay import ReplayTable, iter_shapes
from tuner.evaluators.kernels.sim import KernelSimEvaluator

#: (kernel, shape, gpu, records, best_us) -> fraction of the recorded space a search measures
SearchCost = Callable[[str, dict, str, list, float], float]

WITHIN = 1.03


@dataclass
class ShapeResult:
    """The figures of one recorded shape (fractions are of the recorded configs)."""

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
    """Spearman's rho, or ``None`` with fewer than three points or a constant side."""
    if len(x) < 3:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return None if rho != rho else float(rho)  # NaN when one side is constant


def analyse(table_path: str, gpu: str | None = None, random_trials: int = 200, seed: int = 0,
            search_cost: SearchCost | None = None) -> tuple[ReplayTable, list[ShapeResult]]:
    """The table and one :class:`ShapeResult` per shape with a successful measurement.

    ``search_cost`` fills ``frac_to_3pct_tpe`` (left ``None`` without one).
    """
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
        tpe = search_cost(kernel, shape, gpu, recs, best["time_us"]) if search_cost else None
        out.append(ShapeResult(
            label=_label(kernel, shape), configs=len(recs), ok=len(ok),
            best_us=best["time_us"], best_config=best["config"], torch_us=torch_us,
            pct_of_torch=100.0 * torch_us / best["time_us"] if torch_us else None,
            spearman=rho, model_top10_has_best=rank_best <= 10, model_rank_of_best=rank_best,
            frac_to_3pct_model=measurements_to_within(by_model, best["time_us"]) / len(recs),
            frac_to_3pct_random=statistics.fmean(rand) / len(recs), frac_to_3pct_tpe=tpe))
    return table, out


def summary(results: list[ShapeResult]) -> dict[str, Any]:
    """Means and medians over the shapes (``None`` where no shape has the figure)."""
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


__all__ = ["WITHIN", "SearchCost", "ShapeResult", "analyse", "measurements_to_within", "spearman",
           "summary"]
