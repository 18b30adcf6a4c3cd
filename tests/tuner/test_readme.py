"""The README tells the truth about the command line: its study-file template runs as written,
its command list matches what each command accepts, and ``tuner catalog`` lists the names a
study file may use."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _block(section: str, lang: str) -> str:
    m = re.search(rf"```{lang}\n(.*?)```", section, re.S)
    assert m, f"no {lang} block"
    return m.group(1)


def test_the_study_file_template_runs_as_written(tmp_path):
    template = _block(_section("Study files"), "toml")
    path = tmp_path / "template.toml"
    path.write_text(template)
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(path), "--storage",
                           f"sqlite:///{tmp_path / 't.db'}", "--trials", "4", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "4 trials this run" in proc.stdout


def _commands() -> dict[str, list[str]]:
    """README command lines by command, continuation lines joined, comments dropped."""
    out: dict[str, list[str]] = {}
    current = None
    for line in _block(_section("The command line"), "").splitlines():
        text = line.split("  #")[0].rstrip()
        if text.startswith("tuner "):
            current = text.split()[1]
            out.setdefault(current, []).append(text)
        elif text.strip() and current:
            out[current][-1] += " " + text.strip()
    return out


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_the_readme_command_list_matches_what_each_command_accepts():
    listed = _commands()
    parsers = _subparsers()
    assert set(listed) == set(parsers), set(listed) ^ set(parsers)
    for name, lines in listed.items():
        text = " ".join(lines)
        written = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-z])\b", text))
        accepted = {o for a in parsers[name]._actions for o in a.option_strings} - \
            {"-h", "--help"}
        # every option written exists, and every option accepted is written (one spelling)
        assert written <= accepted, (name, written - accepted)
        for a in parsers[name]._actions:
            opts = set(a.option_strings) - {"-h", "--help"}
            if opts:
                assert opts & written, (name, sorted(opts), "missing from the README")
            if a.choices and a.option_strings:
                m = re.search(re.escape(a.option_strings[0]) + r" ([\w|.-]+)", text)
                assert m and set(m.group(1).split("|")) == set(a.choices), (name, a.dest)
            elif a.choices and a.dest != "command":
                m = re.search(r"\[([\w|]+)\]", text)
                assert m and set(m.group(1).split("|")) == set(a.choices), (name, a.dest)


def test_worker_help_shows_no_default_for_its_required_storage(capsys):
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    text = capsys.readouterr().out
    storage = text[text.index("\n  --storage") + 1:].split("\n  --", 1)[0]
    # the shared database must be named: no fallback to $TUNER_STORAGE or ~/.tuner
    assert "(required)" in storage and "default" not in storage, storage
    assert "TUNER_STORAGE" not in storage and "~/.tuner" not in storage, storage


def test_catalog_lists_workloads_metrics_and_each_domains_parameters(capsys):
    assert main(["catalog"]) == 0
    text = capsys.readouterr().out
    for words in (("workloads", "bursty-chat-10rps", "sharegpt-like"),
                  ("metrics", "tokens_per_s", "ttft_ms_p99", "time_us", "quality_drop"),
                  ("training: parameters", "recompute", "choices none, selective, full"),
                  ("kernel-gemm: parameters", "num_warps", "choices 2, 4, 8"),
                  ("serving: parameters", "kv_block_size"),
                  ("quantization: parameters",),
                  ("evaluators", "workspace_gib", "profile", "command (required)")):
        for w in words:
            assert w in text, w
    assert main(["catalog", "params"]) == 0
    assert "kernel-attention: parameters" in capsys.readouterr().out


def test_every_inline_model_key_is_explained():
    from tuner.evaluators._catalog import MODEL_KEYS

    missing = [k for k in MODEL_KEYS if f"`{k}`" not in README]
    assert not missing, f"README does not explain the model keys {missing}"
