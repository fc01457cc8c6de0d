"""The typed-contracts example (examples/typed-pricing): the Python pricing
service and its typed Node caller run as a user runs them, against the real
server; the caller type-checks (``tsc --checkJs --strict``) against the
committed shop-api.d.ts, and that file is what ipc-bridge-types writes from
the service's models today (docs/typed-contracts.md)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, _subprocess_env
from typescript_support import compile_ts, typescript  # noqa: F401 - a fixture

EXAMPLE = ROOT / "examples" / "typed-pricing"


async def test_typed_pricing(start_server, run_example) -> None:
    server = await start_server()
    service = await run_example("typed-pricing/service.py", server=server)
    await service.wait_line(r"pricing service ready on .*")
    caller = await run_example("typed-pricing/caller.js", server=server)
    assert await caller.wait_exit() == 0, caller.describe()
    assert caller.lines == [
        "1 x KB-101 at 53.9 = 53.9",
        "4 x CB-USB at 7.98 = 31.92",
        "total 77.24 USD (-10%), valid until 2026-12-06T09:30:00Z",
        "bad_request: 4 field errors",
        "  items.0.sku: String should have at least 1 character (string_too_short)",
        "  items.0.qty: Input should be greater than 0 (greater_than)",
        "  currency: Input should be 'EUR' or 'USD' (enum)",
        "  at: Field required (missing)",
    ]


def test_typed_pricing_declarations_are_current_and_the_caller_type_checks(node, typescript, tmp_path) -> None:
    schema, declarations = tmp_path / "shop.schema.json", tmp_path / "shop-api.d.ts"
    for argv in (
        [sys.executable, "-m", "ipc_client", "schemas", f"{EXAMPLE / 'service.py'}:client", "--out", str(schema)],
        [node, str(ROOT / "js-client" / "bin" / "ipc-bridge-types.js"), "--from", str(schema), "--out", str(declarations)],
    ):
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=_subprocess_env())
        assert proc.returncode == 0, proc.stderr
    committed = (EXAMPLE / "shop-api.d.ts").read_text()
    assert committed == declarations.read_text(), "examples/typed-pricing/shop-api.d.ts is stale: generate it again (docs/typed-contracts.md)"
    checked = compile_ts(node, typescript, tmp_path, EXAMPLE / "caller.js")
    assert checked.returncode == 0, checked.stdout + checked.stderr
