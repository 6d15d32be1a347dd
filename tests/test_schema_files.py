"""The JSON Schemas: the editor copies in schema/ equal the packaged ones, are valid 2020-12, and are fresh."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from mauto.workflow.schema import SCHEMA_NAMES, schema_text

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted(path.name for path in (ROOT / "schema").glob("*.json"))


def test_there_is_a_schema_for_workflows_projects_and_scenarios():
    assert NAMES == sorted(f"{name}.schema.json" for name in SCHEMA_NAMES) == ["project.schema.json",
                                                                             "scenario.schema.json",
                                                                             "workflow.schema.json"]


def test_the_package_ships_the_same_files():
    packaged = sorted(path.name for path in (ROOT / "mauto" / "data").glob("*.json"))
    assert packaged == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_schema_copy_equals_the_packaged_schema(name: str):
    editor_copy = (ROOT / "schema" / name).read_bytes()
    packaged = (ROOT / "mauto" / "data" / name).read_bytes()
    assert editor_copy == packaged, f"schema/{name} differs from mauto/data/{name}; run python tools/gen_schema.py"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_text_reads_the_packaged_file(name: str):
    assert schema_text(name) == (ROOT / "mauto" / "data" / f"{name}.schema.json").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", NAMES)
def test_each_schema_is_a_valid_2020_12_schema(name: str):
    schema = json.loads((ROOT / "schema" / name).read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_the_workflow_schema_accepts_the_design_pages_example():
    import yaml

    example = yaml.safe_load("""
        id: abandoned-cart
        version: 4
        name: Abandoned cart recovery
        description: Three reminders after a cart is abandoned; stops when the order is placed.
        category: marketing
        tags: [ecommerce, revenue]
        trigger: {event: cart_abandoned, where: "event.cart_value >= 20"}
        audience: "contact.country in ['FR', 'BE']"
        reentry: {after: 30d}
        exit_on: [order_placed]
        goal: {event: order_placed, within: 7d}
        settings:
          timezone: contact
          quiet_hours: {start: "21:00", end: "08:00"}
          send_days: [mon, tue, wed, thu, fri, sat]
        steps:
          - wait: 1h
          - id: reminder-1
            email: cart/reminder-1
          - wait: 24h
          - if: "not has_event('order_placed', since='entry')"
            then:
              - assign_coupon: {pool: CART10, as: coupon}
              - id: reminder-2
                email: cart/reminder-2
          - wait_for: {event: email_clicked, where: "event.step == 'reminder-2'", timeout: 3d}
            on_event:
              - score: 10
            on_timeout:
              - id: last-call
                sms: cart/last-call
    """)
    schema = json.loads((ROOT / "schema" / "workflow.schema.json").read_text(encoding="utf-8"))
    errors = [error.message for error in Draft202012Validator(schema).iter_errors(example)]
    assert errors == []


def test_the_schemas_are_up_to_date_with_their_generator():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_schema.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
