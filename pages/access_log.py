"""An access log that names the route a request matched, never its path: paths and query strings carry tokens."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

UNMATCHED = "<unmatched>"


class RouteAccessLogger(AbstractAccessLogger):
    """Logs `remote "METHOD /route/{template}" status seconds` for each request.

    Manage and scheduling-request links are bearer tokens in the path (`/m/{token}`) and query strings can hold
    email addresses, so aiohttp's default format (`%r`, the full request line, and `%{Referer}i`, which may be
    such a link) would write credentials into every log. This logger writes the matched route's canonical template
    instead, `<unmatched>` when no route matched, and no query string, Referer or User-Agent.
    Install it with `web.run_app(..., access_log_class=RouteAccessLogger)`.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.3fs',
            request.remote or "-",
            request.method,
            route_template(request),
            response.status,
            time,
        )


def route_template(request: BaseRequest) -> str:
    """The canonical template of the route `request` matched (e.g. `/m/{token}/cancel`), else `<unmatched>`.

    Requests that never reached the router (malformed HTTP) are plain BaseRequests without match_info; system
    routes (404/405 from the router) have no resource. Both get the placeholder, never the raw path.
    """
    match_info = getattr(request, "match_info", None)
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return UNMATCHED
    return str(resource.canonical)
