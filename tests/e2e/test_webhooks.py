"""Instant sync: a signed push webhook makes the operator poll at once; metrics tell the story."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import requests
from prometheus_client.parser import text_string_to_metric_families

from kapsa.controlplane import ControlPlane
from kapsa.sandbox.gitserver import GitServer
from tests.e2e.harness import (
    SAMPLE_APP,
    OperatorProcess,
    project_yaml,
    status_of,
)
from tests.waiting import wait_until

TOKEN = "a-shared-webhook-token"


def _dev_commit(control_plane: ControlPlane, name: str) -> str | None:
    return status_of(control_plane, "-n", name, "environment", "dev").get("commit")


def test_a_signed_push_webhook_rolls_out_without_waiting_for_the_poll(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
) -> None:
    name = "hooked"
    first = git_server.create_repo(name, files={**SAMPLE_APP, "app.py": "print(1)\n"})
    control_plane.kubectl(
        "-n",
        "kapsa-system",
        "create",
        "secret",
        "generic",
        f"{name}-hook",
        f"--from-literal=token={TOKEN}",
    )
    control_plane.kubectl(
        "-n",
        "kapsa-system",
        "annotate",
        "secret",
        f"{name}-hook",
        f"kapsa.io/shared-with-projects={name}",
    )
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name,
            url=git_server.url_for(name),
            poll="1h",
            environments=[{"name": "dev", "branch": "main"}],
            extra_spec={
                "source": {
                    "git": {"url": git_server.url_for(name)},
                    "pollInterval": "1h",
                    "webhookSecretRef": {"name": f"{name}-hook", "namespace": "kapsa-system"},
                }
            },
        ),
    )
    wait_until(
        lambda: _dev_commit(control_plane, name) == first,
        timeout=60,
        message=lambda: "first deploy\n" + operator.tail(),
    )

    second = git_server.commit(name, branch="main", files={"app.py": "print(2)\n"})
    body = json.dumps({"ref": "refs/heads/main", "after": second}).encode()
    url = f"{operator.url()}/webhooks/{name}"
    bad = requests.post(
        url,
        data=body,
        timeout=10,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256=" + "0" * 64,
            "Content-Type": "application/json",
        },
    )
    assert bad.status_code == 401
    signature = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    good = requests.post(
        url,
        data=body,
        timeout=10,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={signature}",
            "Content-Type": "application/json",
        },
    )
    assert good.status_code == 202
    # The poll interval is an hour: only the webhook can have found the new commit.
    wait_until(
        lambda: _dev_commit(control_plane, name) == second,
        timeout=30,
        message=lambda: "rolled out by the webhook\n" + operator.tail(),
    )

    scraped = requests.get(f"{operator.internal_url()}/metrics", timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
    }
    assert samples[("kapsa_webhooks_total", (("provider", "github"), ("result", "accepted")))] >= 1
    transitions = [
        v
        for (n, labels), v in samples.items()
        if n == "kapsa_transitions_total" and ("to", "Running") in labels
    ]
    assert sum(transitions) >= 2
    assert requests.get(f"{operator.url()}/readyz", timeout=10).status_code == 200
    history = requests.get(f"{operator.internal_url()}/api/v1/history/{name}", timeout=10).json()
    assert any(row["commit"] == second and row["name"] == "dev" for row in history)
