"""Storage access and caching for the pages: what to re-read, and when.

* The storage handle and each study's incremental trial cache live for the server's lifetime
  (``st.cache_resource``); a rerun costs one aggregate query when the study did not change.
* The overview aggregates are cached for a few seconds (``st.cache_data`` with a TTL).
* Analysis results are cached per (study, trial-cache version, arguments), so widget
  interactions that do not change the data reuse them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import astuple
from pathlib import Path
from typing import Any

import streamlit as st

import tuner.analysis as A
from tuner._readonly_storage import ReadOnlyStorage, StudyInfo, StudySummary, TrialCache, TrialRow

ENV_STORAGE = "TUNER_DASHBOARD_STORAGE"
ENV_BENCH_DIR = "TUNER_BENCH_DIR"
SUMMARY_TTL_S = 3


def storage_url() -> str:
    """The storage given by ``tuner dashboard --storage`` (via the environment)."""
    url = os.environ.get(ENV_STORAGE)
    if url:
        return url
    from tuner.storage import storage_url as default_url

    return default_url(None, create=False)


@st.cache_resource(show_spinner=False)
def storage(url: str) -> ReadOnlyStorage:
    return ReadOnlyStorage(url)


@st.cache_data(ttl=SUMMARY_TTL_S, show_spinner=False)
def summaries(url: str) -> list[StudySummary]:
    return storage(url).summaries()


def study_names(url: str) -> list[str]:
    return [s.info.name for s in summaries(url)]


def study_info(url: str, name: str) -> StudyInfo | None:
    for s in summaries(url):
        if s.info.name == name:
            return s.info
    # a study created after the cached overview: ask the storage directly
    try:
        return storage(url).study(name)
    except Exception:
        return None


@st.cache_resource(max_entries=32, show_spinner=False)
def _trial_cache(url: str, study_id: int, n_objectives: int) -> TrialCache:
    return TrialCache(storage(url), study_id, n_objectives)


class StudyData:
    """One study's info, objectives and light trial rows, with memoized analyses."""

    def __init__(self, url: str, info: StudyInfo) -> None:
        self.url = url
        self.info = info
        self.objectives = tuple(A.study_objectives(info))
        cache = _trial_cache(url, info.study_id, len(info.directions) or len(self.objectives))
        self.rows: list[TrialRow] = cache.refresh()
        self.version = cache.version

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.url, self.info.study_id, self.version)

    def memo(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(rows, *args)`` cached per study version and (hashable) arguments."""
        return _memo(name, self.key, _freeze(args), fn, self.rows, args)

    @property
    def metrics(self) -> list[str]:
        return self.memo("metrics", lambda rows: A.metric_names(rows, self.objectives))

    @property
    def params(self) -> list[str]:
        return self.memo("params", A.param_names)

    def distributions(self) -> dict[str, Any]:
        return _distributions(self.url, self.info.study_id, self.version)

    def attrs(self, trial_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """``config``/``artifacts`` of a few trials (read on demand, cached)."""
        return _attrs(self.url, tuple(trial_ids))

    def configs(self) -> dict[int, Any]:
        return _configs(self.url, self.info.study_id, self.version)


def _freeze(args: Sequence[Any]) -> tuple:
    out = []
    for a in args:
        if isinstance(a, A.Objective):
            out.append(("objective", *astuple(a)))
        elif isinstance(a, (list, tuple)):
            out.append(_freeze(a))
        elif isinstance(a, dict):
            out.append(tuple(sorted((k, repr(v)) for k, v in a.items())))
        else:
            out.append(a)
    return tuple(out)


@st.cache_resource(max_entries=128, show_spinner=False)
def _memo(name: str, key: tuple, frozen_args: tuple, _fn: Callable[..., Any],
          _rows: list[TrialRow], _args: tuple) -> Any:
    return _fn(_rows, *_args)


@st.cache_resource(max_entries=32, show_spinner=False)
def _distributions(url: str, study_id: int, version: int) -> dict[str, Any]:
    return storage(url).param_distributions(study_id)


@st.cache_data(max_entries=256, show_spinner=False)
def _attrs(url: str, trial_ids: tuple[int, ...]) -> dict[int, dict[str, Any]]:
    return storage(url).trial_attrs(trial_ids)


@st.cache_resource(max_entries=8, show_spinner=False)
def _configs(url: str, study_id: int, version: int) -> dict[int, Any]:
    return storage(url).study_configs(study_id)


def load_study(url: str, name: str) -> StudyData | None:
    info = study_info(url, name)
    return StudyData(url, info) if info is not None else None


def bench_folders() -> list[str]:
    """Where ``tuner bench`` results are looked for: $TUNER_BENCH_DIR, its default ``--out``
    (bench-results), and the results shipped with tuner (``tuner/bench/results``)."""
    import tuner.bench

    folders = [os.environ[ENV_BENCH_DIR]] if os.environ.get(ENV_BENCH_DIR) else []
    shipped = str(Path(tuner.bench.__file__).resolve().parent / "results")
    return folders + ["bench-results", "reports/bench", "reports", shipped]
