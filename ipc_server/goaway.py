"""How the shutdown (docs/protocol.md §13 item 3) closes each connection.

Closing a socket the peer is still writing to makes the kernel answer
with a reset, and a reset makes the peer's kernel discard what it has not
read yet: a busy requester's answers, ``shutting_down`` included, became
``connection_lost`` (40 of 40 calls in flight at a SIGTERM). So:

- a connection granted ``goaway`` (§15.1) is sent the goaway notice and
  stays open: the server reads on, answers what crosses the notice
  (requests ``shutting_down``, since the server is closing), routes
  publishes, and closes once the client closes, which it does when its
  calls have their answers; the shutdown's wait (2 s) bounds it;
- any other connection has its writing side shut (``linger``): what was
  written reaches the peer, what it sends after is read and dropped until
  it closes, or the same wait ends.
"""

from __future__ import annotations

from ipc_protocol.restarts import GOAWAY, goaway_notice

from .connection import ServerConnection

__all__ = ["close_for_shutdown", "SHUTTING_DOWN"]

SHUTTING_DOWN = "the server is shutting down"  # the close line, and what requests are answered (server.py)


def close_for_shutdown(conn: ServerConnection) -> None:
    """Tell ``conn`` to go away, or shut its writing side; never a reset."""
    if conn.opened and conn.is_open and not conn.legacy and GOAWAY in conn.protocol.features:
        conn._closed_because(SHUTTING_DOWN)  # the line logged when the client closes
        if conn.send(goaway_notice(conn.app_id), at_once=True):
            return
    conn.close(SHUTTING_DOWN, linger=True)
