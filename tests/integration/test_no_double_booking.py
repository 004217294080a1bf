"""No double booking, ever: hundreds of concurrent POSTs for one slot over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

from storage.database import Database
from storage.tables import BookingRow, HostSlotRow
from tests.conftest import FixedClock, start_client
from tests.integration.test_booking_api import booking_body

CONCURRENT = 200


async def fire(base: str, path: str, bodies: list[dict[str, object]]) -> Counter[int]:
    """Open every connection first, then release all requests at once through one event."""
    gate = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: dict[str, object]) -> int:
            await gate.wait()
            async with session.post(f"{base}{path}", json=body) as response:
                await response.read()
                return response.status

        tasks = [asyncio.create_task(one(body)) for body in bodies]
        await asyncio.sleep(0.05)
        gate.set()
        return Counter(await asyncio.gather(*tasks))


async def test_200_concurrent_bookings_of_one_slot_make_exactly_one_booking(
    tenant_db: Database, tmp_path: Path, clock: FixedClock
) -> None:
    client = await start_client(tenant_db, tmp_path, clock)
    try:
        base = str(client.make_url("")).rstrip("/")
        bodies = [booking_body("2026-11-24T15:00:00+00:00", email=f"c{i}@client.test") for i in range(CONCURRENT)]
        statuses = await fire(base, "/book/acme/intro-call/bookings", bodies)
        assert statuses == Counter({201: 1, 409: CONCURRENT - 1}), statuses
        async with tenant_db.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(BookingRow))).scalar_one() == 1
            assert (await conn.execute(select(func.count()).select_from(HostSlotRow))).scalar_one() == 1
    finally:
        await client.close()


async def test_concurrent_round_robin_bookings_fill_each_free_member_exactly_once(
    tenant_db: Database, tmp_path: Path, clock: FixedClock
) -> None:
    client = await start_client(tenant_db, tmp_path, clock)
    try:
        base = str(client.make_url("")).rstrip("/")
        bodies = [
            booking_body("2026-11-24T16:00:00+00:00", email=f"c{i}@client.test", answers={}) for i in range(CONCURRENT)
        ]
        statuses = await fire(base, "/book/acme/demo/bookings", bodies)
        assert statuses == Counter({201: 2, 409: CONCURRENT - 2}), statuses
        async with tenant_db.read() as conn:
            hosts = (await conn.execute(select(HostSlotRow.user_id))).scalars().all()
        assert len(hosts) == 2
        assert len(set(hosts)) == 2
    finally:
        await client.close()
