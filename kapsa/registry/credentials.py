"""Push credentials out of the two Secret types an admin creates for a registry.

Every message this module raises names the key or entry that is missing or malformed and never
quotes a value: these messages end up in the Registry's status, which every user can read.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from kapsa.errors import InvalidSecretError

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
BASIC_AUTH = "kubernetes.io/basic-auth"
DOCKERCONFIGJSON_KEY = ".dockerconfigjson"


@dataclass(frozen=True, slots=True)
class RegistryCredentials:
    """A user and password; the password stays out of repr so a logged object leaks nothing."""

    username: str
    password: str = field(repr=False)


def credentials_from_secret(
    *, secret_type: str, data: dict[str, bytes], server: str
) -> RegistryCredentials:
    """The credentials for `server` held in a Secret's (already base64-decoded) data."""
    if secret_type == DOCKERCONFIGJSON:
        return _from_dockerconfigjson(data, server)
    if secret_type == BASIC_AUTH:
        return RegistryCredentials(
            username=_text(data, "username", where="the Secret"),
            password=_text(data, "password", where="the Secret"),
        )
    raise InvalidSecretError(
        f"Secret type {secret_type!r} cannot hold registry credentials; "
        f"use {DOCKERCONFIGJSON} or {BASIC_AUTH}"
    )


def _text(data: dict[str, bytes], key: str, *, where: str) -> str:
    raw = data.get(key)
    if raw is None:
        raise InvalidSecretError(f"{where} has no {key!r} key")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # The codec's own message quotes the offending byte, hence no `from`-chained text here.
        raise InvalidSecretError(f"{where}: {key!r} is not UTF-8 text") from None
    if not text:
        raise InvalidSecretError(f"{where}: {key!r} is empty")
    return text


def _from_dockerconfigjson(data: dict[str, bytes], server: str) -> RegistryCredentials:
    where = f"the Secret's {DOCKERCONFIGJSON_KEY}"
    document = _text(data, DOCKERCONFIGJSON_KEY, where="the Secret")
    try:
        config = json.loads(document)
    except json.JSONDecodeError:
        raise InvalidSecretError(f"{where} is not valid JSON") from None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        raise InvalidSecretError(f"{where} has no 'auths' object")
    entry = _entry_for(auths, server)
    if entry is None:
        known = ", ".join(sorted(str(key) for key in auths)) or "none"
        raise InvalidSecretError(f"{where} has no entry for {server} (entries: {known})")
    return _entry_credentials(entry, where=f"{where} entry for {server}")


def _entry_for(auths: dict[str, Any], server: str) -> Any:
    """Docker writes keys as `host[:port]` or as a URL (`https://host/v1/`); both name the host."""
    if server in auths:
        return auths[server]
    wanted = server.lower()
    for key, entry in auths.items():
        host = str(key).lower()
        for scheme in ("https://", "http://"):
            host = host.removeprefix(scheme)
        if host.split("/", 1)[0] == wanted:
            return entry
    return None


def _entry_credentials(entry: Any, *, where: str) -> RegistryCredentials:
    if not isinstance(entry, dict):
        raise InvalidSecretError(f"{where} is not an object")
    auth = entry.get("auth")
    if auth:
        if not isinstance(auth, str):
            raise InvalidSecretError(f"{where}: 'auth' is not a string")
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidSecretError(f"{where}: 'auth' is not base64 of user:password") from None
        user, colon, secret = decoded.partition(":")
        if not colon or not user or not secret:
            raise InvalidSecretError(f"{where}: 'auth' is not base64 of user:password")
        return RegistryCredentials(username=user, password=secret)
    username, password = entry.get("username"), entry.get("password")
    if not isinstance(username, str) or not username:
        raise InvalidSecretError(f"{where} has neither 'auth' nor 'username'")
    if not isinstance(password, str) or not password:
        raise InvalidSecretError(f"{where} has no 'password'")
    return RegistryCredentials(username=username, password=password)
