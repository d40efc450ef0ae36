"""The API's OpenAPI 3.1 document is valid, served, and the live app keeps to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from builders import seed_topics
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sync_support import bearer, confirmed, new_token

import preference_center

DOCUMENT = Path(preference_center.__file__).parent / "openapi.json"


def test_the_document_is_valid_openapi_3_1_and_is_what_the_app_serves(client):
    document = json.loads(DOCUMENT.read_text("utf-8"))
    validate(document)
    assert document["openapi"].startswith("3.1")
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200 and served.get_json() == document


def test_every_api_route_is_described(app):
    document = json.loads(DOCUMENT.read_text("utf-8"))
    routes = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")}
    assert routes == set(document["paths"])


@pytest.fixture
def api_schema(app):
    seed_topics(app)
    for n in range(3):
        confirmed(app, f"schema{n}@example.be", first_name=f"=cmd|{n}")
    app.config["API_TOKEN_FOR_TESTS"] = new_token(app)
    return schemathesis.openapi.from_wsgi(
        "/api/v1/openapi.json", app, base_url="https://prefs.example.be"
    )


def test_the_live_api_never_fails_and_never_breaks_its_schema(app, api_schema):
    """schemathesis against the running app: no 5xx, every response as documented.

    Driven through Hypothesis directly: schemathesis's pytest plugin does not run under
    this pytest version (it reaches into a private attribute of pytest's test items).
    """
    headers = bearer(app.config["API_TOKEN_FOR_TESTS"])
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert {"GET /api/v1/changes", "GET /api/v1/subscribers", "GET /api/v1/sync/status"} <= labels
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url="https://prefs.example.be",
                headers=headers,
                # A cursor is opaque: the schema can say "a string", not "one we handed
                # out", so a well-formed but invented cursor is rightly a documented 400.
                excluded_checks=[positive_data_acceptance],
            )

        check()
