"""Loads the shared golden vectors and error codes from interop-tests/."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "interop-tests" / "vectors" / "frames.json").read_text(encoding="utf-8"))
ERROR_CODES = json.loads((ROOT / "interop-tests" / "spec" / "error_codes.json").read_text(encoding="utf-8"))

OK = [v for v in VECTORS["vectors"] if "message" in v]
BAD = [v for v in VECTORS["vectors"] if "error" in v]
