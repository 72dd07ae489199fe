"""Every cookbook recipe, run as written against a fresh dev server.

docs/cookbook.md always; the contract (../shared/spec/cookbook.md) when it is present.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cookbook import CONTRACT_ENV, DOCS_PATH, Recipe, load, load_contract, load_docs, locate_contract
from kitchen import SUPPLIED, Kitchen, ShiftedClock, find_cli, undefined_names
from recipes import ALIASES, BROKEN, EXPECTATIONS, PENDING, Expectation

from scaivault_sdk.testing import dev_server

RECIPES = load()


def test_docs_cookbook_is_parsed() -> None:
    docs = load_docs()
    assert len(docs) >= 20, f"{DOCS_PATH} has only {len(docs)} recipes"
    assert {r.language for r in docs} == {"python", "bash"}
    assert {r.tool for r in docs} == {"python", "cli", "curl"}
    titles = [r.title for r in docs]
    assert len(titles) == len(set(titles)), "two recipes of docs/cookbook.md share a title"


def test_contract_is_parsed_when_present() -> None:
    where = locate_contract()
    if where is None:
        pytest.skip(f"no contract beside the repository (../shared/spec/cookbook.md) and {CONTRACT_ENV} unset")
    assert where.is_file(), f"{CONTRACT_ENV}={where}: no such file"
    contract = load_contract()
    assert len(contract) >= 30
    assert {r.language for r in contract} == {"python", "bash"}


def test_docs_recipes_are_self_contained() -> None:
    """Pasted into a shell or a Python prompt with the two variables exported, each one runs."""
    for recipe in load_docs():
        assert "scailabs.ai" not in recipe.code, f"{recipe.title}: a host to replace"
        if recipe.language == "python":
            assert not undefined_names(recipe.code), f"{recipe.title}: reads {sorted(undefined_names(recipe.code))}"
            assert "SyncScaiVaultClient()" in recipe.code, f"{recipe.title}: should build its client from the env"
        else:
            assert "$TOKEN" not in recipe.code.replace("$SCAIVAULT_TOKEN", ""), f"{recipe.title}: uses $TOKEN"


def test_docs_recipes_have_working_checks() -> None:
    """Nothing in docs/cookbook.md is pending or known broken: what users read works today."""
    titles = {r.title for r in load_docs()}
    assert not titles & set(PENDING), f"pending recipes in docs/cookbook.md: {sorted(titles & set(PENDING))}"
    missing = titles - set(EXPECTATIONS)
    assert not missing, f"recipes of docs/cookbook.md without a check in recipes.py: {sorted(missing)}"


def test_every_check_names_a_recipe_that_exists() -> None:
    docs = {r.title for r in load_docs()}
    assert not set(EXPECTATIONS) & set(PENDING)
    assert not set(BROKEN) & set(PENDING)
    assert set(ALIASES.values()) <= docs, f"aliases to no recipe: {sorted(set(ALIASES.values()) - docs)}"
    if not load_contract():
        pytest.skip("no contract: checks of contract-only recipes cannot be matched")
    contract = {r.title for r in load_contract()}
    stale = (set(EXPECTATIONS) | set(PENDING) | set(BROKEN) | set(ALIASES)) - contract - docs
    assert not stale, f"checks for recipes neither cookbook has: {sorted(stale)}"
    # A broken contract recipe is a contract bug; docs/cookbook.md shows the way that works.
    assert set(BROKEN) <= contract


def test_docs_cover_every_task_of_the_contract_that_works_today() -> None:
    """Each contract recipe is in docs/cookbook.md (same title or an alias) or pending."""
    if not load_contract():
        pytest.skip("no contract to compare with")
    docs = {r.title for r in load_docs()}
    uncovered = [
        r.title
        for r in load_contract()
        if r.title not in docs and ALIASES.get(r.title) not in docs and r.title not in PENDING
    ]
    assert not uncovered, f"contract tasks docs/cookbook.md does not show: {uncovered}"


@pytest.fixture
def kitchen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kitchen]:
    recipe: Recipe = request.node.callspec.params["recipe"]
    expectation = _broken(recipe) or EXPECTATIONS.get(recipe.title)
    rate = expectation.rate_limit_per_minute if expectation else None
    workdir = tmp_path / "work"
    workdir.mkdir()
    clock = ShiftedClock(tmp_path) if expectation and expectation.clock else None
    # A fresh server per recipe: each one sees exactly the data it assumes.
    extra = expectation.server_args if expectation else ()
    with dev_server(rate_limit_per_minute=rate, extra_args=extra, env=clock.env() if clock else None) as server:
        k = Kitchen(server=server, workdir=workdir, cli=find_cli(), clock=clock)
        try:
            yield k
        finally:
            k.close()
            if k.supplied:
                SUPPLIED.setdefault(recipe.title, set()).update(k.supplied)


def _broken(recipe: Recipe) -> Expectation | None:
    """Known contract bugs; a recipe of docs/cookbook.md is never excused."""
    return None if recipe.self_contained else BROKEN.get(recipe.title)


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.test_id for r in RECIPES])
def test_recipe(recipe: Recipe, request: pytest.FixtureRequest) -> None:
    if not recipe.self_contained and recipe.title in PENDING:
        pytest.skip(PENDING[recipe.title])
    if broken := _broken(recipe):
        # The recipe cannot work as written: its check asserts the failure it shows a
        # reader, so a fixed cookbook (or a changed failure) fails here and gets noticed.
        broken.check(request.getfixturevalue("kitchen"), recipe)
        pytest.xfail(f"cookbook bug: {broken.reason}")
    expectation = EXPECTATIONS.get(recipe.title)
    assert expectation, f"recipe {recipe.title!r} ({recipe.document}, line {recipe.line}) has no check in recipes.py"
    # Requested here, not as an argument, so pending recipes start no server.
    kitchen: Kitchen = request.getfixturevalue("kitchen")
    expectation.check(kitchen, recipe)
    if recipe.self_contained:
        assert not kitchen.supplied, f"docs/cookbook.md recipe needed {kitchen.supplied}"
