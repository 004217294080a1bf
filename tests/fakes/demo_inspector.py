"""What the demo's stand-ins received, for a person to look at: an inbox of every email the SMTP stand-in accepted
(rendered as the client's mail app would show it) and an inspector listing the records the PSA and Microsoft Graph
stand-ins hold (tickets, schedule entries, opportunities, notes, calendar events, sent mail).

The stand-ins are separate processes, so each shares its records as JSON on a small side port (`records_app`),
and the SMTP stand-in writes every message it accepts to a spool directory as an .eml file. This module's own
server (`python -m tests.fakes.demo_inspector`) reads both and serves the pages; `slotwise demo` starts it and
prints its URLs next to the booking pages.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
from collections.abc import Callable, Mapping
from contextlib import suppress
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from icalendar import Calendar
from jinja2 import Environment

Records = Mapping[str, list[dict[str, Any]]]
"""Record kind ('ticket', 'schedule_entry', 'event', ...) → the stand-in's records of that kind."""

# Email HTML is shown in a sandboxed frame from its own route: no scripts, no forms, nothing fetched but images
# over https (a tenant logo), so a message can never act on the inspector page.
EMAIL_CSP = "sandbox; default-src 'none'; img-src https: data:; style-src 'unsafe-inline'"
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; img-src 'self'"


def records_app(describe: Callable[[], Records]) -> web.Application:
    """`GET /records`: what a stand-in holds right now, as JSON."""

    async def records(request: web.Request) -> web.Response:
        return web.json_response(describe(), dumps=lambda value: json.dumps(value, default=str))

    app = web.Application()
    app.router.add_get("/records", records)
    return app


async def start_records(describe: Callable[[], Records], host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(records_app(describe), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_app_with_records(
    app: web.Application, host: str, port: int, describe: Callable[[], Records], records_port: int | None
) -> None:
    """Serve a stand-in's app and, when asked, its records on the side port, until interrupted."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    side = await start_records(describe, host, records_port) if records_port else None
    try:
        await asyncio.Event().wait()
    finally:
        if side is not None:
            await side.cleanup()
        await runner.cleanup()


def spooled_messages(spool: Path) -> list[tuple[str, EmailMessage]]:
    """(name, message) of every .eml in the spool, oldest first."""
    found: list[tuple[str, EmailMessage]] = []
    for path in sorted(spool.glob("*.eml")) if spool.is_dir() else ():
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if isinstance(parsed, EmailMessage):
            found.append((path.stem, parsed))
    return found


def _part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    return str(body.get_content()) if body is not None else ""


def _invite_summary(message: EmailMessage) -> list[dict[str, str]]:
    """Each attached invitation's method, UID, SEQUENCE, status and start: what a calendar will act on."""
    summaries: list[dict[str, str]] = []
    for part in message.walk():
        if part.get_content_type() != "text/calendar":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        calendar = Calendar.from_ical(payload)
        for event in calendar.walk("VEVENT"):
            summaries.append(
                {
                    "method": str(calendar.get("METHOD", "")),
                    "uid": str(event.get("UID", "")),
                    "sequence": str(event.get("SEQUENCE", "")),
                    "status": str(event.get("STATUS", "")),
                    "starts": event.decoded("DTSTART").isoformat() if "DTSTART" in event else "",
                }
            )
    return summaries


_PAGES = Environment(autoescape=True)
_STYLE = """body{font-family:system-ui,sans-serif;margin:0;background:#f3f4f6;color:#111827}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:24px}h2{font-size:18px;margin-top:28px}
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0}
th,td{border:1px solid #e5e7eb;padding:6px 8px;text-align:left;vertical-align:top;font-size:14px}
th{background:#f9fafb}a{color:#1d4ed8}
table.record th{width:180px}table.record td{white-space:pre-wrap;overflow-wrap:anywhere}
iframe{width:100%;height:720px;border:1px solid #d1d5db;background:#fff}
pre{white-space:pre-wrap;background:#fff;border:1px solid #e5e7eb;padding:12px;font-size:13px}
.muted{color:#4b5563}nav a{margin-right:16px}"""

_LAYOUT = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{{ title }}</title>
<style>{{ style }}</style></head><body><main>
<nav><a href="/">Demo inspector</a><a href="/inbox">Inbox</a><a href="/records">Records</a></nav>
{% block content %}{% endblock %}</main></body></html>"""

_INDEX = _PAGES.from_string(
    _LAYOUT.replace(
        "{% block content %}{% endblock %}",
        """<h1>What the demo produced</h1>
<p><a href="/inbox">Inbox</a>: {{ count }} email(s) the SMTP stand-in received, as the client sees them.</p>
<p><a href="/records">Records</a>: tickets, schedule entries, opportunities, notes and calendar events the PSA and
Microsoft Graph stand-ins hold.</p>""",
    )
)

_INBOX = _PAGES.from_string(
    _LAYOUT.replace(
        "{% block content %}{% endblock %}",
        """<h1>Inbox</h1>
{% if messages %}<table><thead><tr><th>#</th><th>To</th><th>Subject</th><th>Sent</th><th>Invitation</th></tr>
</thead><tbody>{% for item in messages %}<tr><td>{{ item.name }}</td><td>{{ item.to }}</td>
<td><a href="/inbox/{{ item.name }}">{{ item.subject }}</a></td><td>{{ item.date }}</td>
<td>{{ item.invite }}</td></tr>{% endfor %}</tbody></table>
{% else %}<p class="muted">No email yet. Book a time on a demo page; the confirmation appears here.</p>{% endif %}""",
    )
)

_MESSAGE = _PAGES.from_string(
    _LAYOUT.replace(
        "{% block content %}{% endblock %}",
        """<h1>{{ subject }}</h1>
<table><tr><th>From</th><td>{{ sender }}</td></tr><tr><th>To</th><td>{{ to }}</td></tr>
<tr><th>Date</th><td>{{ date }}</td></tr><tr><th>Message-ID</th><td>{{ message_id }}</td></tr></table>
{% if invites %}<h2>Invitation</h2><table><tr><th>Method</th><th>UID</th><th>Sequence</th><th>Status</th>
<th>Starts</th></tr>{% for invite in invites %}<tr><td>{{ invite.method }}</td><td>{{ invite.uid }}</td>
<td>{{ invite.sequence }}</td><td>{{ invite.status }}</td><td>{{ invite.starts }}</td></tr>{% endfor %}</table>
{% endif %}
<h2>As the client sees it</h2>
<iframe title="The email's HTML part" sandbox src="/inbox/{{ name }}/html"></iframe>
<h2>Plain-text part</h2><pre>{{ text }}</pre>""",
    )
)

_RECORDS = _PAGES.from_string(
    _LAYOUT.replace(
        "{% block content %}{% endblock %}",
        """<h1>Records in the stand-ins</h1>
{% for system in systems %}<h2>{{ system.label }}</h2>
{% if system.error %}<p class="muted">{{ system.error }}</p>{% endif %}
{% for kind, rows in system.kinds %}<h3>{{ kind }} ({{ rows|length }})</h3>
{% for row in rows %}<table class="record">{% for field, value in row.items() %}
<tr><th>{{ field }}</th><td>{{ value }}</td></tr>{% endfor %}</table>{% endfor %}{% endfor %}
{% if not system.error and not system.kinds %}<p class="muted">Nothing yet.</p>{% endif %}
{% endfor %}""",
    )
)


def _flat(record: Mapping[str, Any]) -> dict[str, str]:
    """One record as field → text: nested values (a contact, a member, an event body) as indented JSON, long texts
    kept whole."""
    return {
        str(key): value if isinstance(value, str) else json.dumps(value, default=str, indent=1, ensure_ascii=False)
        for key, value in record.items()
        if not str(key).startswith(("_", "@odata"))
    }


def inspector_app(spool: Path, record_sources: Mapping[str, str]) -> web.Application:
    """The inbox and the records pages. `record_sources` maps a label ("ConnectWise PSA") to a stand-in's
    records URL (`records_app`)."""

    def _html(body: str, status: int = 200, csp: str = PAGE_CSP) -> web.Response:
        return web.Response(
            text=body,
            status=status,
            content_type="text/html",
            headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff"},
        )

    def _find(name: str) -> EmailMessage:
        for found, message in spooled_messages(spool):
            if found == name:
                return message
        raise web.HTTPNotFound(text="No such message in the demo inbox.")

    async def index(request: web.Request) -> web.Response:
        return _html(_INDEX.render(title="Demo inspector", style=_STYLE, count=len(spooled_messages(spool))))

    async def inbox(request: web.Request) -> web.Response:
        messages = [
            {
                "name": name,
                "to": str(message["To"] or ""),
                "subject": str(message["Subject"] or "(no subject)"),
                "date": str(message["Date"] or ""),
                "invite": ", ".join(
                    f"{invite['method']} (sequence {invite['sequence']})" for invite in _invite_summary(message)
                )
                or "none",
            }
            for name, message in reversed(spooled_messages(spool))
        ]
        return _html(_INBOX.render(title="Demo inbox", style=_STYLE, messages=messages))

    async def message_page(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        message = _find(name)
        return _html(
            _MESSAGE.render(
                title=str(message["Subject"] or ""),
                style=_STYLE,
                name=name,
                subject=str(message["Subject"] or "(no subject)"),
                sender=str(message["From"] or ""),
                to=str(message["To"] or ""),
                date=str(message["Date"] or ""),
                message_id=str(message["Message-ID"] or ""),
                invites=_invite_summary(message),
                text=_part(message, "plain"),
            )
        )

    async def message_html(request: web.Request) -> web.Response:
        message = _find(request.match_info["name"])
        return _html(_part(message, "html") or "<p>(This email has no HTML part.)</p>", csp=EMAIL_CSP)

    async def records(request: web.Request) -> web.Response:
        systems: list[dict[str, Any]] = []
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for label, url in record_sources.items():
                try:
                    async with session.get(url) as answer:
                        answer.raise_for_status()
                        held: dict[str, list[dict[str, Any]]] = await answer.json()
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    systems.append({"label": label, "error": f"The stand-in did not answer at {url}: {exc}"})
                    continue
                kinds = [(kind, [_flat(row) for row in rows]) for kind, rows in held.items() if rows]
                systems.append({"label": label, "error": "", "kinds": kinds})
        return _html(_RECORDS.render(title="Demo records", style=_STYLE, systems=systems))

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/inbox", inbox)
    app.router.add_get(r"/inbox/{name:[0-9]+}", message_page)
    app.router.add_get(r"/inbox/{name:[0-9]+}/html", message_html)
    app.router.add_get("/records", records)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The demo's inbox and records pages")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8126)
    parser.add_argument("--spool", type=Path, required=True, help="the SMTP stand-in's spool directory")
    parser.add_argument(
        "--records", action="append", default=[], metavar="LABEL=URL", help="a stand-in's records URL (repeatable)"
    )
    args = parser.parse_args()
    sources = dict(item.split("=", 1) for item in args.records)
    with suppress(KeyboardInterrupt):
        web.run_app(inspector_app(args.spool, sources), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
