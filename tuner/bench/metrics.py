"""Scores of one run and their aggregates over seeds and problems.

* ``evals_to_target``: trials until the best found is within 1% of the optimum (one
  objective) or the hypervolume found reaches 99% of the true front's (several); ``None`` when
  the budget ran out first (aggregated as infinity, so medians stay honest).
* ``at``: relative regret (one objective) or hypervolume ratio (several) after 25/50/100/200
  trials.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

BUDGETS = (25, 50, 100, 200)
#: "within 1% of the optimum"; for several objectives: 99% of the true hypervolume
TOLERANCE = 0.01


def run_scores(curve: dict[str, np.ndarray], budgets: Sequence[int] = BUDGETS
               ) -> dict[str, Any]:
    if "regret" in curve:
        c = curve["regret"]
        hit = np.flatnonzero(np.nan_to_num(c, nan=np.inf) <= TOLERANCE)
        at = {str(b): (None if b > len(c) or math.isnan(c[b - 1]) else float(c[b - 1]))
              for b in budgets if b <= len(c)}
        return {"kind": "regret", "evals_to_target": int(hit[0]) + 1 if len(hit) else None,
                "at": at, "final": None if math.isnan(c[-1]) else float(c[-1])}
    c = curve["hv_ratio"]
    hit = np.flatnonzero(c >= 1.0 - TOLERANCE)
    return {"kind": "hv_ratio", "evals_to_target": int(hit[0]) + 1 if len(hit) else None,
            "at": {str(b): float(c[b - 1]) for b in budgets if b <= len(c)},
            "final": float(c[-1])}


def censored_median(xs: Iterable[int | None]) -> float:
    """Median with ``None`` (target not reached) counted as infinity."""
    vals = [math.inf if x is None else float(x) for x in xs]
    return statistics.median(vals) if vals else math.nan


def median_or_none(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.median(vals) if vals else None


def summarize(runs: list[dict[str, Any]], samplers: Sequence[str], problems: Sequence[str],
              budget: int, reference: str = "tpe", candidate: str = "cost-model"
              ) -> dict[str, Any]:
    """Per-sampler and per-problem aggregates plus the cost model vs TPE target checks."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault((r["sampler"], r["problem"]), []).append(r)
    per_sampler: dict[str, Any] = {}
    for s in samplers:
        rs = [r for r in runs if r["sampler"] == s and not r.get("error")]
        if not rs:
            continue
        so = [r for r in rs if r["kind"] == "regret"]
        mo = [r for r in rs if r["kind"] == "hv_ratio"]
        per_sampler[s] = {
            "runs": len(rs),
            "median_evals_to_target": censored_median(r["evals_to_target"] for r in rs),
            "reached": sum(r["evals_to_target"] is not None for r in rs) / len(rs),
            "median_regret_at": {b: median_or_none(r["at"].get(b) for r in so)
                                 for b in _budget_keys(budget)} if so else {},
            "median_hv_ratio_at": {b: median_or_none(r["at"].get(b) for r in mo)
                                   for b in _budget_keys(budget)} if mo else {},
            "seconds_per_trial": statistics.mean(r["seconds"] / max(1, r["trials"])
                                                 for r in rs),
        }
    per_problem: dict[str, dict[str, Any]] = {}
    for p in problems:
        row = {}
        for s in samplers:
            rs = [r for r in by.get((s, p), []) if not r.get("error")]
            if rs:
                row[s] = {"median_evals_to_target": censored_median(
                    r["evals_to_target"] for r in rs),
                    "median_final": median_or_none(r["final"] for r in rs),
                    "min_final": min((r["final"] for r in rs if r["final"] is not None),
                                     default=None)}
        per_problem[p] = row
    return {"per_sampler": per_sampler, "per_problem": per_problem,
            "targets": _targets(runs, problems, reference, candidate, budget)}


def _budget_keys(budget: int) -> list[str]:
    return [str(b) for b in BUDGETS if b <= budget]


def _targets(runs: list[dict[str, Any]], problems: Sequence[str], reference: str,
             candidate: str, budget: int) -> dict[str, Any]:
    """The issue's two targets, computed on paired runs (same problems, same seeds)."""
    ref = {(r["problem"], r["seed"]): r for r in runs if r["sampler"] == reference
           and not r.get("error")}
    cand = {(r["problem"], r["seed"]): r for r in runs if r["sampler"] == candidate
            and not r.get("error")}
    pairs = sorted(set(ref) & set(cand))
    if not pairs:
        return {}
    m_ref = censored_median(ref[k]["evals_to_target"] for k in pairs)
    m_cand = censored_median(cand[k]["evals_to_target"] for k in pairs)
    per_problem = {}
    for p in problems:
        ks = [k for k in pairs if k[0] == p]
        if ks:
            a = censored_median(cand[k]["evals_to_target"] for k in ks)
            b = censored_median(ref[k]["evals_to_target"] for k in ks)
            r, bound = _ratio(a, b, budget)
            per_problem[p] = {"candidate": a, "reference": b, "ratio": r,
                              "ratio_is_upper_bound": bound}
    mo = [cand[k] for k in pairs if cand[k]["kind"] == "hv_ratio"]
    hv = [r["final"] for r in mo]
    wins = sum(1 for v in per_problem.values() if v["ratio"] is not None and v["ratio"] <= 0.5)
    ties = sum(1 for v in per_problem.values() if v["ratio"] is None)
    ratio, bound = _ratio(m_cand, m_ref, budget)
    reached = sum(cand[k]["evals_to_target"] is not None for k in pairs) / len(pairs)
    return {
        "reference": reference, "candidate": candidate, "pairs": len(pairs),
        "median_evals_candidate": m_cand, "median_evals_reference": m_ref,
        "reached_candidate": reached,
        "reached_reference": sum(ref[k]["evals_to_target"] is not None for k in pairs)
        / len(pairs),
        "reached_target_met": reached >= 2 / 3,
        "ratio": ratio, "ratio_is_upper_bound": bound,
        "evals_target_met": ratio is not None and ratio <= 0.5,
        "problems_neither_reaches": ties,
        "problems_at_half_or_better": wins,
        "per_problem": per_problem,
        "hv_ratio_at_budget_median": median_or_none(hv),
        "hv_ratio_at_budget_min": min(hv) if hv else None,
        "hv_target_met": bool(hv) and statistics.median(hv) >= 0.98,
        "budget": budget,
    }


def _ratio(a: float, b: float, budget: int) -> tuple[float | None, bool]:
    """(candidate / reference evaluations, whether that is an upper bound).

    A reference that never got within 1% needed more than ``budget`` trials, so the ratio is
    at most ``a / budget``; when neither got there the ratio is unknown (None).
    """
    if math.isinf(a) and math.isinf(b):
        return None, False
    if math.isinf(a):
        return math.inf, False
    if math.isinf(b):
        return a / budget, True
    return (a / b if b > 0 else None), False


__all__ = ["BUDGETS", "TOLERANCE", "censored_median", "run_scores", "summarize"]
