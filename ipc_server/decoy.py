"""The hash a token is checked against when the named user has none to
match (docs/security.md §3.2): an unknown user, or a certificate user
without its certificate. The check must cost what a wrong token costs, or
its time tells which names exist; so the decoy has the scrypt parameters
the users file's hashes have (a file hashed with ``--cost 10`` answered a
wrong token in 5 ms and an unknown user in 59 ms while the decoy had the
default cost), and it is made again on each reload.

A decoy is a random salt and a random digest, never a hash of anything:
making it costs nothing, and no token can match it.
"""

from __future__ import annotations

import base64
import os
from collections import Counter

from .users import DEFAULT_SCRYPT_LOG_N, DEFAULT_SCRYPT_P, DEFAULT_SCRYPT_R, Users
from .users import _parse_hash as parse_hash  # a loaded file's hashes are valid

__all__ = ["decoy_hash", "decoy_parameters"]

_SALT_BYTES = 16  # as hash-token makes them
_DIGEST_BYTES = 32


def decoy_parameters(users: Users) -> tuple[int, int, int]:
    """``(ln, r, p)``: those most of the file's token hashes have, so that
    most users' wrong tokens cost what an unknown name costs; on a tie the
    costlier; hash-token's default when no user has a token."""
    counts = Counter(parse_hash(user.token_hash)[:3] for user in users.by_name.values() if user.token_hash is not None)
    if not counts:
        return DEFAULT_SCRYPT_LOG_N, DEFAULT_SCRYPT_R, DEFAULT_SCRYPT_P
    return max(counts, key=lambda lrp: (counts[lrp], lrp[1] * lrp[2] << lrp[0]))


def decoy_hash(users: Users) -> str:
    """A PHC string with :func:`decoy_parameters` that no token matches."""
    log_n, r, p = decoy_parameters(users)
    salt, digest = (base64.b64encode(os.urandom(n)).decode().rstrip("=") for n in (_SALT_BYTES, _DIGEST_BYTES))
    return f"$scrypt$ln={log_n},r={r},p={p}${salt}${digest}"
