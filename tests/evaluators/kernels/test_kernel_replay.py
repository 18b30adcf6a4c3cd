"""kernel-replay on the table recorded with Triton's CPU interpreter (real measurements, not GPU
performance), the table schema, and the README analysis built on replay tables."""

from __future__ import annotations

import json

import optuna
import pytest

from tuner import BadInput, EvalResult
from tuner.benchmarks.kernel_analysis import markdown
from tuner.benchmarks.kernel_sweep import open_table
from tuner.evaluators.kernels import analyse, measurements_to_within, summary
from tuner.evaluators.kernels.replay import (
    DATA_DIR,
    SCHEMA,
    KernelReplayEvaluator,
    ReplayTable,
    resolve_table,
)
from tuner.search_spaces.kernels import GemmTileSpace
from tuner.testing import check_evaluator

CPU_TABLE = DATA_DIR / "cpu_interpreter.json"
SHAPE = {"m": 64, "n": 64, "k": 64, "dtype": "fp16", "gpu": "h100_sxm"}
#: the sub-space the CPU table records (warps and stages do nothing in the interpreter)
RECORDED = {"num_warps": {"fixed": 4}, "num_stages": {"fixed": 2},
            "group_m": {"choices": [1, 4]}, "split_k": {"choices": [1, 2]}}


@pytest.fixture(scope="module")
def table():
    return ReplayTable.load(CPU_TABLE)


@pytest.fixture(scope="module")
def ev():
    return KernelReplayEvaluator(table="cpu_interpreter")


def test_cpu_table_is_real_and_labelled(table):
    assert table.gpu is None and table.device == "cpu (TRITON_INTERPRET=1)"
    assert "NOT GPU performance" in table.timer
    assert {"torch", "triton", "python", "kernels"} <= set(table.software)
    from tuner.evaluators.kernels.gpu import kernels_digest

    assert table.software["kernels"] == kernels_digest(), (
        "evaluators/kernels/_triton.py changed since cpu_interpreter.json was recorded: "
        "re-record it with python -m tuner.benchmarks.kernel_sweep --suite cpu-tiny "
        "--interpret --overwrite --out evaluators/kernels/data/replay/cpu_interpreter.json")
    assert len(table.records) >= 100
    ok = [r for r in table.records if r["status"] == "ok"]
    assert len(ok) == len(table.records)
    for r in ok:
        assert 0 < r["time_us_p20"] <= r["time_us"] <= r["time_us_p80"]
        assert r["samples"] >= 3
    # measured, not synthetic: the times vary and bigger tiles interpret faster
    times = sorted(r["time_us"] for r in ok if r["shape"].get("m") == 64)
    assert times[-1] > 3 * times[0]


def test_recorded_configs_replay_exactly(table, ev):
    space = GemmTileSpace(SHAPE, RECORDED)
    configs = list(space.enumerate())
    assert len(configs) == len(table.shape_records("gemm", SHAPE))
    for cfg in configs:
        r = ev.evaluate(cfg)
        rec = table.lookup("gemm", SHAPE, cfg)
        assert r.status.value == "ok" and r.metrics["time_us"] == rec["time_us"]
        assert r.metrics["tflops"] == pytest.approx(2 * 64**3 / (rec["time_us"] * 1e-6) / 1e12)
        assert "pct_of_peak" not in r.metrics  # a CPU table has no GPU peak
        assert r.artifacts["device"] == "cpu (TRITON_INTERPRET=1)"
    check_evaluator(ev, configs[:10])


def test_unrecorded_config_is_a_clear_failure(ev):
    cfg = {**SHAPE, "block_m": 16, "block_n": 16, "block_k": 16, "group_m": 8,
           "num_warps": 4, "num_stages": 2, "split_k": 1}
    r = ev.evaluate(cfg)
    assert r.status.value == "failed"
    assert "was not recorded in replay table cpu_interpreter.json" in r.reason
    assert "'group_m': 8" in r.reason and "configs recorded for this shape" in r.reason


def test_unrecorded_shape_lists_what_is_recorded(ev):
    r = ev.evaluate({**SHAPE, "m": 128, "block_m": 16, "block_n": 16, "block_k": 16,
                     "group_m": 1, "num_warps": 4, "num_stages": 2, "split_k": 1})
    assert r.status.value == "failed" and "gemm m=128" in r.reason
    assert "recorded: gemm m=64 n=64 k=64 dtype=fp16" in r.reason


def test_table_selection_errors(tmp_path):
    cfg = {**SHAPE, "block_m": 16, "block_n": 16, "block_k": 16, "group_m": 1,
           "num_warps": 4, "num_stages": 2, "split_k": 1}
    with pytest.raises(BadInput, match="no replay table 'nope'; available: .*cpu_interpreter"):
        KernelReplayEvaluator(table="nope").evaluate(cfg)
    # by default the table is named after the config's GPU: none recorded for H100 here
    r = KernelReplayEvaluator().evaluate(cfg)
    assert r.status.value == "failed" and "no replay table for gpu 'h100_sxm'" in r.reason
    # a GPU table answers only configs for that GPU
    t = ReplayTable(device="NVIDIA A100-SXM4-80GB", gpu="a100_sxm_80gb", software={})
    t.add("gemm", SHAPE, cfg, EvalResult.ok({"time_us": 10.0}))
    path = tmp_path / "a100.json"
    t.save(path)
    r = KernelReplayEvaluator(table=str(path)).evaluate(cfg)
    assert r.status.value == "failed" and "recorded on 'a100_sxm_80gb'" in r.reason
    ok = KernelReplayEvaluator(table=str(path)).evaluate({**cfg, "gpu": "a100_sxm_80gb"})
    assert ok.metrics["pct_of_peak"] == pytest.approx(
        100 * 2 * 64**3 / 10e-6 / 312e12)


def test_round_trip_failures_and_baselines(tmp_path):
    t = ReplayTable(device="NVIDIA H100 80GB HBM3", gpu="h100_sxm", software={"triton": "x"})
    cfg = {**SHAPE, "block_m": 16, "block_n": 32, "block_k": 16, "group_m": 1,
           "num_warps": 4, "num_stages": 2, "split_k": 1}
    t.add("gemm", SHAPE, cfg, EvalResult.ok({"time_us": 8.0, "time_us_p20": 7.9,
                                             "time_us_p80": 8.2}, {"samples": 100}))
    t.add("gemm", SHAPE, {**cfg, "block_n": 64}, EvalResult.failed("OutOfResources: smem"))
    t.set_baseline("gemm", SHAPE, 6.0)
    path = tmp_path / "h100.json"
    t.save(path)
    back = ReplayTable.load(path)
    assert back.to_json() == t.to_json()
    ev = KernelReplayEvaluator(table=str(path))
    ok = ev.evaluate(cfg)
    assert ok.metrics["pct_of_cublas"] == pytest.approx(75.0)
    assert ok.metrics["torch_time_us"] == 6.0 and ok.metrics["time_us_p80"] == 8.2
    failed = ev.evaluate({**cfg, "block_n": 64})
    assert failed.status.value == "failed" and failed.reason == "OutOfResources: smem"
    # the fingerprint follows the table's content
    before = ev.fingerprint()
    t.set_baseline("gemm", SHAPE, 5.0)
    t.save(path)
    assert KernelReplayEvaluator(table=str(path)).fingerprint() != before


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(schema="tuner.kernel_replay/0"), "schema"),
    (lambda d: d.update(extra=1), "unknown key 'extra'"),
    (lambda d: d["records"][0].pop("config"), "missing 'block_m'"),
    (lambda d: d["records"][0].update(status="maybe"), "bad kernel or status"),
    (lambda d: d.pop("device"), "missing key 'device'"),
])
def test_strict_loader(tmp_path, mutate, match):
    data = json.loads(CPU_TABLE.read_text())
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput, match=match):
        ReplayTable.load(path)
    assert data.get("schema", SCHEMA)


def test_resuming_a_sweep_refuses_another_device(tmp_path):
    t = ReplayTable(device="NVIDIA H100 80GB HBM3", gpu="h100_sxm", software={"triton": "3.9"})
    path = tmp_path / "t.json"
    t.save(path)
    with pytest.raises(BadInput) as err:
        open_table(path, "NVIDIA H200", "h200_sxm", {"triton": "3.9"}, "", overwrite=False)
    assert err.value.field == "device"
    with pytest.raises(BadInput) as err:
        open_table(path, t.device, "h100_sxm", {"triton": "3.10"}, "", overwrite=False)
    assert err.value.field == "software"
    assert open_table(path, t.device, "h100_sxm", {"triton": "3.9"}, "", False).gpu == "h100_sxm"


def test_tpe_searches_the_recorded_numbers(table, ev):
    """The replay path end to end under a real sampler: every suggestion inside the recorded
    sub-space is answered from the table, and the study's best is a recorded time."""
    space = GemmTileSpace(SHAPE, RECORDED)
    recorded = sorted(r["time_us"] for r in table.shape_records("gemm", SHAPE))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        cfg = space.suggest(trial)
        if space.constraints(cfg):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        r = ev.evaluate(cfg)
        assert r.status.value == "ok", r.reason  # every valid config of the sub-space is there
        study.tell(trial, r.metrics["time_us"])
    assert study.best_value in recorded
    assert recorded.index(study.best_value) < len(recorded) // 10


def test_analysis_on_the_cpu_table():
    tbl, results = analyse(str(CPU_TABLE), random_trials=50)
    assert len(results) == 3
    for r in results:
        assert r.configs == r.ok > 0
        assert 0 < r.frac_to_3pct_model <= 1 and 0 < r.frac_to_3pct_random <= 1
        assert r.pct_of_torch is None  # no torch baseline on CPU
        assert 1 <= r.model_rank_of_best <= r.configs
    s = summary(results)
    assert s["shapes"] == 3 and -1 <= s["spearman_mean"] <= 1
    text = markdown(tbl, results)
    assert "NOT GPU results" in text  # interpreter timings are never shown as GPU figures


def test_measurements_to_within():
    recs = [{"status": "failed"}, {"status": "ok", "time_us": 10.0},
            {"status": "ok", "time_us": 5.1}, {"status": "ok", "time_us": 5.0}]
    assert measurements_to_within(recs, 5.0) == 3  # 5.1 is within 3% of 5.0
    assert measurements_to_within(recs[:2], 5.0) == 2  # never reached: the whole order


def test_resolve_table_accepts_names_and_paths():
    assert resolve_table("cpu_interpreter") == CPU_TABLE
    assert resolve_table(str(CPU_TABLE)) == CPU_TABLE
