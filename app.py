"""Composition root: builds the aiohttp application from settings, and the `slotwise` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from addin.auth import AddinAuthSettings
from addin.recipients import RecipientMatcher
from addin.routes import AddinContext, BookingDeps, OneOffDeps, setup_addin
from addin.suggestions import SuggestionLinks
from admin.connections import load_connection_configs, load_webhook_secrets
from admin.host_view import HostViewDeps, setup_host_view
from admin.routes import setup_admin_api
from bot.app import SlotwiseBot, create_notifier, setup_bot
from bot.auth import BotAuthSettings
from bot.handlers import ChatDeps, ChatService
from integrations.rate_windows import InMemoryVendorLimits
from integrations.registry import REGISTRY, GraphConnection
from pages.access_log import RouteAccessLogger
from pages.links import HostLinks, LinkSigner, ManageLinks
from pages.openapi import openapi_document
from pages.ratelimit import InMemoryRateLimiter
from pages.routes import PagesContext, build_templates, setup_pages, tenant_looks_of
from scheduling.errors import ServiceUnavailable
from scheduling.model import Booking
from scheduling.ports import Clock, Notifier, ProfilePhotoSource, PsaClient, RateLimiter, VendorLimits
from scheduling.service import Scheduler
from settings import Settings
from storage.addin_directory import SqlAddinDirectory
from storage.database import Database, PoolLimits, is_database_fault
from storage.directory import SqlTeamsDirectory
from storage.host_photos import SqlHostPhotos
from storage.repositories import SqlAgentKeys, SqlBookingStore, SqlRequestStore, SqlTenantCatalog, SqlTenantLooks
from storage.secrets import SecretBox
from storage.vendor_limits import PostgresVendorLimits
from workflows.busy_sync import BusyRefresher
from workflows.dispatch import BookingFanOut
from workflows.metrics import SlotwiseMetrics
from workflows.outbox import enqueue_jobs
from workflows.photo_sync import HostPhotoRefresher
from workflows.requests import RequestFanOut
from workflows.runner import Runner, RunnerWatch
from workflows.status import join_urls
from workflows.steps import TenantIntegrations, build_handlers
from workflows.webhooks import WebhookPoster, WebhookSender

log = logging.getLogger("slotwise")
DATABASE = web.AppKey("database", Database)
SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", SlotwiseMetrics)
RUNNER_WATCH = web.AppKey("runner_watch", RunnerWatch)
DEMO_FILE = Path(__file__).parent / "examples" / "demo.yaml"


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class Overrides:
    """What tests swap in: a fixed clock, or a limiter that fails."""

    clock: Clock | None = None
    ip_limiter: RateLimiter | None = None
    page_limiter: RateLimiter | None = None
    database: Database | None = None


class TenantAdapters:
    """The composition of a tenant's connections into adapters, built on first use and kept for a minute, so a
    connection changed by `slotwise apply` is picked up without a restart."""

    def __init__(
        self,
        database: Database,
        box: SecretBox,
        session: aiohttp.ClientSession,
        notifier: Notifier | None = None,
        webhooks: WebhookPoster | None = None,
        limits: VendorLimits | None = None,
    ) -> None:
        self._database = database
        self._box = box
        self._session = session
        self._notifier = notifier
        self._webhooks = webhooks
        self._limits = limits
        self._cache: dict[str, tuple[float, TenantIntegrations]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def __call__(self, tenant_id: str) -> TenantIntegrations:
        cached = self._cache.get(tenant_id)
        if cached is not None and time.monotonic() - cached[0] < 60:
            return cached[1]
        # One build per tenant at a time: concurrent steps must share one adapter, because the vendor limits
        # (3 per Autotask endpoint, 4 per Graph mailbox) are enforced by semaphores inside it.
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            cached = self._cache.get(tenant_id)
            if cached is not None and time.monotonic() - cached[0] < 60:
                return cached[1]
            return await self._build(tenant_id, cached)

    async def photos(self, tenant_id: str) -> ProfilePhotoSource | None:
        """The tenant's Microsoft 365 profile photos: the same Graph connection as its calendar, so photo requests
        share the four concurrent requests per mailbox with everything else."""
        calendar = (await self(tenant_id)).calendar
        return calendar if isinstance(calendar, GraphConnection) else None

    async def _build(self, tenant_id: str, cached: tuple[float, TenantIntegrations] | None) -> TenantIntegrations:
        configs = await load_connection_configs(self._database, tenant_id, self._box)

        def build(kind: str) -> Any:
            if kind not in configs:
                return None
            vendor, config = configs[kind]
            return REGISTRY[(kind, vendor)].build(config, self._session, self._limits)

        email = configs.get("email")
        if cached is not None:
            # Adapters that own connection pools (Graph's httpx client) are closed when replaced.
            for old in (cached[1].psa, cached[1].calendar, cached[1].mailer):
                closer = getattr(old, "aclose", None)
                if closer is not None:
                    await closer()
        m365 = build("m365")
        built = TenantIntegrations(
            psa=build("psa"),
            calendar=m365,
            busy=m365,
            mailer=build("email"),
            notifier=self._notifier,
            webhooks=(
                WebhookSender(self._webhooks, await load_webhook_secrets(self._database, tenant_id, self._box))
                if self._webhooks is not None
                else None
            ),
            from_address=getattr(email[1], "from_address", "") if email else "",
            from_name=getattr(email[1], "from_name", "Slotwise") if email else "Slotwise",
        )
        self._cache[tenant_id] = (time.monotonic(), built)
        return built


def open_database(settings: Settings) -> Database:
    """The database with the pool size and every timeout from the settings (see PoolLimits)."""
    return Database(
        settings.database_url,
        limits=PoolLimits(
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout_seconds=settings.database_pool_timeout_seconds,
            connect_timeout_seconds=settings.database_connect_timeout_seconds,
            statement_timeout_seconds=settings.database_statement_timeout_seconds,
        ),
    )


DATABASE_RETRY_AFTER_SECONDS = 30


@web.middleware
async def database_fault_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A database that refuses, stalls or has no connection to spare is the service's trouble, not the client's:
    it answers 503 with Retry-After (rendered by the pages' error middleware, JSON or a page), never a 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        # Already an answer (the rate limiter's own 503, a redirect): whatever caused it is not ours to relabel.
        raise
    except Exception as exc:
        if not is_database_fault(exc):
            raise
        log.warning("database unavailable for %s %s: %s", request.method, _route_of(request), type(exc).__name__)
        raise ServiceUnavailable(
            "Slotwise can't reach its database right now. Nothing was changed; please try again in a minute.",
            retry_after_seconds=DATABASE_RETRY_AFTER_SECONDS,
        ) from exc


def _route_of(request: web.Request) -> str:
    """The route template, never the raw path (paths carry link tokens)."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "<unmatched>"


def open_vendor_limits(database: Database) -> VendorLimits:
    """Vendor limits shared by every process on this database: in PostgreSQL, or in memory for one SQLite process."""
    return InMemoryVendorLimits() if database.is_sqlite else PostgresVendorLimits(database)


def create_app(settings: Settings, *, overrides: Overrides | None = None) -> web.Application:
    overrides = overrides or Overrides()
    app = web.Application(client_max_size=64 * 1024)
    database = overrides.database or open_database(settings)
    vendor_limits = open_vendor_limits(database)
    clock = overrides.clock or SystemClock()
    secret = settings.resolved_secret()
    app[DATABASE] = database
    app[SETTINGS] = settings
    metrics = SlotwiseMetrics(database)
    app[METRICS] = metrics
    base_url = settings.base_url.rstrip("/")
    signer = LinkSigner(secret)
    manage_links = ManageLinks(signer, clock.now, base_url, settings.manage_link_days)
    # Every booking change enqueues its workflow in the same transaction (transactional outbox).
    host_links = HostLinks(signer, clock.now, base_url)
    fanout = BookingFanOut(manage_links.url_for, clock.now, host_url_for=host_links.url_for)
    store = SqlBookingStore(database, on_change=metrics.count_booking_changes(fanout))
    # The tenants' adapters, built once the app's ClientSession is open (adapters_ctx); shared by the pages (ticket
    # look-ups for scheduling requests) and the runner, so both count against the same per-vendor limits.
    shared_adapters: list[TenantAdapters] = []

    async def tenant_psa(tenant_id: str) -> PsaClient | None:
        if not shared_adapters:
            raise ServiceUnavailable("Slotwise is still starting; try again in a moment", retry_after_seconds=5)
        return (await shared_adapters[0](tenant_id)).psa

    async def join_url_of(tenant_id: str, booking_id: str) -> str:
        return (await join_urls(database, tenant_id, [booking_id])).get(booking_id, "")

    context = PagesContext(
        catalog=SqlTenantCatalog(database),
        scheduler=Scheduler(store, clock),
        signer=signer,
        ip_limiter=overrides.ip_limiter or InMemoryRateLimiter(settings.rate_limit_per_ip_per_minute),
        page_limiter=overrides.page_limiter or InMemoryRateLimiter(settings.rate_limit_per_page_per_minute),
        agent_keys=SqlAgentKeys(database),
        requests=SqlRequestStore(
            database,
            # A request's triggers (request_created, request_sent, no_response) are enqueued with the request.
            on_created=RequestFanOut(
                lambda tenant_id, request_id, expires: (
                    f"{base_url}/r/" + signer.sign("request", tenant_id, request_id, expires)
                )
            ),
        ),
        clock=clock,
        base_url=base_url,
        manage_links=manage_links,
        request_link_days=settings.request_link_days,
        templates=build_templates(),
        tenant_psa=tenant_psa,
        tenant_looks=tenant_looks_of(SqlTenantLooks(database)),
        join_url_of=join_url_of,
        host_photos=SqlHostPhotos(database),
    )
    setup_pages(app, context)
    # Inside the pages' error middleware, so the ServiceUnavailable it raises is rendered like every other error.
    app.middlewares.append(database_fault_middleware)
    setup_admin_api(app, database)
    setup_host_view(app, HostViewDeps(database=database, signer=signer, clock=clock, tenant_psa=tenant_psa))
    bot = build_bot(
        settings,
        database,
        context.scheduler,
        clock,
        manage_links.url_for,
        fanout,
        vendor_limits,
        host_url_for=host_links.url_for,
    )
    if bot is not None:
        setup_bot(app, bot, lambda: aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
    setup_addin(
        app,
        AddinContext(
            auth=addin_auth_settings(settings),
            directory=SqlAddinDirectory(database),
            base_url=base_url,
            session_factory=lambda: aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)),
            office_js_url=settings.office_js_url,
            msal_script=settings.msal_browser_script,
            booking=BookingDeps(
                scheduler=context.scheduler,
                catalog=context.catalog,
                store=store,
                clock=clock,
                links=SuggestionLinks(secret),
                manage_url_for=manage_links.url_for,
                link_days=settings.request_link_days,
            ),
            recipients=RecipientMatcher(tenant_psa),
            one_off=OneOffDeps(
                requests=context.requests,
                clock=clock,
                url_for=lambda tenant_id, request_id, expires: (
                    f"{base_url}/r/" + signer.sign("request", tenant_id, request_id, expires)
                ),
                link_days=settings.request_link_days,
            ),
        ),
    )
    app[RUNNER_WATCH] = RunnerWatch()
    # Outermost, so the latency includes the error pages the inner middlewares render.
    app.middlewares.insert(0, metrics.middleware())
    if settings.metrics_token is not None and settings.metrics_token.get_secret_value():
        # Not public: without a configured token the route does not exist at all.
        app.router.add_get("/metrics", metrics.handler(settings.metrics_token.get_secret_value()))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/api/openapi.json", _openapi)
    app.router.add_get("/", _home)

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        await database.migrate()
        yield
        if overrides.database is None:
            await database.dispose()

    async def adapters_ctx(app: web.Application) -> AsyncIterator[None]:
        webhooks = WebhookPoster(allow_private=settings.webhooks_allow_private)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            shared_adapters.append(
                TenantAdapters(
                    database, SecretBox(secret), session, bot.notifier if bot else None, webhooks, vendor_limits
                )
            )
            yield
            shared_adapters.clear()
        await webhooks.close()
        if isinstance(vendor_limits, PostgresVendorLimits):
            await vendor_limits.aclose()

    async def runner_ctx(app: web.Application) -> AsyncIterator[None]:
        adapters = shared_adapters[0]
        runner = Runner(
            database,
            build_handlers(database, adapters),
            worker_id=f"{socket.gethostname()}:{os.getpid()}",
            observer=metrics.step_observer(adapters),
            soft_dependency_grace=timedelta(seconds=settings.workflow_soft_dependency_grace_seconds),
        )
        refresher = BusyRefresher(
            database, adapters, interval=timedelta(minutes=settings.busy_refresh_minutes), clock=clock.now
        )
        photos = HostPhotoRefresher(database, adapters.photos, clock=clock.now)
        stop = asyncio.Event()
        runner_task = asyncio.create_task(runner.run_forever(stop))
        tasks = [
            runner_task,
            asyncio.create_task(refresher.run_forever(stop)),
            asyncio.create_task(photos.run_forever(stop)),
        ]
        # The loops ride out database outages themselves; /readyz reports a runner that stopped or cannot work.
        watch = app[RUNNER_WATCH]
        watch.runner, watch.task = runner, runner_task
        metrics.runner_stalled_seconds = runner.stalled_seconds
        yield
        stop.set()
        await asyncio.gather(*tasks)

    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(adapters_ctx)
    if settings.run_workflows:
        app.cleanup_ctx.append(runner_ctx)
    return app


def bot_auth_settings(settings: Settings) -> BotAuthSettings:
    return BotAuthSettings(
        app_id=settings.bot_app_id or None,
        app_password=settings.bot_app_password.get_secret_value() if settings.bot_app_password else None,
        tenant_id=settings.bot_tenant_id or None,
        allow_anonymous=settings.bot_allow_anonymous,
        openid_metadata_url=settings.bot_openid_metadata_url,
        token_authority=settings.bot_token_authority,
        authority_ca_file=settings.bot_authority_ca_file,
        allowed_service_hosts=tuple(settings.bot_allowed_service_hosts),
        allow_http_loopback=settings.bot_allow_http_loopback,
        allowed_callers=tuple(settings.bot_allowed_callers),
    )


def addin_auth_settings(settings: Settings) -> AddinAuthSettings:
    """The add-in API's Entra app: its own registration when set, else the bot's (the default: one app)."""
    client_id = settings.addin_client_id or settings.bot_app_id or None
    app_id_uri = settings.addin_app_id_uri
    if app_id_uri is None and client_id:
        host = URL(settings.base_url).host or ""
        app_id_uri = f"api://{host}/{client_id}"
    return AddinAuthSettings(
        client_id=client_id, app_id_uri=app_id_uri, openid_metadata_url=settings.addin_openid_metadata_url
    )


def build_bot(
    settings: Settings,
    database: Database,
    scheduler: Scheduler,
    clock: Clock,
    manage_url_for: Callable[[Booking], str],
    fanout: BookingFanOut,
    limits: VendorLimits | None = None,
    host_url_for: Callable[[Booking], str] | None = None,
) -> SlotwiseBot | None:
    """The Teams bot, when this deployment has a bot registration (or explicitly runs it anonymously for local
    development); None otherwise, and /api/messages is then not mounted at all."""
    if not settings.bot_app_id and not settings.bot_allow_anonymous:
        return None

    async def request_reschedule(booking: Booking, requested_by: str, quiet_since: datetime) -> None:
        await database.run_write(
            lambda conn: enqueue_jobs(
                conn, fanout.reschedule_link_jobs(conn, booking, requested_by, quiet_since=quiet_since)
            )
        )

    directory = SqlTeamsDirectory(database)
    chat = ChatService(
        ChatDeps(
            directory=directory,
            database=database,
            scheduler=scheduler,
            clock=clock,
            base_url=settings.base_url.rstrip("/"),
            manage_url_for=manage_url_for,
            request_reschedule=request_reschedule,
            host_url_for=host_url_for,
        )
    )
    return SlotwiseBot(bot_auth_settings(settings), chat, directory, limits=limits)


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    """Ready: the database answers and, in a process that runs the workflow runner, the runner keeps up. A web-only
    process (run_workflows=false) is not taken out of service because some worker lags."""
    settings = request.app[SETTINGS]
    try:
        await request.app[DATABASE].ping()
        problem = None
        if settings.run_workflows:
            problem = await request.app[RUNNER_WATCH].problem(timedelta(seconds=settings.runner_lag_unhealthy_seconds))
    except Exception as exc:
        if not is_database_fault(exc):
            raise
        log.warning("readiness check failed: the database is unreachable (%s)", type(exc).__name__)
        response = web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    if problem is not None:
        log.warning("readiness check failed: %s", problem)
        response = web.json_response({"status": "unavailable", "runner": problem}, status=503)
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    return web.json_response({"status": "ready"})


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app[SETTINGS].base_url))


async def _home(_request: web.Request) -> web.Response:
    return web.Response(
        text="Slotwise is running. Booking pages live under /book/, /u/ and /t/; run `slotwise links` to list them.",
        content_type="text/plain",
    )


# ---------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slotwise", description="Scheduling for MSP sales and service teams.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the web server"), ("demo", "load the demo tenant and run the web server")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--host", default=None)
        sub.add_argument("--port", type=int, default=None)
        sub.add_argument("--wait-for-db", action="store_true", help="wait for the database instead of exiting")
    apply = commands.add_parser("apply", help="apply a tenant YAML file (users, teams, appointment types)")
    apply.add_argument("file", nargs="?")
    apply.add_argument("--dry-run", action="store_true", help="print the changes without making them")
    apply.add_argument("--schema", action="store_true", help="print the tenant file's JSON Schema")
    links = commands.add_parser("links", help="print every bookable URL")
    links.add_argument("--tenant", default=None)
    links.add_argument("--json", action="store_true")
    preview = commands.add_parser("preview", help="render a type's email, invitation and host card to an HTML file")
    preview.add_argument("--tenant", required=True)
    preview.add_argument("--type", required=True, dest="type_slug")
    preview.add_argument(
        "--trigger",
        default="client_scheduled",
        choices=("client_scheduled", "rescheduled", "cancelled", "before_appointment"),
    )
    preview.add_argument(
        "--locale",
        default=None,
        help="the client's language (en, de, de-DE...); default: the tenant file's tenant.locale, else English",
    )
    preview.add_argument("--out", default=None, help="the HTML file to write (default var/preview/…)")
    commands.add_parser("migrate", help="upgrade the database schema, keeping every row")
    worker = commands.add_parser("worker", help="run only the workflow runner (scale-out: one or more per database)")
    worker.add_argument("--lease-seconds", type=float, default=30.0)
    worker.add_argument("--concurrency", type=int, default=20)
    worker.add_argument("--worker-id", default=None)
    worker.add_argument("--wait-for-db", action="store_true", help="wait for the database instead of exiting")
    package = commands.add_parser("manifest", help="the app package: Teams bot, message extension, Outlook add-in")
    package_commands = package.add_subparsers(dest="manifest_command", required=True)
    build = package_commands.add_parser(
        "build", help="write the app package zip for this deployment (ids, host and version from settings)"
    )
    build.add_argument("--out", type=Path, default=Path("slotwise.zip"))
    key = commands.add_parser("apikey", help="create an agent API key for a tenant (printed once)")
    key.add_argument("--tenant", required=True)
    key.add_argument("--name", default="agent")
    key.add_argument("--role", choices=["agent", "admin"], default="agent")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Alembic narrates every check at INFO; the command's own output is what an admin needs to read.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.command in ("serve", "demo"):
        if args.host:
            settings.host = args.host
        if args.port:
            settings.port = args.port
        if "base_url" not in settings.model_fields_set:
            # Links printed and sent to clients must point at the address actually being served.
            shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
            settings.base_url = f"http://{shown_host}:{settings.port}"
        if not asyncio.run(reach_database(settings, wait=args.wait_for_db)):
            return 3
        if args.command != "demo":
            _serve(settings)
            return 0
        if not settings.bot_app_id and "bot_allow_anonymous" not in settings.model_fields_set:
            # The demo is local development: the Teams bot runs unauthenticated for the local Teams emulator,
            # talking only to loopback (the emulator's connector); anonymous mode logs its warning at start.
            settings.bot_allow_anonymous = True
            settings.bot_allow_http_loopback = True
            settings.bot_allowed_service_hosts = ["127.0.0.1", "localhost"]
        stand_ins = start_stand_ins()
        try:
            code = asyncio.run(_demo_setup(settings))
            if code:
                return code
            _serve(settings)
        finally:
            for process in stand_ins:
                process.terminate()
        return 0
    if args.command == "manifest":
        return build_app_package(settings, args.out)
    if args.command == "worker":
        if not asyncio.run(reach_database(settings, wait=args.wait_for_db)):
            return 3
        return asyncio.run(run_worker(settings, args.lease_seconds, args.concurrency, args.worker_id))
    return asyncio.run(_run_command(args, settings))


def build_app_package(settings: Settings, out: Path) -> int:
    """`slotwise manifest build`: the zip an admin uploads, filled from this deployment's settings."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    from manifest.build import PACKAGE_FILES, build_package, project_version

    if not settings.bot_app_id:
        print("slotwise manifest build: set SLOTWISE_BOT_APP_ID (the bot's Entra app id) first", file=sys.stderr)
        return 2
    version = settings.app_version or project_version()
    if version is None:
        try:
            version = installed_version("slotwise")
        except PackageNotFoundError:
            print("slotwise manifest build: set SLOTWISE_APP_VERSION (semver)", file=sys.stderr)
            return 2
    try:
        path = build_package(
            out,
            app_id=settings.app_package_id,
            bot_app_id=settings.bot_app_id,
            base_url=settings.base_url,
            version=version,
            addin_client_id=settings.addin_client_id,
            addin_app_id_uri=settings.addin_app_id_uri,
        )
    except ValueError as exc:
        print(f"slotwise manifest build: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({', '.join(PACKAGE_FILES)}) for {settings.base_url}, version {version}")
    return 0


def _serve(settings: Settings) -> None:
    """Run the web server until it is stopped; access logs carry route templates, never tokens."""
    web.run_app(
        create_app(settings), host=settings.host, port=settings.port, print=print, access_log_class=RouteAccessLogger
    )


async def reach_database(settings: Settings, *, wait: bool) -> bool:
    """Before serving: can the database be reached? If not, one clear line on stderr and False (the command exits
    non-zero), or, with `wait`, a line now and then until it answers. Once running, the process rides out outages."""
    database = open_database(settings)
    where = _without_password(database.url)
    delay = 1.0
    try:
        while True:
            try:
                await database.ping()
                return True
            except Exception as exc:
                if not is_database_fault(exc):
                    raise
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                if not wait:
                    print(
                        f"slotwise: cannot reach the database at {where} ({reason}); start it, or pass --wait-for-db",
                        file=sys.stderr,
                    )
                    return False
                print(f"slotwise: waiting for the database at {where} ({reason})", file=sys.stderr)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
    finally:
        await database.dispose()


def _without_password(url: str) -> str:
    """A database URL safe to print: the password (if any) replaced."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


async def run_worker(settings: Settings, lease_seconds: float, concurrency: int, worker_id: str | None) -> int:
    """A process that only works off the outbox; SIGTERM/SIGINT let in-flight steps finish, SIGKILL is survivable
    (its leases expire and another worker reclaims the steps)."""
    import signal

    database = open_database(settings)
    await database.migrate()
    vendor_limits = open_vendor_limits(database)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        notifier = None
        if settings.bot_app_id or settings.bot_allow_anonymous:
            notifier = create_notifier(bot_auth_settings(settings), SqlTeamsDirectory(database), vendor_limits)
        webhooks = WebhookPoster(allow_private=settings.webhooks_allow_private)
        adapters = TenantAdapters(
            database, SecretBox(settings.resolved_secret()), session, notifier, webhooks, vendor_limits
        )
        runner = Runner(
            database,
            build_handlers(database, adapters),
            worker_id=worker_id or f"{socket.gethostname()}:{os.getpid()}",
            concurrency=concurrency,
            lease=timedelta(seconds=lease_seconds),
            soft_dependency_grace=timedelta(seconds=settings.workflow_soft_dependency_grace_seconds),
        )
        log.info("worker %s started", runner.worker_id)
        try:
            # Once running, database outages and restarts are ridden out (backoff, one log line each way); only a
            # signal stops the worker.
            await runner.run_forever(stop)
        finally:
            await webhooks.close()
            if notifier is not None:
                await notifier.close()
            if isinstance(vendor_limits, PostgresVendorLimits):
                await vendor_limits.aclose()
    await database.dispose()
    return 0


# The demo's local stand-ins for the vendors: separate servers speaking the vendors' HTTP APIs (and SMTP), which our
# real clients reach over loopback. Ports and credentials match examples/demo.yaml. Each PSA and Graph stand-in also
# shares what it holds on a records port, and the SMTP stand-in spools what it receives, for the demo inspector
# (tests/fakes/demo_inspector.py): its inbox and records pages show what a booking produced.
DEMO_SPOOL = Path(__file__).resolve().parent / "var" / "demo-mail"
DEMO_INSPECTOR_PORT = 8126
DEMO_STAND_INS: tuple[tuple[str, int, str, tuple[str, ...]], ...] = (
    ("tests.fakes.connectwise", 8101, "ConnectWise PSA", ("--records-port", "8111")),
    ("tests.fakes.autotask", 8102, "Datto Autotask", ("--records-port", "8112")),
    ("tests.fakes.halopsa", 8103, "HaloPSA", ("--records-port", "8113")),
    # Alice has a profile photo in Microsoft 365, so her booking pages show it instead of initials.
    (
        "tests.fakes.graph",
        8104,
        "Microsoft Graph",
        ("--records-port", "8114", "--photo", "alice.adams@northwind.example"),
    ),
    ("tests.fakes.smtp", 8125, "SMTP", ("--spool", str(DEMO_SPOOL))),
    (
        "tests.fakes.demo_inspector",
        DEMO_INSPECTOR_PORT,
        "Demo inspector",
        (
            "--spool",
            str(DEMO_SPOOL),
            "--records",
            "ConnectWise PSA=http://127.0.0.1:8111/records",
            "--records",
            "Microsoft Graph=http://127.0.0.1:8114/records",
            "--records",
            "Datto Autotask=http://127.0.0.1:8112/records",
            "--records",
            "HaloPSA=http://127.0.0.1:8113/records",
        ),
    ),
)
DEMO_SECRETS = {
    "SLOTWISE_DEMO_CW_PRIVATE_KEY": "cwDemoPrivateKey01",
    "SLOTWISE_DEMO_CW_CLIENT_ID": "7a1f3c52-4b8e-4d2a-9c61-0e5b2f8d4a17",
    "SLOTWISE_DEMO_SMTP_PASSWORD": "demo-smtp-password",
    "SLOTWISE_DEMO_GRAPH_CLIENT_SECRET": "graph-demo-secret",
}


def start_stand_ins() -> list[subprocess.Popen[bytes]]:
    """Start every stand-in and wait until each accepts connections; a port already taken stops the demo."""
    for name, value in DEMO_SECRETS.items():
        os.environ.setdefault(name, value)
    processes: list[subprocess.Popen[bytes]] = []
    root = Path(__file__).resolve().parent
    for module, port, label, extra in DEMO_STAND_INS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"Port {port} is in use, so the {label} stand-in cannot start; free it and retry.")
        processes.append(
            subprocess.Popen(  # noqa: S603 (our own module, fixed arguments)
                [sys.executable, "-m", module, "--port", str(port), *extra], cwd=root, stdout=subprocess.DEVNULL
            )
        )
    deadline = time.monotonic() + 20
    for _module, port, label, _extra in DEMO_STAND_INS:
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"The {label} stand-in did not start on port {port}.")
            time.sleep(0.1)
        scheme = "smtp" if label == "SMTP" else "http"
        print(f"  stand-in  {label:<16} {scheme}://127.0.0.1:{port}")
    return processes


async def apply_tenant_file(database: Database, settings: Settings, path: Path, *, dry_run: bool) -> str:
    """Plan a tenant file (and its connections), and unless `dry_run`, test the connections and apply it all in
    one transaction. Returns the diff; raises RolloutError with every problem, having changed nothing."""
    from admin.connections import (
        connection_writer,
        plan_connections,
        resolve_psa_defaults,
        test_connections,
    )
    from admin.rollout import apply_plan, plan_changes
    from admin.tenant_file import RolloutError
    from admin.tenant_yaml import load_tenant_file

    file = load_tenant_file(path)
    box = SecretBox(settings.resolved_secret())
    plan = await plan_changes(database, file)
    connections = await plan_connections(database, file, os.environ, box=box)
    connection_lines = [change.render() for change in connections if change.action != "keep"]
    lines = [plan.render()] if plan.changes or plan.blockers or not connection_lines else []
    lines += connection_lines
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        if not dry_run:
            await test_connections(connections, session)
        defaults, problems = await resolve_psa_defaults(file, connections, session)
    if problems:
        if not dry_run:
            raise RolloutError(problems)
        lines += [f"  ! {problem}" for problem in problems]
    lines += defaults
    if not dry_run:
        await apply_plan(database, plan, extra_writes=connection_writer(connections, box))
        if plan.changes or connection_lines:
            lines.append("Applied.")
    return "\n".join(lines)


async def _demo_setup(settings: Settings) -> int:
    from admin.rollout import list_links
    from admin.tenant_file import RolloutError

    database = open_database(settings)
    try:
        await database.migrate()
        try:
            print(await apply_tenant_file(database, settings, DEMO_FILE, dry_run=False))
        except RolloutError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        print("\nDemo booking pages:")
        for link in await list_links(database, settings.base_url.rstrip("/"), "demo"):
            print(f"  {link['kind']:<9} {link['name']:<32} {link['url']}")
        inspector = f"http://127.0.0.1:{DEMO_INSPECTOR_PORT}"
        print("\nWhat bookings produce (emails as the client sees them; tickets, entries and events):")
        print(f"  inbox     {'Emails the demo sent':<32} {inspector}/inbox")
        print(f"  records   {'PSA and Microsoft 365 records':<32} {inspector}/records")
        if settings.bot_allow_anonymous:
            print("\nTeams bot (local development mode) at /api/messages. Talk to it as Alice in the Teams emulator:")
            endpoint = f"{settings.base_url.rstrip('/')}/api/messages"
            print(
                "  cd examples && APPLICATION_INSIGHTS_NO_STATSBEAT=true npx agentsplayground"
                f" -e {endpoint} -c msteams --disable-telemetry"
            )
        print()
    finally:
        await database.dispose()
    return 0


async def _run_command(args: argparse.Namespace, settings: Settings) -> int:
    from admin.rollout import list_links
    from admin.tenant_file import RolloutError, tenant_file_json_schema

    if args.command == "apply" and args.schema:
        print(json.dumps(tenant_file_json_schema(), indent=2))
        return 0
    database = open_database(settings)
    try:
        await database.migrate()
        if args.command == "migrate":
            print("Database is up to date.")
            return 0
        if args.command == "apply":
            if not args.file:
                print("slotwise apply: give a tenant file, or --schema", file=sys.stderr)
                return 2
            try:
                applied = await apply_tenant_file(database, settings, Path(args.file), dry_run=args.dry_run)
            except RolloutError as exc:
                print(str(exc), file=sys.stderr)
                return 1
            print(applied)
            return 0
        if args.command == "links":
            links = await list_links(database, settings.base_url.rstrip("/"), args.tenant)
            if args.json:
                print(json.dumps(links, indent=2))
            else:
                for link in links:
                    print(f"{link['tenant']:<12} {link['kind']:<9} {link['name']:<32} {link['url']}")
            return 0
        if args.command == "preview":
            from admin.preview import PreviewError, render_preview

            try:
                shown = await render_preview(
                    database, settings.base_url, args.tenant, args.type_slug, args.trigger, locale=args.locale
                )
            except PreviewError as exc:
                print(str(exc), file=sys.stderr)
                return 1
            suffix = f"-{args.locale}" if args.locale else ""
            out = Path(args.out or f"var/preview/{args.tenant}-{args.type_slug}-{args.trigger}{suffix}.html")
            out.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(out.write_text, shown.page, encoding="utf-8")
            print(f"{shown.subject}\n" + "".join(f"  {note}\n" for note in shown.notes) + f"Wrote {out}")
            return 0
        if args.command == "apikey":
            raw = await SqlAgentKeys(database).create_key(args.tenant, args.name, args.role)
            print(raw)
            return 0
    finally:
        await database.dispose()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
