"""``client.policies`` and ``client.identities`` (docs/api.md, "Policies").

A policy is ``{id: "pol_...", name, description, rules: [{path_pattern, permissions,
effect}]}``; a binding ties it to an identity (``sa:...``, ``user:...``,
``k8s:<ns>/<sa>``). Tokens get their permissions from the policies bound to their
identity; a token whose identity has none is refused everything (403).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ._transport import AsyncTransport, Call, SyncTransport, no_content, query, segment
from ._wire import model
from .models import (
    BindingList,
    IdentityList,
    Policy,
    PolicyBinding,
    PolicyList,
    PolicyRule,
    PolicyTestResult,
    RegisteredIdentity,
)

Rules = Sequence[PolicyRule | Mapping[str, Any]]
Draft = Policy | Mapping[str, Any]
# Inside the API classes `list` names the method, so annotations use these aliases.
Policies = list[Policy]
Bindings = list[PolicyBinding]
Identities = list[RegisteredIdentity]


def _rule(rule: PolicyRule | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(rule, PolicyRule):
        return dataclasses.asdict(rule)
    return dict(rule)


def _body(name: str, rules: Rules, description: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "rules": [_rule(r) for r in rules]}
    if description is not None:
        body["description"] = description
    return body


def _draft(policy: Draft) -> dict[str, Any]:
    if isinstance(policy, Policy):
        return _body(policy.name, policy.rules, policy.description)
    draft = dict(policy)
    if "rules" in draft:
        draft["rules"] = [_rule(r) for r in draft["rules"]]
    return draft


def _url(policy_id: str, rest: str = "") -> str:
    return f"/v1/policies/{segment(policy_id)}{rest}"


def _create(name: str, rules: Rules, description: str | None) -> Call[Policy]:
    return Call("POST", "/v1/policies", model(Policy), json=_body(name, rules, description))


def _get(policy_id: str) -> Call[Policy]:
    return Call("GET", _url(policy_id), model(Policy))


def _list(path: str | None) -> Call[PolicyList]:
    return Call("GET", "/v1/policies", model(PolicyList), params=query(path=path))


def _update(policy_id: str, name: str, rules: Rules, description: str | None) -> Call[Policy]:
    return Call("PUT", _url(policy_id), model(Policy), json=_body(name, rules, description))


def _delete(policy_id: str) -> Call[None]:
    return Call("DELETE", _url(policy_id), no_content)


def _add_binding(policy_id: str, identity_type: str, identity_id: str) -> Call[PolicyBinding]:
    body = {"identity_type": identity_type, "identity_id": identity_id}
    return Call("POST", _url(policy_id, "/bindings"), model(PolicyBinding), json=body)


def _list_bindings(policy_id: str) -> Call[BindingList]:
    return Call("GET", _url(policy_id, "/bindings"), model(BindingList))


def _delete_binding(policy_id: str, identity_id: str) -> Call[None]:
    return Call("DELETE", _url(policy_id, f"/bindings/{segment(identity_id)}"), no_content)


def _test(identity_id: str | None, path: str, permission: str, policy: Draft | None) -> Call[PolicyTestResult]:
    body: dict[str, Any] = {"path": path, "permission": permission}
    if identity_id is not None:
        body["identity_id"] = identity_id
    if policy is not None:
        body["policy"] = _draft(policy)
    # A POST that changes nothing: safe to send again after a lost connection.
    return Call("POST", "/v1/policies/test", model(PolicyTestResult), json=body, idempotent=True)


def _create_identity(identity_id: str, display_name: str | None) -> Call[RegisteredIdentity]:
    body = {"id": identity_id}
    if display_name is not None:
        body["display_name"] = display_name
    return Call("POST", "/v1/identities", model(RegisteredIdentity), json=body)


def _list_identities() -> Call[IdentityList]:
    return Call("GET", "/v1/identities", model(IdentityList))


def _get_identity(identity_id: str) -> Call[RegisteredIdentity]:
    return Call("GET", f"/v1/identities/{segment(identity_id)}", model(RegisteredIdentity))


class PoliciesAPI:
    """Policies API of the sync client. Managing policies needs ``admin`` on ``sys/policies``."""

    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def create(self, name: str, rules: Rules, description: str | None = None) -> Policy:
        """A new policy. 409 ``ConflictError`` if the name is taken, 400 for a bad pattern."""
        return self._run(_create(name, rules, description))

    def get(self, policy_id: str) -> Policy:
        return self._run(_get(policy_id))

    def list(self) -> Policies:
        return self._run(_list(None)).policies

    def list_for_path(self, path: str) -> Policies:
        """Policies with a rule whose pattern matches ``path``, by the server's glob rules."""
        return self._run(_list(path)).policies

    def update(self, policy_id: str, name: str, rules: Rules, description: str | None = None) -> Policy:
        """Replace name, rules and description (a description not given is cleared)."""
        return self._run(_update(policy_id, name, rules, description))

    def delete(self, policy_id: str) -> None:
        """Delete the policy and its bindings."""
        self._run(_delete(policy_id))

    def add_binding(self, policy_id: str, identity_type: str, identity_id: str) -> PolicyBinding:
        """Bind to ``identity_id`` (``identity_type``: ``user``, ``service_account``, ``k8s``...).

        Binding twice is harmless: the identity stays bound once.
        """
        return self._run(_add_binding(policy_id, identity_type, identity_id))

    def list_bindings(self, policy_id: str) -> Bindings:
        return self._run(_list_bindings(policy_id)).bindings

    def delete_binding(self, policy_id: str, identity_id: str) -> None:
        """Unbind ``identity_id`` from the policy."""
        self._run(_delete_binding(policy_id, identity_id))

    def test(
        self,
        identity_id: str | None,
        path: str,
        permission: str,
        policy: Draft | None = None,
    ) -> PolicyTestResult:
        """Would ``identity_id`` get ``permission`` on ``path``? With the rules that decided.

        ``policy`` (a ``Policy`` or ``{"name", "rules", "description"}``) is evaluated as
        if it were bound too: try a policy before saving it. ``identity_id`` may then be
        ``None`` to test the draft alone.
        """
        return self._run(_test(identity_id, path, permission, policy))


class AsyncPoliciesAPI:
    """Policies API of the async client; same methods as ``PoliciesAPI``, awaited."""

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
        self, policy_id: str, name: str, rules: Rules, description: str | None = None
    ) -> Policy:
        return await self._run(_update(policy_id, name, rules, description))

    async def delete(self, policy_id: str) -> None:
        await self._run(_delete(policy_id))

    async def add_binding(self, policy_id: str, identity_type: str, identity_id: str) -> PolicyBinding:
        return await self._run(_add_binding(policy_id, identity_type, identity_id))

    async def list_bindings(self, policy_id: str) -> Bindings:
        return (await self._run(_list_bindings(policy_id))).bindings

    async def delete_binding(self, policy_id: str, identity_id: str) -> None:
        await self._run(_delete_binding(policy_id, identity_id))

    async def test(
        self,
        identity_id: str | None,
        path: str,
        permission: str,
        policy: Draft | None = None,
    ) -> PolicyTestResult:
        return await self._run(_test(identity_id, path, permission, policy))


class IdentitiesAPI:
    """Registered identities (``user:...``, ``sa:...``, ``k8s:<ns>/<sa>``)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def create(self, identity_id: str, display_name: str | None = None) -> RegisteredIdentity:
        """Register ``identity_id``; 409 ``ConflictError`` if it already is."""
        return self._run(_create_identity(identity_id, display_name))

    def list(self) -> Identities:
        return self._run(_list_identities()).identities

    def get(self, identity_id: str) -> RegisteredIdentity:
        return self._run(_get_identity(identity_id))


class AsyncIdentitiesAPI:
    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def create(self, identity_id: str, display_name: str | None = None) -> RegisteredIdentity:
        return await self._run(_create_identity(identity_id, display_name))

    async def list(self) -> Identities:
        return (await self._run(_list_identities())).identities

    async def get(self, identity_id: str) -> RegisteredIdentity:
        return await self._run(_get_identity(identity_id))
