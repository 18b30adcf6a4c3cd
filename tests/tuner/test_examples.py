"""``tuner init``: the example studies, from a checkout and from an installed wheel; and the
wheel's metadata (a distribution name of its own, an SPDX license, the LICENSE file)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from tuner._examples import DIST, examples
from tuner.cli import main
from tuner.spec import load_spec

REPO = Path(__file__).resolve().parents[2]


def test_init_lists_and_writes_every_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    listed = capsys.readouterr().out
    found = examples()
    assert set(found) == {p.stem for p in (REPO / "studies").glob("*.toml")}
    for name in found:
        assert name in listed
    assert main(["init", "quickstart"]) == 0
    written = tmp_path / "quickstart.toml"
    assert written.read_text() == (REPO / "studies" / "quickstart.toml").read_text()
    assert load_spec(written).name == "quickstart"
    assert main(["init", "quickstart"]) == 2  # not overwritten without --force
    assert "exists" in capsys.readouterr().err
    assert main(["init", "quickstart", "-o", str(tmp_path / "q2.toml")]) == 0
    assert main(["init", "quikstart"]) == 2
    assert "did you mean 'quickstart'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy: a build leaves build/ and *.egg-info behind, which would then pass for
    # an installed distribution in this checkout
    src = tmp_path_factory.mktemp("src") / "repo"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                           "--no-build-isolation", "-w", str(out), "-q"],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not available")
    assert proc.returncode == 0, proc.stderr
    return next(out.glob("*.whl"))


def test_the_wheel_has_its_own_name_a_license_and_the_examples(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert wheel.name.startswith("mlsys_tuner-")
    assert "Name: mlsys-tuner" in meta and "License-Expression: Apache-2.0" in meta
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # one import package: the folders install as tuner.evaluators, tuner.search_spaces, ...
    tops = {n.split("/")[0] for n in names if ".dist-info/" not in n and ".data/" not in n}
    assert tops == {"tuner"}, tops
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    inside = {str(Path(n).parent).replace("/", ".") for n in names if n.endswith("__init__.py")}
    assert inside == listed, inside ^ listed  # a new package folder must be listed
    assert any(n.startswith("tuner/evaluators/catalog/") for n in names)
    shipped = {Path(n).stem for n in names if f".data/data/share/{DIST}/studies/" in n}
    assert shipped == {p.stem for p in (REPO / "studies").glob("*.toml")}
    # every dependency is imported by the code (or by Optuna for a feature tuner offers)
    requires = [ln.split(":", 1)[1].strip() for ln in meta.splitlines()
                if ln.startswith("Requires-Dist:") and "extra ==" not in ln]
    assert not any(r.startswith(("greenlet", "scikit-learn")) for r in requires), requires
    assert any(r.startswith("optuna") and "<6" in r and ">=5" in r for r in requires)


def test_init_works_from_an_installed_wheel_without_the_repository(wheel, tmp_path):
    prefix = tmp_path / "prefix"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                           "--ignore-installed", "--prefix", str(prefix), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix),
                                                   "platbase": str(prefix)}))
    assert (site / "tuner").is_dir(), proc.stdout + proc.stderr
    assert not (site / "studies").exists()
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import sys, tuner; from tuner.cli import main; print(tuner.__file__, " \
           "file=sys.stderr); sys.exit(main(sys.argv[1:]))"
    listed = subprocess.run([sys.executable, "-c", code, "init"], capture_output=True,
                            text=True, env=env, cwd=work, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert str(site) in listed.stderr  # the installed copy ran, not the checkout
    assert "quickstart" in listed.stdout
    made = subprocess.run([sys.executable, "-c", code, "init", "training-llama70b-h100x64"],
                          capture_output=True, text=True, env=env, cwd=work, timeout=120)
    assert made.returncode == 0, made.stderr
    data = tomllib.loads((work / "training-llama70b-h100x64.toml").read_text())
    assert data["name"] == "training-llama70b-h100x64"
    # the domains and their data came with the wheel
    scored = subprocess.run([sys.executable, "-c", code, "evaluate", "training-sim", "--config",
                             '{"model": "llama3.1-8b", "gpu": "h100-sxm", "num_gpus": 8, '
                             '"seq_len": 4096, "global_batch": 64, "micro_batch": 1, "tp": 2, '
                             '"recompute": "full"}'],
                            capture_output=True, text=True, env=env, cwd=work, timeout=120)
    assert scored.returncode == 0, scored.stderr
    assert "status: ok" in scored.stdout and "tokens_per_s" in scored.stdout
