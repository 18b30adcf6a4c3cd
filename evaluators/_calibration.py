"""Fit a stack profile's named constants to measured runs (``tuner calibrate``).

Measured runs are ``{"config": {...}, "metrics": {name: value}}`` rows (any subset of the
evaluator's metric names). The fit moves only the constants the profile's ``[fit]`` table
allows, within their bounds, minimising the squared log error of every reported metric plus a
Gaussian prior at each constant's shipped value: with measurements repeatable to ~5% and the
bounds spanning about two prior standard deviations, moving a constant across its whole range
costs as much as a 10% miss on one metric, so a handful of rows moves constants only as far as
they agree on.
Leave-one-out error, before and after, says whether it generalises: each row is predicted by
a fit on the others. The written profile refines the shipped one and carries the leave-one-out
log-residual spread per metric, which gives every later prediction its uncertainty band.

An evaluator takes part by providing ``profile_domain``, ``stack_profile(config)`` (the
profile a config runs under) and ``evaluate_with(config, profile)``.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner import BadInput, EvalResult
from tuner.evaluators._profiles import Profile, with_constants

#: prior residual per bound width: measurement noise (~0.05 in log) over the prior's
#: standard deviation (half the bound width)
PRIOR_WEIGHT = 0.1


@dataclass(frozen=True)
class Row:
    config: Mapping[str, Any]
    metrics: Mapping[str, float]
    where: str


@dataclass
class Report:
    profile: Profile
    fitted: dict[str, float]
    shipped: dict[str, float]
    rows: int
    metrics: list[str]
    #: metric -> median absolute relative error, leave-one-out
    loo_before: dict[str, float] = field(default_factory=dict)
    loo_after: dict[str, float] = field(default_factory=dict)
    #: metric -> log-space residual standard deviation, leave-one-out (the band)
    spread: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"profile {self.profile.name}: {self.rows} measured runs, metrics "
               f"{', '.join(self.metrics)}"]
        for k, v in self.fitted.items():
            out.append(f"  {k}: {self.shipped[k]:.6g} -> {v:.6g}")
        out.append("  leave-one-out median |error|   shipped   calibrated")
        for m in self.metrics:
            out.append(f"    {m:<28} {100 * self.loo_before[m]:7.1f}%  "
                       f"{100 * self.loo_after[m]:9.1f}%")
        return out


def read_rows(path: str | Path, field_: str = "--measurements") -> list[Row]:
    """JSON lines ``{"config": {...}, "metrics": {...}}``; errors name the line."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(field_, f"{path}: no such file")
    rows = []
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(field_, f"{path}: not a text file (expected JSON lines)") from None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p.name} line {i}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(field_, f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict) \
                or not isinstance(data.get("metrics"), dict):
            raise BadInput(field_, f"{where}: expected {{\"config\": {{...}}, \"metrics\": "
                           "{...}}")
        metrics = {}
        for k, v in data["metrics"].items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 \
                    or not math.isfinite(v):
                raise BadInput(field_, f"{where}: metric {k!r} = {v!r} must be a finite "
                               "number >= 0")
            if v > 0:  # a zero (no goodput, no price) is measured but has no log error
                metrics[k] = float(v)
        if not metrics:
            raise BadInput(field_, f"{where}: no positive metrics")
        rows.append(Row(data["config"], metrics, where))
    if len(rows) < 2:
        raise BadInput(field_, f"{path}: {len(rows)} measured run(s); calibration needs at "
                       "least 2 (leave-one-out)")
    return rows


def _prediction(evaluator: Any, row: Row, profile: Profile) -> Mapping[str, float] | None:
    res: EvalResult = evaluator.evaluate_with(row.config, profile)
    return res.metrics if res.status.value == "ok" else None


def _residuals(evaluator: Any, rows: Sequence[Row], base: Profile, names: list[str],
               metrics: list[str]) -> Callable[[Any], list[float]]:
    widths = [base.fit_bounds[n][1] - base.fit_bounds[n][0] for n in names]
    start = [float(base.constants[n]) for n in names]

    def f(x: Any) -> list[float]:
        prof = with_constants(base, dict(zip(names, map(float, x))))
        out = []
        for row in rows:
            pred = _prediction(evaluator, row, prof)
            for m in metrics:
                if m in row.metrics:
                    p = pred.get(m) if pred else None
                    # a config the profile calls infeasible counts as a large miss
                    out.append(math.log(p / row.metrics[m]) if p and p > 0 else 3.0)
        out += [PRIOR_WEIGHT * (xi - s) / w for xi, s, w in zip(x, start, widths)]
        return out
    return f


def coordinate_search(residuals: Callable[[Any], list[float]], x0: Sequence[float],
                      lo: Sequence[float], hi: Sequence[float], points: int = 7,
                      passes: int = 3) -> list[float]:
    """Where a least-squares fit starts. A simulator's outputs move in steps (discrete events,
    whole batches), so finite differences near a start point are often zero and a gradient
    method stops there: take each constant in turn to the best of a grid across its bracket,
    then narrow the bracket around it. ``x0`` lies within [``lo``, ``hi``]."""
    def cost(x: list[float]) -> float:
        return sum(r * r for r in residuals(x))

    x = list(x0)
    best = cost(x)
    brackets = list(zip(lo, hi))
    for _ in range(passes):
        for i, (a, b) in enumerate(brackets):
            step = (b - a) / (points - 1)
            for v in (a + step * j for j in range(points)):
                trial = [*x[:i], v, *x[i + 1:]]
                c = cost(trial)
                if c < best:
                    best, x = c, trial
            brackets[i] = (max(lo[i], x[i] - step), min(hi[i], x[i] + step))
    return x


def _fit(evaluator: Any, rows: Sequence[Row], base: Profile, names: list[str],
         metrics: list[str], x0: list[float], search: bool = True) -> list[float]:
    """``search``: start from a grid search (the full fit); the leave-one-out refits start
    from the full fit's constants and only polish them, to keep calibration quick."""
    from scipy.optimize import least_squares

    lo = [base.fit_bounds[n][0] for n in names]
    hi = [base.fit_bounds[n][1] for n in names]
    f = _residuals(evaluator, rows, base, names, metrics)
    x0 = [min(max(v, a), b) for v, a, b in zip(x0, lo, hi)]
    if search:
        x0 = coordinate_search(f, x0, lo, hi)
    res = least_squares(f, x0, bounds=(lo, hi),
                        x_scale=[b - a for a, b in zip(lo, hi)], diff_step=1e-3, max_nfev=200)
    return [float(v) for v in res.x]


def _setup(evaluator: Any, rows: Sequence[Row], constants: Sequence[str] | None
           ) -> tuple[Profile, list[str], list[str]]:
    """The shipped profile the rows ran under, the constants to fit, the metrics to use."""
    profiles = {evaluator.stack_profile(r.config).name: r.where for r in rows}
    if len(profiles) > 1:
        raise BadInput("--measurements", "rows run under different profiles ("
                       + ", ".join(f"{p} at {w}" for p, w in profiles.items())
                       + "); calibrate one stack at a time")
    base = evaluator.stack_profile(rows[0].config)
    names = list(constants or base.fit_bounds)
    for n in names:
        if n not in base.fit_bounds:
            raise BadInput("--constants", f"{n!r} is not a fittable constant of {base.name!r}; "
                           "fittable: " + ", ".join(base.fit_bounds))
    if not names:
        raise BadInput("--constants", f"profile {base.name!r} declares no fittable constants")
    # the metrics an evaluator says a fit should weigh (others restate them: a row's
    # throughput, total and per-GPU rates would otherwise count three times)
    known = set(getattr(evaluator, "calibration_metrics", ())
                or getattr(evaluator, "metrics", ()) or ())
    metrics = sorted({m for r in rows for m in r.metrics if not known or m in known})
    if not metrics:
        raise BadInput("--measurements", "no row reports a metric this evaluator is "
                       "calibrated on (" + ", ".join(sorted(known)) + ")")
    return base, names, metrics


def fit_profile(evaluator: Any, rows: Sequence[Row], start: Profile | None = None) -> Profile:
    """The shipped profile with its fittable constants fitted to ``rows`` (no leave-one-out;
    ``start``: where the search begins, e.g. the previous round's fit)."""
    base, names, metrics = _setup(evaluator, rows, None)
    x0 = [float((start or base).constants[n]) for n in names]
    return with_constants(base, dict(zip(names, _fit(evaluator, rows, base, names, metrics,
                                                     x0))))


def _errors(evaluator: Any, row: Row, profile: Profile, metrics: list[str]
            ) -> dict[str, float]:
    pred = _prediction(evaluator, row, profile) or {}
    return {m: (math.log(pred[m] / row.metrics[m]) if pred.get(m, 0) > 0 else math.inf)
            for m in metrics if m in row.metrics}


def calibrate(evaluator: Any, rows: Sequence[Row], constants: Sequence[str] | None = None
              ) -> Report:
    """Fit the profile the rows ran under, with leave-one-out errors before and after; rows
    of different stacks are refused."""
    base, names, metrics = _setup(evaluator, rows, constants)
    start = [float(base.constants[n]) for n in names]
    fitted = _fit(evaluator, rows, base, names, metrics, start)
    report = Report(with_constants(base, dict(zip(names, fitted))), dict(zip(names, fitted)),
                    dict(zip(names, start)), len(rows), metrics)
    for row in rows:  # a run the simulator cannot place under any fit says nothing about it
        res = evaluator.evaluate_with(row.config, report.profile)
        if res.status.value != "ok":
            raise BadInput("--measurements", f"{row.where}: {res.status.value} under the "
                           f"fitted profile too ({res.reason}); fix or drop the row")
    before: dict[str, list[float]] = {m: [] for m in metrics}
    after: dict[str, list[float]] = {m: [] for m in metrics}
    for i, row in enumerate(rows):
        others = [r for j, r in enumerate(rows) if j != i]
        x = _fit(evaluator, others, base, names, metrics, fitted, search=False)
        for m, e in _errors(evaluator, row, base, metrics).items():
            before[m].append(e)
        for m, e in _errors(evaluator, row, with_constants(base, dict(zip(names, x))),
                            metrics).items():
            after[m].append(e)

    def median_abs(errs: list[float]) -> float:
        rel = sorted(abs(math.expm1(e)) if math.isfinite(e) else math.inf for e in errs)
        return rel[len(rel) // 2] if rel else math.nan

    for m in metrics:
        report.loo_before[m] = median_abs(before[m])
        report.loo_after[m] = median_abs(after[m])
        finite = [e for e in after[m] if math.isfinite(e)]
        report.spread[m] = math.sqrt(sum(e * e for e in finite) / len(finite)) if finite \
            else math.inf
    return report


def write_profile(report: Report, path: str | Path, source: str) -> None:
    p = report.profile
    lines = [f"# Written by `tuner calibrate` on {datetime.date.today().isoformat()} from "
             f"{report.rows} measured runs ({source}).",
             f"base = {json.dumps(p.name)}",
             f"description = {json.dumps(p.description + ' (calibrated)')}", "", "[constants]"]
    lines += [f"{k} = {v!r}" for k, v in report.fitted.items()]
    lines += ["", "# leave-one-out log-space residual standard deviation per metric",
              "[uncertainty]"]
    lines += [f"{m} = {round(v, 6)!r}" for m, v in report.spread.items() if math.isfinite(v)]
    lines += ["", "[calibration]", f"rows = {report.rows}", f"source = {json.dumps(source)}"]
    lines += [f"loo_error_before_{m} = {round(report.loo_before[m], 6)!r}" for m in
              report.metrics if math.isfinite(report.loo_before[m])]
    lines += [f"loo_error_after_{m} = {round(report.loo_after[m], 6)!r}" for m in
              report.metrics if math.isfinite(report.loo_after[m])]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = ["Report", "Row", "calibrate", "fit_profile", "read_rows", "write_profile"]
