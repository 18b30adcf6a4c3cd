"""serving-sim with engine = "llama.cpp": llama-server's knobs on a CPU hardware profile."""

from pathlib import Path

import pytest

from tuner import BadInput
from tuner.evaluators._catalog import get_model
from tuner.evaluators.serving._cpu_latency import CpuStepModel
from tuner.evaluators.serving._cpu_plan import embedding_dtype, kv_bytes_per_token, weight_bytes
from tuner.evaluators.serving._engines import LLAMA_CPP, NOT_ENGINE_KEYS, SINGLE_INSTANCE
from tuner.evaluators.serving._plan import LLAMA_CPP_KEYS, parse
from tuner.evaluators.serving.sim import ServingSimEvaluator
from tuner.search_spaces.serving import CPU_EXAMPLE

EV = ServingSimEvaluator()
LOAD = {"mode": "closed", "concurrency": 8, "num_requests": 48, "warmup_requests": 8,
        "input_len": 256, "output_len": 64}
BASE = {"engine": "llama.cpp", "model": "smollm2-135m", "gpu": CPU_EXAMPLE, "workload": LOAD}


def ok(config):
    res = EV.evaluate(config)
    assert res.status.value == "ok", res.reason
    return res.metrics


def test_the_knobs_are_exactly_serving_reals_llama_server_flags():
    knobs = set(LLAMA_CPP_KEYS) - set(NOT_ENGINE_KEYS) - set(SINGLE_INSTANCE)
    # every knob is a flag (weight_dtype maps to none: it describes the GGUF file)
    assert knobs == set(LLAMA_CPP.flags)


def test_smollm2_catalog_entry_matches_its_config_and_the_gguf_size():
    m = get_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (m.hidden_size, m.num_layers, m.num_heads, m.num_kv_heads, m.ffn_hidden_size,
            m.vocab_size, m.head_dim, m.tied_embeddings) == (576, 30, 9, 3, 1536, 49152, 64,
                                                             True)
    # the packaged Q4_1 GGUF: q4_1 layers (5 bits per weight) and a q8_0 tied embedding,
    # 98,362,432 bytes with its header and vocabulary
    assert embedding_dtype("q4_1", m) == "q8_0"
    assert weight_bytes(m, "q4_1") == pytest.approx(106_168_320 * 5 / 8 + 28_311_552 * 34 / 32)
    assert weight_bytes(m, "q4_1") == pytest.approx(98_362_432, rel=0.03)
    assert kv_bytes_per_token(m, "f16") == 2 * 30 * 3 * 64 * 2
    assert kv_bytes_per_token(m, "q8_0") == pytest.approx(kv_bytes_per_token(m, "f16") * 17 / 32)


def test_defaults_follow_llama_server():
    plan = parse(BASE)
    assert (plan.max_num_seqs, plan.max_num_batched_tokens, plan.ubatch_size) == (4, 2048, 512)
    assert (plan.kv_dtype, plan.weight_dtype, plan.flash_attn) == ("f16", "q4_1", True)
    assert plan.kv_cache_tokens == 8192 and plan.threads == plan.threads_batch == 2
    assert parse({**BASE, "max_num_batched_tokens": 128}).ubatch_size == 128  # clamped


@pytest.mark.parametrize("config, field", [
    ({**BASE, "kv_block_size": 16}, "kv_block_size"),
    ({**BASE, "engine": "vllm", "threads": 2}, "threads"),
    ({k: v for k, v in BASE.items() if k != "gpu"}, "gpu"),
    ({**BASE, "gpu": "h100_sxm"}, "gpu"),
    ({**BASE, "kv_dtype": "fp8"}, "kv_dtype"),
    ({**BASE, "threads": 0}, "threads"),
])
def test_foreign_or_bad_keys_are_refused(config, field):
    with pytest.raises(BadInput) as err:
        EV.evaluate(config)
    assert err.value.field == field


@pytest.mark.parametrize("extra, why", [
    ({"tp": 2}, "llama-server runs one process on one device"),
    ({"chunked_prefill": False}, "always splits prompts"),
    ({"kv_dtype": "q4_0", "flash_attn": False}, "only with flash attention"),
    ({"kv_cache_tokens": 256}, "the 256-token context"),
])
def test_configs_llama_server_cannot_run_are_infeasible(extra, why):
    res = EV.evaluate({**BASE, **extra})
    assert res.status.value == "infeasible" and why in res.reason


def test_a_cache_too_small_for_the_running_slots_overflows():
    """llama-server admits into free slots whatever the unified cache holds and fails every
    request when it fills: the simulated peak says so."""
    fits = ok({**BASE, "max_num_seqs": 4, "kv_cache_tokens": 2048})
    assert fits["kv_peak_tokens"] <= 2048
    res = EV.evaluate({**BASE, "max_num_seqs": 8, "kv_cache_tokens": 1024})
    assert res.status.value == "infeasible" and "Context size has been exceeded" in res.reason


def test_slots_batch_requests_and_threads_share_the_cores():
    one = ok({**BASE, "max_num_seqs": 1})
    eight = ok({**BASE, "max_num_seqs": 8})
    assert eight["throughput_tok_s"] > 1.5 * one["throughput_tok_s"]
    assert eight["ttft_ms_p50"] < one["ttft_ms_p50"]  # no queue for a slot
    single = ok({**BASE, "max_num_seqs": 8, "threads": 1, "threads_batch": 1})
    over = ok({**BASE, "max_num_seqs": 8, "threads": 8, "threads_batch": 8})
    assert single["throughput_tok_s"] < eight["throughput_tok_s"]
    assert over["throughput_tok_s"] < eight["throughput_tok_s"]  # 8 threads on 2 cores


def test_oversubscribed_threads_wait_at_every_barrier_at_the_same_rate():
    two = CpuStepModel(parse({**BASE, "threads_batch": 2}))
    four = CpuStepModel(parse({**BASE, "threads_batch": 4}))  # on 2 cores
    extra = four.decode_step(2, 0) - two.decode_step(2, 0)
    assert extra == pytest.approx(two.nodes * 35e-6)  # 35 us per op, 1 extra thread per core
    # the cores' rate is unchanged: a bigger pass costs the same fixed wait more
    assert four.decode_step(8, 0) - two.decode_step(8, 0) == pytest.approx(extra)


def test_ubatch_bounds_the_tokens_per_pass():
    plan = parse({**BASE, "ubatch_size": 64})
    m = CpuStepModel(plan)
    # a 512-token prompt runs as 8 passes, each streaming the weights once
    assert m.step(512, 1, 1, 0, 0, [(512, 512)]) > m.step(64, 1, 1, 0, 0, [(64, 64)]) * 7
    big = CpuStepModel(parse({**BASE, "ubatch_size": 512}))
    assert big._passes(512, 1) < m._passes(512, 1)


def test_without_flash_attention_every_token_scans_the_whole_unified_cache():
    fa = CpuStepModel(parse(BASE))
    no_fa = CpuStepModel(parse({**BASE, "flash_attn": False}))
    # 8 decoding slots holding 4000 cells: flash attention scores each slot's own cells,
    # without it each token scores all of them (8x the work; both read the cells once)
    assert no_fa.decode_step(8, 4000) - no_fa.decode_step(8, 0) > \
        3 * (fa.decode_step(8, 4000) - fa.decode_step(8, 0))


def test_quantized_kv_needs_fewer_bytes_and_fits_more():
    small = {**BASE, "max_num_seqs": 8, "kv_cache_tokens": 2600}
    assert ok({**small, "kv_dtype": "q8_0"})["kv_peak_tokens"] == ok(small)["kv_peak_tokens"]
    plan = parse(small)
    assert plan.kv_cache_tokens * kv_bytes_per_token(plan.model, "q4_0") < \
        plan.kv_cache_tokens * kv_bytes_per_token(plan.model, "f16") / 3


def test_ram_too_small_is_infeasible(tmp_path):
    text = Path(CPU_EXAMPLE).read_text().replace("hbm_gib = 23.54", "hbm_gib = 0.05")
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(text)
    res = EV.evaluate({**BASE, "gpu": str(tiny)})
    assert res.status.value == "infeasible" and "GiB of RAM" in res.reason


def test_calibration_fits_the_cpu_constants_from_measured_runs(tmp_path):
    """The llama.cpp profile's constants are meant to be fitted to serving-real runs: runs
    simulated with a known weight bandwidth and matmul efficiency are fitted back to them."""
    import json

    from tuner.evaluators._calibration import calibrate, read_rows
    from tuner.evaluators._profiles import with_constants

    truth = with_constants(EV.stack_profile(BASE), {"weight_bandwidth_efficiency": 3.0,
                                                    "matmul_efficiency": 0.5})
    lines = []
    for slots, n_in in ((1, 64), (1, 512), (2, 256), (4, 128), (8, 256), (8, 32)):
        cfg = {**BASE, "max_num_seqs": slots, "workload": {**LOAD, "input_len": n_in}}
        m = EV.evaluate_with(cfg, truth).metrics
        lines.append({"config": cfg, "metrics": {k: m[k] for k in ("ttft_ms_p50",
                                                                   "tpot_ms_p50")}})
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    report = calibrate(EV, read_rows(path), ["weight_bandwidth_efficiency",
                                             "matmul_efficiency"])
    assert report.fitted["weight_bandwidth_efficiency"] == pytest.approx(3.0, rel=0.15)
    assert report.fitted["matmul_efficiency"] == pytest.approx(0.5, rel=0.15)
    assert report.loo_after["tpot_ms_p50"] < 0.05 < report.loo_before["tpot_ms_p50"]


def test_a_closed_loop_stays_in_lock_step_without_a_front_end_to_space_it():
    """llama-server's users that finish together send together: with a batch that takes all
    8 prompts at once they are prefilled together every time (measured on this CPU: TTFT
    6.6 s at --batch-size 2048 against 2.0 s at 512, TPOT 56 ms against 134 ms)."""
    whole = ok({**BASE, "max_num_seqs": 8, "max_num_batched_tokens": 2048})
    pairs = ok({**BASE, "max_num_seqs": 8, "max_num_batched_tokens": 512})
    assert whole["ttft_ms_p50"] > 1.8 * pairs["ttft_ms_p50"]
    assert whole["tpot_ms_p50"] < 0.6 * pairs["tpot_ms_p50"]
    # every wave waits for the same whole-batch prefill
    assert whole["ttft_ms_p99"] == pytest.approx(whole["ttft_ms_p50"], rel=0.05)


def test_a_shipped_cpu_profile_is_found_from_any_directory(tmp_path, monkeypatch):
    # studies name it from the project root; `tuner init` copies them anywhere
    monkeypatch.chdir(tmp_path)
    plan = parse({"engine": "llama.cpp", "model": "smollm2-135m",
                  "gpu": "evaluators/serving/data/cpu_example.toml",
                  "workload": {"mode": "closed", "concurrency": 1, "num_requests": 2,
                               "input_len": 16, "output_len": 4}})
    assert plan.hw.kind == "cpu"
    with pytest.raises(BadInput, match="no such hardware profile file"):
        parse({"engine": "llama.cpp", "model": "smollm2-135m", "gpu": "nowhere/cpu.toml",
               "workload": {"mode": "closed", "concurrency": 1, "num_requests": 2,
                            "input_len": 16, "output_len": 4}})
