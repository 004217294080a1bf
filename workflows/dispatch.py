"""The booking → workflow seam: inside the booking's own write transaction, enqueue the steps its workflow runs.

Because the jobs are inserted by the same transaction as the booking row (transactional outbox), a booking never
exists without its workflow and a job never exists without its booking, whatever crashes when.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from scheduling.model import Booking, LocationKind
from storage.tables import (
    appointment_types,
    bookings,
    integration_connections,
    scheduling_requests,
    tenants,
    users,
    workflow_jobs,
)
from workflows.outbox import (
    AVAILABLE,
    BLOCKED,
    CANCELLED,
    FAILED,
    RETRYABLE,
    WAITING,
    JobSpec,
    enqueue_jobs,
    settle_dependants,
)
from workflows.triggers import Connected, Trigger, WorkflowSpec, plan_jobs, plan_reminders, workflow_for_type

ManageUrlFor = Callable[[Booking], str]
_REMINDERS = Trigger.BEFORE_APPOINTMENT.value


def _system_now() -> datetime:
    return datetime.now(UTC)


class BookingFanOut:
    """A storage change hook: `(conn, trigger, booking)` → jobs in the same transaction.

    Besides the trigger's own run, a booking or a reschedule plans the `before_appointment` runs (reminders) due
    before the (new) start, and a reschedule or a cancellation first cancels the pending ones of the old time.
    `clock` says what "now" is when deciding which reminders are already too late."""

    def __init__(
        self,
        manage_url_for: ManageUrlFor,
        clock: Callable[[], datetime] = _system_now,
        *,
        host_url_for: ManageUrlFor | None = None,
    ) -> None:
        self._manage_url_for = manage_url_for
        self._host_url_for = host_url_for
        """The host's "Open booking" link (pages/links.py HostLinks); None leaves it out of the snapshot."""
        self._clock = clock

    def __call__(self, conn: Connection, trigger: str, booking: Booking, previous: Booking | None = None) -> None:
        event = Trigger(trigger)
        if event in (Trigger.RESCHEDULED, Trigger.CANCELLED):
            cancel_pending_reminders(conn, booking)
        if event is Trigger.CLIENT_SCHEDULED and booking.request_id is not None:
            # The client answered: the request's follow-ups stop, in the transaction that books.
            cancel_follow_ups(conn, booking.tenant_id, booking.request_id)
        settings = _type_settings(conn, booking)
        if settings is None:
            return
        connected = connected_systems(conn, booking.tenant_id)
        if settings.get("mode") != "workflow" and connected == Connected():
            # Classic mode with nothing connected plans no steps: skip the rest (this runs in every booking).
            return
        hosts = _hosts_of(conn, booking)
        primary = hosts[0]["calendar"] if hosts else "m365"
        workflow, _mode = workflow_for_type(settings, primary, connected)
        if workflow.actions_for(event):
            self._enqueue_run(conn, event, booking, previous, settings, hosts, workflow)
        if event in (Trigger.CLIENT_SCHEDULED, Trigger.RESCHEDULED) and workflow.actions_for(
            Trigger.BEFORE_APPOINTMENT
        ):
            snapshot = self._snapshot(conn, booking, settings, hosts)
            reminders = plan_reminders(
                tenant_id=booking.tenant_id,
                booking_id=booking.booking_id,
                version=booking.version,
                workflow=workflow,
                booking_snapshot=snapshot,
                starts_at=booking.starts_at,
                now=self._clock(),
            )
            enqueue_jobs(conn, reminders)

    def _enqueue_run(
        self,
        conn: Connection,
        event: Trigger,
        booking: Booking,
        previous: Booking | None,
        settings: dict[str, Any],
        hosts: list[dict[str, Any]],
        workflow: WorkflowSpec,
    ) -> None:
        occurrence = _next_occurrence(conn, booking, event.value)
        snapshot = self._snapshot(conn, booking, settings, hosts)
        if previous is not None:
            snapshot["previous_starts_at"] = previous.starts_at.isoformat()
            snapshot["previous_ends_at"] = previous.ends_at.isoformat()
        jobs = plan_jobs(
            tenant_id=booking.tenant_id,
            booking_id=booking.booking_id,
            trigger=event,
            occurrence=occurrence,
            workflow=workflow,
            booking_snapshot=snapshot,
            earlier_steps=_earlier_steps(conn, booking),
        )
        enqueue_jobs(conn, jobs)

    def _snapshot(
        self,
        conn: Connection,
        booking: Booking,
        settings: dict[str, Any],
        hosts: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The booking as steps see it, frozen in the transaction that changed it."""
        tenant = conn.execute(select(tenants).where(tenants.c.id == booking.tenant_id)).one()._mapping
        location = settings.get("location", {})
        return {
            "id": booking.booking_id,
            "tenant_id": booking.tenant_id,
            "tenant_name": tenant["name"],
            # Branding (display name, logo, accent) where the tenant file sets it; emails fall back to plain defaults.
            "branding": dict(tenant.get("branding") or {}),
            "type_name": settings.get("name", ""),
            "type_slug": settings.get("slug", ""),
            "starts_at": booking.starts_at.isoformat(),
            "ends_at": booking.ends_at.isoformat(),
            "status": booking.status.value,
            "cancel_reason": booking.cancel_reason,
            # RFC 5545 §3.8.7.4: SEQUENCE rises with every revision of the event. The booking's version counts its
            # changes (1 when made, +1 per reschedule or cancel), so the invite of any change, reminder or resend
            # carries the revision the booking is at; counting runs per trigger once sent a cancel after two
            # reschedules as SEQUENCE 1, which calendars ignore.
            "sequence": booking.version - 1,
            "host_mode": _host_mode(settings),
            "questions": [
                {"key": str(question.get("key", "")), "label": str(question.get("label", ""))}
                for question in settings.get("questions") or ()
                if isinstance(question, dict)
            ],
            "location_kind": location.get("kind", LocationKind.CUSTOM.value),
            "location": location.get("detail", "") or location.get("kind", ""),
            "hosts": [{key: value for key, value in host.items() if key != "calendar"} for host in hosts],
            "client": {
                "name": booking.client.name,
                "email": booking.client.email,
                "time_zone": booking.client.time_zone,
                "answers": dict(booking.client.answers),
                "guests": list(booking.client.guests),
                "notes": booking.client.notes,
                # The language the client booked in; every email about the booking is written in it (bookings made
                # before it was kept: the tenant's default).
                "locale": booking.client.locale or tenant.get("default_locale") or "",
            },
            "manage_url": self._manage_url_for(booking),
            **({"host_url": self._host_url_for(booking)} if self._host_url_for is not None else {}),
            **_request_records(conn, booking),
        }

    def reschedule_link_jobs(
        self, conn: Connection, booking: Booking, requested_by: str, *, quiet_since: datetime | None = None
    ) -> list[JobSpec]:
        """One email step asking the client to pick a new time with their manage link; runs through the outbox
        like any workflow step, so it is retried, logged and visible. Raises NoEmailConnection when the tenant
        cannot email clients, and AlreadyRequested when such an email was queued at or after `quiet_since`.

        That check runs under a lock on the booking's row (PostgreSQL; SQLite has one writer), so two app processes
        answering two presses of "Send reschedule link" at once queue one email between them, not one each.
        """
        if not connected_systems(conn, booking.tenant_id).email:
            raise NoEmailConnection("This tenant has no email connection, so Slotwise cannot email the client")
        if quiet_since is not None:
            conn.execute(
                select(bookings.c.id)
                .where(bookings.c.tenant_id == booking.tenant_id, bookings.c.id == booking.booking_id)
                .with_for_update()
            )
            earlier = conn.execute(
                select(func.max(workflow_jobs.c.created_at)).where(
                    workflow_jobs.c.tenant_id == booking.tenant_id,
                    workflow_jobs.c.booking_id == booking.booking_id,
                    workflow_jobs.c.run_key.startswith(
                        f"{booking.booking_id}:{RESCHEDULE_REQUESTED}:", autoescape=True
                    ),
                    workflow_jobs.c.created_at >= quiet_since,
                )
            ).scalar_one_or_none()
            if isinstance(earlier, datetime):
                raise AlreadyRequested(earlier if earlier.tzinfo else earlier.replace(tzinfo=UTC))
        settings = _type_settings(conn, booking) or {}
        hosts = _hosts_of(conn, booking)
        occurrence = _next_occurrence(conn, booking, RESCHEDULE_REQUESTED)
        snapshot = self._snapshot(conn, booking, settings, hosts)
        run_key = f"{booking.booking_id}:{RESCHEDULE_REQUESTED}:{occurrence}"
        action = {
            "action": "send_email",
            # Our default "pick a new time" email (workflows/templates.py), written in the client's language.
            "template": "default",
            "recipients": "client",
            "requested_by": requested_by,
        }
        return [
            JobSpec(
                tenant_id=booking.tenant_id,
                run_key=run_key,
                step=0,
                kind="send_email",
                idempotency_key=f"{run_key}:0:send_email",
                payload={"action": action, "booking": snapshot},
                booking_id=booking.booking_id,
                # It quotes no step's output, so nothing holds it up.
                depends_on=(),
            )
        ]


RESCHEDULE_REQUESTED = "reschedule_requested"


class NoEmailConnection(Exception):
    """The tenant has no way to email clients."""


class AlreadyRequested(Exception):
    """A reschedule-link email for this booking was queued a moment ago (at `at`)."""

    def __init__(self, at: datetime) -> None:
        super().__init__(f"already requested at {at.isoformat()}")
        self.at = at


def cancel_pending_reminders(conn: Connection, booking: Booking) -> int:
    """Cancel the booking's reminder runs planned for an earlier version (its old time), except steps already
    running or done; returns how many. A retried request for the current version keeps the reminders it planned."""
    jobs = workflow_jobs.c
    prefix = f"{booking.booking_id}:{_REMINDERS}:"
    now = _system_now()
    cancelled = conn.execute(
        update(workflow_jobs)
        .where(
            jobs.tenant_id == booking.tenant_id,
            jobs.booking_id == booking.booking_id,
            jobs.run_key.like(f"{prefix}%"),
            jobs.run_key.not_like(f"{prefix}{booking.version}:%"),
            jobs.state.in_((WAITING, AVAILABLE, RETRYABLE, FAILED, BLOCKED)),
        )
        .values(state=CANCELLED, updated_at=now)
        .returning(jobs.tenant_id, jobs.booking_id, jobs.run_key)
    ).all()
    if cancelled:
        settle_dependants(conn, {(row.tenant_id, row.booking_id, row.run_key) for row in cancelled}, now=now)
    return len(cancelled)


def _host_mode(settings: dict[str, Any]) -> str:
    """'user', 'round_robin' or 'panel', as the type's stored host document says (admin/rollout.py)."""
    host = settings.get("host") or {}
    if host.get("team_id"):
        return "round_robin"
    return "panel" if len(host.get("user_ids") or ()) > 1 else "user"


def cancel_follow_ups(conn: Connection, tenant_id: str, request_id: str) -> int:
    """Cancel a scheduling request's `no_response` runs that have not started; returns how many steps."""
    jobs = workflow_jobs.c
    now = _system_now()
    cancelled = conn.execute(
        update(workflow_jobs)
        .where(
            jobs.tenant_id == tenant_id,
            jobs.booking_id == request_id,
            jobs.run_key.like(f"{request_id}:{Trigger.NO_RESPONSE.value}:%"),
            jobs.state.in_((WAITING, AVAILABLE, RETRYABLE, BLOCKED)),
        )
        .values(state=CANCELLED, updated_at=now)
        .returning(jobs.tenant_id, jobs.booking_id, jobs.run_key)
    ).all()
    if cancelled:
        settle_dependants(conn, {(row.tenant_id, row.booking_id, row.run_key) for row in cancelled}, now=now)
    return len(cancelled)


def _type_settings(conn: Connection, booking: Booking) -> dict[str, Any] | None:
    """The booking's appointment type as the tenant file set it (None if the type is gone)."""
    row = conn.execute(
        select(appointment_types.c.settings).where(
            appointment_types.c.tenant_id == booking.tenant_id, appointment_types.c.id == booking.type_id
        )
    ).first()
    return dict(row[0]) if row is not None else None


def _request_records(conn: Connection, booking: Booking) -> dict[str, Any]:
    """The PSA records the booking's scheduling request names, for the snapshot the steps read
    (workflows/steps.py, StepContext): `{"ticket": {"id", "number"}}` when the request is bound to a ticket (the
    steps act on it instead of creating one), and `{"psa_binding": ...}` when a rep bound the link to a PSA contact
    and opportunity (the steps use them instead of finding or creating their own)."""
    if booking.request_id is None:
        return {}
    row = conn.execute(
        select(
            scheduling_requests.c.ticket_id, scheduling_requests.c.ticket_number, scheduling_requests.c.psa_binding
        ).where(scheduling_requests.c.tenant_id == booking.tenant_id, scheduling_requests.c.id == booking.request_id)
    ).first()
    if row is None:
        return {}
    records: dict[str, Any] = {}
    if row.ticket_id:
        records["ticket"] = {"id": str(row.ticket_id), "number": str(row.ticket_number or row.ticket_id)}
    if row.psa_binding:
        records["psa_binding"] = dict(row.psa_binding)
    return records


def _hosts_of(conn: Connection, booking: Booking) -> list[dict[str, Any]]:
    hosts = [
        {
            "user_id": row.id,
            "name": row.name,
            "email": row.email,
            "psa_member": row.psa_member,
            "calendar": row.primary_calendar,
        }
        for row in conn.execute(
            select(users.c.id, users.c.name, users.c.email, users.c.psa_member, users.c.primary_calendar).where(
                users.c.tenant_id == booking.tenant_id, users.c.id.in_(booking.host_ids)
            )
        )
    ]
    hosts.sort(key=lambda host: booking.host_ids.index(host["user_id"]))
    return hosts


def _earlier_steps(conn: Connection, booking: Booking) -> list[tuple[str, int, str]]:
    """The booking's steps already enqueued, (run key, step, action), oldest first: a new run's steps wait for the
    ones acting on the same records (a move waits for the create)."""
    jobs = workflow_jobs.c
    return [
        (str(row.run_key), int(row.step), str(row.kind))
        for row in conn.execute(
            select(jobs.run_key, jobs.step, jobs.kind)
            .where(
                jobs.tenant_id == booking.tenant_id,
                jobs.booking_id == booking.booking_id,
                # Reminders act at their own time; nothing the booking does later waits for them.
                jobs.run_key.not_like(f"{booking.booking_id}:{_REMINDERS}:%"),
            )
            .order_by(jobs.id)
        )
    ]


def _next_occurrence(conn: Connection, booking: Booking, event: str) -> int:
    return 1 + int(
        conn.execute(
            select(func.count(func.distinct(workflow_jobs.c.run_key))).where(
                workflow_jobs.c.tenant_id == booking.tenant_id,
                workflow_jobs.c.booking_id == booking.booking_id,
                workflow_jobs.c.run_key.like(f"{booking.booking_id}:{event}:%"),
            )
        ).scalar_one()
    )


def connected_systems(conn: Connection, tenant_id: str) -> Connected:
    query = select(integration_connections.c.kind, integration_connections.c.vendor).where(
        integration_connections.c.tenant_id == tenant_id
    )
    rows: dict[str, str] = {kind: vendor for kind, vendor in conn.execute(query)}  # noqa: C416 (rows, not pairs)
    microsoft_tenant = conn.execute(select(tenants.c.microsoft_tenant_id).where(tenants.c.id == tenant_id)).scalar()
    return Connected(psa=rows.get("psa"), m365="m365" in rows, email="email" in rows, teams=bool(microsoft_tenant))
