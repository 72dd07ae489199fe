"""Reading the cookbooks: every ``### recipe`` with its one fenced code block.

Two documents are run. ``docs/cookbook.md`` is the project's own, written for users
against ``$SCAIVAULT_ADDR`` and ``$SCAIVAULT_TOKEN``: it is always present and every
recipe in it must pass as written, with nothing supplied. The team's contract
(``../shared/spec/cookbook.md`` beside the repository, or ``$COOKBOOK``) is run too when
it is there; its recipes name a documentation host, which the runner swaps for the dev
server's address (``with_host``), and leave some names to the reader.

The code is kept exactly as written otherwise.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

DOC_HOST = "https://scaivault.scailabs.ai"
REPO_ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```(\w*)\s*$")

# The two documents, by the label their tests carry (``test_recipe[docs:...]``).
DOCS = "docs"
CONTRACT = "contract"
DOCS_PATH = REPO_ROOT / "docs" / "cookbook.md"
# `COOKBOOK=none` hides the contract, as on a user's clone; `COOKBOOK=<file>` names it.
CONTRACT_ENV = "COOKBOOK"
CONTRACT_HIDDEN = "none"


@dataclass(frozen=True)
class Recipe:
    section: str
    title: str
    language: str  # "python" or "bash"
    code: str
    line: int  # 1-based line of the opening fence, for messages
    document: str = CONTRACT

    @property
    def self_contained(self) -> bool:
        """A recipe of docs/cookbook.md: pasted as is, it runs; the runner supplies nothing."""
        return self.document == DOCS

    @property
    def test_id(self) -> str:
        return f"{self.document}:{self.title}"

    @property
    def tool(self) -> str:
        """What a reader runs it with: python, cli (the scaivault command) or curl."""
        if self.language == "python":
            return "python"
        return "cli" if re.search(r"^\s*scaivault\s", self.code, re.MULTILINE) else "curl"

    def with_host(self, address: str) -> str:
        return self.code.replace(DOC_HOST, address.rstrip("/"))


def locate_contract() -> Path | None:
    """``$COOKBOOK`` when set (``none``: no contract), else ``../shared/spec/cookbook.md``."""
    from_env = os.environ.get(CONTRACT_ENV)
    if from_env == CONTRACT_HIDDEN:
        return None
    if from_env:
        # Named explicitly: a missing file is an error, not a quiet skip.
        return Path(from_env)
    beside = REPO_ROOT.parent / "shared" / "spec" / "cookbook.md"
    return beside if beside.is_file() else None


def parse(text: str, document: str = CONTRACT) -> list[Recipe]:
    recipes: list[Recipe] = []
    section = title = ""
    blocks: list[tuple[str, str, int]] = []
    fence: tuple[str, int, list[str]] | None = None

    def close_recipe() -> None:
        if not title:
            return
        if len(blocks) != 1:
            raise ValueError(f"recipe {title!r} has {len(blocks)} code blocks, expected 1")
        language, code, line = blocks[0]
        recipes.append(Recipe(section, title, language, code, line, document))

    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if fence is not None:
            if line.rstrip("\n") == "```":
                blocks.append((fence[0], "".join(fence[2]), fence[1]))
                fence = None
            else:
                fence[2].append(line)
            continue
        if match := _FENCE.match(line):
            fence = (match.group(1), number, [])
        elif line.startswith("## "):
            close_recipe()
            section, title, blocks = line[3:].strip(), "", []
        elif line.startswith("### "):
            close_recipe()
            title, blocks = line[4:].strip(), []
    close_recipe()
    return recipes


@functools.cache
def load_docs() -> list[Recipe]:
    """The recipes of docs/cookbook.md (its absence fails the suite when read)."""
    return parse(DOCS_PATH.read_text(), DOCS)


@functools.cache
def load_contract() -> list[Recipe]:
    """The recipes of the contract, none when it is not beside the repository."""
    where = locate_contract()
    return parse(where.read_text(), CONTRACT) if where else []


def load() -> list[Recipe]:
    """Every recipe to run: the project's cookbook, then the contract when present."""
    return load_docs() + load_contract()
