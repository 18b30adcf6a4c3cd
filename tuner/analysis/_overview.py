"""One row per stored study for the overview table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tuner._readonly_storage import StudySummary
from tuner.analysis._common import study_objectives

#: a study marked running whose last update is older than this is probably dead
STALE_AFTER_S = 15 * 60


def study_state(s: StudySummary, now: float | None = None) -> str:
    """``running``, ``finished``, ``interrupted``, ``failed``, ``stale`` (running but silent)
    or ``-``. A study recorded as running whose ``tuner run`` no longer holds its lock was
    stopped without recording it (killed): interrupted."""
    state = s.info.attr("state")
    if state is None:
        return "running" if s.states.get("RUNNING") else "-"
    if state == "running" and s.runner_alive is False and s.info.attr("mode") != "shared":
        return "interrupted"
    if state == "running":
        updated = s.info.attr("updated_at")
        last = s.last_complete.replace(tzinfo=UTC).timestamp() if s.last_complete \
            else None
        newest = max(x for x in (updated, last, 0.0) if isinstance(x, (int, float)))
        if (now or time.time()) - newest > STALE_AFTER_S:
            return "stale"
    return str(state)


def overview_rows(summaries: Sequence[StudySummary], now: float | None = None
                  ) -> list[dict[str, Any]]:
    """Identity, state, counts by state/outcome and best feasible value per objective; running
    studies first, then by last update."""
    rows = []
    for s in summaries:
        objs = study_objectives(s.info)
        best = []
        for i, o in enumerate(objs):
            lo, hi = s.best.get(i, (None, None))
            v = lo if o.direction == "minimize" else hi
            best.append(f"{o.metric} {o.arrow} " + ("–" if v is None else f"{v:.4g}"))
        updated = s.info.attr("updated_at")
        rows.append({
            "study": s.info.name,
            "state": study_state(s, now),
            "domain": s.info.attr("domain"),
            "evaluator": s.info.attr("evaluator"),
            "sampler": s.info.attr("sampler"),
            "trials": s.n_trials,
            "target": s.info.attr("trials_target"),
            "feasible": s.feasible,
            "infeasible": s.statuses.get("infeasible", 0),
            "failed": s.statuses.get("failed", 0),
            "running": s.states.get("RUNNING", 0),
            "best": "; ".join(best),
            "objectives": ", ".join(f"{o.metric} {o.arrow}" for o in objs),
            "updated": datetime.fromtimestamp(updated, tz=UTC)
            if isinstance(updated, (int, float)) else
            (s.last_complete.replace(tzinfo=UTC) if s.last_complete else None),
        })
    # running studies first (then stale ones), each group most recently updated first
    first = {"running": 0, "stale": 1}
    never = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda r: (first.get(r["state"], 2), -(r["updated"] or never).timestamp()))
    return rows
