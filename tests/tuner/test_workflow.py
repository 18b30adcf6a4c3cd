"""The scheduled GitHub Actions job: linted by actionlint (a real workflow linter, from the dev
extra), current action versions, the hidden baseline uploaded, and a missing baseline (never
recorded, or its cache evicted) failing the job instead of being quietly re-recorded."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "tuner-ci.yml"
#: the current major version of each action the job uses
CURRENT = {"actions/checkout": 7, "actions/setup-python": 7, "actions/cache/restore": 6,
           "actions/cache/save": 6, "actions/upload-artifact": 7}


def _actionlint() -> str:
    exe = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    if not Path(exe).exists():
        pytest.fail("actionlint is not installed: pip install -e '.[dev]'")
    return exe


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_actionlint(), "-no-color", str(path)], capture_output=True,
                          text=True, timeout=120)


def _workflow() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(WORKFLOW.read_text())


def test_actionlint_passes_the_workflow_and_catches_a_broken_copy(tmp_path):
    ok = _lint(WORKFLOW)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "broken.yml"  # an expression typo must fail: the lint really runs
    broken.write_text(WORKFLOW.read_text().replace("steps.ci.outputs.code",
                                                   "steps.cii.outputs.code"))
    bad = _lint(broken)
    assert bad.returncode != 0 and "cii" in bad.stdout, bad.stdout


def test_actions_are_at_their_current_major_version():
    steps = _workflow()["jobs"]["tune"]["steps"]
    used = {}
    for s in steps:
        if "uses" in s:
            name, _, version = s["uses"].partition("@")
            used[name] = int(re.fullmatch(r"v(\d+)(\.\d+)*", version).group(1))
    assert set(used) == set(CURRENT)
    assert all(used[a] >= v for a, v in CURRENT.items()), used


def test_the_upload_includes_the_hidden_baseline():
    steps = _workflow()["jobs"]["tune"]["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["include-hidden-files"] is True
    assert "${{ env.BASELINE }}" in upload["with"]["path"]


def _step(name: str) -> dict:
    return next(s for s in _workflow()["jobs"]["tune"]["steps"] if s.get("name") == name)


@pytest.mark.skipif(sys.platform == "win32", reason="the steps are bash")
def test_a_missing_baseline_fails_the_job_loudly(tmp_path):
    step = _step("Require a baseline")
    assert step["if"] == "env.UPDATE_BASELINE != 'true'"
    env = {**os.environ, "BASELINE": str(tmp_path / ".tuner-ci" / "baselines" / "s.json")}
    missing = subprocess.run(["bash", "-e", "-c", step["run"]], capture_output=True, text=True,
                             env=env, cwd=tmp_path)
    assert missing.returncode != 0
    assert "::error title=No baseline::" in missing.stdout and "evicted" in missing.stdout
    Path(env["BASELINE"]).parent.mkdir(parents=True)
    Path(env["BASELINE"]).write_text("{}")
    present = subprocess.run(["bash", "-e", "-c", step["run"]], capture_output=True, text=True,
                             env=env, cwd=tmp_path)
    assert present.returncode == 0, present.stdout
    # and only a manual run with update_baseline ticked records one
    tune = _step("Tune and compare with the baseline")["run"]
    assert 'if [ "$UPDATE_BASELINE" = "true" ]; then\n  args+=(--update-baseline)' in tune
    assert '[ ! -f "$BASELINE" ]' not in tune
