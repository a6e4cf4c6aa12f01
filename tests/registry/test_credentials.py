"""Reading push credentials from the Secrets admins create with kubectl."""

from __future__ import annotations

import base64
import json

import pytest

from kapsa.errors import InvalidSecretError, RegistryError
from kapsa.registry import RegistryCredentials, credentials_from_secret

SERVER = "harbor.corp.com"
PASSWORD = "pa55-w0rd:with-colon"
DOCKERCONFIG = "kubernetes.io/dockerconfigjson"
BASIC = "kubernetes.io/basic-auth"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _dockerconfig(auths: object) -> dict[str, bytes]:
    return {".dockerconfigjson": json.dumps({"auths": auths}).encode()}


@pytest.mark.parametrize(
    "auths",
    [
        # What `kubectl create secret docker-registry` writes: both forms, for the exact server.
        {SERVER: {"username": "robot", "password": PASSWORD, "auth": _b64(f"robot:{PASSWORD}")}},
        {SERVER: {"auth": _b64(f"robot:{PASSWORD}")}},
        {SERVER: {"username": "robot", "password": PASSWORD}},
        {f"https://{SERVER}": {"auth": _b64(f"robot:{PASSWORD}")}},
        {f"https://{SERVER}/v2/": {"auth": _b64(f"robot:{PASSWORD}")}},
        {"other.io": {"auth": _b64("someone:else")}, SERVER: {"auth": _b64(f"robot:{PASSWORD}")}},
    ],
)
def test_dockerconfigjson_entry_for_the_server(auths: object) -> None:
    found = credentials_from_secret(
        secret_type=DOCKERCONFIG, data=_dockerconfig(auths), server=SERVER
    )
    assert found == RegistryCredentials(username="robot", password=PASSWORD)


def test_dockerconfigjson_matches_the_port_too() -> None:
    auths = {
        "registry.local:5000": {"auth": _b64("five:thousand")},
        "registry.local:443": {"auth": _b64("four:forty-three")},
    }
    found = credentials_from_secret(
        secret_type=DOCKERCONFIG, data=_dockerconfig(auths), server="registry.local:5000"
    )
    assert found.username == "five"


def test_basic_auth_secret() -> None:
    found = credentials_from_secret(
        secret_type=BASIC,
        data={"username": b"robot", "password": PASSWORD.encode()},
        server=SERVER,
    )
    assert found == RegistryCredentials(username="robot", password=PASSWORD)


def test_password_stays_out_of_repr() -> None:
    assert PASSWORD not in repr(RegistryCredentials(username="robot", password=PASSWORD))


@pytest.mark.parametrize(
    ("secret_type", "data", "named"),
    [
        (BASIC, {"password": PASSWORD.encode()}, "'username'"),
        (BASIC, {"username": b"robot"}, "'password'"),
        (BASIC, {"username": b"robot", "password": b""}, "'password'"),
        (BASIC, {"username": b"robot", "password": b"\xff" + PASSWORD.encode()}, "UTF-8"),
        (DOCKERCONFIG, {}, ".dockerconfigjson"),
        (DOCKERCONFIG, {".dockerconfigjson": b'{"auths": {' + PASSWORD.encode()}, "JSON"),
        (DOCKERCONFIG, {".dockerconfigjson": json.dumps({"x": PASSWORD}).encode()}, "'auths'"),
        (DOCKERCONFIG, _dockerconfig({"other.io": {"auth": _b64(f"u:{PASSWORD}")}}), SERVER),
        (DOCKERCONFIG, _dockerconfig({SERVER: {"auth": PASSWORD}}), "base64"),
        (DOCKERCONFIG, _dockerconfig({SERVER: {"auth": _b64(PASSWORD.replace(":", ""))}}), "user"),
        (DOCKERCONFIG, _dockerconfig({SERVER: {"password": PASSWORD}}), "'username'"),
        (DOCKERCONFIG, _dockerconfig({SERVER: {"username": "robot"}}), "'password'"),
        (DOCKERCONFIG, _dockerconfig({SERVER: PASSWORD}), "not an object"),
        ("Opaque", {"password": PASSWORD.encode()}, "Opaque"),
    ],
)
def test_malformed_secrets_name_the_problem_but_not_the_password(
    secret_type: str, data: dict[str, bytes], named: str
) -> None:
    with pytest.raises(InvalidSecretError) as raised:
        credentials_from_secret(secret_type=secret_type, data=data, server=SERVER)
    message = str(raised.value)
    assert named in message
    assert PASSWORD not in message
    assert PASSWORD.replace(":", "") not in message
    assert _b64(f"u:{PASSWORD}") not in message
    # Callers that handle any registry trouble catch it too.
    assert isinstance(raised.value, RegistryError)
