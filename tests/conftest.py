"""Shared fixtures: every test gets its own storage; GPU tests skip without CUDA."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_storage(tmp_path, monkeypatch):
    """No test touches ~/.tuner: the default storage is a file in the test's tmp dir."""
    monkeypatch.setenv("TUNER_STORAGE", f"sqlite:///{tmp_path / 'tuner.db'}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yield


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def toy_study(name: str = "toy", trials: int = 30, **extra) -> dict:
    """A study dict on the microsecond toy problem (tuner.testing.toys)."""
    spec = {
        "name": name, "seed": 0,
        "space": {"domain": "tuner.testing.toys:ToySpace", "context": {"max_sum": 30}},
        "evaluator": {"name": "tuner.testing.toys:ToyEvaluator"},
        "objectives": [{"metric": "score", "direction": "maximize"},
                       {"metric": "cost", "direction": "minimize"}],
        "budget": {"trials": trials},
    }
    for k, v in extra.items():
        spec[k] = v if not isinstance(v, dict) or k not in spec else {**spec[k], **v}
    return spec


def write_toml(path, data: dict) -> str:
    """Minimal TOML writer for test study files (tables, arrays of tables, scalars)."""
    lines: list[str] = []

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f'"{k}" = {val(x)}' for k, x in v.items()) + "}"
        return repr(v)

    def table(prefix, d):
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)
                   and not (isinstance(v, list) and v and isinstance(v[0], dict))}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f'"{k}" = {val(v)}')
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    lines.append(f"[[{prefix + '.' if prefix else ''}{k}]]")
                    for kk, vv in item.items():
                        lines.append(f'"{kk}" = {val(vv)}')

    table("", data)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


os.environ.setdefault("PYTHONHASHSEED", "0")
