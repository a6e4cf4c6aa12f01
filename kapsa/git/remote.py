"""Branches and their head commits, read with `git ls-remote`: never a clone.

A poll must be cheap and must never hang the operator, so each listing is one subprocess with a
deadline; on expiry its whole process group (git, git-remote-https, ssh) is killed. Its output
is read as it comes, with caps on branches and bytes, so no remote can make the operator buffer
an unbounded listing. A failed
listing raises SourceError and returns nothing: callers must not read a failure as "every branch
is gone" and delete previews (a listing outage must never delete previews).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import tempfile
import time

from kapsa.errors import ListingTooLargeError, SourceError
from kapsa.git.credentials import (
    GitCredentials,
    credentials_from_secret_data,
    git_environment,
    scrub,
)
from kapsa.git.urls import CheckedURL, pin_of

__all__ = [
    "GitCredentials",
    "credentials_from_secret_data",
    "head_of",
    "list_branches",
]

HEADS = "refs/heads/"
#: A listing with more branches than this is refused (ListingTooLarge) rather than acted on.
MAX_REFS = 10_000
#: And more bytes than this (a ref line is about 60 bytes plus the branch name).
MAX_LISTING_BYTES = 4 * 1024 * 1024
_OBJECT_ID_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def _parse_head(line: str, branches: dict[str, str]) -> None:
    object_id, _, ref = line.rstrip("\n").partition("\t")
    if ref.startswith(HEADS) and _OBJECT_ID_RE.fullmatch(object_id):
        branches[ref.removeprefix(HEADS)] = object_id


def _ls_remote(
    url: CheckedURL,
    patterns: list[str],
    *,
    credentials: GitCredentials | None,
    timeout: float,
    max_refs: int = MAX_REFS,
    max_bytes: int = MAX_LISTING_BYTES,
) -> dict[str, str]:
    """Read the listing as git prints it, never more than the caps: a remote advertising a
    million refs costs at most `max_bytes` of memory, then a ListingTooLargeError."""
    what = f"listing branches of {url}"
    late = SourceError(scrub(f"{what}: no answer within {timeout:g}s", credentials))
    deadline = time.monotonic() + timeout
    with git_environment(credentials, pin=pin_of(url)) as env, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            ["git", "ls-remote", "--heads", "--", url, *patterns],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        try:
            branches = _read_heads(
                process, deadline=deadline, late=late, what=what, caps=(max_refs, max_bytes)
            )
            returncode = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise late from None
        except SourceError:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        if returncode != 0:
            err.seek(0)
            stderr = err.read(8192).decode("utf-8", "replace").strip()
            raise SourceError(scrub(f"{what}: {stderr or f'exit code {returncode}'}", credentials))
    return branches


def _read_heads(
    process: subprocess.Popen[bytes],
    *,
    deadline: float,
    late: SourceError,
    what: str,
    caps: tuple[int, int],
) -> dict[str, str]:
    max_refs, max_bytes = caps
    stdout = process.stdout
    if stdout is None:
        raise SourceError(f"{what}: git gave no output pipe")
    branches: dict[str, str] = {}
    read = 0
    pending = b""
    with stdout, selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise late
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                break
            read += len(chunk)
            if read > max_bytes:
                raise ListingTooLargeError(
                    f"{what}: the remote sent more than {max_bytes // 1024} KiB of refs"
                )
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                _parse_head(line.decode("utf-8", "surrogateescape"), branches)
            if len(branches) > max_refs:
                raise ListingTooLargeError(
                    f"{what}: the repository has more than {max_refs} branches"
                )
    _parse_head(pending.decode("utf-8", "surrogateescape"), branches)
    return branches


def list_branches(
    url: CheckedURL,
    *,
    credentials: GitCredentials | None = None,
    timeout: float = 30.0,
    max_refs: int = MAX_REFS,
    max_bytes: int = MAX_LISTING_BYTES,
) -> dict[str, str]:
    """Every branch of the repository at `url` with its head commit: `{"main": "<sha>"}`.

    `url` must have passed `validate_url` with the project's settings. More than `max_refs`
    branches or `max_bytes` of listing raise ListingTooLargeError.
    """
    return _ls_remote(
        url, [], credentials=credentials, timeout=timeout, max_refs=max_refs, max_bytes=max_bytes
    )


def head_of(
    url: CheckedURL,
    branch: str,
    *,
    credentials: GitCredentials | None = None,
    timeout: float = 30.0,
) -> str | None:
    """The head commit of one branch, or None when the listing succeeded without it."""
    # ls-remote patterns match ref suffixes (`main` also matches `refs/heads/x/main`), so ask
    # for the full ref and keep only the exact name.
    branches = _ls_remote(url, [HEADS + branch], credentials=credentials, timeout=timeout)
    return branches.get(branch)
