"""Property tests: whatever a study file or a config holds, the command line answers with a
result or one clear line and exit code 2 — never a traceback, never a corrupted study.

Inputs are valid documents with one or two mutations (a key removed, a value replaced by a
random type — huge and negative numbers, NaN, unicode, nested tables —, an unknown key added),
plus raw bytes. The bulk runs in-process through ``tuner.cli.main`` (evaluations in-process
too: the process pool's own faults are tested in test_faults.py); a few go through the real
``tuner`` executable.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
from typing import Any

import optuna
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

import tuner.runner
from tuner import registry
from tuner._evaluator import EvalResult
from tuner.benchmarks.reliability import tuner_cmd
from tuner.cli import main

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

BASE_STUDY: dict[str, Any] = {
    "name": "prop",
    "seed": 0,
    "space": {"domain": "kernel-gemm",
              "context": {"m": 512, "n": 512, "k": 512, "dtype": "fp16", "gpu": "h100_sxm"},
              "params": {"split_k": {"choices": [1, 2]}, "block_m": {"choices": [32, 64, 128]}}},
    "evaluator": {"name": "kernel-sim", "options": {}},
    "objectives": [{"metric": "time_us", "direction": "minimize"}],
    "constraints": [{"metric": "time_us", "op": "<=", "value": 1e9}],
    "sampler": {"name": "tpe", "options": {"n_startup_trials": 2}},
    "budget": {"trials": 2, "trial_timeout_s": 30},
}

#: fast evaluators (no GPU, no model download) and the space whose configs they score
EVALUATORS = {"kernel-sim": "kernel-gemm", "kernel-replay": "kernel-gemm",
              "training-sim": "training", "serving-sim": "serving", "quant-sim": "quantization"}


# -- random values and mutations ----------------------------------------------------------------
_scalars = st.one_of(
    st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 2**31, -2**31, 2**62, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "h100_sxm", "llama3.1-8b", "tpe", "bf16", "☃", "x" * 300,
                     "__import__('os').system('true')", "../../etc/passwd", "null"]),
    st.booleans(),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)), max_leaves=5)


def _paths(d: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _mutate(doc: Any, data: st.DataObject, n: int) -> Any:
    doc = json.loads(json.dumps(doc))
    for _ in range(n):
        paths = _paths(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["delete", "replace", "replace", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = data.draw(_values)
        elif isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=10))] = data.draw(_values)
        else:
            parent.append(data.draw(_values))
    return doc


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_str(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"


def toml_dumps(doc: dict[str, Any]) -> str:
    """Any dict as TOML: one ``key = value`` line per top-level key, inline tables below."""
    return "\n".join(f"{_toml_str(str(k))} = {_toml_value(v)}" for k, v in doc.items()) + "\n"


# -- the checks ---------------------------------------------------------------------------------
class _InlinePool:
    """EvalPool's interface, evaluating in this process (these tests are about input)."""

    def __init__(self, evaluator_name, options, workers, timeout_s, memory_limit_mib=None):
        self.evaluator = registry.make_evaluator(evaluator_name, options)
        self._done: list = []

    def idle(self) -> int:
        return 0 if self._done else 1

    def busy(self) -> int:
        return len(self._done)

    def submit(self, key, config) -> None:
        try:
            result = self.evaluator.evaluate(config)
        except Exception as exc:  # the real pool stores the same
            result = EvalResult.failed(f"{type(exc).__name__}: {exc}")
        self._done.append((key, result, 0.0))

    def poll(self, wait_s: float = 0.0):
        out, self._done = self._done, []
        return out

    def close(self) -> None:
        pass


@pytest.fixture
def inline_pool(monkeypatch):
    monkeypatch.setattr(tuner.runner, "EvalPool", _InlinePool)


def assert_clean_outcome(code: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err
    assert code in (0, 2), f"exit {code}: {err.strip()[:500]}"
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(("error: ", "tuner")), err[:500]
        assert len(lines[0]) < 2000


def assert_storage_intact(url: str) -> None:
    """Every study in the database loads; trials are finished, numbered 0..n-1, complete."""
    storage = optuna.storages.RDBStorage(url)
    try:
        for s in storage.get_all_studies():
            trials = storage.get_all_trials(s._study_id, deepcopy=False)
            assert sorted(t.number for t in trials) == list(range(len(trials)))
            for t in trials:
                assert t.state in (TrialState.COMPLETE, TrialState.FAIL)
                assert t.user_attrs.get("status") in ("ok", "infeasible", "failed")
                if t.state == TrialState.COMPLETE:
                    assert t.values and all(math.isfinite(v) for v in t.values)
                else:
                    assert t.user_attrs.get("reason")
            assert storage.get_study_user_attrs(s._study_id).get("tuner.state") in (
                "finished", "interrupted")
    finally:
        storage.engine.dispose()


# -- study files --------------------------------------------------------------------------------
def test_the_base_study_is_valid(tmp_path, capsys, inline_pool):
    path = tmp_path / "study.toml"
    path.write_text(toml_dumps(BASE_STUDY), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'base.db'}"
    assert main(["run", str(path), "--storage", url, "--quiet"]) == 0, capsys.readouterr().err
    assert_storage_intact(url)


@PROPERTY
@given(data=st.data(), n=st.integers(min_value=1, max_value=2))
def test_mutated_study_files_run_or_fail_with_one_line(tmp_path, capsys, inline_pool, data, n):
    doc = _mutate(BASE_STUDY, data, n)
    path = tmp_path / "study.toml"
    path.write_text(toml_dumps(doc), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'props.db'}"  # shared: later examples resume earlier ones
    code = main(["run", str(path), "--storage", url, "--quiet"])
    captured = capsys.readouterr()
    event(f"exit {code}")
    assert_clean_outcome(code, captured.out, captured.err)
    assert_storage_intact(url)


@PROPERTY
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(lambda s: s.encode()))
def test_arbitrary_bytes_as_a_study_file_fail_with_one_line(tmp_path, capsys, raw):
    path = tmp_path / "garbage.toml"
    path.write_bytes(raw)
    code = main(["run", str(path), "--storage", f"sqlite:///{tmp_path / 'g.db'}", "--quiet"])
    captured = capsys.readouterr()
    assert_clean_outcome(code, captured.out, captured.err)
    assert code == 2


# -- tuner evaluate -----------------------------------------------------------------------------
def _base_config(evaluator: str) -> dict[str, Any]:
    space_cls = registry.space_class(EVALUATORS[evaluator])
    space = space_cls(space_cls.example_contexts[0])
    return space.sample(random.Random(0))


@pytest.mark.parametrize("evaluator", list(EVALUATORS))
def test_evaluate_configs_give_a_result_or_one_line(evaluator, capsys):
    base = _base_config(evaluator)

    @PROPERTY
    @given(data=st.data(), n=st.integers(min_value=1, max_value=2))
    def check(data, n):
        cfg = _mutate(base, data, n)
        assume(isinstance(cfg, dict))
        code = main(["evaluate", evaluator, "--config", json.dumps(cfg), "--json"])
        captured = capsys.readouterr()
        event(f"exit {code}" + (f" {json.loads(captured.out)['status']}" if code == 0 else ""))
        assert_clean_outcome(code, captured.out, captured.err)
        if code == 0:
            lines = captured.out.strip().splitlines()
            assert len(lines) == 1
            result = json.loads(lines[0])
            assert result["status"] in ("ok", "infeasible", "failed")
            if result["status"] != "ok":
                assert result["reason"]
            else:
                assert all(isinstance(v, float) for v in result["metrics"].values())

    check()


@PROPERTY
@given(text=st.text(max_size=60))
def test_evaluate_rejects_non_object_json_with_one_line(capsys, text):
    try:
        is_object = isinstance(json.loads(text), dict)
    except (json.JSONDecodeError, RecursionError):
        is_object = False
    assume(not is_object)
    code = main(["evaluate", "kernel-sim", "--config", text, "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert_clean_outcome(code, captured.out, captured.err)


# -- a few through the real executable ----------------------------------------------------------
@pytest.mark.parametrize("args, study_text", [
    (["run", "{study}"], 'name = "x"\n[space]\ndomain = "no-such-domain"\n'),
    (["run", "{study}"], "this is = = not toml"),
    (["run", "{study}"], 'name = "ok"\n[space]\ndomain = "kernel-gemm"\n[space.context]\n'
                         'm = -5\nn = 64\nk = 64\ndtype = "fp16"\ngpu = "h100_sxm"\n'
                         '[budget]\ntrials = 1\n'),
    (["run", "{study}", "--trials", "-3"], 'name = "ok"\n[space]\ndomain = "kernel-gemm"\n'),
    (["evaluate", "kernel-sim", "--config", '{"m": "☃"}'], None),
    (["evaluate", "kernel-sim", "--config", "[1, 2"], None),
    (["evaluate", "no-such-evaluator", "--config", "{}"], None),
    (["worker", "{study}", "--storage", "postgresql+psycopg://u:pw@127.0.0.1:1/x"],
     'name = "ok"\n[space]\ndomain = "kernel-gemm"\n[budget]\ntrials = -1\n'),
])
def test_real_executable_bad_input_exit_2_one_line(tmp_path, args, study_text):
    study = tmp_path / "study.toml"
    if study_text is not None:
        study.write_text(study_text, encoding="utf-8")
    argv = [a.replace("{study}", str(study)) for a in args]
    env_storage = ["--storage", f"sqlite:///{tmp_path / 'x.db'}"] if args[0] == "run" else []
    proc = subprocess.run(tuner_cmd(*argv, *env_storage), capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert_clean_outcome(proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == 2, proc.stderr


def test_changing_the_study_file_between_runs_is_handled(tmp_path, capsys, inline_pool):
    """Same study name, different space or objectives: a clear error or a clean resume."""
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    path = tmp_path / "study.toml"
    path.write_text(toml_dumps(BASE_STUDY))
    assert main(["run", str(path), "--storage", url, "--quiet"]) == 0
    variants = [
        {**BASE_STUDY, "space": {**BASE_STUDY["space"], "params": {
            "split_k": {"choices": [4, 8]}, "block_m": {"choices": [64]}}}},
        {**BASE_STUDY, "objectives": [{"metric": "time_us", "direction": "maximize"}]},
        {**BASE_STUDY, "space": {**BASE_STUDY["space"], "domain": "kernel-attention"}},
        {**BASE_STUDY, "budget": {"trials": 4}},
    ]
    for doc in variants:
        path.write_text(toml_dumps(doc))
        code = main(["run", str(path), "--storage", url, "--quiet"])
        captured = capsys.readouterr()
        assert_clean_outcome(code, captured.out, captured.err)
        assert_storage_intact(url)
