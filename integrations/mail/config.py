"""SMTP connection settings for one tenant; the password is a SecretStr and never appears in logs or reprs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class SmtpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    start_tls: bool = True
    use_tls: bool = False
    from_address: str = Field(min_length=3, max_length=254)
    from_name: str = Field(default="Slotwise", max_length=100)
    timeout_seconds: float = Field(default=20.0, gt=0, le=120)
