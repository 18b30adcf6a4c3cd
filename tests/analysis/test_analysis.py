"""tuner.analysis on hand-made trials (exact answers) and on a real stored study."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import sqlalchemy as sa
from conftest import toy_study, write_toml

import tuner.analysis as A
from tuner._errors import BadInput
from tuner._pareto import hypervolume
from tuner._readonly_storage import ReadOnlyStorage, TrialCache, TrialRow, readonly_url
from tuner.benchmarks.synthetic_study import OBJECTIVES_3, write_study

MAX_THR = A.Objective("thr", "maximize")
MIN_LAT = A.Objective("lat", "minimize")


def row(number, thr=None, lat=None, status="ok", feasible=True, state="COMPLETE", reason=None,
        **params):
    metrics = {k: v for k, v in (("thr", thr), ("lat", lat)) if v is not None}
    return TrialRow(trial_id=number + 1, number=number, state=state, status=status,
                    feasible=feasible, values=(thr, lat) if feasible else (None, None),
                    params=params, metrics=metrics, reason=reason)


HAND = [
    row(0, 10, 5, a=1, b="x"),
    row(1, 20, 8, a=2, b="x"),  # front
    row(2, 15, 4, a=3, b="y"),  # front
    row(3, 12, 6, a=1, b="y"),  # dominated by 2
    row(4, 30, 20, a=2, b="x"),  # front
    row(5, 99, 1, status="ok", feasible=False, reason="violates lat <= 0.5 (got 1)", a=3,
        b="x"),
    row(6, status="infeasible", feasible=False, reason="needs 91.2 GiB, has 80 GiB", a=3,
        b="y"),
    row(7, status="failed", feasible=False, state="FAIL", reason="timed out after 60 s", a=3,
        b="x"),
    row(8, 5, 4, a=1, b="x"),  # dominated by 2 (15 > 5 at the same latency)
]


# -- hand-made trials: exact answers ------------------------------------------------------
def test_pareto_front_marks_exactly_the_non_dominated_feasible_trials():
    view = A.pareto_view(HAND, (MAX_THR, MIN_LAT))
    assert sorted(view.front_numbers) == [1, 2, 4]
    assert all(r.feasible for r in view.rows)  # 5 would dominate everything, but is not feasible
    assert view.excluded == {"not finished or failed": 1, "not feasible": 2}
    # front sorted along the first axis, the knee is one of its points
    assert [view.rows[i].number for i in view.front] == [2, 1, 4]
    assert view.rows[view.knee].number in (1, 2, 4)


def test_pareto_on_a_non_objective_axis_uses_its_direction():
    # minimizing both thr and lat: 8 (5, 4) dominates 2 (15, 4)
    view = A.pareto_view(HAND, (A.Objective("thr", "minimize"), MIN_LAT))
    assert view.front_numbers == [8]


def test_knee_is_nearest_the_ideal_point_after_scaling():
    coords = np.array([[0.0, 10.0], [4.0, 4.0], [10.0, 0.0]])
    assert A.knee_index(coords, ["minimize", "minimize"]) == 1


def test_convergence_best_so_far_and_hypervolume():
    conv = A.convergence(HAND, (MAX_THR, MIN_LAT))
    assert conv.numbers == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert conv.best["thr"] == [10, 20, 20, 20, 30, 30, 30, 30, 30]
    assert conv.best["lat"] == [5, 5, 4, 4, 4, 4, 4, 4, 4]
    assert conv.values["thr"][5] is None  # not feasible: no value in the series
    hv = conv.hypervolume
    assert all(b >= a for a, b in zip(hv, hv[1:]))
    feas = [[r.metrics["thr"], r.metrics["lat"]] for r in HAND if r.feasible]
    assert hv[-1] == pytest.approx(hypervolume(feas, ["maximize", "minimize"], conv.reference))
    assert conv.feasible_share[-1] == pytest.approx(6 / 9)


def test_study_file_reference_point_is_used():
    objs = (A.Objective("thr", "maximize", reference=0.0), A.Objective("lat", "minimize",
                                                                       reference=100.0))
    conv = A.convergence(HAND, objs)
    assert conv.reference == [0.0, 100.0]


def test_feasibility_map_counts_buckets_and_reason_groups():
    fmap = A.feasibility_map(HAND)
    assert fmap.counts == {"feasible": 6, "violates constraint": 1, "infeasible": 1,
                           "failed": 1}
    a3 = next(c for c in fmap.cells["a"] if c.label == "3")
    assert a3.n == 4 and a3.bad_share == pytest.approx(3 / 4)
    patterns = {g.pattern: g for g in fmap.reasons}
    assert set(patterns) == {"violates lat <= # (got #)", "needs # GiB, has # GiB",
                             "timed out after # s"}
    kv = patterns["needs # GiB, has # GiB"]
    assert kv.count == 1 and kv.numbers == [6] and kv.outcome == "infeasible"
    assert ("a=3", 1.0, 4 / 9) in kv.drivers  # a=3 is in every such trial, 44 % overall


def test_feasibility_grid_shares():
    grid = A.feasibility_grid(HAND, "a", "b")
    share = {(y, x): s for y, ss in zip(grid.y_labels, grid.bad_share)
             for x, s in zip(grid.x_labels, ss)}
    assert share[("x", "3")] == 1.0  # trials 5 and 7
    assert share[("x", "1")] == 0.0
    assert share[("y", "3")] == 0.5  # trials 2 (ok) and 6 (infeasible)


def test_numeric_parameters_with_many_values_are_binned():
    rows = [row(i, i, 1, c=i) for i in range(40)]
    cells = A.feasibility_map(rows, max_buckets=4).cells["c"]
    assert len(cells) == 4 and sum(c.n for c in cells) == 40


def test_reason_patterns_keep_identifiers():
    assert A.reason_pattern("violates ttft_ms_p99 <= 2500 (got 3012.5)") == \
        "violates ttft_ms_p99 <= # (got #)"


def test_trial_query_filters_sorts_and_pages():
    recs, cols = A.trial_records(HAND, (MAX_THR, MIN_LAT), [1, 2, 4])
    assert cols[:5] == ["number", "outcome", "on_front", "thr", "lat"]
    page, total = A.query_records(recs, A.TrialQuery(outcomes=("feasible",), sort_by="thr",
                                                     descending=True, page=1, page_size=2))
    assert total == 6 and [r["number"] for r in page] == [4, 1]
    page, _ = A.query_records(recs, A.TrialQuery(outcomes=("feasible",), sort_by="thr",
                                                 descending=True, page=3, page_size=2))
    assert [r["number"] for r in page] == [0, 8]
    page, total = A.query_records(recs, A.TrialQuery(front_only=True))
    assert [r["number"] for r in page] == [1, 2, 4]
    page, total = A.query_records(recs, A.TrialQuery(text="gib"))
    assert [r["number"] for r in page] == [6]
    page, total = A.query_records(recs, A.TrialQuery(ranges=(("lat", 4.0, 5.0),)))
    assert sorted(r["number"] for r in page) == [0, 2, 8]
    # missing values sort last in both orders
    for desc in (False, True):
        page, _ = A.query_records(recs, A.TrialQuery(sort_by="thr", descending=desc))
        assert [r["number"] for r in page][-2:] in ([6, 7], [7, 6])


def test_pick_best_under_limits():
    best = A.pick_best(HAND, MAX_THR, [A.Limit("lat", "<=", 8)])
    assert [r.number for r in best] == [1, 2, 3, 0, 8]
    assert A.pick_best(HAND, MAX_THR, [A.Limit("lat", "<", 1)]) == []


def test_parallel_axes_encode_categories_and_inactive_values():
    rows = [row(0, 1, 1, a=1, b="x"), row(1, 2, 2, a=2, b="y", c=5), row(2, 3, 3, a=3, b="x")]
    axes = {a.label: a for a in A.parallel_axes(rows, ["a", "b", "c"], ["thr"])}
    assert axes["a"].ticks is None and axes["a"].values == [1.0, 2.0, 3.0]
    assert axes["b"].ticks == [(0.0, "x"), (1.0, "y")] and axes["b"].values == [0, 1, 0]
    assert axes["c"].ticks[0] == (-1.0, "(inactive)") and axes["c"].values[0] == -1.0
    assert axes["thr"].values == [1.0, 2.0, 3.0]


def test_fidelity_statistics_on_known_errors():
    from tuner.analysis._fidelity import PREDICTED_PREFIX

    rows = []
    for i, m in enumerate([10.0, 20.0, 30.0, 40.0]):
        r = row(i, thr=m, lat=1)
        rows.append(TrialRow(**{**{f: getattr(r, f) for f in r.__slots__},
                                "metrics": {"thr": m, PREDICTED_PREFIX + "thr": 1.1 * m}}))
    rep = A.fidelity_within(rows, {"thr": "maximize"}, top_k=2)
    f = rep.metrics[0]
    assert f.metric == "thr" and len(f.pairs) == 4
    assert f.mean_abs_error_pct == pytest.approx(10.0)
    assert f.mean_error_pct == pytest.approx(10.0)
    assert f.spearman == pytest.approx(1.0) and f.top1_match and f.topk_overlap == 1.0


def test_reproduce_command_is_shell_safe():
    cmd = A.reproduce_command("serving-sim", {"name": "it's", "x": 1}, {"o": 2})
    import shlex

    argv = shlex.split(cmd)
    assert argv[:4] == ["tuner", "evaluate", "serving-sim", "--config"]
    assert json.loads(argv[4]) == {"name": "it's", "x": 1}
    assert json.loads(argv[6]) == {"o": 2} and argv[-1] == "--json"


def test_bench_parse_summary_and_errors():
    data = {"metric": "regret", "direction": "minimize", "runs": [
        {"sampler": "a", "seed": 0, "curve": [3.0, 2.0, 1.0]},
        {"sampler": "a", "seed": 1, "curve": [5.0, 4.0, 3.0]},
        {"sampler": "b", "seed": 0, "curve": {"trial": [1, 3], "value": [2.0, 0.5]}}]}
    view = A.parse_bench(data)
    a = next(c for c in view.curves if c.sampler == "a")
    assert a.median == [4.0, 3.0, 2.0] and a.low == [3.0, 2.0, 1.0] and a.seeds == 2
    b = next(c for c in view.curves if c.sampler == "b")
    assert b.trials == [1, 3] and b.median == [2.0, 0.5]
    row_a = next(r for r in view.summary if r["sampler"] == "a")
    assert row_a["final regret (median)"] == 2.0 and row_a["final regret (worst)"] == 3.0
    with pytest.raises(BadInput, match="runs"):
        A.parse_bench({"runs": []})
    with pytest.raises(BadInput, match=r"runs\[0\]"):
        A.parse_bench({"runs": [{"seed": 0}]})


def test_guess_direction_follows_units_in_names():
    assert A.guess_direction("tokens_per_s") == "maximize"
    assert A.guess_direction("goodput_req_s") == "maximize"
    assert A.guess_direction("ttft_ms_p99") == "minimize"
    assert A.guess_direction("peak_memory_gib") == "minimize"
    assert A.guess_direction("tokens_per_s", [A.Objective("tokens_per_s", "minimize")]) == \
        "minimize"


# -- a real stored study -------------------------------------------------------------------
@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A toy study run by ``tuner run`` (with failures) plus a synthetic serving study."""
    d = tmp_path_factory.mktemp("analysis")
    db = d / "studies.db"
    url = f"sqlite:///{db}"
    spec = toy_study("toy-run", trials=60, seed=3,
                     evaluator={"name": "tuner.testing.toys:FaultyEvaluator",
                                "options": {"mode": "raise", "trigger_x": 3}},
                     constraints=[{"metric": "score", "op": ">=", "value": 0}],
                     sampler={"name": "tpe"})
    path = write_toml(d / "toy.toml", spec)
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", path, "--storage", url,
                           "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    write_study(url, "serving", 400, seed=5, objectives=OBJECTIVES_3)
    return db, url


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_storage_reads_agree_with_optuna_and_never_write(stored):
    db, url = stored
    before = _digest(db)
    store = ReadOnlyStorage(url)
    info = store.study("toy-run")
    objs = A.study_objectives(info)
    rows = TrialCache(store, info.study_id, len(objs)).refresh()
    study = optuna.load_study(study_name="toy-run", storage=url)
    trials = study.get_trials(deepcopy=False)
    assert [r.number for r in rows] == [t.number for t in trials]
    for r, t in zip(rows, trials):
        assert r.params == t.params
        assert r.state == t.state.name
        assert r.status == t.user_attrs["status"] and r.feasible == t.user_attrs["feasible"]
        assert dict(r.metrics) == t.user_attrs["metrics"]
        if t.values is not None:
            assert list(r.values) == t.values
    # Optuna's own constrained Pareto front (best_trials skips trials whose constraints > 0)
    optuna_front = {t.number for t in study.best_trials if t.user_attrs["feasible"]}
    view = A.pareto_view(rows, objs, objs)
    assert {r.number for r, f in zip(view.rows, view.on_front) if f} == optuna_front
    # overview aggregates match the rows
    summary = next(s for s in store.summaries() if s.info.name == "toy-run")
    assert summary.n_trials == len(rows)
    assert summary.feasible == sum(r.feasible for r in rows)
    assert summary.statuses == {k: sum(r.status == k for r in rows)
                                for k in {r.status for r in rows}}
    best_score = max(r.metrics["score"] for r in rows if r.feasible)
    assert summary.best[0][1] == best_score
    # the engine cannot write, and nothing was written
    with pytest.raises(sa.exc.OperationalError, match="readonly"):
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE studies SET study_name = 'x'"))
    store.engine.dispose()
    assert _digest(db) == before


def test_readonly_url_forms(stored):
    db, url = stored
    ro = readonly_url(url)
    assert ro.startswith("sqlite:///file:") and "mode=ro" in ro and ro.endswith("uri=true")
    assert readonly_url(ro) == ro
    with pytest.raises(BadInput, match="no database file"):
        readonly_url(f"sqlite:///{db.parent / 'missing.db'}")
    assert readonly_url("postgresql+psycopg://u:p@h/db") == "postgresql+psycopg://u:p@h/db"


def test_trial_cache_reads_only_new_trials(stored, tmp_path):
    _, url = stored
    db = tmp_path / "grow.db"
    grow = f"sqlite:///{db}"
    write_study(grow, "grow", 50, seed=1)
    store = ReadOnlyStorage(grow)
    info = store.study("grow")
    cache = TrialCache(store, info.study_id, 2)
    first = cache.refresh()
    assert len(first) == 50 and cache.version == 1
    assert cache.refresh() is first and cache.version == 1  # unchanged: nothing re-read
    calls = []
    real_fetch = store.fetch_trials

    def spy(*args, **kw):
        out = real_fetch(*args, **kw)
        calls.append(len(out))
        return out

    store.fetch_trials = spy  # type: ignore[method-assign]
    write_study(grow, "grow", 7, seed=2)
    rows = cache.refresh()
    assert len(rows) == 57 and cache.version == 2 and calls == [7]
    assert [r.number for r in rows] == list(range(57))


def test_reproduce_command_reproduces_the_stored_metrics(stored):
    _, url = stored
    store = ReadOnlyStorage(url)
    info = store.study("toy-run")
    objs = A.study_objectives(info)
    rows = TrialCache(store, info.study_id, len(objs)).refresh()
    target = next(r for r in rows if r.feasible and not r.cached)
    attrs = store.trial_attrs([target.trial_id])[target.trial_id]
    spec = info.attr("spec")
    detail = A.trial_detail(target, attrs, objs, info.attr("evaluator"),
                            spec["evaluator"]["options"])
    import shlex

    argv = shlex.split(detail.command)
    assert argv[0] == "tuner"
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", *argv[1:]], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "ok" and out["metrics"] == dict(target.metrics)


def test_export_round_trips_configs(stored):
    _, url = stored
    store = ReadOnlyStorage(url)
    info = store.study("serving")
    objs = A.study_objectives(info)
    rows = TrialCache(store, info.study_id, len(objs)).refresh()
    view = A.pareto_view(rows, objs, objs)
    chosen = [r for r in rows if r.number in set(view.front_numbers)]
    configs = {tid: a["config"] for tid, a in store.trial_attrs(
        [r.trial_id for r in chosen]).items()}
    records = A.export_records(chosen, configs, objs)
    lines = A.to_jsonl_configs(records).splitlines()
    assert [json.loads(x) for x in lines] == [configs[r.trial_id] for r in chosen]
    csv_text = A.to_csv(records)
    header = csv_text.splitlines()[0].split(",")
    assert header[:3] == ["number", "outcome", "feasible"] and "config.tp" in header
    assert len(csv_text.splitlines()) == len(chosen) + 1
    assert json.loads(A.to_json(records))[0]["config"] == configs[chosen[0].trial_id]


def test_convergence_and_front_on_three_objectives(stored):
    _, url = stored
    store = ReadOnlyStorage(url)
    info = store.study("serving")
    objs = A.study_objectives(info)
    assert [o.metric for o in objs] == [m for m, _ in OBJECTIVES_3]
    rows = TrialCache(store, info.study_id, 3).refresh()
    conv = A.convergence(rows, objs)
    assert all(b >= a for a, b in zip(conv.hypervolume, conv.hypervolume[1:]))
    view = A.pareto_view(rows, objs, objs)
    feas = [[r.metrics[o.metric] for o in objs] for r in rows if r.feasible]
    assert conv.hypervolume[-1] == pytest.approx(hypervolume(
        feas, [o.direction for o in objs], conv.reference))
    front = [view.coords[i].tolist() for i in view.front]
    assert hypervolume(front, [o.direction for o in objs], conv.reference) == pytest.approx(
        conv.hypervolume[-1])
    assert conv.trials_to_reach(1.0) <= len(conv.numbers)


def test_importances_rank_the_knobs_that_matter(stored):
    _, url = stored
    store = ReadOnlyStorage(url)
    info = store.study("toy-run")
    objs = A.study_objectives(info)
    rows = TrialCache(store, info.study_id, 2).refresh()
    dists = store.param_distributions(info.study_id)
    imps = A.param_importances(rows, dists, "score", objs)
    # score = 100 - (x-14)^2 - (y-6)^2 + (0 | 5 | 2 by mode): mode matters least
    assert set(imps.importances) == {"x", "y", "mode"}
    assert sum(imps.importances.values()) == pytest.approx(1.0)
    assert min(imps.importances, key=imps.importances.get) == "mode"
    # failures are triggered by x == 3 only: x explains feasibility best
    feas = A.param_importances(rows, dists, "feasibility", objs)
    assert max(feas.importances, key=feas.importances.get) in ("x", "y")
    assert feas.n_trials == len(rows)


def test_compare_uses_one_reference_point(stored, tmp_path):
    db = tmp_path / "cmp.db"
    url = f"sqlite:///{db}"
    write_study(url, "a", 120, seed=1, sampler="tpe")
    write_study(url, "b", 120, seed=2, sampler="random", exploit_share=0.0)
    store = ReadOnlyStorage(url)
    runs = []
    for name in ("a", "b"):
        info = store.study(name)
        objs = A.study_objectives(info)
        runs.append(A.StudyRun(name, tuple(objs), TrialCache(store, info.study_id, 2).refresh(),
                               info.attr("sampler")))
    assert A.shared_metrics(runs)[:2] == ["throughput_tok_s", "ttft_ms_p99"]
    cmp = A.compare(runs, runs[0].objectives)
    pooled = [c for f in cmp.fronts for c in f.coords.tolist()]
    worst_thr = min(p[0] for p in pooled)
    assert cmp.reference[0] < worst_thr  # below every study's worst throughput
    for s, conv in zip(cmp.summary, cmp.convergence):
        assert s["hypervolume"] == pytest.approx(conv.hypervolume[-1])
        assert s["trials"] == 120
    assert {s["sampler"] for s in cmp.summary} == {"tpe", "random"}


def test_fidelity_between_two_studies_joins_on_config(tmp_path):
    from tuner.benchmarks.synthetic_study import study_params

    url = f"sqlite:///{tmp_path / 'fid.db'}"
    write_study(url, "sim", 80, seed=1, fail_share=0.0)
    params = study_params(url, "sim", 25)
    write_study(url, "gpu", seed=2, evaluator="serving-gpu", measured=True, fail_share=0.0,
                params_list=params)
    store = ReadOnlyStorage(url)
    sim, gpu = store.study("sim"), store.study("gpu")
    sim_rows = TrialCache(store, sim.study_id, 2).refresh()
    gpu_rows = TrialCache(store, gpu.study_id, 2).refresh()
    rep = A.fidelity_between(sim_rows, store.study_configs(sim.study_id), gpu_rows,
                             store.study_configs(gpu.study_id),
                             {"throughput_tok_s": "maximize"})
    distinct = len({json.dumps(p, sort_keys=True) for p in params})
    assert rep.matched == distinct
    thr = next(f for f in rep.metrics if f.metric == "throughput_tok_s")
    # the measured model is 0.9 x (1 +- 6 %) of the simulator: errors of about +11 %
    assert 5 < thr.mean_error_pct < 20 and thr.spearman > 0.9
    assert all(math.isfinite(p.error_pct) for p in thr.pairs)
