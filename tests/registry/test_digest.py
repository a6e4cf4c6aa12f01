"""Resolving tags to digests against a real docker-registry, as a rollout does before deploying.

docker-registry from Debian only does htpasswd logins, so the Bearer-token path (Docker Hub,
Harbor, GHCR) is exercised against a small in-process token-auth registry instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from kapsa.errors import InvalidSpecError, RegistryError, UnsafeURLError
from kapsa.registry import RegistryCredentials, image_exists, resolve_digest
from kapsa.sandbox.registryserver import RegistryServer


def _resolve(
    server: RegistryServer,
    *,
    repository: str,
    reference: str,
    password: str | None = None,
    anonymous: bool = False,
) -> str | None:
    credentials = None
    if not anonymous:
        credentials = RegistryCredentials(
            username=server.username, password=server.password if password is None else password
        )
    return resolve_digest(
        server=server.server,
        repository=repository,
        reference=reference,
        credentials=credentials,
        insecure=not server.tls,
        ca_bundle=server.ca_bundle,
        timeout=5.0,
        allow_private_hosts=True,
    )


def _exists(server: RegistryServer, *, repository: str, digest: str) -> bool:
    return image_exists(
        server=server.server,
        repository=repository,
        digest=digest,
        credentials=RegistryCredentials(username=server.username, password=server.password),
        insecure=not server.tls,
        ca_bundle=server.ca_bundle,
        timeout=5.0,
        allow_private_hosts=True,
    )


def _assert_no_secret(error: BaseException, *secrets_: str) -> None:
    """Neither the message nor anything chained under it may quote a password or token."""
    current: BaseException | None = error
    while current is not None:
        for secret in secrets_:
            assert secret not in str(current)
            assert secret not in repr(current)
        current = current.__cause__ or current.__context__


def test_tag_resolves_to_the_pushed_digest(registry_server: RegistryServer) -> None:
    pushed = registry_server.put_image(repository="team/digest-app", tag="v1")
    assert _resolve(registry_server, repository="team/digest-app", reference="v1") == pushed


def test_each_tag_resolves_to_its_own_digest(registry_server: RegistryServer) -> None:
    first = registry_server.put_image(repository="team/two-tags", tag="first")
    second = registry_server.put_image(repository="team/two-tags", tag="second")
    assert _resolve(registry_server, repository="team/two-tags", reference="first") == first
    assert _resolve(registry_server, repository="team/two-tags", reference="second") == second
    assert first != second


def test_digest_reference_resolves_to_itself(registry_server: RegistryServer) -> None:
    pushed = registry_server.put_image(repository="team/by-digest", tag="v2")
    assert _resolve(registry_server, repository="team/by-digest", reference=pushed) == pushed


def test_tls_registry_with_its_ca_bundle(tls_registry_server: RegistryServer) -> None:
    pushed = tls_registry_server.put_image(repository="team/over-tls", tag="v1")
    assert _resolve(tls_registry_server, repository="team/over-tls", reference="v1") == pushed


def test_missing_tag_is_none(registry_server: RegistryServer) -> None:
    registry_server.put_image(repository="team/has-one-tag", tag="v1")
    assert _resolve(registry_server, repository="team/has-one-tag", reference="v9") is None


def test_missing_repository_is_none(registry_server: RegistryServer) -> None:
    assert _resolve(registry_server, repository="team/never-pushed", reference="v1") is None


def test_image_exists_by_digest(registry_server: RegistryServer) -> None:
    pushed = registry_server.put_image(repository="team/exists", tag="v1")
    assert _exists(registry_server, repository="team/exists", digest=pushed)
    absent = f"sha256:{hashlib.sha256(b'never pushed').hexdigest()}"
    assert not _exists(registry_server, repository="team/exists", digest=absent)
    assert not _exists(registry_server, repository="team/elsewhere", digest=pushed)


def test_image_exists_wants_a_digest_not_a_tag(registry_server: RegistryServer) -> None:
    with pytest.raises(InvalidSpecError, match="not a digest"):
        _exists(registry_server, repository="team/exists", digest="v1")


def test_wrong_password_raises_without_quoting_it(registry_server: RegistryServer) -> None:
    registry_server.put_image(repository="team/locked", tag="v1")
    wrong = "not-" + registry_server.password
    with pytest.raises(RegistryError, match="refused the credentials of kapsa") as caught:
        _resolve(registry_server, repository="team/locked", reference="v1", password=wrong)
    _assert_no_secret(caught.value, wrong, registry_server.password)


def test_anonymous_request_to_a_private_registry_raises(registry_server: RegistryServer) -> None:
    registry_server.put_image(repository="team/private", tag="v1")
    with pytest.raises(RegistryError, match="refused anonymous access"):
        _resolve(registry_server, repository="team/private", reference="v1", anonymous=True)


def test_stopped_registry_raises_at_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = RegistryServer(
        workdir=tmp_path_factory.mktemp("stopped-digest"), username="kapsa", password="pw-123456"
    )
    with server:
        pushed = server.put_image(repository="team/gone", tag="v1")
        assert _resolve(server, repository="team/gone", reference="v1") == pushed
    started = time.monotonic()
    with pytest.raises(RegistryError, match=r"(?i)refused") as caught:
        _resolve(server, repository="team/gone", reference="v1")
    assert "cannot connect" in str(caught.value)
    _assert_no_secret(caught.value, "pw-123456")
    assert time.monotonic() - started < 2.0


def test_private_host_is_refused_unless_allowed(registry_server: RegistryServer) -> None:
    with pytest.raises(UnsafeURLError, match="loopback"):
        resolve_digest(
            server=registry_server.server,
            repository="team/digest-app",
            reference="v1",
            credentials=None,
            insecure=True,
        )


@pytest.mark.parametrize(
    ("repository", "reference"),
    [
        ("team/../admin", "v1"),
        ("Team/App", "v1"),
        ("team/app?x=1", "v1"),
        ("team/app", "v1/../../"),
        ("team/app", ".hidden"),
        ("team/app", "sha256:short"),
        ("", "v1"),
    ],
)
def test_malformed_names_are_refused_before_any_request(repository: str, reference: str) -> None:
    # Port 9 on loopback: if a request were sent it would fail as RegistryError, not this.
    with pytest.raises(InvalidSpecError):
        resolve_digest(
            server="127.0.0.1:9",
            repository=repository,
            reference=reference,
            credentials=None,
            insecure=True,
            allow_private_hosts=True,
        )


# The Bearer-token path, against an in-process token-auth registry.

USERNAME = "robot"
PASSWORD = secrets.token_urlsafe(12)
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"})


class TokenAuthRegistry(ThreadingHTTPServer):
    """Serves one manifest at `/v2/team/app/manifests/v1` to holders of a token from `/token`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = secrets.token_hex(16)
        self.send_digest_header = True
        self.token_queries: list[dict[str, list[str]]] = []
        self.manifest_requests: list[tuple[str, str]] = []

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: TokenAuthRegistry

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/token":
            self.server.token_queries.append(parse_qs(url.query))
            self._token()
        else:
            self._manifest(body=True)

    def do_HEAD(self) -> None:
        self._manifest(body=False)

    def _manifest(self, *, body: bool) -> None:
        path = urlsplit(self.path).path
        self.server.manifest_requests.append((self.command, self.headers.get("Accept", "")))
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            repository = path.removeprefix("/v2/").partition("/manifests/")[0]
            challenge = (
                f'Bearer realm="http://{self.server.server}/token",service="stand-in",'
                f'scope="repository:{repository}:pull"'
            )
            self._answer(401, b"{}", {"WWW-Authenticate": challenge}, body=body)
            return
        if path != "/v2/team/app/manifests/v1":
            self._answer(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}', body=body)
            return
        payload = MANIFEST.encode()
        headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
        if self.server.send_digest_header:
            headers["Docker-Content-Digest"] = f"sha256:{hashlib.sha256(payload).hexdigest()}"
        self._answer(200, payload, headers, body=body)

    def _token(self) -> None:
        expected = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._answer(401, b'{"details": "incorrect username or password"}', body=True)
            return
        self._answer(200, json.dumps({"token": self.server.token}).encode(), body=True)

    def _answer(
        self,
        status: int,
        payload: bytes,
        headers: dict[str, str] | None = None,
        *,
        body: bool,
    ) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
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


def _resolve_token(
    registry: TokenAuthRegistry, *, repository: str = "team/app", password: str = PASSWORD
) -> str | None:
    return resolve_digest(
        server=registry.server,
        repository=repository,
        reference="v1",
        credentials=RegistryCredentials(username=USERNAME, password=password),
        insecure=True,
        timeout=5.0,
        allow_private_hosts=True,
    )


EXPECTED = f"sha256:{hashlib.sha256(MANIFEST.encode()).hexdigest()}"


def test_token_login_asks_for_pull_scope_only(token_registry: TokenAuthRegistry) -> None:
    assert _resolve_token(token_registry) == EXPECTED
    assert token_registry.token_queries == [
        {"service": ["stand-in"], "scope": ["repository:team/app:pull"]}
    ]
    methods = [method for method, _ in token_registry.manifest_requests]
    assert methods == ["HEAD", "HEAD"]
    accept = token_registry.manifest_requests[-1][1]
    assert "application/vnd.oci.image.index.v1+json" in accept
    assert "application/vnd.docker.distribution.manifest.v2+json" in accept


def test_token_login_missing_manifest_is_none(token_registry: TokenAuthRegistry) -> None:
    assert _resolve_token(token_registry, repository="team/other") is None
    assert token_registry.token_queries[-1]["scope"] == ["repository:team/other:pull"]


def test_token_service_refusing_the_password_raises(token_registry: TokenAuthRegistry) -> None:
    wrong = "wrong-" + PASSWORD
    with pytest.raises(RegistryError, match="refused the credentials of robot") as caught:
        _resolve_token(token_registry, password=wrong)
    _assert_no_secret(caught.value, wrong, PASSWORD, token_registry.token)


def test_digest_from_the_manifest_bytes_when_the_header_is_missing(
    token_registry: TokenAuthRegistry,
) -> None:
    token_registry.send_digest_header = False
    assert _resolve_token(token_registry) == EXPECTED
    assert [method for method, _ in token_registry.manifest_requests][-1] == "GET"
