"""SmtpMailer: the Mailer port over SMTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from integrations.mail.client import SmtpClient
from integrations.mail.config import SmtpConfig
from integrations.mail.wire import to_wire_message
from scheduling.model import OutgoingEmail


class SmtpMailer:
    def __init__(self, config: SmtpConfig, *, clock: Callable[[], datetime] | None = None) -> None:
        self._client = SmtpClient(config)
        self._clock = clock or (lambda: datetime.now(UTC))

    async def check(self) -> None:
        await self._client.check()

    async def send(self, email: OutgoingEmail) -> str:
        message = to_wire_message(email, self._clock())
        await self._client.deliver(message)
        return str(message["Message-ID"])
