"""What the packages ship: one version across Python and npm (each spelling
it by its own rules: versions.py), past the last release while changes
wait under [Unreleased], the licence
in the wheel's metadata and in the npm tarball, the console script's name
(the legacy package owns ``ipc-server``), and an sdist that is the source
tree (MANIFEST.in): its tests collect, its README's links resolve."""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from packaging.version import Version

import ipc_client
import ipc_protocol
import ipc_server
from ipc_protocol.version import DISTRIBUTION
from ipc_server.config import SERVER_NAME
from legacy_docs_support import _npm
from versions import pep440_of_npm

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "js-client"


def _package_json() -> dict:
    return json.loads((JS / "package.json").read_text(encoding="utf-8"))


def test_one_version_across_the_python_packages_and_npm(node: str) -> None:
    """The same version, by PEP 440 in Python and by semver in npm (versions.py)."""
    import tomllib

    installed = metadata.version(DISTRIBUTION)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert installed == declared, f"the installed metadata says {installed}, pyproject.toml {declared}: install the checkout again (pip install -e)"
    assert ipc_protocol.__version__ == ipc_client.__version__ == ipc_server.__version__ == installed
    assert str(Version(installed)) == installed, f"{installed} is not in PEP 440's normal form"
    npm_version = _package_json()["version"]
    assert pep440_of_npm(npm_version) == installed, f"npm {npm_version} is not Python's {installed}"
    script = "const c = require('./index.js'); process.stdout.write(c.VERSION)"
    node_version = subprocess.run([node, "-e", script], cwd=JS, capture_output=True, text=True, timeout=30, check=True).stdout
    assert node_version == npm_version
    assert SERVER_NAME == f"ipc-bridge/{installed}"  # the connect reply's `server` (docs/protocol.md §3)


@pytest.mark.parametrize(
    ("npm", "pep440"), [("2.1.0-dev.0", "2.1.0.dev0"), ("2.1.0-dev.12", "2.1.0.dev12"), ("2.1.0-rc.1", "2.1.0rc1"), ("2.1.0", "2.1.0"), ("10.0.3", "10.0.3")]
)
def test_an_npm_version_is_read_as_the_same_pep_440_version(npm: str, pep440: str) -> None:
    assert pep440_of_npm(npm) == pep440 == str(Version(pep440))


def test_versions_that_differ_stay_different() -> None:
    assert pep440_of_npm("2.1.0-dev.1") != "2.1.0.dev0"
    assert pep440_of_npm("2.1.0-rc.0") != "2.1.0.dev0"
    assert pep440_of_npm("2.1.0") != "2.1.0.dev0"
    assert pep440_of_npm("2.1.1-dev.0") != "2.1.0.dev0"


@pytest.mark.parametrize("npm", ["2.1.0.dev0", "2.1.0-dev", "2.1.0-alpha.1", "2.1.0-beta.1", "2.1.0-dev.0+abc", "v2.1.0", "02.1.0", "2.1", "2.1.0-dev.01"])
def test_an_npm_version_outside_the_scheme_is_refused(npm: str) -> None:
    with pytest.raises(ValueError):
        pep440_of_npm(npm)


def test_the_mapped_labels_sort_alike_in_both_ecosystems() -> None:
    """What makes the two spellings one version: dev < rc < release under
    PEP 440, as under semver (which compares the labels as text)."""
    npm = ["2.0.0", "2.1.0-dev.0", "2.1.0-dev.1", "2.1.0-dev.10", "2.1.0-rc.1", "2.1.0-rc.2", "2.1.0", "2.1.1-dev.0"]  # semver.org §11's order
    assert sorted(npm, key=lambda v: Version(pep440_of_npm(v))) == npm


def test_the_version_is_past_the_last_release_and_a_pre_release_while_changes_wait() -> None:
    """While CHANGELOG.md has entries under [Unreleased], the packages must
    not call themselves the last release: what a 2.0.0 server does is
    documented (docs/protocol.md §15.1), and this one does more."""
    import re

    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = [Version(v) for v in re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", changelog, re.M)]
    unreleased = re.search(r"^## \[Unreleased\]\n(.*?)(?=^## \[)", changelog, re.M | re.S)
    assert released and unreleased, "CHANGELOG.md has no [Unreleased] section or no release"
    version, last = Version(metadata.version(DISTRIBUTION)), max(released)
    if re.search(r"^- ", unreleased[1], re.M):
        assert version.is_prerelease and version > last, f"{version} with changes under [Unreleased]: a pre-release of the next version (after {last})"
    else:
        assert version == last or (version.is_prerelease and version > last), f"{version}: not {last}, the last release, nor a pre-release after it"


def test_the_cli_prints_the_version() -> None:
    import sys

    out = subprocess.run([sys.executable, "-m", "ipc_server", "--version"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0
    assert out.stdout.split() == ["python", "-m", "ipc_server", metadata.version(DISTRIBUTION)]


_WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "ipc_protocol", "ipc_server", "ipc_client")


def test_the_wheel_carries_the_licence_as_an_spdx_expression_and_the_tree_s_modules(tmp_path: Path) -> None:
    import shutil
    import sys
    import zipfile

    # Built from a copy: pip builds in the tree it is given, and setuptools's
    # build/ keeps every module it ever built there, renamed or not (README).
    source = tmp_path / "source"
    source.mkdir()
    for name in _WHEEL_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--quiet", "--wheel-dir", str(tmp_path)]
    proc = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("ipc_bridge-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        info = f"ipc_bridge-{metadata.version(DISTRIBUTION)}.dist-info"
        meta = zf.read(f"{info}/METADATA").decode()
        assert "License-Expression: MIT" in meta.splitlines()
        assert zf.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        assert {n.split("/")[0] for n in zf.namelist()} == {"ipc_protocol", "ipc_server", "ipc_client", info}
        assert "ipc_server/cluster/node.py" in zf.namelist()  # cluster mode's subpackage (docs/cluster.md)
        modules = {p.relative_to(ROOT).as_posix() for name in _WHEEL_SOURCES[3:] for p in (ROOT / name).rglob("*.py")}
        assert {n for n in zf.namelist() if n.endswith(".py")} == modules


def test_the_console_script_does_not_collide_with_the_legacy_package() -> None:
    ours = {ep.name for ep in metadata.distribution(DISTRIBUTION).entry_points if ep.group == "console_scripts"}
    assert ours == {"ipc-bridge-server"}
    legacy = {ep.name for ep in metadata.distribution("ipc-framework").entry_points if ep.group == "console_scripts"}
    assert not ours & legacy


def test_the_npm_tarball_carries_the_licence_and_the_manifest_points_home(node: str) -> None:
    npm = _npm(node)
    if npm is None:
        pytest.skip("no npm found")
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(node).parent), os.environ.get("PATH", "")]))
    proc = subprocess.run([*npm, "pack", "--dry-run", "--json"], cwd=JS, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = {f["path"] for f in json.loads(proc.stdout)[0]["files"]}
    assert {"LICENSE", "README.md", "package.json", "index.js", "index.d.ts"} <= files
    assert not any(f.startswith("test/") for f in files)
    assert (JS / "LICENSE").read_text(encoding="utf-8") == (ROOT / "LICENSE").read_text(encoding="utf-8")
    manifest = _package_json()
    assert manifest["license"] == "MIT"
    assert manifest["repository"]["directory"] == "js-client"
    assert manifest["bugs"]["url"] and manifest["homepage"]


def _build_sdist(out: Path) -> Path:
    """``ROOT``'s sdist, built as a build frontend would: the build backend
    ``pyproject.toml`` names, installed apart (pip), run in ``ROOT``."""
    import shutil
    import sys
    import tomllib

    system = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]
    backend = out / "backend"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(backend), *system["requires"]]
    proc = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    egg_info = ROOT / "ipc_bridge.egg-info"
    made_egg_info = not egg_info.exists()
    script = f"import {system['build-backend']} as b, sys; print(b.build_sdist(sys.argv[1]))"
    env = dict(os.environ, PYTHONPATH=str(backend))
    try:
        proc = subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        if made_egg_info:  # the backend's scratch, left in the tree
            shutil.rmtree(egg_info, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / proc.stdout.split()[-1]


def test_the_sdist_is_the_source_tree_and_its_tests_collect(tmp_path: Path) -> None:
    import re
    import sys
    import tarfile

    sdist = _build_sdist(tmp_path)
    top = f"ipc_bridge-{metadata.version(DISTRIBUTION)}"
    with tarfile.open(sdist) as tar:
        names = {name.removeprefix(f"{top}/") for name in tar.getnames()}
        tar.extractall(tmp_path / "unpacked", filter="data")
    tree = tmp_path / "unpacked" / top

    # every test module and helper, the spec and vectors they read, the Node client, the docs
    for folder, pattern in [("tests", "*.py"), ("interop-tests", "*.py"), ("interop-tests/spec", "*.json"), ("docs", "*.md"), ("js-client/lib", "*.js")]:
        on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob(pattern)}
        assert on_disk and on_disk <= names, sorted(on_disk - names)
    assert {"tests/__init__.py", "tests/conftest.py", "CHANGELOG.md", "bench/_common.py", "js-client/package.json"} <= names
    assert not [n for n in names if "node_modules" in n or "__pycache__" in n or n.endswith(".pyc")]
    readme = (tree / "README.md").read_text(encoding="utf-8")
    links = {link for link in re.findall(r"\]\(([^)#:]+)[)#]", readme)}
    assert links and all((tree / link).exists() for link in links), sorted(link for link in links if not (tree / link).exists())

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the unpacked tree's packages, not this one's
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests", "interop-tests"]
    proc = subprocess.run(collect, cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and " error" not in proc.stdout.splitlines()[-1], proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"^\d{3,} tests collected", proc.stdout.splitlines()[-1]), proc.stdout[-500:]
