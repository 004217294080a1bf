"""Thin async HaloPSA client: OAuth2 client-credentials tokens, array POSTs, paging, and error translation."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp

from integrations.halopsa.config import HaloPsaConfig
from integrations.retry_after import parse_retry_after
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable

logger = logging.getLogger(__name__)

NOT_FOUND: Final = object()
"""Returned instead of raising when the caller said a 404 is an acceptable answer."""

_MAX_PAGES = 200
_MAX_PAGE_SIZE = 100
"""The swagger's GET /Tickets: "page_size (int) When using Pagination, the size of the page. Maximum size: 100"."""
_MAX_MESSAGE = 500


def _row_key(row: dict[str, Any]) -> str:
    """A row's identity for spotting a page that repeats the last one: its id, or all of it when it has none."""
    row_id = row.get("id")
    return f"id:{row_id}" if row_id is not None else json.dumps(row, sort_keys=True, default=str)


def _message_of(body: str) -> str:
    """The vendor's own words: Halo answers errors as plain text, a JSON string, or an object with a message
    (and OAuth2 errors as {error, error_description}); keep whichever we got, trimmed."""
    text = body.strip()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        return text[:_MAX_MESSAGE]
    if isinstance(parsed, str):
        return parsed[:_MAX_MESSAGE]
    if isinstance(parsed, dict):
        parts = [
            str(parsed[key])
            for key in ("message", "Message", "error", "error_description", "title")
            if isinstance(parsed.get(key), str) and parsed[key]
        ]
        if parts:
            return ": ".join(parts)[:_MAX_MESSAGE]
    return text[:_MAX_MESSAGE]


class HaloPsaClient:
    """Every API call carries `Authorization: Bearer <token>`. The token is cached until shortly before it expires;
    a 401 from the API refreshes it once (Halo may expire or revoke a token early) and repeats the request."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: HaloPsaConfig,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._session = session
        self._config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self._slots = asyncio.Semaphore(config.max_concurrent_requests)
        self._token_lock = asyncio.Lock()
        self._access_token: str | None = None
        self._expires_at = datetime(1970, 1, 1, tzinfo=UTC)

    async def get(self, path: str, params: Mapping[str, str] | None = None, *, allow_not_found: bool = False) -> Any:
        return await self._call("GET", path, params=params, allow_not_found=allow_not_found)

    async def post_array(self, path: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST a JSON array, as every Halo create/update endpoint expects (apis.md §3: "The API expects an array");
        Halo answers the created record itself for a one-element array, or an array of them."""
        answer = await self._call("POST", path, json_body=items)
        if isinstance(answer, dict):
            return [answer]
        if isinstance(answer, list) and all(isinstance(item, dict) for item in answer):
            return answer
        raise IntegrationUnavailable(f"HaloPSA answered POST {path} with something other than the saved record")

    async def delete(self, path: str, *, allow_not_found: bool = False) -> None:
        await self._call("DELETE", path, allow_not_found=allow_not_found)

    async def get_pages(self, path: str, params: Mapping[str, str], list_key: str) -> list[dict[str, Any]]:
        """Every row of a paged list. Halo pages with `pageinate=true&page_size=N&page_no=K` (1-based) and says how
        many rows match in `record_count` (apis.md §3, n8n `haloPSAApiRequestAllItems`; the swagger lists the three
        parameters on GET /Tickets, /Appointment and /Users, and caps /Tickets' page_size at 100).

        Callers decide busy time and "does this record exist yet" from the rows, so a list we could not read to
        its end raises instead of returning a part of it. A list that ignores paging (a bare array, or the same
        rows again on the next page) ends the walk."""
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        size = min(self._config.page_size, _MAX_PAGE_SIZE)
        for page_no in range(1, _MAX_PAGES + 1):
            page_params = {**params, "pageinate": "true", "page_size": str(size), "page_no": str(page_no)}
            answer = await self.get(path, page_params)
            if isinstance(answer, list):
                return [row for row in answer if isinstance(row, dict)]
            if not isinstance(answer, dict):
                raise IntegrationUnavailable(f"HaloPSA answered GET {path} with an unreadable page")
            page = [row for row in answer.get(list_key) or [] if isinstance(row, dict)]
            fresh = [row for row in page if _row_key(row) not in seen]
            seen.update(_row_key(row) for row in fresh)
            rows.extend(fresh)
            total = answer.get("record_count")
            if not fresh or len(page) < size or (isinstance(total, int) and len(rows) >= total):
                return rows
        raise IntegrationUnavailable(f"HaloPSA's GET {path} list did not end within {_MAX_PAGES} pages")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        allow_not_found: bool = False,
    ) -> Any:
        url = f"{self._config.api_base}/{path.lstrip('/')}"
        async with self._slots:
            token = await self._token()
            status, headers, body = await self._send(method, url, token, params, json_body)
            if status == 401:
                # A 401 means Halo did not process the request, so repeating it (even a POST) is safe.
                token = await self._token(stale=token)
                status, headers, body = await self._send(method, url, token, params, json_body)
        logger.debug("HaloPSA %s %s -> %s", method, path, status)
        return self._interpret(method, path, status, headers, body, allow_not_found)

    async def _send(
        self, method: str, url: str, token: str, params: Mapping[str, str] | None, json_body: Any
    ) -> tuple[int, Mapping[str, str], str]:
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=self._timeout,
            ) as response:
                return response.status, response.headers, await response.text()
        except TimeoutError as exc:
            raise IntegrationUnavailable(f"HaloPSA did not answer within {self._config.timeout_seconds:g}s") from exc
        except aiohttp.ClientError as exc:
            raise IntegrationUnavailable(f"Could not reach HaloPSA: {type(exc).__name__}") from exc

    def _interpret(
        self, method: str, path: str, status: int, headers: Mapping[str, str], body: str, allow_not_found: bool
    ) -> Any:
        if 200 <= status < 300:
            if not body.strip():
                return None
            try:
                return json.loads(body)
            except ValueError as exc:
                raise IntegrationUnavailable(f"HaloPSA answered {method} {path} with unreadable JSON") from exc
        message = _message_of(body) or f"HTTP {status}"
        if status in (401, 403):
            raise IntegrationAuthError(f"HaloPSA refused our credentials for {method} {path} ({status}): {message}")
        if status == 404 and allow_not_found:
            return NOT_FOUND
        if status == 429 or status >= 500 or status == 408:
            retry_after = parse_retry_after(headers.get("Retry-After"), self._clock())
            raise IntegrationUnavailable(
                f"HaloPSA is unavailable for {method} {path} ({status}): {message}", retry_after_seconds=retry_after
            )
        raise IntegrationRejected(f"HaloPSA rejected {method} {path} ({status}): {message}")

    async def _token(self, *, stale: str | None = None) -> str:
        """The cached token, or a new one. `stale` is a token the API just refused: only that one is replaced, so
        concurrent 401s trigger a single refresh."""
        async with self._token_lock:
            margin = timedelta(seconds=self._config.token_refresh_margin_seconds)
            fresh = self._clock() + margin < self._expires_at
            if self._access_token is not None and self._access_token != stale and fresh:
                return self._access_token
            self._access_token = None
            token, lifetime = await self._fetch_token()
            self._access_token = token
            self._expires_at = self._clock() + timedelta(seconds=lifetime)
            return token

    async def _fetch_token(self) -> tuple[str, float]:
        """OAuth2 client credentials, form-encoded, with `scope=all` (apis.md §3, n8n `getAccessTokens`)."""
        config = self._config
        form = {
            "grant_type": "client_credentials",
            "client_id": config.client_id,
            "client_secret": config.client_secret.get_secret_value(),
            "scope": config.scope,
        }
        params = {"tenant": config.tenant} if config.tenant else None
        try:
            async with self._session.post(
                config.token_url,
                data=form,
                params=params,
                timeout=self._timeout,
                headers={"Accept": "application/json"},
            ) as response:
                status, headers, body = response.status, response.headers, await response.text()
        except TimeoutError as exc:
            raise IntegrationUnavailable("HaloPSA's token endpoint did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise IntegrationUnavailable(f"Could not reach HaloPSA's token endpoint: {type(exc).__name__}") from exc
        logger.debug("HaloPSA token request -> %s", status)
        if status in (400, 401, 403):
            # OAuth2 (RFC 6749 §5.2) answers bad client credentials with 400/401 `invalid_client`; any refusal here
            # is about the credentials or their scope, which no retry fixes.
            raise IntegrationAuthError(f"HaloPSA refused our client credentials ({status}): {_message_of(body)}")
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(headers.get("Retry-After"), self._clock())
            raise IntegrationUnavailable(
                f"HaloPSA's token endpoint is unavailable ({status})", retry_after_seconds=retry_after
            )
        if status != 200:
            raise IntegrationRejected(f"HaloPSA's token endpoint answered {status}: {_message_of(body)}")
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if (
            not isinstance(answer, dict)
            or not isinstance(answer.get("access_token"), str)
            or str(answer.get("token_type", "")).lower() != "bearer"
        ):
            raise IntegrationRejected("HaloPSA's token endpoint answered without a bearer access token")
        expires_in = answer.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        return str(answer["access_token"]), lifetime
