"""Cookbook suite plumbing: import path and the closing tally of both documents."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The runner's modules (cookbook, kitchen, recipes) live beside this file.
sys.path.insert(0, str(Path(__file__).parent))

from cookbook import (  # noqa: E402
    CONTRACT,
    CONTRACT_ENV,
    CONTRACT_HIDDEN,
    DOCS,
    load_contract,
    load_docs,
    locate_contract,
)
from kitchen import SUPPLIED  # noqa: E402
from recipes import BROKEN  # noqa: E402


def _outcomes(reporter: pytest.TerminalReporter, document: str) -> dict[str, int]:
    marker = f"::test_recipe[{document}:"
    return {
        outcome: sum(1 for r in reporter.stats.get(outcome, []) if marker in getattr(r, "nodeid", ""))
        for outcome in ("passed", "failed", "error", "skipped", "xfailed")
    }


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    write = terminalreporter.write_line
    docs = _outcomes(terminalreporter, DOCS)
    line = f"docs/cookbook.md: {docs['passed']} of {len(load_docs())} recipes passed"
    if docs["failed"] or docs["error"]:
        line += f", {docs['failed'] + docs['error']} failed"
    if not load_contract():
        why = f"{CONTRACT_ENV}={CONTRACT_HIDDEN}" if os.environ.get(CONTRACT_ENV) == CONTRACT_HIDDEN else (
            "not beside the repository at ../shared/spec/cookbook.md"
        )
        write(f"{line}; contract: absent ({why})")
        return
    contract = _outcomes(terminalreporter, CONTRACT)
    line += (
        f"; contract ({locate_contract()}): {contract['passed']} of {len(load_contract())} passed, "
        f"{contract['skipped']} pending, {contract['xfailed']} broken as written"
    )
    if contract["failed"] or contract["error"]:
        line += f", {contract['failed'] + contract['error']} failed"
    write(line)
    bugs = [r for r in terminalreporter.stats.get("xfailed", []) if f"::test_recipe[{CONTRACT}:" in r.nodeid]
    if bugs:
        write("contract: recipes that cannot work as written (cookbook bugs):")
        for title, expectation in sorted(BROKEN.items()):
            if any(f"[{CONTRACT}:{title}]" in r.nodeid for r in bugs):
                write(f"  - {title}: {expectation.reason}")
    # Grouped by what was supplied: each line is a contract gap worth closing.
    by_item: dict[str, list[str]] = {}
    for title, items in SUPPLIED.items():
        for item in items:
            by_item.setdefault(item, []).append(title)
    if by_item:
        write("contract: supplied beyond host, shell variables, constructor arguments and reader names:")
        for item, titles in sorted(by_item.items()):
            write(f"  - {item}: {'; '.join(sorted(titles))}")
