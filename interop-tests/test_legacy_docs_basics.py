"""The code blocks of the legacy ``@ifesol/ipc-framework-nodejs``
documentation (``legacy-docs/ipc-framework-nodejs.md``), run unmodified
against our server: each block file checked against the document, and the
basic blocks (Quick Start, Basic Usage, the migration's connection test,
Real-time Notifications, Data Processing Pipeline) run.

People migrating from that package have these blocks in their services; they
must run with only the ``require(...)`` line and the port changed. Each block
is a file in ``legacy-docs/`` (``test_blocks_are_the_document_s`` checks it
against the document), run as a real Node process against the real Python
server on a free port, with a Python service (the real ``ipc_client``) in the
block's app answering what it calls and publishing what it waits for; its
output and what the Python side received are checked. The Express blocks are
in ``test_legacy_docs_express.py``, the patterns (Service Discovery to
Performance Optimization) in ``test_legacy_docs_patterns.py``; what they all
share is in ``legacy_docs_support.py``.

``require('./ipc-framework-nodejs')`` is ``legacy-docs/ipc-framework-nodejs.js``:
js-client with the port change (8888 -> ``IPC_TEST_PORT``).

A block that cannot do what the document says because of the document's own
code is recorded as such (a strict ``xfail`` or an assertion on the exact
failure), naming the line of ``ipc-framework-nodejs.md``.

Every wait is bounded and waits on an output line or a call reaching the
Python service, never on a fixed sleep; every process started here is killed
on teardown.
"""

from __future__ import annotations

import signal
from datetime import datetime, timezone
from typing import Any

from legacy_docs_support import DOCS, actions
from legacy_docs_support import run_block, service  # noqa: F401 (fixtures)

DOCUMENT = DOCS / "ipc-framework-nodejs.md"


# file -> (first and last line of the block in DOCUMENT, the heading above it)
BLOCKS = {
    "quick-start.js": (56, 114, "### Basic Node.js Client"),
    "basic-usage.js": (264, 282, "### Basic Usage"),
    "realtime-notifications.js": (288, 314, "### Real-time Notifications"),
    "data-processing-pipeline.js": (320, 374, "### Data Processing Pipeline"),
    "express-basic.js": (382, 508, "### Basic Integration"),
    "express-advanced.js": (514, 684, "### Advanced Express Integration"),
    "service-discovery.js": (692, 859, "### Service Discovery Pattern"),
    "load-balancer.js": (865, 1001, "### Load Balancer Pattern"),
    "connection-pooling.js": (1009, 1152, "### Connection Pooling"),
    "message-queuing.js": (1158, 1344, "### Message Queuing"),
    "error-handling.js": (1352, 1548, "### Error Handling"),
    "performance-optimization.js": (1554, 1845, "### Performance Optimization"),
    "migration-test-connection.js": (1907, 1921, "5. **Test the connection:**"),
}
LEGACY_REQUIRE = "require('@ifesol/ipc-framework-nodejs')"
OUR_REQUIRE = "require('./ipc-framework-nodejs')"
# The one hard-coded HTTP port of the blocks becomes a free one.
PORT_CHANGES = {"express-advanced.js": [("service.start(3000);", "service.start(process.env.PORT);")]}


def test_blocks_are_the_document_s():
    """Each file is its block, byte for byte (mojibake included), but for the
    require line and the port."""
    lines = DOCUMENT.read_bytes().decode("utf-8").split("\n")
    assert set(BLOCKS) == {p.name for p in DOCS.glob("*.js")} - {"ipc-framework-nodejs.js", "drive.js", "service-discovery.driver.js"}
    for name, (first, last, heading) in BLOCKS.items():
        assert lines[first - 2] == "```javascript" and lines[last] == "```", name
        assert heading in lines[first - 10 : first - 1], name
        block = "\n".join(lines[first - 1 : last]) + "\n"
        assert block.count(LEGACY_REQUIRE) == 1, name
        expected = block.replace(LEGACY_REQUIRE, OUR_REQUIRE)
        for old, new in PORT_CHANGES.get(name, []):
            assert expected.count(old) == 1, (name, old)
            expected = expected.replace(old, new)
        assert (DOCS / name).read_bytes().decode("utf-8") == expected, f"{name} differs from the document's lines {first}-{last}"


# -- Quick Start ---------------------------------------------------------------------


async def test_quick_start(start_server, service, run_block):
    server = await start_server()
    notification = {"level": "info", "text": "users requested"}

    async def get_users(p: Any) -> Any:
        assert p == {"action": "get_users", "filters": {"active": True}}
        # Published before answering: the block's subscription (sent before
        # its request, on the same connection) gets it before the response.
        await svc.client.publish("notifications", notification)
        return {"users": [{"id": 1, "name": "Ada Lovelace"}], "total": 1}

    svc = await service(server, "my_app", {"api": actions({"get_users": get_users})}, subscribe=("events",))
    block = await run_block("quick-start.js", server=server)
    assert await block.wait_exit() == 0, block.describe()
    assert [line.split(" ", 1)[1] for line in block.out] == [
        "Connected to Python server via TCP",
        "Notification: { level: 'info', text: 'users requested' }",
        "API Response: { users: [ { id: 1, name: 'Ada Lovelace' } ], total: 1 }",
        "Disconnected from Python server",
    ], block.describe()
    assert not block.matching("Error", "err"), block.describe()
    # publish() is not awaited and disconnect() follows at once (document
    # lines 101 and 110): the frame is written before the socket is closed,
    # so the Python subscriber gets the event.
    event = await svc.wait_publication("events")
    assert event["type"] == "user_action" and event["action"] == "data_requested" and isinstance(event["timestamp"], int)


# -- Basic Usage -----------------------------------------------------------------------


async def test_basic_usage(start_server, service, run_block):
    server = await start_server()
    now = datetime.now(timezone.utc).isoformat()
    svc = await service(server, "basic-app", {"system": actions({"get_time": lambda p: {"time": now, "timezone": "UTC"}})})
    block = await run_block("basic-usage.js", server=server)
    assert await block.wait_exit() == 0, block.describe()
    assert block.out == [
        "Ping response: { status: 'pong' }",  # the server's own answer
        f"Server time: {{ time: '{now}', timezone: 'UTC' }}",  # the Python service's
    ], block.describe()
    assert svc.calls == [("system", {"action": "get_time"})]  # ping never reached it


# -- Migration step 5: Test the connection ------------------------------------------------


async def test_migration_test_connection(start_server, run_block):
    server = await start_server()
    block = await run_block("migration-test-connection.js", server=server)
    assert await block.wait_exit() == 0, block.describe()
    assert len(block.out) == 2 and block.out[0].endswith(" v1.1.1 working correctly!"), block.describe()
    assert block.out[1] == "Ping response: { status: 'pong' }", block.describe()


# -- Real-time Notifications -------------------------------------------------------------


async def test_realtime_notifications(start_server, service, run_block):
    server = await start_server()
    svc = await service(server, "notification-app")
    block = await run_block("realtime-notifications.js", server=server)
    await block.wait_line(r"^Listening for notifications\.\.\. Press Ctrl\+C to exit$")
    await svc.wait_subscribed("status", "alerts")
    await svc.client.publish("status", {"service": "db", "state": "degraded"})
    await svc.client.publish("alerts", {"severity": "high", "message": "disk 91% full"})
    await svc.client.publish("other", {"ignored": True})
    await svc.client.publish("status", {"service": "db", "state": "ok"})
    await block.wait_line(r"^Status update: \{ service: 'db', state: 'ok' \}$")
    assert block.out[1:] == [
        "Status update: { service: 'db', state: 'degraded' }",
        "Alert received: { severity: 'high', message: 'disk 91% full' }",
        "Status update: { service: 'db', state: 'ok' }",
    ], block.describe()
    block.signal(signal.SIGINT)  # the block's own handler: disconnect, exit 0
    assert await block.wait_exit() == 0, block.describe()
    await svc.wait_subscribed("status", "alerts", count=0)


# -- Data Processing Pipeline ---------------------------------------------------------------


async def test_data_processing_pipeline(start_server, service, run_block):
    server = await start_server()

    def process_data(p: Any) -> Any:
        assert p["options"] == {"algorithm": "advanced", "validate": True}
        if not isinstance(p["data"], list):
            raise ValueError(f"data must be a list of numbers, got {type(p['data']).__name__}")
        return {"sum": sum(p["data"]), "count": len(p["data"])}

    svc = await service(server, "data-processor", {"processor": actions({"process_data": process_data})},
                        subscribe=("processed_data", "errors"))
    block = await run_block("data-processing-pipeline.js", server=server)
    await block.wait_line(r"^Data processor started$")
    await svc.wait_subscribed("raw_data")

    await svc.client.publish("raw_data", {"id": "batch-1", "data": [1, 2, 3.5]})
    done = await svc.wait_publication("processed_data")
    assert done["id"] == "batch-1" and done["result"] == {"sum": 6.5, "count": 3} and isinstance(done["processed_at"], int)

    await svc.client.publish("raw_data", {"id": "batch-2", "data": "oops"})
    failed = await svc.wait_publication("errors")
    assert failed["id"] == "batch-2" and failed["error"] == "data must be a list of numbers, got str"
    await block.wait_line(r"^Failed to process data batch-2: data must be a list of numbers, got str$", "err")
    assert len(svc.calls_to("processor", "process_data")) == 2
    assert svc.got("processed_data") == [done]
