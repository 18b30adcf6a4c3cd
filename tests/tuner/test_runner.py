import optuna
import pytest
from conftest import toy_study

from tuner import BadInput
from tuner._results import StudyResults
from tuner.runner import Runner
from tuner.spec import parse_spec
from tuner.storage import load_study


def run(spec_dict, **kw):
    return Runner(parse_spec(spec_dict), progress=False, **kw).run()


def stored(name):
    return StudyResults.from_study(load_study(name))


def test_study_runs_and_stores_every_trial():
    summary = run(toy_study(trials=40))
    res = stored("toy")
    assert summary.trials_total == len(res.trials) == 40
    assert sorted(t.number for t in res.trials) == list(range(40))
    assert res.attrs["tuner.state"] == "finished"
    assert res.attrs["tuner.evaluator"] == "tuner.testing.toys:ToyEvaluator"
    for t in res.trials:
        assert t.user_attrs["status"] in ("ok", "infeasible")
        assert t.user_attrs["config"]["max_sum"] == 30  # context travels with the config
    assert res.pareto(), "a feasible Pareto front"


def test_space_constraints_cost_no_evaluation():
    run(toy_study(trials=60, sampler={"name": "random"}))
    res = stored("toy")
    by_space = [t for t in res.trials if "exceeds max_sum" in (t.user_attrs["reason"] or "")]
    assert by_space, "random sampling over x,y in 0..20 must hit x + y > 30"
    for t in by_space:
        assert t.user_attrs["status"] == "infeasible"
        assert t.user_attrs["eval_s"] == 0.0 and t.constraints["feasible"] > 0


def test_evaluator_infeasible_result_is_recorded_with_reason():
    spec = toy_study(trials=5, sampler={"name": "grid", "options": {"shuffle": False}})
    spec["space"]["params"] = {"x": {"fixed": 0}}
    run(spec)
    res = stored("toy")
    assert {t.user_attrs["reason"] for t in res.trials} == {
        "x = 0 is not allowed by the toy model"}


def test_duplicates_are_served_from_cache_and_resume_continues():
    # a 4-point space: most of 12 trials are repeats
    spec = toy_study(trials=12, sampler={"name": "random"})
    spec["space"]["params"] = {"x": {"choices": [13, 14]}, "y": {"choices": [6, 7]},
                               "mode": {"fixed": "b"}}
    s1 = run(spec)
    assert s1.evaluated <= 4 and s1.cached >= 8
    spec["budget"]["trials"] = 20
    s2 = run(spec)  # same storage, same name: resumes
    assert s2.trials_this_run == 8 and s2.evaluated == 0 and s2.cached == 8
    res = stored("toy")
    assert sorted(t.number for t in res.trials) == list(range(20))


def test_grid_visits_every_valid_config_once_then_stops():
    spec = toy_study(trials=1000, sampler={"name": "grid"})
    spec["space"]["context"] = {"max_sum": 20}
    spec["space"]["params"] = {"x": {"choices": [1, 2, 3]}, "y": {"choices": [18, 19]},
                               "mode": {"choices": ["a", "b"]}}
    summary = run(spec)
    # x + y <= 20 removes (2, 19), (3, 18), (3, 19) for each mode
    assert summary.trials_total == 6 and summary.stop_reason == "every valid config evaluated"


def test_metric_constraints_mark_trials_infeasible_for_the_front():
    spec = toy_study(trials=40, constraints=["cost <= 10"], sampler={"name": "random"})
    run(spec)
    res = stored("toy")
    assert all(t.user_attrs["metrics"]["cost"] <= 10 for t in res.feasible())
    bad = [t for t in res.trials if t.user_attrs["status"] == "ok"
           and not t.user_attrs["feasible"]]
    assert bad and all("violates cost <= 10" in t.user_attrs["reason"] for t in bad)
    assert all(t.constraints["cost <= 10"] > 0 for t in bad)


def test_study_is_readable_by_plain_optuna():
    run(toy_study(trials=10))
    study = optuna.load_study(study_name="toy", storage=optuna.storages.RDBStorage(
        __import__("os").environ["TUNER_STORAGE"]))
    assert len(study.trials) == 10 and study.best_trials


def test_wall_time_budget():
    spec = toy_study(trials=None)
    spec["budget"] = {"wall_time_s": 1.0}
    summary = run(spec)
    assert summary.stop_reason == "wall time reached" and summary.trials_total > 0


def test_changed_directions_on_existing_study_is_refused():
    run(toy_study(trials=3))
    spec = toy_study(trials=5)
    spec["objectives"][1]["direction"] = "maximize"
    with pytest.raises(BadInput, match=r"objectives: study 'toy' already holds trials for "
                                       r"objectives \[score maximize, cost minimize\]"):
        run(spec)


def test_unknown_objective_metric_lists_the_evaluators_metrics():
    spec = toy_study()
    spec["objectives"] = [{"metric": "speed", "direction": "maximize"}]
    with pytest.raises(BadInput, match=r"objectives\[0\]\.metric: unknown 'speed'.*valid: cost, "
                                       r"score"):
        run(spec)


def test_override_with_empty_range_is_bad_input():
    spec = toy_study()
    spec["space"]["params"] = {"x": {"low": 5, "high": 2}}
    with pytest.raises(BadInput, match=r"space.params.x: empty range: low 5 > high 2"):
        run(spec)


@pytest.mark.parametrize("change, field", [
    (lambda s: s["space"]["context"].update(max_sum=20), "space.context"),
    (lambda s: s.update(evaluator={"name": "tuner.testing.toys:FaultyEvaluator"}),
     "evaluator.name"),
    (lambda s: s["evaluator"].update(options={"trigger_x": 5}), "evaluator.options"),
    (lambda s: s.update(constraints=["cost <= 10"]), "constraints"),
    (lambda s: s["objectives"].reverse(), "objectives"),
])
def test_a_changed_problem_under_the_same_name_is_refused(change, field):
    run(toy_study(trials=4))
    spec = toy_study(trials=8)
    change(spec)
    with pytest.raises(BadInput) as exc:
        run(spec)
    msg = str(exc.value)
    assert msg.startswith(f"{field}: study 'toy' already holds trials for") and \
        "another study name, or --start-over" in msg, msg
    # the stored study is untouched; --start-over replaces it
    assert len(load_study("toy").trials) == 4
    summary = Runner(parse_spec(spec), progress=False, start_over=True).run()
    assert summary.trials_total == 8 and len(load_study("toy").trials) == 8


def test_budget_and_sampler_may_change_on_resume():
    run(toy_study(trials=4))
    summary = run(toy_study(trials=9, sampler={"name": "random"}))
    assert summary.trials_total == 9


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
def test_a_resumed_run_proposes_new_configs_not_the_first_run_again(sampler):
    first = run(toy_study(trials=8, sampler={"name": sampler}))
    assert first.trials_this_run == 8
    seen = {tuple(sorted(t.params.items())) for t in load_study("toy").trials}
    second = run(toy_study(trials=16, sampler={"name": sampler}))
    new = [tuple(sorted(t.params.items())) for t in load_study("toy").trials[8:]]
    # the same seed would replay the first 8 proposals: 8 cache hits
    assert second.trials_this_run == 8 and second.cached <= 2, second.counts
    assert len(set(new) - seen) >= 6


def test_space_exhaustion_counts_this_studys_repeats_not_the_shared_cache():
    # study A evaluates 520 configs; B (same grid order) then finds each of them in the shared
    # cache, which is not B proposing its own configs again: B runs to its budget
    space = {"domain": "tuner.testing.toys:ToySpace", "context": {"max_sum": 40}}
    run(toy_study("a", trials=520, space=space, sampler={"name": "grid"}))
    b = run(toy_study("b", trials=510, space=space, sampler={"name": "grid"}))
    assert b.stop_reason == "budget reached" and b.trials_this_run == 510, b.stop_reason
    # every result from A's evaluations (x = 0 ones are infeasible results, also reused)
    assert b.evaluated == 0 and b.cached + b.infeasible == 510, b.counts
