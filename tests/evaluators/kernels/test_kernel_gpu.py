"""kernel-gpu: the Triton kernels are checked in Triton's CPU interpreter; GPU timing tests are
marked ``gpu`` and skipped where no CUDA device is present.

Triton picks interpreter mode when it is first imported, so the interpreter checks run in one
subprocess started with ``TRITON_INTERPRET=1`` (whatever this test process imported before).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuner import BadInput
from tuner.evaluators.kernels.gpu import NO_GPU, TOLERANCE, KernelGpuEvaluator

GEMM = {"kernel": "gemm", "m": 48, "n": 64, "k": 96, "dtype": "fp16", "gpu": "h100_sxm",
        "block_m": 16, "block_n": 32, "block_k": 32, "group_m": 4, "num_warps": 4,
        "num_stages": 2, "split_k": 2}
ATTN = {"kernel": "attention", "batch": 1, "heads": 2, "seq_len": 40, "head_dim": 32,
        "dtype": "fp16", "causal": True, "gpu": "h100_sxm", "block_m": 32, "block_n": 16,
        "num_warps": 4, "num_stages": 2}

INTERPRETER_CHECKS = textwrap.dedent('''
    import json, sys, torch
    from tuner.evaluators.kernels import _triton as tk
    from tuner.evaluators.kernels.gpu import KernelGpuEvaluator, max_rel_error, reference_attention

    out = {"interpreting": tk.interpreting(), "gemm": [], "attention": []}
    torch.manual_seed(0)
    # (m, n, k, dtype, block_m, block_n, block_k, group_m, split_k): ragged edges, every dtype,
    # GROUP_M swizzles with several row groups, split-K with an empty last split
    for m, n, k, dt, bm, bn, bk, g, sk in [
            (40, 70, 90, "fp32", 16, 32, 32, 4, 1), (33, 48, 100, "tf32", 16, 16, 32, 2, 3),
            (50, 40, 64, "fp16", 16, 16, 16, 4, 2), (48, 80, 72, "bf16", 32, 16, 16, 1, 1),
            (20, 64, 128, "fp8", 16, 32, 32, 8, 2)]:
        a = torch.randn(m, k).to(tk.TORCH_DTYPES[dt])
        b = torch.randn(k, n).to(tk.TORCH_DTYPES[dt])
        c = tk.gemm(a, b, dt, bm, bn, bk, g, 4, 2, sk)
        err = max_rel_error(c, a.double() @ b.double())
        out["gemm"].append({"case": [m, n, k, dt, bm, bn, bk, g, sk], "dtype": dt,
                            "out_dtype": str(c.dtype), "err": err})
    for dt, causal, (bt, h, s, d, bm, bn) in [
            ("fp16", True, (1, 2, 50, 32, 32, 16)), ("fp16", False, (2, 1, 37, 16, 16, 32)),
            ("bf16", True, (1, 1, 64, 64, 64, 32)), ("bf16", False, (1, 2, 100, 16, 32, 32))]:
        q, k_, v = (torch.randn(bt, h, s, d).to(tk.TORCH_DTYPES[dt]) for _ in range(3))
        o = tk.attention_fwd(q, k_, v, causal, bm, bn, 4, 2)
        out["attention"].append({"case": [dt, causal, bt, h, s, d, bm, bn], "dtype": dt,
                                 "err": max_rel_error(o, reference_attention(q, k_, v, causal))})

    gemm_cfg, attn_cfg = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    ev = KernelGpuEvaluator(interpret=True, cpu_reps=1)
    out["eval_gemm"] = ev.evaluate(gemm_cfg).to_json(artifacts=True)
    out["eval_attention"] = ev.evaluate(attn_cfg).to_json(artifacts=True)
    out["environment"] = ev.environment()

    real_gemm = tk.gemm
    tk.gemm = lambda *a, **kw: real_gemm(*a, **kw).mul_(1.01)  # 1% off: must be caught
    out["eval_wrong"] = ev.evaluate(gemm_cfg).to_json()
    def unwritten(a, b, dtype, out=None, **kw):  # a kernel that never stores its result
        return out
    tk.gemm = unwritten
    out["eval_unwritten"] = ev.evaluate(gemm_cfg).to_json()
    def boom(*a, **kw):
        raise RuntimeError("out of resources: shared memory, Required: 262144, Hardware "
                           "limit: 232448")
    tk.gemm = boom
    out["eval_raises"] = ev.evaluate(gemm_cfg).to_json()
    tk.gemm = real_gemm

    from tuner.benchmarks import kernel_sweep
    rc = kernel_sweep.main(["--suite", "cpu-tiny", "--interpret", "--max-configs", "1",
                            "--cpu-reps", "1", "--out", sys.argv[3]])
    out["sweep_rc"] = rc
    print("RESULT " + json.dumps(out))
''')


@pytest.fixture(scope="module")
def interp(tmp_path_factory):
    table = tmp_path_factory.mktemp("sweep") / "cpu.json"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", INTERPRETER_CHECKS, json.dumps(GEMM), json.dumps(ATTN),
         str(table)], env=env, capture_output=True, text=True, timeout=600,
        cwd=Path(__file__).resolve().parents[3])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    out = json.loads(line[-1][len("RESULT "):])
    out["table_path"] = str(table)
    return out


def test_interpreter_mode_is_active(interp):
    assert interp["interpreting"] is True


def test_gemm_kernel_matches_torch_for_every_dtype(interp):
    assert [r["dtype"] for r in interp["gemm"]] == ["fp32", "tf32", "fp16", "bf16", "fp8"]
    for r in interp["gemm"]:
        assert r["err"] <= TOLERANCE[("gemm", r["dtype"])], r
    assert interp["gemm"][-1]["out_dtype"] == "torch.bfloat16"  # fp8 writes bf16


def test_attention_kernel_matches_torch(interp):
    for r in interp["attention"]:
        assert r["err"] <= TOLERANCE[("attention", r["dtype"])], r


def test_evaluator_in_interpreter_mode(interp):
    for key in ("eval_gemm", "eval_attention"):
        r = interp[key]
        assert r["status"] == "ok", r
        assert r["metrics"]["time_us"] > 0 and r["metrics"]["tflops"] > 0
        # CPU timings are labelled and never compared with a GPU peak or with cuBLAS
        assert r["artifacts"]["device"] == "cpu (TRITON_INTERPRET=1)"
        assert "pct_of_peak" not in r["metrics"] and "pct_of_cublas" not in r["metrics"]
        assert r["artifacts"]["max_rel_error"] <= 2e-2
    assert interp["environment"]["device"] == "cpu (TRITON_INTERPRET=1)"


def test_wrong_results_are_failed_before_any_time_is_accepted(interp):
    for key in ("eval_wrong", "eval_unwritten"):
        r = interp[key]
        assert r["status"] == "failed" and r["reason"].startswith("wrong result"), r
        assert r["metrics"] == {}
    assert "inf" in interp["eval_unwritten"]["reason"]  # NaN-filled output never passes


def test_kernel_errors_become_failed(interp):
    r = interp["eval_raises"]
    assert r["status"] == "failed"
    assert r["reason"].startswith("RuntimeError: out of resources: shared memory")


def test_sweep_records_a_labelled_table(interp):
    from tuner.evaluators.kernels.replay import ReplayTable

    assert interp["sweep_rc"] == 0
    table = ReplayTable.load(interp["table_path"])
    assert table.gpu is None and table.device == "cpu (TRITON_INTERPRET=1)"
    assert "NOT GPU performance" in table.timer
    assert len(table.records) == 3 and all(r["status"] == "ok" for r in table.records)


# -- without a GPU (this process imported Triton however it did) -----------------------------
def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="a GPU is present")
def test_no_gpu_is_a_failed_result_not_a_crash():
    ev = KernelGpuEvaluator()
    for cfg in (GEMM, ATTN):
        r = ev.evaluate(cfg)
        assert r.status.value == "failed" and r.reason == NO_GPU
    assert ev.environment()["device"] == "none"


def test_tile_rules_apply_before_any_device_check():
    ev = KernelGpuEvaluator()
    r = ev.evaluate({**GEMM, "block_m": 128})  # m = 48 pads to 64
    assert r.status.value == "infeasible" and "larger than the problem" in r.reason
    r = ev.evaluate({**ATTN, "block_m": 16, "block_n": 32})
    assert r.status.value == "infeasible" and "block_m % block_n" in r.reason
    r = ev.evaluate({**GEMM, "block_k": "32"})
    assert r.status.value == "infeasible" and "block_k" in r.reason


@pytest.mark.parametrize("bad", [{"m": 0}, {"dtype": "int4"}, {"gpu": "v100"}])
def test_bad_shapes_raise(bad):
    with pytest.raises(BadInput):
        KernelGpuEvaluator().evaluate({**GEMM, **bad})


def test_fingerprint_covers_software():
    env = KernelGpuEvaluator().environment()
    assert {"torch", "triton", "device"} <= set(env)


# -- on a GPU ---------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_gemm_is_checked_timed_and_compared_with_cublas():
    import torch

    name = torch.cuda.get_device_name()
    from tuner.benchmarks.kernel_sweep import detect_gpu

    gpu = detect_gpu(name) or "h100_sxm"
    cfg = {"kernel": "gemm", "m": 1024, "n": 1024, "k": 1024, "dtype": "bf16", "gpu": gpu,
           "block_m": 128, "block_n": 128, "block_k": 64, "group_m": 8, "num_warps": 4,
           "num_stages": 3, "split_k": 1}
    r = KernelGpuEvaluator(rep_ms=20).evaluate(cfg)
    assert r.status.value == "ok", r.reason
    m = r.metrics
    assert m["time_us_p20"] <= m["time_us"] <= m["time_us_p80"]
    assert 0 < m["pct_of_peak"] < 100 and m["pct_of_cublas"] > 0
    assert r.artifacts["max_rel_error"] <= TOLERANCE[("gemm", "bf16")]


@pytest.mark.gpu
def test_gpu_attention_and_split_k():
    import torch

    from tuner.benchmarks.kernel_sweep import detect_gpu

    gpu = detect_gpu(torch.cuda.get_device_name()) or "h100_sxm"
    ev = KernelGpuEvaluator(rep_ms=20)
    attn = {"kernel": "attention", "batch": 2, "heads": 8, "seq_len": 1024, "head_dim": 64,
            "dtype": "bf16", "causal": True, "gpu": gpu, "block_m": 128, "block_n": 64,
            "num_warps": 4, "num_stages": 2}
    r = ev.evaluate(attn)
    assert r.status.value == "ok" and "pct_of_sdpa" in r.metrics, r.reason
    skinny = {"kernel": "gemm", "m": 16, "n": 1024, "k": 8192, "dtype": "fp16", "gpu": gpu,
              "block_m": 16, "block_n": 64, "block_k": 128, "group_m": 1, "num_warps": 4,
              "num_stages": 3, "split_k": 8}
    r = ev.evaluate(skinny)
    assert r.status.value == "ok", r.reason
