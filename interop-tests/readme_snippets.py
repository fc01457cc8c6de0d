"""The code blocks of README.md and js-client/README.md as programs to run
(``test_readme_snippets.py`` says the convention that marks them): reading
the blocks and their ``<!-- snippet: ... -->`` marks, writing one to a file
with the test's port, and running it with the venv's Python or with Node.

Node finds ``require('ipc-bridge-client')`` and ``import ... from
'ipc-bridge-client'`` the way it finds an installed package: the directory
the blocks are written to has ``node_modules/ipc-bridge-client``, a link to
js-client/ (or the package installed there by npm). The block's text is not
edited for it, and the package's own ``exports`` map (CommonJS and ESM
entry points) is what resolves it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT, _subprocess_env
from example_process import ExampleProcess

DOCUMENTS = (ROOT / "README.md", ROOT / "js-client" / "README.md")
JS_CLIENT = ROOT / "js-client"
PACKAGE = "ipc-bridge-client"
DOC_PORT = "8888"  # the port the blocks name; the only text a run changes

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*snippet:\s*(.*?)\s*-->$")
_LANGUAGES = {"python": "python", "py": "python", "js": "js", "javascript": "js", "mjs": "js"}
_ESM = re.compile(r"^import\s.+\sfrom\s+['\"]", re.M)


@dataclass(frozen=True)
class Snippet:
    """One marked block: ``kind`` is ``program``, ``service``, ``server`` or ``skip``."""

    doc: str  # path relative to the repository root
    line: int  # the opening fence, 1-based
    language: str  # "python" or "js"
    text: str
    kind: str
    name: str = ""
    partner: str | None = None  # ``with:``: the service or server it needs
    reason: str = ""  # why a skipped block is not run
    tls: bool = False  # ``tls``: its server speaks TLS, with certificate files in its directory

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def filename(self) -> str:
        if self.language == "python":
            return f"{self.name}.py"
        return f"{self.name}.mjs" if _ESM.search(self.text) else f"{self.name}.js"

    @property
    def names_port(self) -> bool:
        return DOC_PORT in self.text


def _parse_mark(body: str, doc: str, line: int, language: str, text: str) -> Snippet:
    head, _, rest = body.partition(",")
    head = head.strip()
    if head == "skip":
        if not rest.strip():
            raise ValueError(f"{doc}:{line}: a skipped block says why: <!-- snippet: skip, REASON -->")
        return Snippet(doc, line, language, text, "skip", reason=rest.strip())
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", head):
        raise ValueError(f"{doc}:{line}: snippet name {head!r}: lower case letters, digits and '-'")
    kind, partner, tls = "program", None, False
    for part in (p.strip() for p in rest.split(",") if p.strip()):
        if part in ("service", "server"):
            kind = part
        elif part == "tls":
            tls = True
        elif part.startswith("with:"):
            partner = part[len("with:"):].strip()
        else:
            raise ValueError(f"{doc}:{line}: unknown snippet option {part!r}")
    if partner and kind != "program":
        raise ValueError(f"{doc}:{line}: only a program runs with: another block")
    if tls and (kind != "program" or partner):
        raise ValueError(f"{doc}:{line}: tls is for a program run against the test's own server")
    return Snippet(doc, line, language, text, kind, head, partner, tls=tls)


def read_snippets(path: Path) -> tuple[list[Snippet], list[str]]:
    """The Python and JavaScript blocks of one document, and what is wrong
    with its marks (a block without one, a bad mark)."""
    doc = str(path.relative_to(ROOT))
    lines = path.read_text(encoding="utf-8").split("\n")
    found: list[Snippet] = []
    problems: list[str] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence or not fence.group(1):
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```"), None)
        if end is None:
            problems.append(f"{doc}:{i + 1}: a block that never closes")
            break
        language = _LANGUAGES.get(fence.group(1))
        if language is not None:
            text = "\n".join(lines[i + 1 : end]) + "\n"
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            mark = _MARK.match(before.strip())
            if mark is None:
                problems.append(f"{doc}:{i + 1}: a {fence.group(1)} block without a <!-- snippet: ... --> mark")
            else:
                try:
                    found.append(_parse_mark(mark.group(1), doc, i + 1, language, text))
                except ValueError as exc:
                    problems.append(str(exc))
        i = end + 1
    return found, problems


def all_snippets() -> tuple[list[Snippet], list[str]]:
    snippets: list[Snippet] = []
    problems: list[str] = []
    for path in DOCUMENTS:
        found, wrong = read_snippets(path)
        snippets += found
        problems += wrong
    return snippets, problems


def link_package(directory: Path) -> None:
    """``node_modules/ipc-bridge-client`` in ``directory``: a link to js-client/."""
    modules = directory / "node_modules"
    modules.mkdir(exist_ok=True)
    (modules / PACKAGE).symlink_to(JS_CLIENT, target_is_directory=True)


async def start_snippet(snippet: Snippet, directory: Path, port: int, node: str) -> ExampleProcess:
    """Write ``snippet`` into ``directory`` with ``port`` for 8888 and start
    it there: Python with this interpreter (the venv's), JavaScript with
    ``node``. Its stdout is read line by line; it runs in its own process
    group (``kill()`` ends it and whatever it started)."""
    path = directory / snippet.filename
    path.write_text(snippet.text.replace(DOC_PORT, str(port)), encoding="utf-8")
    runtime = sys.executable if snippet.language == "python" else node
    return await ExampleProcess([runtime, str(path)], _subprocess_env(), cwd=directory).start()


def stderr_lines(proc: ExampleProcess) -> list[str]:
    proc.log.seek(0)
    return proc.log.read().decode(errors="replace").splitlines()
