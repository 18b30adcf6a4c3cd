import random

import numpy as np
import pytest

from tuner._evaluator import EvalResult
from tuner._pareto import pareto_mask
from tuner._sweep_tally import Tally, nondominated, priority
from tuner.spec import ConstraintSpec

OBJS = [("a", "maximize"), ("b", "minimize")]


def _results(n, seed=0, m=2):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.15:
            res = EvalResult.infeasible("does not fit", {"a": 1.0, "b": 2.0})
        elif r < 0.2:
            res = EvalResult.failed("boom")
        else:  # coarse values: ties and duplicate objective vectors happen
            res = EvalResult.ok({"a": rng.randint(0, 30), "b": rng.randint(0, 30),
                                 "c": rng.randint(0, 30), "mem": rng.random()})
        out.append((i, {"x": i}, res))
    return out


def _snapshot(t: Tally):
    return (t.counts.as_dict(), [s.index for s in t.front()],
            [[s.index for s in t.best(j)] for j in range(len(t.objectives))],
            [s.index for s in t.sample()], t.front_size())


@pytest.mark.parametrize("objectives", [OBJS[:1], OBJS, OBJS + [("c", "minimize")]])
def test_shards_merge_to_what_one_tally_keeps(objectives):
    cons = [ConstraintSpec(metric="mem", op="<=", value=0.8)]
    rows = _results(3000)
    one = Tally(objectives, cons, n_best=5, sample_size=50, seed=3)
    for i, v, r in rows:
        one.add(i, v, r, 0.0)
    shards = [Tally(objectives, cons, n_best=5, sample_size=50, seed=3) for _ in range(3)]
    for k, (i, v, r) in enumerate(rows):  # round-robin batches, as the process pool hands out
        shards[(k // 7) % 3].add(i, v, r, 0.0)
    merged = Tally(objectives, cons, n_best=5, sample_size=50, seed=3)
    for s in shards:  # through the export a process sends
        merged.merge(merged.load(s.export()))
    assert _snapshot(merged) == _snapshot(one)


def test_front_best_and_counts_match_brute_force():
    cons = [ConstraintSpec(metric="mem", op="<=", value=0.8)]
    rows = _results(2000, seed=1)
    t = Tally(OBJS, cons, n_best=3, sample_size=10)
    for i, v, r in rows:
        t.add(i, v, r, 0.0)
    ok = [(i, r) for i, _, r in rows if r.status.value == "ok"]
    feas = [(i, r) for i, r in ok if r.metrics["mem"] <= 0.8]
    assert t.counts.feasible == len(feas) and t.counts.ok == len(ok)
    assert t.counts.scored == 2000
    assert t.counts.failed == sum(r.status.value == "failed" for _, _, r in rows)
    vals = [[r.metrics["a"], r.metrics["b"]] for _, r in feas]
    mask = pareto_mask(vals, ["maximize", "minimize"])
    front_vectors = {tuple(v) for v, m in zip(vals, mask) if m}
    got = {(s.result.metrics["a"], s.result.metrics["b"]) for s in t.front()}
    assert got == front_vectors  # one config per distinct vector
    first = {}
    for (i, _r), v in zip(feas, vals):
        first.setdefault(tuple(v), i)
    assert {s.index for s in t.front()} == {first[v] for v in front_vectors}
    best_a = sorted(feas, key=lambda x: (-x[1].metrics["a"], x[0]))[:3]
    assert [s.index for s in t.best(0)] == [i for i, _ in best_a]
    assert t.optimum()[0]["value"] == best_a[0][1].metrics["a"]


def test_the_sample_is_uniform_over_everything_scored():
    n, k = 20000, 400
    t = Tally(OBJS[:1], (), n_best=1, sample_size=k, seed=0)
    res = EvalResult.ok({"a": 1.0, "b": 1.0})
    for i in range(n):
        t.add(i, {"x": i}, res, 0.0)
    idx = np.array([s.index for s in t.sample()])
    assert len(idx) == k == len(set(idx))
    # each tenth of the enumeration holds about a tenth of the sample (chi-square, 9 dof)
    counts = np.bincount(idx * 10 // n, minlength=10)
    chi2 = float(np.sum((counts - k / 10) ** 2 / (k / 10)))
    assert chi2 < 27.9  # p = 0.001
    assert len({priority(0, i) for i in range(1000)}) == 1000


def test_nondominated_keeps_the_first_of_equal_rows():
    Y = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 5.0, 5.0], [2.0, 3.0, 4.0]])
    assert nondominated(Y).tolist() == [True, False, True, False]
    Y2 = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 3.0], [2.0, 2.0]])
    assert nondominated(Y2).tolist() == [True, False, True, False]
    rng = np.random.default_rng(0)
    Y3 = rng.integers(0, 6, (300, 3)).astype(float)
    keep = nondominated(Y3)
    uniq = {tuple(r) for r in Y3[np.array(pareto_mask(Y3.tolist(), ["minimize"] * 3))]}
    assert {tuple(r) for r in Y3[keep]} == uniq and keep.sum() == len(uniq)
