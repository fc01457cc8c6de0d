"""The one version of the two packages, as each ecosystem spells it.

The Python distribution and the npm package carry the same version
(CHANGELOG.md), but PEP 440 and semver spell a pre-release differently:
the checkout between releases is ``2.1.0.dev0`` to pip and ``2.1.0-dev.0``
to npm. ``pep440_of_npm`` rewrites the npm spelling in PEP 440's normal
form, which is how setuptools writes the distribution's version, so that
the two compare as strings: a mismatch (``2.1.0.dev0`` beside
``2.1.0-dev.1``) stays one.

Only the pre-release labels ``dev`` and ``rc`` are mapped, because they
sort alike in both: ``dev`` < ``rc`` < the release, in PEP 440 and in
semver (which compares labels as text). ``alpha`` and ``beta`` would not
once ``dev`` is used (PEP 440: dev < a < b; semver: alpha < beta < dev),
so a version spelled with them, or with anything else (a build tag, a
label without its number), is refused rather than guessed at.
"""

from __future__ import annotations

import re

__all__ = ["pep440_of_npm"]

_NUMBER = r"(?:0|[1-9]\d*)"  # semver: no leading zeros
_NPM = re.compile(rf"({_NUMBER}\.{_NUMBER}\.{_NUMBER})(?:-(dev|rc)\.({_NUMBER}))?")
_PEP440_LABEL = {"dev": ".dev", "rc": "rc"}


def pep440_of_npm(version: str) -> str:
    """``2.1.0-dev.0`` -> ``2.1.0.dev0``, ``2.1.0-rc.1`` -> ``2.1.0rc1``,
    ``2.1.0`` -> ``2.1.0``; ``ValueError`` for any other spelling."""
    match = _NPM.fullmatch(version)
    if match is None:
        raise ValueError(f"npm version {version!r} is not MAJOR.MINOR.PATCH, optionally with -dev.N or -rc.N")
    release, label, number = match.groups()
    return release if label is None else f"{release}{_PEP440_LABEL[label]}{number}"
