"""Every cookbook recipe, run as written against a fresh dev server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cookbook import Recipe, load, locate
from kitchen import SUPPLIED, Kitchen, find_cli
from recipes import EXPECTATIONS, PENDING

from scaivault_sdk.testing import dev_server

RECIPES = load()


def test_cookbook_is_found_and_parsed() -> None:
    assert locate() is not None, "cookbook.md not found beside the repo (../shared/spec) nor at $COOKBOOK"
    assert len(RECIPES) >= 30
    assert {r.language for r in RECIPES} == {"python", "bash"}


def test_every_check_names_a_recipe_that_exists() -> None:
    titles = {r.title for r in RECIPES}
    stale = (set(EXPECTATIONS) | set(PENDING)) - titles
    assert not stale, f"checks for recipes the cookbook no longer has: {sorted(stale)}"
    assert not set(EXPECTATIONS) & set(PENDING)


@pytest.fixture
def kitchen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kitchen]:
    recipe: Recipe = request.node.callspec.params["recipe"]
    expectation = EXPECTATIONS.get(recipe.title)
    rate = expectation.rate_limit_per_minute if expectation else None
    workdir = tmp_path / "work"
    workdir.mkdir()
    # A fresh server per recipe: each one sees exactly the data it assumes.
    with dev_server(rate_limit_per_minute=rate) as server:
        k = Kitchen(server=server, workdir=workdir, cli=find_cli())
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
    expectation = EXPECTATIONS.get(recipe.title)
    assert expectation, f"recipe {recipe.title!r} (line {recipe.line}) has no check in recipes.py"
    # Requested here, not as an argument, so pending recipes start no server.
    kitchen: Kitchen = request.getfixturevalue("kitchen")
    expectation.check(kitchen, recipe)
