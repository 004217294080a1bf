"""The `post_webhook` step: a booking event POSTed as JSON, signed per Standard Webhooks, to a vetted public address.

Signing follows the Standard Webhooks specification (https://www.standardwebhooks.com, v1.0.0): headers `webhook-id`
(the same on every retry of one delivery, so receivers can drop duplicates), `webhook-timestamp` (integer seconds, new
on each attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the bytes
of a `whsec_<base64>` secret.

The receiver's address is the tenant admin's to choose, so it is an SSRF risk: a URL naming (or resolving to) a
loopback, private, link-local (cloud metadata at 169.254.169.254), unique-local, multicast, unspecified or otherwise
non-global address is refused before any connection is opened. The host name is resolved once, here, and the
connection goes to exactly the addresses that were vetted (the connector's resolver only hands out pinned
results), so a DNS answer that changes between the check and the connect (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from integrations.retry_after import parse_retry_after
from scheduling.errors import IntegrationRejected, IntegrationUnavailable

if TYPE_CHECKING:
    from workflows.steps import StepContext

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
# The specification asks for secrets of 24 to 64 random bytes.
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
USER_AGENT = "Slotwise-Webhooks/1"


class WebhookSecretInvalid(ValueError):
    """The value is not a Standard Webhooks secret (`whsec_` + base64 of 24 to 64 bytes)."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret. Raises WebhookSecretInvalid (without echoing the value)."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretInvalid(f"a webhook secret starts with '{SECRET_PREFIX}'")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretInvalid(f"a webhook secret is '{SECRET_PREFIX}' followed by base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise WebhookSecretInvalid(
            f"a webhook secret holds {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} random bytes (this one has {len(key)})"
        )
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    signed = message_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def refusal_reason(address: str) -> str | None:
    """Why a webhook may not connect to this IP address, or None when it is a public (globally routable) one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1 and 64:ff9b::/96-style embeddings reach the IPv4 address inside.
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return refusal_reason(str(mapped))
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL, "unique-local"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not publicly routable"),
    )
    return next((reason for refused, reason in checks if refused), None)


_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


# The addresses vetted for the request in flight, by (host, port); read by the connector's resolver. A context
# variable, because aiohttp resolves inside the task that sends the request.
_PINNED: contextvars.ContextVar[Mapping[tuple[str, int], tuple[ResolveResult, ...]] | None] = contextvars.ContextVar(
    "slotwise_webhook_pinned_addresses", default=None
)


class _PinnedResolver(AbstractResolver):
    """Hands the connector only addresses this module vetted for the current request; anything else fails."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pinned = (_PINNED.get() or {}).get((host, port))
        if not pinned:
            raise OSError(f"{host}:{port} was not vetted for this webhook delivery")
        return list(pinned)

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class WebhookTarget:
    """A vetted destination: the URL, and the addresses it may be reached at."""

    url: URL
    host: str
    port: int
    addresses: tuple[str, ...]


class WebhookPoster:
    """Delivers signed webhooks for every tenant of a deployment, over one connection pool.

    `resolver` is injectable so tests never resolve names through real DNS (and never reach a non-loopback
    address); `allow_private` (SLOTWISE_WEBHOOKS_ALLOW_PRIVATE, development only) lets loopback and private
    receivers through; `tls` is the TLS verification (a test CA in tests, the system's trust store otherwise);
    `trace_configs` observe connections (tests assert that a refused address is never connected to).
    """

    def __init__(
        self,
        *,
        resolver: AbstractResolver | None = None,
        allow_private: bool = False,
        tls: ssl.SSLContext | bool = True,
        timeout_seconds: float = 10.0,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
    ) -> None:
        self._resolver = resolver
        self._allow_private = allow_private
        self._tls = tls
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._trace_configs = list(trace_configs)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=_PinnedResolver(), use_dns_cache=False, ssl=self._tls)
            # No proxies from the environment, no cookies carried between tenants' receivers.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                trace_configs=self._trace_configs,
            )
        return self._session

    async def vet(self, url: str) -> WebhookTarget:
        """Check the URL and resolve its host; raises IntegrationRejected naming why it may not be called."""
        try:
            parsed = URL(url)
        except (TypeError, ValueError):
            raise IntegrationRejected(f"The webhook URL {url!r} is not a valid URL") from None
        if parsed.scheme != "https":
            raise IntegrationRejected(f"Webhooks are sent over https only; {url!r} is not an https:// URL")
        host = parsed.raw_host
        port = parsed.port
        if not host or port is None:
            raise IntegrationRejected(f"The webhook URL {url!r} has no host")
        if parsed.raw_user or parsed.raw_password:
            raise IntegrationRejected(
                "A webhook URL may not carry a user name or password; the signature authenticates"
            )
        if _is_ip_literal(host):
            addresses: tuple[str, ...] = (host,)
        else:
            try:
                resolver = self._resolver or self._default_resolver()
                results = await resolver.resolve(host, port, family=socket.AF_UNSPEC)
            except OSError as exc:
                raise IntegrationUnavailable(f"The webhook host {host} could not be resolved: {exc}") from None
            addresses = tuple(dict.fromkeys(result["host"] for result in results))
            if not addresses:
                raise IntegrationUnavailable(f"The webhook host {host} has no addresses")
        if not self._allow_private:
            for address in addresses:
                reason = refusal_reason(address)
                if reason is not None:
                    via = "" if address == host else f" (it resolves to {address})"
                    raise IntegrationRejected(
                        f"The webhook URL's host {host} is a {reason} address{via}; webhooks go to public addresses "
                        "only (SLOTWISE_WEBHOOKS_ALLOW_PRIVATE=true allows others, for local development)"
                    )
        return WebhookTarget(parsed, host, port, addresses)

    def _default_resolver(self) -> AbstractResolver:
        self._resolver = aiohttp.ThreadedResolver()
        return self._resolver

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST once to a vetted address. Returns the 2xx status; raises IntegrationUnavailable for 429, 5xx,
        timeouts and connection failures (worth retrying, honouring Retry-After), IntegrationRejected otherwise."""
        target = await self.vet(url)
        pinned = tuple(
            ResolveResult(
                hostname=target.host,
                host=address,
                port=target.port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in target.addresses
        )
        token = _PINNED.set({(target.host, target.port): pinned})
        where = target.host
        try:
            async with self._session_now().post(
                target.url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
                reason = response.reason or ""
        except TimeoutError:
            raise IntegrationUnavailable(f"The webhook receiver at {where} did not answer in time") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            problem = exc.certificate_error
            raise IntegrationRejected(
                f"The webhook receiver at {where} has a TLS certificate that is not valid for it: {problem}"
            ) from None
        except aiohttp.ClientError as exc:
            raise IntegrationUnavailable(f"The webhook receiver at {where} could not be reached: {exc}") from None
        finally:
            _PINNED.reset(token)
        if 200 <= status < 300:
            return status
        answered = f"The webhook receiver at {where} answered {status} {reason}".rstrip()
        if status == 429 or status >= 500:
            raise IntegrationUnavailable(answered, retry_after_seconds=retry_after)
        raise IntegrationRejected(f"{answered}; the event was not delivered and will not be retried")


@dataclass(frozen=True)
class WebhookSender:
    """One tenant's webhook delivery: the deployment's poster and the tenant's decrypted secrets, by the name of
    the environment variable they were read from at apply (the action's `secret_from_env`)."""

    poster: WebhookPoster
    secrets: Mapping[str, str]

    def secret(self, variable: str) -> str:
        value = self.secrets.get(variable)
        if not value:
            raise IntegrationRejected(
                f"No webhook secret is stored for {variable}; set it in the environment and run `slotwise apply`"
            )
        return value


def message_id(idempotency_key: str) -> str:
    """The `webhook-id`: stable for one delivery (every retry of the step), different for every other one."""
    return "msg_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


# The manage link lets whoever holds it move or cancel the booking; a receiver gets the booking, not that power.
_PRIVATE_SNAPSHOT_KEYS = frozenset({"manage_url", "book_url", "host_url"})
"""Client links are bearer tokens: they go to the client, not to another system."""


def build_event(
    trigger: str, booking: Mapping[str, Any], outputs: Mapping[str, Any], occurred_at: datetime
) -> dict[str, Any]:
    """The JSON event (Standard Webhooks' suggested shape: type, timestamp, data). A scheduling request's triggers
    send `scheduling_request.<trigger>` with the request under `request`."""
    subject = "scheduling_request" if booking.get("kind") == "request" else "booking"
    return {
        "type": f"{subject}.{trigger}",
        "timestamp": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "trigger": trigger,
            "request" if subject == "scheduling_request" else "booking": {
                key: value for key, value in booking.items() if key not in _PRIVATE_SNAPSHOT_KEYS
            },
            "outputs": dict(outputs),
        },
    }


async def post_webhook(ctx: StepContext) -> Mapping[str, Any]:
    """The step: sign the event with the tenant's secret and POST it; the receiver's 2xx completes it."""
    sender = ctx.integrations.webhooks
    if sender is None:
        raise IntegrationRejected("Webhooks are not set up in this Slotwise process, so the event was not sent")
    url = str(ctx.action.get("url") or "")
    variable = str(ctx.action.get("secret_from_env") or "")
    if not variable:
        raise IntegrationRejected("This webhook has no 'secret_from_env' in the tenant file, so it cannot be signed")
    secret = sender.secret(variable)
    run_key = ctx.job.run_key
    trigger = run_key.split(":")[1] if run_key.count(":") >= 2 else ""
    event = build_event(trigger, ctx.booking, ctx.outputs, ctx.job.created_at)
    body = json.dumps(event, separators=(",", ":"), sort_keys=True, default=str).encode()
    identifier = message_id(ctx.job.idempotency_key)
    timestamp = int(datetime.now(UTC).timestamp())
    status = await sender.poster.post(url, body, signed_headers(secret, identifier, timestamp, body))
    return {"webhook_id": identifier, "webhook_status": status}
