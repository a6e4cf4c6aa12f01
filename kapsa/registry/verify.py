"""The connectivity and login check behind a Registry's `verified` status.

It speaks just enough of the distribution API (`GET /v2/` and its Basic or Bearer challenge) to
prove the credentials log in, without pushing anything. Two rules keep it safe to point at any
address a user types: HTTPS unless the Registry says `insecure` (a TLS failure is never retried
over plain HTTP), and no requests to loopback, link-local or private addresses (the operator's
own neighbourhood, cloud metadata) unless the operator allows them; the token realm a registry
names is held to both rules too.

The same handshake serves every other question Kapsa asks a registry (see `digest.py`): `_Client`
sends a request, answers the challenge a 401 carries and sends it again, and leaves the meaning
of the final status to its caller.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.request import parse_http_list

import requests
from requests.utils import get_environ_proxies

from kapsa.registry.credentials import RegistryCredentials

VERIFIED = "Verified"
UNREACHABLE = "Unreachable"
HOST_NOT_ALLOWED = "HostNotAllowed"
AUTHENTICATION_FAILED = "AuthenticationFailed"
UNEXPECTED = "Unexpected"

#: What a Registry's spec.server allows, checked again here: no userinfo, path or query can ride
#: along into the URL this module builds.
_SERVER = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?(:[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome, shaped for a status condition: `reason` is one of the constants above."""

    ok: bool
    reason: str
    message: str


class _VerdictError(Exception):
    """Carries the verdict out of a nested step, so each step reads as the happy path."""

    def __init__(self, verification: Verification) -> None:
        super().__init__(verification.message)
        self.verification = verification


def verify_registry(
    *,
    server: str,
    credentials: RegistryCredentials,
    insecure: bool = False,
    ca_bundle: str | None = None,
    timeout: float = 10.0,
    allow_private_hosts: bool = False,
) -> Verification:
    """Log in to `server` (host[:port]) the way a pushing client would; never raises."""
    client = _Client(
        credentials=credentials,
        insecure=insecure,
        ca_bundle=ca_bundle,
        timeout=timeout,
        allow_private_hosts=allow_private_hosts,
    )
    try:
        url = f"{client.base_url(server)}/v2/"
        answer, logged_in = client.authenticated("GET", url)
        if answer.status_code != 200:
            raise client.unexpected(url, answer)
    except _VerdictError as verdict:
        return verdict.verification
    finally:
        client.close()
    if logged_in:
        message = f"logged in to {_origin(url)} as {credentials.username}"
    else:
        message = f"{_origin(url)} answered without asking for credentials"
    return Verification(ok=True, reason=VERIFIED, message=message)


class _Client:
    """One registry conversation: the address rules, the Basic or Bearer login, the messages.

    `credentials` may be None for anonymous pulls: a Bearer token is then asked for without a
    login (public repositories on hosted registries hand those out), a Basic challenge fails.
    """

    def __init__(
        self,
        *,
        credentials: RegistryCredentials | None,
        insecure: bool,
        ca_bundle: str | None,
        timeout: float,
        allow_private_hosts: bool,
    ) -> None:
        self.credentials = credentials
        self.insecure = insecure
        self.timeout = timeout
        self.allow_private_hosts = allow_private_hosts
        self.session = requests.Session()
        # No ~/.netrc credentials and no CA bundle from the environment: what is sent and trusted
        # is only what the Registry names. Proxies from the environment are still honoured below.
        self.session.trust_env = False
        self.session.verify = ca_bundle if ca_bundle else True

    def close(self) -> None:
        self.session.close()

    def base_url(self, server: str) -> str:
        """`server` as scheme://host[:port], refused unless it is a plain host[:port]."""
        if not _SERVER.fullmatch(server):
            raise _failed(
                HOST_NOT_ALLOWED,
                f"{server!r} is not a registry host[:port] such as harbor.corp.com:443",
            )
        return f"{'http' if self.insecure else 'https'}://{server}"

    def authenticated(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
    ) -> tuple[requests.Response, bool]:
        """The answer to `method url`, logging in first if the registry challenges.

        Returns the final answer and whether credentials (or a token) went with it. A refusal
        of the login raises; any other status is the caller's to judge. `scope` is the Bearer
        token scope to ask for; without it, the one the challenge names.
        """
        answer = self.send(method, url, headers=headers)
        if answer.status_code != 401:
            return answer, False
        scheme, params = _challenge(answer.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if self.credentials is None:
                raise self.rejected(url, answer)
            retried = self.send(method, url, headers=headers, auth=self.login())
        elif scheme == "bearer":
            token = self.token(params, scope=scope)
            retried = self.send(
                method, url, headers={**(headers or {}), "Authorization": f"Bearer {token}"}
            )
        else:
            raise _failed(
                UNEXPECTED,
                f"{_origin(url)} asks for an authentication scheme Kapsa does not "
                f"speak ({scheme or 'none given'}); Basic and Bearer are supported",
            )
        if retried.status_code in (401, 403):
            raise self.rejected(url, retried)
        return retried, True

    def login(self) -> tuple[str, str] | None:
        if self.credentials is None:
            return None
        return (self.credentials.username, self.credentials.password)

    def token(self, params: dict[str, str], *, scope: str | None) -> str:
        realm = params.get("realm", "")
        if not realm:
            raise _failed(
                UNEXPECTED,
                "the registry's Bearer challenge names no token realm",
            )
        query = {key: params[key] for key in ("service", "scope") if params.get(key)}
        if scope:
            query["scope"] = scope
        answer = self.send("GET", realm, params=query, auth=self.login())
        if answer.status_code in (401, 403):
            raise self.rejected(realm, answer)
        if answer.status_code != 200:
            raise self.unexpected(realm, answer)
        try:
            document = answer.json()
        except ValueError:
            document = None
        token = None
        if isinstance(document, dict):
            token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise _failed(
                UNEXPECTED,
                f"the token service {_origin(realm)} answered without a token",
            )
        return token

    def send(
        self,
        method: str,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        self.admit(url)
        try:
            # Redirects are not followed: each hop would need the same address check first.
            return self.session.request(
                method,
                url,
                auth=auth,
                headers=headers,
                params=params,
                timeout=self.timeout,
                allow_redirects=False,
                proxies=get_environ_proxies(url),
            )
        except requests.exceptions.SSLError as exc:
            raise _unreachable(f"TLS with {_origin(url)} failed: {_cause(exc)}") from exc
        except requests.exceptions.Timeout as exc:
            raise _unreachable(
                f"{_origin(url)} did not answer within {self.timeout:g}s: {_cause(exc)}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise _unreachable(f"cannot connect to {_origin(url)}: {_cause(exc)}") from exc

    def admit(self, url: str) -> None:
        """Refuse schemes and addresses before any byte is sent."""
        parts = urlsplit(url)
        allowed_schemes = ("https", "http") if self.insecure else ("https",)
        if parts.scheme not in allowed_schemes or not parts.hostname:
            raise _failed(
                HOST_NOT_ALLOWED,
                f"refusing {parts.scheme or 'a scheme-less'} URL for "
                f"{parts.hostname or 'no host'}: only "
                + ("http(s)" if self.insecure else "https (the Registry is not insecure)"),
            )
        if self.allow_private_hosts:
            return
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
        except (OSError, ValueError) as exc:
            raise _unreachable(f"cannot resolve {parts.hostname}: {exc}") from exc
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if _internal(address):
                raise _failed(
                    HOST_NOT_ALLOWED,
                    f"{parts.hostname} resolves to {address}, a loopback, link-local "
                    "or private address, which this operator does not contact",
                )

    def rejected(self, url: str, answer: requests.Response) -> _VerdictError:
        return _failed(
            AUTHENTICATION_FAILED,
            f"{_origin(url)} refused {self.who()} (HTTP {answer.status_code})",
        )

    def who(self) -> str:
        if self.credentials is None:
            return "anonymous access"
        return f"the credentials of {self.credentials.username}"

    def unexpected(self, url: str, answer: requests.Response) -> _VerdictError:
        return _failed(
            UNEXPECTED,
            f"{_origin(url)} answered HTTP {answer.status_code} {answer.reason or ''}".rstrip(),
        )


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` -> ("bearer", {"realm": ..., "service": ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for item in parse_http_list(rest):
        key, _, value = item.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[key.strip().lower()] = value
    return scheme.lower(), params


def _origin(url: str) -> str:
    """Scheme, host and path, no query: messages stay short and carry nothing a server chose."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _failed(reason: str, message: str) -> _VerdictError:
    return _VerdictError(Verification(ok=False, reason=reason, message=message))


def _unreachable(message: str) -> _VerdictError:
    return _failed(UNREACHABLE, message)


def _cause(exc: BaseException) -> str:
    """The innermost reason, without requests' and urllib3's wrappers around it."""
    seen: set[int] = set()
    current: BaseException = exc
    while id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException) and current.args:
            inner = current.args[0]
        if not isinstance(inner, BaseException):
            break
        current = inner
    return str(current) or type(current).__name__
