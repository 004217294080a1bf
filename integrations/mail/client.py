"""Thin async SMTP client (aiosmtplib) that translates SMTP outcomes into our three integration errors."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from integrations.mail.config import SmtpConfig
from scheduling.errors import IntegrationAuthError, IntegrationRejected, IntegrationUnavailable


class SmtpClient:
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    async def check(self) -> None:
        """Connect, say EHLO, authenticate and quit: proves host, port, TLS and credentials without sending mail."""
        config = self._config
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            start_tls=config.start_tls and not config.use_tls,
            use_tls=config.use_tls,
            timeout=config.timeout_seconds,
        )
        try:
            await client.connect()
            if config.username and config.password is not None:
                await client.login(config.username, config.password.get_secret_value())
            await client.quit()
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise IntegrationAuthError(f"The SMTP server refused our credentials ({exc.code})") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise IntegrationUnavailable(f"Could not reach the SMTP server: {exc}") from exc

    async def deliver(self, message: EmailMessage) -> None:
        """Hand one message to the SMTP server.

        4xx replies, timeouts and refused connections are temporary (RFC 5321 §4.2.1) and worth a retry; 5xx
        replies are permanent. A 535 is a credentials problem, which no retry fixes.
        """
        config = self._config
        try:
            await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password.get_secret_value() if config.password else None,
                start_tls=config.start_tls and not config.use_tls,
                use_tls=config.use_tls,
                timeout=config.timeout_seconds,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise IntegrationAuthError(f"The SMTP server refused our credentials ({exc.code})") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            refused = ", ".join(f"{refusal.recipient} ({refusal.code} {refusal.message})" for refusal in exc.recipients)
            if codes and all(400 <= code < 500 for code in codes):
                raise IntegrationUnavailable(f"Recipients temporarily refused: {refused}") from exc
            raise IntegrationRejected(f"Recipients refused: {refused}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                raise IntegrationUnavailable(f"SMTP server busy: {exc.code} {exc.message}") from exc
            raise IntegrationRejected(f"SMTP server refused the message: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise IntegrationUnavailable(f"Could not reach the SMTP server: {exc}") from exc
