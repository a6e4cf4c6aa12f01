"""Which listener serves what, and what a crowd of slow clients can take from them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import requests

from kapsa.errors import KapsaError
from kapsa.web import WebServer
from tests.waiting import wait_until
from tests.web.conftest import FakeOperator, serve


@pytest.fixture
def small(operator: FakeOperator) -> Iterator[WebServer]:
    with serve(operator, max_connections=2, request_deadline=1.5) as running:
        yield running


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_the_port_facing_the_cluster_serves_no_metrics_and_no_ledger(
    server: WebServer,
) -> None:
    for path in ("/metrics", "/api/v1/history/web"):
        assert requests.get(f"{server.url}{path}", timeout=5).status_code == 404
    assert requests.get(f"{server.internal_url}/metrics", timeout=5).status_code == 200
    assert requests.post(f"{server.internal_url}/webhooks/web", timeout=5).status_code == 404
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_the_internal_listener_never_answers_the_network_without_a_token_check(
    operator: FakeOperator,
) -> None:
    server = serve(operator, internal_host="0.0.0.0")  # refused before anything binds
    with pytest.raises(KapsaError, match=r"bind it to 127\.0\.0\.1 or give it a token authorizer"):
        server.start()


def test_clients_beyond_the_cap_get_503_at_once_and_the_cap_frees_up(small: WebServer) -> None:
    with ExitStack() as stack:
        for _ in range(2):  # connected, sending nothing: each holds a slot
            stack.enter_context(_connect(small.url))
        time.sleep(0.2)
        busy = requests.get(f"{small.url}/healthz", timeout=5)
        assert busy.status_code == 503
        assert "too many requests" in busy.json()["error"]
    # The idle clients are gone: their threads notice, end and give the slots back.
    wait_until(
        lambda: requests.get(f"{small.url}/healthz", timeout=5).status_code == 200,
        timeout=10,
        message="a free slot again",
    )


def test_a_client_trickling_bytes_is_cut_off_at_the_total_deadline(small: WebServer) -> None:
    """Each byte comes well within the per-read timeout, so only a total deadline ends it."""
    with _connect(small.url) as client:
        client.sendall(b"GET /healthz HTTP/1.0\r\n")
        closed = False
        for _ in range(40):  # up to 12 s of trickling, eight times the deadline
            try:
                client.sendall(b"X-Slow: a\r\n")
                client.settimeout(0.3)
                closed = client.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
        assert closed
    assert requests.get(f"{small.url}/healthz", timeout=5).status_code == 200
