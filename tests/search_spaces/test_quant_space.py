"""The quantization search space: size, conditions, budgets and bad input."""

import math
import random

import pytest

from tuner import BadInput, UnknownName
from tuner.evaluators.quant._plan import (
    MINILM,
    avg_bits,
    build_plan,
    depth_profile,
    minilm_sensitivity,
    resolve_target,
    sensitivity_order,
    size_gib,
    uniform_config,
)
from tuner.search_spaces.quantization import QuantSpace


def test_minilm_space_is_compact_and_enumerable():
    space = QuantSpace({"model": MINILM})
    # 7 weight choices per group (bf16, int8, fp8, int4 x 4 groups) ^ 4 groups x embed 3
    # x act 2 x protect 3; no KV cache in an encoder
    assert space.size() == 7**4 * 3 * 2 * 3 == 43218
    assert "kv_bits" not in space.params


def test_llm_space_adds_kv_bits_and_study_narrows_below_50k():
    from pathlib import Path

    from tuner.spec import load_spec

    assert "kv_bits" in QuantSpace({"model": "llama3.1-70b"}).params
    spec = load_spec(Path(__file__).parents[2] / "studies" / "quant-llama70b-h100.toml")
    space = QuantSpace(spec.space.context, spec.space.params)
    assert space.size() == 5**4 * 3 * 2 * 3 * 3 == 33750


def test_conditional_parameters_follow_bit_width():
    space = QuantSpace({"model": MINILM})
    for cfg in (space.sample(random.Random(s)) for s in range(40)):
        for role in ("qkv", "attn_out", "mlp_up", "mlp_down"):
            assert (f"{role}_format" in cfg) == (cfg[f"{role}_bits"] == 8)
            assert (f"{role}_group" in cfg) == (cfg[f"{role}_bits"] == 4)


def test_protect_raises_the_most_sensitive_layers_one_step():
    target = resolve_target(MINILM)
    cfg = {**uniform_config(target, "int4-g128", act_bits=8), "protect_frac": 0.25}
    plan = build_plan(cfg, target)
    sens = minilm_sensitivity()
    per_layer = [sum(sens[(i, r, "int4-g128")] for r in ("qkv", "attn_out", "mlp_up",
                                                          "mlp_down")) for i in range(6)]
    expected = sorted(sorted(range(6), key=lambda i: -per_layer[i])[:2])  # round(0.25 * 6)
    assert list(plan.protected) == expected
    for i in range(6):
        fmt, act = plan.unit(i, "mlp_down")
        assert (fmt, act) == (("int8", 16) if i in expected else ("int4-g128", 8))


def test_llm_sensitivity_order_uses_resampled_profile():
    prof = depth_profile(80)
    assert math.isclose(sum(prof) / 80, 1.0)
    order = sensitivity_order(resolve_target("llama3.1-70b"))
    assert prof[order[0]] == max(prof) and prof[order[-1]] == min(prof)


def test_depth_bands_give_each_band_its_own_formats():
    space = QuantSpace({"model": MINILM, "depth_bands": 2})
    assert {"qkv_bits_b0", "qkv_bits_b1"} <= set(space.params)
    cfg = space.config({"qkv_bits_b0": 4, "qkv_group_b0": 32, "qkv_bits_b1": 8,
                        "qkv_format_b1": "fp8"})
    plan = build_plan(cfg)
    assert [plan.unit(i, "qkv")[0] for i in range(6)] == ["int4-g32"] * 3 + ["fp8"] * 3


def test_features_match_the_plan():
    space = QuantSpace({"model": MINILM})
    cfg = space.sample(random.Random(3))
    f = space.features(cfg)
    plan = build_plan(cfg)
    assert f["avg_bits"] == pytest.approx(avg_bits(plan))
    assert f["model_size_gib"] == pytest.approx(size_gib(plan))
    assert f["frac_params_16bit"] + f["frac_params_8bit"] + f["frac_params_4bit"] == \
        pytest.approx(1.0)


def test_budget_constraint_reports_numbers():
    space = QuantSpace({"model": MINILM, "max_avg_bits": 6.0})
    bf16 = space.config(uniform_config(space.target, "bf16"))
    [reason] = space.constraints(bf16)
    assert "16.000 bits/parameter exceeds max_avg_bits 6" in reason
    int4 = space.config(uniform_config(space.target, "int4-g128"))
    assert space.constraints(int4) == []


def test_unreachable_budget_names_the_closest_feasible_one():
    target = resolve_target(MINILM)
    smallest = size_gib(build_plan(uniform_config(target, "int4-ch")))
    with pytest.raises(BadInput) as err:
        QuantSpace({"model": MINILM, "max_size_gib": 0.001})
    msg = str(err.value)
    assert msg.startswith("space.context.max_size_gib: 0.001 GiB cannot be met")
    assert f"smallest needs {smallest:.4g} GiB" in msg and "closest feasible budget" in msg
    # narrowing the space raises the floor: bf16 / int8 only
    with pytest.raises(BadInput, match="closest feasible budget: max_avg_bits = 8.1"):
        QuantSpace({"model": MINILM, "max_avg_bits": 5},
                   {f"{r}_bits": {"choices": [16, 8]} for r in
                    ("qkv", "attn_out", "mlp_up", "mlp_down")} | {"embed_bits": {"fixed": 8}})


def test_bad_inputs_name_field_value_and_allowed():
    with pytest.raises(UnknownName, match="unknown 'llama-70b'.*valid: .*llama3.1-70b"):
        QuantSpace({"model": "llama-70b"})
    with pytest.raises(BadInput, match=r"qkv_bits.choices: unsupported bit width 3; "
                                       r"allowed: 16, 8, 4"):
        QuantSpace({"model": MINILM}, {"qkv_bits": {"choices": [8, 3]}})
    with pytest.raises(BadInput, match=r"pin.layer9.qkv: unknown layer name 'layer9.qkv' "
                                       r"\(did you mean 'layer5.qkv'\?\); valid: layer0..layer5"):
        QuantSpace({"model": MINILM, "pin": {"layer9.qkv": "int8"}})
    with pytest.raises(BadInput, match=r"pin.embed: unsupported format 'int3'; allowed: bf16"):
        QuantSpace({"model": MINILM, "pin": {"embed": "int3"}})
    with pytest.raises(UnknownName, match="space.context: unknown 'batch'"):
        QuantSpace({"model": MINILM, "batch": 4})
    with pytest.raises(UnknownName, match="space.params"):
        QuantSpace({"model": MINILM}, {"mlp_gate_bits": {"choices": [4]}})
