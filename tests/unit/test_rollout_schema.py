"""The tenant file schema: the demo validates, and every mistake is reported with its line and field path."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from admin.tenant_file import RolloutError, TenantFile, tenant_file_json_schema, validate_tenant_document
from admin.tenant_yaml import load_tenant_file, parse_tenant_text

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"

# Line numbers matter to these tests: the comment on a line is its number in the file.
MINIMAL = """\
tenant:                                   # 1
  slug: acme                              # 2
  name: Acme MSP                          # 3
  time_zone: Europe/London                # 4
  holidays: [2026-12-25]                  # 5
users:                                    # 6
  - slug: alice                           # 7
    name: Alice                           # 8
    email: alice@acme.example             # 9
    time_zone: Europe/London              # 10
    primary_calendar: m365                # 11
    blocking_calendars: [psa]             # 12
    working_hours:                        # 13
      mon: ["09:00-12:00", "13:00-17:00"] # 14
      sat: ["09:00-24:00"]                # 15
    date_overrides:                       # 16
      2026-12-24: ["09:00-12:00"]         # 17
  - slug: bob                             # 18
    name: Bob                             # 19
    email: bob@acme.example               # 20
    time_zone: America/New_York           # 21
    primary_calendar: psa                 # 22
    working_hours: {tue: ["09:00-17:00"]} # 23
teams:                                    # 24
  - slug: sales                           # 25
    name: Sales                           # 26
    members: [alice, bob]                 # 27
appointment_types:                        # 28
  - slug: intro                           # 29
    name: Intro call                      # 30
    duration: 30                          # 31
    minimum_notice: 4 business hours      # 32
    location: {kind: phone}               # 33
    host: {user: alice}                   # 34
  - slug: discovery                       # 35
    name: Discovery                       # 36
    duration: 45                          # 37
    location: {kind: teams}               # 38
    host: {team: sales, mode: round_robin} # 39
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(RolloutError) as caught:
        parse_tenant_text(text, "acme.yaml")
    return caught.value.messages


def test_the_minimal_file_validates_with_its_defaults_filled_in() -> None:
    file = parse_tenant_text(MINIMAL)
    intro, discovery = file.appointment_types
    assert intro.minimum_notice == "4 business_hours"
    assert intro.maximum_window == "60 days"
    assert intro.increment is None
    assert intro.mode == "classic"
    assert discovery.host.host_mode == "round_robin"
    assert file.users[0].role == "member"
    assert file.users[0].date_overrides == {"2026-12-24": ["09:00-12:00"]}
    assert file.tenant.holidays == ["2026-12-25"]


def test_the_demo_file_validates() -> None:
    file = load_tenant_file(DEMO)
    assert file.tenant.slug == "demo"
    assert file.tenant.name == "Northwind IT (demo)"


def test_the_demo_covers_every_feature_of_the_rollout() -> None:
    file = load_tenant_file(DEMO)
    zones = {user.time_zone for user in file.users}
    assert {"America/New_York", "America/Los_Angeles", "Europe/London", "Asia/Kolkata"} <= zones
    assert any(user.role == "manager" for user in file.users)
    assert any(user.primary_calendar == "psa" for user in file.users)
    assert any(user.working_hours.sat for user in file.users)
    assert any(user.date_overrides for user in file.users)
    assert {"2026-12-25", "2027-01-01"} <= set(file.tenant.holidays)
    sales = next(team for team in file.teams if team.slug == "sales")
    assert len(sales.members) >= 4
    types = file.appointment_types
    assert {kind.location.kind for kind in types} == {"teams", "phone", "onsite", "custom"}
    assert any(kind.host.team == "sales" and kind.host.host_mode == "round_robin" for kind in types)
    assert any(kind.host.panel is not None and 2 <= len(kind.host.panel) <= 3 for kind in types)
    units = {span.split(" ")[1] for kind in types for span in (kind.minimum_notice, kind.maximum_window)}
    assert {"business_hours", "business_days"} <= units
    assert any(kind.buffer_before or kind.buffer_after for kind in types)
    questions = [question for kind in types for question in kind.questions]
    assert any(question.label == "Company name" and question.required for question in questions)
    assert any(question.label == "What would you like to discuss?" and question.multiline for question in questions)


def schema_problems(value: Any, schema: dict[str, Any], defs: dict[str, Any], path: str = "") -> list[str]:
    """A small JSON Schema walker (objects, arrays, anyOf, $ref, required, additionalProperties, enum/const)."""
    if "$ref" in schema:
        return schema_problems(value, defs[schema["$ref"].rsplit("/", 1)[1]], defs, path)
    if "anyOf" in schema:
        attempts = [schema_problems(value, option, defs, path) for option in schema["anyOf"]]
        return [] if any(not found for found in attempts) else attempts[0]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} not in {schema['enum']}"]
    if "const" in schema and value != schema["const"]:
        return [f"{path}: {value!r} is not {schema['const']!r}"]
    kind = schema.get("type")
    if kind == "object" and isinstance(value, dict):
        found = [f"{path}.{key}: required" for key in schema.get("required", []) if key not in value]
        properties = schema.get("properties", {})
        for key, child in value.items():
            if key in properties:
                found += schema_problems(child, properties[key], defs, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += schema_problems(child, schema["additionalProperties"], defs, f"{path}.{key}")
            elif schema.get("additionalProperties") is False and not key.startswith("x-"):
                found.append(f"{path}.{key}: not allowed")
        return found
    if kind == "array" and isinstance(value, list):
        return [
            problem
            for index, item in enumerate(value)
            for problem in schema_problems(item, schema["items"], defs, f"{path}[{index}]")
        ]
    expected = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool, "null": type(None)}
    if kind in expected and not isinstance(value, expected[kind]):
        return [f"{path}: {value!r} is not {kind}"]
    return []


def test_the_json_schema_is_produced_and_the_demo_fits_it() -> None:
    schema = tenant_file_json_schema()
    assert schema["title"] == "Slotwise tenant file"
    assert set(schema["properties"]) == {"tenant", "branding", "users", "teams", "appointment_types", "integrations"}
    assert schema["required"] == ["tenant"]
    # Dates must reach the schema as the text the file holds, not as the date objects safe_load makes of them.
    demo = _dates_as_text(yaml.safe_load(DEMO.read_text()))
    assert schema_problems(demo, schema, schema["$defs"]) == []
    assert schema_problems({"tenant": {"slug": "x"}, "colour": 1}, schema, schema["$defs"]) != []


def _dates_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _dates_as_text(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(child) for child in value]
    return value.isoformat() if isinstance(value, date) else value


def test_the_schema_validates_plain_data_without_yaml() -> None:
    data = yaml.safe_load(MINIMAL)
    file = validate_tenant_document(data)
    assert isinstance(file, TenantFile)
    data["teams"][0]["members"].append("zed")
    with pytest.raises(RolloutError, match=r"teams\[0\]\.members\[2\]: unknown user 'zed'"):
        validate_tenant_document(data)


@pytest.mark.parametrize(
    ("mistake", "old", "new", "expected"),
    [
        (
            "unknown field",
            "    duration: 30                          # 31\n",
            "    duration: 30\n    colour: blue\n",
            "acme.yaml:32: appointment_types[0].colour: unknown field",
        ),
        (
            "bad time zone",
            "time_zone: America/New_York",
            "time_zone: Mars/Base",
            "acme.yaml:21: users[1].time_zone: 'Mars/Base' is not an IANA time zone",
        ),
        (
            "bad working hours string",
            '{tue: ["09:00-17:00"]}',
            '{tue: ["9am-5pm"]}',
            "acme.yaml:23: users[1].working_hours.tue[0]: '9am-5pm' is not a working-hours interval",
        ),
        (
            "interval ending at midnight written 00:00",
            '["09:00-24:00"]',
            '["09:00-00:00"]',
            "acme.yaml:15: users[0].working_hours.sat[0]: '09:00-00:00' ends at or before it starts",
        ),
        (
            "overlapping intervals",
            '["09:00-12:00", "13:00-17:00"]',
            '["09:00-12:00", "11:00-17:00"]',
            "acme.yaml:14: users[0].working_hours.mon: '11:00-17:00' overlaps or comes before '09:00-12:00'",
        ),
        (
            "unknown team member",
            "members: [alice, bob]",
            "members: [alice, bob, zed]",
            "acme.yaml:27: teams[0].members[2]: unknown user 'zed'",
        ),
        (
            "duplicate slug",
            "  - slug: bob ",
            "  - slug: alice ",
            "acme.yaml:18: users[1].slug: duplicate slug 'alice' (also users[0])",
        ),
        (
            "bad notice unit",
            "minimum_notice: 4 business hours",
            "minimum_notice: 4 fortnights",
            "acme.yaml:32: appointment_types[0].minimum_notice: '4 fortnights' is not a length of time",
        ),
        (
            "unknown host team",
            "host: {team: sales, mode: round_robin}",
            "host: {team: x, mode: round_robin}",
            "acme.yaml:39: appointment_types[1].host.team: unknown team 'x'",
        ),
        (
            "two hosts at once",
            "host: {user: alice}",
            "host: {user: alice, panel: [bob]}",
            "acme.yaml:34: appointment_types[0].host: give exactly one of `user`, `team`",
        ),
        (
            "primary calendar also blocking",
            "blocking_calendars: [psa]",
            "blocking_calendars: [m365]",
            "acme.yaml:12: users[0].blocking_calendars: 'm365' is the primary calendar",
        ),
        (
            "impossible date",
            "2026-12-24: [",
            "2026-02-30: [",
            "acme.yaml:17: users[0].date_overrides.2026-02-30: '2026-02-30' is not a real calendar date",
        ),
        (
            "duration out of range",
            "duration: 45",
            "duration: 600",
            "acme.yaml:37: appointment_types[1].duration: Input should be less than or equal to 480 (got 600)",
        ),
        (
            "missing required field",
            "    location: {kind: teams}               # 38\n",
            "",
            "acme.yaml:35: appointment_types[1].location: required field is missing",
        ),
        (
            "duplicate key",
            "    duration: 45                          # 37\n",
            "    duration: 45\n    duration: 50\n",
            "acme.yaml:38: duplicate key 'duration' (first on line 37)",
        ),
        (
            "YAML syntax error",
            "    duration: 30                          # 31\n",
            '    duration: "30\n',
            "acme.yaml:40: YAML syntax error: while scanning a quoted scalar (from line 31)",
        ),
    ],
)
def test_a_bad_file_is_refused_with_its_line_and_field_path(mistake: str, old: str, new: str, expected: str) -> None:
    assert old in MINIMAL, mistake
    messages = problems_of(MINIMAL.replace(old, new, 1))
    assert any(message.startswith(expected) for message in messages), messages


def test_every_problem_in_a_file_is_reported_at_once_in_line_order() -> None:
    text = MINIMAL.replace("time_zone: Europe/London ", "time_zone: Mars/Base ").replace("duration: 45", "duration: 4")
    messages = problems_of(text)
    assert [message.split(":")[1] for message in messages] == ["4", "10", "37"]


def test_a_flow_mapping_with_a_question_mark_is_reported_as_a_yaml_error_with_its_line() -> None:
    text = MINIMAL + "    questions:\n      - {key: topics, label: What now?, multiline: true}\n"
    messages = problems_of(text)
    assert messages[0].startswith("acme.yaml:41: YAML syntax error")


def test_an_empty_file_or_a_list_is_refused() -> None:
    assert problems_of("") == ["acme.yaml:1: the file is empty"]
    assert problems_of("- a\n") == [
        "acme.yaml:1: (file): the file must be a mapping with tenant, users, teams and appointment_types"
    ]


def test_a_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(RolloutError, match=r"nowhere\.yaml: cannot read the file"):
        load_tenant_file(tmp_path / "nowhere.yaml")


def test_load_names_the_file_path_in_each_message(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(DEMO.read_text().replace("time_zone: Asia/Kolkata", "time_zone: Mars/Base"))
    with pytest.raises(RolloutError) as caught:
        load_tenant_file(path)
    (message,) = caught.value.messages
    line = int(message.removeprefix(f"{path}:").split(":")[0])
    assert DEMO.read_text().splitlines()[line - 1].strip() == "time_zone: Asia/Kolkata"
    assert message.endswith("users[3].time_zone: 'Mars/Base' is not an IANA time zone")


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("30 minutes", "30 minutes"),
        ("1 minute", "1 minutes"),
        ("2 hours", "2 hours"),
        ("1 day", "1 days"),
        ("4 business_hours", "4 business_hours"),
        ("1 business hour", "1 business_hours"),
        ("3 business days", "3 business_days"),
        ("2 business_day", "2 business_days"),
    ],
)
def test_spans_accept_singular_plural_and_spaced_business_units(written: str, stored: str) -> None:
    file = parse_tenant_text(MINIMAL.replace("4 business hours", written))
    assert file.appointment_types[0].minimum_notice == stored


def test_a_zero_maximum_window_is_refused() -> None:
    text = MINIMAL.replace("    minimum_notice: 4 business hours      # 32\n", "    maximum_window: 0 days\n")
    assert any("maximum_window: a maximum window of zero" in message for message in problems_of(text))


def test_extension_keys_hold_anchors_and_are_otherwise_ignored() -> None:
    text = 'x-hours: &hours\n  mon: ["08:00-16:00"]\n' + MINIMAL.replace(
        'working_hours: {tue: ["09:00-17:00"]}', "working_hours: *hours"
    )
    file = parse_tenant_text(text)
    assert file.users[1].working_hours.mon == ["08:00-16:00"]


def test_a_workflow_is_validated_and_stored_normalised() -> None:
    workflow = (
        "    mode: workflow\n    workflow:\n      triggers:\n        client_scheduled:\n"
        "          - {action: create_ticket, ticket_board: Sales}\n          - {action: send_email}\n"
    )
    connections = "integrations:\n  psa: {vendor: connectwise}\n  email: {vendor: smtp}\n"
    # A phone call: a Teams location would also need a create_m365_event step.
    minimal = MINIMAL.replace("location: {kind: teams}  ", "location: {kind: phone}  ")
    assert minimal != MINIMAL
    file = parse_tenant_text(minimal + workflow + connections)
    assert file.appointment_types[1].workflow == {
        "triggers": {
            "client_scheduled": [{"action": "create_ticket", "ticket_board": "Sales"}, {"action": "send_email"}]
        }
    }
    # Actions for systems the file does not connect would fail on every booking: refused, naming the action.
    messages = problems_of(MINIMAL + workflow)
    assert any("'create_ticket' needs a connected PSA" in m for m in messages)
    assert any("'send_email' needs an email connection" in m for m in messages)
    # YAML 1.1 reads an unquoted `on` key as the boolean True, which JSON could not keep.
    messages = problems_of(MINIMAL + "    workflow:\n      on: booked\n")
    assert any("appointment_types[1].workflow: key True at top level must be text" in m for m in messages)


def test_a_bad_workflow_names_the_action_and_mode_workflow_needs_one() -> None:
    unknown = "    mode: workflow\n    workflow:\n      triggers:\n        client_scheduled:\n          - {action: teleport}\n"
    assert any("workflow" in m and "teleport" in m for m in problems_of(MINIMAL + unknown))
    custom = (
        "    mode: workflow\n    workflow:\n      triggers:\n        client_scheduled:\n"
        "          - {action: send_email, template: custom}\n"
    )
    assert any("custom email needs both" in m for m in problems_of(MINIMAL + custom))
    assert any("needs a 'workflow'" in m for m in problems_of(MINIMAL + "    mode: workflow\n"))
