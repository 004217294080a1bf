"""Rollout against a real SQLite database: dry-run diffs, idempotent apply, refusals, and the links it produces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from admin.rollout import Plan, apply_plan, list_links, plan_changes
from admin.tenant_file import RolloutError, TenantFile
from admin.tenant_yaml import load_tenant_file, parse_tenant_text
from scheduling.errors import NotFound
from scheduling.model import HostMode, LocationKind, SpanUnit
from storage.database import Database
from storage.repositories import SqlTenantCatalog, new_id
from storage.tables import metadata

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
DEMO_TEXT = DEMO.read_text()
CONFIG_TABLES = ("tenants", "users", "teams", "appointment_types", "bookings", "busy_cache")

SECOND_TENANT = """\
tenant: {slug: acme, name: Acme MSP, time_zone: Europe/Berlin}
users:
  - slug: alice-adams
    name: Alice Acme
    email: alice.adams@northwind.example
    time_zone: Europe/Berlin
    primary_calendar: m365
    working_hours: {mon: ["09:00-17:00"]}
teams:
  - {slug: helpdesk, name: Helpdesk, members: [alice-adams]}
appointment_types:
  - slug: discovery-call
    name: Acme discovery
    duration: 20
    location: {kind: teams}
    host: {team: helpdesk}
  - slug: acme-intro
    name: Acme intro
    duration: 15
    location: {kind: phone}
    host: {user: alice-adams}
"""


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path}/t.db")
    await db.migrate()
    yield db
    await db.dispose()


def demo_with(old: str, new: str) -> TenantFile:
    assert old in DEMO_TEXT
    return parse_tenant_text(DEMO_TEXT.replace(old, new, 1), "demo.yaml")


async def apply_file(database: Database, file: TenantFile) -> Plan:
    return await apply_plan(database, await plan_changes(database, file))


async def row_counts(database: Database) -> dict[str, int]:
    async with database.read() as conn:
        return {
            name: (await conn.execute(select(func.count()).select_from(metadata.tables[name]))).scalar_one()
            for name in CONFIG_TABLES
        }


async def ids_by_slug(database: Database, table: str) -> dict[str, str]:
    rows = metadata.tables[table]
    async with database.read() as conn:
        return dict((await conn.execute(select(rows.c.slug, rows.c.id))).all())


async def test_a_dry_run_against_an_empty_database_lists_creates_and_writes_nothing(database: Database) -> None:
    plan = await plan_changes(database, load_tenant_file(DEMO))
    lines = plan.render().splitlines()
    assert lines[0] == "+ tenant demo (Northwind IT (demo))"
    assert "+ user alice-adams (Alice Adams)" in lines
    assert "+ team sales (Sales)" in lines
    assert "+ appointment_type discovery-call (Discovery call)" in lines
    assert lines[-1] == "15 to create, 0 to update, 0 to delete."
    assert all(change.action == "create" for change in plan.changes)
    assert set((await row_counts(database)).values()) == {0}


async def test_applying_the_same_file_twice_leaves_no_changes(database: Database) -> None:
    demo = load_tenant_file(DEMO)
    applied = await apply_file(database, demo)
    assert len(applied.changes) == 15
    counts = await row_counts(database)
    assert counts["users"] == 7
    assert (await plan_changes(database, demo)).render() == "No changes."
    assert (await apply_file(database, load_tenant_file(DEMO))).render() == "No changes."
    assert await row_counts(database) == counts


async def test_applied_rows_read_back_through_the_booking_catalog(database: Database) -> None:
    await apply_file(database, load_tenant_file(DEMO))
    catalog = SqlTenantCatalog(database)

    discovery = await catalog.find_type_target("demo", "discovery-call")
    assert discovery is not None
    kind = discovery.appointment_type
    assert kind.mode is HostMode.ROUND_ROBIN
    assert [host.slug for host in discovery.hosts] == ["alice-adams", "ben-brooks", "chloe-clarke", "dev-desai"]
    assert kind.rules.duration == timedelta(minutes=30)
    assert kind.rules.buffer_before == timedelta(minutes=5)
    assert kind.rules.buffer_after == timedelta(minutes=10)
    assert (kind.rules.notice.amount, kind.rules.notice.unit) == (4, SpanUnit.BUSINESS_HOURS)
    assert kind.location.kind is LocationKind.TEAMS
    assert kind.internal_name == "Discovery call (round robin, sales)"
    assert [(q.key, q.required, q.multiline) for q in kind.questions] == [
        ("company", True, False),
        ("topics", False, True),
    ]
    assert date(2026, 12, 25) in discovery.holidays

    panel = await catalog.find_type_target("demo", "proposal-review")
    assert panel is not None
    assert panel.appointment_type.mode is HostMode.PANEL
    assert [host.slug for host in panel.hosts] == ["alice-adams", "ben-brooks", "maria-martinez"]
    assert panel.appointment_type.rules.notice.unit is SpanUnit.BUSINESS_DAYS

    emea = await catalog.find_type_target("demo", "emea-consultation")
    assert emea is not None
    # Defaults: internal name is the name, and the window is 60 days.
    assert emea.appointment_type.internal_name == "EMEA consultation"
    assert (emea.appointment_type.rules.window.amount, emea.appointment_type.rules.window.unit) == (60, SpanUnit.DAYS)

    page = await catalog.find_personal_page("demo", "alice-adams")
    assert page is not None
    alice, types = page
    assert [kind.slug for kind in types] == ["intro-call"]
    schedule = alice.schedule
    assert str(schedule.time_zone) == "America/New_York"
    assert schedule.intervals_on(date(2026, 12, 24))[0].ends.hour == 12
    assert schedule.intervals_on(date(2026, 12, 31)) == ()
    ben = await catalog.find_type_target("demo", "discovery-call")
    assert ben is not None
    saturday = next(host for host in ben.hosts if host.slug == "ben-brooks").schedule.weekly[5]
    assert [(interval.starts.hour, interval.ends.hour) for interval in saturday] == [(9, 12)]

    team_page = await catalog.find_team_page("demo", "sales")
    assert team_page is not None
    assert [kind.slug for kind in team_page[1]] == ["discovery-call"]


async def test_changing_a_duration_is_shown_with_old_and_new_minutes_and_keeps_the_row_id(database: Database) -> None:
    await apply_file(database, load_tenant_file(DEMO))
    before = await ids_by_slug(database, "appointment_types")
    longer = demo_with("    duration: 30\n    increment: 30\n", "    duration: 45\n    increment: 30\n")
    plan = await plan_changes(database, longer)
    assert plan.render().splitlines() == [
        "~ appointment_type discovery-call: duration_minutes 30 -> 45",
        "0 to create, 1 to update, 0 to delete.",
    ]
    await apply_plan(database, plan)
    assert await ids_by_slug(database, "appointment_types") == before
    target = await SqlTenantCatalog(database).find_type_target("demo", "discovery-call")
    assert target is not None
    assert target.appointment_type.rules.duration == timedelta(minutes=45)
    assert (await plan_changes(database, longer)).render() == "No changes."


async def test_changes_to_hosts_and_members_are_shown_by_slug(database: Database) -> None:
    await apply_file(database, load_tenant_file(DEMO))
    file = demo_with("host: {user: chloe-clarke}", "host: {user: dev-desai}")
    plan = await plan_changes(database, file)
    assert "~ appointment_type emea-consultation: host users [chloe-clarke] -> users [dev-desai]" in plan.render()
    file = demo_with("members: [sam-service]", "members: [sam-service, olivia-ops]")
    assert (
        "~ team service: member_ids [sam-service] -> [sam-service, olivia-ops]"
        in (await plan_changes(database, file)).render()
    )


async def test_removing_a_user_plans_a_delete_and_applying_removes_the_row(database: Database) -> None:
    await apply_file(database, load_tenant_file(DEMO))
    start = DEMO_TEXT.index("  - slug: olivia-ops")
    end = DEMO_TEXT.index("teams:")
    without_olivia = parse_tenant_text(DEMO_TEXT[:start] + DEMO_TEXT[end:])
    plan = await plan_changes(database, without_olivia)
    assert plan.render().splitlines() == ["- user olivia-ops", "0 to create, 0 to update, 1 to delete."]
    await apply_plan(database, plan)
    assert "olivia-ops" not in await ids_by_slug(database, "users")
    assert (await row_counts(database))["users"] == 6


async def test_two_users_can_swap_emails_in_one_apply(database: Database) -> None:
    await apply_file(database, load_tenant_file(DEMO))
    swapped = DEMO_TEXT.replace("alice.adams@", "SWAP@").replace("ben.brooks@", "alice.adams@")
    plan = await apply_file(database, parse_tenant_text(swapped.replace("SWAP@", "ben.brooks@")))
    assert [change.slug for change in plan.changes] == ["alice-adams", "ben-brooks"]


async def test_a_bad_file_changes_nothing(database: Database, tmp_path: Path) -> None:
    await apply_file(database, load_tenant_file(DEMO))
    counts = await row_counts(database)
    bad = tmp_path / "demo.yaml"
    bad.write_text(
        DEMO_TEXT.replace("duration: 15", "duration: 15\n    colour: blue").replace("- slug: olivia", "- slug: O")
    )
    with pytest.raises(RolloutError) as caught:
        await apply_file(database, load_tenant_file(bad))
    assert len(caught.value.messages) == 2
    assert await row_counts(database) == counts
    assert (await plan_changes(database, load_tenant_file(DEMO))).render() == "No changes."


async def book_intro_call(database: Database) -> None:
    """A real booking row for intro-call, written the way the booking store writes it."""
    types, tenants = metadata.tables["appointment_types"], metadata.tables["tenants"]
    async with database.write() as conn:
        tenant_id = (await conn.execute(select(tenants.c.id).where(tenants.c.slug == "demo"))).scalar_one()
        type_id = (
            await conn.execute(select(types.c.id).where(types.c.tenant_id == tenant_id, types.c.slug == "intro-call"))
        ).scalar_one()
        now = datetime.now(UTC)
        await conn.execute(
            metadata.tables["bookings"]
            .insert()
            .values(
                id=new_id(),
                tenant_id=tenant_id,
                type_id=type_id,
                request_id=None,
                starts_at=now + timedelta(days=2),
                ends_at=now + timedelta(days=2, minutes=15),
                status="confirmed",
                host_ids=[],
                client_name="Client",
                client_email="client@example.com",
                client_time_zone="UTC",
                answers={},
                guests=[],
                notes="",
                assignment_reason="",
                cancel_reason="",
                idempotency_key=None,
                created_at=now,
                updated_at=now,
            )
        )


async def test_deleting_an_appointment_type_with_bookings_is_refused_and_changes_nothing(database: Database) -> None:
    await apply_file(database, load_tenant_file(DEMO))
    await book_intro_call(database)
    counts = await row_counts(database)
    start = DEMO_TEXT.index("  - slug: intro-call")
    end = DEMO_TEXT.index("  - slug: emea-consultation")
    # Also rename a team, so a refused apply would have had something else to write.
    without_intro = parse_tenant_text((DEMO_TEXT[:start] + DEMO_TEXT[end:]).replace("name: Service Desk", "name: Help"))
    plan = await plan_changes(database, without_intro)
    assert "- appointment_type intro-call" in plan.render()
    assert "! appointment_type intro-call cannot be deleted: 1 booking(s)" in plan.render()
    with pytest.raises(RolloutError, match="intro-call cannot be deleted"):
        await apply_plan(database, plan)
    assert await row_counts(database) == counts
    assert (await plan_changes(database, load_tenant_file(DEMO))).render() == "No changes."


async def test_a_plan_made_before_someone_else_applied_is_refused(database: Database) -> None:
    await apply_file(database, load_tenant_file(DEMO))
    stale = await plan_changes(database, demo_with("name: Sales\n", "name: Sales EMEA\n"))
    await apply_file(database, demo_with("name: Service Desk", "name: Help"))
    with pytest.raises(RolloutError, match="the database changed since this plan was made"):
        await apply_plan(database, stale)
    team_names = metadata.tables["teams"]
    async with database.read() as conn:
        names = set((await conn.execute(select(team_names.c.name))).scalars())
    assert names == {"Sales", "Help"}


async def test_list_links_gives_shareable_personal_and_team_urls(database: Database) -> None:
    await apply_file(database, load_tenant_file(DEMO))
    links = await list_links(database, "https://book.example/", "demo")
    by_kind = {kind: [link for link in links if link["kind"] == kind] for kind in ("shareable", "personal", "team")}
    assert len(by_kind["shareable"]) == 5
    assert {
        "tenant": "demo",
        "kind": "shareable",
        "slug": "discovery-call",
        "name": "Discovery call",
        "url": "https://book.example/book/demo/discovery-call",
    } in links
    assert [link["url"] for link in by_kind["personal"]] == [
        "https://book.example/u/demo/alice-adams",
        "https://book.example/u/demo/chloe-clarke",
        "https://book.example/u/demo/sam-service",
    ]
    assert [link["url"] for link in by_kind["team"]] == ["https://book.example/t/demo/sales"]


async def test_the_tenant_filter_keeps_each_tenants_links_apart(database: Database) -> None:
    await apply_file(database, load_tenant_file(DEMO))
    await apply_file(database, parse_tenant_text(SECOND_TENANT))
    # Applying one tenant leaves the other untouched.
    assert (await plan_changes(database, load_tenant_file(DEMO))).render() == "No changes."

    demo_links = await list_links(database, "https://book.example", "demo")
    acme_links = await list_links(database, "https://book.example", "acme")
    assert {link["tenant"] for link in demo_links} == {"demo"}
    assert all("/demo/" in link["url"] for link in demo_links)
    assert {link["url"] for link in acme_links} == {
        "https://book.example/book/acme/discovery-call",
        "https://book.example/book/acme/acme-intro",
        "https://book.example/u/acme/alice-adams",
        "https://book.example/t/acme/helpdesk",
    }
    assert next(link for link in acme_links if link["slug"] == "discovery-call")["name"] == "Acme discovery"
    everything = await list_links(database, "https://book.example")
    assert len(everything) == len(demo_links) + len(acme_links)
    with pytest.raises(NotFound):
        await list_links(database, "https://book.example", "nobody")


WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WEBHOOK_TENANT = """\
tenant: {slug: hooks, name: Hooks MSP, time_zone: Europe/Berlin}
users:
  - slug: alice-adams
    name: Alice Hooks
    email: alice@hooks.example
    time_zone: Europe/Berlin
    primary_calendar: m365
    working_hours: {mon: ["09:00-17:00"]}
appointment_types:
  - slug: intro
    name: Intro
    duration: 20
    location: {kind: phone}
    host: {user: alice-adams}
    mode: workflow
    workflow:
      triggers:
        client_scheduled:
          - {action: post_webhook, url: "https://hooks.example.com/in"SECRET_FROM_ENV}
"""


def webhook_tenant(tmp_path: Path, variable: str | None = "HOOKS_WEBHOOK_SECRET") -> Path:
    path = tmp_path / "hooks.yaml"
    named = f", secret_from_env: {variable}" if variable else ""
    path.write_text(WEBHOOK_TENANT.replace("SECRET_FROM_ENV", named))
    return path


async def test_a_webhook_without_a_secret_is_refused_and_nothing_is_applied(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import apply_tenant_file
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    with pytest.raises(RolloutError, match="a webhook must be signed: add secret_from_env"):
        await apply_tenant_file(database, settings, webhook_tenant(tmp_path, None), dry_run=True)
    monkeypatch.delenv("HOOKS_WEBHOOK_SECRET", raising=False)
    with pytest.raises(
        RolloutError,
        match=r"appointment_types\[0\] \(intro\) workflow\.triggers\.client_scheduled\[0\]\.secret_from_env: "
        "environment variable HOOKS_WEBHOOK_SECRET is not set",
    ):
        await apply_tenant_file(database, settings, webhook_tenant(tmp_path), dry_run=False)
    monkeypatch.setenv("HOOKS_WEBHOOK_SECRET", "hunter2-not-a-standard-secret")
    with pytest.raises(RolloutError, match="starts with 'whsec_'") as refused:
        await apply_tenant_file(database, settings, webhook_tenant(tmp_path), dry_run=False)
    assert "hunter2" not in str(refused.value)
    assert (await row_counts(database))["tenants"] == 0


async def test_a_webhook_secret_is_read_at_apply_and_stored_encrypted(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from admin.connections import load_webhook_secrets
    from app import apply_tenant_file
    from storage.secrets import SecretBox
    from storage.tables import integration_connections, tenants
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    monkeypatch.setenv("HOOKS_WEBHOOK_SECRET", WEBHOOK_SECRET)
    applied = await apply_tenant_file(database, settings, webhook_tenant(tmp_path), dry_run=False)
    assert "+ integration webhooks (standard_webhooks): signing secrets from HOOKS_WEBHOOK_SECRET" in applied
    async with database.read() as conn:
        tenant_id = (await conn.execute(select(tenants.c.id).where(tenants.c.slug == "hooks"))).scalar_one()
        row = (await conn.execute(select(integration_connections))).mappings().one()
    assert row["kind"] == "webhooks"
    assert row["settings"] == {"variables": ["HOOKS_WEBHOOK_SECRET"]}
    assert WEBHOOK_SECRET not in row["secrets_token"]
    assert WEBHOOK_SECRET.removeprefix("whsec_") not in row["secrets_token"]
    box = SecretBox(settings.resolved_secret())
    assert await load_webhook_secrets(database, tenant_id, box) == {"HOOKS_WEBHOOK_SECRET": WEBHOOK_SECRET}
    assert "webhooks" not in await apply_tenant_file(database, settings, webhook_tenant(tmp_path), dry_run=False)
    rotated = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    monkeypatch.setenv("HOOKS_WEBHOOK_SECRET", rotated)
    again = await apply_tenant_file(database, settings, webhook_tenant(tmp_path), dry_run=False)
    assert "~ integration webhooks (standard_webhooks): secrets changed" in again
    assert await load_webhook_secrets(database, tenant_id, box) == {"HOOKS_WEBHOOK_SECRET": rotated}


async def test_a_teams_type_in_workflow_mode_without_a_microsoft_365_event_is_refused_naming_the_type() -> None:
    with pytest.raises(RolloutError) as refused:
        demo_with("          - {action: create_m365_event}\n", "")
    message = str(refused.value)
    assert "appointment_types[0].location: 'discovery-call' is a Teams meeting" in message
    assert "add {action: create_m365_event} to workflow.triggers.client_scheduled" in message


async def test_the_demos_round_robin_discovery_call_creates_its_teams_meeting() -> None:
    demo = load_tenant_file(DEMO)
    [discovery] = [kind for kind in demo.appointment_types if kind.slug == "discovery-call"]
    assert discovery.location.kind == "teams"
    assert discovery.host.host_mode == "round_robin"
    assert discovery.workflow is not None
    triggers = discovery.workflow["triggers"]
    assert {"action": "create_m365_event"} in triggers["client_scheduled"]
    assert {"action": "update_m365_event"} in triggers["rescheduled"]
    assert {"action": "cancel_m365_event"} in triggers["cancelled"]
