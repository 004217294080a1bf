"""ConnectWise PSA connection settings for one tenant; the private key and clientId are SecretStr, never logged."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

_URL = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"


class ConnectWiseConfig(BaseModel):
    """The API base is `{site_url}/{codebase}/apis/3.0` (apis.md §1.1). `site_url` is configurable so tests point
    the adapter at the local fake; cloud partners use `https://api-na.myconnectwise.net` (or -eu / -au)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site_url: str = Field(pattern=_URL, max_length=300)
    codebase: str = Field(default="v4_6_release", pattern=r"^[A-Za-z0-9_.]+$", max_length=60)
    company_id: str = Field(min_length=1, max_length=100)
    """The company id people type on the ConnectWise login page."""
    public_key: str = Field(min_length=1, max_length=200)
    private_key: SecretStr
    client_id: SecretStr
    """The integration's clientId GUID from developer.connectwise.com. ConnectWise's developer guide says to treat
    it "as a sort of password" (apis.md §1.1 and the ClientIds page), so it is kept as a secret too."""
    api_version: str = Field(default="2021.1", pattern=r"^\d{4}\.\d+$")
    """Pinned in the Accept header so a server upgrade cannot change response shapes under us (apis.md §1.1)."""
    default_board: str = Field(default="Service Desk", min_length=1, max_length=100)
    """The service board for tickets whose draft names none."""
    fallback_company_identifier: str = Field(default="", max_length=100)
    """The partner's catch-all company. A first-time client becomes a contact of it, so the ticket, opportunity and
    activity of the booking are linked to a contact. Empty = no contact is created, and a ticket or opportunity
    for a client who is not yet a contact is refused."""
    timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    max_concurrent_requests: int = Field(default=4, ge=1, le=50)
    """ConnectWise publishes no fixed quota (apis.md §1.5), so we stay polite and follow its 429 + Retry-After."""
    page_size: int = Field(default=100, ge=1, le=1000)
    """pageSize of list calls; 1000 is ConnectWise's hard maximum (apis.md §1.4)."""
    max_wait_for_retry_after_seconds: float = Field(default=2.0, ge=0, le=30)
    """A 429 whose Retry-After is at most this long is waited out inside the call (twice at most); longer waits
    are handed to the workflow runner as IntegrationUnavailable(retry_after_seconds=...)."""

    @property
    def api_base(self) -> str:
        return f"{self.site_url.rstrip('/')}/{self.codebase}/apis/3.0"
