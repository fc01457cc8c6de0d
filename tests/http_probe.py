"""A raw HTTP/1.1 exchange over 127.0.0.1 for the metrics tests: the bytes
sent are exactly the test's, so malformed requests can be sent too."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = ["Reply", "http", "get"]

WAIT_S = 10.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


async def http(port: int, raw: bytes, *, timeout: float = WAIT_S) -> Reply:
    """Send ``raw``, read the answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert int(headers["content-length"]) == len(body) or raw.startswith(b"HEAD "), (headers, body)
    return Reply(status, headers, body)


async def get(port: int, path: str, method: str = "GET") -> Reply:
    return await http(port, f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n".encode())
