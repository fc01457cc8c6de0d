"""Decoding what a server relays: the envelope validated in one pass, the
payload left in its frame until something reads it (``deferred_payload``).
A server reads no request's, answer's or publish's payload on its way
through (docs/performance.md, "One pass per frame"), and decodes a
connection's frames so until it calls one of the server's in-process
handlers; the rare frames whose payload it does read (a registration's
``serve``, a ``system`` action, an idempotency key's digest, a handler's
first request from a connection) decode it then, from the same bytes.
"""

from __future__ import annotations

from pydantic_core import ValidationError

from ._json import _I, _N, _maybe_huge, _names_non_finite
from .deferred_payload import FRAME, envelope_validator
from .envelope import Message, decode_message

__all__ = ["decode_envelope"]

_setattr = object.__setattr__
_SAMPLE = b'{"message_id":"m","app_id":"a","channel_id":"c","message_type":"publish","payload":{"k":[1]}}'
_validate = envelope_validator(Message, _SAMPLE)


def decode_envelope(body: bytes) -> Message:
    """:func:`~ipc_protocol.decode_message` (attachments as views of
    ``body``) with the payload of a JSON frame left in ``body`` until read;
    every verdict, and every error's words, are decode_message's."""
    # ``_json.plain`` and ``envelope.in_one_pass`` written out, and the first
    # byte read as an int rather than sliced: this runs on every frame relayed.
    if (
        _validate is not None
        and body.__class__ is bytes
        and body
        and body[0]  # not a binary frame (§16.2)
        and not ((_N in body or _I in body) and _names_non_finite(body))
        and not _maybe_huge(body)
    ):
        try:
            msg: Message = _validate(body)
        except ValidationError:
            pass  # refused below, in the decoder's words
        else:
            if msg.attachments is None:  # else refused below: only a binary frame carries them
                _setattr(msg, "__pydantic_private__", {FRAME: body})
                return msg
    return decode_message(body, views=True)  # a refusal in its words, or the payload decoded too
