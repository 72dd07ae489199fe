"""The SDK's requests and decoded fields exist in the server's own OpenAPI document.

Built from the SDK's real request builders and response models, so a renamed route,
query parameter, body field or response field on either side fails here. Only the
endpoints this server serves are listed; add the others as their features land.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import httpx
import pytest

from scaivault_sdk import audit, auth, client, events, policies, rotation, secrets, system, webhooks
from scaivault_sdk._transport import Call
from scaivault_sdk._wire import ModelDecoder, wire_fields
from scaivault_sdk.models import PolicyRule, RotationGenerator, RotationPolicy
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
    secrets._write(
        "app/db",
        {"password": "p"},
        "password",
        None,
        {
            "rotation": {
                "interval": "30d",
                "strategy": "generate",
                "generator": {"fields": ["password"], "length": 32, "charset": "symbols", "prefix": "pw_"},
                "grace": "24h",
                "rotate_at": "03:00Z",
            }
        },
    ),
    secrets._update_metadata(
        "app/db", None, RotationPolicy("7d", "external", RotationGenerator(charset="base64url"), "1h", "03:00")
    ),
    secrets._update_metadata("app/db", {"tags": ["t"]}, None),
    secrets._rotate("app/db", "compromise"),
    secrets._rotate("app/db", None),
    rotation._due(168, True, "app/", 10, "cursor"),
    events._list(["rotation.due", "secret.updated"], "app/", 12, 100),
    auth._whoami(),
    auth._create_token("sa:ci", "1h", "ci"),
    auth._login_kubernetes("a.b.c", "web"),
    auth._list_tokens(),
    auth._revoke_token("acc_1"),
    system._rotate_keys(),
    system._keys(),
    client._health(),
    client._health_ready(),
    client._health_detailed(),
    policies._create("p", [{"path_pattern": "a/**", "permissions": ["read"]}], "d"),
    policies._get("pol_1"),
    policies._list("app/db"),
    policies._update("pol_1", "p", [PolicyRule("a/*", ["read", "list"], "deny")], "d"),
    policies._delete("pol_1"),
    policies._add_binding("pol_1", "service_account", "sa:ci"),
    policies._list_bindings("pol_1"),
    policies._delete_binding("pol_1", "k8s:ns/sa"),
    policies._test("sa:ci", "app/db", "read", None),
    policies._test(None, "app/db", "read", {"name": "draft", "rules": [{"path_pattern": "app/**", "permissions": ["read"]}]}),
    policies._create_identity("user:alice@acme.example", "Alice"),
    policies._list_identities(),
    policies._get_identity("k8s:ns/sa"),
    audit._logs("2026-01-01", datetime(2026, 2, 1), "sa:ci", "app/db", "secrets.read", "success", 10, "c"),
    audit._for_secret("app/db", "2026-01-01", date(2026, 1, 31)),
    audit._for_identity("user:alice@acme.example", "2026-01-01", "2026-02-01"),
    audit._verify("2026-01-01", "2026-02-01"),
    audit._hmac("acc_1"),
    audit._export("2026-04-01", "2026-04-30", "jsonl", {"type": "s3", "bucket": "b", "prefix": "p/", "credentials_path": "c"}),
    audit._export("2026-04-01", "2026-04-30", "jsonl", {"type": "file", "path": "a.jsonl"}),
    audit._export_status("exp_1"),
    webhooks._create(
        "prod", "https://ops.acme.example/", "whsec_x", ["rotation.due"], {"path_prefix": "environments/"}, True
    ),
    webhooks._list(),
    webhooks._get("wh_1"),
    webhooks._update(
        "wh_1", "n", "https://ops.acme.example/", "whsec_x", ["rotation.due"], {"path_prefix": "a/"}, False
    ),
    webhooks._delete("wh_1"),
    webhooks._test("wh_1"),
    webhooks._deliveries("wh_1", "failed", 10, 50),
    webhooks._retry("wh_1", "msg_1_1"),
]


# Wrapped by the SDK, not served yet: checked as soon as openapi.json lists them.
# Each names the path template it waits for: a catch-all route such as
# `POST /v1/secrets/{path}` would otherwise match `.../rotate` and pass for served.
PENDING_CALLS: list[tuple[str, str, Call[Any]]] = []


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
            # The schema's own properties hold beside each part's, and win: a part may only
            # add constraints (the rotation policy's "generate names its fields").
            merged: dict[str, Any] = {"properties": {}}
            for part in schema["allOf"]:
                merged["properties"].update(_resolve(spec, part).get("properties", {}))
            merged["properties"].update(schema.get("properties", {}))
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


def _body_problems(spec: dict[str, Any], value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """What in a request body the schema does not document, nested objects and enums included.

    A oneOf (a tagged destination, say) is satisfied by any one branch; free-form
    objects (no ``properties``: a secret's ``data``) accept anything.
    """
    if isinstance(value, dict):
        shapes = _alternatives(spec, schema)
        if not any("properties" in shape for shape in shapes):
            return []
        best: list[str] | None = None
        for shape in shapes:
            properties = shape.get("properties", {})
            problems = [f"{where}.{k} (undocumented)" for k in value if k not in properties]
            for key, item in value.items():
                if key in properties:
                    problems += _body_problems(spec, item, properties[key], f"{where}.{key}")
            if not problems:
                return []
            if best is None or len(problems) < len(best):
                best = problems
        return best or []
    resolved = _resolve(spec, schema)
    if isinstance(value, list) and "items" in resolved:
        return [p for i, item in enumerate(value) for p in _body_problems(spec, item, resolved["items"], f"{where}[{i}]")]
    if "enum" in resolved and value not in resolved["enum"]:
        return [f"{where}={value!r} not in {resolved['enum']}"]
    return []


CALL_IDS = [f"{c.method} {c.path}" for c in SERVED_CALLS]


def _check_documented(spec: dict[str, Any], call: Call[Any]) -> None:
    """The route, the request body fields and the decoded response fields are in the spec."""
    operation = _operation(spec, call)

    if isinstance(call.json, dict):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        problems = _body_problems(spec, call.json, body.get("schema", {}), "body")
        assert not problems, f"request body not as documented on {call.method} {call.path}: {problems}"

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
    ("capability", "awaited", "call"), PENDING_CALLS, ids=[f"{c.method} {c.path}" for _, _, c in PENDING_CALLS]
)
def test_pending_calls_match_once_served(
    spec: dict[str, Any], capability: str, awaited: str, call: Call[Any]
) -> None:
    if call.method.lower() not in spec["paths"].get(awaited, {}):
        pytest.skip(f"waits for: {capability}")
    template = _route(spec, call.path)
    assert template == awaited, f"{call.method} {call.path} routes to {template}, not {awaited}"
    _check_documented(spec, call)
    documented = {p["name"] for p in spec["paths"][template][call.method.lower()].get("parameters", [])}
    assert set(call.params or {}) <= documented, f"undocumented query parameters on {template}"


# Documented operations the SDK does not wrap as calls: the scrape, the POST spelling of a
# write, the document itself; and the event stream, which `events.stream` reads as
# Server-Sent Events (checked below against the document and in test_events_stream.py).
UNWRAPPED = {
    ("get", "/metrics"),
    ("post", "/v1/secrets/{path}"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/events/stream"),
}


def test_the_event_stream_is_documented_as_the_sdk_reads_it(spec: dict[str, Any]) -> None:
    from scaivault_sdk.events import STREAM_PATH, _stream_params

    operation = spec["paths"][STREAM_PATH]["get"]
    documented = {p["name"] for p in operation.get("parameters", [])}
    assert set(_stream_params(["secret.created"], "app/")) <= documented
    assert "text/event-stream" in operation["responses"]["200"]["content"]


def test_every_documented_operation_is_wrapped(spec: dict[str, Any]) -> None:
    """A route the server documents (new policies or audit endpoints, say) fails here until wrapped."""
    wrapped = {(c.method.lower(), _route(spec, c.path)) for c in SERVED_CALLS}
    documented = {
        (method, template)
        for template, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    missing = sorted(documented - wrapped - UNWRAPPED)
    assert not missing, f"operations in openapi.json with no SDK method: {missing}"
