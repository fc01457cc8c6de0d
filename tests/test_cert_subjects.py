"""Certificate subjects as RFC 4514 strings (ipc_server/cert_subjects.py,
docs/security.md §2, §3.1): a users file's ``cert_subject`` as openssl
prints it parses to what ``ssl.getpeercert()`` reports, and the server's
rendering of a peer's subject parses back to the same attributes, whatever
the values hold. The real-certificate check against the openssl command is
in tests/test_auth_tls.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc_server.cert_subjects import parse_subject, render_subject, subject_of_cert


def peercert(*rdns: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {"subject": rdns}


@pytest.mark.parametrize(
    "text, value",
    [
        ("O=R\\+D", "R+D"),
        ('O=Acme \\"Q\\"', 'Acme "Q"'),
        ("O=a\\;b", "a;b"),
        ("O=\\<x\\>", "<x>"),
        ("O=back\\\\slash", "back\\slash"),
        ("O=a\\,b", "a,b"),
        ("O=k=v", "k=v"),
        ("O=k\\=v", "k=v"),
        ("O=\\#hash", "#hash"),
        ("O=x#y", "x#y"),
        ("O=\\ lead", " lead"),
        ("O=trail\\ ", "trail "),
        ("O=\\ \\ ", "  "),
        ("O=\\C3\\A9cole", "école"),
        ("O=\\c3\\a9cole", "école"),
        ("O=école", "école"),
        ("O=na\\C3\\AFve \\E2\\98\\83", "naïve ☃"),
        ("O=tab\\09x", "tab\tx"),
        ("O=nul\\00x", "nul\x00x"),
        ("O=R\\\\\\+D", "R\\+D"),
        ("O=#0C0452264426", "R&D&"),  # a DER UTF8String, as openssl dumps a value it has no text for
        ("O=#130170", "p"),
        ("O=#1E0200E9", "é"),
        ("O= spaced out ", "spaced out"),  # unescaped spaces around a value are not part of it
    ],
)
def test_rfc4514_escapes_are_read(text: str, value: str) -> None:
    assert parse_subject(text) == ((("organizationName", value),),)


def test_attributes_by_any_name_and_the_members_of_one_rdn_in_any_order() -> None:
    openssl = parse_subject("O=o,UID=u\\+1+CN=a")  # openssl's line for a multi-valued RDN
    assert parse_subject("O=o,CN=a+UID=u\\+1") == openssl
    assert parse_subject("organizationName = o, uid = u\\+1 + cn=a") == openssl
    assert parse_subject("2.5.4.10=o,2.5.4.3=a+0.9.2342.19200300.100.1.1=u\\+1") == openssl
    assert openssl == subject_of_cert(peercert((("commonName", "a"), ("userId", "u+1")), (("organizationName", "o"),)))
    # Names OpenSSL knows, as openssl prints them; an OID it does not, dotted.
    assert parse_subject("GN=G,SN=S,street=st,title=T,jurisdictionC=US,1.2.3.4=#0C0177") == subject_of_cert(peercert(
        (("1.2.3.4", "w"),), (("jurisdictionCountryName", "US"),), (("title", "T"),), (("streetAddress", "st"),), (("surname", "S"),), (("givenName", "G"),),
    ))  # fmt: skip


def test_the_rdns_count_in_openssls_order_or_its_exact_reverse() -> None:
    # openssl -nameopt RFC2253 prints the most specific RDN first; the X.500
    # order (openssl's default "DC = com, DC = example, CN = svc", or the old
    # "/DC=com/DC=example/CN=svc" converted) is the exact reverse.
    cert = subject_of_cert(peercert((("domainComponent", "com"),), (("domainComponent", "example"),), (("commonName", "svc"),)))
    assert parse_subject("CN=svc,DC=example,DC=com") == cert
    assert parse_subject("DC = com, DC = example, CN = svc") == cert
    assert parse_subject("CN=svc,DC=com,DC=example") != cert  # com.example: another domain


@pytest.mark.parametrize(
    "mine, other",
    [
        ("CN=svc,DC=example,DC=com", "CN=svc,DC=com,DC=example"),  # example.com, com.example
        ("CN=x,OU=admins,OU=eng", "CN=x,OU=eng,OU=admins"),  # admins in eng, eng in admins
        ("CN=x,OU=a,OU=a", "CN=x,OU=a"),  # a repeat counts
        ("CN=x,OU=a,O=o", "OU=a,CN=x,O=o"),  # neither the order nor its reverse
        ("CN=a+UID=u,O=o", "CN=a,UID=u,O=o"),  # one RDN is not two
    ],
)
def test_a_reordered_or_repeated_rdn_is_another_subject(mine: str, other: str) -> None:
    """With a CA that signs for several teams, a certificate with its DC or
    OU values reordered must not pass for another team's user."""
    assert parse_subject(mine) != parse_subject(other)
    long = {"CN": "commonName", "OU": "organizationalUnitName", "O": "organizationName", "DC": "domainComponent", "UID": "userId"}
    rdns = (tuple((long[k], v) for k, v in (a.split("=") for a in rdn.split("+"))) for rdn in reversed(other.split(",")))
    certificate = subject_of_cert(peercert(*rdns))  # what getpeercert() reports for the other certificate
    assert certificate == parse_subject(other)
    assert parse_subject(mine) != certificate


@pytest.mark.parametrize(
    "text, says",
    [
        ("O=R+D", "is not ATTRIBUTE=value"),  # '+' starts another attribute: 'D' has no '='
        ('O=Acme "Q"', "'\"' must be escaped"),
        ("O=a;b", "';' must be escaped"),
        ("O=<x>", "'<' must be escaped"),
        ("O=a\\qb", "'\\q' is no RFC 4514 escape"),
        ("O=trail\\", "ends with a lone '\\'"),
        ("O=\\FF", "not UTF-8"),
        ("O=#zz", "not hex"),
        ("O=#0401AA", "not the DER encoding of a string"),
        ("subject=CN=a", "drop the 'subject='"),
        ("CN=a,XX=1", "unknown attribute 'XX'"),
        ("CN=", "has no value"),
        ("CN=a,", "is not ATTRIBUTE=value"),
        ("", "is not ATTRIBUTE=value"),
    ],
)
def test_what_is_not_rfc4514_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_subject(text)
    assert says in str(info.value)


def test_the_escaped_text_is_not_the_literal_text() -> None:
    # The users file's O=R\+D is the certificate whose O is R+D, never the
    # one whose O holds the backslash (openssl prints that one R\\\+D).
    assert parse_subject("CN=rd,O=R\\+D") == subject_of_cert(peercert((("organizationName", "R+D"),), (("commonName", "rd"),)))
    assert parse_subject("CN=rd,O=R\\+D") != subject_of_cert(peercert((("organizationName", "R\\+D"),), (("commonName", "rd"),)))


def test_rendering_is_openssls_rfc2253_line() -> None:
    rdns = ((("commonName", "a"), ("userId", "u+1")), (("organizationName", "#é "),), (("1.2.3.4", "w"),))
    assert render_subject(rdns) == "1.2.3.4=#0C0177,O=\\#\\C3\\A9\\ ,UID=u\\+1+CN=a"
    assert render_subject(()) is None


NAMES = ("commonName", "organizationName", "organizationalUnitName", "emailAddress", "surname", "domainComponent", "1.2.3.4")
SPECIAL = ' "#+,;<=>\\\t\n\x00\x7f\x85éß☃🙂'
values = st.text(alphabet=st.one_of(st.sampled_from(SPECIAL), st.characters(blacklist_categories=("Cs",))), min_size=1, max_size=12)
rdn = st.lists(st.tuples(st.sampled_from(NAMES), values), min_size=1, max_size=3).map(tuple)


@settings(max_examples=500, deadline=None)
@given(st.lists(rdn, min_size=1, max_size=4).map(tuple))
def test_rendering_and_parsing_agree_on_every_character(rdns: tuple[tuple[tuple[str, str], ...], ...]) -> None:
    text = render_subject(rdns)
    assert text is not None
    assert parse_subject(text) == subject_of_cert(peercert(*rdns))
    reverse = ",".join(reversed(text.split(","))) if "\\," not in text else None
    if reverse is not None:  # the same RDNs written the other way round
        assert parse_subject(reverse) == subject_of_cert(peercert(*rdns))
