"""Push webhooks as GitHub, Gitea and GitLab send them, and as attackers and mistakes do."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
import requests

from kapsa.web import WebServer
from tests.attacks import report_attack
from tests.web.conftest import TOKEN, FakeOperator


def _hmac(body: bytes, token: bytes) -> str:
    return hmac.new(token, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Provider:
    name: str
    sign: Callable[[bytes, bytes], dict[str, str]]
    """The authentication headers for a body and a token."""
    event_header: str
    push: str
    delivery_header: str
    signature_header: str

    def headers(
        self, body: bytes, *, token: bytes = TOKEN, event: str | None = None, delivery: str = ""
    ) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            self.event_header: event or self.push,
            self.delivery_header: delivery or str(uuid.uuid4()),
            **self.sign(body, token),
        }


GITHUB = Provider(
    "github",
    lambda body, token: {"X-Hub-Signature-256": f"sha256={_hmac(body, token)}"},
    "X-GitHub-Event",
    "push",
    "X-GitHub-Delivery",
    "X-Hub-Signature-256",
)
# Gitea also sends GitHub's event header, for tools written for GitHub; its own headers win.
GITEA = Provider(
    "gitea",
    lambda body, token: {"X-Gitea-Signature": _hmac(body, token), "X-GitHub-Event": "push"},
    "X-Gitea-Event",
    "push",
    "X-Gitea-Delivery",
    "X-Gitea-Signature",
)
GITLAB = Provider(
    "gitlab",
    lambda _body, token: {"X-Gitlab-Token": token.decode()},
    "X-Gitlab-Event",
    "Push Hook",
    "X-Gitlab-Event-UUID",
    "X-Gitlab-Token",
)
PROVIDERS = [GITHUB, GITEA, GITLAB]
SIGNED = [GITHUB, GITEA]


def push_body(after: str = "c2" * 20) -> bytes:
    payload = {"ref": "refs/heads/main", "before": "c1" * 20, "after": after}
    return json.dumps(payload).encode()


def post(
    server: WebServer, project: str, body: bytes, headers: dict[str, str]
) -> requests.Response:
    return requests.post(f"{server.url}/webhooks/{project}", data=body, headers=headers, timeout=5)


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_a_valid_push_polls_the_project_once(
    server: WebServer, operator: FakeOperator, provider: Provider
) -> None:
    body = push_body()

    response = post(server, "web", body, provider.headers(body))

    assert response.status_code == 202, response.text
    assert response.json() == {"result": "accepted", "project": "web"}
    assert operator.polled == ["web"]


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_the_wrong_secret_is_refused(
    server: WebServer, operator: FakeOperator, provider: Provider
) -> None:
    body = push_body()

    response = post(server, "web", body, provider.headers(body, token=b"guessed"))

    assert response.status_code == 401
    assert operator.polled == []


@pytest.mark.parametrize("provider", SIGNED, ids=lambda p: p.name)
def test_a_body_changed_after_signing_is_refused(
    server: WebServer, operator: FakeOperator, provider: Provider
) -> None:
    signed = push_body(after="c2" * 20)
    tampered = push_body(after="ee" * 20)

    response = post(server, "web", tampered, provider.headers(signed))

    assert response.status_code == 401
    assert response.json() == {"error": "signature does not match the body"}
    assert operator.polled == []


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_a_missing_signature_is_refused(
    server: WebServer, operator: FakeOperator, provider: Provider
) -> None:
    body = push_body()
    headers = provider.headers(body)
    del headers[provider.signature_header]

    response = post(server, "web", body, headers)

    assert response.status_code == 401
    assert provider.signature_header.lower() in response.json()["error"]
    assert operator.polled == []


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_a_replayed_delivery_is_refused(
    server: WebServer, operator: FakeOperator, provider: Provider
) -> None:
    body = push_body()
    headers = provider.headers(body, delivery="delivery-1")

    first = post(server, "web", body, headers)
    again = post(server, "web", body, headers)
    same_id_other_body = post(
        server,
        "web",
        push_body(after="dd" * 20),
        provider.headers(push_body("dd" * 20), delivery="delivery-1"),
    )

    assert (first.status_code, again.status_code, same_id_other_body.status_code) == (
        202,
        409,
        409,
    )
    assert operator.polled == ["web"]


@pytest.mark.parametrize("provider", SIGNED, ids=lambda p: p.name)
def test_a_replay_under_a_fresh_delivery_id_is_refused(
    server: WebServer, operator: FakeOperator, provider: Provider
) -> None:
    # The delivery id is not signed: an attacker who captured a push can change it at will.
    body = push_body()

    first = post(server, "web", body, provider.headers(body))
    replay = post(server, "web", body, provider.headers(body))
    next_push = post(
        server, "web", push_body(after="dd" * 20), provider.headers(push_body("dd" * 20))
    )

    assert (first.status_code, replay.status_code, next_push.status_code) == (202, 409, 202)
    assert operator.polled == ["web", "web"]


def test_deliveries_are_remembered_for_a_bounded_window(
    server: WebServer, operator: FakeOperator
) -> None:
    body = push_body()
    headers = GITHUB.headers(body, delivery="delivery-1")

    first = post(server, "web", body, headers)
    operator.advance(timedelta(minutes=59))
    within = post(server, "web", body, headers)
    operator.advance(timedelta(minutes=2))
    after = post(server, "web", body, headers)

    assert (first.status_code, within.status_code, after.status_code) == (202, 409, 202)
    assert operator.polled == ["web", "web"]


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_an_oversized_body_is_refused_unread(
    server: WebServer, operator: FakeOperator, provider: Provider
) -> None:
    body = b"x" * (1024 * 1024 + 1)

    response = post(server, "web", body, provider.headers(body))
    then = post(server, "web", push_body(), provider.headers(push_body()))

    assert response.status_code == 413
    assert then.status_code == 202  # the server is still answering
    assert operator.polled == ["web"]


def test_a_body_of_exactly_the_limit_is_read(server: WebServer, operator: FakeOperator) -> None:
    body = b" " * (1024 * 1024)

    response = post(server, "web", body, GITHUB.headers(body))

    assert response.status_code == 202
    assert operator.polled == ["web"]


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
@pytest.mark.parametrize("project", ["nope", "api", "Not..A_Name"])
def test_unknown_projects_and_projects_without_a_secret_are_not_found(
    server: WebServer, operator: FakeOperator, provider: Provider, project: str
) -> None:
    # "api" exists but has no webhookSecretRef: nothing could authenticate its webhooks.
    body = push_body()

    response = post(server, project, body, provider.headers(body))

    assert response.status_code == 404
    assert operator.polled == []


def test_a_project_gone_by_the_time_of_the_poll_is_not_found_and_not_remembered(
    server: WebServer, operator: FakeOperator
) -> None:
    # Its Secret is still there, the Project is not (or not yet in the operator's cache).
    operator.tokens["late"] = TOKEN
    body = push_body()
    headers = GITHUB.headers(body, delivery="d-1")

    before = post(server, "late", body, headers)
    operator.projects.add("late")
    retried = post(server, "late", body, headers)

    assert (before.status_code, retried.status_code) == (404, 202)
    assert operator.polled == ["late"]


def test_a_replica_that_cannot_poll_says_so_and_takes_the_redelivery_later(
    server: WebServer, operator: FakeOperator
) -> None:
    operator.standing_by = True
    body = push_body()
    headers = GITHUB.headers(body, delivery="d-1")

    refused = post(server, "web", body, headers)
    operator.standing_by = False
    redelivered = post(server, "web", body, headers)

    assert (refused.status_code, redelivered.status_code) == (503, 202)
    assert "standing by" in refused.json()["error"]
    assert operator.polled == ["web"]


@pytest.mark.parametrize(
    ("provider", "event"),
    [(GITHUB, "ping"), (GITEA, "issues"), (GITLAB, "Tag Push Hook")],
    ids=lambda v: v.name if isinstance(v, Provider) else v,
)
def test_other_events_are_ignored(
    server: WebServer, operator: FakeOperator, provider: Provider, event: str
) -> None:
    body = b'{"zen": "Keep it logically awesome."}'

    response = post(server, "web", body, provider.headers(body, event=event))

    assert response.status_code == 200
    assert response.json()["result"] == "ignored"
    assert operator.polled == []


def test_a_request_from_no_known_provider_is_refused(
    server: WebServer, operator: FakeOperator
) -> None:
    body = push_body()

    response = post(server, "web", body, {"X-Hub-Signature-256": f"sha256={_hmac(body, TOKEN)}"})

    assert response.status_code == 400
    assert operator.polled == []


def test_webhooks_take_only_post(server: WebServer, operator: FakeOperator) -> None:
    response = requests.get(f"{server.url}/webhooks/web", timeout=5)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_a_refusal_is_one_log_line_without_the_token(
    server: WebServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = push_body()
    caplog.set_level(logging.INFO, logger="kapsa.web")

    post(server, "web", body, GITLAB.headers(body, token=TOKEN + b"-wrong"))

    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "project=web provider=gitlab reason=wrong token" in refusals[0]
    assert TOKEN.decode() not in caplog.text


def test_githubs_published_example_signature_is_accepted(
    server: WebServer, operator: FakeOperator
) -> None:
    # The example in GitHub's "Validating webhook deliveries", computed by GitHub, not by us.
    operator.tokens["web"] = b"It's a Secret to Everybody"
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    response = post(
        server,
        "web",
        b"Hello, World!",
        {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1", "X-Hub-Signature-256": signature},
    )

    assert response.status_code == 202
    assert operator.polled == ["web"]


def test_a_webhook_token_too_short_to_be_a_key_is_refused(
    server: WebServer, operator: FakeOperator
) -> None:
    operator.tokens["web"] = b"hunter2"
    body = push_body()

    response = post(server, "web", body, GITHUB.headers(body, token=b"hunter2"))

    assert response.status_code == 403
    assert "shorter than 16 bytes" in response.json()["error"]
    assert operator.polled == []


def test_forged_webhooks_read_the_token_once_not_once_each(
    server: WebServer, operator: FakeOperator
) -> None:
    """Each forged request used to cost the operator a Secret read from the API server."""
    reads: list[str] = []

    class Counting(dict[str, bytes | None]):
        def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
            reads.append(key)
            return super().get(key, default)

    operator.tokens = Counting(operator.tokens)
    for index in range(20):
        body = push_body()
        forged = GITHUB.headers(body, delivery=f"forged-{index}", token=b"x" * 20)
        assert post(server, "web", body, forged).status_code == 401
    assert reads == ["web"]
    report_attack(8, "20 forged webhooks", refused_as="Unauthorized")
