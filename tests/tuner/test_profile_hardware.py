"""``tuner profile-hardware`` on this CPU: a profile file the simulators take in place of a
catalog GPU, with its raw measurements; a fit that recovers a known GEMM curve; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from tuner import BadInput
from tuner.evaluators._catalog import get_hardware
from tuner.evaluators._hardware_profile import _fit_gemm
from tuner.registry import make_evaluator

pytest.importorskip("torch")


def _tuner(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_profile_the_cpu_and_use_it_as_a_gpu_name(tmp_path):
    out = tmp_path / "cpu.toml"
    proc = _tuner("profile-hardware", "--out", str(out), "--quick", "--name", "this-cpu")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "TFLOP/s" in proc.stdout
    data = tomllib.loads(out.read_text())
    assert data["kind"] == "cpu" and data["name"] == "this-cpu"
    assert data["peak_tflops"]["fp32"] > 0 and data["hbm_tb_s"] > 0
    raw = json.loads(data["measurements"]["gemm"])
    assert {"m", "n", "k", "min_s", "median_s", "p20_s", "p80_s"} <= set(raw["fp32"][0])
    assert len(json.loads(data["measurements"]["allreduce"])) >= 2
    hw = get_hardware(str(out))
    assert hw.name == "this-cpu" and hw.efficiency["gemm_max"] == 1.0
    # the profile's path goes where a catalog GPU name goes
    res = make_evaluator("serving-sim").evaluate({
        "engine": "llama.cpp", "model": "smollm2-135m", "gpu": str(out), "max_num_seqs": 4,
        "workload": {"mode": "closed", "concurrency": 2, "num_requests": 4, "input_len": 64,
                     "output_len": 4}})
    assert res.status.value in ("ok", "infeasible"), res.reason
    tr = make_evaluator("training-sim").evaluate({
        "model": "llama3.1-8b", "gpu": str(out), "num_gpus": 2, "global_batch": 8,
        "seq_len": 512, "tp": 1, "pp": 1, "micro_batch": 1})
    assert tr.status.value in ("ok", "infeasible"), tr.reason


def test_the_gemm_fit_recovers_a_known_curve():
    peak, bw, k_peak, k_half, t0 = 2e12, 50e9, 0.7, 300.0, 4.0
    rows = []
    for m in (64, 256, 1024, 4096):
        for n, k in ((1024, 256), (2048, 1024), (4096, 4096)):
            e = min(1.0, k_peak * k / (k + k_half))
            t = max(2 * m * n * k / (peak * e), (m * k + k * n + m * n) * 2 / bw) + t0 * 1e-6
            rows.append({"m": m, "n": n, "k": k, "min_s": t})
    fit, err = _fit_gemm(rows, peak, bw, 2.0)
    assert err < 0.01
    assert fit["gemm_k_peak"] == pytest.approx(k_peak, rel=0.05)
    assert fit["gemm_k_half"] == pytest.approx(k_half, rel=0.1)


@pytest.mark.parametrize("args, field", [
    (["--out", "x.json"], "--out"),
    (["--out", "/no/such/dir/x.toml"], "--out"),
    (["--out", "x.toml", "--device", "tpu"], "--device"),
    (["--out", "x.toml", "--ranks", "0"], "--ranks"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, field):
    proc = _tuner("profile-hardware", *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {field}:") and proc.stderr.count("\n") == 1


def test_a_missing_profile_file_is_named(tmp_path):
    with pytest.raises(BadInput, match="no such hardware profile file.*tuner profile-hardware"):
        get_hardware(str(tmp_path / "nope.toml"))
