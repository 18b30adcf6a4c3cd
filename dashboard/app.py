"""tuner dashboard: ``tuner dashboard [--storage URL]`` (or ``streamlit run dashboard/app.py``).

Read-only: the storage is opened with a read-only connection and nothing is ever written.
Pages render what ``tuner.analysis`` computes.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from tuner.dashboard import _data as D

HERE = Path(__file__).parent

st.set_page_config(page_title="tuner", page_icon=":material/insights:", layout="wide")

pages = [
    st.Page(HERE / "views/overview.py", title="Studies", icon=":material/table_view:",
            default=True),
    st.Page(HERE / "views/study.py", title="Study", icon=":material/insights:",
            url_path="study"),
    st.Page(HERE / "views/compare.py", title="Compare", icon=":material/compare_arrows:",
            url_path="compare"),
    st.Page(HERE / "views/fidelity.py", title="Fidelity", icon=":material/target:",
            url_path="fidelity"),
    st.Page(HERE / "views/bench.py", title="Sampler benchmark", icon=":material/speed:",
            url_path="bench"),
]
page = st.navigation(pages)

url = D.storage_url()
try:
    label = D.storage(url).label
except Exception as exc:  # a bad URL or a file that is not a storage: say so and stop
    st.error(f"Cannot open the storage: {exc}")
    st.stop()
with st.sidebar:
    st.caption(f"Storage (read-only): `{label}`")
page.run()
