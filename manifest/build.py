"""Fills the unified app manifest template for one deployment and zips it with the icons into an app package.

`slotwise manifest build` (values from settings), or
`python -m manifest.build --bot-app-id <guid> --base-url https://slotwise.example.com --out slotwise.zip`

One package declares the Teams bot, its message extension and the Outlook add-in (`extensions`: a task pane opened
from a ribbon button while composing mail). It is what an admin uploads in the Teams or Microsoft 365 admin center:
`manifest.json`, `color.png` and `outline.png` at the root of a zip, nothing else. The Outlook ribbon icons are not in
the zip: the manifest names them as HTTPS URLs Slotwise serves (`RIBBON_ICONS`, `ALTERNATE_ICONS`). Standard library
only, so it runs before the app's dependencies are installed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
import uuid
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MANIFEST_DIR = Path(__file__).resolve().parent
TEMPLATE = MANIFEST_DIR / "manifest.template.json"
ICONS = ("color.png", "outline.png")
PACKAGE_FILES = ("manifest.json", *ICONS)
COMPOSE_COMMAND_ID = "bookingLinks"
"""The bot answers `composeExtension/query` invokes carrying this commandId: a contract with bot/."""
COMPOSE_PARAMETER = "typeName"
"""The query parameter the bot reads the typed appointment type name from."""

TASKPANE_PATH = "/addin/taskpane.html"
"""Where the Outlook task pane is served: a contract with addin/routes.py."""
ICON_PATH = "/addin/static/icon-{size}.png"
"""Where each Outlook icon is served (addin/static/icon-<size>.png, drawn by manifest/draw_icons.py)."""
RIBBON_ICON_SIZES = (16, 32, 80)
"""Required sizes of an add-in command icon (create-addin-commands-unified-manifest)."""
ALTERNATE_ICON_SIZES = (64, 128)
"""`alternateIcons` (what the admin center's generated XML manifest uses for Mac and mobile Outlook): with the `mail`
scope the files must measure 64 and 128 px. Their `size` property is ignored but must be one of the common icon sizes,
so the 128 px one is declared as 64, as in Microsoft's own examples
(https://learn.microsoft.com/microsoft-365/extensibility/schema/extension-common-icon)."""
ADDIN_PERMISSION = "MailboxItem.ReadWrite.User"
"""`body.setSelectedDataAsync` in compose needs read/write item access."""
DEFAULT_SCOPE = "access_as_user"

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
"""A fixed timestamp for every zip entry, so the same inputs always give a byte-identical package."""


def default_app_id(base_url: str) -> str:
    """A stable Teams app id per deployment: the same base URL always gives the same GUID, so a rebuilt package
    updates the installed app instead of adding a second one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, _normalise_base_url(base_url) + "/teams-app"))


def build_manifest(
    app_id: str,
    bot_app_id: str,
    base_url: str,
    version: str,
    *,
    addin_client_id: str | None = None,
    addin_app_id_uri: str | None = None,
) -> dict[str, Any]:
    """The manifest for one deployment. Raises ValueError for an id that is not a GUID, a base URL that is not
    https (Teams and Outlook load nothing over plain http) or a version that is not semver (Teams needs it to detect
    updates). The add-in API's Entra app defaults to the bot's (one registration serves both); its resource, the
    app ID URI the task pane asks tokens for, defaults to `api://<host>/<client id>`."""
    client_id = addin_client_id or bot_app_id
    for label, value in (("app_id", app_id), ("bot_app_id", bot_app_id), ("addin_client_id", client_id)):
        if not _GUID.match(value):
            raise ValueError(f"{label} must be a GUID, got {value!r}")
    if not _SEMVER.match(version):
        raise ValueError(f"version must be semver like 1.2.3, got {version!r}")
    base = _normalise_base_url(base_url)
    host = urlsplit(base).hostname or ""
    resource = addin_app_id_uri or f"api://{host}/{client_id.lower()}"
    if not resource.startswith(("api://", "https://")):
        raise ValueError(f"addin_app_id_uri must start with api:// or https://, got {resource!r}")
    values = {
        "APP_ID": app_id.lower(),
        "BOT_APP_ID": bot_app_id.lower(),
        "BASE_URL": base,
        # validDomains and the SSO resource take a bare host name, without scheme or port.
        "HOST": host,
        "VERSION": version,
        "ADDIN_CLIENT_ID": client_id.lower(),
        "ADDIN_RESOURCE": resource,
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"unknown placeholder {{{{{name}}}}} in {TEMPLATE.name}")
        # Every placeholder sits inside a JSON string; json.dumps escapes the value for that context.
        return json.dumps(values[name])[1:-1]

    manifest: dict[str, Any] = json.loads(_PLACEHOLDER.sub(fill, TEMPLATE.read_text(encoding="utf-8")))
    return manifest


def build_package(
    dest_zip: Path,
    *,
    app_id: str | None = None,
    bot_app_id: str,
    base_url: str,
    version: str,
    addin_client_id: str | None = None,
    addin_app_id_uri: str | None = None,
) -> Path:
    """Writes the app package zip (manifest.json, color.png, outline.png) and returns its path."""
    manifest = build_manifest(
        app_id or default_app_id(base_url),
        bot_app_id,
        base_url,
        version,
        addin_client_id=addin_client_id,
        addin_app_id_uri=addin_app_id_uri,
    )
    dest_zip.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest_zip, "w", compression=zipfile.ZIP_DEFLATED) as package:
        entries = [("manifest.json", (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())]
        entries += [(name, (MANIFEST_DIR / name).read_bytes()) for name in ICONS]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            package.writestr(info, data)
    return dest_zip


def project_version() -> str | None:
    """The version in pyproject.toml next to this folder, when running from a source checkout."""
    pyproject = MANIFEST_DIR.parent / "pyproject.toml"
    if not pyproject.is_file():
        return None
    version = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("version")
    return version if isinstance(version, str) else None


def _normalise_base_url(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"base_url must be an https URL with a host name, got {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not carry a query or fragment, got {base_url!r}")
    return f"https://{parts.netloc}{parts.path}".rstrip("/")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the Slotwise app package (Teams bot + Outlook add-in, zip).")
    parser.add_argument("--bot-app-id", required=True, help="Microsoft App ID (GUID) of the bot registration")
    parser.add_argument("--base-url", required=True, help="public https URL of this Slotwise deployment")
    parser.add_argument("--app-id", default=None, help="Teams app id (GUID); default: derived from --base-url")
    parser.add_argument("--version", default=None, help="app version (semver); default: pyproject's version")
    parser.add_argument("--addin-client-id", default=None, help="add-in API's Entra app id; default: the bot's")
    parser.add_argument("--addin-app-id-uri", default=None, help="its app ID URI; default: api://<host>/<client id>")
    parser.add_argument("--out", type=Path, default=Path("slotwise-teams.zip"))
    args = parser.parse_args(argv)
    version = args.version or project_version()
    if version is None:
        parser.error("--version is required outside a source checkout")
    try:
        path = build_package(
            args.out,
            app_id=args.app_id,
            bot_app_id=args.bot_app_id,
            base_url=args.base_url,
            version=version,
            addin_client_id=args.addin_client_id,
            addin_app_id_uri=args.addin_app_id_uri,
        )
    except ValueError as error:
        parser.error(str(error))
    sys.stdout.write(f"wrote {path} ({', '.join(PACKAGE_FILES)})\n")


if __name__ == "__main__":
    main()
