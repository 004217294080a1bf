"""Keep-alive connections to the Teams connector for every turn and every proactive card.

The Agents SDK's stock client factory builds two new aiohttp sessions for every activity: a connector client (so
every reply opens a new TCP and TLS connection to Teams) and a user-token client. Slotwise asks for no user sign-in,
so the second is never used. This factory hands out connector clients whose sessions share one connection pool, and
one user-token client for the process. Tokens are still asked of the connection manager for every client (MSAL
caches them), so a rotated token is picked up exactly as before.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from microsoft_agents.activity import RoleTypes
from microsoft_agents.hosting.core import RestChannelServiceClientFactory, TurnContext
from microsoft_agents.hosting.core.authorization import AuthenticationConstants, ClaimsIdentity, Connections
from microsoft_agents.hosting.core.connector import ConnectorClientBase
from microsoft_agents.hosting.core.connector.client import UserTokenClient
from microsoft_agents.hosting.core.connector.teams import TeamsConnectorClient

POOL_SIZE = 100
"""Open connections to Teams across all conversations; Teams' own limits are per conversation, not per socket."""


class _SharedUserTokenClient(UserTokenClient):
    """Lives as long as the factory; the SDK closes its per-turn clients after every turn."""

    async def close(self) -> None:
        return None


class PooledClientFactory(RestChannelServiceClientFactory):
    def __init__(self, connection_manager: Connections) -> None:
        super().__init__(connection_manager)
        self._pool: aiohttp.TCPConnector | None = None
        self._user_tokens: dict[str, UserTokenClient] = {}

    def _connector(self) -> aiohttp.TCPConnector:
        if self._pool is None or self._pool.closed:
            self._pool = aiohttp.TCPConnector(limit=POOL_SIZE, limit_per_host=POOL_SIZE)
        return self._pool

    def _session(self, base_url: str) -> aiohttp.ClientSession:
        endpoint = base_url if base_url.endswith("/") else base_url + "/"
        return aiohttp.ClientSession(base_url=endpoint, connector=self._connector(), connector_owner=False)

    async def create_connector_client(
        self,
        context: TurnContext | None,
        claims_identity: ClaimsIdentity,
        service_url: str,
        audience: str,
        scopes: list[str] | None = None,
        use_anonymous: bool = False,
    ) -> ConnectorClientBase:
        agentic = context is not None and context.activity.is_agentic_request()
        recipient = context.activity.recipient if context is not None else None
        if not service_url or not audience or agentic or (recipient and recipient.role == RoleTypes.connector_user):
            # Copilot Studio and agentic identities: the SDK's own path, unchanged.
            return await super().create_connector_client(
                context, claims_identity, service_url, audience, scopes, use_anonymous
            )
        provider: Any = (
            self._ANONYMOUS_TOKEN_PROVIDER
            if use_anonymous
            else self._connection_manager.get_token_provider(claims_identity, service_url)
        )
        token = await provider.get_access_token(audience, scopes or claims_identity.get_token_scope())
        # Closing this session at the end of the turn leaves the shared pool (connector_owner=False) open.
        return TeamsConnectorClient(endpoint=service_url, token=token, session=self._session(service_url))

    async def create_user_token_client(
        self, context: TurnContext, claims_identity: ClaimsIdentity, use_anonymous: bool = False
    ) -> UserTokenClient:
        app_id = claims_identity.get_app_id() or ""
        client = self._user_tokens.get(app_id)
        if client is None:
            endpoint = AuthenticationConstants.AGENTS_SDK_OAUTH_URL
            client = _SharedUserTokenClient(endpoint=endpoint, token="", app_id=app_id, session=self._session(endpoint))
            self._user_tokens[app_id] = client
        return client

    async def close(self) -> None:
        for client in self._user_tokens.values():
            await client.client.close()
        self._user_tokens.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
