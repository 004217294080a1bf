"""Thin async Autotask REST client: zone discovery, auth headers, a thread limit per endpoint, and error translation."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from integrations.autotask.config import AutotaskConfig
from integrations.autotask.wire import Filter, to_wire_query
from integrations.rate_windows import InMemoryVendorLimits, SlidingWindows, Windows, vendor_slot
from integrations.retry_after import parse_retry_after
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable
from scheduling.ports import VendorLimits

logger = logging.getLogger(__name__)

# Autotask answers some permission failures with HTTP 500 instead of 403 (django-autotask api.py l.~560, apis.md §2.2).
_FORBIDDEN_TEXT = "does not have the adequate permissions"
# Deleting a record that is already gone answers 500 with this text (django-autotask api.py NO_RECORD_ERROR_MESSAGE).
NO_RECORD_TEXT = "No matching records found"


def error_messages(text: str) -> list[str]:
    """The `errors` list of an Autotask error body ({"errors": ["..."]}, apis.md §2.2); [] for any other body."""
    parsed = _json_or_none(text)
    if isinstance(parsed, dict) and isinstance(parsed.get("errors"), list):
        return [str(message) for message in parsed["errors"]]
    return []


def framework_message(text: str) -> str:
    """The `Message` of the web framework's own refusals, e.g. 405 {"Message": "The requested resource does not
    support http method 'GET'."} on a root URL without that method (Anteris-Dev/autotask-client#12); else ""."""
    parsed = _json_or_none(text)
    return str(parsed["Message"]) if isinstance(parsed, dict) and isinstance(parsed.get("Message"), str) else ""


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


_HOURLY_BUDGETS: dict[tuple[str, Windows], SlidingWindows] = {}
"""Without injected limits: requests in the rolling hour per Autotask database, shared by every client object of this
process (adapters are rebuilt when a connection changes, the quota is not)."""
SLOT_LEASE_MARGIN_SECONDS = 5.0
"""A concurrency slot's lease outlasts the request's own timeout by this much (the lease only matters if we die)."""
ZONE_REFRESH_SECONDS = 60.0
"""After a 401, the zone is looked up again only if the last look-up is at least this old."""


class AutotaskClient:
    """One Autotask API user on an injected `aiohttp.ClientSession`.

    The zone (which webservicesN host holds the database) is looked up once and cached. Every call to an object
    endpoint holds that endpoint's semaphore, so we never run more than 3 requests at once against it (the
    ThreadLimiting rule in apis.md §2.4); the fourth waits here instead of being refused by Autotask.

    Both limits belong to the Autotask database, not to this process: with injected database-backed `limits` every
    app process and worker on one Slotwise database counts against the same slots and the same hourly budget.
    """

    def __init__(
        self, config: AutotaskConfig, session: aiohttp.ClientSession, limits: VendorLimits | None = None
    ) -> None:
        self._config = config
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self._api_base: str | None = None
        self._web_url = ""
        self._zone_lock = asyncio.Lock()
        self._zone_discovered_at = float("-inf")
        self._limits: VendorLimits = limits or InMemoryVendorLimits(_HOURLY_BUDGETS)
        self.database_key = f"{config.zone_lookup_url.rstrip('/').lower()}|{config.username.lower()}"
        """Names this Autotask database (zone lookup + API user) in every limit key."""
        self._slot_lease = config.timeout_seconds + SLOT_LEASE_MARGIN_SECONDS

    async def api_base(self, *, refresh: bool = False) -> str:
        """`https://webservicesN.autotask.net/ATServicesRest/V1.0/` for this user's database, discovered once.

        `refresh` (after a 401) asks again, unless the zone was discovered within ZONE_REFRESH_SECONDS: while
        credentials are revoked every call answers 401, and a look-up per call, one at a time under the lock, would
        slow every step of the tenant down to the zone server's pace."""
        async with self._zone_lock:
            now = time.monotonic()
            stale = refresh and now - self._zone_discovered_at >= ZONE_REFRESH_SECONDS
            if self._api_base is None or stale:
                self._api_base = await self._discover_zone()
                self._zone_discovered_at = now
            return self._api_base

    async def web_url(self) -> str:
        """The Autotask web app's root for this database ("" when the zone look-up named none)."""
        await self.api_base()
        return self._web_url

    async def _discover_zone(self) -> str:
        # No credentials on this call: zoneInformation is public and exempt from thread limits (apis.md §2.1).
        url = self._config.zone_lookup_url.rstrip("/") + "/v1.0/zoneInformation"
        try:
            async with self._session.get(
                url, params={"user": self._config.username}, timeout=self._timeout
            ) as response:
                status, text = response.status, await response.text()
                retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise IntegrationUnavailable(f"Could not reach Autotask zone discovery: {type(exc).__name__}") from exc
        if status == 200:
            try:
                found = json.loads(text)
                zone_url = str(found["url"])
            except (ValueError, KeyError, TypeError) as exc:
                raise IntegrationUnavailable("Autotask zone discovery answered without a zone URL") from exc
            # The web app's host for this database (e.g. https://ww5.autotask.net/): "WebUrl … the proper URL for
            # the Autotask application UI" (Autotask getZoneInfo); ticket links are built on it.
            web_url = found.get("webUrl") if isinstance(found, dict) else None
            self._web_url = web_url if isinstance(web_url, str) and web_url.startswith(("https://", "http://")) else ""
            # Keep the casing Autotask returns for the host part; the version segment is `V1.0` (apis.md §2.1).
            return zone_url.rstrip("/") + "/V1.0/"
        messages = error_messages(text)
        if status == 500 and messages:
            # "AT returns 500 if username is blank or incorrect" (django-autotask api.py get_zone_info, apis.md §2.1).
            raise IntegrationAuthError(f"Autotask does not know this API user: {'; '.join(messages)}")
        raise self._translate(status, text, retry_after)

    def _headers(self) -> dict[str, str]:
        config = self._config
        return {
            "ApiIntegrationCode": config.integration_code.get_secret_value(),
            "UserName": config.username,
            "Secret": config.secret.get_secret_value(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    async def call(self, method: str, path: str, *, entity: str, body: Any = None) -> Any:
        """One request to `path` (relative to the API base, or an absolute next-page URL on the same zone).

        `entity` names the object endpoint whose thread limit the request counts against (for a child URL such as
        `Tickets/5/Notes` that is the child entity, `TicketNotes`).
        """
        base = await self.api_base()
        status, text, retry_after = await self._send(method, base, path, entity, body)
        if status == 429 and retry_after is not None and retry_after <= self._config.inline_retry_after_seconds:
            # A short Retry-After (the thread limit, when another process shares our tracking identifier) is cheaper
            # to wait out once than to hand back to the job runner; a 429 means nothing was processed, so a create
            # may be re-sent. Longer waits (the hourly quota) go up as IntegrationUnavailable(retry_after_seconds).
            await asyncio.sleep(retry_after)
            status, text, retry_after = await self._send(method, base, path, entity, body)
        if status == 401:
            # Databases move between zones; a 401 may mean a stale zone (django-autotask api.py fetch_resource).
            fresh = await self.api_base(refresh=True)
            if fresh != base:
                status, text, retry_after = await self._send(method, fresh, path, entity, body)
        if 200 <= status < 300:
            if not text.strip():
                return None
            try:
                return json.loads(text)
            except ValueError as exc:
                raise IntegrationUnavailable(f"Autotask answered {method} {entity} with a garbled body") from exc
        raise self._translate(status, text, retry_after)

    async def _send(self, method: str, base: str, path: str, entity: str, body: Any) -> tuple[int, str, float | None]:
        if path.startswith(("http://", "https://")):
            # Only ever send the secret to the zone we discovered, even if a next-page URL says otherwise.
            if not path.lower().startswith(base.lower()):
                raise IntegrationRejected("Autotask returned a next-page URL outside its zone")
            url = path
        else:
            url = base + path
        per_hour = self._config.requests_per_hour
        if per_hour is not None:
            wait = await self._limits.reserve(f"autotask-hour:{self.database_key}", ((3600.0, per_hour),))
            if wait > 0:
                # Going over the hourly quota gets the whole database's API access refused; wait our turn instead.
                raise IntegrationUnavailable(
                    "Holding back: this Autotask database's hourly request quota is spent", retry_after_seconds=wait
                )
        async with vendor_slot(
            self._limits,
            f"autotask:{self.database_key}|{entity}",
            self._config.max_concurrent_per_endpoint,
            self._slot_lease,
        ):
            try:
                async with self._session.request(
                    method, url, json=body, headers=self._headers(), timeout=self._timeout
                ) as response:
                    text = await response.text()
                    logger.debug("Autotask %s %s -> %s", method, response.url.path, response.status)
                    return (
                        response.status,
                        text,
                        parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC)),
                    )
            except (TimeoutError, aiohttp.ClientError) as exc:
                # Covers timeouts, refused connections and a response dropped mid-way (ServerDisconnectedError).
                raise IntegrationUnavailable(f"Autotask {method} {entity} failed: {type(exc).__name__}") from exc

    @staticmethod
    def _translate(status: int, text: str, retry_after: float | None) -> Exception:
        messages = error_messages(text)
        message = "; ".join(messages) or framework_message(text) or f"HTTP {status}"
        if status in (401, 403) or _FORBIDDEN_TEXT in message:
            return IntegrationAuthError(f"Autotask refused our credentials: {message}")
        if status == 429:
            return IntegrationUnavailable(f"Autotask is throttling us: {message}", retry_after_seconds=retry_after)
        if status == 500 and messages:
            # Autotask reports validation and business-rule failures as 500 + {"errors": [...]} (apis.md §2.2).
            return IntegrationRejected(f"Autotask refused the request: {message}")
        if status >= 500:
            return IntegrationUnavailable(f"Autotask is unavailable: {message}", retry_after_seconds=retry_after)
        return IntegrationRejected(f"Autotask refused the request: {message}")

    async def query(self, entity: str, filters: Sequence[Filter]) -> list[dict[str, Any]]:
        """Every match of `POST {Entity}/query`, following `pageDetails.nextPageUrl` (apis.md §2.2)."""
        page = await self.call(
            "POST", f"{entity}/query", entity=entity, body=to_wire_query(filters, max_records=self._config.page_size)
        )
        items: list[dict[str, Any]] = list(page.get("items") or [])
        seen: set[str] = set()
        next_url = (page.get("pageDetails") or {}).get("nextPageUrl")
        while next_url and next_url not in seen:
            seen.add(next_url)
            page = await self.call("GET", str(next_url), entity=entity)
            items.extend(page.get("items") or [])
            next_url = (page.get("pageDetails") or {}).get("nextPageUrl")
        return items

    async def query_page(
        self, entity: str, filters: Sequence[Filter], *, include_fields: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The first page of `POST {Entity}/query` only (at most `page_size` rows, never a second request), asking
        for `include_fields` alone when given (`IncludeFields`, REST_Advanced_Query_Features.htm)."""
        body = to_wire_query(filters, max_records=self._config.page_size)
        if include_fields:
            body["IncludeFields"] = list(include_fields)
        page = await self.call("POST", f"{entity}/query", entity=entity, body=body)
        return [item for item in (page or {}).get("items") or [] if isinstance(item, dict)]

    async def get(self, entity: str, record_id: int) -> dict[str, Any] | None:
        answer = await self.call("GET", f"{entity}/{record_id}", entity=entity)
        item = (answer or {}).get("item")
        return dict(item) if item else None

    async def create(self, entity: str, body: dict[str, Any], *, path: str | None = None) -> int:
        """POST a new record (to `path` for a child entity created through its parent) and return its `itemId`."""
        answer = await self.call("POST", path or entity, entity=entity, body=body)
        try:
            return int(answer["itemId"])
        except (TypeError, KeyError, ValueError) as exc:
            raise IntegrationUnavailable(f"Autotask created a {entity} record without answering its id") from exc

    async def update(self, entity: str, body: dict[str, Any]) -> None:
        """PATCH (partial update); Autotask carries the id in the body (apis.md §2.2)."""
        await self.call("PATCH", entity, entity=entity, body=body)

    async def delete(self, entity: str, record_id: int) -> None:
        await self.call("DELETE", f"{entity}/{record_id}", entity=entity)

    async def field_info(self, entity: str) -> dict[str, Any]:
        answer = await self.call("GET", f"{entity}/entityInformation/fields", entity=entity)
        return dict(answer or {})
