"""HTTP from the tests to the Node HTTP servers they start (the http-gateway
example, the legacy documentation's Express blocks): JSON calls and a
Server-Sent Events reader on http.client, each read bounded by the socket
timeout, run in threads so the event loop keeps reading the processes'
output."""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any

from conftest import WAIT_S


def _http(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        content_type = resp.getheader("Content-Type") or ""
        assert content_type.split(";")[0] == "application/json", f"{method} {path}: Content-Type {content_type!r}"
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


async def http_json(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One JSON call: its status and its parsed body (which must be JSON)."""
    return await asyncio.to_thread(_http, port, method, path, body)


class EventStream:
    """A Server-Sent Events client. The response is read with the first
    event: Node sends writeHead()'s headers with the first write, and a
    server may write nothing before an event."""

    def __init__(self, port: int, path: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream"})
        self._resp: http.client.HTTPResponse | None = None

    @property
    def resp(self) -> http.client.HTTPResponse:
        if self._resp is None:
            self._resp = self.conn.getresponse()
        return self._resp

    def next_event(self) -> dict[str, str]:
        """Fields of the next event (comments skipped; ``data`` lines joined)."""
        fields: dict[str, str] = {}
        while True:
            line = self.resp.readline().decode()
            if not line:
                raise AssertionError(f"the event stream ended; got {fields}")
            line = line.rstrip("\r\n")
            if not line:
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value

    async def next(self) -> Any:
        """The JSON of the next event's data."""
        return json.loads((await asyncio.to_thread(self.next_event))["data"])

    def close(self) -> None:
        self.conn.close()
