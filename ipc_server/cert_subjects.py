"""Certificate subjects as RFC 4514 strings (docs/security.md §2, §3.1):
a users file's ``cert_subject`` parsed, a verified peer certificate's
subject read and rendered. Pure: no I/O.

One module does all three so that they agree on every special character:
the string ``openssl x509 -noout -subject -nameopt RFC2253`` prints for a
certificate parses to exactly the attributes ``ssl.getpeercert()`` reports
for it, and so does :func:`render_subject`'s. A subject is compared as the
sequence of its RDNs, in order and with repeats, each RDN the set of its
(attribute, value) pairs (the attribute by the name ``getpeercert()`` uses,
``commonName``): the order of DC and OU values is part of the name
(``DC=example,DC=com`` is not ``DC=com,DC=example``), only the members of
one multi-valued RDN (``+``) are unordered. A string may be written in
either direction (openssl's RFC 2253 line, most specific first, or the
X.500 order some tools print), so a :data:`Subject` is the lesser of the
sequence and its reverse: equal subjects are the same or reversed
sequences, and nothing else.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Subject", "parse_subject", "subject_of_cert", "render_subject", "ATTRIBUTE_NAMES"]

# RDNs, each a sorted tuple of (attribute, value): see _canonical.
Subject = tuple[tuple[tuple[str, str], ...], ...]

# Short names (RFC 4514 §3 and the usual ones) to getpeercert()'s names, case
# insensitive; any other name OpenSSL knows (``GN``, ``title``...) is looked
# up in its table, as openssl spells it, and a dotted OID is taken as is.
_ATTRIBUTES = {
    "CN": "commonName",
    "O": "organizationName",
    "OU": "organizationalUnitName",
    "C": "countryName",
    "ST": "stateOrProvinceName",
    "L": "localityName",
    "STREET": "streetAddress",
    "DC": "domainComponent",
    "UID": "userId",
    "SERIALNUMBER": "serialNumber",
    "EMAILADDRESS": "emailAddress",
}
_LONG_NAMES = {v.lower(): v for v in _ATTRIBUTES.values()}
ATTRIBUTE_NAMES = tuple(_ATTRIBUTES)

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+")
_OID = re.compile(r"[0-9]+(?:\.[0-9]+)+")
_HEX = "0123456789abcdefABCDEF"
# What a backslash may escape (RFC 4514 §3: "special" and "=").
_ESCAPABLE = ' "#+,;<=>\\'
# What must be escaped in a value wherever it is (RFC 4514 §2.4).
_MUST_ESCAPE = ',+"\\<>;'
# The DER string types a ``#hex`` value may hold, with their encodings (T61
# read as Latin-1, as OpenSSL converts it).
_DER_STRINGS = {0x0C: "utf-8", 0x12: "ascii", 0x13: "ascii", 0x14: "latin-1", 0x16: "ascii", 0x1A: "ascii", 0x1C: "utf-32-be", 0x1E: "utf-16-be"}


def _attribute(key: str) -> str:
    name = _ATTRIBUTES.get(key.upper()) or _LONG_NAMES.get(key.lower())
    if name is not None:
        return name
    if _KEY.fullmatch(key):
        try:
            return ssl._ASN1Object.fromname(key).longname
        except ValueError:
            if _OID.fullmatch(key):
                return key  # an OID OpenSSL has no name for: getpeercert() shows it dotted
    raise ValueError(f"unknown attribute {key!r} (attributes: {', '.join(ATTRIBUTE_NAMES)}, any other as openssl prints it, or a dotted OID)")


def _der_string(digits: str, where: str) -> str:
    """A ``#hex`` value: the DER encoding of a string, as openssl prints a value it has no text form for."""
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"{where}: '#' starts a hex DER value, and {digits!r} is not hex (write '\\#' for a literal '#')") from None
    length, start = (raw[1], 2) if len(raw) >= 2 else (-1, 2)
    if length >= 0x80:
        size = length & 0x7F
        length, start = int.from_bytes(raw[2 : 2 + size], "big"), 2 + size
    if len(raw) < 2 or raw[0] not in _DER_STRINGS or len(raw) != start + length:
        raise ValueError(f"{where}: #{digits} is not the DER encoding of a string")
    try:
        return raw[start:].decode(_DER_STRINGS[raw[0]])
    except UnicodeDecodeError:
        raise ValueError(f"{where}: #{digits} is not a valid string of its type") from None


def _value(text: str, i: int, where: str) -> tuple[str, int]:
    """The value starting at ``text[i]`` and the index of what ends it
    (``,``, ``+`` or the end). Unescaped spaces around it are dropped;
    ``\\X`` is X, ``\\hh`` a byte of the UTF-8 text (openssl writes every
    byte of a non-ASCII character so)."""
    n = len(text)
    while i < n and text[i] == " ":
        i += 1
    if i < n and text[i] == "#":
        end = i + 1
        while end < n and text[end] not in ",+":
            end += 1
        return _der_string(text[i + 1 : end].rstrip(" "), where), end
    raw = bytearray()
    kept = 0  # len(raw) up to the last escaped or non-space character: trailing unescaped spaces go
    while i < n and text[i] not in ",+":
        c = text[i]
        if c == "\\":
            pair = text[i + 1 : i + 3]
            if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
                raw.append(int(pair, 16))
                i += 3
            elif i + 1 < n and text[i + 1] in _ESCAPABLE:
                raw.extend(text[i + 1].encode())
                i += 2
            elif i + 1 == n:
                raise ValueError(f"{where}: ends with a lone '\\' (a value ending in a space is written '\\ ': was the space lost in a copy?)")
            else:
                raise ValueError(f"{where}: '\\{text[i + 1]}' is no RFC 4514 escape ('\\' escapes one of {_ESCAPABLE!r} or is followed by two hex digits)")
            kept = len(raw)
            continue
        if c in _MUST_ESCAPE:
            raise ValueError(f"{where}: {c!r} must be escaped as '\\{c}' in a value (RFC 4514)")
        raw.extend(c.encode("utf-8", "surrogatepass"))
        if c != " ":
            kept = len(raw)
        i += 1
    try:
        value = bytes(raw[:kept]).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{where}: its \\hh escapes are not UTF-8") from None
    return value, i


def _canonical(rdns: Iterable[Iterable[tuple[str, str]]]) -> Subject:
    """RDNs in their order, repeats kept, the members of each sorted (a
    multi-valued RDN is a set); then the lesser of that and its reverse, so
    that a string in either direction is the same subject and a reordered
    or repeated RDN is another one."""
    forward = tuple(tuple(sorted(rdn)) for rdn in rdns)
    return min(forward, forward[::-1])


def parse_subject(text: str) -> Subject:
    """An RFC 4514 string (``"CN=alice,O=R\\+D"``) as a :data:`Subject`.

    RDNs are separated by ``,``, the attributes of one RDN by ``+`` (in any
    order); the RDNs count in order, in either direction. Unescaped spaces
    around names and values are ignored. Raises ``ValueError`` saying what
    is wrong."""
    if text.lower().startswith("subject="):
        raise ValueError("drop the 'subject=' that openssl prints before the subject")
    rdns: list[list[tuple[str, str]]] = [[]]
    i, n = 0, len(text)
    while True:
        eq = text.find("=", i)
        key = text[i:eq].strip(" ") if eq >= 0 else ""
        if eq < 0 or not _KEY.fullmatch(key):
            raise ValueError(f"{text[i:].split(',')[0]!r} is not ATTRIBUTE=value (attributes: {', '.join(ATTRIBUTE_NAMES)}...)")
        name = _attribute(key)
        value, i = _value(text, eq + 1, f"the value of {key}")
        if not value:
            raise ValueError(f"{key}= has no value")
        rdns[-1].append((name, value))
        if i >= n:
            return _canonical(rdns)
        if text[i] == ",":
            rdns.append([])  # "," starts the next RDN; "+" adds to this one
        i += 1


def subject_of_cert(peercert: Mapping[str, Any] | None) -> Subject | None:
    """The subject of a verified peer certificate (``ssl.getpeercert()``), or None."""
    if not peercert:
        return None
    rdns = peercert.get("subject") or ()
    return _canonical(((str(k), str(v)) for k, v in rdn) for rdn in rdns)


def _short_name(name: str) -> str:
    try:
        return ssl._ASN1Object.fromname(name).shortname
    except ValueError:
        return name  # a dotted OID


def _escape(value: str) -> str:
    """RFC 4514 §2.4, as openssl's RFC2253 option escapes: the specials with
    a backslash, a leading space or ``#`` and a trailing space too, control
    characters and every byte of a non-ASCII one as ``\\hh``."""
    out = []
    last = len(value) - 1
    for i, c in enumerate(value):
        if c in _MUST_ESCAPE or (c == " " and i in (0, last)) or (c == "#" and i == 0):
            out.append("\\" + c)
        elif c < " " or c >= "\x7f":
            out.extend(f"\\{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        else:
            out.append(c)
    return "".join(out)


def render_subject(rdns: Iterable[Iterable[tuple[str, str]]]) -> str | None:
    """``getpeercert()["subject"]`` as openssl's ``-nameopt RFC2253`` prints
    it: most specific first, ``+`` between the attributes of one RDN. A
    value of an attribute OpenSSL has no name for is written ``#`` and the
    hex of its DER (as a UTF8String), as RFC 4514 says for a dotted OID."""
    entries = [(index, name, value) for index, rdn in enumerate(rdns) for name, value in rdn]
    out: list[str] = []
    previous = None
    for index, name, value in reversed(entries):
        if previous is not None:
            out.append("+" if index == previous else ",")
        previous = index
        short = _short_name(name)
        if _OID.fullmatch(short):
            body = value.encode()
            size = bytes([len(body)]) if len(body) < 0x80 else bytes([0x82]) + len(body).to_bytes(2, "big")
            der = bytes([0x0C]) + size + body
            out.append(f"{short}=#{der.hex().upper()}")
        else:
            out.append(f"{short}={_escape(value)}")
    return "".join(out) or None
