import io
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import toy_study, write_toml
from sweep_toys import AnalyticalToy, BatchToy

from tuner import BadInput
from tuner._evaluator import EvalResult
from tuner._record import RECORD_KEYS
from tuner._setup import StudySetup
from tuner._space import Int
from tuner._sweep import ROLE_ATTR, SWEEP_ATTR, Sweep
from tuner._sweep_progress import SweepProgress
from tuner.runner import Runner
from tuner.samplers import SWEEP_DEFAULT_MAX_GRID, default_sampler
from tuner.spec import parse_spec
from tuner.storage import load_study
from tuner.testing.toys import ToyEvaluator, ToySpace

ROOT = Path(__file__).resolve().parents[2]
#: valid configs of the toy space with max_sum 30: x + y <= 30 on the 21 x 21 grid, x 3 modes
N_VALID = 3 * sum(1 for x in range(21) for y in range(21) if x + y <= 30)
HERE = Path(__file__).resolve().parent


def sweep_spec(name="sw", evaluator="sweep_toys:AnalyticalToy", **extra):
    extra.setdefault("sampler", {"name": "exhaustive"})
    spec = toy_study(name, evaluator={"name": evaluator}, **extra)
    del spec["budget"]
    return spec


def setup_of(spec_dict, sampler=None):
    return StudySetup.build(parse_spec(spec_dict), sampler)


def brute_force(max_sum=30):
    space = ToySpace({"max_sum": max_sum})
    ev = ToyEvaluator()
    rows = [(space.param_values(c), ev.evaluate(c)) for c in space.enumerate()]
    return rows


@pytest.fixture(autouse=True)
def importable_here(monkeypatch):
    """"sweep_toys:AnalyticalToy" for the registry, here and in the runner's processes."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(HERE),
                                                      os.environ.get("PYTHONPATH", "")]))


def test_sweep_scores_every_valid_config_and_stores_the_exact_optimum():
    summary = Sweep(setup_of(sweep_spec())).run()
    rows = brute_force()
    ok = [(v, r) for v, r in rows if r.status.value == "ok"]
    attrs = summary.attrs
    assert attrs["complete"] and not summary.interrupted
    assert attrs["counts"]["scored"] == len(rows) == N_VALID
    assert attrs["counts"]["feasible"] == len(ok)
    assert attrs["counts"]["infeasible"] == len(rows) - len(ok)
    best = max(ok, key=lambda x: x[1].metrics["score"])
    assert attrs["optimum"][0]["value"] == best[1].metrics["score"] == 105.0
    assert attrs["optimum"][0]["params"] == {"x": 14, "y": 6, "mode": "b"}
    study = load_study("sw")  # a plain Optuna study
    assert study.user_attrs[SWEEP_ATTR] == attrs
    assert study.user_attrs["tuner.sampler"] == "exhaustive"
    assert study.user_attrs["tuner.state"] == "finished"
    trials = study.get_trials()
    assert len(trials) == summary.stored == len({tuple(sorted(t.params.items()))
                                                 for t in trials})
    for t in trials:
        assert set(RECORD_KEYS) <= set(t.user_attrs) and t.user_attrs[ROLE_ATTR]
    roles = [r for t in trials for r in t.user_attrs[ROLE_ATTR]]
    assert roles.count("sample") == 200 and roles.count("best:score") == 10
    front = [t for t in trials if "front" in t.user_attrs[ROLE_ATTR]]
    assert len(front) == attrs["front_size"] == attrs["stored"]["front"]
    # the stored front is the true front of the whole space
    from tuner._pareto import pareto_mask

    vals = [[r.metrics["score"], r.metrics["cost"]] for _, r in ok]
    true = {tuple(v) for v, m in zip(vals, pareto_mask(vals, ["maximize", "minimize"])) if m}
    assert {tuple(t.values) for t in front} == true
    infeasible = [t for t in trials if t.user_attrs["status"] == "infeasible"]
    assert infeasible and all(t.constraints["feasible"] > 0 for t in infeasible)


def test_processes_store_what_one_process_stores():
    Sweep(setup_of(sweep_spec("one"))).run()
    Sweep(setup_of(sweep_spec("two")), workers=2).run()

    def content(name):
        study = load_study(name)
        return (study.user_attrs[SWEEP_ATTR]["counts"], sorted(
            (tuple(sorted(t.params.items())), tuple(t.user_attrs[ROLE_ATTR]),
             tuple(t.values or ()))
            for t in study.get_trials()))

    assert content("one") == content("two")


def test_a_rerun_stores_no_duplicate_and_options_size_what_is_kept():
    spec = sweep_spec(sampler={"name": "exhaustive", "options": {"sample": 5, "best": 2}})
    first = Sweep(setup_of(spec)).run()
    again = Sweep(setup_of(spec)).run()
    assert first.stored > 0 and again.stored == 0
    assert again.attrs["stored"]["already_stored"] == first.stored
    assert len(load_study("sw").get_trials()) == first.stored <= 5 + 2 + first.attrs[
        "front_size"]


def test_batch_entry_point_is_used_and_a_failure_is_one_failed_config():
    BatchToy.calls = 0
    summary = Sweep(setup_of(sweep_spec(evaluator="sweep_toys:BatchToy"))).run()
    assert BatchToy.calls > 0
    assert summary.attrs["counts"]["failed"] == 3
    assert summary.attrs["counts"]["scored"] == N_VALID


def test_only_analytical_evaluators_on_finite_spaces_are_swept():
    with pytest.raises(BadInput, match="analytical evaluator"):
        Sweep(setup_of(sweep_spec(evaluator="tuner.testing.toys:ToyEvaluator")))
    spec = sweep_spec()
    spec["space"]["context"] = {"continuous": True}
    with pytest.raises(BadInput, match="finite space"):
        Sweep(setup_of(spec))
    bad = sweep_spec(sampler={"name": "exhaustive", "options": {"samples": 3}})
    with pytest.raises(BadInput, match="sampler.options.samples"):
        Sweep(setup_of(bad))


def test_default_sampler_sweeps_small_analytical_spaces_only():
    space = ToySpace({"max_sum": 30})
    assert default_sampler(space, ["maximize"], AnalyticalToy) == "exhaustive"
    assert default_sampler(space, ["maximize"], ToyEvaluator) == "cost-model"
    assert default_sampler(ToySpace({"continuous": True}), ["maximize"],
                           AnalyticalToy) == "cost-model"
    class BigToy(ToySpace):
        def parameters(self):
            return {**super().parameters(), "x": Int(0, SWEEP_DEFAULT_MAX_GRID)}

    big = BigToy({})
    assert default_sampler(big, ["maximize"], AnalyticalToy) == "cost-model"
    spec = sweep_spec()
    del spec["sampler"]
    assert setup_of(spec).sampler_name == "exhaustive"


def test_trial_by_trial_loops_visit_each_valid_config_once_under_the_name():
    spec = sweep_spec()
    spec["budget"] = {"trials": 2000}
    summary = Runner(parse_spec(spec), progress=False).run()
    params = [tuple(sorted(t.params.items())) for t in load_study("sw").get_trials()]
    assert summary.stop_reason == "every valid config evaluated"
    assert len(params) == len(set(params)) == N_VALID


def test_wall_time_stores_a_partial_sweep():
    spec = sweep_spec(evaluator="sweep_toys:SlowAnalyticalToy")
    summary = Sweep(setup_of(spec), wall_time_s=0.5).run()
    attrs = summary.attrs
    assert not attrs["complete"] and attrs["stop_reason"].startswith("wall time")
    assert 0 < attrs["counts"]["scored"] < N_VALID
    assert summary.stored == len(load_study("sw").get_trials()) > 0


def test_progress_lines_without_a_terminal():
    out = io.StringIO()
    p = SweepProgress("s", [("score", "maximize")], "lines", interval=0.0, stream=out)
    with p:
        p.update(10, [3.5], 4)
        p.update(20, [4.5], 9)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "20 configs scored" in lines[1]
    assert "best score = 4.5" in lines[1]
    silent = io.StringIO()
    with SweepProgress("s", [("score", "maximize")], None, stream=silent) as q:
        q.update(5, [1.0], 1)
    assert silent.getvalue() == ""


def _cli(args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, **kw)


def _env(tmp_path):
    env = dict(os.environ)
    env["TUNER_STORAGE"] = f"sqlite:///{tmp_path / 'cli.db'}"
    return env


def test_tuner_run_sweeps_and_prints_the_front(tmp_path):
    study = tmp_path / "s.toml"
    write_toml(study, sweep_spec())
    r = _cli(["run", str(study)], env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert f"swept {N_VALID:,} valid configs" in r.stdout and "Pareto front" in r.stdout
    assert "sampler exhaustive" in r.stdout


def test_ctrl_c_stops_a_sweep_stores_what_was_scored_and_exits_130(tmp_path):
    study = tmp_path / "s.toml"
    write_toml(study, sweep_spec(evaluator="sweep_toys:SlowAnalyticalToy"))
    env = _env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "run", str(study), "--workers",
                             "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(3.0)  # imports, then a few batches of 20 ms configs
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "partial sweep" in out
    study = optuna.load_study(study_name="sw", storage=env["TUNER_STORAGE"])
    attrs = study.user_attrs[SWEEP_ATTR]
    assert study.user_attrs["tuner.state"] == "interrupted" and not attrs["complete"]
    assert 0 < attrs["counts"]["scored"] < N_VALID
    assert len(study.get_trials()) > 0


def test_the_dashboard_note_names_the_sample():
    from tuner._sweep import sweep_note

    summary = Sweep(setup_of(sweep_spec())).run()
    note = sweep_note(summary.attrs)
    assert "uniform random sample" in note and f"{N_VALID:,}" in note and "105" in note


def test_shipped_simulator_studies_are_sweepable():
    from tuner.spec import load_spec

    for path in sorted((ROOT / "studies").glob("*.toml")):
        setup = StudySetup.build(load_spec(path), "exhaustive")
        analytical = getattr(setup.evaluator_cls, "analytical", False)
        assert analytical == setup.evaluator_name.endswith("-sim"), path.name
        if analytical:
            Sweep(setup)  # accepted: finite space, analytical evaluator


def test_evaluate_many_turns_bad_outputs_into_failures():
    from tuner._sweep_pool import evaluate_many

    class Odd:
        def evaluate(self, config):
            if config["k"] == 1:
                return {"not": "a result"}
            if config["k"] == 2:
                raise ValueError("nope")
            return EvalResult.ok({"v": 1.0})

    out = evaluate_many(Odd(), [{"k": k} for k in range(3)])
    assert [r.status.value for r in out] == ["ok", "failed", "failed"]
    assert "not EvalResult" in out[1].reason and "ValueError: nope" in out[2].reason
    assert list(itertools.chain(out))  # a plain list
