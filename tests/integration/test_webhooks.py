"""The post_webhook step: Standard Webhooks signatures checked by an independent implementation (the
`standardwebhooks` package) at a real HTTPS receiver on loopback; addresses that are not public refused before any
connection; retries on 429/5xx honouring Retry-After through the runner; other 4xx failed visibly.

Names resolve through an injected resolver, so no test ever resolves through real DNS or sends traffic anywhere but
127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook

from scheduling.errors import IntegrationRejected
from storage.database import Database
from storage.tables import tenants
from tests.conftest import FixedClock
from workflows.outbox import COMPLETED, FAILED, RETRYABLE, Job, JobSpec, enqueue_jobs, list_runs
from workflows.runner import Runner
from workflows.steps import StepContext, TenantIntegrations
from workflows.webhooks import WebhookPoster, WebhookSender, post_webhook, refusal_reason

TENANT = "tenant-hooks"
HOOK_HOST = "hooks.example.test"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the specification's example secret
VARIABLE = "ACME_WEBHOOK_SECRET"


@dataclass(frozen=True)
class IntegrationsWithWebhooks(TenantIntegrations):
    """TenantIntegrations with the webhook sender the composition root gives every tenant."""

    webhooks: WebhookSender | None = None


@dataclass
class RecordingResolver(AbstractResolver):
    """Answers from a fixed table (a list of answers per name is used in turn, the last one repeating)."""

    answers: dict[str, list[list[str]]]
    calls: list[str] = field(default_factory=list)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        answers = self.answers.get(host)
        if not answers:
            raise OSError(f"unknown test host {host}")
        addresses = answers[min(len(self.calls) - 1, len(answers) - 1)] if len(answers) > 1 else answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


@dataclass
class Receiver:
    """A webhook receiver over HTTPS on 127.0.0.1 that verifies every delivery with `standardwebhooks`."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        headers = dict(request.headers)
        self.headers.append(headers)
        self.deliveries.append(Webhook(SECRET).verify(body, headers))
        status, extra = self.answers.pop(0) if self.answers else (204, {})
        return web.Response(status=status, headers=extra)


def write_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Webhook receiver (loopback)")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(HOOK_HOST), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "receiver.crt", directory / "receiver.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, ssl.SSLContext]]:
    cert_path, key_path = write_certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_path, key_path)
    client_tls = ssl.create_default_context(cafile=str(cert_path))
    state = Receiver()
    app = web.Application()
    app.router.add_post("/hook", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=server_tls)
    assert server.port is not None
    state.port = server.port
    yield state, client_tls
    await server.close()


@dataclass
class ConnectionTrace:
    """Every connection and request the poster starts (there must be none for a refused address)."""

    connections: int = 0
    requests: int = 0

    def config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()

        async def on_connection(*_args: Any) -> None:
            self.connections += 1

        async def on_request(*_args: Any) -> None:
            self.requests += 1

        trace.on_connection_create_start.append(on_connection)
        trace.on_request_start.append(on_request)
        return trace


def webhook_job(url: str, *, variable: str | None = VARIABLE, job_id: int = 1) -> Job:
    action: dict[str, Any] = {"action": "post_webhook", "url": url}
    if variable is not None:
        action["secret_from_env"] = variable
    now = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    return Job(
        id=job_id,
        tenant_id=TENANT,
        booking_id="b1",
        run_key="b1:client_scheduled:1",
        step=1,
        kind="post_webhook",
        idempotency_key="b1:client_scheduled:1:1:post_webhook",
        payload={"action": action, "booking": booking_snapshot()},
        state="running",
        attempts=1,
        max_attempts=10,
        run_after=now,
        locked_by="w1",
        lease_expires_at=now,
        last_error="",
        output=None,
        created_at=now,
        updated_at=now,
    )


def booking_snapshot() -> dict[str, Any]:
    return {
        "id": "b1",
        "tenant_id": TENANT,
        "type_name": "Discovery call",
        "type_slug": "discovery-call",
        "starts_at": "2026-11-24T15:00:00+00:00",
        "ends_at": "2026-11-24T15:30:00+00:00",
        "status": "confirmed",
        "client": {"name": "Dana Client", "email": "dana@client.example", "time_zone": "Europe/London"},
        "hosts": [{"user_id": "u1", "name": "Alice", "email": "alice@msp.example"}],
        "manage_url": "https://book.example/m/secret-token",
    }


def integrations(poster: WebhookPoster, secrets: Mapping[str, str] | None = None) -> IntegrationsWithWebhooks:
    return IntegrationsWithWebhooks(webhooks=WebhookSender(poster, {VARIABLE: SECRET} if secrets is None else secrets))


async def test_a_delivery_is_signed_so_the_standard_webhooks_library_verifies_it_and_carries_the_event(
    receiver: tuple[Receiver, ssl.SSLContext],
) -> None:
    state, tls = receiver
    resolver = RecordingResolver({HOOK_HOST: [["127.0.0.1"]]})
    poster = WebhookPoster(resolver=resolver, allow_private=True, tls=tls)
    try:
        job = webhook_job(f"https://{HOOK_HOST}:{state.port}/hook")
        output = await post_webhook(StepContext(job, {"opportunity_id": "77"}, integrations(poster)))
    finally:
        await poster.close()
    assert output["webhook_status"] == 204
    [event] = state.deliveries
    assert event["type"] == "booking.client_scheduled"
    assert event["data"]["trigger"] == "client_scheduled"
    assert event["data"]["booking"]["id"] == "b1"
    assert event["data"]["booking"]["client"]["email"] == "dana@client.example"
    assert event["data"]["outputs"] == {"opportunity_id": "77"}
    # The manage link is a bearer credential for the client's booking; the receiver does not get it.
    assert "manage_url" not in event["data"]["booking"]
    [headers] = state.headers
    assert headers["webhook-id"] == output["webhook_id"]
    assert headers["webhook-signature"].startswith("v1,")
    assert resolver.calls == [HOOK_HOST]


async def test_the_connection_goes_to_the_vetted_address_even_if_the_name_then_resolves_elsewhere(
    receiver: tuple[Receiver, ssl.SSLContext],
) -> None:
    # DNS rebinding: the first answer is vetted; a second lookup would say 127.0.0.2, where nothing listens.
    state, tls = receiver
    resolver = RecordingResolver({HOOK_HOST: [["127.0.0.1"], ["127.0.0.2"]]})
    poster = WebhookPoster(resolver=resolver, allow_private=True, tls=tls)
    try:
        for attempt in (1, 2):
            await post_webhook(
                StepContext(webhook_job(f"https://{HOOK_HOST}:{state.port}/hook"), {}, integrations(poster))
            )
            assert len(state.deliveries) == attempt
    finally:
        await poster.close()
    assert resolver.calls == [HOOK_HOST, HOOK_HOST]


async def test_the_webhook_id_is_the_same_on_every_retry_and_the_signature_is_fresh(
    receiver: tuple[Receiver, ssl.SSLContext],
) -> None:
    state, tls = receiver
    poster = WebhookPoster(resolver=RecordingResolver({HOOK_HOST: [["127.0.0.1"]]}), allow_private=True, tls=tls)
    try:
        job = webhook_job(f"https://{HOOK_HOST}:{state.port}/hook")
        await post_webhook(StepContext(job, {}, integrations(poster)))
        await post_webhook(StepContext(job, {}, integrations(poster)))
        other = webhook_job(f"https://{HOOK_HOST}:{state.port}/hook")
        other = Job(**{**other.__dict__, "idempotency_key": "b1:rescheduled:1:0:post_webhook"})
        await post_webhook(StepContext(other, {}, integrations(poster)))
    finally:
        await poster.close()
    ids = [headers["webhook-id"] for headers in state.headers]
    assert ids[0] == ids[1] != ids[2]


async def test_a_loopback_receiver_is_refused_without_the_development_setting_before_connecting(
    receiver: tuple[Receiver, ssl.SSLContext],
) -> None:
    state, tls = receiver
    trace = ConnectionTrace()
    resolver = RecordingResolver({HOOK_HOST: [["127.0.0.1"]]})
    poster = WebhookPoster(resolver=resolver, tls=tls, trace_configs=[trace.config()])
    try:
        for url in (f"https://127.0.0.1:{state.port}/hook", f"https://{HOOK_HOST}:{state.port}/hook"):
            with pytest.raises(IntegrationRejected, match="loopback address"):
                await post_webhook(StepContext(webhook_job(url), {}, integrations(poster)))
    finally:
        await poster.close()
    assert state.deliveries == []
    assert (trace.connections, trace.requests) == (0, 0)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00::1", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address under test, not a bind)
        ("::ffff:10.0.0.1", "private"),
        ("100.64.0.1", "not publicly routable"),
    ],
)
async def test_addresses_that_are_not_public_are_refused_by_literal_and_by_name_with_no_connection(
    address: str, reason: str
) -> None:
    trace = ConnectionTrace()
    resolver = RecordingResolver({"internal.example.test": [[address]]})
    poster = WebhookPoster(resolver=resolver, trace_configs=[trace.config()])
    literal = f"[{address}]" if ":" in address else address
    try:
        with pytest.raises(IntegrationRejected, match=f"is a {reason} address; webhooks go to public addresses only"):
            await post_webhook(StepContext(webhook_job(f"https://{literal}/"), {}, integrations(poster)))
        with pytest.raises(IntegrationRejected, match=f"{reason} address \\(it resolves to {address}\\)"):
            await post_webhook(StepContext(webhook_job("https://internal.example.test/hook"), {}, integrations(poster)))
    finally:
        await poster.close()
    assert resolver.calls == ["internal.example.test"]
    assert (trace.connections, trace.requests) == (0, 0)


async def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    trace = ConnectionTrace()
    resolver = RecordingResolver({"mixed.example.test": [["93.184.215.14", "10.1.2.3"]]})
    poster = WebhookPoster(resolver=resolver, trace_configs=[trace.config()])
    try:
        with pytest.raises(IntegrationRejected, match="private address"):
            await post_webhook(StepContext(webhook_job("https://mixed.example.test/"), {}, integrations(poster)))
    finally:
        await poster.close()
    assert (trace.connections, trace.requests) == (0, 0)


def test_public_addresses_pass_the_check() -> None:
    assert refusal_reason("93.184.215.14") is None
    assert refusal_reason("2606:2800:21f:cb07:6820:80da:af6b:8b2c") is None


async def test_plain_http_and_a_missing_secret_fail_the_step_visibly() -> None:
    poster = WebhookPoster(resolver=RecordingResolver({}))
    try:
        with pytest.raises(IntegrationRejected, match="https only"):
            await post_webhook(StepContext(webhook_job("http://hooks.example.test/"), {}, integrations(poster)))
        with pytest.raises(IntegrationRejected, match=f"No webhook secret is stored for {VARIABLE}"):
            await post_webhook(StepContext(webhook_job("https://hooks.example.test/"), {}, integrations(poster, {})))
        with pytest.raises(IntegrationRejected, match="no 'secret_from_env'"):
            await post_webhook(
                StepContext(webhook_job("https://hooks.example.test/", variable=None), {}, integrations(poster))
            )
    finally:
        await poster.close()


# ------------------------------------------------------------------ through the runner


async def add_tenant(database: Database) -> None:
    await database.run_write(
        lambda conn: conn.execute(
            tenants.insert().values(id=TENANT, slug=TENANT, name=TENANT, default_time_zone="UTC", holidays=[])
        )
    )


async def enqueue_webhook(database: Database, url: str, clock: FixedClock) -> None:
    spec = JobSpec(
        tenant_id=TENANT,
        booking_id="b1",
        run_key="b1:client_scheduled:1",
        step=0,
        kind="post_webhook",
        idempotency_key="b1:client_scheduled:1:0:post_webhook",
        payload={
            "action": {"action": "post_webhook", "url": url, "secret_from_env": VARIABLE},
            "booking": booking_snapshot(),
        },
    )
    await database.run_write(lambda conn: enqueue_jobs(conn, [spec], now=clock.now()))


def webhook_runner(database: Database, poster: WebhookPoster, clock: FixedClock) -> Runner:
    async def handle(job: Job) -> Mapping[str, Any]:
        return await post_webhook(StepContext(job, {}, integrations(poster)))

    return Runner(database, {"post_webhook": handle}, worker_id="w1", clock=clock.now)


@pytest.fixture
async def runner_setup(
    sqlite_database: Database, receiver: tuple[Receiver, ssl.SSLContext], clock: FixedClock
) -> AsyncIterator[tuple[Database, Receiver, Runner]]:
    state, tls = receiver
    await add_tenant(sqlite_database)
    poster = WebhookPoster(resolver=RecordingResolver({HOOK_HOST: [["127.0.0.1"]]}), allow_private=True, tls=tls)
    await enqueue_webhook(sqlite_database, f"https://{HOOK_HOST}:{state.port}/hook", clock)
    yield sqlite_database, state, webhook_runner(sqlite_database, poster, clock)
    await poster.close()


async def test_a_503_is_retried_and_the_next_200_completes_the_step_once(
    runner_setup: tuple[Database, Receiver, Runner], clock: FixedClock
) -> None:
    database, state, runner = runner_setup
    state.answers = [(503, {}), (200, {})]
    await runner.run_until_idle()
    [step] = await list_runs(database, TENANT)
    assert step.state == RETRYABLE
    assert "answered 503" in step.last_error
    clock.moment = step.run_after
    await runner.run_until_idle()
    [step] = await list_runs(database, TENANT)
    assert step.state == COMPLETED
    assert step.output == {"webhook_id": step.output["webhook_id"], "webhook_status": 200}
    assert len(state.deliveries) == 2
    assert state.headers[0]["webhook-id"] == state.headers[1]["webhook-id"]
    clock.moment += dt.timedelta(hours=1)
    assert await runner.run_until_idle() == 0
    assert len(state.deliveries) == 2


async def test_a_429_with_retry_after_is_retried_no_sooner_than_the_receiver_asked(
    runner_setup: tuple[Database, Receiver, Runner], clock: FixedClock
) -> None:
    database, state, runner = runner_setup
    state.answers = [(429, {"Retry-After": "120"}), (202, {})]
    await runner.run_until_idle()
    [step] = await list_runs(database, TENANT)
    assert step.state == RETRYABLE
    assert step.run_after >= clock.now() + dt.timedelta(seconds=120)
    clock.moment += dt.timedelta(seconds=119)
    assert await runner.run_until_idle() == 0
    clock.moment = step.run_after
    await runner.run_until_idle()
    [step] = await list_runs(database, TENANT)
    assert step.state == COMPLETED
    assert len(state.deliveries) == 2


async def test_a_410_fails_the_step_at_once_with_the_receivers_status(
    runner_setup: tuple[Database, Receiver, Runner], clock: FixedClock
) -> None:
    database, state, runner = runner_setup
    state.answers = [(410, {})]
    await runner.run_until_idle()
    [step] = await list_runs(database, TENANT)
    assert step.state == FAILED
    assert f"The webhook receiver at {HOOK_HOST} answered 410 Gone" in step.last_error
    assert step.attempts == 1
    assert len(state.deliveries) == 1


async def test_the_registered_step_delivers_through_the_runners_own_handlers(
    sqlite_database: Database, receiver: tuple[Receiver, ssl.SSLContext], clock: FixedClock
) -> None:
    # Needs post_webhook in steps.STEPS and TenantIntegrations.webhooks (the composition root fills it).
    from workflows.steps import build_handlers

    state, tls = receiver
    await add_tenant(sqlite_database)
    poster = WebhookPoster(resolver=RecordingResolver({HOOK_HOST: [["127.0.0.1"]]}), allow_private=True, tls=tls)

    async def integrations_for(_tenant_id: str) -> TenantIntegrations:
        return TenantIntegrations(webhooks=WebhookSender(poster, {VARIABLE: SECRET}))

    await enqueue_webhook(sqlite_database, f"https://{HOOK_HOST}:{state.port}/hook", clock)
    runner = Runner(sqlite_database, build_handlers(sqlite_database, integrations_for), worker_id="w1", clock=clock.now)
    try:
        await runner.run_until_idle()
    finally:
        await poster.close()
    [step] = await list_runs(sqlite_database, TENANT)
    assert (step.state, step.last_error) == (COMPLETED, "")
    assert [event["type"] for event in state.deliveries] == ["booking.client_scheduled"]
