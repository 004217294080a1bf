"""Alembic builds the schema on SQLite and PostgreSQL, and `slotwise migrate` upgrades without losing rows."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

from storage.database import Database, alembic_config, upgrade_to
from tests.conftest import FIXTURES, apply_file


def _drop_every_table(sync: Connection) -> None:
    existing = MetaData()
    existing.reflect(sync)
    existing.drop_all(sync)


async def test_migrate_upgrades_an_older_database_and_keeps_every_row(database: Database) -> None:
    # Start from an empty database, then build the oldest schema and put a row in it.
    async with database.engine.begin() as conn:
        await conn.run_sync(_drop_every_table)
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
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
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
