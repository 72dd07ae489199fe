"""The SDK's requests and decoded fields exist in the server's own OpenAPI document.

Built from the SDK's real request builders and response models, so a renamed route,
query parameter, body field or response field on either side fails here. Only the
endpoints this server serves are listed; add the others as their features land.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scaivault_sdk import audit, auth, client, policies, secrets, system
from scaivault_sdk._transport import Call
from scaivault_sdk._wire import ModelDecoder, wire_fields
from scaivault_sdk.testing import DevServer

SERVED_CALLS: list[Call[Any]] = [
    secrets._read("app/db", 2),
    secrets._read_metadata("app/db"),
    secrets._write("app/db", {"k": "v"}, "database", {"expires_in": "1h"}, {"tags": ["t"]}),
    secrets._update_metadata("app/db", {"tags": ["t"], "description": "d"}),
    secrets._list("app/", 10, "cursor", True, True),
    secrets._batch_read(["app/db"]),
    secrets._delete("app/db", True),
    secrets._restore("app/db"),
    secrets._versions("app/db"),
    auth._whoami(),
    auth._create_token("sa:ci", "1h", "ci"),
    auth._list_tokens(),
    auth._revoke_token("acc_1"),
    system._rotate_keys(),
    system._keys(),
    client._health(),
    client._health_detailed(),
]


# Wrapped by the SDK, not served yet: checked as soon as openapi.json lists them.
PENDING_CALLS: list[tuple[str, Call[Any]]] = [
    ("rotation", secrets._rotate("app/db", "compromise")),
    ("policies", policies._create("p", [{"path_pattern": "a/**", "permissions": ["read"]}], "d")),
    ("policies", policies._get("pol_1")),
    ("policies", policies._list("app/db")),
    ("policies", policies._update("pol_1", "p", None, None)),
    ("policies", policies._delete("pol_1")),
    ("policies", policies._add_binding("pol_1", "service_account", "sa:ci")),
    ("policies", policies._list_bindings("pol_1")),
    ("policies", policies._delete_binding("pol_1", "bind_1")),
    ("policies", policies._test("sa:ci", "app/db", "read")),
    ("audit", audit._logs("2026-01-01", None, "sa:ci", "app/db", 10, "c")),
    ("audit", audit._for_secret("app/db", "2026-01-01", None)),
    ("audit", audit._for_identity("user:alice@acme.example", "2026-01-01", None)),
    ("audit", audit._export("2026-04-01", "2026-04-30", "jsonl", {"type": "s3"})),
    ("audit", audit._export_status("exp_1")),
    ("audit", audit._verify()),
]


@pytest.fixture(scope="module")
def spec(server: DevServer) -> dict[str, Any]:
    response = httpx.get(
        f"{server.address}/v1/openapi.json", headers={"Authorization": f"Bearer {server.root_token}"}
    )
    response.raise_for_status()
    document = response.json()
    assert document.get("paths"), "openapi.json has no paths"
    return dict(document)


def _route(spec: dict[str, Any], path: str) -> str | None:
    """The most specific path template of ``spec`` that matches a concrete ``path``."""
    best: tuple[int, str] | None = None
    for template in spec["paths"]:
        pattern = "".join(
            ".+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]*\})", template)
        )
        if re.fullmatch(pattern, path):
            literal = len(re.sub(r"\{[^}]*\}", "", template))
            if best is None or literal > best[0]:
                best = (literal, template)
    return best[1] if best else None


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref, merge allOf, and take the non-null branch of a nullable oneOf/anyOf."""
    while True:
        if "$ref" in schema:
            node: Any = spec
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = node
        elif "allOf" in schema:
            merged: dict[str, Any] = {"properties": {}}
            for part in schema["allOf"]:
                merged["properties"].update(_resolve(spec, part).get("properties", {}))
            return merged
        elif "oneOf" in schema or "anyOf" in schema:
            branches = [b for b in schema.get("oneOf", schema.get("anyOf", [])) if b.get("type") != "null"]
            if len(branches) != 1:
                return schema
            schema = branches[0]
        else:
            return schema


def _missing_fields(spec: dict[str, Any], model: type, schema: dict[str, Any], where: str) -> Iterator[str]:
    schema = _resolve(spec, schema)
    properties = schema.get("properties", {})
    for name, nested in wire_fields(model).items():
        if name not in properties:
            yield f"{where}.{name}"
            continue
        if nested is None:
            continue
        inner = _resolve(spec, properties[name])
        if "items" in inner:  # list[Model]
            inner = inner["items"]
        elif isinstance(inner.get("additionalProperties"), dict) and not inner.get("properties"):
            inner = inner["additionalProperties"]  # dict[str, Model]
        yield from _missing_fields(spec, nested, inner, f"{where}.{name}")


def _success_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    for status, response in sorted(operation.get("responses", {}).items()):
        if status.startswith("2"):
            content = response.get("content", {})
            if "application/json" in content:
                return dict(content["application/json"].get("schema", {}))
    return None


def _operation(spec: dict[str, Any], call: Call[Any]) -> dict[str, Any]:
    template = _route(spec, call.path)
    assert template, f"no path in openapi.json matches {call.path}"
    operation = spec["paths"][template].get(call.method.lower())
    assert operation, f"openapi.json has no {call.method} {template}"
    return dict(operation)


def _alternatives(spec: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The object shapes a schema accepts (each branch of a oneOf/anyOf)."""
    schema = _resolve(spec, schema)
    branches = schema.get("oneOf") or schema.get("anyOf")
    return [_resolve(spec, b) for b in branches] if branches else [schema]


CALL_IDS = [f"{c.method} {c.path}" for c in SERVED_CALLS]


def _check_documented(spec: dict[str, Any], call: Call[Any]) -> None:
    """The route, the request body fields and the decoded response fields are in the spec."""
    operation = _operation(spec, call)

    if isinstance(call.json, dict):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        shapes = _alternatives(spec, body.get("schema", {}))
        assert any(set(call.json) <= set(shape.get("properties", {})) for shape in shapes), (
            f"undocumented body fields {sorted(call.json)} on {call.method} {call.path}"
        )

    if isinstance(call.decode, ModelDecoder):
        schema = _success_schema(operation)
        assert schema is not None, f"{call.method} {call.path} documents no JSON success response"
        missing = list(_missing_fields(spec, call.decode.cls, schema, call.decode.cls.__name__))
        assert not missing, f"response fields the SDK reads are not in openapi.json: {missing}"


@pytest.mark.parametrize("call", SERVED_CALLS, ids=CALL_IDS)
def test_route_request_body_and_response_fields_are_documented(spec: dict[str, Any], call: Call[Any]) -> None:
    _check_documented(spec, call)


def test_query_parameters_are_documented_as_query_parameters(spec: dict[str, Any]) -> None:
    undocumented = {}
    for call in SERVED_CALLS:
        operation = _operation(spec, call)
        documented = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
        if extra := set(call.params or {}) - documented:
            undocumented[f"{call.method} {call.path}"] = sorted(extra)
    assert not undocumented, f"query parameters the SDK sends, not documented as such: {undocumented}"


@pytest.mark.parametrize(
    ("capability", "call"), PENDING_CALLS, ids=[f"{c.method} {c.path}" for _, c in PENDING_CALLS]
)
def test_pending_calls_match_once_served(spec: dict[str, Any], capability: str, call: Call[Any]) -> None:
    template = _route(spec, call.path)
    if template is None or call.method.lower() not in spec["paths"][template]:
        pytest.skip(f"waits for: {capability}")
    _check_documented(spec, call)
    documented = {p["name"] for p in spec["paths"][template][call.method.lower()].get("parameters", [])}
    assert set(call.params or {}) <= documented, f"undocumented query parameters on {template}"
