"""The internal listener off loopback: every caller's token checked by a real API server.

Attack 8: the ledger API and metrics answered anyone who could reach the pod. Here a
ServiceAccount allowed to read /metrics and one Project scrapes and reads that Project's
history; a stranger's valid token, a forged token and no token are refused, each with its
reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from kapsa.controlplane import ControlPlane
from kapsa.k8s.client import Kube
from kapsa.ledger import Ledger
from kapsa.web import WebServer
from kapsa.web.auth import KubeAuthorizer
from tests.attacks import report_attack
from tests.ledger._factory import append_web_history
from tests.plugins.cluster import Kubectl, service_account_token
from tests.web.conftest import FakeOperator, serve


@pytest.fixture
def accounts(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str
) -> Iterator[dict[str, str]]:
    """Tokens of `scraper` (may get /metrics and Project web) and `stranger` (may nothing)."""
    for account in ("scraper", "stranger"):
        kubectl("-n", namespace, "create", "serviceaccount", account)
    role = f"reader-{namespace}"
    rules = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": role},
        "rules": [
            {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            {
                "apiGroups": ["kapsa.io"],
                "resources": ["projects"],
                "resourceNames": ["web"],
                "verbs": ["get"],
            },
        ],
    }
    kubectl("apply", "-f", "-", input=json.dumps(rules))
    kubectl(
        "create",
        "clusterrolebinding",
        role,
        f"--clusterrole={role}",
        f"--serviceaccount={namespace}:scraper",
    )
    kube = Kube.from_kubeconfig(str(control_plane.kubeconfig))
    yield {
        account: service_account_token(kube, namespace, account)
        for account in ("scraper", "stranger")
    }
    kubectl("delete", "clusterrolebinding", role, check=False)
    kubectl("delete", "clusterrole", role, check=False)


@pytest.fixture
def guarded(control_plane: ControlPlane, tmp_path: Path) -> Iterator[WebServer]:
    operator = FakeOperator()
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    append_web_history(ledger)
    authorizer = KubeAuthorizer(Kube.from_kubeconfig(str(control_plane.kubeconfig)))
    with serve(operator, ledger=ledger, authorizer=authorizer) as running:
        yield running
    ledger.close()


def _get(server: WebServer, path: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(f"{server.internal_url}{path}", headers=headers, timeout=10)


def test_only_callers_the_api_server_authorizes_read_metrics_and_history(
    guarded: WebServer, accounts: dict[str, str]
) -> None:
    scraper, stranger = accounts["scraper"], accounts["stranger"]
    assert _get(guarded, "/metrics", scraper).status_code == 200
    history = _get(guarded, "/api/v1/history/web", scraper)
    assert history.status_code == 200
    assert history.json()

    other = _get(guarded, "/api/v1/history/other", scraper)
    assert other.status_code == 403
    assert "may not get projects.kapsa.io/other" in other.json()["error"]
    refused = _get(guarded, "/metrics", stranger)
    assert refused.status_code == 403
    assert "stranger" in refused.json()["error"]
    forged = _get(guarded, "/metrics", "not.a.token")
    assert forged.status_code == 401
    assert "did not accept" in forged.json()["error"]
    missing = _get(guarded, "/metrics", None)
    assert missing.status_code == 401
    assert "bearer token" in missing.json()["error"]
    # Probes stay open: kubelet sends no token.
    assert _get(guarded, "/healthz", None).status_code == 200
    report_attack(8, "metrics and another team's history without the right", refused_as="Forbidden")
    report_attack(8, "metrics with a forged or no token", refused_as="Unauthorized")
