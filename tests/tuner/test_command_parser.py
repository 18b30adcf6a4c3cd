"""One command shape: every subcommand is ``add_arguments``/``run``, with one error style."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tuner import _command, cli


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_is_an_add_arguments_run_pair(name):
    add_arguments, run = cli._pair(name, cli.COMMANDS[name][1])
    assert callable(add_arguments) and callable(run)
    parser = cli.build_parser(only=name)
    assert parser.parse_args([name, *_minimal(name)]).func is run


def _minimal(name: str) -> list[str]:
    return {"run": ["s.toml"], "worker": ["s.toml", "--storage", "sqlite:///x.db"],
            "evaluate": ["toy"], "show": ["s"], "pareto": ["s"], "export": ["s"],
            "validate": ["training"], "ci": ["s.toml", "--baseline", "b.json"],
            "calibrate": ["training-sim", "--measurements", "r.jsonl", "--out", "p.toml"],
            "profile-hardware": ["--out", "hw.toml"]}.get(name, [])


@pytest.mark.parametrize("argv,field", [
    (["bench", "--problems", "no-such-problem"], "error: --problems"),
    (["bench", "--seeds", "0", "--problems", "gemm-4096-bf16"], "error: --seeds"),
    (["run", "s.toml", "--timeout", "nan"], "error: --timeout"),
    (["ci", "s.toml", "--baseline", "b.json", "--trials", "0"], "error: --trials"),
    (["worker", "s.toml", "--storage", "sqlite:///w.db", "--trials", "-1"], "error: "),
])
def test_bad_input_is_one_line_and_exit_2(argv, field, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text('name = "s"\n[space]\ndomain = "tuner.testing.toys:'
                                     'ToySpace"\n[budget]\ntrials = 3\n')
    assert cli.main(argv) == _command.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith(field) and len(err.splitlines()) == 1, err


def test_usage_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--budget", "x"])
    assert exc.value.code == _command.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("tuner bench: error:") and len(err.splitlines()) == 1


def test_standalone_entry_points_share_the_style(capsys, tmp_path):
    from tuner.bench import main as bench_main

    assert bench_main(["--problems", "nope", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: --problems")


def test_layers_point_one_way():
    """ci and the worker do not import the CLI, the worker does not import the runner, and
    ``tuner --version`` imports no command module."""
    code = ("import sys, tuner.ci, tuner.worker, tuner.bench; "
            "print(sorted(m for m in ('tuner.cli', 'tuner.runner') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    code = ("import sys, tuner.cli; tuner.cli.build_parser(only='run'); "
            "print(sorted(m for m in ('tuner.ci', 'tuner.worker', 'tuner.bench', 'optuna') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
