"""The one version of the three Python packages: the installed
distribution's (``pyproject.toml``), which the npm package's must equal
(interop-tests/test_packaging.py)."""

from __future__ import annotations

from importlib import metadata

__all__ = ["__version__", "DISTRIBUTION"]

DISTRIBUTION = "ipc-bridge"

try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"
