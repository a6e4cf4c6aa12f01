"""Whether a commit builds with its Dockerfile or with buildpacks.

Answering needs one tree at one commit, not the code: Kapsa keeps one bare, partial repository
per URL in a cache directory and fetches only the commit and its trees (`--depth 1
--filter=blob:none`), so a poll that finds a new commit downloads a few kilobytes and a commit
seen before downloads nothing. Servers that refuse to serve a commit by id get the branch head
fetched instead (pass `branch`). A file lock per repository keeps concurrent detections from
corrupting it.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Literal

import git

from kapsa.errors import InvalidSpecError, SourceError
from kapsa.git.credentials import GitCredentials, git_environment, scrub
from kapsa.git.urls import CheckedURL, pin_of

Strategy = Literal["dockerfile", "buildpacks"]

_COMMIT_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def _check_dockerfile_path(dockerfile: str) -> str:
    path = PurePosixPath(dockerfile)
    if path.is_absolute() or ".." in path.parts or dockerfile.startswith("-") or not path.parts:
        raise InvalidSpecError(f"dockerfile {dockerfile!r} must be a path inside the repository")
    return str(path)


@contextmanager
def _cached_repo(cache_dir: Path, url: str, *, env: dict[str, str]) -> Iterator[git.Repo]:
    """The bare repository kept for `url`, locked against other detections while in use."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()
    path = cache_dir / f"{key}.git"
    with (cache_dir / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / "HEAD").is_file():
            repo = git.Repo(path)
        else:
            repo = git.Repo.init(path, bare=True, env=env)
            repo.git.config("remote.origin.url", url, env=env)
        # Every command in the cache runs without user config, prompts or dangerous transports.
        repo.git.update_environment(**env)
        # GitPython keeps helper processes per Repo; closing releases them (a long-lived
        # operator would otherwise leak one per detection).
        with repo:
            yield repo


def _has_commit(repo: git.Repo, commit: str) -> bool:
    try:
        repo.git.cat_file("-e", f"{commit}^{{commit}}")
    except git.GitCommandError:
        return False
    return True


def _fetch(repo: git.Repo, ref: str, *, timeout: float) -> None:
    repo.git.fetch(
        "--depth=1",
        "--filter=blob:none",
        "--no-tags",
        "--",
        "origin",
        ref,
        kill_after_timeout=timeout,
    )


def _ensure_commit(
    repo: git.Repo,
    commit: str,
    *,
    branch: str | None,
    credentials: GitCredentials | None,
    timeout: float,
) -> None:
    if _has_commit(repo, commit):
        return
    try:
        _fetch(repo, commit, timeout=timeout)
    except git.GitCommandError as by_id:
        if branch is None:
            raise _source_error(by_id, credentials) from None
        try:
            _fetch(repo, f"refs/heads/{branch}", timeout=timeout)
        except git.GitCommandError as by_branch:
            raise _source_error(by_branch, credentials) from None
    if not _has_commit(repo, commit):
        raise SourceError(
            f"commit {commit} is no longer the head of {branch!r} and the server does not "
            "serve older commits by id; the next poll sees the new head"
        )


def _source_error(exc: git.GitCommandError, credentials: GitCredentials | None) -> SourceError:
    # GitPython wraps git's output as `stderr: '...'`; show git's words only.
    stderr = re.sub(r"^\s*stderr: '(.*)'\s*$", r"\1", str(exc.stderr), flags=re.DOTALL).strip()
    stderr = stderr or f"exit code {exc.status}"
    return SourceError(scrub(f"fetching for build detection failed: {stderr}", credentials))


def detect_strategy(
    url: CheckedURL,
    commit: str,
    *,
    dockerfile: str = "Dockerfile",
    branch: str | None = None,
    credentials: GitCredentials | None = None,
    cache_dir: Path,
    timeout: float = 60.0,
) -> Strategy:
    """ "dockerfile" when `dockerfile` exists at `commit`, otherwise "buildpacks".

    `url` must have passed `validate_url`. Raises SourceError when the commit cannot be fetched.
    """
    path = _check_dockerfile_path(dockerfile)
    if not _COMMIT_RE.fullmatch(commit):
        raise ValueError(f"not a full commit id: {commit!r}")
    with (
        git_environment(credentials, pin=pin_of(url)) as env,
        _cached_repo(cache_dir, url, env=env) as repo,
    ):
        _ensure_commit(repo, commit, branch=branch, credentials=credentials, timeout=timeout)
        # ls-tree reads the tree entry only; the blob was never fetched and need not be.
        entry = repo.git.ls_tree(commit, "--", path)
    return "dockerfile" if entry.split(" ", 2)[1:2] == ["blob"] else "buildpacks"
