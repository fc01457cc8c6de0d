"""``mypy --strict`` on ipc_protocol, ipc_client and ipc_server: the packages
ship ``py.typed`` and say ``Typing :: Typed``, so their annotations are a
promise to users' type checkers and are checked like the code.

The configuration is pyproject.toml's ``[tool.mypy]`` (so a bare ``mypy`` in
the checkout checks the same). The incremental cache lives in pytest's cache
(``.pytest_cache/d/mypy``): about 2 s on a clean checkout, under 1 s after.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT

MYPY_TIMEOUT_S = 120  # a cold run takes seconds; a shared, loaded machine may take many more


def test_the_packages_are_clean_under_mypy_strict(pytestconfig: pytest.Config) -> None:
    store = getattr(pytestconfig, "cache", None)  # None under -p no:cacheprovider
    cache = store.mkdir("mypy") if store is not None else ROOT / ".mypy_cache"
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-color-output", "--no-error-summary"],
        cwd=ROOT, capture_output=True, text=True, timeout=MYPY_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, f"mypy --strict (pyproject.toml [tool.mypy]) found errors:\n{proc.stdout}{proc.stderr}"
