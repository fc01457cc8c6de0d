"""examples/binary-upload end to end (docs/protocol.md §16.6): the real
server, the Python checksum worker and the Node upload server, each in its
own process as a user runs them; a 100 MiB file POSTed over HTTP, streamed
from the test (never held whole here either), comes back with the SHA-256
and the size the worker computed from the chunks it pulled. Before the
worker starts, an upload is answered 503 ``no_responders``; an empty upload
is the digest of nothing.

Every wait is bounded (the HTTP socket's timeout, the processes' lines);
every process started here is killed on teardown.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import random
from collections.abc import Iterator
from typing import Any

from conftest import WAIT_S

MIB = 1024 * 1024
UPLOAD_TIMEOUT_S = 240.0  # 100 MiB through HTTP, the bridge twice and a worker, on a loaded machine


def post(port: int, body: Any, length: int, name: str) -> tuple[int, Any]:
    """POST /upload with ``body`` (bytes or an iterable of them) and its length."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=UPLOAD_TIMEOUT_S)
    try:
        conn.request("POST", "/upload", body=body, headers={"Content-Length": str(length), "X-File-Name": name})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


class Upload:
    """``size`` bytes made a MiB at a time as they are sent, and their digest."""

    def __init__(self, mib: int) -> None:
        self.size = mib * MIB
        self._block = random.Random(21).randbytes(MIB)
        self._mib = mib
        self.digest = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self._mib):
            block = i.to_bytes(4, "big") + self._block[4:]
            self.digest.update(block)
            yield block


async def test_a_100_mib_upload_is_checksummed_by_the_python_worker(start_server, run_example):
    server = await start_server()
    uploads = await run_example("binary-upload/upload_server.js", server=server, UPLOAD_PORT="0")
    port = int((await uploads.wait_line(r"upload server listening on http://127\.0\.0\.1:(\d+)"))[1])

    status, body = await asyncio.to_thread(post, port, b"no worker yet", 13, "early.bin")
    assert (status, body["error"]["code"]) == (503, "no_responders"), uploads.describe()

    worker = await run_example("binary-upload/checksum_worker.py", server=server)
    await worker.wait_line(r"checksum worker ready on .*")
    status, body = await asyncio.to_thread(post, port, b"", 0, "empty.bin")
    assert (status, body) == (200, {"name": "empty.bin", "sha256": hashlib.sha256(b"").hexdigest(), "size": 0, "chunks": 0})

    upload = Upload(100)
    status, body = await asyncio.wait_for(asyncio.to_thread(post, port, upload, upload.size, "big.bin"), UPLOAD_TIMEOUT_S + WAIT_S)
    assert status == 200, (body, uploads.describe(), worker.describe())
    assert body == {"name": "big.bin", "sha256": upload.digest.hexdigest(), "size": 100 * MIB, "chunks": 400}
