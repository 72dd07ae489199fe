"""Cookbook suite plumbing: import path and the closing tally."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The runner's modules (cookbook, kitchen, recipes) live beside this file.
sys.path.insert(0, str(Path(__file__).parent))

from cookbook import load  # noqa: E402
from kitchen import SUPPLIED  # noqa: E402
from recipes import BROKEN  # noqa: E402


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    passed = [r for r in terminalreporter.stats.get("passed", []) if "::test_recipe[" in r.nodeid]
    terminalreporter.write_line(f"cookbook: {len(passed)} of {len(load())} recipes pass")
    bugs = [r for r in terminalreporter.stats.get("xfailed", []) if "::test_recipe[" in r.nodeid]
    if bugs:
        terminalreporter.write_line("cookbook: recipes that cannot work as written (cookbook bugs):")
        for title, expectation in sorted(BROKEN.items()):
            if any(f"[{title}]" in r.nodeid for r in bugs):
                terminalreporter.write_line(f"  - {title}: {expectation.reason}")
    # Grouped by what was supplied: each line is a cookbook gap worth closing.
    by_item: dict[str, list[str]] = {}
    for title, items in SUPPLIED.items():
        for item in items:
            by_item.setdefault(item, []).append(title)
    if by_item:
        terminalreporter.write_line(
            "cookbook: supplied beyond host, shell variables, constructor arguments and reader names:"
        )
        for item, titles in sorted(by_item.items()):
            terminalreporter.write_line(f"  - {item}: {'; '.join(sorted(titles))}")
