"""Predicted vs measured (simulator vs real) where a study has both, with the error; for a
fidelity-ladder study also the screen's error round by round."""

from __future__ import annotations

import streamlit as st

import tuner.analysis as A
from tuner.dashboard import _data as D
from tuner.dashboard import _plots as P

url = D.storage_url()
st.title("Fidelity: predicted vs measured")
names = D.study_names(url)
if not names:
    st.info("No studies in this storage yet.")
    st.stop()

mode = st.radio("pairs from", ["two studies over the same configs",
                               "one study reporting predicted_* next to measured metrics"],
                horizontal=True, key="fid_mode")
report: A.FidelityReport | None = None
if mode.startswith("two"):
    infos = {n: D.study_info(url, n) for n in names}
    sims = [n for n, i in infos.items() if i and str(i.attr("evaluator", "")).endswith("-sim")]
    real = [n for n in names if n not in sims]
    c = st.columns(2)
    p_name = c[0].selectbox("predicted by (simulator study)", names,
                            index=names.index(sims[0]) if sims else 0, key="fid_pred")
    p_domain = infos[p_name].attr("domain") if infos.get(p_name) else None
    # the measured study: same domain, an evaluator that is not a simulator
    m_default = next((n for n in real if n != p_name and infos[n] is not None
                      and infos[n].attr("domain") == p_domain),
                     next((n for n in names if n != p_name), p_name))
    m_name = c[1].selectbox("measured by (real evaluator study)", names,
                            index=names.index(m_default), key="fid_meas")
    if p_name == m_name:
        st.info("Choose two different studies.")
        st.stop()
    pd_, md_ = D.load_study(url, p_name), D.load_study(url, m_name)
    if pd_ is None or md_ is None:
        st.stop()
    directions = {mm: A.guess_direction(mm, md_.objectives) for mm in md_.metrics}
    report = A.fidelity_between(pd_.rows, pd_.configs(), md_.rows, md_.configs(), directions)
    st.caption(f"{report.matched} configs scored by both; {report.unmatched_predicted} only "
               f"predicted, {report.unmatched_measured} only measured. Trials are joined on "
               "their full config (context + parameters).")
else:
    cands = [n for n in names if (d := D.load_study(url, n)) is not None
             and A.has_predictions(d.rows)]
    if not cands:
        st.info("No study reports `predicted_<metric>` next to `<metric>`.")
        st.stop()
    n = st.selectbox("study", cands, key="fid_one")
    sd = D.load_study(url, n)
    assert sd is not None
    report = A.fidelity_within(sd.rows, {mm: A.guess_direction(mm, sd.objectives)
                                         for mm in sd.metrics})
    rounds = sd.info.attr("fidelity")
    if rounds:
        st.subheader("Fidelity ladder: the screen's error round by round")
        st.dataframe(A.ladder_rounds(rounds), hide_index=True, width="stretch")
        st.caption("Each round measures the screen's best configs not yet measured; its error "
                   "is the median |predicted / measured − 1| over them, predicted with the "
                   "profile in effect when they were chosen (before that round's "
                   "recalibration).")

if not report or not report.metrics:
    st.warning("No metric has both a prediction and a measurement for the same config.")
    st.stop()
st.dataframe([{"metric": f.metric, "configs": len(f.pairs),
               "mean |error| %": round(f.mean_abs_error_pct, 2),
               "max |error| %": round(f.max_abs_error_pct, 2),
               "bias %": round(f.mean_error_pct, 2),
               "Spearman ρ": None if f.spearman is None else round(f.spearman, 3),
               "Kendall τ": None if f.kendall is None else round(f.kendall, 3),
               "best config agrees": f.top1_match,
               f"top-{f.top_k} overlap": None if f.topk_overlap is None
               else f"{100 * f.topk_overlap:.0f} %"} for f in report.metrics],
             hide_index=True, width="stretch")
st.caption("Error = (predicted − measured) / measured. Rank agreement matters most for search: "
           "a simulator that is off by a constant factor still ranks configs correctly.")
metric = st.selectbox("metric", [f.metric for f in report.metrics], key="fid_metric")
mf = next(f for f in report.metrics if f.metric == metric)
c = st.columns([3, 2])
c[0].plotly_chart(P.fidelity_figure(mf), key="fid_scatter")
c[1].plotly_chart(P.error_histogram(mf), key="fid_hist")
