"""Two or more studies on the same axes: e.g. samplers, or before/after an engine upgrade."""

from __future__ import annotations

import streamlit as st

import tuner.analysis as A
from tuner.dashboard import _data as D
from tuner.dashboard import _plots as P

url = D.storage_url()
st.title("Compare studies")
names = D.study_names(url)
if len(names) < 2:
    st.info("Comparing needs at least two studies in the storage.")
    st.stop()

wanted = [n for n in st.query_params.get_all("studies") if n in names]
if not wanted:  # default: the largest group of studies with the same objectives
    groups: dict[tuple, list[str]] = {}
    for n in names:
        info = D.study_info(url, n)
        if info is not None:
            groups.setdefault(tuple(A.study_objectives(info)), []).append(n)
    best = max(groups.values(), key=len) if groups else names
    wanted = best[:2] if len(best) >= 2 else names[:2]
chosen = st.multiselect("studies", names, default=wanted, key="cmp_studies")
if len(chosen) < 2:
    st.info("Choose at least two studies.")
    st.stop()
st.query_params["studies"] = chosen

datas = [D.load_study(url, n) for n in chosen]
datas = [d for d in datas if d is not None]
runs = [A.StudyRun(d.info.name, d.objectives, d.rows, d.info.attr("sampler"),
                   d.info.attr("fingerprint")) for d in datas]
shared = A.shared_metrics(runs)
if not shared:
    st.warning("These studies share no metric.")
    st.stop()
first_objs = list(datas[0].objectives)


def as_axis(metric: str) -> A.Objective:
    for o in first_objs:
        if o.metric == metric:
            return o
    return A.Objective(metric, A.guess_direction(metric))


c = st.columns([3, 3, 3, 1])
x = c[0].selectbox("x axis", shared, index=0, key="cmp_x",
                   format_func=lambda m: f"{m} {as_axis(m).arrow}")
y_opts = ["(none)"] + [m for m in shared if m != x]
y = c[1].selectbox("y axis", y_opts, index=1 if len(y_opts) > 1 else 0, key="cmp_y",
                   format_func=lambda m: m if m == "(none)" else f"{m} {as_axis(m).arrow}")
z_opts = ["(2D)"] + [m for m in shared if m not in (x, y)]
z = c[2].selectbox("z axis", z_opts, index=0, key="cmp_z")
log_x = c[3].checkbox("log x", key="cmp_logx")
log_y = c[3].checkbox("log y", key="cmp_logy")
metrics = [x] + ([] if y == "(none)" else [y]) + ([] if z == "(2D)" else [z])
axes = tuple(as_axis(m) for m in metrics)
cmp = A.compare(runs, axes)

st.dataframe(cmp.summary, hide_index=True, width="stretch")
st.caption("Hypervolumes use one reference point for all studies (worst feasible value over "
           "all of them, pushed out by 10 % of the range), so they are comparable. "
           "‘Trials to 95 %’: trials each study needed to reach 95 % of its own final "
           "hypervolume (or improvement).")
if len(axes) >= 2:
    st.plotly_chart(P.compare_fronts_figure(cmp, (log_x, log_y)), key="cmp_fronts")
    hv = [(label, list(range(1, len(cv.numbers) + 1)), cv.hypervolume or [])
          for label, cv in zip(cmp.labels, cmp.convergence)]
    st.plotly_chart(P.hypervolume_figure(hv, cmp.reference), key="cmp_hv")
for a in axes:
    st.plotly_chart(P.compare_best_figure(cmp, a.metric), key=f"cmp_best_{a.metric}")
