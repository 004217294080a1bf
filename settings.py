"""Runtime settings from SLOTWISE_* environment variables (and .env); built by main(), never at import."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLOTWISE_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./var/slotwise.db"
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
    bot_allow_http_loopback: bool = Field(
        default=False, description="Tests and local development: allow http:// service URLs on 127.0.0.1/localhost."
    )

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
