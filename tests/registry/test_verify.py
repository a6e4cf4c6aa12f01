"""The Registry check against a real docker-registry: what an admin sees in the status."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from kapsa.registry import RegistryCredentials, Verification, verify_registry
from kapsa.sandbox.registryserver import RegistryServer


def _check(
    server: RegistryServer,
    *,
    password: str | None = None,
    insecure: bool = False,
    ca_bundle: str | None = None,
) -> Verification:
    credentials = RegistryCredentials(
        username=server.username, password=server.password if password is None else password
    )
    result = verify_registry(
        server=server.server,
        credentials=credentials,
        insecure=insecure,
        ca_bundle=ca_bundle,
        allow_private_hosts=True,
    )
    assert server.password not in result.message
    return result


def test_right_password_is_verified(registry_server: RegistryServer) -> None:
    result = _check(registry_server, insecure=True)
    assert (result.ok, result.reason) == (True, "Verified")


def test_wrong_password_fails_authentication(registry_server: RegistryServer) -> None:
    wrong = "not-" + registry_server.password
    result = _check(registry_server, password=wrong, insecure=True)
    assert (result.ok, result.reason) == (False, "AuthenticationFailed")
    assert wrong not in result.message


def test_tls_registry_with_its_ca_bundle_is_verified(tls_registry_server: RegistryServer) -> None:
    result = _check(tls_registry_server, ca_bundle=tls_registry_server.ca_bundle)
    assert (result.ok, result.reason) == (True, "Verified")


def test_tls_registry_without_its_ca_is_unreachable(tls_registry_server: RegistryServer) -> None:
    result = _check(tls_registry_server)
    assert (result.ok, result.reason) == (False, "Unreachable")
    assert "certificate verify failed" in result.message


def test_plain_http_registry_is_not_used_without_insecure(registry_server: RegistryServer) -> None:
    """A TLS failure must never turn into a silent downgrade to HTTP."""
    result = _check(registry_server)
    assert (result.ok, result.reason) == (False, "Unreachable")
    assert "TLS" in result.message


def test_stopped_registry_is_unreachable_at_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = RegistryServer(
        workdir=tmp_path_factory.mktemp("stopped"), username="kapsa", password="pw-123456"
    )
    with server:
        assert _check(server, insecure=True).ok
    started = time.monotonic()
    result = _check(server, insecure=True)
    assert (result.ok, result.reason) == (False, "Unreachable")
    assert "refused" in result.message.lower()
    assert time.monotonic() - started < 2.0


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections the kernel accepts but no program ever answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_silent_registry_times_out_as_unreachable(silent_port: int) -> None:
    started = time.monotonic()
    result = verify_registry(
        server=f"127.0.0.1:{silent_port}",
        credentials=RegistryCredentials(username="kapsa", password="pw"),
        timeout=0.3,
        allow_private_hosts=True,
    )
    assert (result.ok, result.reason) == (False, "Unreachable")
    assert "0.3s" in result.message
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize(
    "server",
    ["127.0.0.1", "localhost:5000", "10.1.2.3", "192.168.0.10:443", "169.254.169.254"],
)
def test_private_hosts_are_refused_before_any_request(server: str) -> None:
    result = verify_registry(
        server=server, credentials=RegistryCredentials(username="kapsa", password="pw")
    )
    assert (result.ok, result.reason) == (False, "HostNotAllowed")


def test_private_host_refused_even_when_a_registry_answers_there(
    registry_server: RegistryServer,
) -> None:
    result = verify_registry(
        server=registry_server.server,
        credentials=RegistryCredentials(
            username=registry_server.username, password=registry_server.password
        ),
        insecure=True,
    )
    assert (result.ok, result.reason) == (False, "HostNotAllowed")


@pytest.mark.parametrize(
    "server", ["user:pw@harbor.corp.com", "harbor.corp.com/v2/../x", "harbor.corp.com?x=1", ""]
)
def test_server_that_is_not_a_host_and_port_is_refused(server: str) -> None:
    result = verify_registry(
        server=server,
        credentials=RegistryCredentials(username="kapsa", password="pw"),
        allow_private_hosts=True,
    )
    assert (result.ok, result.reason) == (False, "HostNotAllowed")
