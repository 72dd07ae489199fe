"""``client.auth``: the calling identity and tokens (docs/api.md, "Auth and tokens")."""

from __future__ import annotations

from ._paging import MAX_PAGE, walk, walk_async
from ._transport import AsyncTransport, Call, SyncTransport, no_content, query, segment
from ._wire import model
from .models import CreatedToken, Identity, TokenInfo, TokenList

TokenInfos = list[TokenInfo]


def _whoami() -> Call[Identity]:
    return Call("GET", "/v1/auth/whoami", model(Identity))


def _create_token(identity_id: str, ttl: str | None, display_name: str | None) -> Call[CreatedToken]:
    body = {"identity_id": identity_id}
    if ttl is not None:
        body["ttl"] = ttl
    if display_name is not None:
        body["display_name"] = display_name
    return Call("POST", "/v1/auth/tokens", model(CreatedToken), json=body)


def _login_kubernetes(jwt: str, role: str | None) -> Call[CreatedToken]:
    body = {"jwt": jwt}
    if role is not None:
        body["role"] = role
    # No caller yet, so no Idempotency-Key can be scoped to it: never retried.
    return Call("POST", "/v1/auth/kubernetes/login", model(CreatedToken), json=body, keyed=False)


def _list_tokens(limit: int | None = None, cursor: str | None = None) -> Call[TokenList]:
    return Call("GET", "/v1/auth/tokens", model(TokenList), params=query(limit=limit, cursor=cursor))


def _revoke_token(accessor: str) -> Call[None]:
    return Call("DELETE", f"/v1/auth/tokens/{segment(accessor)}", no_content)


class Auth:
    def __init__(self, transport: SyncTransport) -> None:
        self._run = transport.run

    def whoami(self) -> Identity:
        """Who the client's token is: identity, policies, expiry."""
        return self._run(_whoami())

    def create_token(
        self, identity_id: str, ttl: str | None = None, display_name: str | None = None
    ) -> CreatedToken:
        """A token for ``identity_id`` (``user:<email>``, ``sa:<name>``, ``k8s:<ns>/<sa>``).

        The server shows the token once; keep ``.token``, it cannot be fetched again.
        """
        return self._run(_create_token(identity_id, ttl, display_name))

    def login_kubernetes(self, jwt: str, role: str | None = None) -> CreatedToken:
        """Exchange a Kubernetes ServiceAccount token for a vault token of ``k8s:<ns>/<sa>``.

        ``jwt`` must be issued for the server's audience (``scaivault`` by default), e.g. a
        projected volume token. Works without a client token; build a new client with the
        answer's ``.token``. Raises ``AuthenticationError`` for a token the cluster refuses.
        """
        return self._run(_login_kubernetes(jwt, role))

    def list_tokens(self) -> TokenInfos:
        """Every active token, oldest first (all pages)."""
        return walk(lambda c: self._run(_list_tokens(MAX_PAGE, c)), lambda p: p.tokens)

    def list_tokens_page(self, limit: int | None = None, cursor: str | None = None) -> TokenList:
        """One page of ``list_tokens``; follow ``next_cursor``."""
        return self._run(_list_tokens(limit, cursor))

    def revoke_token(self, accessor: str) -> None:
        self._run(_revoke_token(accessor))


class AsyncAuth:
    def __init__(self, transport: AsyncTransport) -> None:
        self._run = transport.run

    async def whoami(self) -> Identity:
        return await self._run(_whoami())

    async def create_token(
        self, identity_id: str, ttl: str | None = None, display_name: str | None = None
    ) -> CreatedToken:
        return await self._run(_create_token(identity_id, ttl, display_name))

    async def login_kubernetes(self, jwt: str, role: str | None = None) -> CreatedToken:
        return await self._run(_login_kubernetes(jwt, role))

    async def list_tokens(self) -> TokenInfos:
        return await walk_async(lambda c: self._run(_list_tokens(MAX_PAGE, c)), lambda p: p.tokens)

    async def list_tokens_page(self, limit: int | None = None, cursor: str | None = None) -> TokenList:
        return await self._run(_list_tokens(limit, cursor))

    async def revoke_token(self, accessor: str) -> None:
        await self._run(_revoke_token(accessor))
