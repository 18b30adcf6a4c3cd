"""One study: Pareto front, convergence, parallel coordinates, importances, feasibility,
trials, and picking/exporting configs."""

from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st

import tuner.analysis as A
from tuner.analysis._importance import MAX_TRIALS
from tuner.dashboard import _data as D
from tuner.dashboard import _plots as P
from tuner.dashboard import _widgets as W

url = D.storage_url()
name = W.pick_study(url)
if name is None:
    st.stop()
sd = D.load_study(url, name)
if sd is None:
    st.error(f"Study {name!r} is no longer in the storage.")
    st.stop()
live = W.live_settings()
objs = list(sd.objectives)
rows = sd.rows


# -- header ------------------------------------------------------------------------------
summary = next((s for s in D.summaries(url) if s.info.name == name), None)
state = A.study_state(summary) if summary else "-"
st.title(name)
st.caption(" · ".join((
    W.STATE_BADGE.get(state, state), f"domain **{sd.info.attr('domain', '-')}**",
    f"evaluator **{sd.info.attr('evaluator', '-')}**",
    f"sampler **{sd.info.attr('sampler', '-')}**",
    "objectives " + ", ".join(W.objective_label(o) for o in objs))))
front_view: A.ParetoView = sd.memo("front", A.pareto_view, tuple(objs), tuple(objs))
conv: A.Convergence = sd.memo("conv", A.convergence, tuple(objs))
counts: dict[str, int] = sd.memo("counts", A.outcome_counts)
target = sd.info.attr("trials_target")
m = st.columns(6)
m[0].metric("trials", f"{len(rows)}" + (f" / {target}" if target else ""))
m[1].metric("feasible", counts.get("feasible", 0))
m[2].metric("violate a constraint", counts.get("violates constraint", 0))
m[3].metric("infeasible", counts.get("infeasible", 0))
m[4].metric("failed", counts.get("failed", 0))
if len(objs) > 1:
    m[5].metric("Pareto configs", len(front_view.front),
                help=f"hypervolume {conv.hypervolume[-1]:.4g}" if conv.hypervolume else None)
else:
    best = conv.best[objs[0].metric][-1] if conv.numbers else None
    m[5].metric(f"best {objs[0].metric}", "–" if best is None else f"{best:.5g}")
if sd.info.attr("sweep"):  # an exhaustive sweep stores its front, its best and a sample
    from tuner._sweep import sweep_note

    st.info(sweep_note(sd.info.attr("sweep")))
with st.expander("Study file, constraints and fingerprint"):
    st.json({"spec": sd.info.attr("spec"), "constraints": sd.info.attr("constraints"),
             "fingerprint": sd.info.attr("fingerprint"), "state": sd.info.attr("state")},
            expanded=False)

if not rows:
    st.info("No trials yet." + (" Waiting for the first one…" if live else ""))
    W.live_refresh(sd, live)
    st.stop()

selected: set[int] = st.session_state.setdefault(f"selected::{name}", set())
by_number = {r.number: r for r in rows}
metrics = sd.metrics
params = sd.params


def direction_of(metric: str) -> str:
    return A.guess_direction(metric, objs)


def axis(metric: str) -> A.Objective:
    for o in objs:
        if o.metric == metric:
            return o
    return A.Objective(metric, direction_of(metric))


def metric_label(metric: str) -> str:
    return f"{metric} {axis(metric).arrow}"


tabs = st.tabs(["Pareto front", "Convergence", "Parallel coordinates", "Importance",
                "Feasibility", "Trials", "Pick & export"],
               key="tab", on_change="rerun", bind="query-params")


# -- Pareto ------------------------------------------------------------------------------
def pareto_tab() -> None:
    if len(metrics) < 2:
        st.info("This study reports a single metric, so there is no trade-off to plot: see "
                "Convergence for its progress and Trials for the ranking.")
        return
    c = st.columns([2, 2, 2, 2])
    # the objectives by default; the keys carry the study, so another study's choice (kept
    # in the session) does not become this one's default
    ideal = [o.metric for o in objs if o.metric in metrics]
    ideal += [m for m in metrics if m not in ideal]
    x = c[0].selectbox("x axis", metrics, index=metrics.index(ideal[0]),
                       format_func=metric_label, key=f"px::{name}")
    y = c[1].selectbox("y axis", metrics, index=metrics.index(ideal[1]),
                       format_func=metric_label, key=f"py::{name}")
    z_options = ["(2D)"] + metrics
    z_default = z_options.index(ideal[2]) if len(objs) >= 3 and len(ideal) > 2 else 0
    z = c[2].selectbox("z axis", z_options, index=z_default,
                       format_func=lambda v: v if v == "(2D)" else metric_label(v),
                       key=f"pz::{name}")
    show_bad = c[3].checkbox("show trials that are not feasible", value=False, key="pbad")
    log_x = c[3].checkbox("log x", key="plogx")
    log_y = c[3].checkbox("log y", key="plogy")
    chosen = [x, y] + ([] if z == "(2D)" else [z])
    if len(set(chosen)) < len(chosen):
        st.warning("Choose different metrics for the axes.")
        return
    axes = tuple(axis(mm) for mm in chosen)
    view: A.ParetoView = sd.memo("front", A.pareto_view, axes, tuple(objs))
    others: list = []
    if show_bad:
        allv: A.ParetoView = sd.memo("front_all", A.pareto_view, axes, tuple(objs), False)
        others = [(r, c) for r, c in zip(allv.rows, allv.coords) if not r.feasible]
    not_obj = [a for a in axes if a.metric not in {o.metric for o in objs}]
    if not_obj:
        st.caption("Not objectives of this study; assumed directions: " + ", ".join(
            f"{a.metric} {a.direction}" for a in not_obj))
    if not view.rows:
        st.warning("No feasible trial reports these metrics yet.")
        return
    fig = P.pareto_figure(view, others, log_axes=(log_x, log_y))
    event = st.plotly_chart(fig, key="pareto_chart", on_select="rerun",
                            selection_mode=("points", "box", "lasso"),
                            config={"displaylogo": False})
    picked = _selected_points(event)
    if picked:
        selected.update(picked)
        st.success(f"{len(picked)} trials added to the export selection "
                   f"({len(selected)} selected; see *Pick & export*).")
    hidden = ", ".join(f"{v} {k}" for k, v in view.excluded.items())
    st.caption(f"{len(view.rows)} feasible trials plotted" + (f" ({hidden} not shown)"
                                                              if hidden else "")
               + ". Drag a box or lasso to select trials for export. The star marks the "
               "knee: the front point nearest the ideal point after scaling each axis.")
    domains = sd.info.attr("param_domains")
    if isinstance(domains, dict) and domains:
        _domain_breakdown(domains, tuple(view.front_numbers))
    st.subheader("Front")
    recs, _ = sd.memo("records", A.trial_records, tuple(objs), tuple(view.front_numbers))
    pos = {r["number"]: r for r in recs}
    front_recs = [pos[n] for n in view.front_numbers if n in pos]
    cols = ["number", *chosen, *(f"param:{p}" for p in params)]
    picked_rows = W.records_table(front_recs, cols, key="front_table")
    if picked_rows:
        number = front_recs[picked_rows[0]]["number"]
    elif view.knee is not None:
        number = view.rows[view.knee].number
        st.caption("Showing the knee trial; select a row to see another.")
    else:
        return
    W.trial_detail(sd, by_number[number])


def _domain_breakdown(domains: dict[str, str], front: tuple[int, ...]) -> None:
    """Per objective, how much each domain's choices moved it (tuner.analysis._domains)."""
    st.subheader("Which domain moved each objective")
    parts: list[A.DomainBreakdown] = sd.memo(
        "domains", lambda rs, d, f: A.domain_breakdown(rs, dict(d), objs, f),
        tuple(sorted(domains.items())), front)
    names = sorted(set(domains.values()))
    table = [{"objective": b.objective, "trials": b.n_trials,
              **{f"{d} (variance)": f"{100 * b.shares.get(d, 0.0):.0f}%" for d in names},
              **{f"{d} (front)": f"{100 * b.front_moves.get(d, 0.0):.0f}%" for d in names}}
             for b in parts]
    st.dataframe(table, hide_index=True, key="domain_table")
    st.caption("variance: share of the objective's variance over feasible trials that each "
               "domain's parameters explain one at a time (bias-corrected correlation ratio, "
               "summed per domain); front: share of the change between neighbouring front "
               "points carried by the domains whose parameters differ between them.")


def _selected_points(event: Any) -> list[int]:
    try:
        points = event.selection.points
    except AttributeError:
        return []
    out = []
    for p in points:
        cd = p.get("customdata")
        if isinstance(cd, list):
            cd = cd[0] if cd else None
        if isinstance(cd, (int, float)):
            out.append(int(cd))
    return out


# -- Convergence -------------------------------------------------------------------------
def convergence_tab() -> None:
    st.plotly_chart(P.convergence_figure(conv), key="conv_chart")
    if conv.hypervolume is not None:
        st.plotly_chart(P.hypervolume_figure([(name, conv.numbers, conv.hypervolume)],
                                             conv.reference), key="hv_chart")
    n95 = conv.trials_to_reach(0.95)
    if n95:
        what = "hypervolume" if conv.hypervolume is not None else "improvement"
        st.caption(f"Reached 95 % of its final {what} after {n95} of {len(conv.numbers)} "
                   "finished trials.")
    st.plotly_chart(P.feasible_share_figure(conv), key="share_chart")


# -- Parallel coordinates ----------------------------------------------------------------
def parallel_tab() -> None:
    c = st.columns([3, 3, 2, 2])
    always = [p for p in params if all(p in r.params for r in rows if r.feasible)]
    ps = c[0].multiselect("parameters", params, default=(always or params)[:10],
                          key=f"pc_params::{name}")
    ms = c[1].multiselect("metrics", metrics, default=[o.metric for o in objs
                                                       if o.metric in metrics],
                          key=f"pc_metrics::{name}")
    which = c[2].radio("trials", ["feasible", "Pareto front", "all finished"], key="pc_which")
    color = c[3].selectbox("colour by", ms or ["(none)"], key=f"pc_color::{name}")
    if which == "feasible":
        subset = [r for r in rows if r.feasible]
    elif which == "Pareto front":
        subset = [by_number[n] for n in front_view.front_numbers]
    else:
        subset = [r for r in rows if r.state in ("COMPLETE", "FAIL", "PRUNED")]
    if not subset or not (ps or ms):
        st.info("Nothing to draw: choose parameters/metrics, or wait for feasible trials.")
        return
    axes_list = A.parallel_axes(subset, ps, ms, objs)
    color_axis = next((a for a in axes_list if a.label == color), None)
    st.plotly_chart(P.parallel_figure(axes_list, color_axis), key="pc_chart")
    st.caption(f"{len(subset)} trials. Drag along an axis to filter; categories are drawn "
               "as evenly spaced ticks.")


# -- Importance --------------------------------------------------------------------------
def importance_tab() -> None:
    targets = [o.metric for o in objs] + [mm for mm in metrics if mm not in
                                          {o.metric for o in objs}] + ["feasibility"]
    target = st.selectbox("explain", targets, key=f"imp_target::{name}",
                          format_func=lambda t: "feasibility (why configs fail or are "
                          "infeasible)" if t == "feasibility" else metric_label(t))
    dists = sd.distributions()
    if not dists:
        st.info("No parameters recorded.")
        return
    with st.spinner("fitting fANOVA…"):
        imps: A.Importances = sd.memo("imp", lambda rs, t: A.param_importances(
            rs, dists, t, objs), target)
    if imps.n_trials < 2 or not imps.importances:
        st.info("Not enough trials with different results to estimate importances yet.")
        return
    st.plotly_chart(P.importance_figure(imps), key="imp_chart")
    note = (f"fANOVA (Hutter et al. 2014, Optuna's implementation) on {imps.n_trials} "
            f"trials (at most {MAX_TRIALS}, sampled with a fixed seed).")
    if imps.left_out:
        note += (" Conditional parameters absent from some trials are left out: "
                 + ", ".join(imps.left_out) + ".")
    st.caption(note)


# -- Feasibility -------------------------------------------------------------------------
def feasibility_tab() -> None:
    fmap: A.FeasibilityMap = sd.memo("fmap", A.feasibility_map)
    st.plotly_chart(P.outcome_bar(fmap.counts), key="fe_bar")
    if not fmap.cells:
        st.info("No parameters recorded.")
        return
    st.plotly_chart(P.feasibility_heatmap(fmap), key="fe_heat")
    st.subheader("Reasons")
    if fmap.reasons:
        st.dataframe([{"reason (numbers masked)": g.pattern, "outcome": g.outcome,
                       "trials": g.count, "example": g.example,
                       "more common with": ", ".join(f"{k} ({100 * a:.0f}% vs {100 * b:.0f}%)"
                                                     for k, a, b in g.drivers),
                       "e.g. trials": ", ".join(str(n) for n in g.numbers[:8])}
                      for g in fmap.reasons], hide_index=True, width="stretch")
        st.caption("‘More common with’: knob values whose share among these trials exceeds "
                   "their share among all finished trials (within vs overall).")
    else:
        st.success("Every finished trial is feasible.")
    c = st.columns(3)
    p = c[0].selectbox("one parameter", list(fmap.cells), key=f"fe_param::{name}")
    st.plotly_chart(P.param_outcome_bars(fmap.cells[p]), key="fe_param_chart")
    if len(fmap.cells) >= 2:
        px = c[1].selectbox("pair: x", list(fmap.cells), index=0, key=f"fe_px::{name}")
        py = c[2].selectbox("pair: y", list(fmap.cells), index=1, key=f"fe_py::{name}")
        if px != py:
            grid = sd.memo("grid", A.feasibility_grid, px, py)
            st.plotly_chart(P.grid_heatmap(grid), key="fe_grid")


# -- Trials ------------------------------------------------------------------------------
def trials_tab() -> None:
    recs, columns = sd.memo("records", A.trial_records, tuple(objs),
                            tuple(front_view.front_numbers))
    c = st.columns([3, 1, 2, 2, 1, 1])
    outs = c[0].multiselect("outcome", [o for o in A.OUTCOMES if counts.get(o)] or
                            list(A.OUTCOMES), key="tt_out")
    front_only = c[1].checkbox("front only", key="tt_front")
    text = c[2].text_input("search reason / parameter values", key="tt_text")
    sortable = [cc for cc in columns if cc not in ("started",)]
    sort_by = c[3].selectbox("sort by", sortable, index=0, key=f"tt_sort::{name}",
                             format_func=lambda s: s.removeprefix("param:"))
    desc = c[4].toggle("desc", value=False, key="tt_desc")
    size = c[5].selectbox("rows", [25, 50, 100, 200], index=1, key="tt_size")
    with st.expander("Ranges on metrics"):
        ranges = []
        rc = st.columns(min(4, max(1, len(metrics))))
        for i, mm in enumerate(metrics[:8]):
            lo_hi = rc[i % len(rc)].text_input(f"{mm} (lo..hi)", key=f"tt_rng_{mm}",
                                                placeholder="e.g. 100..250")
            lo, hi = _parse_range(lo_hi)
            if lo is not None or hi is not None:
                ranges.append((mm, lo, hi))
    q = A.TrialQuery(outcomes=tuple(outs), front_only=front_only, text=text.strip(),
                     ranges=tuple(ranges), sort_by=sort_by, descending=desc, page=1,
                     page_size=size)
    _, total = A.query_records(recs, q)
    pages = max(1, -(-total // size))
    page = st.number_input(f"page (of {pages}; {total} matching trials)", 1, pages, 1,
                           key="tt_page")
    page_recs, _ = A.query_records(recs, dataclasses.replace(q, page=int(page)))
    show = ["number", "outcome", "on_front", *metrics[:6], *(f"param:{p}" for p in params),
            "reason", "eval_s", "cached"]
    picked = W.records_table(page_recs, show, key=f"trial_table_{page}")
    if picked:
        numbers = [page_recs[i]["number"] for i in picked]
        if st.button(f"Add {len(numbers)} selected to the export selection", key="tt_add"):
            selected.update(numbers)
            st.success(f"{len(selected)} trials selected for export.")
        W.trial_detail(sd, by_number[numbers[0]])
    else:
        number = st.number_input("open trial number", min_value=min(by_number),
                                 max_value=max(by_number), value=min(by_number), key="tt_open")
        if int(number) in by_number:
            W.trial_detail(sd, by_number[int(number)])


def _parse_range(text: str) -> tuple[float | None, float | None]:
    if ".." not in text:
        return None, None
    lo, _, hi = text.partition("..")
    try:
        return (float(lo) if lo.strip() else None, float(hi) if hi.strip() else None)
    except ValueError:
        st.warning(f"{text!r} is not 'low..high'")
        return None, None


# -- Pick & export -----------------------------------------------------------------------
def pick_tab() -> None:
    st.subheader("Best config under limits")
    st.caption("E.g. the highest throughput with p99 TTFT ≤ 500 ms and cost ≤ 0.4 USD/Mtok.")
    c = st.columns([2, 3])
    goal_metric = c[0].selectbox("optimize", metrics, key=f"pk_goal::{name}",
                                 format_func=metric_label)
    goal = axis(goal_metric)
    limits = []
    ranges = sd.memo("ranges", A.metric_ranges, tuple(metrics), tuple(objs))
    with c[1]:
        for i in range(3):
            lc = st.columns([3, 1, 2])
            lm = lc[0].selectbox(f"limit {i + 1}", ["(none)"] + metrics, key=f"pk_m{i}")
            if lm == "(none)":
                continue
            lo, med, hi = ranges.get(lm, (0.0, 0.0, 0.0))
            worse_is_higher = axis(lm).direction == "minimize"
            op = lc[1].selectbox("op", ["<=", ">=", "<", ">"], index=0 if worse_is_higher
                                 else 1, key=f"pk_op{i}_{lm}")
            val = lc[2].number_input("value", value=med, key=f"pk_v{i}_{lm}", format="%.6g",
                                     help=f"feasible trials range {lo:.4g} … {hi:.4g}")
            limits.append(A.Limit(lm, op, float(val)))
    best = A.pick_best(rows, goal, limits, objs, top=10)
    if not best:
        st.warning("No feasible trial meets these limits.")
    else:
        recs, _ = sd.memo("records", A.trial_records, tuple(objs),
                          tuple(front_view.front_numbers))
        pos = {r["number"]: r for r in recs}
        cols = ["number", goal_metric, *(lim.metric for lim in limits
                                         if lim.metric != goal_metric),
                *(f"param:{p}" for p in params)]
        cols = list(dict.fromkeys(cols))
        W.records_table([pos[r.number] for r in best], cols, key="pick_table",
                        selection=False)
        if st.button("Add these to the export selection", key="pk_add"):
            selected.update(r.number for r in best)
        W.trial_detail(sd, best[0])
    st.divider()
    st.subheader("Export configs")
    source = st.radio("which trials", ["Pareto front", f"selection ({len(selected)})",
                                       "trial numbers"], horizontal=True, key="ex_src")
    if source == "Pareto front":
        numbers = list(front_view.front_numbers)
    elif source.startswith("selection"):
        numbers = sorted(selected)
        if st.button("clear selection", key="ex_clear"):
            selected.clear()
            st.rerun()
    else:
        raw = st.text_input("trial numbers (comma separated)", key="ex_numbers")
        numbers = [int(t) for t in raw.replace(" ", "").split(",") if t.isdigit()]
    chosen = [by_number[n] for n in numbers if n in by_number]
    if not chosen:
        st.info("No trials chosen.")
        return
    fmt = st.radio("format", ["JSON lines (configs, for `tuner evaluate --configs-file`)",
                              "CSV", "JSON"], horizontal=True, key="ex_fmt")
    configs = {tid: a.get("config") for tid, a in sd.attrs(
        [r.trial_id for r in chosen]).items()}
    records = A.export_records(chosen, configs, objs)
    if fmt.startswith("JSON lines"):
        data, fname, mime = A.to_jsonl_configs(records), f"{name}-configs.jsonl", \
            "application/jsonl"
    elif fmt == "CSV":
        data, fname, mime = A.to_csv(records), f"{name}-trials.csv", "text/csv"
    else:
        data, fname, mime = A.to_json(records), f"{name}-trials.json", "application/json"
    st.download_button(f"Download {len(chosen)} trials", data, file_name=fname, mime=mime,
                       key="ex_dl")
    st.code("\n".join(data.splitlines()[:6]) + ("\n…" if data.count("\n") > 6 else ""),
            language="json" if fmt != "CSV" else None)


renderers = [pareto_tab, convergence_tab, parallel_tab, importance_tab, feasibility_tab,
             trials_tab, pick_tab]
for tab, render in zip(tabs, renderers):
    # lazy tabs: only the open one runs (``open`` is None when state is not tracked)
    if tab.open is not False:
        with tab:
            render()

W.live_refresh(sd, live)
