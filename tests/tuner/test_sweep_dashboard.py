"""The dashboard's study page says what a swept study's trials are (the sample as such)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import toy_study

from tuner._setup import StudySetup
from tuner._sweep import Sweep
from tuner.dashboard_launch import ENV_STORAGE, app_path
from tuner.spec import parse_spec

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

HERE = Path(__file__).resolve().parent


def test_study_page_shows_the_sweep_note(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH",
                                                                                 "")]))
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    spec = toy_study("swept", evaluator={"name": "sweep_toys:AnalyticalToy"},
                     sampler={"name": "exhaustive", "options": {"sample": 50}})
    del spec["budget"]
    summary = Sweep(StudySetup.build(parse_spec(spec)), url).run()
    scored = summary.attrs["counts"]["scored"]
    monkeypatch.setenv(ENV_STORAGE, url)
    at = AppTest.from_file(str(app_path()), default_timeout=120)
    at.query_params["study"] = "swept"
    at.run()
    at.switch_page("views/study.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    notes = [i.value for i in at.info]
    assert any("uniform random sample" in n and f"{scored:,} valid configs scored" in n
               and "of 50 configs" in n for n in notes), notes
