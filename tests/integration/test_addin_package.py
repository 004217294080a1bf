"""`slotwise manifest build`: the one app package (bot + message extension + Outlook add-in) filled from settings,
valid offline, and every icon it names (in the zip or served by Slotwise at its URL) in the size declared."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from app import main
from storage.database import Database
from tests.conftest import FixedClock, start_client
from tests.unit.test_manifest import read_png, run_node_validator, schema_errors

BASE_URL = "https://slotwise.acme-it.example"
BOT_APP_ID = "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
ADDIN_CLIENT_ID = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
PACKAGE_ID = "0d6e2f4a-5b1c-4e8f-9a3d-7c2b1e0f4a6d"


def all_urls(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [url for item in value.values() for url in all_urls(item)]
    if isinstance(value, list):
        return [url for item in value for url in all_urls(item)]
    return [value] if isinstance(value, str) and value.startswith(("http://", "https://")) else []


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    for name, value in {
        "SLOTWISE_BASE_URL": BASE_URL,
        "SLOTWISE_BOT_APP_ID": BOT_APP_ID,
        "SLOTWISE_ADDIN_CLIENT_ID": ADDIN_CLIENT_ID,
        "SLOTWISE_APP_PACKAGE_ID": PACKAGE_ID,
        "SLOTWISE_APP_VERSION": "2.3.4",
    }.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "slotwise.zip"
    assert main(["manifest", "build", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    return out


def test_the_package_carries_this_deployments_ids_host_and_version(built: Path) -> None:
    with zipfile.ZipFile(built) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
        assert read_png(archive.read("color.png"))[:2] == (192, 192)
        assert read_png(archive.read("outline.png"))[:2] == (32, 32)
    assert manifest["icons"] == {"color": "color.png", "outline": "outline.png"}
    assert (manifest["id"], manifest["version"]) == (PACKAGE_ID, "2.3.4")
    assert manifest["bots"][0]["botId"] == BOT_APP_ID
    assert manifest["composeExtensions"][0]["botId"] == BOT_APP_ID
    assert manifest["webApplicationInfo"] == {
        "id": ADDIN_CLIENT_ID,
        "resource": f"api://slotwise.acme-it.example/{ADDIN_CLIENT_ID}",
    }
    assert manifest["validDomains"] == ["slotwise.acme-it.example"]
    urls = all_urls({key: value for key, value in manifest.items() if key != "$schema"})
    assert len(urls) >= 12
    assert all(url.startswith(f"{BASE_URL}/") for url in urls), urls
    assert manifest["extensions"][0]["runtimes"][0]["code"]["page"] == f"{BASE_URL}/addin/taskpane.html"


def test_the_packaged_manifest_validates_offline_with_both_validators(built: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(built) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert schema_errors(manifest) == []
    extracted = tmp_path / "manifest.json"
    extracted.write_text(json.dumps(manifest), encoding="utf-8")
    result = run_node_validator(extracted)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {str(extracted): []}


async def test_every_icon_url_is_served_by_slotwise_in_its_size(
    built: Path, sqlite_database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    with zipfile.ZipFile(built) as archive:
        [extension] = json.loads(archive.read("manifest.json"))["extensions"]
    expected: dict[str, int] = {}
    for group in extension["ribbons"][0]["tabs"][0]["groups"]:
        for icon in group["icons"] + [icon for control in group["controls"] for icon in control["icons"]]:
            expected[icon["url"]] = icon["size"]
    alternate = extension["alternates"][0]["alternateIcons"]
    # Measured, not declared, for alternateIcons of a mail add-in: 64 and 128 px (extension-common-icon).
    expected[alternate["icon"]["url"]] = 64
    expected[alternate["highResolutionIcon"]["url"]] = 128
    assert sorted(set(expected.values())) == [16, 32, 64, 80, 128]
    client: TestClient = await start_client(sqlite_database, tmp_path, clock, base_url=BASE_URL)
    try:
        for url, size in expected.items():
            response = await client.get(urlsplit(url).path)
            assert response.status == 200, url
            assert response.content_type == "image/png"
            width, height, _ = read_png(await response.read())
            assert (width, height) == (size, size), url
    finally:
        await client.close()


def test_without_a_bot_app_id_the_build_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLOTWISE_BASE_URL", BASE_URL)
    monkeypatch.delenv("SLOTWISE_BOT_APP_ID", raising=False)
    assert main(["manifest", "build", "--out", str(tmp_path / "x.zip")]) == 2
    assert "SLOTWISE_BOT_APP_ID" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_an_http_base_url_is_refused_because_outlook_loads_only_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLOTWISE_BASE_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("SLOTWISE_BOT_APP_ID", BOT_APP_ID)
    assert main(["manifest", "build", "--out", str(tmp_path / "x.zip")]) == 2
    assert "https" in capsys.readouterr().err


def test_the_zip_is_byte_identical_when_rebuilt(built: Path, tmp_path: Path) -> None:
    first = built.read_bytes()
    assert main(["manifest", "build", "--out", str(tmp_path / "again.zip")]) == 0
    assert (tmp_path / "again.zip").read_bytes() == first
    assert zipfile.ZipFile(io.BytesIO(first)).testzip() is None
