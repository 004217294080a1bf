"""What Insert link puts into the email: simple structural HTML for HTML bodies, plain text for text bodies.

Outlook's `body.setSelectedDataAsync` drops inline CSS and mangles complex markup (reference/outlook_and_pods.md
§1.3: "Inline CSS is not supported", staircase indentation and list bugs), so the HTML is one small table with a bold
title and a link: it reads well with every style stripped. Every name and URL is escaped here, because type names and
rep names are admin-authored text and end up in someone else's mailbox."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True, slots=True)
class LinkSnippet:
    type_name: str
    duration_minutes: int
    location: str
    host_name: str
    url: str


def render_link_html(snippet: LinkSnippet) -> str:
    """A two-row table: the bold type name with its length and place, then the booking link. `id="LPNoLP"` stops
    Outlook turning the link into a preview card (Microsoft's documented opt-out for add-in inserted links)."""
    title = escape(snippet.type_name)
    details = escape(f"{snippet.duration_minutes} minutes, {snippet.location}")
    url = escape(snippet.url, quote=True)
    label = escape(f"Book a time with {snippet.host_name}")
    return (
        "<table><tbody>"
        f"<tr><td><b>{title}</b> ({details})</td></tr>"
        f'<tr><td><a href="{url}" id="LPNoLP">{label}</a></td></tr>'
        "</tbody></table>"
    )


def render_link_text(snippet: LinkSnippet) -> str:
    """The same as plain text: a text body shows markup literally, so there is none."""
    return (
        f"{snippet.type_name} ({snippet.duration_minutes} minutes, {snippet.location})\n"
        f"Book a time with {snippet.host_name}: {snippet.url}\n"
    )
