"""HaloPSA connection settings for one tenant; the client secret is a SecretStr and never appears in logs or reprs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

_URL = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"


class HaloPsaConfig(BaseModel):
    """Hosted Halo: `auth_url` is `https://{x}.halopsa.com/auth` and `tenant` is set, so the token endpoint is
    `{auth_url}/token?tenant={tenant}`. On-premises Halo: `auth_url` is `{appUrl}/auth` and `tenant` stays empty
    (apis.md §3, from n8n's `getAuthUrl`). Both URLs are configurable so tests can point them at the fake."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_url: str = Field(pattern=_URL, max_length=300)
    """The API base, e.g. `https://acme.halopsa.com/api` (no trailing slash needed)."""
    auth_url: str = Field(pattern=_URL, max_length=300)
    """The authorisation server, e.g. `https://acme.halopsa.com/auth`."""
    tenant: str = Field(default="", max_length=100)
    client_id: str = Field(min_length=1, max_length=200)
    client_secret: SecretStr
    scope: str = Field(default="all", min_length=1, max_length=200)
    fallback_client_id: int | None = Field(default=None, ge=1)
    """The catch-all client (e.g. "Prospects") on whose site a first-time client becomes a user, so the booking's
    ticket and appointments are linked to a user. None = no user is created."""
    timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    max_concurrent_requests: int = Field(default=4, ge=1, le=50)
    """Halo publishes no numeric limit (apis.md §3 [U]); we stay polite and follow its 429 + Retry-After."""
    page_size: int = Field(default=100, ge=1, le=500)
    """Rows per page; the swagger caps GET /Tickets at "Maximum size: 100", so the client sends at most 100 (larger
    values, valid before that was known, still load so a stored connection keeps working)."""
    token_refresh_margin_seconds: float = Field(default=60.0, ge=0, le=600)
    """Fetch a fresh token this long before the old one expires, so no request races the expiry."""

    @property
    def token_url(self) -> str:
        """Without the query: the client sends `tenant` as a query parameter so it is encoded properly."""
        return self.auth_url.rstrip("/") + "/token"

    @property
    def api_base(self) -> str:
        return self.api_url.rstrip("/")
