"""GraphClient: msgraph-sdk with msal tokens, at most 4 requests per mailbox, errors translated at the edge."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import msal  # type: ignore[import-untyped]  # msal 1.39 ships no type information
import requests
from kiota_abstractions.api_error import APIError
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.request_option import RequestOption
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient

from integrations.graph.config import GraphConfig
from integrations.rate_windows import InMemoryVendorLimits, vendor_slot
from integrations.retry_after import parse_retry_after
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from scheduling.ports import VendorLimits

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_MESSAGE = 500
_AUTH_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_tenant", "invalid_scope", "invalid_grant", "invalid_request"}
)
"""OAuth2/Entra token errors that mean our configuration or credentials are wrong (RFC 6749 §5.2)."""


class _TokenRefused(IntegrationAuthError):
    """Graph answered 401: the token expired early or was revoked. Worth one retry with a fresh token."""


def _http_client_trusting(ca_file: str) -> Any:
    """A requests session for msal that trusts `ca_file`. requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE silently
    override `Session.verify` (psf/requests#3829), so the environment is ignored once a CA file is configured."""
    session = requests.Session()
    session.verify = ca_file
    session.trust_env = False
    return session


class MsalTokenProvider(AccessTokenProvider):
    """App-only tokens from msal's client-credentials flow, for kiota's bearer authentication.

    msal is synchronous, so it runs in a worker thread. It caches tokens itself and refreshes them shortly before
    expiry. The application object is built on first use because building it already calls the network (OpenID
    discovery of the authority)."""

    def __init__(self, config: GraphConfig) -> None:
        self._config = config
        self._app: Any = None
        self._build_lock = asyncio.Lock()
        self._allowed = AllowedHostsValidator([config.graph_host])

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._allowed

    async def get_authorization_token(
        self,
        uri: str,
        additional_authentication_context: dict[str, Any] = {},  # noqa: B006  # kiota's abstract signature
    ) -> str:
        # Tokens go only to the configured Graph host, never to a URL a response (e.g. a redirect) points at.
        if not self._allowed.is_url_host_valid(uri) or urlsplit(uri).hostname != self._config.graph_host:
            raise IntegrationRejected(f"Refusing to send a Microsoft Graph token to {urlsplit(uri).hostname}")
        app = await self._application()
        try:
            result = await asyncio.to_thread(app.acquire_token_for_client, scopes=list(self._config.scopes))
        except (requests.RequestException, OSError, ValueError) as exc:
            # ValueError: a token endpoint that answered something other than JSON (a gateway error page).
            raise IntegrationUnavailable(
                f"Could not get a token from Microsoft Entra ID: {type(exc).__name__}"
            ) from exc
        return self._token_from(result)

    async def forget_tokens(self) -> None:
        """Drop cached tokens after Graph refused one (expired early or revoked), so the next call asks Entra."""
        if self._app is not None:
            await asyncio.to_thread(self._app.remove_tokens_for_client)

    async def _application(self) -> Any:
        async with self._build_lock:
            if self._app is None:
                self._app = await asyncio.to_thread(self._build_application)
            return self._app

    def _build_application(self) -> Any:
        config = self._config
        try:
            return msal.ConfidentialClientApplication(
                config.client_id,
                client_credential=config.client_secret.get_secret_value(),
                authority=config.authority,
                # msal otherwise asks login.microsoftonline.com whether a non-Microsoft authority host is known to
                # Entra ("instance discovery"); that fails offline and for test fakes. OpenID discovery of
                # `{authority}/v2.0/.well-known/openid-configuration` still happens and still validates the tenant.
                instance_discovery=False,
                http_client=_http_client_trusting(config.authority_ca_file) if config.authority_ca_file else None,
                timeout=config.timeout_seconds,
            )
        except ValueError as exc:
            # OpenID discovery answered 4xx: the tenant does not exist (or the authority is not Entra).
            raise IntegrationAuthError(f"Microsoft Entra does not know tenant {config.tenant_id}: {exc}") from exc
        except (requests.RequestException, RuntimeError, OSError) as exc:
            raise IntegrationUnavailable(f"Could not reach Microsoft Entra ID: {type(exc).__name__}") from exc

    @staticmethod
    def _token_from(result: Any) -> str:
        if isinstance(result, dict) and isinstance(result.get("access_token"), str):
            return str(result["access_token"])
        error = str(result.get("error", "unknown")) if isinstance(result, dict) else "unknown"
        description = str(result.get("error_description", "")) if isinstance(result, dict) else ""
        message = f"{error}: {description.splitlines()[0] if description else 'no description'}"[:_MAX_MESSAGE]
        if error in _AUTH_ERRORS:
            raise IntegrationAuthError(f"Microsoft Entra refused our client credentials ({message})")
        raise IntegrationUnavailable(f"Microsoft Entra did not issue a token ({message})")


def _graph_request_options() -> dict[str, RequestOption]:
    # The SDK's RetryHandler would sleep through 429/503/504 itself, up to 3 times; our job runner retries with
    # backoff and honours Retry-After instead, and the busy refresh simply runs again.
    no_retry = RetryHandlerOption(max_retries=0, should_retry=False)
    return {no_retry.get_key(): no_retry}


class GraphClient:
    """One tenant's Graph connection. Calls for the same mailbox never run more than `max_concurrent_per_mailbox`
    at a time (Outlook's limit is 4 per app per mailbox, perf_reliability.md §2). The limit is the app's, not this
    process's: with database-backed `limits` every app process and worker shares the same four slots."""

    def __init__(
        self,
        config: GraphConfig,
        *,
        clock: Callable[[], datetime] | None = None,
        limits: VendorLimits | None = None,
    ) -> None:
        self._config = config
        self._limits: VendorLimits = limits or InMemoryVendorLimits()
        # One attempt is a token fetch (msal, bounded by the same timeout) plus one Graph request.
        self._slot_lease = 2 * config.timeout_seconds + 5.0
        self._clock = clock or (lambda: datetime.now(UTC))
        self._tokens = MsalTokenProvider(config)
        self._http = KiotaClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(timeout=httpx.Timeout(config.timeout_seconds)),
            options=_graph_request_options(),
        )
        adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(self._tokens), client=self._http)
        # Must be set before GraphServiceClient exists, or it becomes https://graph.microsoft.com/v1.0
        # (toolchain.md §6).
        adapter.base_url = config.graph_base_url
        self.graph = GraphServiceClient(request_adapter=adapter)

    @property
    def config(self) -> GraphConfig:
        return self._config

    async def check_credentials(self) -> None:
        """Fetch an app token: proves the authority, tenant, client id and secret without touching a mailbox."""
        await self._tokens.get_authorization_token(self._config.graph_base_url)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, mailbox: str, what: str, operation: Callable[[GraphServiceClient], Awaitable[T]]) -> T:
        """Run one SDK call against `mailbox` under its concurrency slot, translating every failure into our
        three integration errors. A 401 means Graph did not process the request, so it is repeated once with a
        fresh token (even a POST)."""
        try:
            return await self._in_slot(mailbox, what, operation)
        except _TokenRefused:
            await self._tokens.forget_tokens()
            return await self._in_slot(mailbox, what, operation)

    async def _in_slot(self, mailbox: str, what: str, operation: Callable[[GraphServiceClient], Awaitable[T]]) -> T:
        key = f"graph:{self._config.client_id.lower()}|{mailbox.lower()}"
        async with vendor_slot(self._limits, key, self._config.max_concurrent_per_mailbox, self._slot_lease):
            return await self._translated(what, operation)

    async def _translated(self, what: str, operation: Callable[[GraphServiceClient], Awaitable[T]]) -> T:
        try:
            result = await operation(self.graph)
        except APIError as exc:
            raise self._from_api_error(what, exc) from exc
        except httpx.TimeoutException as exc:
            raise IntegrationUnavailable(
                f"Microsoft Graph did not answer {what} within {self._config.timeout_seconds:g}s"
            ) from exc
        except httpx.TransportError as exc:
            raise IntegrationUnavailable(f"Could not reach Microsoft Graph for {what}: {type(exc).__name__}") from exc
        logger.debug("Graph %s succeeded", what)
        return result

    def _from_api_error(self, what: str, exc: APIError) -> Exception:
        status = exc.response_status_code or 0
        code, message = "", ""
        if isinstance(exc, ODataError) and exc.error is not None:
            code, message = exc.error.code or "", exc.error.message or ""
        detail = (f"{code}: {message}" if code else message or str(exc))[:_MAX_MESSAGE]
        logger.info("Graph %s failed with %s %s", what, status, code)
        if status == 401:
            return _TokenRefused(f"Microsoft Graph refused our token for {what} (401): {detail}")
        if status == 403:
            return IntegrationAuthError(f"Microsoft Graph denied {what} (403): {detail}")
        if status in (408, 429) or status >= 500:
            headers = exc.response_headers or {}
            retry_after = parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"), self._clock())
            return IntegrationUnavailable(
                f"Microsoft Graph is unavailable for {what} ({status}): {detail}", retry_after_seconds=retry_after
            )
        return IntegrationRejected(f"Microsoft Graph rejected {what} ({status}): {detail}")
