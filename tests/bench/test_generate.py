"""Generated benchmark problems: seeded, checked, reported apart from the hand-written ones."""

from __future__ import annotations

import json

import pytest

from tuner import BadInput
from tuner.bench import run_bench
from tuner.bench.generate import (
    DEV_SEEDS,
    DOMAINS,
    HELD_OUT_SEEDS,
    MAX_EASY_SHARE,
    MIN_VALID,
    accept,
    draw,
    generate,
    parse_seeds,
)
from tuner.bench.problems import Problem, build_table


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_BENCH_CACHE", str(tmp_path / "cache"))


def test_a_seed_always_draws_the_same_problem_and_domains_cycle():
    for seed in (0, 1, 2, 3, 1001):
        a, b = draw(seed, 0), draw(seed, 0)
        assert a == b and a.name == f"gen-{seed}-{DOMAINS[seed % len(DOMAINS)]}"
        assert draw(seed, 1) != a  # the next draw of a seed is another problem
    assert not set(DEV_SEEDS) & set(HELD_OUT_SEEDS)


def test_every_domain_draws_problems_its_space_accepts():
    built = 0
    for seed in range(8):
        for attempt in range(3):
            p = draw(seed, attempt)
            try:
                space = p.space()
            except BadInput:
                continue  # a draw the generator would reject and redraw
            built += 1
            assert space.is_finite()
            metrics = set(p.metrics) | {c.metric for c in p.constraints}
            from tuner.registry import evaluator_class

            assert metrics <= set(evaluator_class(p.evaluator).metrics), p.name
    assert built >= 16


def test_generated_problem_is_hard_enough_and_reproducible():
    p, table = generate(1)  # a GEMM tile problem: scored in about a second
    assert p.domain == "kernel-gemm" and not accept(table)
    assert table.n_valid >= MIN_VALID
    assert table.within(0.01) / table.n_valid <= MAX_EASY_SHARE
    p2, table2 = generate(1)
    assert p2 == p and table2.optimum == table.optimum


def test_accept_rejects_easy_and_tiny_problems():
    easy = Problem(name="easy", domain="tuner.testing.toys:ToySpace",
                   evaluator="tuner.testing.toys:ToyEvaluator", context={"max_sum": 40},
                   params={"mode": {"fixed": "b"}}, objectives=(("score", "maximize"),))
    # 5 of 441 valid configs within 1% of 105 (the optimum and its four neighbours at 104)
    assert "within 1%" in accept(build_table(easy))
    tiny = Problem(name="tiny", domain="tuner.testing.toys:ToySpace",
                   evaluator="tuner.testing.toys:ToyEvaluator", context={"max_sum": 4},
                   params={"mode": {"fixed": "b"}}, objectives=(("score", "maximize"),))
    assert "feasible" in accept(build_table(tiny))


def test_seed_sets_parse():
    assert parse_seeds("dev") == list(DEV_SEEDS)
    assert parse_seeds("held-out") == list(HELD_OUT_SEEDS)
    assert parse_seeds("0-2,5,1") == [0, 1, 2, 5]
    for bad in ("x", "3-a", ","):
        with pytest.raises(BadInput, match="--generated"):
            parse_seeds(bad)


def test_bench_reports_generated_problems_apart(tmp_path):
    out = tmp_path / "out"
    result = run_bench(["gemm-decode-fp8"], ["random", "optuna-tpe"], seeds=1, budget=12,
                       out=out, generated=[1])
    sets = {p["name"]: p["set"] for p in result["problems"]}
    assert sets == {"gemm-decode-fp8": "hand-written", "gen-1-kernel-gemm": "generated"}
    assert set(result["by_set"]) == {"hand-written", "generated"}
    assert result["by_set"]["generated"]["per_problem"].keys() == {"gen-1-kernel-gemm"}
    md = (out / "bench.md").read_text()
    assert "## Targets" not in md or "generated problems" in md
    assert "## Samplers (generated problems)" in md
    data = json.loads((out / "bench.json").read_text())
    assert data["meta"]["generated_seeds"] == [1]
