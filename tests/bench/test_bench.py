"""``tuner bench``: exhaustive tables, the in-memory loop, the scores and the report files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tuner import registry
from tuner.bench import main, run_bench
from tuner.bench.loop import curves, run_one
from tuner.bench.metrics import censored_median, run_scores
from tuner.bench.problems import Problem, build_table, load_problems, normalized_hypervolume
from tuner.samplers import make_sampler

TOY = Problem(name="toy-score", domain="tuner.testing.toys:ToySpace",
              evaluator="tuner.testing.toys:ToyEvaluator", context={"max_sum": 30},
              objectives=(("score", "maximize"),))
TOY_MO = Problem(name="toy-score-cost", domain="tuner.testing.toys:ToySpace",
                 evaluator="tuner.testing.toys:ToyEvaluator", context={"max_sum": 30},
                 objectives=(("score", "maximize"), ("cost", "minimize")))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_BENCH_CACHE", str(tmp_path / "cache"))


def test_table_is_the_exact_ground_truth():
    table = build_table(TOY)
    assert table.n_grid == 21 * 21 * 3
    rejected = [o for o in table.outcomes.values() if o.status == "rejected"]
    # x + y > 30 is rejected by the space; x == 0 is infeasible by the evaluator
    assert len(rejected) == 3 * sum(1 for x in range(21) for y in range(21) if x + y > 30)
    infeasible = [o for o in table.outcomes.values() if o.status == "infeasible"]
    assert len(infeasible) == 3 * 21
    assert table.optimum == 105.0  # x=14, y=6, mode=b
    assert table.lookup({"x": 14, "y": 6, "mode": "b"}).values == (105.0,)
    assert table.within(0.01) == 5  # the optimum and its four neighbours (104)
    again = build_table(TOY)  # from the cache
    assert again.outcomes == table.outcomes and again.optimum == 105.0


def test_multi_objective_truth_and_hypervolume_ratio():
    table = build_table(TOY_MO)
    assert len(table.front) > 3
    assert table.true_hypervolume() > 0
    # finding every front point gives ratio 1; finding one point less gives less
    from tuner.bench.loop import Trace

    trace = Trace("toy-score-cost", "oracle", 0, values=[tuple(v) for v in table.front])
    ratio = curves(table, trace, len(table.front))["hv_ratio"]
    assert ratio[-1] == pytest.approx(1.0)
    assert ratio[-2] < 1.0 and np.all(np.diff(ratio) >= 0)
    assert normalized_hypervolume(np.empty((0, 2))) == 0.0


def test_loop_records_trials_like_the_runner():
    table = build_table(TOY)
    sampler = make_sampler("random", TOY.space(), ["maximize"], 0)
    trace = run_one(table, sampler, "random", 0, 60)
    assert len(trace.status) == 60
    assert set(trace.status) <= {"ok", "infeasible"}
    assert "infeasible" in trace.status  # random hits x + y > 30 and x == 0
    for st, v in zip(trace.status, trace.values):
        assert (v is not None) == (st == "ok")
    assert sum(trace.new_eval) <= 60


def test_scores_of_a_curve():
    c = np.array([np.nan, 0.5, 0.2, 0.009, 0.0])
    s = run_scores({"regret": c}, budgets=(2, 4, 25))
    assert s["evals_to_target"] == 4 and s["at"] == {"2": 0.5, "4": 0.009}
    assert run_scores({"regret": np.array([np.nan, 0.3])})["evals_to_target"] is None
    hv = run_scores({"hv_ratio": np.array([0.2, 0.995])}, budgets=(1, 2))
    assert hv["evals_to_target"] == 2 and hv["final"] == 0.995
    assert censored_median([3, None, 5]) == 5
    assert math.isinf(censored_median([None, None, 5]))


def test_run_bench_writes_json_markdown_plot_and_curves(tmp_path):
    out = tmp_path / "out"
    result = run_bench([TOY, TOY_MO], ["random", "tpe", "cost-model"], seeds=2, budget=20,
                       out=out)
    data = json.loads((out / "bench.json").read_text())
    assert {r["sampler"] for r in data["scores"]} == {"random", "tpe", "cost-model"}
    assert len(data["scores"]) == 2 * 3 * 2
    assert data["summary"]["targets"]["reference"] == "tpe"
    assert result["summary"]["per_sampler"]["cost-model"]["runs"] == 4
    md = (out / "bench.md").read_text()
    assert "| sampler | median evals to 1% |" in md and "toy-score-cost" in md
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = json.loads((out / "curves" / "toy-score.json").read_text())
    assert curve["metric"] == "relative_regret" and len(curve["runs"]) == 6
    try:
        from tuner.analysis._bench import parse_bench
    except ImportError:
        return
    view = parse_bench(curve, "toy-score.json")
    assert {c.sampler for c in view.curves} == {"random", "tpe", "cost-model"}


def test_samplers_that_cannot_run_a_problem_are_reported(tmp_path):
    result = run_bench([TOY_MO], ["cmaes", "random"], seeds=1, budget=5, out=tmp_path)
    errors = [r for r in result["scores"] if r.get("error")]
    assert errors and errors[0]["sampler"] == "cmaes"
    assert "cmaes on toy-score-cost" in (tmp_path / "bench.md").read_text()


def test_cli_entry_point(tmp_path, capsys):
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in load_problems())
    assert main(["--problems", "no-such-problem", "--out", str(tmp_path)]) == 2
    assert "no-such-problem" in capsys.readouterr().err
    assert main(["--samplers", "bogus", "--out", str(tmp_path)]) == 2


def test_problem_file_names_registered_domains_and_evaluators():
    problems = load_problems()
    assert len(problems) >= 3
    for p in problems.values():
        assert p.domain in registry.SPACES, p.name
        assert p.evaluator in registry.EVALUATORS, p.name
        assert all(d in ("minimize", "maximize") for d in p.directions)
