"""What the client does differently on a connection to a 1.1.x server
(version 1, docs/legacy.md, docs/protocol.md §10), beyond the wire's form;
the same rules as Node's lib/legacy_server.js:

- a ``notification`` from it is a broadcast to the channel's subscribers
  (lifecycle.py ``_on_message``): the 1.1.x server sends its own broadcasts
  so (its examples' ``server._handle_publish(Message(message_type=NOTIFICATION, ...))``),
  and the 1.1.x client hands them to the subscriber; it never forwards a
  request or a notification to a client to serve;
- what it lacks is refused before anything is sent (:func:`unavailable`):
  responders (``serve``: a 1.1.x server routes requests only to its own
  handlers) and wildcard subscriptions (it matches channel names exactly).
  Both clients raise ``MessageError`` (``bad_message``), as for a feature
  the handshake did not grant (§15.1, §16.1).
"""

from __future__ import annotations

from ipc_protocol import MessageError, is_pattern

__all__ = ["unavailable"]


def unavailable(channel: str, *, serve: bool) -> MessageError | None:
    """The error a registration gets on a connection to a 1.1.x server, or
    None when that server can hold it (a subscription to an exact name)."""
    if serve:
        return MessageError(
            f"serve({channel!r}) needs a version-2 server: a 1.1.x server (protocol 1) routes requests only to its own handlers"
        )
    if is_pattern(channel):
        return MessageError(
            f"subscribe({channel!r}): wildcard subscriptions need a version-2 server; a 1.1.x server (protocol 1) matches channel names exactly"
        )
    return None
