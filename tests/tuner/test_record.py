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
    assert ok.violations == {"mem <= 80": pytest.approx(-40.0)}
    over = _record.judge(EvalResult.ok({"t": 2.0, "m": 5.0, "mem": 90.0}), OBJ, CON)
    assert over.status == "ok" and not over.feasible
    assert over.reason == "violates mem <= 80 (got 90)"
    missing = _record.judge(EvalResult.ok({"t": 2.0}), OBJ, CON)
    assert missing.status == "failed" and "['m']" in missing.reason and missing.metrics == {}
    infeasible = _record.judge(EvalResult.infeasible("too big"), OBJ, CON)
    assert infeasible.violations == {"feasible": 1.0} and infeasible.values is None


def test_penalty_is_the_worst_feasible_value_per_objective():
    p = _record.Penalty(["minimize", "maximize"])
    assert p.values() == [1e12, -1e12]
    p.update([2.0, 5.0])
    p.update([1.0, 7.0])
    assert p.values() == [2.0, 5.0]


def test_write_tells_penalty_values_and_constraints():
    study = optuna.create_study(directions=["minimize", "maximize"])
    penalty = _record.Penalty(["minimize", "maximize"])
    for result in (EvalResult.ok({"t": 3.0, "m": 1.0, "mem": 1.0}),
                   EvalResult.infeasible("no"), EvalResult.failed("boom")):
        trial = study.ask()
        frozen = _record.record(study, trial, {"x": 1}, result, OBJ, CON, penalty, False, 0.25)
        assert set(frozen.user_attrs) == set(_record.RECORD_KEYS)
    ok, infeasible, failed = study.trials
    assert ok.values == [3.0, 1.0] and ok.constraints == {"mem <= 80": -79.0}
    assert infeasible.values == [3.0, 1.0], "told the worst feasible values"
    assert infeasible.constraints == {"feasible": 1.0}
    assert failed.state.name == "FAIL" and failed.values is None
    assert [_record.trial_outcome(t) for t in study.trials] == ["ok", "infeasible", "failed"]


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
