"""Planning, testing and saving a tenant's integration connections (PSA, Microsoft 365, email) from its file.

Secrets come from the environment variables the file names; they are validated with the vendor's own config model,
tested against the vendor before anything is saved, and stored only as an encrypted token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from admin.tenant_file import ConnectionSpec, RolloutError, TenantFile, render_loc
from integrations.registry import REGISTRY, vendors_for
from scheduling.errors import IntegrationRejected, SlotwiseError
from storage.database import Database
from storage.repositories import new_id
from storage.secrets import SecretBox
from storage.tables import integration_connections, tenants
from workflows.triggers import ActionKind, ActionSpec, WorkflowSpec
from workflows.webhooks import WebhookSecretInvalid, decode_secret

KINDS = ("psa", "m365", "email")
WEBHOOKS = "webhooks"
"""The `integration_connections` kind holding a tenant's webhook signing secrets (one row per tenant)."""
WEBHOOKS_VENDOR = "standard_webhooks"


@dataclass(frozen=True)
class ConnectionChange:
    kind: str
    vendor: str
    action: str
    """'create', 'update', 'delete' or 'keep'."""
    settings: dict[str, Any]
    secrets: dict[str, str]
    fingerprint: str
    config: Any
    detail: str = ""

    def render(self) -> str:
        mark = {"create": "+", "update": "~", "delete": "-", "keep": "="}[self.action]
        return f"{mark} integration {self.kind} ({self.vendor}){': ' + self.detail if self.detail else ''}"


def _fingerprint(box: SecretBox, tenant_slug: str, kind: str, secrets: Mapping[str, str]) -> str:
    # Keyed by the app secret and bound to the tenant and kind (see SecretBox.fingerprint). The tenant is named by
    # its slug because that is the tenant's identity in its file and exists before a first apply gives it an id.
    return box.fingerprint(tenant_slug, kind, secrets)


def _resolve(kind: str, spec: ConnectionSpec, env: Mapping[str, str]) -> tuple[dict[str, str], Any]:
    where = f"integrations.{kind}"
    if (kind, spec.vendor) not in REGISTRY:
        offered = ", ".join(vendors_for(kind)) or "none yet"
        raise RolloutError([f"{where}.vendor: '{spec.vendor}' is not supported for {kind} (supported: {offered})"])
    entry = REGISTRY[(kind, spec.vendor)]
    missing = [name for name in entry.secret_fields if name not in spec.secrets_from_env]
    if missing:
        raise RolloutError([f"{where}.secrets_from_env: name the environment variable for {', '.join(missing)}"])
    secrets: dict[str, str] = {}
    for field, variable in spec.secrets_from_env.items():
        if field not in entry.secret_fields:
            raise RolloutError([f"{where}.secrets_from_env.{field}: not a secret of {spec.vendor}"])
        value = env.get(variable)
        if not value:
            raise RolloutError([f"{where}.secrets_from_env.{field}: environment variable {variable} is not set"])
        secrets[field] = value
    try:
        config = entry.config_model.model_validate({**spec.settings(), **secrets})
    except ValidationError as exc:
        raise RolloutError(
            [f"{where}.{render_loc(error['loc'])}: {error['msg']}" for error in exc.errors(include_input=False)]
        ) from None
    return secrets, config


async def plan_connections(
    database: Database, file: TenantFile, env: Mapping[str, str], *, box: SecretBox
) -> list[ConnectionChange]:
    """What the file's `integrations:` would change. Raises RolloutError naming the field or variable at fault.

    `box` keys the secrets' fingerprints; pass the SecretBox of this app secret (the one `connection_writer` gets).
    """
    async with database.read() as conn:
        tenant_id = (
            await conn.execute(select(tenants.c.id).where(tenants.c.slug == file.tenant.slug))
        ).scalar_one_or_none()
        stored: dict[str, Mapping[str, Any]] = {}
        if tenant_id is not None:
            rows = await conn.execute(
                select(integration_connections).where(integration_connections.c.tenant_id == tenant_id)
            )
            stored = {row["kind"]: dict(row) for row in rows.mappings()}
    changes: list[ConnectionChange] = []
    for kind in KINDS:
        spec: ConnectionSpec | None = getattr(file.integrations, kind)
        current = stored.get(kind)
        if spec is None:
            if current is not None:
                changes.append(ConnectionChange(kind, current["vendor"], "delete", {}, {}, "", None))
            continue
        secrets, config = _resolve(kind, spec, env)
        fingerprint = _fingerprint(box, file.tenant.slug, kind, secrets)
        settings = spec.settings()
        if current is None:
            action, detail = "create", ""
        elif current["vendor"] != spec.vendor or current["settings"] != settings:
            action, detail = "update", "settings changed"
        elif current["secrets_fingerprint"] != fingerprint:
            action, detail = "update", "secrets changed"
        else:
            action, detail = "keep", ""
        changes.append(ConnectionChange(kind, spec.vendor, action, settings, secrets, fingerprint, config, detail))
    changes.extend(_plan_webhook_secrets(file, env, box, stored.get(WEBHOOKS)))
    return changes


def _plan_webhook_secrets(
    file: TenantFile, env: Mapping[str, str], box: SecretBox, current: Mapping[str, Any] | None
) -> list[ConnectionChange]:
    """Webhook signing secrets, read from the variables the actions name and stored like connection secrets: one
    sealed row per tenant, variable name -> secret, so the runner signs with what was read at apply."""
    secrets: dict[str, str] = {}
    problems: list[str] = []
    for where, action in _actions_of(file, ActionKind.POST_WEBHOOK):
        variable = action.secret_from_env
        if not variable:
            problems.append(f"{where}: a webhook must be signed: add secret_from_env")
            continue
        value = env.get(variable)
        if not value:
            problems.append(f"{where}.secret_from_env: environment variable {variable} is not set")
            continue
        try:
            decode_secret(value)
        except WebhookSecretInvalid as exc:
            # Never echo the value: it is (meant to be) a secret.
            problems.append(f"{where}.secret_from_env: environment variable {variable}: {exc}")
            continue
        secrets[variable] = value
    if problems:
        raise RolloutError(problems)
    if not secrets:
        if current is None:
            return []
        return [ConnectionChange(WEBHOOKS, current["vendor"], "delete", {}, {}, "", None)]
    settings = {"variables": sorted(secrets)}
    fingerprint = _fingerprint(box, file.tenant.slug, WEBHOOKS, secrets)
    if current is None:
        change, detail = "create", "signing secrets from " + ", ".join(sorted(secrets))
    elif current["settings"] != settings:
        change, detail = "update", "signing secrets from " + ", ".join(sorted(secrets))
    elif current["secrets_fingerprint"] != fingerprint:
        change, detail = "update", "secrets changed"
    else:
        change, detail = "keep", ""
    return [ConnectionChange(WEBHOOKS, WEBHOOKS_VENDOR, change, settings, secrets, fingerprint, None, detail)]


async def test_connections(changes: list[ConnectionChange], session: aiohttp.ClientSession) -> None:
    """Test every new or changed connection; nothing is saved unless all of them work."""
    problems: list[str] = []
    for change in changes:
        # Webhook secrets have nothing to test against: the receiver is only called with a real event.
        if change.action not in ("create", "update") or change.kind == WEBHOOKS:
            continue
        try:
            await REGISTRY[(change.kind, change.vendor)].check(change.config, session)
        except SlotwiseError as exc:
            problems.append(f"integrations.{change.kind}: the {change.vendor} connection test failed: {exc}")
    if problems:
        raise RolloutError(problems)


async def resolve_psa_defaults(
    file: TenantFile, changes: list[ConnectionChange], session: aiohttp.ClientSession
) -> tuple[list[str], list[str]]:
    """What the PSA itself will fill in where the tenant file leaves the choice to it, read from the PSA so that
    `apply --dry-run` shows what an apply will do. Today: Autotask's opportunity stage, which Autotask requires and
    which defaults to the stage picklist's default value when `pipeline_stage` is not set.

    Returns (lines to show, problems that must stop the apply). A PSA that cannot be reached gives a line, not a
    problem: the connection test reports that on its own."""
    psa = next((change for change in changes if change.kind == "psa"), None)
    if psa is None:
        return [], []
    resolve = getattr(REGISTRY[("psa", psa.vendor)].build(psa.config, session), "resolved_opportunity_stage", None)
    if resolve is None:
        return [], []
    lines: list[str] = []
    problems: list[str] = []
    for where, action in _actions_of(file, ActionKind.FIND_OR_CREATE_OPPORTUNITY):
        label = action.pipeline_stage or ""
        try:
            _stage_id, name = await resolve(label)
        except IntegrationRejected as exc:
            problems.append(f"{where}: {exc}")
            continue
        except SlotwiseError as exc:
            lines.append(f"  ? {where}: could not read the opportunity stages from {psa.vendor}: {exc}")
            continue
        source = "as set in pipeline_stage" if label else "the stage picklist's default"
        lines.append(f"  = {where}: {psa.vendor} opportunities get the stage {name!r} ({source})")
    return lines, problems


def _actions_of(file: TenantFile, kind: ActionKind) -> Iterator[tuple[str, ActionSpec]]:
    """Every action of `kind` in the file's workflows, with where it is written (for messages that name it)."""
    for index, spec in enumerate(file.appointment_types):
        workflow = WorkflowSpec.model_validate(spec.workflow or {})
        for _trigger, path, actions in workflow.trigger_actions():
            for position, action in enumerate(actions):
                if action.action is kind:
                    yield f"appointment_types[{index}] ({spec.slug}) {path}[{position}]", action


def connection_writer(changes: list[ConnectionChange], box: SecretBox) -> Any:
    """The `extra_writes` for apply_plan: saves connections inside the rollout's own transaction."""

    async def write(conn: AsyncConnection, tenant_id: str) -> None:
        now = datetime.now(UTC)
        table = integration_connections
        for change in changes:
            where = (table.c.tenant_id == tenant_id) & (table.c.kind == change.kind)
            if change.action == "delete":
                await conn.execute(table.delete().where(where))
            elif change.action in ("create", "update"):
                await conn.execute(table.delete().where(where))
                await conn.execute(
                    table.insert().values(
                        id=new_id(),
                        tenant_id=tenant_id,
                        kind=change.kind,
                        vendor=change.vendor,
                        settings=change.settings,
                        secrets_token=box.seal(change.secrets),
                        secrets_fingerprint=change.fingerprint,
                        tested_at=now,
                        updated_at=now,
                    )
                )

    return write


async def load_connection_configs(database: Database, tenant_id: str, box: SecretBox) -> dict[str, tuple[str, Any]]:
    """kind -> (vendor, validated config with secrets) for one tenant, for building adapters at run time."""
    async with database.read() as conn:
        rows = (
            (
                await conn.execute(
                    select(integration_connections).where(integration_connections.c.tenant_id == tenant_id)
                )
            )
            .mappings()
            .all()
        )
    configs: dict[str, tuple[str, Any]] = {}
    for row in rows:
        entry = REGISTRY.get((row["kind"], row["vendor"]))
        if entry is None:
            continue
        secrets = box.open(row["secrets_token"]) if row["secrets_token"] else {}
        configs[row["kind"]] = (row["vendor"], entry.config_model.model_validate({**row["settings"], **secrets}))
    return configs


async def load_webhook_secrets(database: Database, tenant_id: str, box: SecretBox) -> dict[str, str]:
    """Environment variable name -> webhook signing secret, as stored for one tenant by its last apply."""
    table = integration_connections
    async with database.read() as conn:
        token = (
            await conn.execute(
                select(table.c.secrets_token).where(table.c.tenant_id == tenant_id, table.c.kind == WEBHOOKS)
            )
        ).scalar_one_or_none()
    return box.open(token) if token else {}
