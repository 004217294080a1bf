"""The Outlook add-in's HTTP surface: the task pane (static files from our origin) and the `/addin/api/*` JSON API.

Every API route runs behind `AddinAuthenticator`: the rep is whoever the Entra access token says, and every read is
scoped by the tenant that identity resolved to, never by anything in the request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import jinja2
from aiohttp import web
from yarl import URL

from addin.auth import AddinAuthenticator, AddinAuthError, AddinAuthSettings, AddinDirectory
from addin.snippets import LinkSnippet, render_link_html, render_link_text
from scheduling.model import TeamsIdentity, TypeSummary


@dataclass(frozen=True, slots=True)
class AddinContext:
    auth: AddinAuthSettings
    directory: AddinDirectory
    base_url: str
    session_factory: Callable[[], aiohttp.ClientSession]
    office_js_url: str
    """Microsoft's CDN in production (AppSource requires it); the only script the pane loads from elsewhere."""
    msal_script: Path
    """MSAL.js as `npm ci` (scripts/bootstrap) put it in node_modules, served from our origin."""


@dataclass
class _AddinState:
    context: AddinContext
    authenticator: AddinAuthenticator | None = None


ADDIN: Final = web.AppKey("addin", _AddinState)
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
"""The task pane's script and style, and the Outlook icons the manifest names by URL (manifest/build.py)."""
TEMPLATES: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"), autoescape=True
)
DIALOG_PATH: Final = "/addin/auth-dialog.html"
ENTRA_AUTHORITY: Final = "https://login.microsoftonline.com/organizations"
"""Work and school accounts only: the API maps reps by their Entra tenant, so personal accounts cannot sign in."""
_MAX_BODY_BYTES: Final = 16 * 1024

ApiHandler = Callable[[web.Request, TeamsIdentity], Awaitable[web.Response]]


def api_error(status: int, code: str, message: str) -> web.Response:
    """The project's JSON error shape (`{"error": {"code", "message"}}`), so the task pane reads one format."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _authenticated(handler: ApiHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def run(request: web.Request) -> web.Response:
        state = request.app[ADDIN]
        if state.authenticator is None:
            return api_error(503, "starting", "Slotwise is still starting; try again in a moment")
        try:
            identity = await state.authenticator.authenticate(request.headers.get("Authorization"))
        except AddinAuthError as exc:
            response = api_error(exc.status, exc.code, exc.message)
            if exc.status == 401:
                # RFC 6750 §3: a refused bearer token names the scheme and the error class (never the token).
                detail = "" if exc.code == "missing" else ', error="invalid_token"'
                response.headers["WWW-Authenticate"] = f'Bearer realm="slotwise-addin"{detail}'
            return response
        return await handler(request, identity)

    return run


def type_url(base_url: str, identity: TeamsIdentity, summary: TypeSummary) -> str:
    return f"{base_url}/book/{identity.tenant_slug}/{summary.slug}"


async def me(request: web.Request, identity: TeamsIdentity) -> web.Response:
    return web.json_response({"name": identity.name, "email": identity.email, "time_zone": identity.time_zone})


async def appointment_types(request: web.Request, identity: TeamsIdentity) -> web.Response:
    """The rep's own types, the panels they sit on and their teams' round-robin types, each with its booking URL."""
    context = request.app[ADDIN].context
    summaries = await context.directory.types_for_user(identity.tenant_id, identity.user_id)
    return web.json_response(
        {
            "types": [
                {
                    "id": summary.type_id,
                    "name": summary.name,
                    "duration_minutes": summary.duration_minutes,
                    "location": summary.location.describe(),
                    "description": summary.description,
                    "url": type_url(context.base_url, identity, summary),
                }
                for summary in summaries
            ]
        }
    )


async def link_snippet(request: web.Request, identity: TeamsIdentity) -> web.Response:
    """`{"type_id", "body_type": "html"|"text"}` → the content Insert link puts at the cursor, already escaped for
    that body type. The task pane asks Outlook for the body type first (`body.getTypeAsync`): HTML coercion on a
    text body fails with InvalidFormatError."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    type_id, body_type = body.get("type_id"), body.get("body_type")
    if not isinstance(type_id, str) or not type_id:
        return api_error(400, "invalid_request", "type_id must name one of your appointment types")
    if body_type not in ("html", "text"):
        return api_error(400, "invalid_request", 'body_type must be "html" or "text"')
    context = request.app[ADDIN].context
    summaries = await context.directory.types_for_user(identity.tenant_id, identity.user_id)
    summary = next((item for item in summaries if item.type_id == type_id), None)
    if summary is None:
        return api_error(404, "unknown_type", "that appointment type is not one of yours")
    snippet = LinkSnippet(
        type_name=summary.name,
        duration_minutes=summary.duration_minutes,
        location=summary.location.describe(),
        host_name=identity.name,
        url=type_url(context.base_url, identity, summary),
    )
    content = render_link_html(snippet) if body_type == "html" else render_link_text(snippet)
    return web.json_response({"coercion": body_type, "content": content, "url": snippet.url})


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    if request.content_type != "application/json":
        return api_error(415, "unsupported_media_type", "send the request body as application/json")
    raw = await request.read()  # the application's client_max_size caps it first
    if len(raw) > _MAX_BODY_BYTES:
        return api_error(413, "too_large", f"the request body is larger than {_MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        return api_error(400, "invalid_json", "the request body is not valid JSON")
    if not isinstance(body, dict):
        return api_error(400, "invalid_request", "the request body must be a JSON object")
    return body


def _page_config(context: AddinContext) -> dict[str, Any]:
    scope_base = context.auth.app_id_uri or context.auth.client_id or ""
    return {
        "clientId": context.auth.client_id or "",
        "authority": ENTRA_AUTHORITY,
        "scopes": [f"{scope_base}/{context.auth.scope}"],
        "apiBase": "",
        "dialogPath": DIALOG_PATH,
    }


def _page(template: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def render(request: web.Request) -> web.Response:
        context = request.app[ADDIN].context
        html = TEMPLATES.get_template(template).render(
            office_js_url=context.office_js_url, config=_page_config(context)
        )
        response = web.Response(text=html, content_type="text/html")
        # Outlook frames the pane, so no frame-ancestors here; scripts come from us and the Office.js URL only.
        office_origin = str(URL(context.office_js_url).origin())
        response.headers["Content-Security-Policy"] = (
            f"script-src 'self' {office_origin}; object-src 'none'; base-uri 'none'; form-action 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-cache"
        return response

    return render


async def msal_script(request: web.Request) -> web.StreamResponse:
    """MSAL.js from our own origin. Missing (scripts/bootstrap not run) is a 404 the pane turns into a clear message."""
    path = request.app[ADDIN].context.msal_script
    if not path.is_file():
        return web.Response(
            status=404,
            text="// MSAL.js is not installed on this Slotwise server: run scripts/bootstrap\n",
            content_type="text/javascript",
        )
    return web.FileResponse(path, headers={"Content-Type": "text/javascript", "Cache-Control": "max-age=3600"})


def setup_addin(app: web.Application, context: AddinContext) -> None:
    """Mount the add-in API; its authenticator (and the HTTP session it fetches signing keys with) lives as long as
    the application."""
    state = _AddinState(context)
    app[ADDIN] = state
    app.router.add_static("/addin/static/", STATIC_DIR)
    app.router.add_get("/addin/taskpane.html", _page("taskpane.html"))
    app.router.add_get(DIALOG_PATH, _page("auth-dialog.html"))
    app.router.add_get("/addin/vendor/msal-browser.min.js", msal_script)
    app.router.add_get("/addin/api/me", _authenticated(me))
    app.router.add_get("/addin/api/appointment-types", _authenticated(appointment_types))
    app.router.add_post("/addin/api/link", _authenticated(link_snippet))

    async def addin_ctx(_app: web.Application) -> AsyncIterator[None]:
        session = context.session_factory()
        state.authenticator = AddinAuthenticator(context.auth, session, context.directory)
        yield
        state.authenticator = None
        await session.close()

    app.cleanup_ctx.append(addin_ctx)
