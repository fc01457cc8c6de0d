"""TypeScript for the type tests (test_typed_contracts.py, test_examples_typed.py):
``tsc`` from js-client/test/types, whose package.json and lockfile make it
(and @types/node) a dev dependency of those tests only, installed once per
session with ``npm ci`` when missing (fixture ``typescript``; skipped with
the reason when no npm is found), and ``tsc --strict --noEmit`` of one file
with module names mapped to declaration files (``compile_ts``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, _subprocess_env
from legacy_docs_support import NPM_TIMEOUT_S, _npm

TYPES = ROOT / "js-client" / "test" / "types"
TS_VERSION = json.loads((TYPES / "package.json").read_text())["devDependencies"]["typescript"].lstrip("~^")
TSC_TIMEOUT_S = 120


def _installed_typescript() -> str | None:
    try:
        return json.loads((TYPES / "node_modules" / "typescript" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def typescript(node: str) -> Path:
    """The path of tsc, installed with ``npm ci`` in js-client/test/types when missing."""
    if _installed_typescript() != TS_VERSION or not (TYPES / "node_modules" / "@types" / "node").exists():
        npm = _npm(node)
        if npm is None:
            pytest.skip("no npm found to install TypeScript for the type tests (js-client/test/types/package.json)")
        env = {**os.environ, "PATH": os.pathsep.join([str(Path(node).parent), os.environ.get("PATH", "")])}  # npm runs under the same node
        try:
            proc = subprocess.run([*npm, "ci", "--no-audit", "--no-fund"], cwd=TYPES, env=env, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci in {TYPES} did not finish within {NPM_TIMEOUT_S} s")
        if proc.returncode != 0 or _installed_typescript() != TS_VERSION:
            pytest.fail(f"npm ci in {TYPES} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return TYPES / "node_modules" / "typescript" / "bin" / "tsc"


def compile_ts(
    node: str, tsc: Path, workdir: Path, source: Path, paths: dict[str, Path] | None = None, *, lib_check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``tsc --strict --noEmit`` of ``source`` (a .js file is checked as with
    ``// @ts-check``); ``paths`` maps module names to declaration files.
    ``lib_check`` (the default): check the declaration files themselves too,
    as an application without ``skipLibCheck`` does (a few seconds more, for
    @types/node); off, tsc skips them. The tsconfig is written in ``workdir``."""
    options = {
        "skipLibCheck": not lib_check,
        "strict": True, "noEmit": True, "allowJs": True, "checkJs": True, "target": "es2022", "module": "commonjs",
        "moduleResolution": "node10", "types": ["node"], "typeRoots": [str(TYPES / "node_modules" / "@types")],
        "paths": {name: [str(path)] for name, path in (paths or {}).items()},
    }  # fmt: skip
    config = workdir / f"tsconfig.{source.stem}.json"
    config.write_text(json.dumps({"compilerOptions": options, "files": [str(source)]}))
    return subprocess.run(
        [node, str(tsc), "-p", str(config), "--pretty", "false"], cwd=ROOT, capture_output=True, text=True, timeout=TSC_TIMEOUT_S, env=_subprocess_env()
    )
