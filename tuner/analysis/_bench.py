"""Sampler benchmark results (``tuner bench`` JSON) as curves and a summary table.

Expected shape (extra keys are ignored)::

    {"problem": "kernel-gemm h100 4096^3", "metric": "regret",   # what the curves measure
     "direction": "minimize",                                    # of that metric
     "ground_truth": {"n_configs": 1536, "best": {...}},          # optional
     "runs": [{"sampler": "tpe", "seed": 0,
               "curve": [0.41, 0.22, ...]}]}                      # value after trial 1, 2, ...

``curve`` may also be ``{"trial": [...], "value": [...]}``; a run may carry ``final`` (a dict
of summary numbers, ``"inf"`` for a target never reached, shown as median columns).
``tuner bench --out DIR`` writes one such file per problem under ``DIR/curves/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuner._errors import BadInput


@dataclass(frozen=True)
class BenchRun:
    sampler: str
    seed: Any
    trials: list[int]
    values: list[float]
    final: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplerCurve:
    """Across seeds, per trial count: median and the min/max band of the metric."""

    sampler: str
    trials: list[int]
    median: list[float]
    low: list[float]
    high: list[float]
    seeds: int


@dataclass(frozen=True)
class BenchView:
    problem: str
    metric: str
    direction: str
    ground_truth: dict[str, Any]
    runs: list[BenchRun]
    curves: list[SamplerCurve]
    summary: list[dict[str, Any]]


def _curve(raw: Any) -> tuple[list[int], list[float]]:
    if isinstance(raw, Mapping):
        xs = [int(x) for x in raw.get("trial", raw.get("trials", []))]
        ys = [float(y) for y in raw.get("value", raw.get("values", []))]
        return xs, ys
    ys = [float(y) for y in raw]
    return list(range(1, len(ys) + 1)), ys


def parse_bench(data: Mapping[str, Any], source: str = "bench") -> BenchView:
    """Validate one benchmark result; ``BadInput`` names the missing/bad field."""
    if not isinstance(data, Mapping):
        raise BadInput(source, "must be a JSON object")
    runs_raw = data.get("runs")
    if not isinstance(runs_raw, list) or not runs_raw:
        raise BadInput(f"{source}: runs", "must be a non-empty list of {sampler, seed, curve}")
    runs = []
    for i, r in enumerate(runs_raw):
        if not isinstance(r, Mapping) or "sampler" not in r or "curve" not in r:
            raise BadInput(f"{source}: runs[{i}]", "needs 'sampler' and 'curve'")
        try:
            xs, ys = _curve(r["curve"])
        except (TypeError, ValueError) as exc:
            raise BadInput(f"{source}: runs[{i}].curve", f"not a list of numbers ({exc})"
                           ) from None
        runs.append(BenchRun(str(r["sampler"]), r.get("seed"), xs, ys,
                             dict(r.get("final") or {})))
    direction = str(data.get("direction", "minimize"))
    metric = str(data.get("metric", "value"))
    return _summarize(str(data.get("problem", source)), metric, direction,
                      dict(data.get("ground_truth") or {}), runs)


def _summarize(problem: str, metric: str, direction: str, truth: dict[str, Any],
               runs: list[BenchRun]) -> BenchView:
    curves, summary = [], []
    for sampler in dict.fromkeys(r.sampler for r in runs):
        mine = [r for r in runs if r.sampler == sampler]
        horizon = sorted({x for r in mine for x in r.trials})
        # a run's value at trial t is its last reported value at or before t
        grid = np.full((len(mine), len(horizon)), np.nan)
        for i, r in enumerate(mine):
            last = math.nan
            lookup = dict(zip(r.trials, r.values))
            for k, t in enumerate(horizon):
                if t in lookup:
                    last = lookup[t]
                grid[i, k] = last
        with np.errstate(all="ignore"):
            med = np.nanmedian(grid, axis=0)
            lo, hi = np.nanmin(grid, axis=0), np.nanmax(grid, axis=0)
        curves.append(SamplerCurve(sampler, horizon, med.tolist(), lo.tolist(), hi.tolist(),
                                   len(mine)))
        finals = [r.values[-1] for r in mine if r.values]
        row: dict[str, Any] = {"sampler": sampler, "seeds": len(mine),
                               "trials": max((max(r.trials, default=0) for r in mine),
                                             default=0),
                               f"final {metric} (median)": float(np.median(finals))
                               if finals else None,
                               f"final {metric} (worst)": (max(finals) if direction ==
                                                           "minimize" else min(finals))
                               if finals else None}
        keys = dict.fromkeys(k for r in mine for k in r.final)
        for k in keys:
            # "inf" marks a target never reached (JSON has no infinity)
            vals = [math.inf if r.final.get(k) == "inf" else r.final[k] for r in mine
                    if isinstance(r.final.get(k), (int, float)) or r.final.get(k) == "inf"]
            if vals:
                row[f"{k} (median)"] = float(np.median(vals))
        summary.append(row)
    return BenchView(problem, metric, direction, truth, runs, curves, summary)


def parse_summary(data: Mapping[str, Any], source: str = "bench.json") -> list[BenchView]:
    """The views of ``tuner bench``'s own ``bench.json`` (every run's scores at the budgets
    25/50/100/200: relative regret, or the hypervolume ratio for several objectives), one per
    problem. It carries no per-trial curves; the views draw the scores at those budgets."""
    scores = data.get("scores")
    if not isinstance(scores, list):
        raise BadInput(source, "must hold 'scores' (tuner bench's bench.json)")
    problems = {p.get("name"): p for p in data.get("problems") or [] if isinstance(p, Mapping)}
    runs: dict[str, list[BenchRun]] = {}
    kinds: dict[str, str] = {}
    for r in scores:
        if not isinstance(r, Mapping) or r.get("error") or not isinstance(r.get("at"), Mapping):
            continue
        at = sorted((int(k), v) for k, v in r["at"].items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool))
        if not at:
            continue
        final = {"evals_to_1pct": "inf" if r.get("evals_to_target") is None
                 else r["evals_to_target"], "distinct_evaluations": r.get("distinct_evaluations")}
        runs.setdefault(r["problem"], []).append(BenchRun(
            str(r["sampler"]), r.get("seed"), [t for t, _ in at], [float(v) for _, v in at],
            final))
        kinds[r["problem"]] = str(r.get("kind", "regret"))
    views = []
    for name, rs in runs.items():
        p = problems.get(name, {})
        hv = kinds[name] == "hv_ratio"
        truth = {k: p[k] for k in ("n_valid", "n_feasible", "optimum", "front_size") if k in p}
        views.append(_summarize(name, "hv_ratio" if hv else "relative_regret",
                                "maximize" if hv else "minimize", truth, rs))
    return views


def bench_views(path: str | Path) -> list[BenchView]:
    """The views in one result file: a per-problem curves file, or ``bench.json``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput("bench", f"cannot read {path}: {exc}") from None
    if isinstance(data, Mapping) and "scores" in data and "runs" not in data:
        return parse_summary(data, path.name)
    return [parse_bench(data, path.name)]


def load_bench(path: str | Path) -> BenchView:
    return bench_views(path)[0]


def find_bench_files(folders: Sequence[str | Path]) -> list[Path]:
    """JSON files under ``folders`` (newest first) that look like benchmark results: curves
    files (``runs``) or ``tuner bench``'s summary (``scores``)."""
    out = []
    for folder in folders:
        p = Path(folder).expanduser()
        if p.is_dir():
            out += [f for f in p.rglob("*.json") if f.is_file()]
    out = sorted(set(out), key=lambda f: f.stat().st_mtime, reverse=True)
    good = []
    for f in out:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and (isinstance(data.get("runs"), list)
                                       or isinstance(data.get("scores"), list)):
            good.append(f)
    return good
