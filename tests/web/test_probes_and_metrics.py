"""What kubelet and Prometheus read from the operator's port."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kapsa import metrics
from kapsa.web import WebServer
from tests.web.conftest import TOKEN, FakeOperator, serve

# Family names as the parser reports them: counters without their `_total` suffix.
FAMILIES = {
    "kapsa_reconcile": "counter",
    "kapsa_reconcile_duration_seconds": "histogram",
    "kapsa_reconcile_errors": "counter",
    "kapsa_transitions": "counter",
    "kapsa_polls": "counter",
    "kapsa_poll_duration_seconds": "histogram",
    "kapsa_builds_started": "counter",
    "kapsa_builds_finished": "counter",
    "kapsa_build_duration_seconds": "histogram",
    "kapsa_environments": "gauge",
    "kapsa_queue_depth": "gauge",
    "kapsa_webhooks": "counter",
}


def scrape(server: WebServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, by name and labels."""
    response = requests.get(f"{server.internal_url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def families(server: WebServer) -> dict[str, str]:
    text = requests.get(f"{server.internal_url}/metrics", timeout=5).text
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def sample(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_healthz_answers_while_the_process_lives(server: WebServer) -> None:
    response = requests.get(f"{server.url}/healthz", timeout=5)

    assert response.status_code == 200


def test_readyz_follows_the_operator(server: WebServer, operator: FakeOperator) -> None:
    not_yet = requests.get(f"{server.url}/readyz", timeout=5)
    operator.is_ready = True
    ready = requests.get(f"{server.url}/readyz", timeout=5)
    operator.is_ready = False
    again = requests.get(f"{server.url}/readyz", timeout=5)

    assert (not_yet.status_code, ready.status_code, again.status_code) == (503, 200, 503)


def test_readyz_is_not_ready_when_the_check_itself_fails(
    server: WebServer, operator: FakeOperator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> bool:
        raise RuntimeError("cache gone")

    monkeypatch.setattr(operator, "ready", broken)
    with serve(operator) as fresh:
        response = requests.get(f"{fresh.url}/readyz", timeout=5)

    assert response.status_code == 503


def test_metrics_lists_every_kapsa_metric(server: WebServer) -> None:
    found = families(server)

    assert {name: found.get(name) for name in FAMILIES} == FAMILIES
    assert all(name.startswith("kapsa_") for name in found)  # nothing from other libraries


def test_a_webhook_moves_its_counter(server: WebServer) -> None:
    body = b'{"ref": "refs/heads/main", "after": "metrics-test"}'
    signature = hmac.new(TOKEN, body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "metrics-1"}
    accepted = sample("kapsa_webhooks_total", provider="github", result="accepted")
    refused = sample("kapsa_webhooks_total", provider="github", result="bad_signature")

    before = scrape(server)
    requests.post(
        f"{server.url}/webhooks/web",
        data=body,
        headers={**headers, "X-Hub-Signature-256": f"sha256={signature}"},
        timeout=5,
    )
    requests.post(
        f"{server.url}/webhooks/web",
        data=body,
        headers={**headers, "X-Hub-Signature-256": "sha256=00"},
        timeout=5,
    )
    after = scrape(server)

    assert after[accepted] == before[accepted] + 1
    assert after[refused] == before[refused] + 1


def test_the_reconcile_helpers_count_what_the_operator_reports(server: WebServer) -> None:
    total = sample("kapsa_reconcile_total", kind="Environment", result="error")
    errors = sample("kapsa_reconcile_errors_total", kind="Environment")
    timed = sample("kapsa_reconcile_duration_seconds_count", kind="Environment")
    moved = sample(
        "kapsa_transitions_total", kind="Environment", to="Running", **{"from": "Deploying"}
    )
    before = scrape(server)

    metrics.observe_reconcile(kind="Environment", result="error", seconds=0.2)
    metrics.count_transition(kind="Environment", source="Deploying", dest="Running")
    after = scrape(server)

    assert after[total] == before[total] + 1
    assert after[errors] == before[errors] + 1
    assert after[timed] == before[timed] + 1
    assert after[moved] == before.get(moved, 0.0) + 1


def test_builds_count_starts_and_ends_apart_and_time_the_ends(server: WebServer) -> None:
    started = sample("kapsa_builds_started_total", type="preview")
    failed = sample("kapsa_builds_finished_total", type="preview", outcome="failed")
    succeeded = sample("kapsa_builds_finished_total", type="standard", outcome="succeeded")
    timed = sample("kapsa_build_duration_seconds_count", type="preview", outcome="failed")
    bucket = "kapsa_build_duration_seconds_bucket"
    slow = sample(bucket, type="preview", outcome="failed", le="60.0")
    before = scrape(server)

    metrics.count_build_started(preview=True)
    metrics.count_build_finished(preview=True, outcome="failed", seconds=90.0)
    metrics.count_build_finished(preview=False, outcome="succeeded", seconds=None)
    after = scrape(server)

    assert after[started] == before[started] + 1
    assert after[failed] == before[failed] + 1
    assert after[succeeded] == before[succeeded] + 1
    assert after[timed] == before[timed] + 1  # the untimed end is counted, not timed
    assert after[slow] == before[slow]  # 90 s is above the 60 s bucket


def test_environments_are_counted_by_phase_and_type_at_scrape_time(server: WebServer) -> None:
    counts = {("Running", "preview"): 3, ("Failed", "standard"): 1}
    metrics.track_environments(lambda: counts)
    try:
        scraped = scrape(server)
        assert scraped[sample("kapsa_environments", phase="Running", type="preview")] == 3
        assert scraped[sample("kapsa_environments", phase="Failed", type="standard")] == 1
        assert scraped[sample("kapsa_environments", phase="Expiring", type="preview")] == 0
        counts[("Running", "preview")] = 2
        again = scrape(server)
        assert again[sample("kapsa_environments", phase="Running", type="preview")] == 2
    finally:
        metrics.track_environments(dict)


def test_a_poll_that_raises_counts_as_an_error(server: WebServer) -> None:
    error, changed = (
        sample("kapsa_polls_total", result="error"),
        sample("kapsa_polls_total", result="changed"),
    )
    timed = sample("kapsa_poll_duration_seconds_count")
    before = scrape(server)

    with metrics.timed_poll() as done:
        done("changed")
    with pytest.raises(OSError), metrics.timed_poll():
        raise OSError("git timed out")
    after = scrape(server)

    assert after[changed] == before[changed] + 1
    assert after[error] == before[error] + 1
    assert after[timed] == before[timed] + 2


def test_the_queue_depth_is_read_at_scrape_time(server: WebServer) -> None:
    depth = [3]
    metrics.track_queue_depth(lambda: depth[0])

    first = scrape(server)[sample("kapsa_queue_depth")]
    depth[0] = 7
    second = scrape(server)[sample("kapsa_queue_depth")]

    assert (first, second) == (3, 7)


def test_unknown_paths_are_not_found(server: WebServer) -> None:
    response = requests.get(f"{server.url}/admin", timeout=5)

    assert response.status_code == 404
    assert response.json() == {"error": "no such path"}
