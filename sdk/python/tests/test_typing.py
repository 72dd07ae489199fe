"""The installed package type-checks under ``mypy --strict`` (it ships ``py.typed``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import scaivault_sdk


def test_package_ships_py_typed() -> None:
    assert (Path(scaivault_sdk.__file__).parent / "py.typed").is_file()


def test_package_passes_mypy_strict() -> None:
    pytest.importorskip("mypy", reason="mypy is in the [test] extra")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "scaivault_sdk"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
