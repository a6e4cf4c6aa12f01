"""git started by the operator cannot open files outside what it needs: the API token stays out.

The operator's own threads read the service account token for every API call; git runs from
Landlock-confined threads instead. These tests put a stand-in for the token where the real one is
not (this machine runs no kubelet for the test process), outside the directories git is left.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kapsa.errors import SourceError
from kapsa.git.confine import Confinement, GitRunner
from kapsa.git.remote import list_branches
from kapsa.git.strategy import detect_strategy
from kapsa.git.urls import validate_url
from kapsa.sandbox.gitserver import GitServer

#: Outside /tmp and the system directories: what a confined git must not open.
OUTSIDE = Path("/var/tmp")


@pytest.fixture
def secret_dir() -> Iterator[Path]:
    path = OUTSIDE / f"kapsa-confine-{threading.get_ident()}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "token").write_text("eyJhbGciOi-stand-in\n", encoding="utf-8")
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("git-cache")


@pytest.fixture(scope="module")
def runner(cache: Path) -> Iterator[GitRunner]:
    """Confined as the operator confines git (this kernel has Landlock, as CI's does)."""
    runner = GitRunner(Confinement.for_git(cache=cache))
    runner.start()
    yield runner
    runner.shutdown()


def _read(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cat", str(path)], capture_output=True, text=True, check=False)


def test_what_a_confined_thread_starts_cannot_read_the_token(
    runner: GitRunner, secret_dir: Path
) -> None:
    assert runner.confined
    assert _read(secret_dir / "token").returncode == 0  # the operator's own threads can
    denied = runner(_read, secret_dir / "token")
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr


def test_confined_git_lists_and_fetches_what_it_is_meant_to(
    runner: GitRunner, git_server: GitServer, repo_name: str, cache: Path
) -> None:
    commit = git_server.create_repo(repo_name, files={"Dockerfile": "FROM scratch\n"})
    url = validate_url(git_server.url_for(repo_name), allow_insecure=True, allow_private_hosts=True)
    assert runner(list_branches, url, timeout=30) == {"main": commit}
    # Build detection writes its bare repository into the cache, which stays writable.
    assert runner(detect_strategy, url, commit, cache_dir=cache) == "dockerfile"


def test_confined_git_cannot_read_a_repository_outside_its_directories(
    runner: GitRunner, git_server: GitServer, repo_name: str, secret_dir: Path
) -> None:
    """A `file://` URL (admin-allowed insecure sources) naming another part of the disk."""
    git_server.create_repo(repo_name, files={"a": "1\n"})
    elsewhere = secret_dir / "repo.git"
    shutil.copytree(git_server.path_for(repo_name), elsewhere)
    url = validate_url(f"file://{elsewhere}", allow_insecure=True)
    assert list_branches(url, timeout=30)  # unconfined, the same call reads it
    with pytest.raises(SourceError):
        runner(list_branches, url, timeout=30)


def test_an_unconfined_runner_calls_in_the_callers_thread() -> None:
    runner = GitRunner()
    assert not runner.confined
    assert runner(threading.get_ident) == threading.get_ident()


def test_a_cache_outside_tmp_that_does_not_exist_yet_is_made_and_stays_writable(
    git_server: GitServer, repo_name: str, secret_dir: Path
) -> None:
    """As in the operator's image: /var/cache/kapsa/git, created by the first build detection."""
    cache = secret_dir / "cache" / "git"
    runner = GitRunner(Confinement.for_git(cache=cache))
    try:
        runner.start()
        commit = git_server.create_repo(repo_name, files={"Procfile": "web: sh serve.sh\n"})
        url = validate_url(
            git_server.url_for(repo_name), allow_insecure=True, allow_private_hosts=True
        )
        assert runner(detect_strategy, url, commit, cache_dir=cache) == "buildpacks"
        assert any(cache.glob("*.git"))
        assert runner(_read, secret_dir / "token").returncode != 0  # its sibling stays shut
    finally:
        runner.shutdown()
