"""The examples in docstrings run and print what they say (every module that has one)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: folder -> the import package it installs as
PACKAGES = {"tuner": "tuner", "search_spaces": "tuner.search_spaces",
            "evaluators": "tuner.evaluators"}
MODULES = sorted(
    ".".join((pkg, *p.relative_to(ROOT / folder).with_suffix("").parts)).removesuffix(".__init__")
    for folder, pkg in PACKAGES.items()
    for p in (ROOT / folder).rglob("*.py") if ">>> " in p.read_text())


def test_some_modules_have_examples():
    assert MODULES, "no docstring examples found: the doctest run checks nothing"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name}: '>>> ' in the source but no example was collected"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
