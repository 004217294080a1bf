"""Fills the Teams app manifest template for one deployment and zips it with the icons into an app package.

`python -m manifest.build --bot-app-id <guid> --base-url https://slotwise.example.com --out slotwise-teams.zip`

The package is what an admin uploads in the Teams admin center: `manifest.json`, `color.png` and `outline.png`
at the root of a zip, nothing else. Standard library only, so it runs before the app's dependencies are installed.
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

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
"""A fixed timestamp for every zip entry, so the same inputs always give a byte-identical package."""


def default_app_id(base_url: str) -> str:
    """A stable Teams app id per deployment: the same base URL always gives the same GUID, so a rebuilt package
    updates the installed app instead of adding a second one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, _normalise_base_url(base_url) + "/teams-app"))


def build_manifest(app_id: str, bot_app_id: str, base_url: str, version: str) -> dict[str, Any]:
    """The manifest for one deployment. Raises ValueError for an id that is not a GUID, a base URL that is not
    https (Teams loads nothing over plain http) or a version that is not semver (Teams needs it to detect updates)."""
    for label, value in (("app_id", app_id), ("bot_app_id", bot_app_id)):
        if not _GUID.match(value):
            raise ValueError(f"{label} must be a GUID, got {value!r}")
    if not _SEMVER.match(version):
        raise ValueError(f"version must be semver like 1.2.3, got {version!r}")
    base = _normalise_base_url(base_url)
    host = urlsplit(base).hostname or ""
    values = {
        "APP_ID": app_id.lower(),
        "BOT_APP_ID": bot_app_id.lower(),
        "BASE_URL": base,
        # validDomains and the SSO resource take a bare host name, without scheme or port.
        "HOST": host,
        "VERSION": version,
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"unknown placeholder {{{{{name}}}}} in {TEMPLATE.name}")
        # Every placeholder sits inside a JSON string; json.dumps escapes the value for that context.
        return json.dumps(values[name])[1:-1]

    manifest: dict[str, Any] = json.loads(_PLACEHOLDER.sub(fill, TEMPLATE.read_text(encoding="utf-8")))
    return manifest


def build_package(dest_zip: Path, *, app_id: str | None = None, bot_app_id: str, base_url: str, version: str) -> Path:
    """Writes the app package zip (manifest.json, color.png, outline.png) and returns its path."""
    manifest = build_manifest(app_id or default_app_id(base_url), bot_app_id, base_url, version)
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
    parser = argparse.ArgumentParser(description="Build the Slotwise Teams app package (zip).")
    parser.add_argument("--bot-app-id", required=True, help="Microsoft App ID (GUID) of the bot registration")
    parser.add_argument("--base-url", required=True, help="public https URL of this Slotwise deployment")
    parser.add_argument("--app-id", default=None, help="Teams app id (GUID); default: derived from --base-url")
    parser.add_argument("--version", default=None, help="app version (semver); default: pyproject's version")
    parser.add_argument("--out", type=Path, default=Path("slotwise-teams.zip"))
    args = parser.parse_args(argv)
    version = args.version or project_version()
    if version is None:
        parser.error("--version is required outside a source checkout")
    try:
        path = build_package(
            args.out, app_id=args.app_id, bot_app_id=args.bot_app_id, base_url=args.base_url, version=version
        )
    except ValueError as error:
        parser.error(str(error))
    sys.stdout.write(f"wrote {path} ({', '.join(PACKAGE_FILES)})\n")


if __name__ == "__main__":
    main()
