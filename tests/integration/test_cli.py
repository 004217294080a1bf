"""The `slotwise` command line, run as a real process against a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[2]


def slotwise(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SLOTWISE_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "SLOTWISE_BASE_URL": "https://book.example.com",
        "SLOTWISE_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
    }
    return subprocess.run(  # noqa: S603 (our own entry point, fixed arguments)
        [sys.executable, str(ROOT / "app.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_apply_prints_a_dry_run_diff_then_applies_idempotently(tmp_path: Path) -> None:
    dry = slotwise(tmp_path, "apply", str(FIXTURES / "tenant.yaml"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+ user alice" in dry.stdout
    links_before = slotwise(tmp_path, "links", "--json")
    assert json.loads(links_before.stdout) == []
    applied = slotwise(tmp_path, "apply", str(FIXTURES / "tenant.yaml"))
    assert applied.returncode == 0, applied.stderr
    again = slotwise(tmp_path, "apply", str(FIXTURES / "tenant.yaml"))
    assert again.returncode == 0
    assert "No changes." in again.stdout


def test_a_bad_file_names_the_line_and_field_and_changes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (FIXTURES / "tenant.yaml").read_text().replace("time_zone: Europe/London", "time_zone: Mars/Olympus")
    )
    result = slotwise(tmp_path, "apply", str(bad))
    assert result.returncode == 1
    assert "bad.yaml:23: users[1].time_zone" in result.stderr
    assert json.loads(slotwise(tmp_path, "links", "--json").stdout) == []


def test_links_lists_every_bookable_url_of_a_tenant(tmp_path: Path) -> None:
    slotwise(tmp_path, "apply", str(FIXTURES / "tenant.yaml"))
    slotwise(tmp_path, "apply", str(FIXTURES / "other_tenant.yaml"))
    result = slotwise(tmp_path, "links", "--tenant", "acme", "--json")
    assert result.returncode == 0, result.stderr
    links = json.loads(result.stdout)
    urls = {link["url"] for link in links}
    assert "https://book.example.com/book/acme/intro-call" in urls
    assert "https://book.example.com/u/acme/alice" in urls
    assert "https://book.example.com/t/acme/sales" in urls
    assert all(link["tenant"] == "acme" for link in links)
    assert not any("globex" in url for url in urls)


def test_schema_and_migrate_commands_work(tmp_path: Path) -> None:
    schema = slotwise(tmp_path, "apply", "--schema")
    assert schema.returncode == 0
    document = json.loads(schema.stdout)
    assert "appointment_types" in document["properties"]
    migrated = slotwise(tmp_path, "migrate")
    assert migrated.returncode == 0
    assert "up to date" in migrated.stdout
