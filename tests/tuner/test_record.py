"""The trial record: judging a result, writing it, and reading outcomes back."""

from __future__ import annotations

import optuna
import pytest
from conftest import toy_study

from tuner import _record
from tuner._evaluator import EvalResult
from tuner._results import StudyResults
from tuner.runner import Runner
from tuner.spec import ConstraintSpec, ObjectiveSpec, parse_spec
from tuner.storage import load_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
OBJ = [ObjectiveSpec(metric="t", direction="minimize"),
       ObjectiveSpec(metric="m", direction="maximize")]
CON = [ConstraintSpec(metric="mem", op="<=", value=80)]


def test_judge_reads_a_result_against_objectives_and_constraints():
    ok = _record.judge(EvalResult.ok({"t": 2.0, "m": 5.0, "mem": 40.0}), OBJ, CON)
    assert (ok.status, ok.values, ok.feasible, ok.reason) == ("ok", [2.0, 5.0], True, None)
    assert ok.violations == {"feasible": 0.0, "mem <= 80": pytest.approx(-40.0)}
    over = _record.judge(EvalResult.ok({"t": 2.0, "m": 5.0, "mem": 90.0}), OBJ, CON)
    assert over.status == "ok" and not over.feasible
    assert over.reason == "violates mem <= 80 (got 90)"
    missing = _record.judge(EvalResult.ok({"t": 2.0}), OBJ, CON)
    assert missing.status == "failed" and "['m']" in missing.reason and missing.metrics == {}
    infeasible = _record.judge(EvalResult.infeasible("too big"), OBJ, CON)
    # the same constraint names on every trial (Optuna's GP sampler requires it); a metric
    # the result lacks cannot be shown to meet its limit
    assert infeasible.violations == {"feasible": 1.0, "mem <= 80": 1.0}
    assert infeasible.values is None


def test_write_stores_real_values_or_none():
    study = optuna.create_study(directions=["minimize", "maximize"])
    results = (EvalResult.ok({"t": 3.0, "m": 1.0, "mem": 1.0}), EvalResult.infeasible("no"),
               EvalResult.infeasible("out of memory", {"t": 9.0, "m": 2.0, "mem": 99.0}),
               EvalResult.failed("boom"))
    for result in results:
        trial = study.ask()
        frozen = _record.record(study, trial, {"x": 1}, result, OBJ, CON, False, 0.25)
        assert set(frozen.user_attrs) == set(_record.RECORD_KEYS)
    ok, no_values, with_values, failed = study.trials
    assert ok.values == [3.0, 1.0] and ok.constraints == {"feasible": 0.0, "mem <= 80": -79.0}
    # nothing made up: a config that could not run and reported nothing has no values
    assert no_values.state.name == "PRUNED" and no_values.values is None
    assert no_values.constraints == {"feasible": 1.0, "mem <= 80": 1.0}
    # one that reported its (predicted) metrics keeps them, and is infeasible by constraint
    assert with_values.state.name == "COMPLETE" and with_values.values == [9.0, 2.0]
    assert with_values.constraints == {"feasible": 1.0, "mem <= 80": 19.0}
    assert failed.state.name == "FAIL" and failed.values is None
    assert [_record.trial_outcome(t) for t in study.trials] == [
        "ok", "infeasible", "infeasible", "failed"]


def test_constraint_values_read_either_form_once():
    named = {"constraints:feasible": 0.0, "constraints:mem <= 80": 3.0}
    both = _record.with_list_form(named)
    assert both["constraints"] == [0.0, 3.0]
    assert _record.constraint_values(both) == {"feasible": 0.0, "mem <= 80": 3.0}
    assert _record.constraint_values({"constraints": [0.5, -1.0]}) == {"0": 0.5, "1": -1.0}
    assert _record.without_list_form(both) == named
    assert _record.without_list_form({"constraints": [1.0]}) == {"constraints": [1.0]}


@pytest.mark.parametrize("state,attrs,cons,expected", [
    ("COMPLETE", {"status": "ok", "feasible": True}, None, ("ok", True, "ok")),
    ("COMPLETE", {"status": "ok", "feasible": False}, None, ("ok", False, "violating")),
    ("COMPLETE", {"status": "infeasible", "feasible": False}, None,
     ("infeasible", False, "infeasible")),
    ("FAIL", {"status": "failed"}, None, ("failed", False, "failed")),
    ("RUNNING", {}, None, ("running", False, "running")),
    ("WAITING", {}, None, ("waiting", False, "running")),
    # a plain Optuna study: derived from its own fields
    ("COMPLETE", {}, [0.0], ("ok", True, "ok")),
    ("COMPLETE", {}, [1.0], ("infeasible", False, "infeasible")),
    ("FAIL", {}, None, ("failed", False, "failed")),
    ("PRUNED", {}, None, ("pruned", False, "failed")),
    ("PRUNED", {}, [1.0], ("infeasible", False, "infeasible")),
    ("PRUNED", {"status": "infeasible", "feasible": False}, None,
     ("infeasible", False, "infeasible")),
])
def test_one_outcome_vocabulary(state, attrs, cons, expected):
    status = _record.status_of(state, attrs, cons)
    feasible = _record.feasible_of(state, status, attrs, cons)
    assert (status, feasible, _record.outcome(state, status, feasible)) == expected
    assert _record.OUTCOME_LABELS[expected[2]]  # every outcome has a label


def test_run_summary_carries_the_stored_front():
    summary = Runner(parse_spec(toy_study(trials=30)), progress=False).run()
    stored = StudyResults.from_study(load_study("toy"))
    assert [t.number for t in summary.results.pareto()] == [t.number for t in stored.pareto()]
    assert summary.results.counts() == stored.counts()
