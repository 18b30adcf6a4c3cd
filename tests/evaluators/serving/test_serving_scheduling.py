"""Per-engine scheduling physics: admission policies, prefill-only steps, CUDA graphs, overlap
schedulers, the serialized API front end and the steady state of a closed loop."""

import pytest

from tuner import BadInput
from tuner.evaluators._profiles import with_constants
from tuner.evaluators.serving._cluster import FrontEnd, simulate
from tuner.evaluators.serving._latency import StepModel
from tuner.evaluators.serving._plan import engine_memory, parse, plan_workload, problems
from tuner.evaluators.serving.sim import ServingSimEvaluator

EV = ServingSimEvaluator()
LONG = {"mode": "closed", "concurrency": 8, "num_requests": 48, "input_len": 20000,
        "output_len": 500}


def _sim(config, profile=None):
    plan = parse(config, profile)
    assert problems(plan) == []
    return plan, simulate(plan, plan_workload(plan))


@pytest.mark.parametrize("fraction", [0.35, 0.45])
def test_20k_prompts_preempt_on_vllm_but_never_on_tensorrt_llm(fraction):
    """vLLM admits a prompt when its chunk fits and preempts later; TensorRT-LLM's
    guaranteed-no-evict admission waits until the whole request fits."""
    base = {"model": "llama3.1-8b", "gpu": "h100_sxm", "workload": LONG}
    vllm_cfg = {**base, "gpu_memory_utilization": fraction}
    vllm = EV.evaluate(vllm_cfg).metrics
    # the same KV cache for TensorRT-LLM (its fraction is of the memory free after weights)
    plan = parse(vllm_cfg)
    mem = engine_memory(plan, 1, 1, 1)
    free = mem.usable / fraction - mem.weights - mem.activation - mem.non_torch
    # TensorRT-LLM takes prompts longer than max_num_tokens only with context chunking
    trt_cfg = {**base, "engine": "trtllm", "chunked_prefill": True,
               "gpu_memory_utilization": mem.kv / free}
    trt_plan, trt = _sim(trt_cfg)
    assert engine_memory(trt_plan, 1, 1, 1).kv == pytest.approx(mem.kv, rel=0.01)
    assert vllm["preemptions"] > 0
    assert trt.preemptions == 0 and trt.unfinished == 0
    # vLLM's preempted prompts find most of their blocks in the prefix cache when they come
    # back: no storm (without the cache, every preemption recomputes a 20k-token prompt)
    assert vllm["preemptions"] < 2 * LONG["num_requests"]
    no_cache = with_constants(EV.stack_profile(vllm_cfg), {"prefix_caching": False})
    stormy = EV.evaluate_with(vllm_cfg, no_cache).metrics
    assert stormy["preemptions"] > 5 * vllm["preemptions"]
    assert stormy["throughput_tok_s"] < 0.8 * vllm["throughput_tok_s"]


def test_guaranteed_no_evict_never_preempts_under_random_load():
    cfg = {"engine": "trtllm", "model": "llama3.1-8b", "gpu": "a100_sxm_80gb",
           "gpu_memory_utilization": 0.15,
           "workload": {"mode": "poisson", "rate": 20.0, "num_requests": 400, "seed": 3,
                        "input_len": {"dist": "uniform", "low": 100, "high": 6000},
                        "output_len": {"dist": "uniform", "low": 10, "high": 1500}}}
    _, res = _sim(cfg)
    assert res.preemptions == 0 and res.unfinished == 0
    assert all(e.free >= 0 for e in res.engines)
    # SGLang reserves only part of the running requests' output: fewer preemptions than
    # vLLM, but it may still retract
    vllm = EV.evaluate({**cfg, "engine": "vllm", "gpu_memory_utilization": 0.3}).metrics
    sgl = EV.evaluate({**cfg, "engine": "sglang", "gpu_memory_utilization": 0.3}).metrics
    assert sgl["preemptions"] < vllm["preemptions"]


@pytest.mark.parametrize("engine, mixed", [("sglang", False), ("vllm", True)])
def test_sglang_prefills_in_steps_of_their_own(engine, mixed, monkeypatch):
    seen = []
    original, decode = StepModel.step, StepModel.decode_step

    def spy(self, tokens, logits, seqs, dec_b, dec_kv, chunks, moe_tokens=None):
        seen.append((dec_b, len(chunks)))
        return original(self, tokens, logits, seqs, dec_b, dec_kv, chunks, moe_tokens)

    def spy_decode(self, b, kv_sum, moe_tokens=None):  # decode-only steps and stretches
        seen.append((b, 0))
        return decode(self, b, kv_sum, moe_tokens)

    monkeypatch.setattr(StepModel, "step", spy)
    monkeypatch.setattr(StepModel, "decode_step", spy_decode)
    _sim({"engine": engine, "model": "llama3.1-8b", "gpu": "h100_sxm",
          "workload": {"mode": "poisson", "rate": 8.0, "num_requests": 120, "seed": 1,
                       "input_len": {"dist": "uniform", "low": 500, "high": 12000},
                       "output_len": 100}})
    both = sum(1 for d, c in seen if d and c)
    assert any(c for _, c in seen) and any(d and not c for d, c in seen)
    assert (both > 0) == mixed


def test_decode_batches_run_padded_to_the_captured_graph_sizes():
    m = StepModel(parse({"model": "llama3.1-8b", "workload": LONG}), 1, 1, 1)
    assert [m.padded(b) for b in (1, 2, 3, 4, 5, 9, 16, 17)] == [1, 2, 4, 4, 8, 16, 16, 24]
    # 9 sequences compute 16 rows: their step is the 16-row step, less attention
    assert m.decode_step(9, 9 * 100) - m.attn_decode(9, 900) == pytest.approx(
        m.decode_step(16, 16 * 100) - m.attn_decode(16, 1600) - 7 * m.seq_us)
    # beyond the largest graph the step launches its kernels from the host
    small = {"hidden_size": 256, "num_layers": 24, "num_heads": 4, "num_kv_heads": 4,
             "ffn_hidden_size": 512, "vocab_size": 1000, "gated_mlp": True,
             "tied_embeddings": False, "attention": "mha", "workload": LONG}
    tiny = StepModel(parse(small), 1, 1, 1)
    eager = tiny.decode_step(tiny.graph_max + 8, 0.0) - tiny.overhead(tiny.graph_max + 8)
    graphed = tiny.decode_step(tiny.graph_max, 0.0) - tiny.overhead(tiny.graph_max)
    assert eager >= tiny.eager * (1 - 1e-9) > graphed
    # TensorRT-LLM does not pad: 1-31, 32, 64 and 128 replay graphs, 33 or 77 run eagerly
    trt = StepModel(parse({**small, "engine": "trtllm"}), 1, 1, 1)
    assert [trt.captured(b) for b in (1, 31, 32, 33, 64, 77, 128, 129)] == \
        [True, True, True, False, True, False, True, False]
    assert trt.padded(77) == 77
    assert trt.decode_step(33, 0.0) - trt.overhead(33) >= trt.eager * (1 - 1e-9)


def test_overlap_scheduler_hides_host_work_behind_the_gpu_step():
    cfg = {"model": "llama3.1-8b", "gpu": "h100_sxm",
           "workload": {"mode": "closed", "concurrency": 2, "num_requests": 6,
                        "input_len": 100, "output_len": 200}}
    out = {}
    for engine in ("vllm", "sglang"):
        prof = EV.stack_profile({**cfg, "engine": engine})
        for overlap in (False, True):
            p = with_constants(prof, {"cpu_overlap": overlap, "step_overhead_us": 20000.0,
                                      "per_seq_overhead_us": 0.0})
            out[engine, overlap] = EV.evaluate_with({**cfg, "engine": engine}, p).metrics[
                "tpot_ms_p50"]
        # host 20 ms >> GPU ~7 ms: overlapped, the step is the host time; serial, the sum
        assert out[engine, True] == pytest.approx(20.0, rel=0.02)
        assert out[engine, False] > out[engine, True] + 5


def test_async_scheduling_key_overrides_the_engines_default():
    cfg = {"model": "llama3.1-8b", "gpu": "h100_sxm",
           "workload": {"mode": "closed", "concurrency": 64, "num_requests": 128,
                        "input_len": 100, "output_len": 200}}
    tpot = {a: EV.evaluate({**cfg, "async_scheduling": a}).metrics["tpot_ms_p50"]
            for a in (False, True)}
    assert EV.evaluate(cfg).metrics["tpot_ms_p50"] == tpot[False]  # vLLM 0.11: off
    # vLLM's host time per running request (x 64) hides behind the GPU step
    host_ms = parse(cfg).c("per_seq_overhead_us") * 64 / 1e3
    assert tpot[True] < tpot[False] - 0.8 * host_ms
    sg = {**cfg, "engine": "sglang"}
    assert EV.evaluate(sg).metrics["tpot_ms_p50"] == \
        EV.evaluate({**sg, "async_scheduling": True}).metrics["tpot_ms_p50"]
    with pytest.raises(BadInput, match="async_scheduling: 'yes' must be true or false"):
        EV.evaluate({**cfg, "async_scheduling": "yes"})


def test_front_end_spaces_out_requests_sent_together():
    plan = parse({"model": "llama3.1-8b", "workload": LONG})
    fe = FrontEnd(plan)
    per = plan.c("frontend_ms_per_request") / 1e3 + plan.c("frontend_us_per_token") / 1e6 * 500
    reach = [fe.enter(0.0, 500) for _ in range(5)]
    gaps = [b - a for a, b in zip(reach, reach[1:])]
    assert gaps == pytest.approx([per] * 4)
    assert reach[0] == pytest.approx(per + plan.api_overhead_ms / 1e3)
    two = FrontEnd(parse({"model": "llama3.1-8b", "replicas": 2, "workload": LONG}))
    assert [two.enter(0.0, 500) for _ in range(2)] == pytest.approx([reach[0]] * 2)
    offline = FrontEnd(parse({"model": "llama3.1-8b", "offline": True, "workload": LONG}))
    assert [offline.enter(1.0, 500) for _ in range(3)] == [1.0, 1.0, 1.0]


ISSUE = {"model": "llama3.1-70b", "gpu": "h100_sxm", "tp": 8, "weight_dtype": "fp8",
         "workload": {"mode": "closed", "concurrency": 8, "num_requests": 80,
                      "input_len": 1024, "output_len": 1024}}


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_steady_state_ttft_at_moderate_concurrency_is_one_prefill_not_a_queue(engine):
    """Llama-3.1-70B fp8 on 8 H100, closed loop of 8, 1024/1024, warm-up excluded: each new
    request waits for at most the step in flight and one prefill, plus the front end; the
    ramp, where all 8 prompts arrive at once, queues them behind each other."""
    cfg = {**ISSUE, "engine": engine}
    ramp = EV.evaluate(cfg).metrics
    steady = EV.evaluate({**cfg, "workload": {**cfg["workload"], "warmup_requests": 8}})
    plan = parse(cfg)
    m = StepModel(plan, 8, 1, 1)
    one_prefill = m.step(1031, 8, 8, 7, 7 * 1500, [(1024, 1024)]) * 1e3
    front = plan.api_overhead_ms + plan.c("frontend_ms_per_request") \
        + plan.c("frontend_us_per_token") * 1024 / 1e3
    got = steady.metrics["ttft_ms_p50"]
    assert got < front + 2.5 * one_prefill
    assert got < 0.6 * ramp["ttft_ms_p50"]
    assert one_prefill < 60  # a 1024-token prefill of this model is tens of milliseconds
    offline = EV.evaluate({**cfg, "offline": True,
                           "workload": {**cfg["workload"], "warmup_requests": 8}}).metrics
    assert offline["ttft_ms_p50"] < 2.5 * one_prefill


V0_MS = {"model": "llama3.1-8b", "gpu": "a100_sxm_80gb", "chunked_prefill": False,
         "mixed_prefill": False, "max_num_batched_tokens": 4096, "max_num_seqs": 256,
         "workload": {"mode": "poisson", "rate": 6.0, "num_requests": 300, "seed": 3,
                      "input_len": 200, "output_len": 200}}


def test_multi_step_runs_split_host_work_and_make_arrivals_wait_for_the_run():
    one = EV.evaluate(V0_MS).metrics
    ten = EV.evaluate({**V0_MS, "num_scheduler_steps": 10}).metrics
    # one scheduler call per 10 decode steps: the host work per token shrinks
    assert ten["tpot_ms_p50"] < 0.95 * one["tpot_ms_p50"]
    # a request arriving mid-run waits for the run's end (vLLM V0 multi-step's TTFT)
    assert ten["ttft_ms_p50"] > one["ttft_ms_p50"] + 20
    plan = parse({**V0_MS, "num_scheduler_steps": 10})
    m = StepModel(plan, 1, 1, 1)
    full = StepModel(parse(V0_MS), 1, 1, 1)
    assert m.decode_step(64, 64 * 300) < full.decode_step(64, 64 * 300)
    # prefill steps still carry a whole scheduler call
    chunk = [(200, 200)]
    assert m.step(264, 65, 65, 64, 64 * 300, chunk) == full.step(264, 65, 65, 64, 64 * 300,
                                                                  chunk)
