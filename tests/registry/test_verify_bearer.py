"""The Bearer-token login used by Docker Hub, Harbor, GHCR and most hosted registries.

docker-registry from Debian only does htpasswd, so a small in-process server stands in for a
token-auth registry: `/v2/` answers with a Bearer challenge naming its own `/token` endpoint,
which hands out a token for the right Basic credentials, and `/v2/` accepts that token.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from kapsa.registry import RegistryCredentials, Verification, verify_registry

USERNAME = "robot"
PASSWORD = secrets.token_urlsafe(12)


class TokenAuthRegistry(ThreadingHTTPServer):
    """Stand-in for a token-auth registry; `token_field` picks how the token is returned."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = secrets.token_hex(16)
        self.token_field: str | None = "token"
        self.token_queries: list[dict[str, list[str]]] = []
        self.realm: str | None = None

    @property
    def own_realm(self) -> str:
        return f"http://{self.server}/token"

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: TokenAuthRegistry

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/v2/":
            self._registry()
        elif url.path == "/token":
            self.server.token_queries.append(parse_qs(url.query))
            self._token()
        else:
            self._answer(404, {})

    def _registry(self) -> None:
        if self.headers.get("Authorization") == f"Bearer {self.server.token}":
            self._answer(200, {})
            return
        challenge = (
            f'Bearer realm="{self.server.realm or self.server.own_realm}",'
            'service="stand-in-registry",scope="registry:catalog:*"'
        )
        self._answer(401, {"errors": []}, {"WWW-Authenticate": challenge})

    def _token(self) -> None:
        expected = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._answer(401, {"details": "incorrect username or password"})
            return
        field = self.server.token_field
        self._answer(200, {field: self.server.token} if field else {"expires_in": 300})

    def _answer(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests assert on answers, not on the access log."""


@pytest.fixture
def token_registry() -> Iterator[TokenAuthRegistry]:
    registry = TokenAuthRegistry()
    thread = threading.Thread(
        target=registry.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield registry
    finally:
        registry.shutdown()
        registry.server_close()
        thread.join(timeout=5)


def _check(registry: TokenAuthRegistry, password: str = PASSWORD) -> Verification:
    result = verify_registry(
        server=registry.server,
        credentials=RegistryCredentials(username=USERNAME, password=password),
        insecure=True,
        timeout=5.0,
        allow_private_hosts=True,
    )
    assert password not in result.message
    assert registry.token not in result.message
    return result


@pytest.mark.parametrize("field", ["token", "access_token"])
def test_token_login_is_verified(token_registry: TokenAuthRegistry, field: str) -> None:
    token_registry.token_field = field
    result = _check(token_registry)
    assert (result.ok, result.reason) == (True, "Verified")
    assert token_registry.token_queries == [
        {"service": ["stand-in-registry"], "scope": ["registry:catalog:*"]}
    ]


def test_token_service_refusing_the_password_fails_authentication(
    token_registry: TokenAuthRegistry,
) -> None:
    result = _check(token_registry, password="wrong-" + PASSWORD)
    assert (result.ok, result.reason) == (False, "AuthenticationFailed")


def test_token_answer_without_a_token_is_unexpected(token_registry: TokenAuthRegistry) -> None:
    token_registry.token_field = None
    result = _check(token_registry)
    assert (result.ok, result.reason) == (False, "Unexpected")
    assert "without a token" in result.message


@pytest.mark.parametrize("realm", ["file:///etc/passwd", "ftp://127.0.0.1/token"])
def test_token_realm_outside_http_is_never_contacted(
    token_registry: TokenAuthRegistry, realm: str
) -> None:
    token_registry.realm = realm
    result = _check(token_registry)
    assert (result.ok, result.reason) == (False, "HostNotAllowed")
    assert token_registry.token_queries == []
