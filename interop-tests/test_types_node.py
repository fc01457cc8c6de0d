"""The Node client's TypeScript declarations (js-client/index.d.ts) against
the whole public API, as an application compiles it:

- ``tsc --strict --noEmit`` of js-client/test/types/api_usage.ts (every
  export, every option of every class, events, errors and their fields, the
  pool, the load-balanced and service clients, TLS and users, typed
  contracts) and api_misuse.ts (each mistake marked ``@ts-expect-error``, so
  a mistake the declarations let through fails as an unused directive),
  importing the package by name through ``node_modules/ipc-bridge-client``:
  as CommonJS (.cts) and ESM (.mts) under ``module`` node16 and nodenext,
  which read package.json's ``exports``, and as a .ts file under the classic
  commonjs/node10 resolution, which reads its ``types``; api_require.cts and
  api_import.mts add the other ways in (``import = require()``, default,
  namespace and dynamic imports); the node10 program checks index.d.ts
  itself too, and (commonjs_default.ts) that a default import without
  esModuleInterop, which would be undefined at run time, is refused;
  env_options.ts passes ``process.env``'s values as numeric options under
  ``exactOptionalPropertyTypes``;
- at run time, index.js and index.mjs export the same names, the ones
  index.d.ts declares and api_usage.ts imports;
- docs/typed-contracts.md §6's block compiles under each setting the guide
  says it does (ESM under nodenext, bundler resolution).

TypeScript is the test folder's dev dependency (js-client/test/types/
package.json), installed once per session with ``npm ci``
(typescript_support.py); without npm the tsc tests are skipped. The
compilations run at once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, _subprocess_env
from typescript_support import TSC_TIMEOUT_S, TYPES, typescript  # noqa: F401 - a fixture

PACKAGE = ROOT / "js-client"
COMPILER = {
    "strict": True, "noEmit": True, "target": "es2022", "skipLibCheck": True,
    "types": ["node"], "typeRoots": [str(TYPES / "node_modules" / "@types")],
}  # fmt: skip
# resolution -> (its compilerOptions, the files it compiles: name in the workspace <- source)
PROGRAMS: dict[str, tuple[dict[str, str | bool], dict[str, str]]] = {
    mode: (
        {"module": mode, "moduleResolution": mode},
        {
            "api_usage.cts": "api_usage.ts", "api_usage.mts": "api_usage.ts",
            "api_misuse.cts": "api_misuse.ts", "api_misuse.mts": "api_misuse.ts",
            "api_require.cts": "api_require.cts", "api_import.mts": "api_import.mts",
        },
    )
    for mode in ("node16", "nodenext")
}  # fmt: skip
# index.d.ts itself, copied as a .ts file: skipLibCheck (which spares @types/node
# several seconds) would skip its own errors too, a duplicate declaration among them.
PROGRAMS["node10"] = (
    {"module": "commonjs", "moduleResolution": "node10"},
    {
        "api_usage.ts": "api_usage.ts", "api_misuse.ts": "api_misuse.ts", "commonjs_default.ts": "commonjs_default.ts",
        "declarations.ts": "../../index.d.ts",
    },
)
# process.env's values as numeric options, under exactOptionalPropertyTypes (only the
# properties typed `| undefined` take undefined there).
PROGRAMS["exact"] = ({"module": "nodenext", "moduleResolution": "nodenext", "exactOptionalPropertyTypes": True}, {"env_options.ts": "env_options.ts"})


def _workspace(root: Path) -> Path:
    """A project that depends on the package: ``node_modules/ipc-bridge-client`` links to js-client."""
    modules = root / "node_modules"
    modules.mkdir(parents=True, exist_ok=True)
    link = modules / "ipc-bridge-client"
    if not link.exists():
        os.symlink(PACKAGE, link, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def compiled(node: str, typescript: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Every program's tsc, started at once; each test waits for its own."""
    procs: dict[str, subprocess.Popen[str]] = {}
    for mode, (options, files) in PROGRAMS.items():
        work = _workspace(tmp_path_factory.mktemp(f"types-{mode}"))
        for name, source in files.items():
            (work / name).write_text((TYPES / source).read_text())
        (work / "tsconfig.json").write_text(json.dumps({"compilerOptions": {**COMPILER, **options}, "files": list(files)}))
        procs[mode] = subprocess.Popen(
            [node, str(typescript), "-p", "tsconfig.json", "--pretty", "false"],
            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_subprocess_env(),
        )  # fmt: skip
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("mode", list(PROGRAMS))
def test_the_api_compiles_and_every_marked_misuse_is_refused(compiled: dict[str, subprocess.Popen[str]], mode: str) -> None:
    try:
        out, err = compiled[mode].communicate(timeout=TSC_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tsc ({mode}) did not finish within {TSC_TIMEOUT_S} s")
    unused = re.findall(r"^(\S+\(\d+),\d+\): error TS2578", out, re.M)
    assert not unused, f"misuses the declarations accept (unused @ts-expect-error, {mode}): {unused}\n{out}"
    assert compiled[mode].returncode == 0, f"tsc --strict ({mode}):\n{out}{err}"


def test_the_misuse_file_marks_many_mistakes() -> None:
    marked = re.findall(r"^\s*// @ts-expect-error \S", (TYPES / "api_misuse.ts").read_text(), re.M)
    assert len(marked) >= 40


def _declared(text: str) -> set[str]:
    """index.d.ts's value exports. It declares no default export: index.js
    sets neither ``default`` nor ``__esModule``, so one would type-check
    ``import x from`` without esModuleInterop (and ``x.default`` in an .mts
    file), and both throw at run time; a default import under
    esModuleInterop or from ESM is typed as the module itself."""
    assert not re.search(r"^\s*export\s+(?:default\b|=|\{[^}]*\bdefault\b)", text, re.M), "index.d.ts declares a default export index.js does not have"
    return set(re.findall(r"^export declare (?:const|class|function) (\w+)", text, re.M))


def test_both_entry_points_export_what_the_declarations_and_the_usage_file_name(node: str, tmp_path: Path) -> None:
    work = _workspace(tmp_path)
    script = work / "exports.mjs"
    script.write_text(
        "import * as esm from 'ipc-bridge-client';\n"
        "import { createRequire } from 'node:module';\n"
        "const cjs = createRequire(import.meta.url)('ipc-bridge-client');\n"
        "console.log(JSON.stringify({ esm: Object.keys(esm), cjs: Object.keys(cjs), sameDefault: esm.default === cjs }));\n"
    )
    proc = subprocess.run([node, str(script)], cwd=work, capture_output=True, text=True, timeout=60, env=_subprocess_env())
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    cjs, esm = set(found["cjs"]), set(found["esm"]) - {"default"}
    assert found["sameDefault"], "index.mjs's default export is not index.js's exports object"
    assert esm == cjs, f"index.mjs lacks {sorted(cjs - esm)}, has more: {sorted(esm - cjs)}"
    named = _declared((PACKAGE / "index.d.ts").read_text())
    assert named == cjs, f"index.d.ts does not declare {sorted(cjs - named)}; declares what index.js lacks: {sorted(named - cjs)}"
    assert "default" not in cjs and "__esModule" not in cjs, "index.js has a default export: index.d.ts must declare it"
    usage = re.search(r"^import \{(.*?)\} from 'ipc-bridge-client';", (TYPES / "api_usage.ts").read_text(), re.M | re.S)
    assert usage is not None
    imported = {name.strip() for name in usage[1].split(",") if name.strip()}
    assert imported == cjs, f"api_usage.ts does not use {sorted(cjs - imported)}"


GUIDE = ROOT / "docs" / "typed-contracts.md"
# The settings §6 names for its block: the file's name, package.json's "type", the module options.
GUIDE_SETTINGS: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "nodenext-mts": ("typed.mts", None, {"module": "nodenext", "moduleResolution": "nodenext"}),
    "nodenext-type-module": ("typed.ts", "module", {"module": "nodenext", "moduleResolution": "nodenext"}),
    "node16-mts": ("typed.mts", None, {"module": "node16", "moduleResolution": "node16"}),
    "bundler": ("typed.ts", None, {"module": "esnext", "moduleResolution": "bundler"}),
    "preserve-bundler": ("typed.ts", None, {"module": "preserve", "moduleResolution": "bundler"}),
}


def _guide_block() -> str:
    section = GUIDE.read_text(encoding="utf-8").split("## 6. `client.typed<Api>()`", 1)[1]
    block = re.search(r"^```ts\n(.*?)^```", section, re.M | re.S)
    assert block is not None, "docs/typed-contracts.md §6 has no ts block"
    return block[1]


@pytest.mark.parametrize("setting", list(GUIDE_SETTINGS))
def test_the_typed_client_guide_s_block_compiles_where_the_guide_says(node: str, typescript: Path, tmp_path: Path, setting: str) -> None:
    """Against the typed-pricing example's generated declarations (its ShopApi is the guide's)."""
    name, kind, options = GUIDE_SETTINGS[setting]
    work = _workspace(tmp_path)
    (work / name).write_text(_guide_block())
    (work / "shop-api.d.ts").write_text((ROOT / "examples" / "typed-pricing" / "shop-api.d.ts").read_text())
    if kind is not None:
        (work / "package.json").write_text(json.dumps({"type": kind}))
    (work / "tsconfig.json").write_text(json.dumps({"compilerOptions": {**COMPILER, **options}, "files": [name]}))
    tsc = [node, str(typescript), "-p", "tsconfig.json", "--pretty", "false"]
    proc = subprocess.run(tsc, cwd=work, capture_output=True, text=True, timeout=TSC_TIMEOUT_S, env=_subprocess_env())
    assert proc.returncode == 0, f"docs/typed-contracts.md §6 as {name} under {options}:\n{proc.stdout}{proc.stderr}"
