"""Which vendors each kind of connection supports, their config models, and how to build and test an adapter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import BaseModel

from integrations.mail.adapter import SmtpMailer
from integrations.mail.config import SmtpConfig
from scheduling.ports import VendorLimits


@dataclass(frozen=True)
class VendorEntry:
    kind: str
    """'psa', 'm365' or 'email'."""
    vendor: str
    config_model: type[BaseModel]
    secret_fields: tuple[str, ...]
    build: Callable[..., Any]
    """(validated config, shared HTTP session, limits: VendorLimits | None = None) -> the adapter. The composition
    root passes one limits object for the whole process (in memory on SQLite, in the database on PostgreSQL), so the
    vendors' limits are counted across tenants' rebuilt adapters and across processes."""
    check: Callable[[Any, aiohttp.ClientSession], Awaitable[None]]
    """Proves the connection works, raising our integration errors if it does not."""


async def _check_smtp(config: SmtpConfig, _session: aiohttp.ClientSession) -> None:
    await SmtpMailer(config).check()


REGISTRY: dict[tuple[str, str], VendorEntry] = {
    ("email", "smtp"): VendorEntry(
        kind="email",
        vendor="smtp",
        config_model=SmtpConfig,
        secret_fields=("password",),
        build=lambda config, _session, _limits=None: SmtpMailer(config),
        check=_check_smtp,
    ),
}


def register(entry: VendorEntry) -> None:
    REGISTRY[(entry.kind, entry.vendor)] = entry


def vendors_for(kind: str) -> list[str]:
    return sorted(vendor for entry_kind, vendor in REGISTRY if entry_kind == kind)


def validate_config(kind: str, vendor: str, values: Mapping[str, Any]) -> BaseModel:
    """The vendor's config model from settings plus resolved secrets; raises KeyError for an unknown vendor and
    pydantic's ValidationError for bad fields."""
    return REGISTRY[(kind, vendor)].config_model.model_validate(dict(values))


def _psa_entry(vendor: str, config_model: type[BaseModel], secrets: tuple[str, ...], adapter: Any) -> VendorEntry:
    async def check(config: Any, session: aiohttp.ClientSession) -> None:
        await adapter(config, session).test_connection()

    def build(config: Any, session: aiohttp.ClientSession, limits: VendorLimits | None = None) -> Any:
        return adapter(config, session, limits=limits)

    return VendorEntry("psa", vendor, config_model, secrets, build, check)


class GraphConnection:
    """Microsoft 365 for one tenant: the calendar writer, the busy source and the profile photos share one
    GraphClient, so together they never exceed Graph's four concurrent requests per mailbox."""

    def __init__(self, config: Any, limits: VendorLimits | None = None) -> None:
        from integrations.graph.adapter import GraphBusySource, GraphCalendar, GraphProfilePhotos
        from integrations.graph.client import GraphClient

        self.client = GraphClient(config, limits=limits)
        self._calendar = GraphCalendar(self.client)
        self._busy = GraphBusySource(self.client)
        self._photos = GraphProfilePhotos(self.client)

    async def create_event(self, mailbox: str, draft: Any) -> Any:
        return await self._calendar.create_event(mailbox, draft)

    async def move_event(self, mailbox: str, event_id: str, starts_at: Any, ends_at: Any) -> None:
        await self._calendar.move_event(mailbox, event_id, starts_at, ends_at)

    async def cancel_event(self, mailbox: str, event_id: str, comment: str) -> None:
        await self._calendar.cancel_event(mailbox, event_id, comment)

    async def busy_times(self, mailboxes: Any, starts_at: Any, ends_at: Any) -> Any:
        return await self._busy.busy_times(mailboxes, starts_at, ends_at)

    async def profile_photo(self, mailbox: str) -> bytes | None:
        return await self._photos.profile_photo(mailbox)

    async def check(self) -> None:
        await self._calendar.check()

    async def aclose(self) -> None:
        await self.client.aclose()


async def _check_graph(config: Any, _session: aiohttp.ClientSession) -> None:
    connection = GraphConnection(config)
    try:
        await connection.check()
    finally:
        await connection.aclose()


async def _check_graph_mail(config: Any, _session: aiohttp.ClientSession) -> None:
    from integrations.graph.adapter import GraphMailer

    mailer = GraphMailer.from_config(config)
    await mailer.check()


def _register_vendors() -> None:
    from integrations.autotask.adapter import AutotaskPsa
    from integrations.autotask.config import AutotaskConfig
    from integrations.connectwise.adapter import ConnectWisePsa
    from integrations.connectwise.config import ConnectWiseConfig
    from integrations.graph.adapter import GraphMailer
    from integrations.graph.config import GraphConfig
    from integrations.halopsa.adapter import HaloPsa
    from integrations.halopsa.config import HaloPsaConfig

    register(_psa_entry("halopsa", HaloPsaConfig, ("client_secret",), HaloPsa))
    register(_psa_entry("autotask", AutotaskConfig, ("secret", "integration_code"), AutotaskPsa))
    register(_psa_entry("connectwise", ConnectWiseConfig, ("private_key", "client_id"), ConnectWisePsa))
    register(
        VendorEntry(
            "m365",
            "graph",
            GraphConfig,
            ("client_secret",),
            lambda c, _s, limits=None: GraphConnection(c, limits),
            _check_graph,
        )
    )
    register(
        VendorEntry(
            "email",
            "graph",
            GraphConfig,
            ("client_secret",),
            lambda c, _s, limits=None: GraphMailer.from_config(c, limits),
            _check_graph_mail,
        )
    )


_register_vendors()
