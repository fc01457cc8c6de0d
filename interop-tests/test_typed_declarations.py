"""The declarations ``ipc-bridge-types`` writes for contracts that are hard
to declare (typed_edges_service.py), compiled with ``tsc --strict`` and the
declarations themselves checked (no ``skipLibCheck``), as an application
compiles them (docs/typed-contracts.md §5):

- a model named ``Buffer`` is renamed (``Buffer2``): ``bytes`` stay Node's
  Buffer;
- ``orders.*`` and ``orders.>`` (one template), an exact channel under it
  and ``*`` (whose template covers every name) give one index signature per
  template, which compiles, and ``client.typed()`` types each call as the
  server routes it: js-client/test/types/edges_usage.ts compiles, and
  edges_misuse.ts fails on exactly the lines it marks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import HERE, ROOT, _subprocess_env
from typescript_support import TYPES, compile_ts, typescript  # noqa: F401 - a fixture

GENERATOR = ROOT / "js-client" / "bin" / "ipc-bridge-types.js"


def declarations(node: str, out: Path) -> str:
    schema = out.with_suffix(".json")
    for argv in (
        [sys.executable, "-m", "ipc_client", "schemas", f"{HERE / 'typed_edges_service.py'}:client", "--out", str(schema)],
        [node, str(GENERATOR), "--from", str(schema), "--out", str(out)],
    ):
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=_subprocess_env())
        assert proc.returncode == 0, proc.stderr
    return out.read_text()


def test_overlapping_patterns_and_a_model_named_buffer_compile_and_type_each_call(node, typescript, tmp_path) -> None:
    path = tmp_path / "edges-api.d.ts"
    text = declarations(node, path)
    assert "export interface Buffer2 {" in text and "data: Buffer;" in text and "meta: Buffer2;" in text
    assert text.count("[channel: `orders.${string}`]") == 1  # orders.* and orders.>, merged
    assert '"orders.eu.north": { request: string; response: boolean; channel: "orders.eu.north" };' in text

    modules = {"ipc-bridge-client": ROOT / "js-client" / "index.d.ts", "edges-api": path}
    usage = compile_ts(node, typescript, tmp_path, TYPES / "edges_usage.ts", modules)
    assert usage.returncode == 0, usage.stdout + usage.stderr

    misuse = compile_ts(node, typescript, tmp_path, TYPES / "edges_misuse.ts", modules)
    failing = {int(m[1]) for m in re.finditer(r"edges_misuse\.ts\((\d+),\d+\): error TS\d+", misuse.stdout)}
    marked = {n for n, line in enumerate((TYPES / "edges_misuse.ts").read_text().splitlines(), 1) if re.search(r"\S.*// error: ", line)}
    assert len(marked) >= 10
    assert failing == marked, misuse.stdout
    assert "edges-api.d.ts" not in misuse.stdout  # the declarations themselves compile
