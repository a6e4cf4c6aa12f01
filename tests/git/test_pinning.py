"""The address a URL's check found public is the address git connects to.

Between the check and git's own lookup a name can change its answer (DNS rebinding: public for
the check, the cluster's API server for git). So the check pins the address it judged, and curl
(https, http) and ssh (ssh://, `user@host:path`) are handed that address for the name.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
from collections.abc import Iterator

import pytest

from kapsa.errors import SourceError, UnsafeURLError
from kapsa.git.credentials import GitCredentials, git_environment
from kapsa.git.remote import list_branches
from kapsa.git.urls import CheckedURL, Pin, validate_url
from kapsa.sandbox.githttp import GitHttpServer
from kapsa.sandbox.gitserver import GitServer

PUBLIC, OTHER_PUBLIC = "140.82.112.3", "140.82.112.4"
#: A reserved name (RFC 2606): it resolves nowhere, so only a pin can take git to a server.
UNRESOLVABLE = "git.pinned.invalid"


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Answers for getaddrinfo by name, as a resolver the test controls."""
    answers: dict[str, list[str]] = {}

    def getaddrinfo(host: str, port: object, *_: object, **__: object) -> list[tuple]:  # type: ignore[type-arg]
        if host not in answers and not host.replace(".", "").isdigit():
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))
            for address in answers.get(host, [host])
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield answers


@pytest.mark.parametrize(
    ("url", "port", "ssh"),
    [
        ("https://git.example.com/org/x.git", 443, False),
        ("https://git.example.com:8443/org/x.git", 8443, False),
        ("ssh://git@git.example.com/org/x.git", 22, True),
        ("ssh://git@git.example.com:2222/org/x.git", 2222, True),
        ("git@git.example.com:org/x.git", 22, True),
    ],
)
def test_the_check_pins_the_address_it_found_public(
    dns: dict[str, list[str]], url: str, port: int, ssh: bool
) -> None:
    dns["git.example.com"] = [PUBLIC, OTHER_PUBLIC]
    checked = validate_url(url)
    assert checked.pin == Pin(host="git.example.com", port=port, address=PUBLIC, ssh=ssh)


def test_a_name_with_any_private_address_is_refused_not_pinned(dns: dict[str, list[str]]) -> None:
    dns["git.example.com"] = [PUBLIC, "10.0.0.1"]
    with pytest.raises(UnsafeURLError, match=r"non-public address 10\.0\.0\.1"):
        validate_url("https://git.example.com/org/x.git")


def test_nothing_is_pinned_where_nothing_was_refused(dns: dict[str, list[str]]) -> None:
    dns["git.example.com"] = [PUBLIC]
    # With private hosts allowed no address is judged; an address literal resolves to itself;
    # git:// cannot be given an address for a name (and needs the admin's allowance).
    assert validate_url("https://git.example.com/x.git", allow_private_hosts=True).pin is None
    assert validate_url(f"https://{PUBLIC}/x.git").pin is None
    assert validate_url("git://git.example.com/x.git", allow_insecure=True).pin is None


def test_git_over_http_connects_to_the_pinned_address_not_the_name(
    git_server: GitServer, repo_name: str
) -> None:
    commit = git_server.create_repo(repo_name, files={"a": "1\n"})
    with GitHttpServer(repos_dir=git_server.repos_dir, username="u", password="pw-pin") as http:
        assert http.port is not None
        url = f"http://{UNRESOLVABLE}:{http.port}/{repo_name}.git"
        with pytest.raises(SourceError):  # git's own lookup finds nothing
            list_branches(CheckedURL(url), timeout=30)
        pinned = CheckedURL(
            url, pin=Pin(host=UNRESOLVABLE, port=http.port, address="127.0.0.1", ssh=False)
        )
        creds = GitCredentials(username="u", password="pw-pin")
        assert list_branches(pinned, credentials=creds, timeout=30) == {"main": commit}


@pytest.mark.parametrize(
    ("port", "alias"), [(22, "git.example.com"), (2222, "[git.example.com]:2222")]
)
def test_ssh_is_told_the_pinned_address_and_checks_the_key_under_the_name(
    port: int, alias: str
) -> None:
    """Read back by ssh itself (`ssh -G` prints the configuration it would connect with)."""
    pin = Pin(host="git.example.com", port=port, address=PUBLIC, ssh=True)
    with git_environment(None, pin=pin) as env:
        command = shlex.split(env["GIT_SSH_COMMAND"])
        shown = subprocess.run(
            [*command, "-G", "-p", str(port), "git@git.example.com"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    assert f"hostname {PUBLIC}" in shown
    assert f"hostkeyalias {alias}" in shown
    assert "stricthostkeychecking true" in shown
