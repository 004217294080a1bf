"""Plant each break a guarantee must survive, one at a time, and check that the tests meant to defend it fail.

Each mutant is a one-line (or one-statement) change to the product that breaks one promise: the booking check
ignoring existing bookings, the rate limiter letting requests through when full, the Liquid sandbox gaining a file
loader, and so on. The script copies the repository to a temporary folder, applies one mutant there, runs only the
test files that should catch it, and restores the file. A mutant is *killed* when those tests fail (pytest exit 1);
it *survives* when they pass. Any survivor, or a mutant that no longer applies (the code moved: update the mutant),
fails the run. The working tree is never touched.

Usage: scripts/mutants [NAME ...]   (PostgreSQL-only mutants run when SLOTWISE_TEST_POSTGRES_URL is set)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    select: str = ""
    """A pytest -k expression, to run only the tests (and database variants) meant to catch it."""
    needs_postgres: bool = False


MUTANTS = (
    Mutant(
        "booking check ignores existing bookings",
        "storage/repositories.py",
        "        booked = tuple(tuple(row) for row in conn.execute("
        "_booked_query(tenant_id, host_ids, starts_at, ends_at)))\n"
        "        external = [\n",
        "        booked = ()\n        external = [\n",
        ("tests/integration/test_booking_api.py",),
        "overlaps and sqlite",
    ),
    Mutant(
        "slots ignore cached Microsoft 365 and PSA busy time",
        "storage/repositories.py",
        "        for user_id, busy_start, busy_end, label in external:\n",
        "        for user_id, busy_start, busy_end, label in ():\n",
        ("tests/integration/test_fanout_every_psa.py",),
        "connectwise",
    ),
    Mutant(
        "Liquid sandbox gains a file loader rooted at /",
        "workflows/templates.py",
        "_HTML = Environment(autoescape=True, undefined=StrictUndefined)\n",
        "_HTML = Environment(autoescape=True, undefined=StrictUndefined, "
        'loader=__import__("liquid").FileSystemLoader("/"))\n',
        ("tests/integration/test_mail.py",),
        "file_that_exists",
    ),
    Mutant(
        "rate limiter lets a new key through when its table is full",
        "pages/ratelimit.py",
        "                if len(self._events) >= self._max_keys:\n                    return False\n",
        "                if len(self._events) >= self._max_keys:\n                    return True\n",
        ("tests/unit/test_rate_limiter.py",),
    ),
    Mutant(
        "CSRF check removed from the manage page's cancel form",
        "pages/routes.py",
        '        raise web.HTTPForbidden(text="Your session expired. Reload the page and try again.")\n'
        '    zone_name = str(form.get("time_zone") or booking.client.time_zone)\n',
        '        pass\n    zone_name = str(form.get("time_zone") or booking.client.time_zone)\n',
        ("tests/integration/test_security.py",),
        "csrf and sqlite",
    ),
    Mutant(
        "CSRF check removed from the manage page's reschedule form",
        "pages/routes.py",
        '        raise web.HTTPForbidden(text="Your session expired. Reload the page and try again.")\n'
        '    zone = parse_time_zone(str(form.get("time_zone") or booking.client.time_zone))\n',
        '        pass\n    zone = parse_time_zone(str(form.get("time_zone") or booking.client.time_zone))\n',
        ("tests/integration/test_security.py",),
        "csrf and sqlite",
    ),
    Mutant(
        "a change to a booking skips the version check",
        "storage/repositories.py",
        "    if expected_version is not None and current.version != expected_version:\n",
        "    if False:\n",
        ("tests/integration/test_booking_races.py",),
        "twelve and sqlite",
    ),
    Mutant(
        "a cancelled booking can still be moved",
        "scheduling/service.py",
        '            raise BookingChanged("This booking was already cancelled", current=booking)\n',
        "            pass\n",
        ("tests/integration/test_booking_api.py",),
        "reschedules_and_cancels and sqlite",
    ),
    Mutant(
        "bookings do not lock their hosts (buffers race on PostgreSQL)",
        "storage/repositories.py",
        "            _lock_hosts(conn, target.tenant_id, host_ids)\n",
        "",
        ("tests/integration/test_booking_races.py",),
        "buffer and postgres",
        needs_postgres=True,
    ),
    Mutant(
        "an Idempotency-Key returns another client's booking",
        "scheduling/service.py",
        "        raise IdempotencyKeyReused()\n",
        "        pass\n",
        ("tests/integration/test_booking_api.py",),
        "idempotency and sqlite",
    ),
    Mutant(
        "NUL bytes reach the database",
        "pages/routes.py",
        '    if "\\x00" in value:\n',
        "    if False:\n",
        ("tests/integration/test_bad_input_matrix.py",),
        "NUL and sqlite",
    ),
    Mutant(
        "dates outside the supported range are accepted",
        "scheduling/service.py",
        "    if not EARLIEST_DAY <= day <= LATEST_DAY:\n",
        "    if False:\n",
        ("tests/integration/test_bad_input_matrix.py",),
        "year and sqlite",
    ),
    Mutant(
        "a database outage is a 500",
        "app.py",
        '        if not is_database_fault(exc):\n            raise\n        log.warning("database unavailable',
        '        if True:\n            raise\n        log.warning("database unavailable',
        ("tests/integration/test_database_faults.py",),
        "refuse",
        needs_postgres=True,
    ),
    Mutant(
        "a single-tenant bot serves an activity of another tenant",
        "bot/auth.py",
        "        _check_activity_tenant(activity, claims, settings.tenant_id)\n",
        "",
        ("tests/integration/test_bot_privacy.py",),
        "sqlite or not postgres",
    ),
    Mutant(
        "each process keeps its own vendor limits on PostgreSQL",
        "app.py",
        "    return InMemoryVendorLimits() if database.is_sqlite else PostgresVendorLimits(database)\n",
        "    return InMemoryVendorLimits()\n",
        ("tests/integration/test_vendor_limits_end_to_end.py",),
        needs_postgres=True,
    ),
    Mutant(
        "a vendor that refuses our credentials is asked again by every step",
        "workflows/breaker.py",
        "        if ago >= self.hold_seconds:\n",
        "        if True:\n",
        ("tests/integration/test_step_dependencies.py",),
        "refuses and sqlite",
    ),
    Mutant(
        "an Autotask look-up adopts a record without the exact marker",
        "integrations/autotask/adapter.py",
        "        marked = [item for item in items if carries_marker(item, field, idempotency_key)]\n",
        "        marked = items\n",
        ("tests/contracts/test_psa_contract.py",),
        "wildcards and autotask",
    ),
    Mutant(
        "HaloPSA appointments looked up as starting after the window start",
        "integrations/halopsa/adapter.py",
        '            "end_date": to_wire_time(ending_after - _ZONE_SLACK),\n',
        '            "start_date": to_wire_time(ending_after),\n',
        ("tests/contracts/test_psa_contract.py",),
        "busy_time and halopsa",
    ),
    Mutant(
        "a booking through a scheduling request leaves its follow-ups pending",
        "workflows/dispatch.py",
        "            cancel_follow_ups(conn, booking.tenant_id, booking.request_id)\n",
        "            pass\n",
        ("tests/integration/test_request_triggers.py",),
        "stop_the_moment and sqlite",
    ),
    Mutant(
        "a reminder's soft grace counts from when it was planned",
        "workflows/outbox.py",
        "        grace_start = max(moment, spec.run_after or moment)\n",
        "        grace_start = moment\n",
        ("tests/integration/test_step_dependencies.py",),
        "due_later and sqlite",
    ),
)


def say(line: str, *, error: bool = False) -> None:
    (sys.stderr if error else sys.stdout).write(line + "\n")
    (sys.stderr if error else sys.stdout).flush()


def copy_repository(target: Path) -> None:
    """Every tracked and new (not ignored) file, plus links to the installed environments."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        source = ROOT / raw.decode()
        if not source.is_file():
            continue
        destination = target / raw.decode()
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
    for environment in (".venv", "node_modules"):
        if (ROOT / environment).exists():
            (target / environment).symlink_to(ROOT / environment)


def run(mutant: Mutant, copy: Path) -> tuple[str, float, str]:
    path = copy / mutant.path
    original = path.read_text()
    if not mutant.old or original.count(mutant.old) != 1:
        return "does not apply", 0.0, f"the text to change is not in {mutant.path} exactly once"
    path.write_text(original.replace(mutant.old, mutant.new))
    started = time.monotonic()
    try:
        command = [str(copy / ".venv/bin/python"), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests]
        if mutant.select:
            command += ["-k", mutant.select]
        result = subprocess.run(command, cwd=copy, capture_output=True, text=True, check=False)  # noqa: S603
    finally:
        path.write_text(original)
    elapsed = time.monotonic() - started
    tail = "\n".join(result.stdout.splitlines()[-3:])
    if result.returncode == 1:
        return "killed", elapsed, tail
    if result.returncode == 0:
        return "SURVIVED", elapsed, tail
    return f"error (pytest exit {result.returncode})", elapsed, result.stdout[-2000:] + result.stderr[-2000:]


def main(names: list[str]) -> int:
    chosen = [mutant for mutant in MUTANTS if not names or mutant.name in names]
    has_postgres = bool(os.environ.get("SLOTWISE_TEST_POSTGRES_URL"))
    failures = 0
    with tempfile.TemporaryDirectory(prefix="slotwise-mutants-") as folder:
        copy = Path(folder)
        copy_repository(copy)
        # The copy must be what the tests import, not the working tree the virtualenv was installed from.
        probe = subprocess.run(  # noqa: S603
            [str(copy / ".venv/bin/python"), "-c", "import scheduling; print(scheduling.__file__)"],
            cwd=copy,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not probe.startswith(str(copy)):
            say(f"mutants: tests would import {probe}, not the copy; refusing to run", error=True)
            return 2
        for mutant in chosen:
            if mutant.needs_postgres and not has_postgres:
                say(f"skipped   {mutant.name}: needs PostgreSQL (set SLOTWISE_TEST_POSTGRES_URL)")
                continue
            outcome, elapsed, detail = run(mutant, copy)
            say(f"{outcome:<9} {mutant.name} ({elapsed:.0f} s)")
            if outcome != "killed":
                failures += 1
                say("    " + detail.replace("\n", "\n    "))
    say(f"mutants: {failures} not killed" if failures else f"mutants: all {len(chosen)} killed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
