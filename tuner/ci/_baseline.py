"""The CI job's inputs and the points it carries from run to run.

A *baseline* (``tuner-ci-baseline/1``, written by ``--update-baseline``) and a *report*
(``tuner-ci-report/1``, ``report.json``) share the keys the next run reads: ``objectives``,
``best`` (``params`` and one value per objective), ``pareto`` and ``top`` (the next run's
warm start). Both are checked here enough to compare against, with one-line errors naming the
file.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from tuner._errors import BadInput

BASELINE_SCHEMA = "tuner-ci-baseline/1"
REPORT_SCHEMA = "tuner-ci-report/1"
#: previous front configs evaluated first by default
DEFAULT_WARM_START = 8


def parse_budget(text: str) -> tuple[int | None, float | None]:
    """``200`` -> 200 trials; ``90s`` / ``30m`` / ``2h`` -> wall time in seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not m:
        raise BadInput("--budget", f"{text!r} is not a trial count (200) or a duration "
                       "(90s, 30m, 2h)")
    number, unit = float(m.group(1)), m.group(2)
    if number <= 0:
        raise BadInput("--budget", f"{text!r} must be > 0")
    if not unit:
        if number != int(number):
            raise BadInput("--budget", f"{text!r}: a trial count is a whole number")
        return int(number), None
    return None, number * {"s": 1, "m": 60, "h": 3600}[unit]


def load_baseline(path: Path) -> dict[str, Any]:
    """A baseline (or a previous report.json), checked enough to compare against."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BadInput("--baseline", f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadInput("--baseline", f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})"
                       ) from None
    if not isinstance(data, dict):
        raise BadInput("--baseline", f"{path}: must be a JSON object")
    for key in ("objectives", "best"):
        if key not in data:
            raise BadInput("--baseline", f"{path}: missing key {key!r} (write one with "
                           "tuner ci ... --update-baseline)")
    objs = data["objectives"]
    if not isinstance(objs, list) or not objs or not all(
            isinstance(o, dict) and isinstance(o.get("metric"), str)
            and o.get("direction") in ("maximize", "minimize") for o in objs):
        raise BadInput("--baseline", f"{path}: 'objectives' must be a list of "
                       "{{metric, direction: maximize|minimize}}")
    best = data["best"]
    if not isinstance(best, dict) or not isinstance(best.get("params"), dict) or not \
            isinstance(best.get("values"), list) or len(best["values"]) != len(objs) or not \
            all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in best["values"]):
        raise BadInput("--baseline", f"{path}: 'best' must hold 'params' and one finite "
                       "number per objective in 'values'")
    for key in ("pareto", "top"):
        if not isinstance(data.get(key, []), list):
            raise BadInput("--baseline", f"{path}: {key!r} must be a list")
    return data


def point(t: Any) -> dict[str, Any]:
    """One stored trial as a baseline/report point."""
    ua = t.user_attrs
    return {"trial": t.number, "params": dict(t.params),
            "config": ua.get("config", dict(t.params)), "metrics": ua.get("metrics", {}),
            "values": list(t.values) if t.values else None}


def warm_start_points(source: dict[str, Any] | None, space: Any, k: int
                      ) -> list[dict[str, Any]]:
    """Up to ``k`` distinct parameter sets of ``source`` (best, front, top) that the current
    space still contains."""
    if not source or k <= 0:
        return []
    points = ([source.get("best")] + list(source.get("pareto") or [])
              + list(source.get("top") or []))
    out: list[dict[str, Any]] = []
    for p in points:
        params = p.get("params") if isinstance(p, dict) else None
        if params and params not in out and space.contains(params):
            out.append(params)
        if len(out) >= k:
            break
    return out


def best_front_top(res: Any, top: int = 20
                   ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """The best trial on the first objective, the Pareto front, and the ``top`` best distinct
    feasible configs on the first objective (the next run's warm start)."""
    from tuner._space import params_key

    front = res.pareto()
    if not front:
        return None, [], []
    sign = 1.0 if res.directions[0] == "maximize" else -1.0
    best = max(front, key=lambda t: sign * t.values[0])
    ranked, seen = [], set()
    for t in sorted(res.feasible(), key=lambda t: -sign * t.values[0]):
        key = params_key(t.params)
        if key not in seen:
            seen.add(key)
            ranked.append(point(t))
        if len(ranked) >= top:
            break
    return point(best), [point(t) for t in front], ranked


__all__ = ["BASELINE_SCHEMA", "DEFAULT_WARM_START", "REPORT_SCHEMA", "best_front_top",
           "load_baseline", "parse_budget", "point", "warm_start_points"]
