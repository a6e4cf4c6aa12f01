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


def _exchange(url: str, raw: bytes, *, timeout: float = 5.0) -> bytes:
    """Send `raw` as is and read until the server closes or `timeout` passes."""
    with _connect(url) as client:
        client.sendall(raw)
        client.settimeout(timeout)
        answer = b""
        try:
            while chunk := client.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
        return answer


def test_a_trickled_webhook_body_is_cut_off_at_the_total_deadline(small: WebServer) -> None:
    """The body is read by the route, through the server's input stream: the deadline holds."""
    with _connect(small.url) as client:
        client.sendall(
            b"POST /webhooks/web HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            b"X-Hub-Signature-256: sha256=00\r\nContent-Length: 1000\r\n\r\n"
        )
        started, closed = time.monotonic(), False
        while not closed and time.monotonic() - started < 12:
            try:
                client.sendall(b"x")
                client.settimeout(0.3)
                closed = client.recv(1024) == b"" or closed
            except TimeoutError:
                continue
            except OSError:
                closed = True
        assert closed
        assert time.monotonic() - started < 6  # the deadline is 1.5 s; reads time out at 10 s


def test_a_huge_declared_body_is_refused_before_a_byte_of_it_is_sent(server: WebServer) -> None:
    """The route refuses by Content-Length alone, and the connection closes: nothing drains."""
    answer = _exchange(
        server.url,
        b"POST /webhooks/web HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
        b"Content-Length: 1000000000\r\n\r\n",
    )

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'{"error":"the body is over 1048576 bytes"}' in answer


@pytest.mark.parametrize("length", [b"+5", b"5_0", b"-1", b"0x10"])
def test_a_content_length_that_is_not_plain_digits_is_refused_and_the_connection_closed(
    server: WebServer, operator: FakeOperator, length: bytes
) -> None:
    # A proxy in front may read such a length otherwise: nothing after it on this connection
    # is trusted to be the request the proxy meant.
    answer = _exchange(
        server.url,
        b"POST /webhooks/web HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
        b"Content-Length: " + length + b"\r\n\r\nhelloGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )

    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1  # the smuggled second request was not served
    assert operator.polled == []


def test_a_chunked_body_with_a_content_length_too_is_refused(server: WebServer) -> None:
    answer = _exchange(
        server.url,
        b"POST /webhooks/web HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"both Content-Length and Transfer-Encoding" in answer


def test_headers_beyond_the_cap_are_refused_not_buffered(server: WebServer) -> None:
    answer = _exchange(
        server.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    )

    assert answer.startswith((b"HTTP/1.1 413 ", b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), answer[:80]
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("path", "name"),
    [
        # Each segment is decoded once, after the split: %2F stays inside the name ...
        ("/api/v1/history/we%2Fb", "we/b"),
        # ... and %25 decodes to a literal %, not to the start of another escape.
        ("/api/v1/history/%2577eb", "%77eb"),
    ],
)
def test_path_segments_are_decoded_once_after_splitting(
    server: WebServer, path: str, name: str
) -> None:
    answer = _exchange(server.internal_url, f"GET {path} HTTP/1.0\r\n\r\n".encode())

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert f"not a Kubernetes object name: {name!r}".encode() in answer


def test_a_kept_alive_connection_serves_request_after_request(small: WebServer) -> None:
    with requests.Session() as session:
        answers = [session.get(f"{small.url}/healthz", timeout=5).status_code for _ in range(5)]
    # Two slots only: had a kept-alive connection kept its slot, the third would be refused.
    assert answers == [200] * 5


def test_stop_returns_at_once_even_with_a_client_holding_a_worker(operator: FakeOperator) -> None:
    server = serve(operator)
    server.start()
    url = server.url
    with _connect(url) as idle:
        idle.sendall(b"GET /heal")  # half a request line: a worker waits for the rest
        time.sleep(0.2)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/healthz", timeout=2)


def test_the_listeners_bind_ipv6_loopback_too(operator: FakeOperator) -> None:
    with serve(operator, internal_host="::1") as running:
        assert running.internal_url == f"http://[::1]:{running.internal_port}"
        assert requests.get(f"{running.internal_url}/metrics", timeout=5).status_code == 200
