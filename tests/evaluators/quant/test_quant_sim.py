"""quant-sim: memory against hand-computed sizes and published KV figures, roofline timing,
the sensitivity proxy, speed, and bad input."""

import random
import time

import pytest

from tuner import BadInput, UnknownName
from tuner.evaluators._catalog import get_hardware
from tuner.evaluators.quant._plan import MINILM, minilm_sensitivity, resolve_target, uniform_config
from tuner.evaluators.quant.sim import QuantSimEvaluator
from tuner.search_spaces.quantization import QuantSpace

LLAMA = {"model": "llama3.1-70b", "gpu": "h100_sxm", "batch_size": 1, "prompt_len": 1024,
         "output_len": 256}
SIM = QuantSimEvaluator()


def _uniform(weight, act=16, kv=16, **ctx):
    t = resolve_target(ctx.get("model", LLAMA["model"]))
    return {**LLAMA, **ctx, **uniform_config(t, weight, act, kv)}


def _llama70b_params():
    h, f, v, layers = 8192, 28672, 128256, 80
    per_layer = h * (64 + 2 * 8) * 128 + 64 * 128 * h + 3 * h * f
    return layers * per_layer, 2 * v * h, layers * 2 * h + h  # linears, embed+head, norms


def test_weight_memory_matches_hand_count():
    linears, embed, norms = _llama70b_params()
    res = SIM.evaluate(_uniform("int4-g128", gpus=1))
    want = (linears * (4 + 32 / 128) + embed * (4 + 32 / 128) + norms * 16) / 8 / 2**30
    assert res.metrics["model_size_gib"] == pytest.approx(want, rel=1e-3)
    res = SIM.evaluate(_uniform("bf16", gpus=2))
    assert res.metrics["model_size_gib"] == pytest.approx(
        (linears + embed + norms) * 2 / 2**30, rel=1e-9)


@pytest.mark.parametrize("model, tokens, gib", [
    ("llama3.1-70b", 128000, 39.06), ("llama3.1-70b", 16000, 4.88),
    ("llama3.1-8b", 128000, 15.62), ("llama3.1-8b", 1024, 0.125)])
def test_kv_cache_matches_published_fp16_sizes(model, tokens, gib):
    # Hugging Face, "Llama 3.1 - 405B, 70B & 8B with multilinguality and long context" (2024),
    # table "KV cache size (FP16)" (values in GiB)
    cfg = _uniform("int4-g128", model=model, prompt_len=tokens - 1, output_len=1, gpus=8,
                   gpu="h200_sxm")
    res = SIM.evaluate(cfg)
    assert res.metrics["kv_cache_gib"] == pytest.approx(gib, abs=0.006)
    res8 = SIM.evaluate({**cfg, "kv_bits": 8})
    assert res8.metrics["kv_cache_gib"] == pytest.approx(res.metrics["kv_cache_gib"] / 2)


def test_bf16_70b_does_not_fit_one_h100():
    res = SIM.evaluate(_uniform("bf16"))
    assert res.status.value == "infeasible"
    weights = sum(_llama70b_params()) * 2 / 2**30
    kv = 1280 * 80 * 2 * 8 * 128 * 2 / 2**30  # prompt + output tokens, fp16 K and V
    assert f"needs {weights + kv:.1f} GiB per GPU ({weights:.1f} weights + {kv:.1f} KV), " \
        "has 72.0 GiB (90% of 80 GiB h100_sxm)" == res.reason


def test_decode_is_weight_streaming_at_batch_one():
    hw = get_hardware("h100_sxm")
    for weight in ("int8", "int4-g128"):
        res = SIM.evaluate(_uniform(weight))
        bytes_ = res.metrics["model_size_gib"] * 2**30
        floor_ms = bytes_ / (hw.hbm_tb_s * 1e12) * 1e3
        # above the peak-bandwidth floor; at most ~85% achieved bandwidth plus <= 10 us of
        # fixed cost for each of the 5 kernels (4 GEMMs + attention) of the 80 layers
        assert floor_ms < res.metrics["latency_ms"] < floor_ms / 0.85 + 80 * 5 * 0.010


def test_low_bits_decode_faster_and_w8a8_prefills_faster():
    r = {w: SIM.evaluate(_uniform(w, gpus=2)).metrics for w in ("bf16", "int8", "int4-g128")}
    assert r["int4-g128"]["latency_ms"] < r["int8"]["latency_ms"] < r["bf16"]["latency_ms"]
    a16 = SIM.evaluate(_uniform("int8", batch_size=8)).metrics
    a8 = SIM.evaluate(_uniform("int8", act=8, batch_size=8)).metrics
    assert a8["prefill_ms"] < 0.75 * a16["prefill_ms"]  # int8 tensor cores: 2x bf16 peak
    assert a8["latency_ms"] == pytest.approx(a16["latency_ms"], rel=0.05)  # decode: bytes


def test_tensor_parallel_splits_memory_and_adds_all_reduce():
    one = SIM.evaluate(_uniform("int8")).metrics
    two = SIM.evaluate(_uniform("int8", gpus=2)).metrics
    assert two["memory_gib"] == pytest.approx(one["memory_gib"] / 2, rel=0.01)
    assert one["latency_ms"] / 2 < two["latency_ms"] < one["latency_ms"]


def test_proxy_is_the_sum_of_measured_unit_drops_on_minilm():
    sens = minilm_sensitivity()
    base = sens[(-2, "base", "bf16")]
    cfg = {"model": MINILM, "pin": {"layer2.mlp_down": "int4-g32", "embed": "int8"}}
    got = SIM.evaluate(cfg).metrics["quality_drop"]
    assert got == pytest.approx(base + sens[(2, "mlp_down", "int4-g32")]
                                + sens[(-1, "embed", "int8")], rel=1e-9)
    a8 = SIM.evaluate({**cfg, "act_bits": 8}).metrics["quality_drop"]
    assert a8 - got == pytest.approx(sens[(2, "mlp_down", "int4-g128+a8")]
                                     - sens[(2, "mlp_down", "int4-g128")], rel=1e-6)


def test_proxy_orders_formats_and_transfers_to_llms():
    q = {w: SIM.evaluate(_uniform(w, gpus=2)).metrics["quality_drop"]
         for w in ("bf16", "int8", "int4-g32", "int4-g128")}
    assert q["bf16"] < q["int8"] < q["int4-g32"] < q["int4-g128"]
    mini = SIM.evaluate(uniform_config(resolve_target(MINILM), "int4-g128")).metrics
    assert q["int4-g128"] == pytest.approx(mini["quality_drop"], rel=1e-6)


def test_one_evaluation_takes_under_a_millisecond():
    space = QuantSpace({"model": "llama3.1-70b", "batch_size": 8})
    rng = random.Random(0)
    cfgs = [space.sample(rng) for _ in range(300)]
    for c in cfgs[:20]:
        SIM.evaluate(c)
    best = float("inf")
    for _ in range(3):  # best of 3 passes: the machine is shared
        t0 = time.perf_counter()
        for c in cfgs:
            SIM.evaluate(c)
        best = min(best, (time.perf_counter() - t0) / len(cfgs))
    assert best < 1e-3


def test_budgets_are_infeasible_not_errors():
    res = SIM.evaluate({**_uniform("int8"), "max_size_gib": 40})
    assert res.status.value == "infeasible"
    assert "exceeds max_size_gib 40" in res.reason and res.metrics["model_size_gib"] > 40


def test_bad_input_raises_with_allowed_values():
    with pytest.raises(UnknownName, match="config: unknown 'qkv_bit' \\(did you mean "
                                          "'qkv_bits'\\?\\)"):
        SIM.evaluate({**LLAMA, "qkv_bit": 8})
    with pytest.raises(BadInput, match="qkv_bits: unsupported weight bit width 2; "
                                       "allowed: 16, 8, 4"):
        SIM.evaluate({**LLAMA, "qkv_bits": 2})
    with pytest.raises(BadInput, match="mlp_up_group: unsupported 4-bit group size 256"):
        SIM.evaluate({**LLAMA, "mlp_up_bits": 4, "mlp_up_group": 256})
    with pytest.raises(BadInput, match="kv_bits: unsupported value 2; allowed: 16, 8, 4"):
        SIM.evaluate({**LLAMA, "kv_bits": 2})
    with pytest.raises(UnknownName, match="model: unknown 'gpt-9'"):
        SIM.evaluate({"model": "gpt-9"})
    with pytest.raises(BadInput, match="unknown layer name 'layer80.qkv'"):
        SIM.evaluate({**LLAMA, "pin": {"layer80.qkv": "int8"}})


def test_hawq_greedy_meets_the_budget_and_beats_uniform_on_the_proxy():
    from tuner.benchmarks.quant_results import hawq_greedy
    from tuner.evaluators.quant._plan import build_plan, size_gib

    target = resolve_target(MINILM)
    uniform = uniform_config(target, "int4-g128")
    budget = size_gib(build_plan(uniform, target))
    mix = hawq_greedy(target, budget, {"model": MINILM})
    res = SIM.evaluate(mix).metrics
    assert res["model_size_gib"] <= budget
    assert res["quality_drop"] < SIM.evaluate(uniform).metrics["quality_drop"]
    assert {"int4-ch", "int4-g128"} <= set(mix["pin"].values())  # a real mix, not uniform
