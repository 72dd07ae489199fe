"""Reading the cookbook: every ``### recipe`` with its one fenced code block.

The code is kept exactly as written; the runner only swaps the documentation host
for the dev server's address (``with_host``).
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


@dataclass(frozen=True)
class Recipe:
    section: str
    title: str
    language: str  # "python" or "bash"
    code: str
    line: int  # 1-based line of the opening fence, for messages

    @property
    def tool(self) -> str:
        """What a reader runs it with: python, cli (the scaivault command) or curl."""
        if self.language == "python":
            return "python"
        return "cli" if re.search(r"^\s*scaivault\s", self.code, re.MULTILINE) else "curl"

    def with_host(self, address: str) -> str:
        return self.code.replace(DOC_HOST, address.rstrip("/"))


def locate() -> Path | None:
    """``../shared/spec/cookbook.md`` beside the repository, else ``$COOKBOOK``."""
    beside = REPO_ROOT.parent / "shared" / "spec" / "cookbook.md"
    if beside.is_file():
        return beside
    from_env = os.environ.get("COOKBOOK")
    if from_env and Path(from_env).is_file():
        return Path(from_env)
    return None


def parse(text: str) -> list[Recipe]:
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
        recipes.append(Recipe(section, title, language, code, line))

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
def load() -> list[Recipe]:
    """The recipes of the located cookbook (none when it cannot be found)."""
    where = locate()
    return parse(where.read_text()) if where else []
