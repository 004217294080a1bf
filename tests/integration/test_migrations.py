"""Alembic builds the schema on SQLite and PostgreSQL, and `slotwise migrate` upgrades without losing rows."""

from __future__ import annotations

from sqlalchemy import inspect, text

from storage.database import Database, upgrade_to
from tests.conftest import FIXTURES, apply_file


async def test_migrate_upgrades_an_older_database_and_keeps_every_row(database: Database) -> None:
    async with database.write() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        for table in (
            "api_keys",
            "busy_cache",
            "scheduling_requests",
            "host_slots",
            "bookings",
            "appointment_types",
            "teams",
            "users",
            "tenants",
        ):
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    await upgrade_to(database, "0001")
    async with database.write() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenants (id, slug, name, default_time_zone, holidays) "
                "VALUES ('t1', 'old', 'Old Tenant', 'UTC', '[]')"
            )
        )
    await database.migrate()
    async with database.read() as conn:
        rows = (await conn.execute(text("SELECT slug, name, config_version, busy_version FROM tenants"))).all()
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert [tuple(row) for row in rows] == [("old", "Old Tenant", 0, 0)]
    assert version == "0002"
    # A tenant file applies cleanly on the upgraded schema, and migrating again changes nothing.
    await apply_file(database, FIXTURES / "tenant.yaml")
    await database.migrate()
    async with database.read() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM tenants"))).scalar_one() == 2


async def test_the_schema_has_the_no_double_booking_guard_of_its_database(database: Database) -> None:
    async with database.read() as conn:
        if database.is_sqlite:
            indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("host_slots"))
            guard = next(index for index in indexes if index["name"] == "uq_host_slots_active_start")
            assert guard["unique"]
        else:
            found = (
                await conn.execute(
                    text(
                        "SELECT conname FROM pg_constraint WHERE conname = 'ex_host_slots_no_overlap' AND contype = 'x'"
                    )
                )
            ).scalar_one_or_none()
            assert found == "ex_host_slots_no_overlap"
