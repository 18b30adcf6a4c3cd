"""Bad input is refused before anything runs: exit 2, one line naming the field and what it
may be, and no storage touched (the database file is not even created)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuner import registry

KERNEL = {"name": "kernel-study", "space": {"domain": "kernel-gemm",
                                            "context": {"m": 1024, "n": 1024, "k": 1024}},
          "evaluator": {"name": "kernel-sim"}, "budget": {"trials": 5}}


def _toml(data: dict, extra: str = "") -> str:
    """The study as TOML (enough of TOML for these studies)."""
    out: list[str] = []

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)

    def table(prefix: str, d: dict) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if prefix:
            out.append(f"[{prefix}]")
        out.extend(f"{k} = {val(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    return "\n".join(out) + "\n" + extra


def _tuner(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env={**os.environ, **(env or {})})


def _refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _run_refused(tmp_path: Path, study_text: str, *words: str, args: tuple = ()) -> str:
    path = tmp_path / "study.toml"
    path.write_text(study_text)
    db = tmp_path / "fresh.db"
    line = _refused(_tuner(tmp_path, "run", str(path), "--storage", f"sqlite:///{db}",
                           "--quiet", *args), *words)
    assert not db.exists(), "nothing may be stored for refused input"
    return line


def _with(base: dict, **changes) -> dict:
    out = json.loads(json.dumps(base))
    for path, value in changes.items():
        node = out
        keys = path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return out


@pytest.mark.parametrize("changes, words", [
    ({"space__params__block_m": {"choices": [7, 13]}},
     ("space.params.block_m.choices: 7 is not a value this domain allows", "16, 32, 64")),
    ({"space__params__num_warps": {"fixed": 3}},
     ("space.params.num_warps.fixed: 3", "allowed: 2, 4, 8")),
    ({"space__params__split_k": {"choices": [1, "two"]}}, ("split_k.choices", "mixes types")),
    ({"space__params__num_stages": {"choices": ["3"]}},
     ("num_stages.choices: '3' is not a value",)),
    ({"evaluator__options": {"foo": 1}},
     ("evaluator.options.foo: unknown option for kernel-sim", "takes no options")),
    ({"space__context__q": 3}, ("space.context", "'q'")),
    ({"budget__memory_limit_mib": 16}, ("budget.memory_limit_mib", ">= 256")),
    ({"workers": 100000}, ("workers", "256")),
    ({"sampler": {"name": "tpe", "options": {"n_startup_trials": "ten"}}},
     ("sampler.options.n_startup_trials: 'ten' must be a number",)),
    ({"sampler": {"name": "tpe", "options": {"multivariate": 1}}},
     ("sampler.options.multivariate: 1 must be true or false",)),
], ids=["closed-choices", "closed-fixed", "mixed-types", "wrong-type-choice", "unknown-option",
        "unknown-context-key", "memory-too-small", "too-many-workers", "sampler-option-type",
        "sampler-flag-type"])
def test_bad_study_values_are_refused(tmp_path, changes, words):
    _run_refused(tmp_path, _toml(_with(KERNEL, **changes)), *words)


@pytest.mark.parametrize("constraint", ['{ metric = "time_us", op = "<=", value = nan }',
                                        '"time_us <= nan"', '"time_us <= inf"'])
def test_nan_in_a_constraint_is_refused(tmp_path, constraint):
    text = _toml(KERNEL).replace("[space]", f"constraints = [{constraint}]\n[space]", 1)
    _run_refused(tmp_path, text, "constraints", "finite number")


def test_wrong_evaluator_option_types_are_refused(tmp_path):
    study = {"name": "t", "space": {"domain": "training", "context": {
        "model": "llama3.1-8b", "gpu": "h100_sxm", "num_gpus": 8, "seq_len": 4096,
        "global_batch": 64}}, "evaluator": {"name": "training-sim",
                                            "options": {"workspace_gib": "two"}},
        "budget": {"trials": 3}}
    _run_refused(tmp_path, _toml(study), "evaluator.options.workspace_gib: 'two' must be "
                 "a number >= 0")


def test_every_missing_field_is_named_at_once(tmp_path):
    _run_refused(tmp_path, 'description = "no name, no space, objective half there"\n'
                 '[[objectives]]\ndirection = "maximize"\n',
                 "required keys are missing: name, space, objectives.0.metric")


def test_absurdly_deep_or_huge_study_files_are_refused(tmp_path):
    _run_refused(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n", "study", "nested")
    deep_table = _toml(KERNEL) + "[evaluator.options]\nz = " + "{ a = " * 40 + "1" + \
        " }" * 40 + "\n"
    _run_refused(tmp_path, deep_table, "study", "nested more than 32 levels")
    _run_refused(tmp_path, _toml(KERNEL) + "# " + "x" * (2 << 20) + "\n", "study",
                 "a study file is at most")


def test_too_many_workers_on_the_command_line(tmp_path):
    _run_refused(tmp_path, _toml(KERNEL), "--workers: 100000 is more than 256",
                 args=("--workers", "100000"))


def test_kernel_gpu_without_a_gpu_says_so_once_up_front(tmp_path):
    try:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    except ImportError:
        pass
    line = _run_refused(tmp_path, _toml(_with(KERNEL, evaluator__name="kernel-gpu")),
                        "evaluator.name", "kernel-gpu needs a CUDA GPU", "kernel-sim",
                        "kernel-replay")
    assert line.count("GPU") <= 3
    cfg = {"m": 64, "n": 64, "k": 64, "block_m": 16, "block_n": 16, "block_k": 16,
           "group_m": 1, "num_warps": 2, "num_stages": 1, "split_k": 1}
    _refused(_tuner(tmp_path, "evaluate", "kernel-gpu", "--config", json.dumps(cfg)),
             "kernel-gpu needs a CUDA GPU")


@pytest.mark.parametrize("name", list(registry.EVALUATORS))
def test_unknown_evaluator_options_are_refused_for_every_evaluator(tmp_path, name):
    cls = registry.evaluator_class(name)
    options = {**cls.example_options, "zz_typo": 1}
    _refused(_tuner(tmp_path, "evaluate", name, "--options", json.dumps(options), "--config",
                    "{}"), "evaluator.options.zz_typo")


def test_unknown_config_keys_are_refused_before_evaluating(tmp_path):
    cfg = {"kernel": "gemm", "m": 64, "n": 64, "k": 64, "dtype": "bf16", "block_m": 16,
           "block_n": 16, "block_k": 16, "group_m": 1, "num_warps": 2, "num_stages": 1,
           "split_k": 1, "num_warp": 4}
    _refused(_tuner(tmp_path, "evaluate", "kernel-sim", "--config", json.dumps(cfg)),
             "config: unknown key 'num_warp' for kernel-sim (did you mean 'num_warps'?)")


def test_deep_or_huge_json_configs_are_refused(tmp_path):
    _refused(_tuner(tmp_path, "evaluate", "kernel-sim", "--config", "[" * 30000 + "]" * 30000),
             "--config")
    nested: list = [1]
    for _ in range(34):
        nested = [nested]
    _refused(_tuner(tmp_path, "evaluate", "kernel-sim", "--config", json.dumps({"a": nested})),
             "--config", "nested more than 32 levels")


def test_a_binary_configs_file_is_refused(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(bytes(range(256)) * 64)
    _refused(_tuner(tmp_path, "evaluate", "kernel-sim", "--configs-file", str(f)),
             "--configs-file", "binary file")


def test_a_bad_line_gets_an_error_object_and_the_rest_are_evaluated(tmp_path):
    good = {"kernel": "gemm", "m": 64, "n": 64, "k": 64, "dtype": "bf16", "block_m": 16,
            "block_n": 16, "block_k": 16, "group_m": 1, "num_warps": 2, "num_stages": 1,
            "split_k": 1}
    f = tmp_path / "c.jsonl"
    f.write_bytes(json.dumps(good).encode() + b"\n\xff\xfe not utf-8\n"
                  + json.dumps({**good, "bogus": 1}).encode() + b"\n{not json\n"
                  + json.dumps({**good, "block_m": 32}).encode() + b"\n")
    proc = _tuner(tmp_path, "evaluate", "kernel-sim", "--configs-file", str(f))
    _refused(proc, "c.jsonl line 2: not UTF-8 text", "and 2 more bad line(s)")
    rows = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "failed", "failed", "failed", "ok"]
    assert [r.get("line") for r in rows] == [None, 2, 3, 4, None]
    assert all(r["error"] == "bad input" for r in rows[1:4])
    assert "unknown key 'bogus'" in rows[2]["reason"] and "invalid JSON" in rows[3]["reason"]
