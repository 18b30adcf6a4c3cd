"""The read layer (and so the dashboard) reads constraints in both of Optuna's forms, for tuner
studies and plain Optuna ones; infeasible trials hold real values or none; running studies
come first in the overview; integer knobs are integer axes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import optuna
import pytest
from conftest import toy_study

import tuner.analysis as A
from tuner._readonly_storage import ReadOnlyStorage, StudyInfo, StudySummary, TrialCache
from tuner.runner import Runner
from tuner.spec import parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _rows(url: str, name: str):
    store = ReadOnlyStorage(url)
    info = store.study(name)
    rows = TrialCache(store, info.study_id, len(info.directions)).refresh()
    summary = next(s for s in store.summaries() if s.info.name == name)
    store.engine.dispose()
    return rows, summary


def _plain_study(url: str, name: str, list_form: bool) -> list[bool]:
    """A study written by Optuna alone (no tuner attributes): constraints as Optuna 5 writes
    them (named) or as Optuna 3/4 did (a list); returns each trial's feasibility."""
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name=name)
    feasible = []
    for i in range(8):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        value = 1.0 if i % 3 == 0 else -1.0
        if list_form:
            storage.set_trial_system_attr(trial._trial_id, "constraints", [value, -0.5])
        else:
            trial.set_constraint("c", value)
        study.tell(trial, x)
        feasible.append(value <= 0)
    storage.engine.dispose()
    return feasible


@pytest.mark.parametrize("list_form", [False, True], ids=["optuna5-named", "optuna4-list"])
def test_plain_optuna_constraints_are_read_in_either_form(tmp_path, list_form):
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    feasible = _plain_study(url, "plain", list_form)
    rows, summary = _rows(url, "plain")
    assert [r.feasible for r in rows] == feasible
    assert [r.status for r in rows] == ["ok" if f else "infeasible" for f in feasible]
    assert summary.feasible == sum(feasible)
    assert summary.statuses == {"ok": sum(feasible), "infeasible": len(feasible) - sum(feasible)}
    # the best feasible value ignores the infeasible trials
    best = min(r.values[0] for r in rows if r.feasible)
    assert summary.best[0][0] == pytest.approx(best)


def test_a_tuner_study_stores_both_forms_and_only_real_values(tmp_path):
    url = f"sqlite:///{tmp_path / 't.db'}"
    spec = toy_study(trials=40, sampler={"name": "random"},
                     constraints=[{"metric": "cost", "op": "<=", "value": 15}])
    Runner(parse_spec(spec), url, progress=False).run()
    trials = optuna.load_study(study_name="toy", storage=url).trials
    infeasible = [t for t in trials if t.user_attrs["status"] == "infeasible"]
    assert infeasible, "the toy space makes some"
    for t in trials:
        named = {k: v for k, v in t.system_attrs.items() if k.startswith("constraints:")}
        assert set(named) == {"constraints:feasible", "constraints:cost <= 15"}
        # Optuna 3/4's form: the same values, ``feasible`` first, then the study's constraints
        assert t.system_attrs["constraints"] == [named["constraints:feasible"],
                                                 named["constraints:cost <= 15"]]
        assert all(abs(v) < 1e6 for v in (t.values or [])), "no placeholder values"
    for t in infeasible:
        assert t.state.name == "PRUNED" and t.values is None
    # Optuna's own reading: every infeasible trial violates a constraint
    assert all(any(v > 0 for v in t.constraints.values()) for t in infeasible)
    rows, summary = _rows(url, "toy")
    by_number = {r.number: r for r in rows}
    for t in trials:
        assert by_number[t.number].feasible == t.user_attrs["feasible"]
        assert sorted(by_number[t.number].constraints) == sorted(
            v for k, v in t.system_attrs.items() if k.startswith("constraints:"))
    assert summary.feasible == sum(t.user_attrs["feasible"] for t in trials)


def test_exports_and_json_hold_real_values_or_none(tmp_path, capsys):
    from tuner.cli import main

    url = f"sqlite:///{tmp_path / 'e.db'}"
    Runner(parse_spec(toy_study(trials=30, sampler={"name": "random"})), url,
           progress=False).run()
    assert main(["export", "toy", "--storage", url, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    bad = [r for r in rows if r["status"] == "infeasible"]
    assert bad and all(r["values"] is None for r in bad)
    assert all(abs(v) < 1e6 for r in rows for v in r["values"] or [])
    assert main(["export", "toy", "--storage", url, "--format", "csv"]) == 0
    assert "1e+12" not in capsys.readouterr().out


def _summary(name: str, state: str | None, updated: float) -> StudySummary:
    attrs = {"tuner.state": state, "tuner.updated_at": updated} if state else {}
    return StudySummary(StudyInfo(1, name, ("minimize",), attrs), {"COMPLETE": 1}, {"ok": 1},
                        1, {}, None, datetime.fromtimestamp(updated, tz=UTC)
                        .replace(tzinfo=None))


def test_the_overview_lists_running_studies_first():
    now = time.time()
    rows = A.overview_rows([_summary("old", "finished", now - 50),
                            _summary("run-b", "running", now - 20),
                            _summary("new", "finished", now - 5),
                            _summary("stale", "running", now - 3600),
                            _summary("run-a", "running", now - 10)], now=now)
    assert [r["study"] for r in rows] == ["run-a", "run-b", "stale", "new", "old"]
    assert [r["state"] for r in rows][:3] == ["running", "running", "stale"]


def test_integer_knobs_are_integer_axes(tmp_path):
    url = f"sqlite:///{tmp_path / 'i.db'}"
    Runner(parse_spec(toy_study(trials=12, sampler={"name": "random"})), url,
           progress=False).run()
    rows, _ = _rows(url, "toy")
    axes = {a.label: a for a in A.parallel_axes(rows, ["x", "mode"], ["score"])}
    assert axes["x"].integer and not axes["score"].integer and axes["mode"].ticks
    ticks = axes["x"].integer_ticks()
    assert ticks and all(isinstance(t, int) for t in ticks) and len(ticks) <= 9


def test_a_study_whose_runner_is_gone_reads_as_interrupted_not_running(tmp_path):
    import sqlalchemy as sa

    from tuner._study_lock import StudyLock

    url = f"sqlite:///{tmp_path / 'k.db'}"
    Runner(parse_spec(toy_study(trials=5)), url, progress=False).run()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # what a SIGKILLed runner leaves: "running", no lock row
        conn.execute(sa.text("UPDATE study_user_attributes SET value_json = '\"running\"' "
                             "WHERE key = 'tuner.state'"))
    _, summary = _rows(url, "toy")
    assert summary.runner_alive is False and A.study_state(summary) == "interrupted"
    with StudyLock(engine, "toy"):  # a live run holds the study: running it is
        _, summary = _rows(url, "toy")
        assert summary.runner_alive is True and A.study_state(summary) == "running"
    engine.dispose()
