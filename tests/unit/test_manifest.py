"""The Teams app package: the manifest passes the official schema (Python and Microsoft's Node validator, offline),
keeps its contract with the bot, and ships the right icons in a zip of exactly three files."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]  # no types-jsonschema in the pinned dev set
import pytest

from manifest import draw_icons
from manifest.build import (
    COMPOSE_COMMAND_ID,
    COMPOSE_PARAMETER,
    MANIFEST_DIR,
    PACKAGE_FILES,
    TEMPLATE,
    build_manifest,
    build_package,
    default_app_id,
    project_version,
)

REPO = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs"
NODE_VALIDATOR = REPO / "tests" / "node" / "validate_manifest.js"
APP_ID = "0d6e2f4a-5b1c-4e8f-9a3d-7c2b1e0f4a6d"
BOT_APP_ID = "9F1C2D3E-4B5A-4C6D-8E7F-0A1B2C3D4E5F"
BASE_URL = "https://slotwise.acme-it.example"
COMMANDS = ["links", "page", "upcoming", "team", "failures", "help"]


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return build_manifest(APP_ID, BOT_APP_ID, BASE_URL, "0.1.0")


def broken(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, "id": "slotwise-is-not-a-guid"}


def schema_for(manifest: dict[str, Any]) -> dict[str, Any]:
    path = SPECS / f"teams-manifest-{manifest['manifestVersion']}.schema.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: CI must place the shared/ folder beside the repository")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    schema = schema_for(manifest)
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    return [f"/{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(manifest)]


def run_node_validator(*paths: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "@microsoft" / "app-manifest").is_dir():
        pytest.fail("node or node_modules/@microsoft/app-manifest is missing: run scripts/bootstrap")
    return subprocess.run(  # noqa: S603 - our own script on files we wrote
        [node, str(NODE_VALIDATOR), "--json", *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_built_manifest_is_valid_against_the_vendored_schema(manifest):
    assert manifest["$schema"].endswith(f"/teams/v{manifest['manifestVersion']}/MicrosoftTeams.schema.json")
    assert manifest["manifestVersion"] in ("1.24", "1.25")
    assert schema_errors(manifest) == []


def test_a_manifest_with_a_bad_id_is_rejected_by_the_schema(manifest):
    errors = schema_errors(broken(manifest))

    assert len(errors) == 1
    assert errors[0].startswith("/id: 'slotwise-is-not-a-guid' does not match")


def test_microsofts_validator_accepts_the_manifest_and_rejects_a_bad_id_offline(manifest, tmp_path):
    good, bad = tmp_path / "manifest.json", tmp_path / "broken.json"
    good.write_text(json.dumps(manifest), encoding="utf-8")
    bad.write_text(json.dumps(broken(manifest)), encoding="utf-8")

    result = run_node_validator(good, bad)

    assert result.returncode == 1, result.stderr
    errors = json.loads(result.stdout)
    assert errors[str(good)] == []
    assert len(errors[str(bad)]) == 1
    assert errors[str(bad)][0].startswith("/id must match pattern")


def test_the_node_validator_would_fail_rather_than_download_a_schema(manifest, tmp_path):
    # v1.18 is the one version @microsoft/app-manifest does not bundle (toolchain.md §5): the library tries to fetch
    # it, hits the throwing fetch, and the script refuses to report a result. So an "OK" above was offline.
    unbundled = tmp_path / "v118.json"
    unbundled.write_text(
        json.dumps({**manifest, "$schema": manifest["$schema"].replace("v1.25", "v1.18"), "manifestVersion": "1.18"}),
        encoding="utf-8",
    )

    result = run_node_validator(unbundled)

    assert result.returncode == 2
    assert "NETWORK USED: https://developer.microsoft.com/" in result.stderr


def test_the_bot_answers_in_every_scope_with_the_documented_commands(manifest):
    [bot] = manifest["bots"]

    assert bot["botId"] == BOT_APP_ID.lower()
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"}
    assert bot["supportsFiles"] is False
    assert sorted(scope for commands in bot["commandLists"] for scope in commands["scopes"]) == sorted(bot["scopes"])
    for command_list in bot["commandLists"]:
        assert [command["title"] for command in command_list["commands"]] == COMMANDS
        assert all(command["description"] for command in command_list["commands"])


def test_the_message_extension_keeps_its_contract_with_the_bot(manifest):
    [extension] = manifest["composeExtensions"]
    [command] = extension["commands"]
    [parameter] = command["parameters"]

    assert extension["botId"] == manifest["bots"][0]["botId"]
    assert (command["id"], command["type"], command["initialRun"]) == (COMPOSE_COMMAND_ID, "query", True)
    assert command["id"] == "bookingLinks"
    assert command["title"] == "Insert a booking link"
    assert (parameter["name"], parameter["title"]) == (COMPOSE_PARAMETER, "Appointment type")
    assert parameter["name"] == "typeName"


def test_the_deployment_values_land_where_teams_reads_them(manifest):
    host = urlsplit(BASE_URL).hostname

    assert manifest["id"] == APP_ID
    assert manifest["version"] == "0.1.0"
    assert manifest["validDomains"] == [host]
    assert manifest["webApplicationInfo"] == {
        "id": BOT_APP_ID.lower(),
        "resource": f"api://{host}/{BOT_APP_ID.lower()}",
    }
    assert {key: manifest["developer"][key] for key in ("websiteUrl", "privacyUrl", "termsOfUseUrl")} == {
        "websiteUrl": f"{BASE_URL}/",
        "privacyUrl": f"{BASE_URL}/privacy",
        "termsOfUseUrl": f"{BASE_URL}/terms",
    }
    assert "{{" not in json.dumps(manifest)


def test_the_description_tells_a_rep_what_to_ask(manifest):
    full = manifest["description"]["full"]

    assert manifest["name"]["short"] == "Slotwise"
    for command in COMMANDS:
        assert f"- {command}:" in full
    assert "Insert a booking link" in full


def test_every_placeholder_in_the_template_is_one_the_build_fills():
    text = TEMPLATE.read_text(encoding="utf-8")

    for name in ("APP_ID", "BOT_APP_ID", "BASE_URL", "HOST", "VERSION"):
        assert "{{" + name + "}}" in text


def test_a_base_url_with_a_path_keeps_it_and_the_host_stays_bare():
    built = build_manifest(APP_ID, BOT_APP_ID, "https://apps.acme.example:8443/slotwise/", "2.0.0-rc.1")

    assert built["developer"]["websiteUrl"] == "https://apps.acme.example:8443/slotwise/"
    assert built["validDomains"] == ["apps.acme.example"]
    assert schema_errors(built) == []


@pytest.mark.parametrize(
    ("app_id", "bot_app_id", "base_url", "version", "complaint"),
    [
        ("slotwise", BOT_APP_ID, BASE_URL, "1.0.0", "app_id must be a GUID"),
        (APP_ID, "28:bot", BASE_URL, "1.0.0", "bot_app_id must be a GUID"),
        (APP_ID, BOT_APP_ID, "http://slotwise.acme-it.example", "1.0.0", "https"),
        (APP_ID, BOT_APP_ID, "https://slotwise.acme-it.example/?x=1", "1.0.0", "query"),
        (APP_ID, BOT_APP_ID, BASE_URL, "1.0", "semver"),
    ],
)
def test_build_manifest_refuses_values_teams_would_not_accept(app_id, bot_app_id, base_url, version, complaint):
    with pytest.raises(ValueError, match=complaint):
        build_manifest(app_id, bot_app_id, base_url, version)


def test_the_default_app_id_is_a_stable_guid_per_deployment():
    first = default_app_id(BASE_URL)

    assert first == default_app_id(BASE_URL + "/")
    assert first != default_app_id("https://other.example")
    assert build_manifest(first, BOT_APP_ID, BASE_URL, "1.0.0")["id"] == first


def read_png(data: bytes) -> tuple[int, int, list[list[tuple[int, ...]]]]:
    """Width, height and RGBA rows of an 8-bit RGBA PNG, undoing any of the five row filters."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, dict[bytes, bytes]()
    idat = b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.setdefault(kind, body)
        idat += body if kind == b"IDAT" else b""
        offset += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour_type, interlace) == (8, 6, 0), "expected 8-bit RGBA, not interlaced"
    raw, stride, rows, previous = zlib.decompress(idat), width * 4, [], bytearray(width * 4)
    for index in range(height):
        start = index * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - 4] if i >= 4 else 0
            up, up_left = previous[i], previous[i - 4] if i >= 4 else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - up_left
                nearest = min(
                    (abs(estimate - left), 0, left), (abs(estimate - up), 1, up), (abs(estimate - up_left), 2, up_left)
                )
                line[i] = (line[i] + nearest[2]) & 0xFF
        rows.append([tuple(line[i : i + 4]) for i in range(0, stride, 4)])
        previous = line
    return width, height, rows


def test_the_colour_icon_is_192_square_opaque_and_matches_its_drawing():
    width, height, rows = read_png((MANIFEST_DIR / "color.png").read_bytes())

    assert (width, height) == (192, 192)
    assert all(pixel[3] == 255 for row in rows for pixel in row)
    assert rows == [list(row) for row in draw_icons.color_pixels()]


def test_the_outline_icon_is_32_square_white_on_transparent_and_matches_its_drawing():
    width, height, rows = read_png((MANIFEST_DIR / "outline.png").read_bytes())
    pixels = [pixel for row in rows for pixel in row]

    assert (width, height) == (32, 32)
    assert all(pixel[:3] == (255, 255, 255) for pixel in pixels if pixel[3])
    assert any(pixel[3] == 0 for pixel in pixels)
    assert any(pixel[3] == 255 for pixel in pixels)
    assert rows == [list(row) for row in draw_icons.outline_pixels()]


def test_the_package_zip_holds_exactly_the_manifest_and_two_icons(tmp_path):
    package = build_package(
        tmp_path / "out" / "slotwise-teams.zip", bot_app_id=BOT_APP_ID, base_url=BASE_URL, version="0.1.0"
    )

    with zipfile.ZipFile(package) as archive:
        assert sorted(archive.namelist()) == sorted(PACKAGE_FILES) == ["color.png", "manifest.json", "outline.png"]
        packed = json.loads(archive.read("manifest.json"))
        assert archive.read("color.png") == (MANIFEST_DIR / "color.png").read_bytes()
        assert archive.read("outline.png") == (MANIFEST_DIR / "outline.png").read_bytes()
    assert packed == build_manifest(default_app_id(BASE_URL), BOT_APP_ID, BASE_URL, "0.1.0")
    assert packed["icons"] == {"color": "color.png", "outline": "outline.png"}
    again = build_package(tmp_path / "again.zip", bot_app_id=BOT_APP_ID, base_url=BASE_URL, version="0.1.0")
    assert again.read_bytes() == package.read_bytes()


def test_the_command_line_builds_a_package(tmp_path):
    out = tmp_path / "slotwise-teams.zip"
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "manifest.build",
            "--bot-app-id",
            BOT_APP_ID,
            "--base-url",
            BASE_URL,
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("manifest.json"))["version"] == project_version()


# The Outlook add-in in the same package


def icon_entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    [extension] = manifest["extensions"]
    found = []
    for ribbon in extension["ribbons"]:
        for tab in ribbon["tabs"]:
            for group in tab["groups"]:
                found += group["icons"]
                for control in group["controls"]:
                    found += control["icons"]
    for alternate in extension.get("alternates", []):
        found += list(alternate.get("alternateIcons", {}).values())
    return found


def test_the_outlook_add_in_opens_a_pinnable_task_pane_from_a_compose_ribbon_button(manifest):
    [extension] = manifest["extensions"]
    [runtime] = extension["runtimes"]
    [ribbon] = extension["ribbons"]
    [tab] = ribbon["tabs"]
    [group] = tab["groups"]
    [control] = group["controls"]
    [action] = runtime["actions"]

    assert extension["requirements"]["scopes"] == ["mail"]
    for requirements in (extension["requirements"], runtime["requirements"]):
        [mailbox] = requirements["capabilities"]
        assert mailbox["name"] == "Mailbox"
        assert tuple(map(int, mailbox["minVersion"].split("."))) >= (1, 3)
    assert runtime["code"]["page"] == f"{BASE_URL}/addin/taskpane.html"
    assert (runtime["type"], runtime["lifetime"]) == ("general", "short")
    assert (action["type"], action["view"], action["pinnable"]) == ("openPage", "homepage", True)
    assert ribbon["contexts"] == ["mailCompose"]
    assert tab["builtInTabId"] == "TabDefault"
    assert (control["type"], control["actionId"]) == ("button", action["id"])
    assert control["label"] == "Slotwise"
    assert manifest["authorization"]["permissions"]["resourceSpecific"] == [
        {"name": "MailboxItem.ReadWrite.User", "type": "Delegated"}
    ]


def measured_size(url: str) -> tuple[int, int]:
    assert url.startswith(f"{BASE_URL}/addin/static/icon-")
    width, height, _ = read_png((REPO / "addin" / "static" / url.rsplit("/", 1)[1]).read_bytes())
    return width, height


def test_outlook_icons_are_https_urls_slotwise_serves_in_the_documented_sizes(manifest):
    [extension] = manifest["extensions"]
    [alternate] = extension["alternates"]
    command_icons = icon_entries({"extensions": [{**extension, "alternates": []}]})

    assert sorted({icon["size"] for icon in command_icons}) == [16, 32, 80]
    for icon in command_icons:
        assert icon["url"] == f"{BASE_URL}/addin/static/icon-{icon['size']}.png"
        assert measured_size(icon["url"]) == (icon["size"], icon["size"])
    # alternateIcons: Microsoft measures the files (64 and 128 px for a mail add-in) and ignores `size`, which the
    # schema limits to the command sizes (extension-common-icon).
    icons = alternate["alternateIcons"]
    assert measured_size(icons["icon"]["url"]) == (64, 64)
    assert measured_size(icons["highResolutionIcon"]["url"]) == (128, 128)
    assert icons["icon"]["size"] == 64


def test_the_ribbon_icons_match_their_drawing():
    for size in draw_icons.RIBBON_SIZES:
        _, _, rows = read_png((REPO / "addin" / "static" / f"icon-{size}.png").read_bytes())
        assert rows == [list(row) for row in draw_icons.ribbon_pixels(size)], size


def test_a_separate_add_in_app_registration_lands_in_web_application_info():
    other = "5E6F7A8B-9C0D-4E1F-8A2B-3C4D5E6F7A8B"
    built = build_manifest(APP_ID, BOT_APP_ID, BASE_URL, "1.0.0", addin_client_id=other)
    assert built["webApplicationInfo"] == {
        "id": other.lower(),
        "resource": f"api://slotwise.acme-it.example/{other.lower()}",
    }
    assert built["bots"][0]["botId"] == BOT_APP_ID.lower()
    custom = build_manifest(APP_ID, BOT_APP_ID, BASE_URL, "1.0.0", addin_app_id_uri="api://slotwise.acme-it.example/x")
    assert custom["webApplicationInfo"]["resource"] == "api://slotwise.acme-it.example/x"
    assert schema_errors(built) == []
    with pytest.raises(ValueError, match="addin_client_id must be a GUID"):
        build_manifest(APP_ID, BOT_APP_ID, BASE_URL, "1.0.0", addin_client_id="not-a-guid")


def test_the_schema_would_catch_a_broken_outlook_extension(manifest):
    [extension] = manifest["extensions"]
    bad = {**manifest, "extensions": [{**extension, "ribbons": [{**extension["ribbons"][0], "contexts": ["compose"]}]}]}
    errors = schema_errors(bad)
    assert len(errors) == 1
    assert errors[0].startswith("/extensions/0/ribbons/0/contexts/0:")
