"""kernel-gemm and kernel-attention spaces: context checks, narrowing, constraints, features."""

from __future__ import annotations

import math
import random

import optuna
import pytest

from tuner import BadInput, UnknownName
from tuner.evaluators._catalog import get_hardware
from tuner.search_spaces.kernels import (
    AttentionTileSpace,
    GemmTileSpace,
    attention_reasons,
    gemm_reasons,
    occupancy,
)
from tuner.testing import check_space

H100 = get_hardware("h100_sxm")
GEMM = {"m": 4096, "n": 4096, "k": 4096, "dtype": "bf16", "gpu": "h100_sxm"}
ATTN = {"batch": 1, "heads": 64, "seq_len": 8192, "head_dim": 128, "dtype": "bf16",
        "causal": True, "gpu": "h100_sxm"}


def tile(**kw):
    base = {"block_m": 128, "block_n": 128, "block_k": 64, "group_m": 8, "num_warps": 8,
            "num_stages": 3, "split_k": 1}
    return {**GEMM, "kernel": "gemm", **base, **kw}


@pytest.mark.parametrize("ctx", [GEMM, {**GEMM, "m": 1, "dtype": "fp8"}])
def test_gemm_space_contract(ctx):
    check_space(GemmTileSpace(ctx))


def test_attention_space_contract():
    check_space(AttentionTileSpace(ATTN))


@pytest.mark.parametrize("field, value", [("m", 0), ("n", -3), ("k", 2.5), ("m", True),
                                          ("k", "4096")])
def test_non_positive_or_non_integer_sizes_are_bad_input(field, value):
    with pytest.raises(BadInput) as err:
        GemmTileSpace({**GEMM, field: value})
    assert err.value.field == field and repr(value) in str(err.value)


def test_unsupported_dtype_lists_allowed_values():
    with pytest.raises(BadInput, match="allowed: bf16, fp16, fp8, fp32, tf32") as err:
        GemmTileSpace({**GEMM, "dtype": "int4"})
    assert err.value.field == "dtype"
    # A100 has no fp8 tensor cores: the message names the GPU and what it supports
    with pytest.raises(BadInput, match="a100_sxm_80gb"):
        GemmTileSpace({**GEMM, "dtype": "fp8", "gpu": "a100_sxm_80gb"})
    with pytest.raises(BadInput, match="allowed: bf16, fp16"):
        AttentionTileSpace({**ATTN, "dtype": "fp32"})


def test_attention_context_errors():
    with pytest.raises(BadInput, match="head_dim: 96 is not supported; allowed: 16, 32, 64"):
        AttentionTileSpace({**ATTN, "head_dim": 96})
    with pytest.raises(BadInput) as err:
        AttentionTileSpace({**ATTN, "seq_len": 0})
    assert err.value.field == "seq_len"
    with pytest.raises(BadInput, match="causal"):
        AttentionTileSpace({**ATTN, "causal": "yes"})
    with pytest.raises(UnknownName, match="h100_sxm"):
        AttentionTileSpace({**ATTN, "gpu": "h100x"})
    with pytest.raises(BadInput, match="unknown key 'seqlen'"):
        AttentionTileSpace({**ATTN, "seqlen": 4})


def test_blocks_are_narrowed_to_the_problem():
    decode = GemmTileSpace({**GEMM, "m": 1})
    assert decode.params["block_m"].choices == (16,)
    assert decode.params["block_n"].choices == (16, 32, 64, 128, 256)
    small = GemmTileSpace({**GEMM, "m": 100, "n": 33, "k": 40})
    assert small.params["block_m"].choices == (16, 32, 64, 128)  # 100 pads to 128
    assert small.params["block_n"].choices == (16, 32, 64)
    assert small.params["split_k"].choices == (1, 2)  # ceil(40 / 16) = 3 K tiles at most
    fp8 = GemmTileSpace({**GEMM, "dtype": "fp8"})
    assert 16 not in fp8.params["block_k"].choices  # fp8 MMAs take K in steps of 32
    short = AttentionTileSpace({**ATTN, "seq_len": 40})
    assert short.params["block_m"].choices == (16, 32, 64)


def test_a_pinned_tile_larger_than_the_problem_is_bad_input():
    with pytest.raises(BadInput, match="larger than the problem") as err:
        GemmTileSpace({**GEMM, "m": 16}, {"block_m": {"fixed": 128}})
    assert err.value.field == "space.params.block_m"
    with pytest.raises(BadInput, match="every choice"):
        AttentionTileSpace({**ATTN, "seq_len": 50}, {"block_n": {"choices": [128, 256]}})
    # a narrower override inside the problem is fine
    space = GemmTileSpace({**GEMM, "m": 16}, {"block_n": {"choices": [64, 128]}})
    assert space.params["block_n"].choices == (64, 128)


def test_shared_memory_rule_gives_the_numbers():
    reasons = gemm_reasons(H100, 4096, 4096, 4096, "bf16", 256, 256, 128, 8, 5, 1)
    smem = [r for r in reasons if r.startswith("shared memory")]
    # 5 stages x (256*128 + 128*256) x 2 bytes = 640 KiB
    assert smem == ["shared memory: needs 640.0 KiB per block, h100_sxm allows 227 KiB"]


def test_register_rule():
    # 256x256 fp32 accumulator over 4 warps: 512 registers per thread
    reasons = gemm_reasons(H100, 4096, 4096, 4096, "bf16", 256, 256, 16, 4, 1, 1)
    assert any(r.startswith("registers: needs ~") and "limit 255" in r for r in reasons)
    # 128x128 over 4 warps: 128 accumulator + 16 operand + 24 other registers fit
    assert gemm_reasons(H100, 4096, 4096, 4096, "bf16", 128, 128, 32, 4, 3, 1) == []


def test_tile_rules():
    reasons = gemm_reasons(H100, 64, 64, 64, "bf16", 16, 16, 32, 4, 2, 4)
    assert reasons == ["split_k 4 > 2 K tiles (K=64, block_k=32): some splits would have no "
                       "work"]
    assert gemm_reasons(H100, 64, 64, 64, "fp8", 16, 16, 16, 4, 2, 1) == [
        "block_k 16 < 32: fp8 tl.dot needs K tiles of at least 32"]
    causal = attention_reasons(H100, 4096, 128, "bf16", True, 32, 64, 4, 2)
    assert causal and "block_m % block_n == 0" in causal[0]
    assert attention_reasons(H100, 4096, 128, "bf16", False, 32, 64, 4, 2) == []
    assert "not one of" in gemm_reasons(H100, 64, 64, 64, "bf16", 48, 16, 16, 4, 2, 1)[0]


def test_enumerate_yields_only_valid_configs():
    space = GemmTileSpace(GEMM)
    valid = list(space.enumerate())
    grid = math.prod(len(p.values()) for p in space.params.values())
    assert space.size() == grid == 5 * 5 * 5 * 4 * 3 * 5 * 5
    assert 0 < len(valid) < grid
    rng = random.Random(0)
    for cfg in rng.sample(valid, 200):
        assert space.constraints(cfg) == []
        assert cfg["kernel"] == "gemm" and cfg["m"] == 4096
    attn = AttentionTileSpace(ATTN)
    for cfg in attn.enumerate():
        assert cfg["block_m"] % cfg["block_n"] == 0  # causal


def test_features():
    space = GemmTileSpace({**GEMM, "m": 4096 + 1})
    f = space.features(tile(m=4097, block_m=128, block_n=128, split_k=2))
    assert f["programs"] == 33 * 32 * 2
    assert f["pad_efficiency"] == pytest.approx(4097 / (33 * 128))
    assert f["tile_intensity"] == pytest.approx(2 * 128 * 128 / (256 * 2))
    smem, regs = 3 * (128 * 64 + 64 * 128) * 2, f["regs_per_thread"]
    assert f["smem_kib"] == smem / 1024
    assert f["occupancy"] == occupancy(H100, smem, int(regs), 8)
    assert f["waves"] == pytest.approx(f["programs"] / (132 * f["occupancy"]))
    a = AttentionTileSpace(ATTN).features({**ATTN, "block_m": 128, "block_n": 64,
                                           "num_warps": 8, "num_stages": 2})
    assert a["programs"] == 64 * 64 and a["kv_iters"] == 128


def test_suggest_through_optuna_gives_a_full_config():
    space = GemmTileSpace(GEMM)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    cfg = space.suggest(trial)
    assert set(space.params) <= set(cfg) and cfg["gpu"] == "h100_sxm"
