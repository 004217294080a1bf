"""The booking → workflow seam: inside the booking's own write transaction, enqueue the steps its workflow runs.

Because the jobs are inserted by the same transaction as the booking row (transactional outbox), a booking never
exists without its workflow and a job never exists without its booking, whatever crashes when.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from scheduling.model import Booking, LocationKind
from storage.tables import appointment_types, integration_connections, tenants, users
from workflows.outbox import enqueue_jobs, workflow_jobs
from workflows.triggers import Connected, Trigger, plan_jobs, workflow_for_type

ManageUrlFor = Callable[[Booking], str]


class BookingFanOut:
    """A storage change hook: `(conn, trigger, booking)` → jobs in the same transaction."""

    def __init__(self, manage_url_for: ManageUrlFor) -> None:
        self._manage_url_for = manage_url_for

    def __call__(self, conn: Connection, trigger: str, booking: Booking) -> None:
        event = Trigger(trigger)
        type_row = conn.execute(
            select(appointment_types.c.settings).where(
                appointment_types.c.tenant_id == booking.tenant_id, appointment_types.c.id == booking.type_id
            )
        ).first()
        if type_row is None:
            return
        settings: dict[str, Any] = type_row[0]
        connected = connected_systems(conn, booking.tenant_id)
        if settings.get("mode") != "workflow" and connected == Connected():
            # Classic mode with nothing connected plans no steps: skip the rest (this runs in every booking).
            return
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
        primary = hosts[0]["calendar"] if hosts else "m365"
        workflow, _mode = workflow_for_type(settings, primary, connected)
        if not workflow.actions_for(event):
            return
        occurrence = 1 + int(
            conn.execute(
                select(func.count(func.distinct(workflow_jobs.c.run_key))).where(
                    workflow_jobs.c.tenant_id == booking.tenant_id,
                    workflow_jobs.c.booking_id == booking.booking_id,
                    workflow_jobs.c.run_key.like(f"{booking.booking_id}:{event.value}:%"),
                )
            ).scalar_one()
        )
        tenant_name = conn.execute(select(tenants.c.name).where(tenants.c.id == booking.tenant_id)).scalar_one()
        location = settings.get("location", {})
        snapshot = {
            "id": booking.booking_id,
            "tenant_id": booking.tenant_id,
            "tenant_name": tenant_name,
            "type_name": settings.get("name", ""),
            "type_slug": settings.get("slug", ""),
            "starts_at": booking.starts_at.isoformat(),
            "ends_at": booking.ends_at.isoformat(),
            "status": booking.status.value,
            "cancel_reason": booking.cancel_reason,
            "sequence": occurrence if event is not Trigger.CLIENT_SCHEDULED else 0,
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
            },
            "manage_url": self._manage_url_for(booking),
        }
        jobs = plan_jobs(
            tenant_id=booking.tenant_id,
            booking_id=booking.booking_id,
            trigger=event,
            occurrence=occurrence,
            workflow=workflow,
            booking_snapshot=snapshot,
        )
        enqueue_jobs(conn, jobs)


def connected_systems(conn: Connection, tenant_id: str) -> Connected:
    query = select(integration_connections.c.kind, integration_connections.c.vendor).where(
        integration_connections.c.tenant_id == tenant_id
    )
    rows: dict[str, str] = {kind: vendor for kind, vendor in conn.execute(query)}  # noqa: C416 (rows, not pairs)
    return Connected(psa=rows.get("psa"), m365="m365" in rows, email="email" in rows)
