"""Dashboard pages (loaded by path through ``st.navigation`` in ``dashboard/app.py``)."""
