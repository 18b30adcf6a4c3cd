"""Predicted vs measured: how far a fast evaluator (simulator) is from a real one (GPU).

Two sources of pairs:

* two studies over the same space, one scored by the simulator and one by the measuring
  evaluator: trials are joined on their full config (context + parameters);
* one study whose trials report both ``M`` and ``predicted_M`` metrics (a screening
  evaluator that keeps the model's prediction next to the measurement).

Besides the usual percentage errors, the ranking errors matter most for search: a simulator
that is off by 20 % but orders configs correctly still finds the best config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner._readonly_storage import TrialRow
from tuner.analysis._common import as_config_json_key

PREDICTED_PREFIX = "predicted_"


@dataclass(frozen=True)
class Pair:
    key: str  # the joined config (canonical JSON) or the trial number as text
    predicted_number: int
    measured_number: int
    predicted: float
    measured: float

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted - self.measured) / self.measured


@dataclass(frozen=True)
class MetricFidelity:
    """Error statistics of one metric over its pairs.

    ``spearman``/``kendall`` are rank correlations (1: same order). ``top1_match`` says whether
    the config the simulator ranks best is also best measured; ``topk_overlap`` is the share of
    the measured top-k (k = ``top_k``) inside the predicted top-k.
    """

    metric: str
    direction: str
    pairs: list[Pair]
    mean_abs_error_pct: float
    max_abs_error_pct: float
    mean_error_pct: float  # signed: > 0 means the prediction is too high on average
    spearman: float | None
    kendall: float | None
    top1_match: bool | None
    top_k: int
    topk_overlap: float | None


def _stats(metric: str, direction: str, pairs: list[Pair], top_k: int) -> MetricFidelity:
    usable = [p for p in pairs if p.measured != 0 and math.isfinite(p.predicted)
              and math.isfinite(p.measured)]
    errs = np.array([p.error_pct for p in usable]) if usable else np.zeros(0)
    spearman = kendall = None
    top1 = None
    overlap = None
    if len(usable) >= 3:
        from scipy import stats

        pred = np.array([p.predicted for p in usable])
        meas = np.array([p.measured for p in usable])
        if np.ptp(pred) > 0 and np.ptp(meas) > 0:
            spearman = float(stats.spearmanr(pred, meas).statistic)
            kendall = float(stats.kendalltau(pred, meas).statistic)
        sign = 1.0 if direction == "minimize" else -1.0
        order_p = np.argsort(sign * pred, kind="stable")
        order_m = np.argsort(sign * meas, kind="stable")
        top1 = bool(meas[order_p[0]] == meas[order_m[0]])
        k = min(top_k, len(usable))
        overlap = len(set(order_p[:k]) & set(order_m[:k])) / k
    return MetricFidelity(
        metric, direction, usable,
        float(np.mean(np.abs(errs))) if len(errs) else math.nan,
        float(np.max(np.abs(errs))) if len(errs) else math.nan,
        float(np.mean(errs)) if len(errs) else math.nan, spearman, kendall, top1,
        top_k, overlap)


@dataclass(frozen=True)
class FidelityReport:
    source: str  # "two studies" | "one study"
    matched: int  # configs (or trials) with both a prediction and a measurement
    unmatched_predicted: int
    unmatched_measured: int
    metrics: list[MetricFidelity]


def _ok(rows: Sequence[TrialRow]) -> list[TrialRow]:
    return [r for r in rows if r.state == "COMPLETE" and r.status == "ok"]


def fidelity_between(predicted: Sequence[TrialRow], predicted_configs: Mapping[int, Any],
                     measured: Sequence[TrialRow], measured_configs: Mapping[int, Any],
                     directions: Mapping[str, str], metrics: Sequence[str] | None = None,
                     top_k: int = 5) -> FidelityReport:
    """Join two studies on config and compare every metric both report.

    Args:
        predicted, measured: trial rows of the two studies.
        predicted_configs, measured_configs: trial_id -> config (from the storage).
        directions: metric -> "minimize" | "maximize" (for the top-k checks).
        metrics: restrict to these metrics.
        top_k: size of the top-k overlap check.
    """
    def index(rows: Sequence[TrialRow], configs: Mapping[int, Any]) -> dict[str, TrialRow]:
        out: dict[str, TrialRow] = {}
        for r in _ok(rows):  # first ok trial per config (later ones are cache hits)
            cfg = configs.get(r.trial_id)
            key = as_config_json_key(cfg if isinstance(cfg, dict) else r.params)
            out.setdefault(key, r)
        return out

    p_idx, m_idx = index(predicted, predicted_configs), index(measured, measured_configs)
    keys = [k for k in p_idx if k in m_idx]
    names = metrics or sorted({m for k in keys for m in p_idx[k].metrics}
                              & {m for k in keys for m in m_idx[k].metrics})
    out = []
    for m in names:
        pairs = [Pair(k, p_idx[k].number, m_idx[k].number, float(p_idx[k].metrics[m]),
                      float(m_idx[k].metrics[m])) for k in keys
                 if m in p_idx[k].metrics and m in m_idx[k].metrics]
        if pairs:
            out.append(_stats(m, directions.get(m, "minimize"), pairs, top_k))
    return FidelityReport("two studies", len(keys), len(p_idx) - len(keys),
                          len(m_idx) - len(keys), out)


def fidelity_within(rows: Sequence[TrialRow], directions: Mapping[str, str],
                    top_k: int = 5) -> FidelityReport:
    """Pairs ``predicted_M`` / ``M`` reported by the same trials."""
    ok = _ok(rows)
    names = sorted({k[len(PREDICTED_PREFIX):] for r in ok for k in r.metrics
                    if k.startswith(PREDICTED_PREFIX)})
    out = []
    matched = set()
    for m in names:
        pairs = []
        for r in ok:
            pv, mv = r.metrics.get(PREDICTED_PREFIX + m), r.metrics.get(m)
            if pv is not None and mv is not None:
                pairs.append(Pair(str(r.number), r.number, r.number, float(pv), float(mv)))
                matched.add(r.number)
        if pairs:
            out.append(_stats(m, directions.get(m, "minimize"), pairs, top_k))
    return FidelityReport("one study", len(matched), 0, 0, out)


def ladder_rounds(rounds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per round of a study's fidelity ladder (its ``tuner.fidelity`` attribute):
    how many configs were measured (and how many of them ``explore`` chose) and the screen's
    error on them, in percent."""
    out = []
    for r in rounds:
        row: dict[str, Any] = {"round": r.get("number"), "measured": len(r.get("measured", [])),
                               "spread": len(r.get("spread", []))}
        for metric, err in sorted((r.get("error") or {}).items()):
            row[f"{metric} |error| %"] = round(100.0 * float(err), 1)
        out.append(row)
    return out


def has_predictions(rows: Sequence[TrialRow]) -> bool:
    return any(k.startswith(PREDICTED_PREFIX) for r in rows for k in r.metrics)
