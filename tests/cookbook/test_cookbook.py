"""Every cookbook recipe, run as written against a fresh dev server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cookbook import Recipe, load, locate
from kitchen import SUPPLIED, Kitchen, ShiftedClock, find_cli
from recipes import BROKEN, EXPECTATIONS, PENDING

from scaivault_sdk.testing import dev_server

RECIPES = load()


def test_cookbook_is_found_and_parsed() -> None:
    assert locate() is not None, "cookbook.md not found beside the repo (../shared/spec) nor at $COOKBOOK"
    assert len(RECIPES) >= 30
    assert {r.language for r in RECIPES} == {"python", "bash"}


def test_every_check_names_a_recipe_that_exists() -> None:
    titles = {r.title for r in RECIPES}
    stale = (set(EXPECTATIONS) | set(PENDING) | set(BROKEN)) - titles
    assert not stale, f"checks for recipes the cookbook no longer has: {sorted(stale)}"
    assert not set(EXPECTATIONS) & set(PENDING)
    assert not set(BROKEN) & (set(EXPECTATIONS) | set(PENDING))


@pytest.fixture
def kitchen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kitchen]:
    recipe: Recipe = request.node.callspec.params["recipe"]
    expectation = EXPECTATIONS.get(recipe.title) or BROKEN.get(recipe.title)
    rate = expectation.rate_limit_per_minute if expectation else None
    workdir = tmp_path / "work"
    workdir.mkdir()
    clock = ShiftedClock(tmp_path) if expectation and expectation.clock else None
    # A fresh server per recipe: each one sees exactly the data it assumes.
    with dev_server(rate_limit_per_minute=rate, env=clock.env() if clock else None) as server:
        k = Kitchen(server=server, workdir=workdir, cli=find_cli(), clock=clock)
        try:
            yield k
        finally:
            k.close()
            if k.supplied:
                SUPPLIED.setdefault(recipe.title, set()).update(k.supplied)


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.title for r in RECIPES])
def test_recipe(recipe: Recipe, request: pytest.FixtureRequest) -> None:
    if recipe.title in PENDING:
        pytest.skip(PENDING[recipe.title])
    if recipe.title in BROKEN:
        # The recipe cannot work as written: its check asserts the failure it shows a
        # reader, so a fixed cookbook (or a changed failure) fails here and gets noticed.
        broken = BROKEN[recipe.title]
        broken.check(request.getfixturevalue("kitchen"), recipe)
        pytest.xfail(f"cookbook bug: {broken.reason}")
    expectation = EXPECTATIONS.get(recipe.title)
    assert expectation, f"recipe {recipe.title!r} (line {recipe.line}) has no check in recipes.py"
    # Requested here, not as an argument, so pending recipes start no server.
    kitchen: Kitchen = request.getfixturevalue("kitchen")
    expectation.check(kitchen, recipe)
