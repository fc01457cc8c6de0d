"""``ipc-bridge-types`` (js-client/bin/ipc-bridge-types.js) against a real
server whose app serves more channels than one page of ``describe``
(docs/protocol.md §8: 1024 unless asked): the declarations hold every
channel, fetched page after page, not the first page alone."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT, WAIT_S

sys.path.insert(0, str(ROOT))
from ipc_protocol import encode_frame  # noqa: E402
from tests.conftest import RawPeer, frame  # noqa: E402

GENERATOR = ROOT / "js-client" / "bin" / "ipc-bridge-types.js"
SERVED = 2100  # three pages
SCHEMA = {"request": {"type": "integer"}, "response": {"type": "string"}}


async def test_every_page_of_describe_is_declared(start_server: Any, node: str, tmp_path: Path) -> None:
    server = await start_server()
    peer = await RawPeer.open(server.port)
    try:
        await peer.handshake("shop")
        frames = (frame("subscribe", f"svc.n{i}", {"serve": True, "schema": SCHEMA}, app_id="shop", message_id=f"s{i}") for i in range(SERVED))
        peer.send_raw(b"".join(encode_frame(json.dumps(f).encode()) for f in frames))
        for _ in range(SERVED):
            assert (await peer.recv()).error is None
        out = tmp_path / "shop-api.d.ts"
        argv = [str(GENERATOR), "--port", str(server.port), "--app", "shop", "--timeout", "10000", "--out", str(out)]
        proc = await asyncio.create_subprocess_exec(node, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), WAIT_S * 2)
        assert proc.returncode == 0, err.decode()
        assert f"{SERVED} channels written" in err.decode()
        text = out.read_text()
        assert all(f'"svc.n{i}": {{ request: number; response: string }}' in text for i in (0, 1023, 1024, 2047, 2048, SERVED - 1))
    finally:
        await peer.close()
