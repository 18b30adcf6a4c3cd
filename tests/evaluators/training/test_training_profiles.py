"""Stack profiles: the framework key, profile files, schema errors, bands, calibration."""

import json

import pytest

from tuner import BadInput, UnknownName
from tuner.evaluators._calibration import Row, calibrate
from tuner.evaluators._profiles import with_constants
from tuner.evaluators.training._profile import FRAMEWORKS, SCHEMA, framework_profile
from tuner.evaluators.training.sim import TrainingSimEvaluator

EV = TrainingSimEvaluator()
L8 = {"model": "llama3.1-8b", "gpu": "h100_sxm", "num_gpus": 16, "seq_len": 4096,
      "global_batch": 64, "micro_batch": 1, "zero_stage": 3, "recompute": "full"}


def ok(cfg, ev=EV):
    res = ev.evaluate(cfg)
    assert res.status.value == "ok", res.reason
    return res


def test_every_shipped_profile_meets_the_schema_and_names_its_sources():
    for fw in FRAMEWORKS:
        prof = framework_profile(fw)
        assert set(prof.constants) == set(SCHEMA)
        assert prof.fit_bounds, fw  # what calibration may move
        text = open(prof.path).read()
        assert "source" in text and "#" in text


def test_framework_selects_the_stack():
    rates = {fw: ok({**L8, "framework": fw}).metrics["tokens_per_s"] for fw in FRAMEWORKS}
    # eager PyTorch FSDP moves more element-wise bytes and pays host time per layer
    assert rates["megatron"] > rates["fsdp"]
    assert ok({**L8, "framework": "torchtitan", "compile": True}).metrics["tokens_per_s"] \
        > rates["torchtitan"]
    assert ok({**L8, "framework": "torchtitan"}).artifacts["profile"] == "torchtitan"
    assert ok(L8).artifacts["profile"] == "megatron"  # the default


def test_unknown_framework_names_the_allowed_values():
    with pytest.raises(UnknownName) as err:
        EV.evaluate({**L8, "framework": "jax"})
    assert err.value.field == "framework"
    for fw in FRAMEWORKS:
        assert fw in str(err.value)


def _write(tmp_path, body):
    path = tmp_path / "p.toml"
    path.write_text(body)
    return str(path)


def test_profile_option_overrides_and_enters_the_fingerprint(tmp_path):
    slow = _write(tmp_path, 'base = "megatron"\n[constants]\ngemm_efficiency = 0.5\n')
    ev = TrainingSimEvaluator(profile=slow)
    assert ok(L8, ev).metrics["tokens_per_s"] < 0.8 * ok(L8).metrics["tokens_per_s"]
    fp = ev.fingerprint()
    (tmp_path / "p.toml").write_text('base = "megatron"\n[constants]\ngemm_efficiency = 0.6\n')
    assert TrainingSimEvaluator(profile=slow).fingerprint() != fp  # content, not the path


@pytest.mark.parametrize("body, field", [
    ('base = "megatron"\n[constants]\ngemm_speed = 1.0\n', "constants.gemm_speed"),
    ('base = "megatron"\n[constants]\nfsdp_overlap = 1.5\n', "constants.fsdp_overlap"),
    ('base = "megatron"\n[constants]\nattention_kernel = "fa9"\n', "constants.attention_kernel"),
    ('base = "tensorflow"\n', "base"),
    ('base = "megatron"\nconstants = 5\n', "profile.constants"),
    ('base = "megatron"\n[uncertainty]\ntokens_per_sec = 0.1\n', "profile.uncertainty"),
])
def test_bad_profile_files_name_the_constant(tmp_path, body, field):
    ev = TrainingSimEvaluator(profile=_write(tmp_path, body))
    with pytest.raises(BadInput) as err:
        ev.evaluate(L8)
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_a_profile_for_another_framework_than_the_config_states_is_refused(tmp_path):
    ev = TrainingSimEvaluator(profile=_write(tmp_path, 'base = "megatron"\n'))
    assert ok(L8, ev).metrics  # a config that names no framework runs under the profile
    with pytest.raises(BadInput, match="refines the 'megatron' profile but the config's "
                       "framework is 'fsdp'"):
        ev.evaluate({**L8, "framework": "fsdp"})


def test_a_stack_without_pipeline_stages_refuses_pp():
    res = EV.evaluate({**L8, "framework": "fsdp", "pp": 4})
    assert res.status.value == "infeasible"
    assert res.reason == "pp 4: the fsdp stack has no pipeline parallelism"
    assert ok({**L8, "framework": "torchtitan", "pp": 4}).metrics  # torch pipelining


def test_missing_constant_is_named():
    base = framework_profile("megatron")
    from types import MappingProxyType

    from tuner.evaluators._profiles import Profile

    consts = {k: v for k, v in base.constants.items() if k != "fragmentation"}
    broken = Profile("megatron", "training", MappingProxyType(consts))
    with pytest.raises(BadInput, match="fragmentation: missing"):
        EV.evaluate_with(L8, broken)


def test_uncertainty_gives_bands(tmp_path):
    path = _write(tmp_path, 'base = "megatron"\n[constants]\ngemm_efficiency = 0.95\n'
                  "[uncertainty]\ntokens_per_s = 0.1\n")
    res = ok(L8, TrainingSimEvaluator(profile=path))
    a, v = res.artifacts, res.metrics["tokens_per_s"]
    assert a["tokens_per_s_lo"] < v < a["tokens_per_s_hi"]
    assert "step_time_s_lo" not in a  # only metrics the profile has a spread for
    assert "tokens_per_s_lo" not in ok(L8).artifacts  # shipped profiles carry none


def test_calibration_contract_recovers_a_constant():
    """Rows simulated with a known gemm_efficiency: calibration moves towards it."""
    base = EV.stack_profile(L8)
    truth = with_constants(base, {"gemm_efficiency": 0.75})
    rows = []
    for i, (n, mb) in enumerate(((16, 1), (32, 2), (64, 1), (16, 2), (32, 1), (64, 2))):
        cfg = {**L8, "num_gpus": n, "micro_batch": mb, "global_batch": 128}
        rows.append(Row(cfg, {"tokens_per_s": EV.evaluate_with(cfg, truth)
                              .metrics["tokens_per_s"]}, f"row {i}"))
    report = calibrate(EV, rows, ["gemm_efficiency"])
    # calibration's prior holds constants near the shipped 1.0; the rows pull it to 0.75
    assert 0.75 <= report.fitted["gemm_efficiency"] < 0.96
    assert report.loo_after["tokens_per_s"] < report.loo_before["tokens_per_s"]
    assert EV.profile_domain == "training"
    assert json.dumps(sorted(report.fitted))  # plain data, writable to a profile file


def test_a_study_whose_framework_the_profile_does_not_refine_stops_before_its_first_trial(
        tmp_path, capsys):
    from conftest import write_toml

    from tuner.cli import main

    prof = _write(tmp_path, 'base = "megatron"\n')
    study = write_toml(tmp_path / "s.toml", {
        "name": "mismatch", "seed": 0,
        "space": {"domain": "training", "context": {
            "model": "llama3.1-8b", "gpu": "h100_sxm", "num_gpus": 16, "seq_len": 4096,
            "global_batch": 64, "framework": "fsdp"}},
        "evaluator": {"name": "training-sim", "options": {"profile": prof}},
        "objectives": [{"metric": "tokens_per_s", "direction": "maximize"}],
        "budget": {"trials": 2}})
    assert main(["run", study, "--storage", f"sqlite:///{tmp_path / 't.db'}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config's framework is 'fsdp'" in err[0], err
