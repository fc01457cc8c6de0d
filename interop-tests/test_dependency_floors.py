"""The oldest release pyproject.toml lets pip install of each dependency is
one that works.

pip installs whatever a requirement admits, and an environment that already
holds an old release keeps it. ``pydantic>=2`` paired the bridge with
pydantic 2.0-2.10, where every typed handler's answer failed (and from 2.0
to 2.6 the import or every request did), and ``nats-py>=2.6`` a cluster node
with nats-py 2.6-2.15, which never joined. Each floor in ``FLOORS`` is the
first release with every call the code makes, found by installing the
releases around it and running the tests against each (CHANGELOG.md); the
call named is the one the release before it lacks. The tests check that
every requirement naming the package, in the dependencies and in every
extra, admits nothing older, and that the code still makes that call: when
it no longer does, the floor's reason is gone and the entry must be redone.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import ROOT


@dataclass(frozen=True)
class Floor:
    version: str
    source: str  # the module that makes the call
    marker: str  # text of the call in that module
    why: str  # what the release before the floor does instead


FLOORS = {
    "pydantic": Floor(
        "2.11",
        "ipc_protocol/contracts.py",
        "validate_python(result, by_alias=True, by_name=True)",
        "2.10.6 has no by_alias/by_name there: every answer of a handler with a return annotation is handler_error TypeError",
    ),
    # the cluster extra, the test extra (the cluster tests) and the bench extra (its cluster runs)
    "nats-py": Floor(
        "2.16",
        "ipc_server/cluster/link.py",
        '"skip_subject_validation": True',
        "2.15.0's Client.connect() has no skip_subject_validation: the node logs an ERROR and never joins the cluster",
    ),
}


def _requirements() -> list[tuple[str, Requirement]]:
    """Every requirement of pyproject.toml, with where it is: ``dependencies`` or ``extra NAME``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = [("dependencies", Requirement(r)) for r in project["dependencies"]]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        found += [(f"extra {extra}", Requirement(r)) for r in reqs]
    return found


def _lowest_admitted(req: Requirement) -> Version | None:
    """The lower bound of a requirement's specifier (``>=``, ``>``, ``~=``, ``==``); None: unbounded below."""
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", ">", "~=", "==", "===")]
    return max(bounds) if bounds else None


@pytest.mark.parametrize("package", list(FLOORS))
def test_every_requirement_of_the_package_admits_no_release_below_its_floor(package: str) -> None:
    floor = FLOORS[package]
    naming = [(where, req) for where, req in _requirements() if canonicalize_name(req.name) == canonicalize_name(package)]
    assert naming, f"pyproject.toml names no {package}: drop its floor here"
    too_low = [f"{where}: {req}" for where, req in naming if (_lowest_admitted(req) or Version("0")) < Version(floor.version)]
    assert not too_low, f"{package} below {floor.version} admitted ({floor.why}): {too_low}"


@pytest.mark.parametrize("package", list(FLOORS))
def test_the_code_still_makes_the_call_that_sets_the_floor(package: str) -> None:
    floor = FLOORS[package]
    assert floor.marker in (ROOT / floor.source).read_text(encoding="utf-8"), f"{floor.source} no longer has {floor.marker!r}: find {package}'s floor again"


@pytest.mark.parametrize("package", list(FLOORS))
def test_the_installed_release_is_not_below_the_floor(package: str) -> None:
    try:
        installed = metadata.version(package)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{package} is not installed")
    assert Version(installed) >= Version(FLOORS[package].version), f"{package} {installed} is installed: {FLOORS[package].why}"
