"""Sampler benchmark results written by ``tuner bench`` (JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

import tuner.analysis as A
from tuner._errors import BadInput
from tuner.dashboard import _data as D
from tuner.dashboard import _plots as P

st.title("Sampler benchmark")
folders = D.bench_folders()
files = A.find_bench_files(folders)
uploaded = st.file_uploader("or open a result file", type=["json"], key="bench_upload")
view: A.BenchView | None = None
try:
    views: list[A.BenchView] = []
    if uploaded is not None:
        data = json.loads(uploaded.getvalue().decode("utf-8"))
        views = (A.parse_summary(data, uploaded.name) if "scores" in data and "runs" not in data
                 else [A.parse_bench(data, uploaded.name)])
    elif files:
        choice = st.selectbox("result", files, format_func=lambda p: str(p), key="bench_file")
        views = A.bench_views(Path(choice))
    if len(views) > 1:  # tuner bench's bench.json: every problem in one file
        names = [v.problem for v in views]
        view = views[names.index(st.selectbox("problem", names, key="bench_problem"))]
    elif views:
        view = views[0]
except (BadInput, ValueError) as exc:
    st.error(str(exc))
if view is None:
    st.info("No benchmark results found in " + ", ".join(f"`{f}`" for f in folders)
            + ". Run `tuner bench` (or set TUNER_BENCH_DIR), or open a file above.")
    st.stop()

if view.ground_truth:
    st.caption("Ground truth: " + ", ".join(f"{k} = {v}" for k, v in view.ground_truth.items()
                                             if not isinstance(v, (dict, list))))
log_y = st.toggle("log scale", value=view.direction == "minimize", key="bench_log")
st.plotly_chart(P.bench_figure(view, log_y), key="bench_chart")
st.caption("Lines: median over seeds; bands: best to worst seed.")
st.dataframe(view.summary, hide_index=True, width="stretch")
