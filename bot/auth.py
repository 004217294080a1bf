"""Bot security: inbound Bot Framework JWT checks, outbound connector tokens and the serviceUrl allow-list.

Signing keys and the JWT checks every entrypoint shares live in `tokens/validation.py`; this module adds the Bot
Framework rules on top (issuer routing, allowed callers, channel endorsements, the serviceurl claim, the tenant)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import msal  # type: ignore[import-untyped]  # msal 1.39 ships no type information
import requests
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core.authorization import (
    AccessTokenProviderBase,
    AgentAuthConfiguration,
    AnonymousTokenProvider,
    ClaimsIdentity,
    Connections,
)
from yarl import URL

from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from tokens.validation import (
    ENTRA_METADATA_TEMPLATE,
    KeySet,
    KeysUnavailable,
    TokenRejected,
    bearer_token,
    check_audience,
    is_loopback,
    parse_token,
    require_fetchable,
    verify_token,
)

logger = logging.getLogger(__name__)

BOT_FRAMEWORK_SCOPE: Final = "https://api.botframework.com/.default"
"""The only scope our outbound tokens are for: the Bot Connector (replies, proactive sends, Teams API calls)."""

MULTI_TENANT_AUTHORITY: Final = "https://login.microsoftonline.com/botframework.com"
BOT_FRAMEWORK_OAUTH_URL: Final = "https://api.botframework.com"
"""Bot Framework's user-token service (`AuthenticationConstants.AGENTS_SDK_OAUTH_URL`)."""

DEFAULT_SERVICE_HOSTS: Final = (
    "smba.trafficmanager.net",  # Teams, public cloud (…/amer/, …/emea/, …/teams/)
    "*.botframework.com",  # Bot Connector channels (webchat, directline, …)
    "smba.infra.gcc.teams.microsoft.com",  # Teams GCC
    "smba.infra.gov.teams.microsoft.us",  # Teams GCC High
    "smba.infra.dod.teams.microsoft.us",  # Teams DoD
)
"""Where Microsoft sends Teams bot traffic from (hosting/msteams/proactive_service_endpoints.py in the Agents SDK).
Narrower than the SDK's `_DEFAULT_MICROSOFT_HOSTS`, which also admits Graph, SharePoint and blob storage: those are
attachment hosts, never a place to POST a reply with our bearer token."""


@dataclass(frozen=True, slots=True)
class BotAuthSettings:
    """Who the bot is and whom it trusts. Built from `settings.Settings` by the composition root."""

    app_id: str | None
    """The bot's Entra app (client) id; None means no app is configured."""
    app_password: str | None = field(repr=False)
    """The app's client secret: never logged and never in repr."""
    tenant_id: str | None
    """Single-tenant bot: its Entra tenant. Every activity must name this tenant, and Entra-issued tokens of this
    tenant are accepted too, from `allowed_callers` only."""
    allow_anonymous: bool
    """Local development only: header-less requests get an anonymous identity (replies carry no token)."""
    openid_metadata_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    channel_issuer: str = "https://api.botframework.com"
    token_authority: str = MULTI_TENANT_AUTHORITY
    """Outbound client-credentials authority. Left at the multi-tenant default while `tenant_id` is set, the
    tenant's own authority is used instead (single-tenant bots must get their tokens there)."""
    authority_ca_file: str | None = None
    """Tests: the CA of a local TLS token endpoint, trusted instead of the system store."""
    allowed_service_hosts: tuple[str, ...] = DEFAULT_SERVICE_HOSTS
    """Hosts a serviceUrl may point at; `*.suffix` admits any subdomain of `suffix` (not `suffix` itself)."""
    allow_http_loopback: bool = False
    """Tests and local development: admit http:// service URLs on a loopback host listed above."""
    tenant_openid_metadata_url: str | None = None
    """Where the keys of `tenant_id`'s Entra tokens are published; None means Microsoft's public cloud. Tests point
    it at a local server."""
    allowed_callers: tuple[str, ...] = ()
    """Single-tenant bot: Entra app (client) ids whose app-only tokens of `tenant_id` are accepted besides Bot
    Framework channel tokens, matched against the token's `azp` (v2.0) or `appid` (v1.0) claim. Empty (the default)
    accepts channel tokens only: any app in the tenant can get an Entra token for our app id, so the issuer and
    `tid` alone say nothing about who is calling."""


class BotAuthError(Exception):
    """A request the bot refuses. `status` is 401 (who sent this?), 403 (the serviceUrl is not allowed) or 503 (the
    signing keys cannot be fetched right now; Teams retries 5xx answers). The message names the failed check and
    never contains token contents."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# Outbound allow-list


def check_service_url(url: str, settings: BotAuthSettings) -> None:
    """Raise `BotAuthError(status=403)` unless `url` is an https URL without user info on an allowed host (or an
    http loopback URL while `allow_http_loopback` is on and that loopback host is listed).

    The bot POSTs replies with its bearer token to the activity's serviceUrl, so this is what keeps a forged or
    misrouted activity from collecting our token or turning the bot into a request relay (SSRF)."""
    problem = _service_url_problem(url, settings)
    if problem is not None:
        raise BotAuthError(f"the serviceUrl is not an allowed Bot Connector endpoint: {problem}", status=403)


def _service_url_problem(url: object, settings: BotAuthSettings) -> str | None:
    if not isinstance(url, str) or not url:
        return "it is missing"
    if any(char.isspace() or ord(char) < 0x20 or char == "\\" for char in url):
        return "it contains whitespace, control characters or backslashes"
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "it is not a valid URL"
    host = (parsed.raw_host or "").lower()
    if not parsed.is_absolute() or not host:
        return "it is not an absolute URL"
    if parsed.raw_user is not None or parsed.raw_password is not None:
        return "it carries user information"
    if not _host_is_listed(host, settings.allowed_service_hosts):
        return f"host {host!r} is not in allowed_service_hosts"
    if parsed.scheme == "https":
        return None
    if parsed.scheme == "http" and settings.allow_http_loopback and is_loopback(host):
        return None
    return "only https is allowed"


def _host_is_listed(host: str, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        pattern = entry.strip().lower()
        if pattern.startswith("*."):
            suffix = pattern[1:]
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif pattern and host == pattern:
            return True
    return False


def _normalised_service_url(value: object) -> tuple[str, str, int | None, str] | None:
    """Scheme, host, port and path with the trailing slash dropped: how the `serviceurl` claim and the activity's
    serviceUrl are compared (Bot Framework compares them exactly; we forgive host case and a trailing slash)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = URL(value)
    except (ValueError, TypeError):
        return None
    if not parsed.is_absolute() or not parsed.raw_host:
        return None
    return (parsed.scheme.lower(), parsed.raw_host.lower(), parsed.port, parsed.raw_path.rstrip("/"))


# Inbound


@dataclass(frozen=True, slots=True)
class _Route:
    keys: KeySet
    issuers: tuple[str, ...]
    channel_issued: bool


class InboundAuthenticator:
    """Decides whether a POST to /api/messages really comes from Microsoft, for this bot, about this activity.

    What the Agents SDK 1.9.0 checks and we check on top (reference/agents_sdk.md §2.6, apis.md §5.1):
    - signature (RS256 only) with keys from the issuer's OpenID metadata, `exp`/`nbf` with 5 min skew, and
      `aud` equal to our app id;
    - the issuer: Bot Framework's `channel_issuer`, or the configured tenant's own Entra issuers (the SDK accepts
      any issuer unless VALIDATE_ISSUER is set) and then only from an app in `allowed_callers` (`azp`/`appid`):
      any app registered in the tenant can get a token for our app id, so issuer and `tid` prove nothing about
      the caller;
    - for Bot Framework tokens, the signing key's endorsements must include the activity's `channelId` and the
      token's `serviceurl` claim must be present; whenever that claim is present it must match the activity's
      serviceUrl (the SDK compares hosts only, and only with its host validator on);
    - a single-tenant bot serves its own tenant only: the activity's tenant (`conversation.tenantId`,
      `channelData.tenant.id`) must be `tenant_id`, and so must the token's `tid` when it has one (Bot Framework
      tokens carry none: microsoft_agents/hosting/core/authorization/_entra_issuers.py). Bot Framework does not sign
      the body, and bot/identity.py picks the Slotwise tenant from these fields, so an unchecked tenant would let a
      valid token read another customer's data (403). Two different tenant ids in one activity are refused always;
    - the activity's serviceUrl must pass `check_service_url` (403), in anonymous mode too.

    Key-fetch outages answer 503, not 401: Teams retries 5xx, and the sender is not known to be wrong.
    Create one instance per application: it caches keys and logs the anonymous-mode warning once."""

    def __init__(
        self,
        settings: BotAuthSettings,
        session: aiohttp.ClientSession,
        *,
        key_max_age: float = 24 * 3600,
        refetch_interval: float = 60.0,
        retry_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        require_fetchable(settings.openid_metadata_url, "openid_metadata_url")

        def key_set(url: str, label: str) -> KeySet:
            return KeySet(
                url,
                session,
                label=label,
                max_age=key_max_age,
                refetch_interval=refetch_interval,
                retry_interval=retry_interval,
                clock=clock,
            )

        self._channel = _Route(
            key_set(settings.openid_metadata_url, "Bot Framework"), (settings.channel_issuer,), channel_issued=True
        )
        self._tenant: _Route | None = None
        if settings.tenant_id:
            # Entra writes tenant GUIDs in lower case; the configured value may not be.
            tid = settings.tenant_id.lower()
            url = settings.tenant_openid_metadata_url or ENTRA_METADATA_TEMPLATE.format(tenant_id=tid)
            require_fetchable(url, "tenant_openid_metadata_url")
            issuers = (f"https://login.microsoftonline.com/{tid}/v2.0", f"https://sts.windows.net/{tid}/")
            self._tenant = _Route(key_set(url, "Entra tenant"), issuers, channel_issued=False)
        self._allowed_callers = frozenset(
            caller.strip().lower() for caller in settings.allowed_callers if caller and caller.strip()
        )
        if self._allowed_callers and not settings.tenant_id:
            logger.warning(
                "Bot allowed callers are set but no bot tenant id is: Entra tokens are only accepted by a "
                "single-tenant bot, so the allowed callers are ignored"
            )
        if settings.allow_anonymous:
            logger.warning(
                "Bot authentication is in ANONYMOUS mode: requests without an Authorization header are accepted "
                "unauthenticated and replies are sent without a token. Use this for local development only.%s",
                " An app id is configured as well, which looks like a real deployment: turn allow_anonymous off."
                if settings.app_id
                else "",
            )
        elif not settings.app_id:
            logger.error("Bot authentication is not configured (no app id): every bot request will be refused")

    async def authenticate(self, authorization: str | None, activity: Mapping[str, Any]) -> ClaimsIdentity:
        """The caller's identity for the SDK adapter, or `BotAuthError`. `activity` is the request's JSON body
        (wire names: `channelId`, `serviceUrl`)."""
        try:
            return await self._authenticate(authorization, activity if isinstance(activity, Mapping) else {})
        except BotAuthError as exc:
            log = logger.warning if exc.status >= 500 else logger.info
            log("Bot request refused with %d: %s", exc.status, exc.message)
            raise

    async def _authenticate(self, authorization: str | None, activity: Mapping[str, Any]) -> ClaimsIdentity:
        settings = self._settings
        service_url = activity.get("serviceUrl")
        if authorization is None or not authorization.strip():
            if settings.allow_anonymous:
                if service_url is not None:
                    check_service_url(service_url, settings)
                # What the SDK's own validator returns: no claims, so `allow_anonymous` is true and the adapter
                # replies through its AnonymousTokenProvider (no Authorization header on outbound calls).
                return ClaimsIdentity({}, authentication_type="Anonymous")
            if not settings.app_id:
                raise BotAuthError("bot authentication is not configured")
            raise BotAuthError("the request has no Authorization header")
        if not settings.app_id:
            raise BotAuthError(
                "a token was sent, but no bot app id is configured to check it against"
                if settings.allow_anonymous
                else "bot authentication is not configured"
            )
        try:
            token = bearer_token(authorization)
        except TokenRejected as exc:
            raise BotAuthError(exc.message) from None
        claims = await self._verified_claims(token, settings.app_id, activity)
        _check_activity_tenant(activity, claims, settings.tenant_id)
        if service_url is not None:
            check_service_url(service_url, settings)
        return ClaimsIdentity(claims, authentication_type="Bearer", security_token=token)

    async def _verified_claims(self, token: str, app_id: str, activity: Mapping[str, Any]) -> dict[str, Any]:
        try:
            parsed = parse_token(token)
        except TokenRejected as exc:
            raise BotAuthError(exc.message) from None
        route = self._route_for(parsed.claims.get("iss"))
        try:
            claims, signing_key = await verify_token(parsed, route.keys, issuers=route.issuers)
            check_audience(claims, (app_id,))
        except KeysUnavailable as exc:
            logger.warning("Cannot load signing keys: %s", exc)
            raise BotAuthError(
                "cannot verify the sender right now: the signing keys are unavailable", status=503
            ) from None
        except TokenRejected as exc:
            raise BotAuthError(_BOT_WORDING.get(exc.reason, exc.message)) from None
        if not route.channel_issued:
            tid = claims.get("tid")
            tenant = (self._settings.tenant_id or "").lower()
            if tid is not None and (not isinstance(tid, str) or tid.lower() != tenant):
                raise BotAuthError("the token's tenant is not this bot's tenant")
            caller = claims.get("azp", claims.get("appid"))
            if not isinstance(caller, str) or caller.lower() not in self._allowed_callers:
                raise BotAuthError("the token's calling app is not one of the bot's allowed callers")
        channel_id = activity.get("channelId")
        if route.channel_issued and (not isinstance(channel_id, str) or channel_id not in signing_key.endorsements):
            # Bot Framework signs each channel's traffic with keys endorsed for it (jwt_token_extractor.py l.88):
            # a key that signs for one channel must not vouch for an activity claiming to be from another.
            raise BotAuthError("the signing key is not endorsed for the activity's channel")
        claimed_service_url = claims.get("serviceurl")
        if claimed_service_url is None:
            if route.channel_issued:
                raise BotAuthError("the channel token has no serviceurl claim")
        else:
            expected = _normalised_service_url(claimed_service_url)
            if expected is None or expected != _normalised_service_url(activity.get("serviceUrl")):
                raise BotAuthError("the token's serviceurl claim does not match the activity's serviceUrl")
        return claims

    def _route_for(self, iss: object) -> _Route:
        if isinstance(iss, str):
            if iss == self._channel.issuers[0]:
                return self._channel
            if self._tenant is not None and iss in self._tenant.issuers:
                if not self._allowed_callers:
                    # Refused before any key is fetched: without allowed callers no Entra token can pass.
                    raise BotAuthError("Entra tokens are accepted from allowed callers only, and none are configured")
                return self._tenant
        raise BotAuthError("the token was issued by an issuer this bot does not trust")


_BOT_WORDING: Final = {
    "wrong_issuer": "the token was issued by an issuer this bot does not trust",
    "wrong_audience": "the token is for a different audience than this bot",
}
"""Where the bot words a shared check's failure in its own terms (operators read these in the bot's logs)."""


def _activity_tenants(activity: Mapping[str, Any]) -> set[str]:
    """The Microsoft 365 tenant ids an activity names, lower-cased (Entra writes GUIDs in lower case)."""
    conversation = activity.get("conversation")
    channel_data = activity.get("channelData")
    tenant = channel_data.get("tenant") if isinstance(channel_data, Mapping) else None
    named = (
        conversation.get("tenantId") if isinstance(conversation, Mapping) else None,
        tenant.get("id") if isinstance(tenant, Mapping) else None,
    )
    return {value.strip().lower() for value in named if isinstance(value, str) and value.strip()}


def _check_activity_tenant(activity: Mapping[str, Any], claims: Mapping[str, Any], tenant_id: str | None) -> None:
    """Raise `BotAuthError(status=403)` when the activity's tenant is not one this token may speak for."""
    named = _activity_tenants(activity)
    if len(named) > 1:
        raise BotAuthError("the activity names two different tenants", status=403)
    if not tenant_id:
        # Multi-tenant bot: Bot Framework vouches for the serviceUrl, and Teams for the tenant it routes from.
        return
    bot_tenant = tenant_id.strip().lower()
    tid = claims.get("tid")
    if tid is not None and (not isinstance(tid, str) or tid.strip().lower() != bot_tenant):
        raise BotAuthError("the token's tenant is not this bot's tenant", status=403)
    if named != {bot_tenant}:
        raise BotAuthError(
            "the activity's tenant is not this bot's tenant" if named else "the activity names no tenant",
            status=403,
        )


# Outbound


def _requests_session_trusting(ca_file: str) -> requests.Session:
    """A requests session for msal that trusts `ca_file` only. requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
    silently override `Session.verify` (psf/requests#3829), so the environment is ignored here."""
    session = requests.Session()
    session.verify = ca_file
    session.trust_env = False
    return session


_AUTH_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_tenant", "invalid_scope", "invalid_grant", "invalid_request"}
)
"""OAuth2/Entra token errors that mean our configuration or credentials are wrong (RFC 6749 §5.2)."""


def _connector_scopes(scopes: list[str]) -> list[str]:
    """The SDK derives the scope from the inbound token: the Bot Framework scope for channel traffic, or
    `{azp}/.default` for what it calls agent claims. We only ever call the Bot Connector, and a scope picked from a
    token's `azp` must not steer what we mint, so those are answered with the Bot Framework scope. A scope for
    another URL resource (e.g. Graph) is refused: Graph goes through integrations/graph."""
    for scope in scopes:
        if scope != BOT_FRAMEWORK_SCOPE and "://" in scope and not scope.startswith("api://"):
            raise IntegrationRejected(
                f"The bot's connection issues Bot Connector tokens only, not tokens for {scope.split('/.default')[0]}"
            )
    if any(scope != BOT_FRAMEWORK_SCOPE for scope in scopes):
        logger.debug("Requesting the Bot Framework scope in place of an agent-derived scope")
    return [BOT_FRAMEWORK_SCOPE]


class _ConnectorTokenCredential(AsyncTokenCredential):
    """The azure-core credential view of the token provider (the Teams extension asks for one)."""

    def __init__(self, provider: _ConnectorTokenProvider) -> None:
        self._provider = provider

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        token, expires_on = await self._provider.acquire(list(scopes), force_refresh=False)
        return AccessToken(token, expires_on)

    async def close(self) -> None:
        return None

    async def __aexit__(self, *args: object) -> None:
        return None


class _ConnectorTokenProvider(AccessTokenProviderBase):
    """Client-credentials tokens for the Bot Connector from msal, which caches and renews them itself.

    msal is synchronous, so it runs in a worker thread. The application object is built on first use because
    building it already calls the network (OpenID discovery of the authority)."""

    def __init__(self, settings: BotAuthSettings, configuration: AgentAuthConfiguration, authority: str) -> None:
        self._settings = settings
        self._configuration = configuration
        self._authority = authority
        self._app: Any = None
        self._build_lock = asyncio.Lock()

    @property
    def configuration(self) -> AgentAuthConfiguration:
        return self._configuration

    async def get_access_token(self, resource_url: str, scopes: list[str], force_refresh: bool = False) -> str:
        token, _ = await self.acquire(scopes, force_refresh=force_refresh)
        return token

    def get_token_credential(self) -> AsyncTokenCredential:
        return _ConnectorTokenCredential(self)

    # The bot signs nobody in and is not an "agentic" identity: these flows are refused outright.

    async def acquire_token_on_behalf_of(self, scopes: list[str], user_assertion: str) -> str:
        raise IntegrationRejected("The bot's connection does not support the on-behalf-of flow")

    async def get_agentic_application_token(self, tenant_id: str, agent_app_instance_id: str) -> str | None:
        raise IntegrationRejected("The bot's connection does not support agentic identities")

    async def get_agentic_instance_token(self, tenant_id: str, agent_app_instance_id: str) -> tuple[str, str]:
        raise IntegrationRejected("The bot's connection does not support agentic identities")

    async def get_agentic_user_token(
        self, tenant_id: str, agent_app_instance_id: str, agentic_user_id: str, scopes: list[str]
    ) -> str | None:
        raise IntegrationRejected("The bot's connection does not support agentic identities")

    async def acquire(self, scopes: list[str], *, force_refresh: bool) -> tuple[str, int]:
        """(access token, expiry as Unix time). Raises IntegrationAuthError for bad credentials and
        IntegrationUnavailable when Entra cannot be reached."""
        wanted = _connector_scopes(scopes)
        app = await self._application()
        try:
            if force_refresh:
                await asyncio.to_thread(app.remove_tokens_for_client)
            result = await asyncio.to_thread(app.acquire_token_for_client, scopes=wanted)
        except (requests.RequestException, OSError, ValueError) as exc:
            # ValueError: a token endpoint that answered something other than JSON (a gateway error page).
            raise IntegrationUnavailable(
                f"Could not get a Bot Connector token from Entra ID: {type(exc).__name__}"
            ) from exc
        if isinstance(result, dict) and isinstance(result.get("access_token"), str):
            try:
                lifetime = int(result.get("expires_in", 0))
            except (TypeError, ValueError):
                lifetime = 0
            # Without a usable lifetime, claim five minutes: callers that cache the credential then ask again soon.
            return str(result["access_token"]), int(time.time()) + (lifetime if lifetime > 0 else 300)
        error = str(result.get("error", "unknown")) if isinstance(result, dict) else "unknown"
        description = str(result.get("error_description", "")) if isinstance(result, dict) else ""
        message = f"{error}: {description.splitlines()[0] if description else 'no description'}"[:500]
        if error in _AUTH_ERRORS:
            raise IntegrationAuthError(f"Entra ID refused the bot's client credentials ({message})")
        raise IntegrationUnavailable(f"Entra ID did not issue a Bot Connector token ({message})")

    async def _application(self) -> Any:
        async with self._build_lock:
            if self._app is None:
                self._app = await asyncio.to_thread(self._build_application)
            return self._app

    def _build_application(self) -> Any:
        settings = self._settings
        if not settings.app_password:
            raise IntegrationAuthError("The bot has an app id but no client secret (app password) configured")
        ca_file = settings.authority_ca_file
        try:
            return msal.ConfidentialClientApplication(
                settings.app_id,
                client_credential=settings.app_password,
                authority=self._authority,
                # Instance discovery asks login.microsoftonline.com whether the authority host is a known cloud; it
                # fails offline and for test fakes. OpenID discovery of the authority still validates the tenant.
                instance_discovery=False,
                http_client=_requests_session_trusting(ca_file) if ca_file else None,
                timeout=10,
            )
        except ValueError as exc:
            # OpenID discovery answered 4xx: the tenant does not exist (or the authority is not Entra).
            raise IntegrationAuthError(f"Entra ID does not know the authority {self._authority}: {exc}") from exc
        except (requests.RequestException, RuntimeError, OSError) as exc:
            raise IntegrationUnavailable(
                f"Could not reach Entra ID at {self._authority}: {type(exc).__name__}"
            ) from exc


class MsalConnections(Connections):
    """The SDK's `Connections` for this bot: one connection (SERVICE_CONNECTION) whose tokens are for the Bot
    Connector. Anonymous identities get the SDK's empty-token provider. A token provider is only handed out for a
    serviceUrl that passes `check_service_url`, so proactive sends to a stored reference are held to the same
    allow-list as replies."""

    def __init__(self, settings: BotAuthSettings) -> None:
        self._settings = settings
        authority = settings.token_authority
        if settings.tenant_id and authority.rstrip("/") == MULTI_TENANT_AUTHORITY:
            authority = f"https://login.microsoftonline.com/{settings.tenant_id}"
        self._configuration = AgentAuthConfiguration(
            client_id=settings.app_id,
            tenant_id=settings.tenant_id,
            authority=authority,
            connection_name="SERVICE_CONNECTION",
            anonymous_allowed=settings.allow_anonymous,
            validate_issuer=True,
            scopes=[BOT_FRAMEWORK_SCOPE],
        )
        self._anonymous = AnonymousTokenProvider()
        self._provider: _ConnectorTokenProvider | None = (
            _ConnectorTokenProvider(settings, self._configuration, authority) if settings.app_id else None
        )

    def get_connection(self, connection_name: str | None) -> AccessTokenProviderBase:
        if connection_name not in (None, "", "SERVICE_CONNECTION"):
            raise ValueError(f"No connection named {connection_name!r}: the bot has only SERVICE_CONNECTION")
        return self.get_default_connection()

    def get_default_connection(self) -> AccessTokenProviderBase:
        if self._provider is None:
            # No app configured: only anonymous local development can get this far.
            return self._anonymous
        return self._provider

    def get_token_provider(self, claims_identity: ClaimsIdentity, service_url: str) -> AccessTokenProviderBase:
        if claims_identity.allow_anonymous:
            return self._anonymous
        # The adapter also asks for a provider for Bot Framework's user-token service on every turn (it builds a
        # UserTokenClient up front); that fixed Microsoft endpoint is not a serviceUrl from an activity.
        if service_url.rstrip("/") != BOT_FRAMEWORK_OAUTH_URL:
            check_service_url(service_url, self._settings)
        if self._provider is None:
            raise IntegrationAuthError("The bot has no app id configured, so it cannot authenticate outbound calls")
        return self._provider

    def get_token_provider_from_activity(
        self, claims_identity: ClaimsIdentity, activity: Activity
    ) -> AccessTokenProviderBase:
        return self.get_token_provider(claims_identity, activity.service_url or "")

    def get_default_connection_configuration(self) -> AgentAuthConfiguration:
        return self._configuration
