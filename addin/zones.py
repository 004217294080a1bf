"""The recipient's time zone as an IANA zone, whatever Outlook or the rep typed.

`Office.context.mailbox.userProfile.timeZone` is a Windows zone name ("GMT Standard Time"), not an IANA one
(https://learn.microsoft.com/javascript/api/outlook/office.userprofile). The mapping is CLDR's windowsZones table as
tzlocal ships it (`tzlocal.windows_tz.win_tz`, regenerated from CLDR on each release), not a copy of our own."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import win_tz


def zone_named(name: str) -> ZoneInfo | None:
    """The zone an IANA name ("Europe/London") or a Windows name ("GMT Standard Time") stands for; None if neither."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 64 or "\x00" in cleaned or ".." in cleaned or cleaned.startswith("/"):
        return None
    windows = win_tz.get(cleaned)
    if windows is not None:
        return ZoneInfo(windows)
    try:
        return ZoneInfo(cleaned)
    except (ZoneInfoNotFoundError, ValueError):
        return None
