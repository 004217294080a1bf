"""Prometheus metrics: the outbox read at scrape time, step outcomes and durations, bookings, HTTP latency by route.

Each app owns a `SlotwiseMetrics` with its own `CollectorRegistry` (not prometheus_client's global one), so several
apps in one test process never collide. Two kinds of numbers:

* Read from the database at every scrape: steps by state and the runner lag (the age of the oldest due step). They
  describe the shared database, so every process reports the same values; aggregate them with `max`, not `sum`.
* Counted in this process: step outcomes and durations (runner processes), bookings by event, HTTP latency. Sum them
  across processes as usual.

Labels never carry a raw path, a token or a tenant: routes are labelled by their template
(`/book/{tenant}/{type}/bookings`), steps by kind and vendor (`smtp`, `connectwise`, ...).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.engine import Connection

from storage.database import Database, is_database_fault
from workflows.outbox import Job, count_jobs_by_state, oldest_due_at
from workflows.steps import IntegrationsFor
from workflows.triggers import M365_KINDS, PSA_KINDS, ActionKind

log = logging.getLogger("slotwise.metrics")

BOOKING_EVENTS = ("client_scheduled", "rescheduled", "cancelled")

# Which connection a step kind talks to (workflows.triggers); the vendor then comes from the tenant's adapter for it.
# Adapter class -> vendor, by name, so this module imports no integration.
_VENDOR_BY_ADAPTER = {
    "ConnectWisePsa": "connectwise",
    "AutotaskPsa": "autotask",
    "HaloPsa": "halopsa",
    "GraphCalendar": "graph",
    "GraphMailer": "graph",
    "SmtpMailer": "smtp",
}
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class SlotwiseMetrics:
    """The metrics of one app (or one worker) and the registry they are exposed from."""

    def __init__(self, database: Database, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.database = database
        self.clock = clock
        self.registry = CollectorRegistry()
        self.step_outcomes = Counter(
            "slotwise_workflow_step_outcomes",
            "Recorded workflow step attempts by step kind, vendor and result (completed, retried, failed).",
            ["kind", "vendor", "result"],
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "slotwise_workflow_step_duration_seconds",
            "How long one step attempt ran (mostly the vendor calls), by step kind and vendor.",
            ["kind", "vendor"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.bookings = Counter(
            "slotwise_bookings", "Booking changes written by this process, by event.", ["event"], registry=self.registry
        )
        for event in BOOKING_EVENTS:
            self.bookings.labels(event=event)
        self.http_seconds = Histogram(
            "slotwise_http_request_duration_seconds",
            "HTTP request latency by method, route template (never the raw path) and status.",
            ["method", "route", "status"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.runner_stalled_seconds: Callable[[], float | None] = lambda: None
        """Set by a process that runs the workflow runner: how long its loop has been unable to use the database."""

    # -------------------------------------------------------------- what the runner and storage report

    def step_observer(self, integrations_for: IntegrationsFor) -> StepMetrics:
        return StepMetrics(self, integrations_for)

    def count_booking_changes(self, hook: Callable[..., None]) -> Callable[..., None]:
        """Wrap a storage change hook (`on_change`) so that every booking change it sees is counted by event.

        The hook runs inside the booking's transaction, so a change whose commit then fails is counted too; that
        is rare (the conflict checks run before the hook) and a counter may over-count, never under-count."""

        def counting(conn: Connection, trigger: str, *args: Any, **kwargs: Any) -> None:
            hook(conn, trigger, *args, **kwargs)
            self.bookings.labels(event=trigger).inc()

        return counting

    # -------------------------------------------------------------- exposition

    async def render(self) -> bytes:
        """Everything in the text format: this process's counters plus the outbox as the database shows it now."""
        now = self.clock()

        def read(conn: Connection) -> tuple[dict[str, int], datetime | None]:
            return count_jobs_by_state(conn), oldest_due_at(conn, now=now)

        families: list[Metric] = []
        up = GaugeMetricFamily("slotwise_database_up", "1 if the database answered this scrape, else 0.")
        try:
            states, oldest = await self.database.run_read(read)
        except Exception as exc:
            if not is_database_fault(exc):
                raise
            up.add_metric([], 0)
            families.append(up)
        else:
            up.add_metric([], 1)
            jobs = GaugeMetricFamily(
                "slotwise_workflow_jobs",
                "Workflow steps in the outbox by state (the whole database).",
                labels=["state"],
            )
            for state, count in sorted(states.items()):
                jobs.add_metric([state], count)
            lag = GaugeMetricFamily(
                "slotwise_workflow_runner_lag_seconds",
                "Age of the oldest due, unclaimed workflow step (0 when none is due).",
            )
            lag.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
            families += [up, jobs, lag]
        stalled = self.runner_stalled_seconds()
        if stalled is not None:
            runner = GaugeMetricFamily(
                "slotwise_workflow_runner_stalled_seconds",
                "How long this process's runner loop has been unable to use the database (0 when working).",
            )
            runner.add_metric([], stalled)
            families.append(runner)
        return generate_latest(self.registry) + generate_latest(_Snapshot(families))

    def handler(self, token: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        """GET /metrics, for a scraper that sends `Authorization: Bearer <token>`; anyone else gets 401."""
        expected = f"Bearer {token}".encode()

        async def metrics(request: web.Request) -> web.Response:
            given = request.headers.get("Authorization", "").encode()
            # Constant time, so the token cannot be found a byte at a time from response timings.
            if not hmac.compare_digest(given, expected):
                return web.Response(
                    status=401,
                    text="A bearer token is required.\n",
                    headers={"WWW-Authenticate": 'Bearer realm="slotwise-metrics"'},
                )
            response = web.Response(body=await self.render())
            response.headers["Content-Type"] = CONTENT_TYPE_LATEST
            response.headers["Cache-Control"] = "no-store"
            return response

        return metrics

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """Times every request, labelled by its route template; `<unmatched>` for a path no route knows."""

        @web.middleware
        async def http_latency(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                self.http_seconds.labels(
                    method=request.method, route=route_template(request), status=str(status)
                ).observe(time.perf_counter() - started)

        return http_latency


def route_template(request: web.Request) -> str:
    """The route's template (`/m/{token}`), never the path itself: paths carry link tokens."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "<unmatched>"


class StepMetrics:
    """The runner's `StepObserver`: counts outcomes and times attempts by step kind and vendor."""

    def __init__(self, metrics: SlotwiseMetrics, integrations_for: IntegrationsFor) -> None:
        self._metrics = metrics
        self._integrations_for = integrations_for

    async def vendor_of(self, job: Job) -> str:
        if job.kind == ActionKind.NOTIFY_HOST:
            return "teams"
        if job.kind not in PSA_KINDS and job.kind not in M365_KINDS and job.kind != ActionKind.SEND_EMAIL:
            return "none"
        # The tenant's adapters are cached by the caller (a minute), so this is a dictionary look-up per step.
        integrations = await self._integrations_for(job.tenant_id)
        if job.kind in PSA_KINDS:
            adapter: object = integrations.psa
        elif job.kind in M365_KINDS:
            adapter = integrations.calendar
        else:
            adapter = integrations.mailer
        if adapter is None:
            return "none"
        return _VENDOR_BY_ADAPTER.get(type(adapter).__name__, "other")

    def step_finished(self, job: Job, vendor: str, result: str, seconds: float) -> None:
        vendor = vendor or "unknown"
        self._metrics.step_outcomes.labels(kind=job.kind, vendor=vendor, result=result).inc()
        self._metrics.step_seconds.labels(kind=job.kind, vendor=vendor).observe(seconds)


class _Snapshot:
    """Families built for one scrape, in the shape `generate_latest` reads (anything with `collect`)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)
