"""Thin async ConnectWise PSA client: Basic auth plus clientId on every call, paging, and error translation."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp

from integrations.connectwise.config import ConnectWiseConfig
from integrations.retry_after import parse_retry_after
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable

logger = logging.getLogger(__name__)

NOT_FOUND: Final = object()
"""Returned instead of raising when the caller said a 404 is an acceptable answer."""

_MAX_PAGES = 100
MAX_PAGE_SIZE = 1000
"""ConnectWise's hard maximum for `pageSize` (apis.md §1.4, "PSA Pagination")."""
_MAX_MESSAGE = 500
_RETRIES_AFTER_SHORT_429 = 2
_NEXT_LINK = re.compile(r'<[^>]*>\s*;\s*rel="?next"?', re.IGNORECASE)


def message_of(body: str) -> str:
    """The vendor's own words from `{"code", "message", "errors": [{"code", "message", "resource", "field"}]}`
    (apis.md §1.5): the message, then each validation error's message, trimmed."""
    text = body.strip()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        return text[:_MAX_MESSAGE]
    if not isinstance(parsed, dict):
        return text[:_MAX_MESSAGE]
    parts: list[str] = []
    if isinstance(parsed.get("message"), str) and parsed["message"]:
        parts.append(parsed["message"])
    elif isinstance(parsed.get("code"), str) and parsed["code"]:
        parts.append(parsed["code"])
    for error in parsed.get("errors") or []:
        if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"] not in parts:
            parts.append(error["message"])
    return ": ".join(parts)[:_MAX_MESSAGE] if parts else text[:_MAX_MESSAGE]


def basic_credentials(config: ConnectWiseConfig) -> str:
    """`Basic base64("{companyId}+{publicKey}:{privateKey}")` (apis.md §1.1, connectwise-rest Manage.ts)."""
    raw = f"{config.company_id}+{config.public_key}:{config.private_key.get_secret_value()}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


class ConnectWiseClient:
    """Every call carries the Basic credentials, the `clientId` header ConnectWise requires on *every* request
    (apis.md §1.1) and a pinned API version. At most `max_concurrent_requests` calls are in flight."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: ConnectWiseConfig,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._session = session
        self._config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self._slots = asyncio.Semaphore(config.max_concurrent_requests)

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": basic_credentials(self._config),
            "clientId": self._config.client_id.get_secret_value(),
            "Accept": f"application/vnd.connectwise.com+json; version={self._config.api_version}",
        }

    async def get(self, path: str, params: Mapping[str, str] | None = None, *, allow_not_found: bool = False) -> Any:
        return await self._call("GET", path, params=params, allow_not_found=allow_not_found)

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """ConnectWise answers a create with 201 and the created record (apis.md §1.5)."""
        answer = await self._call("POST", path, json_body=dict(body))
        if not isinstance(answer, dict) or "id" not in answer:
            raise IntegrationUnavailable(f"ConnectWise answered POST {path} without the created record")
        return answer

    async def patch(self, path: str, operations: list[dict[str, Any]]) -> Any:
        return await self._call("PATCH", path, json_body=operations)

    async def delete(self, path: str, *, allow_not_found: bool = False) -> None:
        await self._call("DELETE", path, allow_not_found=allow_not_found)

    async def get_list(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        limit: int | None = None,
        page_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of a list endpoint, page by page (`page` is 1-based, `pageSize` at most 1000, apis.md §1.4).

        We keep asking while the answer's `Link` header has `rel="next"`, but build the next URL ourselves from the
        page number: the link names a host, and our credentials only ever go to the configured one. Without a
        `limit`, every row is read or the call fails: a silently shortened list could hide the record an
        idempotency look-up is searching for."""
        rows: list[dict[str, Any]] = []
        size = min(page_size or self._config.page_size, MAX_PAGE_SIZE)
        if limit is not None:
            size = min(limit, size)
        for page in range(1, _MAX_PAGES + 1):
            page_params = {**(params or {}), "page": str(page), "pageSize": str(size)}
            answer, headers = await self._call_with_headers("GET", path, params=page_params)
            if not isinstance(answer, list):
                raise IntegrationUnavailable(f"ConnectWise answered GET {path} with something other than a list")
            rows.extend(row for row in answer if isinstance(row, dict))
            if limit is not None and len(rows) >= limit:
                return rows[:limit]
            has_next = bool(_NEXT_LINK.search(headers.get("Link", "")))
            if not has_next or len(answer) < size:
                return rows
        raise IntegrationRejected(
            f"ConnectWise answered GET {path} with more than {_MAX_PAGES} pages of {size}; the query must be narrower"
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        allow_not_found: bool = False,
    ) -> Any:
        answer, _headers = await self._call_with_headers(
            method, path, params=params, json_body=json_body, allow_not_found=allow_not_found
        )
        return answer

    async def _call_with_headers(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        allow_not_found: bool = False,
    ) -> tuple[Any, Mapping[str, str]]:
        url = f"{self._config.api_base}/{path.lstrip('/')}"
        for attempt in range(_RETRIES_AFTER_SHORT_429 + 1):
            async with self._slots:
                status, headers, body = await self._send(method, url, params, json_body)
            logger.debug("ConnectWise %s %s -> %s", method, path, status)
            if status == 429 and attempt < _RETRIES_AFTER_SHORT_429:
                # A 429 means the request was not processed, so repeating it (even a POST) is safe. Short waits
                # are cheaper here than a trip through the workflow runner's backoff.
                wait = parse_retry_after(headers.get("Retry-After"), self._clock())
                if wait is not None and wait <= self._config.max_wait_for_retry_after_seconds:
                    await asyncio.sleep(wait)
                    continue
            return self._interpret(method, path, status, headers, body, allow_not_found), headers
        raise AssertionError("unreachable: the last attempt always returns or raises")

    async def _send(
        self, method: str, url: str, params: Mapping[str, str] | None, json_body: Any
    ) -> tuple[int, Mapping[str, str], str]:
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers=self._headers(),
                timeout=self._timeout,
            ) as response:
                return response.status, response.headers, await response.text()
        except TimeoutError as exc:
            raise IntegrationUnavailable(
                f"ConnectWise did not answer within {self._config.timeout_seconds:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            # The exception text can carry the URL but never our headers; the type name is enough here.
            raise IntegrationUnavailable(f"Could not reach ConnectWise: {type(exc).__name__}") from exc

    def _interpret(
        self, method: str, path: str, status: int, headers: Mapping[str, str], body: str, allow_not_found: bool
    ) -> Any:
        if 200 <= status < 300:
            if status == 204 or not body.strip():
                return None
            try:
                return json.loads(body)
            except ValueError as exc:
                raise IntegrationUnavailable(f"ConnectWise answered {method} {path} with unreadable JSON") from exc
        message = message_of(body) or f"HTTP {status}"
        if status in (401, 403):
            # 401 = bad keys or clientId, 403 = the API member's security role forbids it (apis.md §1.5); both need
            # an administrator, not a retry.
            raise IntegrationAuthError(f"ConnectWise refused our credentials for {method} {path} ({status}): {message}")
        if status == 404 and allow_not_found:
            return NOT_FOUND
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(headers.get("Retry-After"), self._clock())
            raise IntegrationUnavailable(
                f"ConnectWise is unavailable for {method} {path} ({status}): {message}",
                retry_after_seconds=retry_after,
            )
        raise IntegrationRejected(f"ConnectWise rejected {method} {path} ({status}): {message}")
