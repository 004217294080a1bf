"""Microsoft Graph connection settings for one tenant; the client secret is a SecretStr and never appears in logs."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"


class GraphConfig(BaseModel):
    """An Entra ID app registration with application permissions (Calendars.ReadWrite, Mail.Send, and User.Read.All
    for hosts' profile photos).

    `authority_host` and `graph_base_url` default to the global cloud and are configurable so tests (and national
    clouds) can point elsewhere. msal accepts only an https authority; Graph may be plain http on loopback only,
    because the bearer token travels with every call (kiota draws the same line, toolchain.md §6)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9.\-]+$")
    client_id: str = Field(min_length=1, max_length=100)
    client_secret: SecretStr
    authority_host: str = Field(default="https://login.microsoftonline.com", max_length=300)
    graph_base_url: str = Field(default="https://graph.microsoft.com/v1.0", max_length=300)
    scopes: tuple[str, ...] = (GRAPH_DEFAULT_SCOPE,)
    """Client credentials take exactly one `{resource}/.default` scope."""
    authority_ca_file: str | None = None
    """A CA bundle to trust for the authority instead of the system store (a test fake's self-signed certificate)."""
    timeout_seconds: float = Field(default=30.0, gt=0, le=120)
    max_concurrent_per_mailbox: int = Field(default=4, ge=1, le=4)
    """Outlook allows 4 concurrent requests per app per mailbox; a 5th is refused with 429 MailboxConcurrency
    (perf_reliability.md §2)."""
    schedule_window_days: int = Field(default=41, ge=1, le=41)
    """getSchedule refuses a window of 42 days or more (perf_reliability.md §2)."""
    schedules_per_call: int = Field(default=20, ge=1, le=20)
    """getSchedule slows down badly beyond 15-20 mailboxes per call (apis.md §4)."""
    from_address: str = Field(default="", max_length=254)
    """The mailbox mail is sent from when Graph is the tenant's email transport."""
    from_name: str = Field(default="Slotwise", max_length=100)

    @field_validator("authority_host")
    @classmethod
    def _https_authority(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("must be an https origin such as https://login.microsoftonline.com (msal requires https)")
        return value.rstrip("/")

    @field_validator("graph_base_url")
    @classmethod
    def _safe_graph_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if not parts.hostname or parts.scheme not in ("https", "http"):
            raise ValueError("must be an absolute URL such as https://graph.microsoft.com/v1.0")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ValueError(
                "plain http is allowed for 127.0.0.1/localhost only: bearer tokens must not travel in clear"
            )
        return value.rstrip("/")

    @field_validator("scopes")
    @classmethod
    def _one_default_scope(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) != 1 or not value[0].endswith("/.default"):
            raise ValueError("client credentials need exactly one '{resource}/.default' scope")
        return value

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def graph_host(self) -> str:
        return urlsplit(self.graph_base_url).hostname or ""
