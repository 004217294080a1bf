"""Who is talking to the bot: the Teams caller read from the activity, and the zone their cards are shown in.

The Microsoft 365 tenant comes from the activity (`conversation.tenantId`, else `channelData.tenant.id`); with
authentication on, the activity itself has been checked against the channel's signed token before we read it, an
activity naming two different tenants has been refused, and a single-tenant bot has refused every tenant but its
own (bot/auth.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


@dataclass(frozen=True, slots=True)
class TeamsCaller:
    microsoft_tenant_id: str
    aad_object_id: str | None
    channel_user_id: str
    name: str
    time_zone: str | None
    """The IANA zone the Teams client reported (clientInfo entity or localTimezone), if valid."""


def _text(value: Any, limit: int = 200) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def caller_from_activity(activity: Mapping[str, Any]) -> TeamsCaller:
    sender = _object(activity.get("from"))
    conversation = _object(activity.get("conversation"))
    tenant = _object(_object(activity.get("channelData")).get("tenant"))
    microsoft_tenant_id = _text(conversation.get("tenantId"), 64) or _text(tenant.get("id"), 64)
    zone = None
    entities = activity.get("entities")
    for entity in entities if isinstance(entities, list) else []:
        if isinstance(entity, dict) and entity.get("type") == "clientInfo":
            zone = _valid_zone(entity.get("timezone"))
    zone = zone or _valid_zone(activity.get("localTimezone"))
    return TeamsCaller(
        microsoft_tenant_id=microsoft_tenant_id.strip().lower(),
        aad_object_id=_text(sender.get("aadObjectId"), 64) or None,
        channel_user_id=_text(sender.get("id"), 200),
        name=_text(sender.get("name")),
        time_zone=zone,
    )


@functools.cache
def _iana_zones() -> frozenset[str]:
    """Every zone name the tz database has (system zoneinfo or the tzdata package), read once per process."""
    return frozenset(available_timezones())


def _valid_zone(value: Any) -> str | None:
    """`value` if it names a real IANA zone, else None.

    Teams clients report whatever the device says, and `ZoneInfo` is a file lookup: "America" is a tzdata folder
    (IsADirectoryError), "zone.tab" a data file (ValueError), "" or "../x" an invalid key (ValueError). Checking
    the name against the database's list first keeps untrusted input away from the filesystem; anything
    `ZoneInfo` still raises is a bad zone too."""
    if not isinstance(value, str) or not value or len(value) > 64 or value not in _iana_zones():
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return value


def zone_for(reported: str | None, profile: str) -> ZoneInfo:
    """The zone to show times in: what Teams reports for the user, else their Slotwise profile, else UTC."""
    for candidate in (reported, profile):
        zone = _valid_zone(candidate)
        if zone is not None:
            return ZoneInfo(zone)
    return ZoneInfo("UTC")
