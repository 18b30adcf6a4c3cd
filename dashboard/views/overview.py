"""Every study in the storage: state, domain, evaluator, sampler, counts, best values."""

from __future__ import annotations

import streamlit as st

import tuner.analysis as A
from tuner.dashboard import _data as D

url = D.storage_url()
st.title("Studies")


@st.fragment(run_every=D.SUMMARY_TTL_S * 2)
def overview() -> None:
    rows = A.overview_rows(D.summaries(url))
    if not rows:
        st.info("No studies in this storage yet. Start one with `tuner run STUDY.toml`.")
        return
    running = sum(r["state"] == "running" for r in rows)
    c = st.columns(4)
    c[0].metric("studies", len(rows))
    c[1].metric("running", running)
    c[2].metric("trials", sum(r["trials"] for r in rows))
    c[3].metric("feasible trials", sum(r["feasible"] for r in rows))
    for r in rows:
        r["link"] = f"study?study={r['study']}"  # names are [A-Za-z0-9._-]: URL-safe
    columns = ["link", "state", "best", "trials", "feasible", "infeasible", "failed", "running",
               "target", "domain", "evaluator", "sampler", "updated"]
    st.dataframe(
        [{k: r[k] for k in columns} for r in rows], hide_index=True, width="stretch",
        column_config={
            "link": st.column_config.LinkColumn("study", display_text=r"study\?study=(.*)"),
            "trials": st.column_config.ProgressColumn(
                "trials", format="%d", min_value=0,
                max_value=max(max(r["trials"] for r in rows), 1)),
            "best": st.column_config.TextColumn("best feasible", width="medium"),
            "updated": st.column_config.DatetimeColumn("updated (UTC)",
                                                       format="YYYY-MM-DD HH:mm:ss"),
        })
    st.caption("States: running / finished / interrupted as recorded by `tuner run`; *stale* "
               "means marked running without a new trial for 15 minutes. Best values are "
               "over feasible trials. Refreshes every few seconds.")


overview()
