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

from ._paging import MAX_PAGE, walk, walk_async
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


def _list(path: str | None, limit: int | None = None, cursor: str | None = None) -> Call[PolicyList]:
    params = query(path=path, limit=limit, cursor=cursor)
    return Call("GET", "/v1/policies", model(PolicyList), params=params)


def _update(policy_id: str, name: str, rules: Rules, description: str | None) -> Call[Policy]:
    return Call("PUT", _url(policy_id), model(Policy), json=_body(name, rules, description))


def _delete(policy_id: str) -> Call[None]:
    return Call("DELETE", _url(policy_id), no_content)


def _add_binding(policy_id: str, identity_type: str, identity_id: str) -> Call[PolicyBinding]:
    body = {"identity_type": identity_type, "identity_id": identity_id}
    return Call("POST", _url(policy_id, "/bindings"), model(PolicyBinding), json=body)


def _list_bindings(
    policy_id: str, limit: int | None = None, cursor: str | None = None
) -> Call[BindingList]:
    params = query(limit=limit, cursor=cursor)
    return Call("GET", _url(policy_id, "/bindings"), model(BindingList), params=params)


def _delete_binding(policy_id: str, identity_id: str) -> Call[None]:
    return Call("DELETE", _url(policy_id, f"/bindings/{segment(identity_id)}"), no_content)


def _test(identity_id: str | None, path: str, permission: str, policy: Draft | None) -> Call[PolicyTestResult]:
    body: dict[str, Any] = {"path": path, "permission": permission}
    if identity_id is not None:
        body["identity_id"] = identity_id
    if policy is not None:
        body["policy"] = _draft(policy)
    # A POST that changes nothing: safe to send again after a lost connection.
    return Call("POST", "/v1/policies/test", model(PolicyTestResult), json=body, read_only=True)


def _create_identity(identity_id: str, display_name: str | None) -> Call[RegisteredIdentity]:
    body = {"id": identity_id}
    if display_name is not None:
        body["display_name"] = display_name
    return Call("POST", "/v1/identities", model(RegisteredIdentity), json=body)


def _list_identities(limit: int | None = None, cursor: str | None = None) -> Call[IdentityList]:
    return Call("GET", "/v1/identities", model(IdentityList), params=query(limit=limit, cursor=cursor))


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
        """Every policy, by name (all pages)."""
        return walk(lambda c: self._run(_list(None, MAX_PAGE, c)), lambda p: p.policies)

    def list_for_path(self, path: str) -> Policies:
        """Policies with a rule whose pattern matches ``path``, by the server's glob rules."""
        return walk(lambda c: self._run(_list(path, MAX_PAGE, c)), lambda p: p.policies)

    def list_page(
        self, path: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> PolicyList:
        """One page of ``list`` (or ``list_for_path``); follow ``next_cursor``."""
        return self._run(_list(path, limit, cursor))

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
        """Every binding of the policy, by identity id (all pages)."""
        return walk(lambda c: self._run(_list_bindings(policy_id, MAX_PAGE, c)), lambda p: p.bindings)

    def list_bindings_page(
        self, policy_id: str, limit: int | None = None, cursor: str | None = None
    ) -> BindingList:
        return self._run(_list_bindings(policy_id, limit, cursor))

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
        return await walk_async(lambda c: self._run(_list(None, MAX_PAGE, c)), lambda p: p.policies)

    async def list_for_path(self, path: str) -> Policies:
        return await walk_async(lambda c: self._run(_list(path, MAX_PAGE, c)), lambda p: p.policies)

    async def list_page(
        self, path: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> PolicyList:
        return await self._run(_list(path, limit, cursor))

    async def update(
        self, policy_id: str, name: str, rules: Rules, description: str | None = None
    ) -> Policy:
        return await self._run(_update(policy_id, name, rules, description))

    async def delete(self, policy_id: str) -> None:
        await self._run(_delete(policy_id))

    async def add_binding(self, policy_id: str, identity_type: str, identity_id: str) -> PolicyBinding:
        return await self._run(_add_binding(policy_id, identity_type, identity_id))

    async def list_bindings(self, policy_id: str) -> Bindings:
        return await walk_async(
            lambda c: self._run(_list_bindings(policy_id, MAX_PAGE, c)), lambda p: p.bindings
        )

    async def list_bindings_page(
        self, policy_id: str, limit: int | None = None, cursor: str | None = None
    ) -> BindingList:
        return await self._run(_list_bindings(policy_id, limit, cursor))

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
        """Every registered identity, by id (all pages)."""
        return walk(lambda c: self._run(_list_identities(MAX_PAGE, c)), lambda p: p.identities)

    def list_page(self, limit: int | None = None, cursor: str | None = None) -> IdentityList:
        return self._run(_list_identities(limit, cursor))

    def get(self, identity_id: str) -> RegisteredIdentity:
        return self._run(_get_identity(identity_id))


class AsyncIdentitiesAPI:
    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def create(self, identity_id: str, display_name: str | None = None) -> RegisteredIdentity:
        return await self._run(_create_identity(identity_id, display_name))

    async def list(self) -> Identities:
        return await walk_async(lambda c: self._run(_list_identities(MAX_PAGE, c)), lambda p: p.identities)

    async def list_page(self, limit: int | None = None, cursor: str | None = None) -> IdentityList:
        return await self._run(_list_identities(limit, cursor))

    async def get(self, identity_id: str) -> RegisteredIdentity:
        return await self._run(_get_identity(identity_id))
