"""Which commits lie between two releases: `git log old..new`, for `kapsa diff-releases`.

It shares the build-detection cache's bare-repository layout and lock, in a folder of its own:
detection fetches one commit at depth 1, which would cut the history a log needs, so the two
never write into the same repository. Only commits and trees are fetched (`--filter=blob:none`):
a log reads no file contents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import git

from kapsa.errors import InvalidSpecError, SourceError
from kapsa.git.credentials import GitCredentials, git_environment, scrub
from kapsa.git.strategy import _cached_repo, _has_commit
from kapsa.git.urls import CheckedURL

_COMMIT_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_FIELD = "\x1f"
_FORMAT = _FIELD.join(("%H", "%an", "%aI", "%s"))


@dataclass(frozen=True, kw_only=True)
class Commit:
    """One commit as a release diff lists it."""

    sha: str
    author: str
    date: str
    subject: str


def commits_between(
    url: CheckedURL,
    old: str,
    new: str,
    *,
    cache_dir: Path,
    credentials: GitCredentials | None = None,
    branch: str | None = None,
    timeout: float = 60.0,
) -> list[Commit]:
    """Commits reachable from `new` but not from `old`, newest first (`git log old..new`).

    Empty when `new` is `old` or an ancestor of it (a rollback: call it the other way round to
    see what left). `url` must have passed `validate_url`. Servers that will not serve a commit
    by id get `branch` fetched instead. Raises SourceError when a commit cannot be fetched.
    """
    for commit in (old, new):
        if not _COMMIT_RE.fullmatch(commit):
            raise InvalidSpecError(f"not a full commit id: {commit!r}")
    with (
        git_environment(credentials) as env,
        _cached_repo(cache_dir / "history", url, env=env) as repo,
    ):
        missing = [c for c in (old, new) if not _has_commit(repo, c)]
        if missing:
            _fetch(repo, missing, branch=branch, credentials=credentials, timeout=timeout)
        output = repo.git.log(f"--format={_FORMAT}", f"{old}..{new}", "--")
    commits = []
    for line in output.splitlines():
        sha, author, date, subject = line.split(_FIELD, 3)
        commits.append(Commit(sha=sha, author=author, date=date, subject=subject))
    return commits


def _fetch(
    repo: git.Repo,
    commits: list[str],
    *,
    branch: str | None,
    credentials: GitCredentials | None,
    timeout: float,
) -> None:
    refs = [[*commits]] + ([[f"refs/heads/{branch}"]] if branch else [])
    error: git.GitCommandError | None = None
    for wanted in refs:
        try:
            repo.git.fetch(
                "--filter=blob:none",
                "--no-tags",
                "--",
                "origin",
                *wanted,
                kill_after_timeout=timeout,
            )
        except git.GitCommandError as failed:
            error = failed
            continue
        if all(_has_commit(repo, c) for c in commits):
            return
    detail = str(error.stderr).strip() if error is not None else "not on the server"
    raise SourceError(
        scrub(f"could not fetch {', '.join(c[:12] for c in commits)}: {detail}", credentials)
    )
