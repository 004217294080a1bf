"""Runtime settings from SLOTWISE_* environment variables (and .env); built by main(), never at import."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLOTWISE_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./var/slotwise.db"
    database_pool_size: int = Field(
        default=5,
        ge=1,
        le=100,
        description="PostgreSQL connections each process keeps open; with max_overflow this is its ceiling. Size "
        "it so that (processes x (pool_size + max_overflow)) stays below the server's max_connections.",
    )
    database_max_overflow: int = Field(default=5, ge=0, le=100, description="Extra connections under load.")
    database_pool_timeout_seconds: float = Field(
        default=5.0, gt=0, le=120, description="How long a request waits for a free connection before a 503."
    )
    database_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=120, description="How long opening a connection may take before a 503."
    )
    database_statement_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="How long one statement may run (or wait on a lock) before a 503."
    )
    base_url: str = "http://127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: SecretStr | None = Field(default=None, description="Signs client links and CSRF tokens.")
    secret_key_file: Path = Path("./var/secret.key")
    rate_limit_per_ip_per_minute: int = 30
    rate_limit_per_page_per_minute: int = 300
    manage_link_days: int = 90
    request_link_days: int = 14
    log_level: str = "INFO"
    run_workflows: bool = Field(default=True, description="Run the workflow runner inside this process.")
    busy_refresh_minutes: int = Field(default=5, ge=1, description="How often external busy time is refreshed.")
    runner_lag_unhealthy_seconds: float = Field(
        default=120.0,
        ge=0,
        description="In a process that runs the workflow runner, /readyz answers 503 once a due step has waited this "
        "long unclaimed, or the runner has been unable to use the database this long. 0 turns both checks off (a "
        "runner loop that stopped is still reported). Web-only processes (run_workflows=false) never check it.",
    )
    workflow_soft_dependency_grace_seconds: float = Field(
        default=600.0,
        ge=0,
        description="How long a workflow step waits for a step whose output it only quotes (the client's email "
        "quoting the ticket number or the Teams join link), counted from when its run was enqueued. Then, or as soon "
        "as that step fails for good, it goes without that part, so the client's confirmation never waits on the PSA "
        "or Microsoft 365 longer than this.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a Prometheus scraper sends to GET /metrics. Unset: /metrics does not exist (404).",
    )
    bot_app_id: str | None = Field(default=None, description="The Teams bot's Entra app (client) id.")
    bot_app_password: SecretStr | None = Field(default=None, description="The bot app's client secret.")
    bot_tenant_id: str | None = Field(default=None, description="Single-tenant bot: the bot app's Entra tenant.")
    bot_allow_anonymous: bool = Field(
        default=False, description="Local development only: accept unauthenticated activities (logs a warning)."
    )
    bot_openid_metadata_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    bot_token_authority: str = "https://login.microsoftonline.com/botframework.com"  # noqa: S105 (a URL, not a secret)
    bot_authority_ca_file: str | None = None
    bot_allowed_service_hosts: list[str] = Field(
        default_factory=lambda: [
            "smba.trafficmanager.net",
            "*.botframework.com",
            "smba.infra.gcc.teams.microsoft.com",
            "smba.infra.gov.teams.microsoft.us",
            "smba.infra.dod.teams.microsoft.us",
        ],
        description="Hosts the bot may send to (the activity's serviceUrl must be one of them).",
    )
    bot_allowed_callers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Single-tenant bot: Entra app ids (comma-separated in the environment) whose app-only tokens "
        "of the bot's tenant are accepted besides Bot Framework channel tokens. Empty: channel tokens only.",
    )
    bot_allow_http_loopback: bool = Field(
        default=False, description="Tests and local development: allow http:// service URLs on 127.0.0.1/localhost."
    )
    addin_client_id: str | None = Field(
        default=None,
        description="Entra app (client) id of the Outlook add-in API. Default: bot_app_id (one app registration "
        "serves the bot and the add-in, exposing the access_as_user scope).",
    )
    addin_app_id_uri: str | None = Field(
        default=None,
        description="Application ID URI the add-in API exposes. Default: api://<host of base_url>/<client id>.",
    )
    addin_openid_metadata_url: str = Field(
        default="https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
        description="Where the signing keys of add-in access tokens are published (tests point it at a local server).",
    )
    app_package_id: str | None = Field(
        default=None,
        description="The app package's id (GUID) for `slotwise manifest build`. Default: derived from base_url, so "
        "a rebuilt package updates the installed app.",
    )
    app_version: str | None = Field(
        default=None, description="The app package's version (semver). Default: this Slotwise version."
    )
    office_js_url: str = Field(
        default="https://appsforoffice.microsoft.com/lib/1/hosted/office.js",
        description="Office.js for the task pane: Microsoft's CDN (AppSource requires it); tests use a local stand-in.",
    )
    msal_browser_script: Path = Field(
        default=Path(__file__).resolve().parent / "node_modules/@azure/msal-browser/lib/msal-browser.min.js",
        description="MSAL.js for the Outlook task pane: pinned in package.json, installed by scripts/bootstrap "
        "(npm ci) and served from Slotwise's own origin.",
    )
    webhooks_allow_private: bool = Field(
        default=False,
        description="Local development only: let post_webhook reach loopback, private, link-local and other "
        "non-public addresses (refused by default, so a tenant file cannot aim Slotwise at internal services).",
    )

    @field_validator("bot_allowed_callers", mode="before")
    @classmethod
    def _split_allowed_callers(cls, value: object) -> object:
        """SLOTWISE_BOT_ALLOWED_CALLERS="id1, id2": app ids are GUIDs, so a comma list needs no JSON."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    def resolved_secret(self) -> str:
        """The signing secret: from the environment, else a random one kept in var/ so links survive restarts."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.secret_key_file
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        path.write_text(value)
        path.chmod(0o600)
        return value
