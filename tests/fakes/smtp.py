"""FakeSmtpServer: a real SMTP server (aiosmtpd) on loopback that keeps what it receives and can misbehave on cue."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class ReceivedMail:
    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage


@dataclass
class FakeSmtpServer:
    """Like a submission server: AUTH LOGIN/PLAIN with one account, and queued fault replies.

    `faults` holds SMTP replies ("421 4.3.2 Try again later", "550 5.1.1 No such user") returned for the next
    DATA commands, one per message, before normal delivery resumes.
    """

    username: str = "slotwise"
    password: str = "smtp-password"
    received: list[ReceivedMail] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    port: int = 0
    spool: Path | None = None
    """Where the demo keeps what it receives: each accepted message is also written there as NNNN.eml, for the
    demo inspector's inbox (tests/fakes/demo_inspector.py) and for anyone who wants to open it in a mail app."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.faults:
            return self.faults.pop(0)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        if self.spool is not None:
            # Written (whole, then renamed into place) before the message counts as received, so whoever waits for
            # `received` finds the file, and the inbox never reads half of one.
            self.spool.mkdir(parents=True, exist_ok=True)
            number = 1 + max((int(path.stem) for path in self.spool.glob("[0-9]*.eml")), default=0)
            partial = self.spool / f".{number:04d}.eml.part"
            partial.write_bytes(envelope.content)
            partial.replace(self.spool / f"{number:04d}.eml")
        self.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 2.0.0 Message accepted"

    def mailbox(self, address: str) -> list[EmailMessage]:
        """What lands in one recipient's mailbox: every accepted message addressed to it, except that a second copy
        of a Message-ID already delivered is dropped, as Exchange's store and Gmail do with a re-sent message. The
        raw accepted list stays in `received`, so tests see re-sends at the SMTP hop as well."""
        seen: set[str] = set()
        delivered: list[EmailMessage] = []
        for mail in self.received:
            if address.lower() not in (recipient.lower() for recipient in mail.envelope_to):
                continue
            message_id = str(mail.message["Message-ID"] or "")
            if message_id and message_id in seen:
                continue
            seen.add(message_id)
            delivered.append(mail.message)
        return delivered

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)


@contextmanager
def running_smtp_server(spool: Path | None = None) -> Iterator[FakeSmtpServer]:
    fake = FakeSmtpServer(spool=spool)
    # aiosmtpd checks readiness by connecting to the configured port, so port 0 won't do: pick a free one.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        fake.port = probe.getsockname()[1]
    controller = Controller(
        fake,
        hostname="127.0.0.1",
        port=fake.port,
        authenticator=fake.authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield fake
    finally:
        controller.stop()


def main() -> None:
    """Serve the fake on a fixed port for the demo, printing a line for every message it accepts."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Local SMTP stand-in for the Slotwise demo")
    parser.add_argument("--port", type=int, default=8125)
    parser.add_argument("--username", default="slotwise")
    parser.add_argument("--password", default="demo-smtp-password")
    parser.add_argument("--spool", type=Path, default=None, help="also write each message there as NNNN.eml")
    args = parser.parse_args()
    # The stand-in asks for AUTH without TLS on purpose (loopback only); aiosmtpd's warnings about it are noise here.
    warnings.filterwarnings("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    class Printing(FakeSmtpServer):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            reply = await super().handle_DATA(server, session, envelope)
            if self.received:
                mail = self.received[-1]
                print(f"[smtp] to {', '.join(mail.envelope_to)}: {mail.message['Subject']}", flush=True)  # noqa: T201
            return reply

    fake = Printing(username=args.username, password=args.password, port=args.port, spool=args.spool)
    controller = Controller(
        fake,
        hostname="127.0.0.1",
        port=args.port,
        authenticator=fake.authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    print(f"[smtp] listening on 127.0.0.1:{args.port} (user {args.username})", flush=True)  # noqa: T201
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        controller.stop()


if __name__ == "__main__":
    main()
