"""Repository URLs Kapsa refuses to hand to git, and the ones it accepts."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapsa.errors import UnsafeURLError
from kapsa.git.urls import validate_url

#: A public address literal: accepted without a DNS lookup.
PUBLIC = "140.82.112.3"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ext::sh -c touch% /tmp/pwned", "whitespace"),
        ("ext::sh", "remote helper"),
        ("fd::17/foo", "remote helper"),
        ("-uhttps://example.com/x.git", "option"),
        ("--upload-pack=touch /tmp/x", "whitespace"),
        ("--upload-pack=evil", "option"),
        (f"https://user:hunter22@{PUBLIC}/x.git", "credentials"),
        (f"https://ghp_token@{PUBLIC}/x.git", "credentials"),
        (f"ssh://git:hunter22@{PUBLIC}/x.git", "password"),
        ("file:///srv/repo.git", "admin has to allow"),
        (f"git://{PUBLIC}/x.git", "admin has to allow"),
        (f"http://{PUBLIC}/x.git", "admin has to allow"),
        (f"https://{PUBLIC}/x.git\n", "control"),
        (f"https://{PUBLIC}/x\x00.git", "control"),
        ("ftp://example.com/x.git", "not supported"),
        ("ssh://-oProxyCommand=evil/x", "host"),
        ("-oProxyCommand=evil:x", "option"),
        ("/srv/repo.git", "neither"),
        ("", "empty"),
        (f"https://{PUBLIC}:99999/x.git", "port"),
    ],
)
def test_dangerous_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURLError, match=reason):
        validate_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x.git",
        "http://127.0.0.1:8080/x.git",
        "https://localhost/x.git",
        "https://10.0.0.5/x.git",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x.git",
        "https://[::ffff:127.0.0.1]/x.git",
        "https://gitea.tools.svc/x.git",
        "https://gitea.tools.svc.cluster.local/x.git",
        "https://metadata.google.internal/x",
        "ssh://git@gitea/org/x.git",
        "git@10.1.2.3:org/x.git",
        # IPv4 reached through IPv6: NAT64 (well-known and local-use), IPv4-compatible, 6to4
        # and Teredo, each carrying a loopback, metadata or private address.
        "https://[64:ff9b::7f00:1]/x.git",
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "https://[64:ff9b:1::a00:1]/x.git",
        "https://[::127.0.0.1]/x.git",
        "https://[2002:7f00:1::]/x.git",
        "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x.git",
        "git@[64:ff9b::a00:5]:org/x.git",
    ],
)
def test_private_and_cluster_hosts_need_the_admins_allowance(url: str) -> None:
    with pytest.raises(UnsafeURLError, match=r"internal|local|non-public"):
        validate_url(url, allow_insecure=True)
    assert validate_url(url, allow_insecure=True, allow_private_hosts=True) == url


@pytest.mark.parametrize(
    "url",
    [
        f"https://{PUBLIC}/org/x.git",
        f"https://{PUBLIC}:8443/org/x.git",
        f"ssh://git@{PUBLIC}:2222/org/x.git",
        f"git@{PUBLIC}:org/x.git",
        f"{PUBLIC}:org/x.git",
        "https://[64:ff9b::8c52:7003]/org/x.git",  # NAT64 of the public address above
    ],
)
def test_https_and_ssh_urls_to_public_hosts_are_accepted(url: str) -> None:
    assert validate_url(url) == url


def test_insecure_transports_are_accepted_when_allowed() -> None:
    assert validate_url("file:///srv/repo.git", allow_insecure=True) == "file:///srv/repo.git"
    git_url = f"git://{PUBLIC}/x.git"
    assert validate_url(git_url, allow_insecure=True) == git_url


def test_a_refused_url_does_not_repeat_its_password() -> None:
    with pytest.raises(UnsafeURLError) as caught:
        validate_url(f"https://alice:hunter22-secret@{PUBLIC}/x.git")
    assert "hunter22-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ssh://[-oProxyCommand=id]/x", "cannot be parsed"),
        ("https://[::1/x.git", "cannot be parsed"),
        ("https://a]b/x.git", "cannot be parsed"),
        ("https://[not-an-address]/x.git", "cannot be parsed"),
        ("https://[140.82.112.3]/x.git", "cannot be parsed"),
        ("https://[::1]]/x.git", "brackets"),
        ("https://[::1][::2]/x.git", "brackets"),
        ("git@[not-an-address]:x.git", "not an IPv6 address"),
        ("git@[140.82.112.3]:x.git", "not an IPv6 address"),
        ("git@[-oProxyCommand=id]:x", "'-'"),
    ],
)
def test_malformed_bracketed_hosts_are_refused_with_a_reason(url: str, reason: str) -> None:
    """Even where the admin allows everything, a URL that cannot be parsed is a refusal."""
    with pytest.raises(UnsafeURLError, match=reason):
        validate_url(url, allow_insecure=True, allow_private_hosts=True)


@settings(max_examples=400, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("[]:@/%.-_ 0123456789abcdefxz")) | st.characters(),
        max_size=40,
    ).map(lambda tail: "https://" + tail)
    | st.text(max_size=40)
)
def test_any_text_is_accepted_or_refused_never_an_unexpected_error(url: str) -> None:
    """The reconciler catches UnsafeURLError; anything else would leave a Project without a
    status. Private hosts are allowed here so that no name is looked up."""
    with contextlib.suppress(UnsafeURLError):
        validate_url(url, allow_insecure=True, allow_private_hosts=True)
