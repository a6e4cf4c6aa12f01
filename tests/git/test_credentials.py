"""ssh as git runs it for Kapsa: no host key is trusted unless someone pinned it."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from kapsa.git.credentials import GitCredentials, git_environment

PINNED = (
    "git.corp.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
)


def _ssh(env: dict[str, str]) -> tuple[list[str], Path]:
    argv = shlex.split(env["GIT_SSH_COMMAND"])
    known = next(a.split("=", 1)[1] for a in argv if a.startswith("UserKnownHostsFile="))
    return argv, Path(known)


def test_without_pinned_keys_ssh_trusts_no_host() -> None:
    """accept-new on a known_hosts that starts empty every call would accept any key, every
    time: a man in the middle on the first connection and on every one after."""
    with git_environment(None) as env:
        argv, known = _ssh(env)
        assert "StrictHostKeyChecking=yes" in argv
        assert "GlobalKnownHostsFile=/dev/null" in argv
        assert not any(re.search("accept-new|StrictHostKeyChecking=no", a) for a in argv)
        assert known.read_text() == ""


def test_pinned_keys_are_the_only_ones_ssh_knows() -> None:
    with git_environment(GitCredentials(known_hosts=PINNED)) as env:
        argv, known = _ssh(env)
        assert "StrictHostKeyChecking=yes" in argv
        assert known.read_text() == PINNED + "\n"
        assert oct(known.stat().st_mode & 0o777) == "0o600"


def test_git_gets_nothing_of_the_operators_environment_but_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """git talks to hosts teams choose: the operator's API address, token path, proxies and
    home stay out of its environment."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KAPSA_LEDGER_URL", "postgresql://kapsa:pw@db/kapsa")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    with git_environment(GitCredentials(username="u", password="pw-1")) as env:
        assert env["PATH"] == os.environ["PATH"]
        for planted in ("KUBERNETES_SERVICE_HOST", "KAPSA_LEDGER_URL", "HTTPS_PROXY"):
            assert planted not in env
        assert not any(k.startswith("KUBERNETES") for k in env)
        assert "pw-1" not in env["GIT_ASKPASS"]
        assert env["HOME"] != os.environ.get("HOME")
