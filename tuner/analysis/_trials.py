"""Trial tables (filter, sort, page), trial details, reproduce commands and exports."""

from __future__ import annotations

import csv
import io
import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuner._readonly_storage import TrialRow
from tuner.analysis._common import Objective, metric_names, metric_value, outcome, param_names


def trial_records(rows: Sequence[TrialRow], objectives: Sequence[Objective],
                  front_numbers: Iterable[int] = ()) -> tuple[list[dict[str, Any]], list[str]]:
    """One flat dict per trial and the column order.

    Columns: number, outcome, on_front, the objectives, the parameters, other metrics,
    reason, eval_s, cached. Objective columns hold measured values (None for penalties).
    """
    front = set(front_numbers)
    params = param_names(rows)
    metrics = metric_names(rows, objectives)
    columns = ["number", "outcome", "on_front", *metrics,
               *(f"param:{p}" for p in params), "reason", "eval_s", "cached", "started"]
    out = []
    for r in rows:
        rec: dict[str, Any] = {"number": r.number, "outcome": outcome(r),
                               "on_front": r.number in front}
        for m in metrics:
            rec[m] = metric_value(r, m, objectives) if (r.feasible or m in r.metrics) else None
        for p in params:
            rec[f"param:{p}"] = r.params.get(p)
        rec.update(reason=r.reason, eval_s=r.eval_s, cached=r.cached,
                   started=r.datetime_start, _trial_id=r.trial_id)
        out.append(rec)
    return out, columns


@dataclass(frozen=True)
class TrialQuery:
    """A trial-table request: filters, one sort key, one page."""

    outcomes: tuple[str, ...] = ()  # empty: all
    front_only: bool = False
    text: str = ""  # substring of the reason or of any parameter value
    ranges: tuple[tuple[str, float | None, float | None], ...] = ()  # (column, low, high)
    equals: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (column, allowed values)
    sort_by: str = "number"
    descending: bool = False
    page: int = 1  # 1-based
    page_size: int = 50


def query_records(records: Sequence[Mapping[str, Any]], q: TrialQuery
                  ) -> tuple[list[Mapping[str, Any]], int]:
    """The page of ``records`` matching ``q`` and the number of matches."""
    sel: Iterable[Mapping[str, Any]] = records
    if q.outcomes:
        sel = (r for r in sel if r["outcome"] in q.outcomes)
    if q.front_only:
        sel = (r for r in sel if r["on_front"])
    if q.text:
        needle = q.text.lower()
        sel = (r for r in sel if needle in (r.get("reason") or "").lower() or any(
            needle in str(v).lower() for k, v in r.items() if k.startswith("param:")))
    for col, lo, hi in q.ranges:
        sel = (r for r in sel if r.get(col) is not None
               and (lo is None or r[col] >= lo) and (hi is None or r[col] <= hi))
    for col, allowed in q.equals:
        sel = (r for r in sel if r.get(col) in allowed)
    matched = list(sel)

    def key(r: Mapping[str, Any]) -> tuple:
        v = r.get(q.sort_by)
        missing = v is None
        # missing values last whatever the order; numbers before text in a mixed column
        present = not missing if q.descending else missing
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (present, 0, v, "")
        return (present, 1, 0, "" if v is None else str(v))

    matched.sort(key=key, reverse=q.descending)
    start = max(0, (q.page - 1) * q.page_size)
    return matched[start:start + q.page_size], len(matched)


def reproduce_command(evaluator: str, config: Mapping[str, Any],
                      options: Mapping[str, Any] | None = None) -> str:
    """The shell command that re-scores ``config`` alone: ``tuner evaluate EVAL --config JSON``.

    ``options`` (the study's evaluator options) are added as ``--options JSON`` when present.
    """
    cmd = ["tuner", "evaluate", evaluator, "--config",
           json.dumps(dict(config), sort_keys=True, separators=(",", ":"))]
    if options:
        cmd += ["--options", json.dumps(dict(options), sort_keys=True, separators=(",", ":"))]
    return shlex.join(cmd) + " --json"


@dataclass(frozen=True)
class TrialDetail:
    number: int
    outcome: str
    status: str
    feasible: bool
    reason: str | None
    params: dict[str, Any]
    metrics: dict[str, float]
    objectives: dict[str, float | None]
    config: dict[str, Any] | None
    artifacts: dict[str, Any]
    command: str | None
    eval_s: float | None
    cached: bool
    constraints: tuple[float, ...] | None


def trial_detail(row: TrialRow, attrs: Mapping[str, Any], objectives: Sequence[Objective],
                 evaluator: str | None, options: Mapping[str, Any] | None = None
                 ) -> TrialDetail:
    """Everything about one trial; ``attrs`` holds its ``config`` and ``artifacts``."""
    config = attrs.get("config") if isinstance(attrs.get("config"), dict) else None
    artifacts = attrs.get("artifacts") if isinstance(attrs.get("artifacts"), dict) else {}
    command = reproduce_command(evaluator, config, options) if (config is not None
                                                                and evaluator) else None
    return TrialDetail(row.number, outcome(row), row.status, row.feasible, row.reason,
                       dict(row.params), dict(row.metrics),
                       {o.metric: metric_value(row, o.metric, objectives) for o in objectives},
                       config, artifacts, command, row.eval_s, row.cached, row.constraints)


def export_records(rows: Sequence[TrialRow], configs: Mapping[int, Mapping[str, Any]],
                   objectives: Sequence[Objective]) -> list[dict[str, Any]]:
    """Selected trials with their full configs, in the given order (``configs`` by trial id)."""
    out = []
    for r in rows:
        out.append({"number": r.number, "outcome": outcome(r), "status": r.status,
                    "feasible": r.feasible,
                    "objectives": {o.metric: metric_value(r, o.metric, objectives)
                                   for o in objectives},
                    "metrics": dict(r.metrics), "reason": r.reason,
                    "config": dict(configs.get(r.trial_id) or r.params)})
    return out


def to_json(records: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(records), indent=2, default=str)


def to_jsonl_configs(records: Sequence[Mapping[str, Any]]) -> str:
    """One config per line: the input of ``tuner evaluate EVAL --configs-file F.jsonl``."""
    return "".join(json.dumps(r["config"], sort_keys=True, default=str) + "\n"
                   for r in records)


def to_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """Flat CSV: number, outcome, feasible, metric columns, then ``config.KEY`` columns."""
    metric_cols: dict[str, None] = {}
    config_cols: dict[str, None] = {}
    for r in records:
        for k in r["metrics"]:
            metric_cols.setdefault(k, None)
        for k in r["config"]:
            config_cols.setdefault(k, None)
    header = ["number", "outcome", "feasible", *metric_cols, *(f"config.{k}" for k in
                                                                 config_cols), "reason"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in records:
        cfg = r["config"]
        w.writerow([r["number"], r["outcome"], r["feasible"],
                    *(r["metrics"].get(k, "") for k in metric_cols),
                    *(json.dumps(cfg[k]) if isinstance(cfg.get(k), (dict, list))
                      else cfg.get(k, "") for k in config_cols), r.get("reason") or ""])
    return buf.getvalue()
