"""Which repository URLs Kapsa hands to git.

A Project's URL is user input that ends up as a git argument inside the operator, next to the
service account token and the cluster network. git has run arbitrary commands for `ext::` URLs
and taken URLs starting with `-` as options, and a URL pointing at `kubernetes.default.svc` or
a cloud metadata address turns the operator into a proxy into the cluster. So only https and
ssh are accepted by default, git:// and file:// (and plain http) only when the admin allows
insecure sources, and hosts that resolve to non-public addresses only when the admin allows
private hosts (a self-hosted Gitea in the cluster, a test server).

Every parse error is a refusal with a reason (never a ValueError escaping to the reconciler),
and IPv6 addresses that embed an IPv4 one (NAT64, 6to4, Teredo, IPv4-compatible or -mapped) are
judged by the IPv4 address they reach. The address check is made when the URL is validated, and
the operator validates again before every git call (see kapsa.reconcile.sources.checked_url).
The address found public is the one git connects to (`CheckedURL.pin`, handed to curl and ssh
by kapsa.git.credentials): a name that resolves to a public address for the check and to the
cluster's API a moment later for git (DNS rebinding) gets git nowhere. git itself never follows
an http redirect, so an allowed host cannot send it elsewhere either.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from kapsa.errors import SourceError, UnsafeURLError

SECURE_SCHEMES = frozenset({"https", "ssh", "git+ssh", "ssh+git"})
INSECURE_SCHEMES = frozenset({"git", "file", "http"})
#: The port git reaches when the URL names none, by scheme; git:// is not pinned (see `Pin`).
DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git+ssh": 22, "ssh+git": 22}
#: Names that only mean something inside a cluster or on the machine itself.
INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".localhost", ".internal", ".local")

# git's own rule: `<transport>::<address>` hands the URL to git-remote-<transport>.
_HELPER_RE = re.compile(r"^[A-Za-z0-9+.-]*::")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# git's own rule: a colon before any slash makes `[user@]host:path` an ssh address.
_SCP_RE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]/]+\]|[^@/:\[\]]+):(?P<path>.*)$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
_BRACKETED_RE = re.compile(r"^\[[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?\](:[0-9]*)?$")
#: IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (well-known and
#: local-use) and the deprecated IPv4-compatible form. 6to4 and Teredo have their own accessors.
_V4_IN_LAST_32 = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("::/96"),
)


def _refuse(url: str, reason: str) -> UnsafeURLError:
    return UnsafeURLError(f"repository URL {_redact(url)!r} refused: {reason}")


def _redact(url: str) -> str:
    """The URL without any userinfo, so a refused URL's password is not repeated back."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)


def _check_characters(url: str) -> None:
    if not url:
        raise UnsafeURLError("repository URL is empty")
    for char in url:
        if char.isspace() or unicodedata.category(char).startswith("C"):
            raise _refuse(url, "it contains whitespace or control characters")
    if url.startswith("-"):
        raise _refuse(url, "it starts with '-', which git would read as an option")
    if _HELPER_RE.match(url):
        raise _refuse(url, "`<transport>::` remote helper URLs can run arbitrary commands")


def _check_host(url: str, host: str | None, *, bracketed: bool = False) -> str:
    if not host:
        raise _refuse(url, "it has no host")
    bare = host.strip("[]")
    if bare.startswith("-"):
        raise _refuse(url, "the host starts with '-'")
    try:
        address = ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        if bracketed or host.startswith("["):
            raise _refuse(url, f"[{bare}] is not an IPv6 address") from None
        if not _HOSTNAME_RE.fullmatch(bare):
            raise _refuse(url, f"{bare!r} is not a host name") from None
        return bare
    if (bracketed or host.startswith("[")) and address.version != 6:
        raise _refuse(url, f"[{bare}] is not an IPv6 address")
    return bare


def _split_scheme(url: str, scheme: str, *, allow_insecure: bool) -> tuple[str | None, int | None]:
    if scheme not in SECURE_SCHEMES | INSECURE_SCHEMES:
        raise _refuse(url, f"scheme {scheme!r} is not supported (use https or ssh)")
    if scheme in INSECURE_SCHEMES and not allow_insecure:
        raise _refuse(url, f"{scheme}:// is unauthenticated or local; the admin has to allow it")
    try:
        parts: SplitResult = urlsplit(url)
    except ValueError as exc:  # an unbalanced or misplaced bracket
        raise _refuse(url, f"its host cannot be parsed ({exc})") from None
    hostport = parts.netloc.rpartition("@")[2]
    bracketed = "[" in hostport or "]" in hostport
    if bracketed and not _BRACKETED_RE.fullmatch(hostport):
        raise _refuse(url, "brackets may only enclose an IPv6 address, once")
    try:
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        raise _refuse(url, "the port is not a number between 0 and 65535") from None
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _refuse(url, "file:// URLs cannot name a host")
        return None, None
    if scheme in ("https", "http") and (parts.username is not None or parts.password is not None):
        raise _refuse(url, "credentials belong in the project's credentials Secret, not the URL")
    if parts.password is not None:
        raise _refuse(url, "passwords belong in the project's credentials Secret, not the URL")
    if parts.username is not None and parts.username.startswith("-"):
        raise _refuse(url, "the user name starts with '-'")
    return _check_host(url, hostname, bracketed=bracketed), port


def _split_scp(url: str) -> str:
    match = _SCP_RE.fullmatch(url)
    if match is None:
        raise _refuse(url, "it is neither an https/ssh URL nor a `user@host:path` ssh address")
    user = match.group("user")
    if user is not None and user.startswith("-"):
        raise _refuse(url, "the user name starts with '-'")
    if not match.group("path"):
        raise _refuse(url, "it names no repository path")
    return _check_host(url, match.group("host"), bracketed=match.group("host").startswith("["))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through a translator or tunnel."""
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in network for network in _V4_IN_LAST_32) and int(ip) & 0xFFFFFFFF:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _is_public(address: str) -> bool:
    """Global and unicast, and so is every IPv4 address it embeds (NAT64 `64:ff9b::7f00:1`
    reaches 127.0.0.1 as surely as `::ffff:127.0.0.1` does)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded:
            return all(v4.is_global and not v4.is_multicast for v4 in embedded)
    return ip.is_global and not ip.is_multicast


def _check_public(url: str, host: str, port: int | None) -> str:
    """The first address `host` resolves to, after every one of them was found public."""
    name = host.lower().rstrip(".")
    if "." not in name and ":" not in name:
        # Inside a pod a single label resolves through the namespace's search domains.
        raise _refuse(url, f"{host!r} is a cluster-internal or local name")
    if name.endswith(INTERNAL_SUFFIXES):
        raise _refuse(url, f"{host!r} is a cluster-internal or local name")
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise SourceError(f"cannot resolve the host of {_redact(url)!r}: {exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        if not _is_public(address):
            raise _refuse(url, f"{host!r} resolves to the non-public address {address}")
    if not addresses:
        raise SourceError(f"cannot resolve the host of {_redact(url)!r}: no address")
    return addresses[0]


@dataclass(frozen=True, kw_only=True)
class Pin:
    """The address a checked host is reached at, for the one git call the check was made for.

    Only https, http and ssh are pinned: curl and ssh take an address for a name (CURLOPT_RESOLVE,
    ssh's HostName), git's own git:// transport does not. git:// is an insecure scheme the admin
    has to allow, and its host is still checked before every call.
    """

    host: str
    port: int
    address: str
    ssh: bool


class CheckedURL(str):
    """A URL that passed validate_url just now. The git functions take only this type, so
    mypy shows every git call going through the check; the operator makes one per call rather
    than keeping them, because the host's addresses may change in between.

    `pin` is the address the check found public (None when private hosts are allowed, so no
    address was refused, or for a scheme that cannot be pinned).
    """

    pin: Pin | None

    def __new__(cls, url: str, *, pin: Pin | None = None) -> CheckedURL:
        checked = super().__new__(cls, url)
        checked.pin = pin
        return checked


def pin_of(url: str) -> Pin | None:
    """The address `url`'s check pinned; None for text that never went through validate_url."""
    return url.pin if isinstance(url, CheckedURL) else None


def validate_url(
    url: str, *, allow_insecure: bool = False, allow_private_hosts: bool = False
) -> CheckedURL:
    """`url` unchanged when Kapsa may hand it to git; UnsafeURLError saying why when not.

    Raises SourceError, not UnsafeURLError, when the host cannot be resolved right now: a DNS
    outage must not turn a good Project into an invalid one.
    """
    host, port = _parse(url, allow_insecure=allow_insecure)
    if host is None or allow_private_hosts:
        return CheckedURL(url)
    address = _check_public(url, host, port)
    match = _SCHEME_RE.match(url)
    scheme = match.group(1).lower() if match else "ssh"  # `user@host:path` is ssh
    if scheme not in DEFAULT_PORTS or _is_address(host):
        return CheckedURL(url)  # an address literal resolves to nothing else
    pin = Pin(
        host=host,
        port=port or DEFAULT_PORTS[scheme],
        address=address,
        ssh=scheme not in ("https", "http"),
    )
    return CheckedURL(url, pin=pin)


def is_ssh(url: str) -> bool:
    """Whether git reaches `url` over ssh (an ssh:// URL or a `user@host:path` address)."""
    match = _SCHEME_RE.match(url)
    if match is None:
        return not url.startswith("/")
    return match.group(1).lower() in SECURE_SCHEMES - {"https"}


def url_host(url: str) -> str:
    """The host `url` names, without resolving it (empty for file://); UnsafeURLError when the
    URL cannot be parsed. Credentials are bound to this name."""
    host, _ = _parse(url, allow_insecure=True)
    return (host or "").lower().rstrip(".")


def _parse(url: str, *, allow_insecure: bool) -> tuple[str | None, int | None]:
    _check_characters(url)
    scheme_match = _SCHEME_RE.match(url)
    if scheme_match is not None:
        scheme = scheme_match.group(1).lower()
        return _split_scheme(url, scheme, allow_insecure=allow_insecure)
    return _split_scp(url), None
