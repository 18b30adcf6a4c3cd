"""Objectives, metric lookup and direction helpers shared by every analysis."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner._readonly_storage import StudyInfo, TrialRow
from tuner._record import OUTCOME_LABELS
from tuner._record import outcome as record_outcome


@dataclass(frozen=True)
class Objective:
    """A metric and the direction in which it is better."""

    metric: str
    direction: str  # "minimize" | "maximize"
    reference: float | None = None  # hypervolume reference value, when the study file gives one

    @property
    def arrow(self) -> str:
        return "↓" if self.direction == "minimize" else "↑"


def study_objectives(info: StudyInfo) -> list[Objective]:
    """The study's objectives from ``tuner.objectives``, else from Optuna's directions.

    A plain Optuna study (no ``tuner.*`` attributes) gets metric names ``value`` or
    ``value_0``, ``value_1``..., read from the trial values.
    """
    declared = info.attr("objectives")
    if isinstance(declared, list) and declared and len(declared) == len(info.directions or
                                                                        declared):
        return [Objective(str(o["metric"]), str(o["direction"]), o.get("reference"))
                for o in declared]
    if len(info.directions) == 1:
        return [Objective("value", info.directions[0])]
    return [Objective(f"value_{i}", d) for i, d in enumerate(info.directions)]


#: metric-name fragments whose direction is known (units in the name: smaller or larger is better)
_MAXIMIZE = ("tokens_per_s", "tflops", "mfu", "throughput", "goodput", "pct_of_peak",
             "accuracy", "score", "speedup", "tok_s", "req_s")
_MINIMIZE = ("_s", "_ms", "_us", "time", "latency", "memory", "gib", "cost", "usd", "drop",
             "bits", "loss", "error", "ttft", "tpot", "e2e", "size")


def guess_direction(metric: str, objectives: Sequence[Objective] = ()) -> str:
    """The direction of ``metric``: the study's own when it is an objective, else by its name.

    Throughput-like names (``tokens_per_s``, ``mfu``, ``goodput_req_s``) are maximized,
    time/memory/cost-like names minimized; unknown names default to ``minimize``.
    """
    for o in objectives:
        if o.metric == metric:
            return o.direction
    name = metric.lower()
    if any(k in name for k in _MAXIMIZE):
        return "maximize"
    if any(k in name for k in _MINIMIZE):
        return "minimize"
    return "minimize"


def metric_value(row: TrialRow, metric: str,
                 objectives: Sequence[Objective] = ()) -> float | None:
    """``metric`` of a trial: its reported metric, else the Optuna value of that objective.

    Values of trials that are not feasible are penalties, not measurements, so the fallback
    to Optuna values applies to feasible trials only.
    """
    v = row.metrics.get(metric)
    if v is None and row.feasible:
        for i, o in enumerate(objectives):
            if o.metric == metric and i < len(row.values):
                v = row.values[i]
                break
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def metric_matrix(rows: Sequence[TrialRow], metrics: Sequence[str],
                  objectives: Sequence[Objective] = ()) -> np.ndarray:
    """``len(rows) x len(metrics)`` floats, NaN where a trial lacks the metric."""
    out = np.full((len(rows), len(metrics)), np.nan)
    for i, r in enumerate(rows):
        for j, m in enumerate(metrics):
            v = metric_value(r, m, objectives)
            if v is not None:
                out[i, j] = v
    return out


def metric_names(rows: Iterable[TrialRow], objectives: Sequence[Objective] = ()) -> list[str]:
    """Objective metrics first, then every other numeric metric reported by any trial."""
    seen: dict[str, int] = {}
    for r in rows:
        for k, v in r.metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                seen[k] = seen.get(k, 0) + 1
    names = [o.metric for o in objectives]
    names += sorted((k for k in seen if k not in names), key=lambda k: (-seen[k], k))
    return names


def metric_ranges(rows: Sequence[TrialRow], metrics: Sequence[str],
                  objectives: Sequence[Objective] = ()) -> dict[str, tuple[float, float, float]]:
    """(min, median, max) of each metric over feasible trials (defaults for limit inputs)."""
    feas = [r for r in rows if r.feasible]
    mat = metric_matrix(feas, metrics, objectives)
    out = {}
    for j, m in enumerate(metrics):
        col = mat[:, j][~np.isnan(mat[:, j])] if len(feas) else np.zeros(0)
        if len(col):
            out[m] = (float(col.min()), float(np.median(col)), float(col.max()))
    return out


def param_names(rows: Iterable[TrialRow]) -> list[str]:
    """Parameter names in first-seen order."""
    names: dict[str, None] = {}
    for r in rows:
        for k in r.params:
            names.setdefault(k, None)
    return list(names)


def finished(rows: Iterable[TrialRow]) -> list[TrialRow]:
    return [r for r in rows if r.state in ("COMPLETE", "FAIL", "PRUNED")]


def outcome(row: TrialRow) -> str:
    """One of ``feasible``, ``violates constraint``, ``infeasible``, ``failed``, ``running``
    (``tuner._record.outcome``, as people read it)."""
    return OUTCOME_LABELS[record_outcome(row.state, row.status, row.feasible)]


OUTCOMES = tuple(OUTCOME_LABELS.values())  # feasible, violates constraint, ..., running


def outcome_counts(rows: Iterable[TrialRow]) -> dict[str, int]:
    """Trials per outcome, in ``OUTCOMES`` order, zero counts left out."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for r in rows:
        counts[outcome(r)] += 1
    return {k: v for k, v in counts.items() if v}


_NUMBER = re.compile(r"(?<![A-Za-z_\d.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def reason_pattern(reason: str) -> str:
    """The reason with its numbers replaced by ``#``, so that like reasons group together."""
    return _NUMBER.sub("#", reason.strip())


def split_reasons(reason: str | None) -> list[str]:
    """A trial's reasons (the runner joins several space constraints with ``; ``)."""
    if not reason:
        return []
    return [p.strip() for p in reason.split("; ") if p.strip()]


def format_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def as_config_json_key(config: Mapping[str, Any]) -> str:
    import json

    return json.dumps(dict(config), sort_keys=True, default=str, separators=(",", ":"))
