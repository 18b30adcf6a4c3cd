"""The deployment space: parameters by domain, constraints shared with deployment-sim, studies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tuner import BadInput, Status
from tuner.evaluators.deployment import DeploymentSimEvaluator
from tuner.search_spaces.deployment import DeploymentSpace

REPO = Path(__file__).resolve().parents[2]
WL = {"mode": "poisson", "rate": 2.0, "num_requests": 40, "seed": 0,
      "input_len": {"dist": "uniform", "low": 64, "high": 512}, "output_len": 32}
CTX = {"model": "llama3.1-70b", "gpu": ["h100_sxm", "h200_sxm"], "num_gpus": 8, "workload": WL,
       "slo_ttft_ms": 2000.0, "slo_tpot_ms": 100.0}


def test_parameters_are_grouped_by_domain():
    space = DeploymentSpace({**CTX, "search_tiles": True})
    domains = space.domain_of()
    assert set(domains.values()) == {"serving plan", "quantization", "scheduler", "kernels"}
    assert domains["gpu"] == "serving plan" and domains["kv_bits"] == "quantization"
    assert domains["decode_block_k"] == "kernels"
    assert "search_tiles" not in space.context
    assert "decode_block_k" not in DeploymentSpace(CTX).params


def test_constraints_refuse_before_simulating_and_agree_with_the_evaluator():
    space = DeploymentSpace(CTX)
    ev = DeploymentSimEvaluator()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_bad = seen_ok = 0
    for _ in range(40):
        trial = study.ask()
        cfg = space.suggest(trial)
        reasons = space.constraints(cfg)
        if reasons:
            seen_bad += 1
            r = ev.evaluate(cfg)
            assert r.status is Status.INFEASIBLE
        else:
            seen_ok += 1
        study.tell(trial, 0.0)
    assert seen_bad and seen_ok


def test_mix_that_does_not_fit_this_tp_has_its_numbers():
    space = DeploymentSpace({**CTX, "gpu": "h100_sxm"})
    cfg = space.config({"disaggregated": False, "tp": 1, "pp": 1, "replicas": 1,
                        **{f"{r}_bits": 16 for r in ("qkv", "attn_out", "mlp_up", "mlp_down")}})
    reasons = space.constraints(cfg)
    assert any("GiB per GPU" in r and "weights" in r for r in reasons), reasons


@pytest.mark.parametrize("bad, field", [({"search_tiles": "yes"}, "search_tiles"),
                                        ({"zz": 1}, "zz"), ({"gpu": []}, "gpu"),
                                        ({"engine": "llama.cpp"}, "engine")])
def test_bad_context_names_the_field(bad, field):
    with pytest.raises(BadInput, match=field):
        DeploymentSpace({**CTX, **bad})


@pytest.mark.parametrize("study", ["deployment-llama70b-h100-h200-bursty",
                                   "deployment-qwen3-235b-h200"])
def test_shipped_study_runs_end_to_end(study, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    url = f"sqlite:///{tmp_path / 'd.db'}"
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "run",
                          str(REPO / "studies" / f"{study}.toml"), "--storage", url,
                          "--trials", "12"], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "12 trials this run" in out.stdout
    storage = optuna.storages.RDBStorage(url)
    study_id = storage.get_study_id_from_name(study)
    assert "tp" in storage.get_study_user_attrs(study_id)["tuner.param_domains"]
