"""The runner itself: recipes are read byte-for-byte and only the host changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cookbook import DOC_HOST, DOCS, DOCS_PATH, Recipe, load, load_contract, load_docs, locate_contract, parse
from kitchen import Kitchen, MotoS3, ShiftedClock, find_cli

from scaivault_sdk.testing import dev_server


def _documents() -> list[tuple[Path, list[Recipe]]]:
    where = locate_contract()
    return [(DOCS_PATH, load_docs())] + ([(where, load_contract())] if where else [])


def test_recipe_code_is_the_cookbook_text_byte_for_byte() -> None:
    for where, recipes in _documents():
        text = where.read_text()
        for recipe in recipes:
            assert recipe.code in text, recipe.title
            assert text.splitlines()[recipe.line - 1].startswith("```" + recipe.language)


def test_only_the_host_is_replaced() -> None:
    address = "http://127.0.0.1:4321"
    for recipe in load():
        swapped = recipe.with_host(address)
        assert DOC_HOST not in swapped
        assert swapped.replace(address, DOC_HOST) == recipe.code
        if recipe.self_contained:
            assert swapped == recipe.code, f"{recipe.title}: docs/cookbook.md names the documentation host"


def test_each_recipe_knows_its_document() -> None:
    assert {r.document for r in load_docs()} == {DOCS} and all(r.self_contained for r in load_docs())
    assert not any(r.self_contained for r in load_contract())


def test_parse_refuses_a_recipe_with_two_blocks() -> None:
    text = "## S\n### Two\n```bash\necho 1\n```\n```bash\necho 2\n```\n"
    with pytest.raises(ValueError, match="2 code blocks"):
        parse(text)


def test_tools_are_classified() -> None:
    tools = {r.title: r.tool for r in load_docs()}
    assert tools["Write a JSON blob from a file"] == "cli"
    assert tools["Smoke test the API"] == "curl"
    assert tools["Read one secret and use a single field"] == "python"


@pytest.fixture(scope="module")
def kitchen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kitchen]:
    workdir = tmp_path_factory.mktemp("kitchen") / "work"
    workdir.mkdir()
    with dev_server() as server:
        k = Kitchen(server=server, workdir=workdir, cli=find_cli())
        yield k
        k.close()


def test_a_path_variable_keeps_the_commands_findable(kitchen: Kitchen) -> None:
    # The rotation recipe uses $PATH for a secret path; bash's PATH is then useless.
    recipe = Recipe("S", "path", "bash", 'echo "$PATH"\ncurl -fsS https://scaivault.scailabs.ai/v1/health | jq -r .status\n', 1)
    result = kitchen.shell(recipe, PATH="app/db/password")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["app/db/password", "ok"]


def test_shell_variables_reach_the_recipe(kitchen: Kitchen) -> None:
    recipe = Recipe("S", "vars", "bash", 'echo "$TOKEN" "$SCAIVAULT_ADDR"\n', 1)
    out = kitchen.shell(recipe).stdout.split()
    assert out == [kitchen.server.root_token, kitchen.server.address]


def test_python_recipes_get_a_constructed_client(kitchen: Kitchen, tmp_path: Path) -> None:
    code = "from scaivault_sdk import SyncScaiVaultClient\nclient = SyncScaiVaultClient(...)\nme = client.auth.whoami()\n"
    namespace = kitchen.python(Recipe("S", "ctor", "python", code, 1))
    assert namespace["me"].identity_id == "root"


def test_the_shifted_clock_moves_the_server_s_wall_clock(tmp_path: Path) -> None:
    clock = ShiftedClock(tmp_path)
    with dev_server(env=clock.env()) as server, server.client() as client:
        clock.set(datetime(2026, 4, 10, 12, 0, tzinfo=timezone.utc))
        client.auth.whoami()
        clock.set(datetime(2026, 5, 2, 9, 0, tzinfo=timezone.utc))
        client.auth.whoami()
        stamps = [r.timestamp for r in client.audit.logs(limit=2)]
    assert [(t.year, t.month, t.day) for t in stamps] == [(2026, 4, 10), (2026, 5, 2)]
    assert stamps[0] < stamps[1] < datetime(2026, 5, 2, 9, 1, tzinfo=timezone.utc)


def test_moto_runs_and_stops(tmp_path: Path) -> None:
    with MotoS3.running(tmp_path) as moto:
        s3 = moto.client()
        s3.create_bucket(Bucket="kitchen")
        s3.put_object(Bucket="kitchen", Key="k", Body=b"v")
        assert s3.get_object(Bucket="kitchen", Key="k")["Body"].read() == b"v"
    assert moto.process.poll() is not None


def test_a_self_contained_recipe_gets_only_the_reader_s_environment(kitchen: Kitchen) -> None:
    code = (
        "from scaivault_sdk import SyncScaiVaultClient\n"
        "client = SyncScaiVaultClient()\n"
        "me = client.auth.whoami()\n"
        "print(me.identity_id)\n"
    )
    namespace = kitchen.python(Recipe("S", "env", "python", code, 1, DOCS), path="offered")
    assert namespace["me"].identity_id == "root" and "path" not in namespace
    assert kitchen.printed == "root\n"
    shell = Recipe("S", "env", "bash", 'echo "${TOKEN-unset}" "$SCAIVAULT_TOKEN"\n', 1, DOCS)
    assert kitchen.shell(shell, TOKEN="offered").stdout.split() == ["unset", kitchen.server.root_token]


def test_the_contract_is_located_by_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COOKBOOK", "none")
    assert locate_contract() is None
    monkeypatch.setenv("COOKBOOK", str(tmp_path / "elsewhere.md"))
    assert locate_contract() == tmp_path / "elsewhere.md"
