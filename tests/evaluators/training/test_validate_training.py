"""`tuner validate training`: per-stack errors against published runs, fit/validation split.

A regression in the simulator's physics shows up here as a failed target.
"""

import csv
from pathlib import Path

import pytest

from tuner import registry
from tuner.evaluators.training import _reference
from tuner.evaluators.training import validation as validate_training
from tuner.evaluators.training._profile import FRAMEWORKS, framework_profile

SHARED = Path(__file__).parents[4] / "shared" / "reference"


@pytest.fixture(scope="module")
def report():
    return validate_training.run()


def test_megatron_a100_tables_keep_their_targets(report):
    groups = report.groups()
    assert {m: len(groups[m]) for m in validate_training.TARGETS} == {
        "tflops_per_gpu": 10, "iteration_time_s": 8, "weights_grads_optimizer_gib": 8,
        "activations_gib": 8}
    s = report.summary()
    for metric, (mean, worst) in validate_training.TARGETS.items():
        assert s[metric]["mean_abs_error_pct"] <= mean
        assert s[metric]["max_abs_error_pct"] <= worst


def test_every_stack_group_has_fit_and_validation_rows_from_other_sources(report):
    refs = list(_reference.references())
    by_split = {}
    for r in refs:
        by_split.setdefault((r.group, r.split), set()).add(r.file)
    for group in ("megatron-dense", "moe", "pytorch-native", "deepspeed"):
        fit, val = by_split.get((group, "fit"), set()), by_split.get((group, "validation"))
        assert val, group
        assert not fit & val  # a source either fitted constants or only validates
    for r in refs:
        assert r.source and r.group in _reference.GROUPS + ("other",)
        if r.split == "fit":
            assert r.fits, r.file  # a fit file names the constants it fitted
        assert r.meta.get("framework", "").split(",")[0].strip() in FRAMEWORKS


def test_group_medians_meet_what_is_enforced(report):
    med = report.medians()
    for group, limit in validate_training.CHECK_LIMITS.items():
        assert med[validate_training.throughput_metric(group, "validation")] <= limit, group
    assert report.meets_targets()


def test_one_moe_layer_against_megatron_layer_benchmark(report):
    """Router, dispatch, experts and shared expert of one layer: 12 measured cases."""
    groups, med = report.groups(), report.medians()
    for metric in validate_training.MOE_LAYER_METRICS:
        assert len(groups[metric]) == 12
        assert med[metric] <= 15.0, metric
    assert any(n.startswith("one MoE layer") for n in report.notes)


def test_dispatch_transfer_against_the_megatron_core_benchmark(report):
    """Table 7 of the Megatron-Core MoE report: NCCL all-to-all and HybridEP on H100, EP 8-64,
    against the transfer model at the links' bandwidths (no stack efficiency)."""
    rows = report.groups()[validate_training.MOE_DISPATCH_METRIC]
    assert len(rows) == 16
    for prefix, limit in (("a2a_", 10.0), ("hybridep_", 12.0)):
        errs = sorted(abs(r.error_pct) for r in rows if r.case.startswith(prefix))
        assert len(errs) == 8 and (errs[3] + errs[4]) / 2 <= limit, prefix
    assert any(n.startswith("MoE dispatch and combine alone") for n in report.notes)
    # the shipped deepep_efficiency is these rows' fit
    shipped = framework_profile("megatron")["deepep_efficiency"]
    assert validate_training.deepep_fit(report.rows) == pytest.approx(shipped, abs=0.005)


def test_no_published_run_is_called_infeasible(report):
    assert report.infeasible == []
    assert any("called infeasible or rejected: 0" in n for n in report.notes)


def test_source_definitions_convert_reference_figures():
    """NeMo's GPT formula reproduces its own tokens/s from its TFLOP/s (24.07 table)."""
    from tuner.evaluators._catalog import get_model

    m = get_model("llama2-7b")
    per_token = _reference.nemo_flops_per_token(m, 4096)
    assert 780e12 / per_token == pytest.approx(16934, rel=0.01)
    q = get_model("qwen3-235b-a22b")
    full = _reference.megatron_flops_per_token(q, 4096)
    assert 6 * 22e9 < full < 6 * 26e9  # ~22B active parameters, plus attention


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


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared reference tables not present")
def test_dgxc_rows_are_the_shared_reference():
    theirs = list(csv.DictReader(ln for ln in (SHARED / "dgxc_h100_training.csv").read_text()
                                 .splitlines() if ln and not ln.startswith("#")))
    ours = _reference.read(_reference.DATA / "dgxc_h100_megatron.csv")
    assert [r.refs["ref_tokens_per_s"] for r in ours] == [float(r["tokens_per_s"])
                                                          for r in theirs]


def test_leave_one_source_out_never_refits_on_the_held_out_source():
    splits = validate_training.leave_one_out("megatron")
    assert len(splits) >= 3
    for file, held, rest, names in splits:
        assert held and all(r.file == file for r in held)
        assert all(r.file != file and r.split == "fit" for r in rest)
        # constants only the held-out source names are not refitted without it
        assert names == sorted({c for r in rest for c in r.fits})
    by_file = {f: names for f, _, _, names in splits}
    assert "a2a_efficiency" not in by_file["dgxc_h100_moe.csv"]
    assert "moe_imbalance" not in by_file["modelzoo_qwen3_longctx_h100.csv"]
