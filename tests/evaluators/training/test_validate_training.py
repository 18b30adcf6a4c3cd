"""`tuner validate training`: error targets against the published Megatron-LM runs.

A regression in the simulator's physics shows up here as a failed target.
"""

import csv
from pathlib import Path

import pytest

from evaluators.training import validation as validate_training
from tuner import registry

SHARED = Path(__file__).parents[4] / "shared" / "reference"


@pytest.fixture(scope="module")
def report():
    return validate_training.run()


def test_rows_per_metric(report):
    groups = report.groups()
    assert {m: len(r) for m, r in groups.items()} == {
        "tflops_per_gpu": 10, "iteration_time_s": 8, "weights_grads_optimizer_gib": 8,
        "activations_gib": 8}
    for row in report.rows:
        assert row.source and ("Narayanan" in row.source or "Korthikanti" in row.source)


def test_targets_mean_and_max(report):
    s = report.summary()
    assert s["tflops_per_gpu"]["mean_abs_error_pct"] <= 10
    assert s["tflops_per_gpu"]["max_abs_error_pct"] <= 20
    assert s["iteration_time_s"]["mean_abs_error_pct"] <= 10
    assert s["iteration_time_s"]["max_abs_error_pct"] <= 20
    for m in ("weights_grads_optimizer_gib", "activations_gib"):
        assert s[m]["mean_abs_error_pct"] <= 10
        assert s[m]["max_abs_error_pct"] <= 10
    assert report.meets_targets()


def test_published_runs_fit_in_memory(report):
    """The throughput and iteration-time runs really ran on 80 GB A100s."""
    for row in report.rows:
        if row.metric in ("tflops_per_gpu", "iteration_time_s"):
            assert row.case.endswith("(ok)"), row.case


def test_selective_recompute_is_faster_than_full(report):
    times = {r.case.split(" (")[0]: r.predicted for r in report.rows
             if r.metric == "iteration_time_s"}
    for model in ("megatron-22B", "gpt3-175B", "turing-530B", "megatron-1T"):
        assert times[f"{model} selective+sp"] < times[f"{model} full"]


def test_registered_for_the_cli():
    assert registry.resolve("domain", registry.VALIDATIONS, "training") is validate_training.run


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared reference tables not present")
@pytest.mark.parametrize("name, key", [
    ("megatron_gpt_weak_scaling_a100.csv", "tflops_per_gpu"),
    ("megatron_activation_recompute_a100.csv", "iteration_time_s"),
    ("megatron_activation_memory_a100.csv", "activations_gib"),
])
def test_copied_figures_match_the_shared_reference(name, key):
    def read(path):
        return list(csv.DictReader(ln for ln in path.read_text().splitlines()
                                   if ln and not ln.startswith("#")))
    ours = read(validate_training.DATA / name)
    theirs = read(SHARED / name)
    assert [r[key] for r in ours] == [r[key] for r in theirs]
