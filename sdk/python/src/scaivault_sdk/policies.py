"""``client.policies``: access policies and their bindings.

The server side arrives with the policies feature; these methods follow the shapes
agreed for it: ``{id: "pol_...", name, description, rules: [{path_pattern,
permissions, effect?}]}``, bindings ``{identity_type, identity_id}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ._transport import AsyncTransport, Call, SyncTransport, no_content, query, segment
from ._wire import model
from .models import BindingList, Policy, PolicyBinding, PolicyList, PolicyRule, PolicyTestResult

Rules = Sequence[PolicyRule | Mapping[str, Any]]
Policies = list[Policy]
Bindings = list[PolicyBinding]


def _rule(rule: PolicyRule | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(rule, PolicyRule):
        return {k: v for k, v in dataclasses.asdict(rule).items() if v is not None}
    return dict(rule)


def _body(name: str | None, rules: Rules | None, description: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if description is not None:
        body["description"] = description
    if rules is not None:
        body["rules"] = [_rule(r) for r in rules]
    return body


def _url(policy_id: str, rest: str = "") -> str:
    return f"/v1/policies/{segment(policy_id)}{rest}"


def _create(name: str, rules: Rules, description: str | None) -> Call[Policy]:
    return Call("POST", "/v1/policies", model(Policy), json=_body(name, rules, description))


def _get(policy_id: str) -> Call[Policy]:
    return Call("GET", _url(policy_id), model(Policy))


def _list(path: str | None) -> Call[PolicyList]:
    return Call("GET", "/v1/policies", model(PolicyList), params=query(path=path))


def _update(policy_id: str, name: str | None, rules: Rules | None, description: str | None) -> Call[Policy]:
    return Call("PUT", _url(policy_id), model(Policy), json=_body(name, rules, description))


def _delete(policy_id: str) -> Call[None]:
    return Call("DELETE", _url(policy_id), no_content)


def _add_binding(policy_id: str, identity_type: str, identity_id: str) -> Call[PolicyBinding]:
    body = {"identity_type": identity_type, "identity_id": identity_id}
    return Call("POST", _url(policy_id, "/bindings"), model(PolicyBinding), json=body)


def _list_bindings(policy_id: str) -> Call[BindingList]:
    return Call("GET", _url(policy_id, "/bindings"), model(BindingList))


def _delete_binding(policy_id: str, binding_id: str) -> Call[None]:
    return Call("DELETE", _url(policy_id, f"/bindings/{segment(binding_id)}"), no_content)


def _test(identity_id: str, path: str, permission: str) -> Call[PolicyTestResult]:
    body = {"identity_id": identity_id, "path": path, "permission": permission}
    return Call("POST", "/v1/policies/test", model(PolicyTestResult), json=body)


class PoliciesAPI:
    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def create(self, name: str, rules: Rules, description: str | None = None) -> Policy:
        return self._run(_create(name, rules, description))

    def get(self, policy_id: str) -> Policy:
        return self._run(_get(policy_id))

    def list(self) -> Policies:
        return self._run(_list(None)).policies

    def list_for_path(self, path: str) -> Policies:
        """Policies with a rule matching ``path``, matched by the server's glob rules."""
        return self._run(_list(path)).policies

    def update(
        self,
        policy_id: str,
        name: str | None = None,
        rules: Rules | None = None,
        description: str | None = None,
    ) -> Policy:
        return self._run(_update(policy_id, name, rules, description))

    def delete(self, policy_id: str) -> None:
        self._run(_delete(policy_id))

    def add_binding(self, policy_id: str, identity_type: str, identity_id: str) -> PolicyBinding:
        return self._run(_add_binding(policy_id, identity_type, identity_id))

    def list_bindings(self, policy_id: str) -> Bindings:
        return self._run(_list_bindings(policy_id)).bindings

    def delete_binding(self, policy_id: str, binding_id: str) -> None:
        self._run(_delete_binding(policy_id, binding_id))

    def test(self, identity_id: str, path: str, permission: str) -> PolicyTestResult:
        """Would ``identity_id`` get ``permission`` on ``path``? With the rule that decided."""
        return self._run(_test(identity_id, path, permission))


class AsyncPoliciesAPI:
    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def create(self, name: str, rules: Rules, description: str | None = None) -> Policy:
        return await self._run(_create(name, rules, description))

    async def get(self, policy_id: str) -> Policy:
        return await self._run(_get(policy_id))

    async def list(self) -> Policies:
        return (await self._run(_list(None))).policies

    async def list_for_path(self, path: str) -> Policies:
        return (await self._run(_list(path))).policies

    async def update(
        self,
        policy_id: str,
        name: str | None = None,
        rules: Rules | None = None,
        description: str | None = None,
    ) -> Policy:
        return await self._run(_update(policy_id, name, rules, description))

    async def delete(self, policy_id: str) -> None:
        await self._run(_delete(policy_id))

    async def add_binding(self, policy_id: str, identity_type: str, identity_id: str) -> PolicyBinding:
        return await self._run(_add_binding(policy_id, identity_type, identity_id))

    async def list_bindings(self, policy_id: str) -> Bindings:
        return (await self._run(_list_bindings(policy_id))).bindings

    async def delete_binding(self, policy_id: str, binding_id: str) -> None:
        await self._run(_delete_binding(policy_id, binding_id))

    async def test(self, identity_id: str, path: str, permission: str) -> PolicyTestResult:
        return await self._run(_test(identity_id, path, permission))
