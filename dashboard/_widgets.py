"""Pieces shared by several pages: study picker, trial detail, live refresh."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import streamlit as st

import tuner.analysis as A
from tuner._readonly_storage import TrialRow
from tuner.analysis._common import format_value
from tuner.dashboard import _data as D

STATE_BADGE = {"running": ":green[:material/play_circle: running]",
               "finished": ":material/check_circle: finished",
               "interrupted": ":orange[:material/pause_circle: interrupted]",
               "stale": ":orange[:material/warning: stale (marked running, no recent trial)]",
               "-": "—"}
OUTCOME_BADGE = {"feasible": ":green[:material/check_circle:]",
                 "violates constraint": ":orange[:material/warning:]",
                 "infeasible": ":gray[:material/block:]", "failed": ":red[:material/error:]"}


def pick_study(url: str, key: str = "study", label: str = "Study") -> str | None:
    """A study chooser bound to the ``?study=`` query parameter (so pages can be linked)."""
    names = D.study_names(url)
    if not names:
        st.info("No studies in this storage yet. Run one with `tuner run STUDY.toml "
                f"--storage {D.storage(url).label}`.")
        return None
    wanted = st.query_params.get(key)
    if wanted and wanted not in names:  # a stale link or a typo: say so, then offer the list
        st.warning(f"There is no study {wanted!r} in this storage; choose one below.")
    index = names.index(wanted) if wanted in names else 0
    name = st.selectbox(label, names, index=index, key=f"pick_{key}")
    if st.query_params.get(key) != name:
        st.query_params[key] = name
    return name


def objective_label(o: A.Objective) -> str:
    return f"{o.metric} {o.arrow}"


def trial_detail(sd: D.StudyData, row: TrialRow) -> None:
    """Everything about one trial, with the command that reproduces it."""
    attrs = sd.attrs([row.trial_id]).get(row.trial_id, {})
    spec = sd.info.attr("spec") or {}
    options = (spec.get("evaluator") or {}).get("options") or None
    d = A.trial_detail(row, attrs, sd.objectives, sd.info.attr("evaluator"), options)
    badge = OUTCOME_BADGE.get(d.outcome, ":material/hourglass_top:")
    st.markdown(f"#### Trial {d.number} — {badge} {d.outcome}")
    if d.reason:
        st.markdown(f"**Reason:** {d.reason}")
    cols = st.columns(max(1, min(4, len(d.objectives))))
    for c, (m, v) in zip(cols * 4, d.objectives.items()):
        c.metric(m, "–" if v is None else f"{v:.5g}")
    left, right = st.columns(2)
    with left:
        st.markdown("**Config** (what the evaluator received)")
        st.json(d.config if d.config is not None else d.params, expanded=True)
    with right:
        st.markdown("**Metrics**")
        if d.metrics:
            st.dataframe([{"metric": k, "value": v} for k, v in d.metrics.items()],
                         hide_index=True, width="stretch")
        else:
            st.caption("no metrics reported")
        extra = {"status": d.status, "feasible": d.feasible, "cached": d.cached,
                 "eval_s": d.eval_s, "constraints (> 0: violated)": d.constraints}
        st.markdown("**Record**")
        st.json(extra, expanded=False)
        if d.artifacts:
            st.markdown("**Artifacts**")
            st.json(d.artifacts, expanded=False)
    if d.command:
        st.markdown("**Reproduce**")
        st.code(d.command, language="bash", wrap_lines=True)


def live_refresh(sd: D.StudyData, seconds: float | None) -> None:
    """Poll the study's change token; rerun the page only when a trial was added."""
    if not seconds:
        return
    url, sid = sd.url, sd.info.study_id
    seen = D._trial_cache(url, sid, len(sd.info.directions) or len(sd.objectives)).token

    @st.fragment(run_every=seconds)
    def _poll() -> None:
        if D.storage(url).change_token(sid) != seen:
            st.rerun()

    _poll()


def live_settings() -> float | None:
    """Sidebar toggle and interval for live refresh."""
    with st.sidebar:
        on = st.toggle("Live refresh", value=True, key="live_on",
                       help="Re-read the study when new trials arrive (one cheap query per tick)")
        secs = st.select_slider("every (s)", [2, 5, 10, 30, 60], value=5, key="live_s",
                                disabled=not on)
    return float(secs) if on else None


def records_table(records: Sequence[dict[str, Any]], columns: Sequence[str], key: str,
                  selection: bool = True, height: int | None = None) -> list[int]:
    """A dataframe of trial records; returns the selected rows' positions."""
    import pandas as pd

    def cell(c: str, v: Any) -> Any:
        # parameters may mix types (ints, strings, booleans): show them as text
        return format_value(v) if c.startswith("param:") and v is not None else v

    frame = pd.DataFrame([{c: cell(c, r.get(c)) for c in columns} for r in records],
                         columns=columns)
    config = {c: st.column_config.TextColumn(c.removeprefix("param:")) for c in columns
              if c.startswith("param:")}
    config["number"] = st.column_config.NumberColumn("trial", format="%d")
    config["on_front"] = st.column_config.CheckboxColumn("front")
    kw: dict[str, Any] = {}
    if height:
        kw["height"] = height
    if not selection:
        st.dataframe(frame, hide_index=True, column_config=config, width="stretch", **kw)
        return []
    state = st.dataframe(frame, hide_index=True, column_config=config, width="stretch",
                         on_select="rerun", selection_mode="multi-row", key=key, **kw)
    try:
        return list(state.selection.rows)
    except AttributeError:
        return []


def as_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
