"""The ledger API's OpenAPI description against what the internal listener really serves.

The description is where the routes come from (kapsa.web.openapi); these tests check the other
direction: that it is served, that every documented operation answers and nothing undocumented
does, that each handler reads exactly the parameters documented for it, and then fuzz the
running API with schemathesis (test_the_api_holds_to_its_description_under_fuzzing).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kapsa.ledger import Ledger
from kapsa.ledger.records import Deployment, Entry
from kapsa.web import WebServer, openapi
from kapsa.web.ledger_api import LedgerApi
from tests.ledger._factory import append_forged_web_rows, append_web_history, entry, minutes
from tests.web.conftest import FakeOperator, serve


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A real SQLite file: web's history, rows forged for it from elsewhere, another Project."""
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        append_web_history(opened)
        append_forged_web_rows(opened)
        opened.append(entry(project="other", name="other-prod", uid="uid-other", at=minutes(5)))
        yield opened


@pytest.fixture
def api(operator: FakeOperator, ledger: Ledger) -> Iterator[WebServer]:
    with serve(operator, ledger=ledger) as running:
        yield running


SAMPLES = {"project": "web", "env": "web-prod", "time": "2025-03-01T12:20:00Z"}


def _sample_url(server: WebServer, operation: openapi.Operation) -> str:
    path = operation.path.format(**SAMPLES)
    required = {p.name: SAMPLES[p.name] for p in operation.query if p.required}
    query = "&".join(f"{k}={v}" for k, v in required.items())
    return f"{server.internal_url}{openapi.PREFIX}{path}" + (f"?{query}" if query else "")


def _documented_statuses(path: str) -> set[int]:
    return {int(code) for code in openapi.document()["paths"][path]["get"]["responses"]}


def test_the_internal_listener_serves_the_description(api: WebServer) -> None:
    answer = requests.get(f"{api.internal_url}/api/v1/openapi.json", timeout=5)

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == openapi.document()
    assert answer.json()["openapi"].startswith("3.")
    # The port facing the cluster serves no ledger, and so no description of it either.
    assert requests.get(f"{api.url}/api/v1/openapi.json", timeout=5).status_code == 404


@pytest.mark.parametrize("operation", openapi.OPERATIONS, ids=lambda o: o.operation_id)
def test_every_documented_operation_is_served(api: WebServer, operation: openapi.Operation) -> None:
    answer = requests.get(_sample_url(api, operation), timeout=5)

    assert answer.status_code == 200, answer.text
    assert answer.status_code in _documented_statuses(openapi.PREFIX + operation.path)
    assert answer.json() is not None
    refused = requests.post(_sample_url(api, operation), timeout=5)
    assert refused.status_code == 405  # read-only, as documented: GET alone


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/history",
        "/api/v1/history/web/web-prod",
        "/api/v1/deployments/web",
        "/api/v1/at/web",
        "/api/v1/at/web/web-prod/now",
        "/api/v1/why/web",
        "/api/v2/history/web",
        "/api/history/web",
        "/api",
    ],
)
def test_nothing_undocumented_is_served_under_the_api(api: WebServer, path: str) -> None:
    answer = requests.get(f"{api.internal_url}{path}", timeout=5)

    assert answer.status_code == 404
    assert answer.json() == {"error": "no such path"}


def test_the_paths_the_description_lists_are_its_operations() -> None:
    paths = openapi.document()["paths"]

    assert set(paths) == {openapi.PREFIX + o.path for o in openapi.OPERATIONS}
    for operation in openapi.OPERATIONS:
        declared = [p["name"] for p in paths[openapi.PREFIX + operation.path]["get"]["parameters"]]
        names_in_path = [s[1:-1] for s in operation.segments if s.startswith("{")]
        assert declared[: len(names_in_path)] == names_in_path


class _Recording(dict[str, str]):
    """A query that notes every parameter the handler asks for."""

    def __init__(self, values: Mapping[str, str], read: set[str]) -> None:
        super().__init__(values)
        self._read = read

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self._read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._read.add(str(key))
        return super().__contains__(key)


@pytest.mark.parametrize("operation", openapi.OPERATIONS, ids=lambda o: o.operation_id)
def test_each_handler_reads_exactly_the_query_parameters_documented_for_it(
    ledger: Ledger, operation: openapi.Operation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An undocumented parameter would be dropped before the handler (Operation.known), and a
    documented one the handler ignores would be a lie: both fail here."""
    read: set[str] = set()
    values = {"env": "web-prod", "since": "2h", "until": "1h", "limit": "3", "time": "1h"}
    monkeypatch.setattr(
        openapi.Operation, "known", lambda self, query: _Recording(_known(self, query), read)
    )
    api = LedgerApi(ledger=ledger, clock=lambda: datetime(2025, 3, 1, 13, 0, tzinfo=UTC))

    answer = api.serve(operation, path=SAMPLES, query=values)

    assert answer.status.value == 200, answer.body
    assert read == {p.name for p in operation.query}


_known = openapi.Operation.known


def test_the_record_schemas_have_every_field_the_records_send() -> None:
    schemas = openapi.document()["components"]["schemas"]
    sample = entry(commit="c1" * 20, image="img", generation=3, source="webhook")
    span = Deployment(
        release=1,
        commit=None,
        image="img",
        started=minutes(1),
        ended=None,
        ready=True,
        entry=sample,
    )

    assert set(schemas["Entry"]["properties"]) == set(sample.to_dict())
    assert set(schemas["Deployment"]["properties"]) == set(span.to_dict())
    assert schemas["Entry"]["properties"]["namespace"] == {"type": ["string", "null"]}
    assert schemas["Entry"]["properties"]["at"] == {"type": "string", "format": "date-time"}
    assert set(Entry.__dataclass_fields__) == set(schemas["Entry"]["required"])


# -- fuzzing ---------------------------------------------------------------------------------

#: The checks that hold for every request: no server error (beyond the 503 the description
#: documents), and status, content type, headers and body as documented.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SCHEMA = schemathesis.openapi.from_dict(openapi.document())
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
#: Per operation and mode; about two seconds for all of them on this machine.
FUZZ = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _cases() -> list[Any]:
    """(operation, mode) pairs; an operation without parameters has no invalid request."""
    found = []
    for result in SCHEMA.get_all_operations():
        operation = result.ok()
        found.append(pytest.param(operation, POSITIVE, id=f"{operation.label} positive"))
        if operation.definition.raw.get("parameters"):
            found.append(pytest.param(operation, NEGATIVE, id=f"{operation.label} negative"))
    return found


def _strategy(operation: Any, mode: schemathesis.GenerationMode) -> Any:
    """Schemathesis' requests; valid ones also aimed at rows that exist, since a random valid
    name finds nothing and a random string is rarely a time (both still part of the mix)."""
    generated = operation.as_strategy(generation_mode=mode)
    if mode.is_negative:
        return generated
    parameters = operation.definition.raw.get("parameters", [])
    path = {p["name"]: SAMPLES[p["name"]] for p in parameters if p["in"] == "path"}
    query = {
        p["name"]: SAMPLES[p["name"]] for p in parameters if p["in"] == "query" and p["required"]
    }
    aimed = operation.as_strategy(generation_mode=mode, path_parameters=path, query=query)
    return st.one_of(generated, aimed)


@pytest.mark.parametrize(("operation", "mode"), _cases())
def test_the_api_holds_to_its_description_under_fuzzing(
    api: WebServer, operation: Any, mode: schemathesis.GenerationMode
) -> None:
    """A real listener on 127.0.0.1 over a real SQLite ledger with rows, fuzzed by schemathesis:
    valid requests and invalid ones (a name that is no object name, a limit of 0 or "x", an
    empty or missing time), each answered as documented, never with a 500."""
    seen: list[tuple[int, Any]] = []
    documented = _documented_statuses(operation.path)
    checks = [*CHECKS, negative_data_rejection] if mode.is_negative else CHECKS

    @FUZZ
    @given(case=_strategy(operation, mode))
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call_and_validate(base_url=api.internal_url, checks=checks)
        seen.append((response.status_code, response.json()))
        assert response.status_code < 500 or (response.status_code == 503 and 503 in documented), (
            response.text
        )

    fuzz()

    statuses = {status for status, _ in seen}
    if mode.is_positive:  # some requests reached rows of the ledger, not only refusals
        assert any(status == 200 and body not in ([], None) for status, body in seen)
    else:  # and invalid ones were refused (negative_data_rejection judged each)
        assert 400 in statuses, statuses
