"""Branches and their head commits, read with `git ls-remote`: never a clone.

A poll must be cheap and must never hang the operator, so each listing is one subprocess with a
deadline; on expiry its whole process group (git, git-remote-https, ssh) is killed. A failed
listing raises SourceError and returns nothing: callers must not read a failure as "every branch
is gone" and delete previews (a listing outage must never delete previews).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

from kapsa.errors import SourceError
from kapsa.git.credentials import (
    GitCredentials,
    credentials_from_secret_data,
    git_environment,
    scrub,
)

__all__ = [
    "GitCredentials",
    "credentials_from_secret_data",
    "head_of",
    "list_branches",
    "run_git",
]

HEADS = "refs/heads/"
_OBJECT_ID_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def run_git(
    args: list[str], *, credentials: GitCredentials | None, timeout: float, what: str
) -> str:
    """stdout of `git <args>`; SourceError with git's scrubbed stderr on any failure."""
    with git_environment(credentials) as env:
        process = subprocess.Popen(
            ["git", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise SourceError(
                scrub(f"{what}: no answer within {timeout:g}s", credentials)
            ) from None
    if process.returncode != 0:
        stderr = err.decode("utf-8", "replace").strip() or f"exit code {process.returncode}"
        raise SourceError(scrub(f"{what}: {stderr}", credentials))
    # Ref names are bytes to git; surrogateescape keeps odd ones distinct instead of mangled.
    return out.decode("utf-8", "surrogateescape")


def _parse_heads(output: str) -> dict[str, str]:
    branches: dict[str, str] = {}
    for line in output.splitlines():
        object_id, _, ref = line.partition("\t")
        if ref.startswith(HEADS) and _OBJECT_ID_RE.fullmatch(object_id):
            branches[ref.removeprefix(HEADS)] = object_id
    return branches


def _ls_remote(
    url: str, patterns: list[str], *, credentials: GitCredentials | None, timeout: float
) -> dict[str, str]:
    output = run_git(
        ["ls-remote", "--heads", "--", url, *patterns],
        credentials=credentials,
        timeout=timeout,
        what=f"listing branches of {url}",
    )
    return _parse_heads(output)


def list_branches(
    url: str, *, credentials: GitCredentials | None = None, timeout: float = 30.0
) -> dict[str, str]:
    """Every branch of the repository at `url` with its head commit: `{"main": "<sha>"}`.

    `url` must have passed `validate_url` with the project's settings.
    """
    return _ls_remote(url, [], credentials=credentials, timeout=timeout)


def head_of(
    url: str, branch: str, *, credentials: GitCredentials | None = None, timeout: float = 30.0
) -> str | None:
    """The head commit of one branch, or None when the listing succeeded without it."""
    # ls-remote patterns match ref suffixes (`main` also matches `refs/heads/x/main`), so ask
    # for the full ref and keep only the exact name.
    branches = _ls_remote(url, [HEADS + branch], credentials=credentials, timeout=timeout)
    return branches.get(branch)
