"""The read-only storage on a real PostgreSQL server: same rows, and writes are refused."""

from __future__ import annotations

import uuid

import optuna
import pytest
import sqlalchemy as sa

import tuner.analysis as A
from tuner._readonly_storage import ReadOnlyStorage, TrialCache
from tuner.benchmarks.synthetic_study import OBJECTIVES_3, write_study
from tuner.testing.postgres import pg_server_fixture

pytestmark = [pytest.mark.postgres]


pg = pg_server_fixture()


def test_postgres_reads_match_optuna_and_sessions_are_read_only(pg):
    url = pg.create_database(f"ro_{uuid.uuid4().hex[:10]}")
    write_study(url, "pg-study", 120, seed=4, objectives=OBJECTIVES_3)
    store = ReadOnlyStorage(url)
    info = store.study("pg-study")
    objs = A.study_objectives(info)
    rows = TrialCache(store, info.study_id, len(objs)).refresh()
    trials = optuna.load_study(study_name="pg-study", storage=url).get_trials(deepcopy=False)
    assert [(r.number, r.state, dict(r.params)) for r in rows] == [
        (t.number, t.state.name, t.params) for t in trials]
    assert [r.feasible for r in rows] == [t.user_attrs["feasible"] for t in trials]
    summary = store.summaries()[0]
    assert summary.n_trials == 120 and summary.feasible == sum(r.feasible for r in rows)
    assert A.pareto_view(rows, objs, objs).front
    with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE studies SET study_name = 'x'"))
    store.engine.dispose()
