"""Every dashboard page through Streamlit's AppTest, on studies in a real SQLite file.

Each test checks that the page shows what ``tuner.analysis`` computes for the same storage
(numbers, front members, table rows), not just that it renders.
"""

from __future__ import annotations

import json

import pytest
from dashboard_studies import dash_storage as _build

import tuner.analysis as A
from tuner._readonly_storage import ReadOnlyStorage, TrialCache
from tuner.dashboard_launch import ENV_STORAGE, app_path

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

TIMEOUT = 120


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return _build(tmp_path_factory)


@pytest.fixture
def app(storage, monkeypatch):
    monkeypatch.setenv(ENV_STORAGE, storage.url)
    monkeypatch.setenv("TUNER_BENCH_DIR", str(storage.bench_dir))

    def open_page(page: str | None = None, **query: str) -> AppTest:
        at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT)
        for k, v in query.items():
            at.query_params[k] = v
        at.run()
        if page:
            at.switch_page(page)
            at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_page


def study_rows(url: str, name: str):
    store = ReadOnlyStorage(url)
    info = store.study(name)
    objs = A.study_objectives(info)
    return store, info, objs, TrialCache(store, info.study_id, len(objs)).refresh()


def figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_overview_lists_every_study_with_counts(app, storage):
    at = app()
    assert at.title[0].value == "Studies"
    frame = at.dataframe[0].value
    frame["study"] = frame["link"].str.removeprefix("study?study=")
    summaries = {s.info.name: s for s in ReadOnlyStorage(storage.url).summaries()}
    assert set(frame["study"]) == set(summaries)
    for _, r in frame.iterrows():
        s = summaries[r["study"]]
        assert r["trials"] == s.n_trials and r["feasible"] == s.feasible
        assert r["failed"] == s.statuses.get("failed", 0)
        assert r["state"] == "finished"
    toy = frame.set_index("study").loc["toy-run"]
    assert toy["domain"] == "tuner.testing.toys:ToySpace" and toy["sampler"] == "tpe"
    assert toy["best"].startswith("score ↑ ")
    assert metrics(at)["studies"] == str(len(summaries))


def test_study_page_pareto_front_matches_analysis(app, storage):
    at = app("views/study.py", study="toy-run")
    _, info, objs, rows = study_rows(storage.url, "toy-run")
    counts = A.outcome_counts(rows)
    view = A.pareto_view(rows, objs, objs)
    m = metrics(at)
    assert m["trials"] == f"{len(rows)} / 60"
    assert m["feasible"] == str(counts["feasible"]) and m["failed"] == str(counts["failed"])
    assert m["infeasible"] == str(counts["infeasible"])
    assert m["Pareto configs"] == str(len(view.front))
    fig = figures(at)[0]
    traces = {t["name"]: t for t in fig["data"]}
    assert traces["Pareto front"]["customdata"] == view.front_numbers
    assert "trial" in traces["Pareto front"]["hovertext"][0]  # hover shows the config
    assert "x = " in traces["Pareto front"]["hovertext"][0]
    assert traces["knee (balanced pick)"]["customdata"] == [view.rows[view.knee].number]
    assert len(traces["dominated"]["customdata"]) == len(view.rows) - sum(view.on_front)
    assert fig["layout"]["xaxis"]["title"]["text"] == "score ↑"
    # the knee trial's detail with the command that reproduces it
    knee = view.rows[view.knee].number
    assert any(md.value.startswith(f"#### Trial {knee} ") for md in at.markdown)
    cmd = at.code[0].value
    assert cmd.startswith("tuner evaluate tuner.testing.toys:FaultyEvaluator --config '")
    assert "--options" in cmd and cmd.endswith("--json")


def test_study_page_axis_choice_and_non_feasible_points(app):
    at = app("views/study.py", study="toy-run")
    at.selectbox(key="px::toy-run").set_value("cost")
    at.selectbox(key="py::toy-run").set_value("score")
    at.checkbox(key="pbad").check()
    at.run()
    assert not at.exception
    fig = figures(at)[0]
    names = [t["name"] for t in fig["data"]]
    assert "not feasible" in names  # constraint-violating trials report metrics: shown grey
    assert fig["layout"]["xaxis"]["title"]["text"] == "cost ↓"


def test_three_objectives_draw_a_3d_front(app, storage):
    at = app("views/study.py", study="serving-3obj")
    fig = figures(at)[0]
    assert {t["type"] for t in fig["data"]} == {"scatter3d"}
    _, _, objs, rows = study_rows(storage.url, "serving-3obj")
    front = next(t for t in fig["data"] if t["name"] == "Pareto front")
    assert front["customdata"] == A.pareto_view(rows, objs, objs).front_numbers


@pytest.mark.parametrize("tab, charts", [("Convergence", 3), ("Parallel coordinates", 1),
                                         ("Importance", 1), ("Feasibility", 4)])
def test_study_tabs_render_their_charts(app, tab, charts):
    at = app("views/study.py", study="toy-run", tab=tab)
    figs = figures(at)
    assert len(figs) == charts  # lazy tabs: only the open one ran
    if tab == "Convergence":
        hv = next(f for f in figs if f["layout"]["title"]["text"].startswith("Hypervolume"))
        ys = hv["data"][0]["y"]
        assert ys == sorted(ys) and ys[-1] > 0
    if tab == "Importance":
        assert set(figs[0]["data"][0]["y"]) == {"x", "y", "mode"}
    if tab == "Parallel coordinates":
        labels = [d["label"] for d in figs[0]["data"][0]["dimensions"]]
        assert labels[:3] == ["mode", "x", "y"] and "score" in labels


def test_feasibility_tab_lists_reasons_with_trial_numbers(app, storage):
    at = app("views/study.py", study="toy-run", tab="Feasibility")
    _, _, _, rows = study_rows(storage.url, "toy-run")
    frame = at.dataframe[0].value
    fmap = A.feasibility_map(rows)
    assert list(frame["trials"]) == [g.count for g in fmap.reasons]
    assert "RuntimeError: boom: evaluator bug" in set(frame["example"])
    failed = [r.number for r in rows if r.status == "failed"]
    boom = frame[frame["example"] == "RuntimeError: boom: evaluator bug"].iloc[0]
    assert boom["e.g. trials"] == ", ".join(str(n) for n in failed[:8])


def test_trials_tab_filters_sorts_and_pages(app, storage):
    at = app("views/study.py", study="serving-tpe", tab="Trials")
    _, _, objs, rows = study_rows(storage.url, "serving-tpe")
    table = at.dataframe[0].value
    assert len(table) == 50 and list(table["number"]) == list(range(50))
    at.multiselect(key="tt_out").set_value(["infeasible"])
    at.selectbox(key="tt_sort::serving-tpe").set_value("number")
    at.toggle(key="tt_desc").set_value(True)
    at.run()
    table = at.dataframe[0].value
    infeasible = [r.number for r in rows if A.outcome(r) == "infeasible"]
    assert list(table["number"]) == sorted(infeasible, reverse=True)[:50]
    assert all("exceeds" in r or "KV cache" in r for r in table["reason"])
    at.text_input(key="tt_text").input("KV cache").run()
    table = at.dataframe[0].value
    assert all(r.startswith("KV cache needs") for r in table["reason"]) and len(table) > 0


def test_pick_tab_best_under_limit_and_export(app, storage):
    at = app("views/study.py", study="serving-tpe", tab="Pick & export")
    _, _, objs, rows = study_rows(storage.url, "serving-tpe")
    at.selectbox(key="pk_m0").set_value("ttft_ms_p99").run()
    at.number_input(key="pk_v0_ttft_ms_p99").set_value(100.0).run()
    assert not at.exception
    best = A.pick_best(rows, objs[0], [A.Limit("ttft_ms_p99", "<=", 100.0)], objs)
    table = at.dataframe[0].value
    assert list(table["number"]) == [r.number for r in best]
    # export preview: the Pareto front's configs as JSON lines
    view = A.pareto_view(rows, objs, objs)
    preview = at.code[-1].value.splitlines()
    first = json.loads(preview[0])
    store = ReadOnlyStorage(storage.url)
    front_first = next(r for r in rows if r.number == view.front_numbers[0])
    assert first == store.trial_attrs([front_first.trial_id])[front_first.trial_id]["config"]
    assert len([ln for ln in preview if ln.startswith("{")]) == min(6, len(view.front))


def test_compare_page_shows_both_studies(app, storage):
    at = app("views/compare.py", studies="serving-tpe")
    # one study in the URL is not enough: the page asks for at least two
    assert any("at least two" in i.value for i in at.info)
    at = app("views/compare.py")
    summary = at.dataframe[0].value
    assert list(summary["study"]) == ["serving-tpe", "serving-random"]
    assert set(summary["sampler"]) == {"tpe", "random"}
    figs = figures(at)
    assert {t["name"] for t in figs[0]["data"]} >= {"serving-tpe front", "serving-random front"}
    hv = figs[1]["data"]
    assert [t["name"] for t in hv] == ["serving-tpe", "serving-random"]
    assert summary["hypervolume"].tolist() == pytest.approx([t["y"][-1] for t in hv])


def test_fidelity_page_pairs_simulator_and_measured_studies(app, storage):
    at = app("views/fidelity.py")
    at.selectbox(key="fid_pred").set_value("serving-tpe")
    at.selectbox(key="fid_meas").set_value("serving-gpu")
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    thr = table.set_index("metric").loc["throughput_tok_s"]
    assert thr["configs"] >= 20
    assert 5 < thr["bias %"] < 20  # the measured side is ~0.9x the simulator
    assert len(figures(at)) == 2


def test_fidelity_page_shows_a_ladder_round_by_round(app, storage):
    at = app("views/fidelity.py")
    at.radio(key="fid_mode").set_value(at.radio(key="fid_mode").options[1])
    at.run()
    at.selectbox(key="fid_one").set_value("toy-ladder")
    at.run()
    assert not at.exception
    rounds, pairs = at.dataframe[0].value, at.dataframe[1].value.set_index("metric")
    assert pairs.loc["latency_ms", "configs"] == 9  # three rounds of three
    assert list(rounds["round"]) == [1, 2, 3]
    assert list(rounds["measured"]) == [3, 3, 3]
    errors = list(rounds["latency_ms |error| %"])
    assert errors[0] > 30 and errors[-1] < 5  # recalibration from the measurements


def test_bench_page_renders_result_files(app, storage):
    at = app("views/bench.py")
    figs = figures(at)
    assert len(figs) == 1
    names = [t["name"] for t in figs[0]["data"] if t.get("name")]
    assert names == ["random (median of 3)", "tpe (median of 3)"]
    assert list(at.dataframe[0].value["sampler"]) == ["random", "tpe"]


def test_empty_and_missing_storages(tmp_path, monkeypatch):
    from optuna.storages import RDBStorage

    empty = tmp_path / "empty.db"
    RDBStorage(f"sqlite:///{empty}").engine.dispose()  # tables, no study
    monkeypatch.setenv(ENV_STORAGE, f"sqlite:///{empty}")
    for page in (None, "views/study.py", "views/compare.py", "views/fidelity.py"):
        at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT)
        at.run()
        if page:
            at.switch_page(page)
            at.run()
        assert not at.exception and not at.error
        assert at.info, page
    monkeypatch.setenv(ENV_STORAGE, f"sqlite:///{tmp_path / 'nope.db'}")
    at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT)
    at.run()
    assert "no database file" in at.error[0].value


def test_pages_write_nothing_to_the_storage(app, storage):
    before = storage.digest()
    files = sorted(p.name for p in storage.db.parent.iterdir())
    app()
    app("views/study.py", study="serving-tpe")
    for tab in ("Convergence", "Parallel coordinates", "Importance", "Feasibility", "Trials",
                "Pick & export"):
        app("views/study.py", study="toy-run", tab=tab)
    app("views/compare.py")
    app("views/fidelity.py")
    assert storage.digest() == before
    # and nothing beside it: no -wal/-shm files left by a read-only connection
    assert sorted(p.name for p in storage.db.parent.iterdir()) == files


def test_an_unknown_study_in_the_link_says_so(app):
    at = app("views/study.py", study="no-such-study")
    assert any("no study 'no-such-study'" in w.value for w in at.warning), \
        [w.value for w in at.warning]


def test_default_axes_are_the_objectives_also_after_another_study(app, storage):
    at = app("views/study.py", study="toy-run")
    at.selectbox(key="px::toy-run").set_value("cost")  # a choice on another study
    at.run()
    at.selectbox(key="pick_study").set_value("serving-3obj")
    at.run()
    assert not at.exception
    _, _, objs, _ = study_rows(storage.url, "serving-3obj")
    chosen = [at.selectbox(key=f"p{a}::serving-3obj").value for a in "xyz"]
    assert chosen == [o.metric for o in objs]


def test_integer_knobs_get_integer_ticks(app):
    at = app("views/study.py", study="toy-run", tab="Parallel coordinates")
    dims = {d["label"]: d for d in figures(at)[0]["data"][0]["dimensions"]}
    for knob in ("x", "y"):  # the toy's integer parameters
        ticks = dims[knob]["tickvals"]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert dims[knob]["ticktext"] == [str(int(t)) for t in ticks]


def test_the_bench_page_finds_the_shipped_results(app, storage, monkeypatch, tmp_path):
    monkeypatch.delenv("TUNER_BENCH_DIR")
    monkeypatch.chdir(tmp_path)  # no bench-results/ here: only the results tuner ships
    at = app("views/bench.py")
    assert not at.error, [e.value for e in at.error]
    files = at.selectbox(key="bench_file")
    shipped = next(f for f in files.options if f.endswith("tuner/bench/results/bench.json"))
    files.set_value(shipped)
    at.run()
    problems = at.selectbox(key="bench_problem").options
    assert "gemm-4096-bf16" in problems and len(problems) >= 9
    figs = figures(at)
    assert len(figs) == 1 and any("cost-model" in t.get("name", "") for t in figs[0]["data"])


def test_study_page_breaks_a_cross_domain_front_down_by_domain(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    study = tmp_path / "dep.toml"
    study.write_text('''name = "dep-small"
[space]
domain = "deployment"
[space.context]
model = "llama3.1-8b"
gpu = "h100_sxm"
num_gpus = 2
[space.context.workload]
mode = "poisson"
rate = 4.0
num_requests = 40
seed = 0
input_len = 256
output_len = 32
[[objectives]]
metric = "cost_usd_per_mtok"
direction = "minimize"
[[objectives]]
metric = "quality_drop"
direction = "minimize"
[sampler]
name = "random"
''')
    url = f"sqlite:///{tmp_path / 'd.db'}"
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(study), "--storage",
                           url, "--trials", "40", "--quiet"], capture_output=True, text=True,
                          cwd=repo, timeout=300, env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    monkeypatch.setenv(ENV_STORAGE, url)
    at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT)
    at.query_params["study"] = "dep-small"
    at.run()
    at.switch_page("views/study.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "Which domain moved each objective" for s in at.subheader)
    store, info, objs, rows = study_rows(url, "dep-small")
    expected = A.domain_breakdown(rows, info.attr("param_domains"), objs,
                                  A.pareto_view(rows, objs, objs).front_numbers)
    table = next(df.value for df in at.dataframe if "objective" in df.value.columns)
    assert list(table["objective"]) == [b.objective for b in expected]
