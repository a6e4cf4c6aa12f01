"""Build strategy detection at a commit, against a real git daemon."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from kapsa.errors import InvalidSpecError, SourceError
from kapsa.git.strategy import detect_strategy
from kapsa.sandbox.gitserver import GitServer


def test_a_repository_without_a_dockerfile_builds_with_buildpacks(
    git_server: GitServer, repo_name: str, tmp_path: Path
) -> None:
    commit = git_server.create_repo(repo_name, files={"app.py": "print('hi')\n"})
    url = git_server.url_for(repo_name)
    assert detect_strategy(url, commit, cache_dir=tmp_path) == "buildpacks"


def test_a_commit_adding_a_dockerfile_switches_to_it_using_the_same_cache(
    git_server: GitServer, repo_name: str, tmp_path: Path
) -> None:
    first = git_server.create_repo(repo_name, files={"app.py": "print('hi')\n"})
    url = git_server.url_for(repo_name)
    assert detect_strategy(url, first, cache_dir=tmp_path) == "buildpacks"
    cached = sorted(tmp_path.glob("*.git"))

    second = git_server.commit(repo_name, branch="main", files={"Dockerfile": "FROM scratch\n"})
    assert detect_strategy(url, second, cache_dir=tmp_path) == "dockerfile"
    assert sorted(tmp_path.glob("*.git")) == cached
    assert len(cached) == 1

    third = git_server.commit(repo_name, branch="main", delete=["Dockerfile"])
    assert detect_strategy(url, third, cache_dir=tmp_path) == "buildpacks"
    # An older commit is still answered from the cache.
    assert detect_strategy(url, second, cache_dir=tmp_path) == "dockerfile"


def test_a_dockerfile_elsewhere_is_found_where_the_project_says(
    git_server: GitServer, repo_name: str, tmp_path: Path
) -> None:
    commit = git_server.create_repo(
        repo_name, files={"app.py": "x\n", "deploy/Dockerfile": "FROM scratch\n"}
    )
    url = git_server.url_for(repo_name)
    assert detect_strategy(url, commit, cache_dir=tmp_path) == "buildpacks"
    assert (
        detect_strategy(url, commit, dockerfile="deploy/Dockerfile", cache_dir=tmp_path)
        == "dockerfile"
    )
    assert detect_strategy(url, commit, dockerfile="deploy", cache_dir=tmp_path) == "buildpacks"


def test_a_commit_seen_before_needs_no_server(tmp_path: Path) -> None:
    with GitServer(tmp_path / "server") as server:
        commit = server.create_repo("app", files={"Dockerfile": "FROM scratch\n"})
        url = server.url_for("app")
        assert detect_strategy(url, commit, cache_dir=tmp_path / "cache") == "dockerfile"
    assert detect_strategy(url, commit, cache_dir=tmp_path / "cache") == "dockerfile"


def test_an_unreachable_server_is_a_source_error(tmp_path: Path) -> None:
    with GitServer(tmp_path / "server") as server:
        commit = server.create_repo("app", files={"a": "1\n"})
        url = server.url_for("app")
    with pytest.raises(SourceError, match=r"unable to connect|Connection refused"):
        detect_strategy(url, commit, cache_dir=tmp_path / "cache", timeout=10)


@pytest.mark.parametrize("dockerfile", ["../Dockerfile", "/etc/passwd", "-p"])
def test_a_dockerfile_path_outside_the_repository_is_refused(
    dockerfile: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidSpecError):
        detect_strategy(
            "git://127.0.0.1:1/x.git", "0" * 40, dockerfile=dockerfile, cache_dir=tmp_path
        )


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"git://127.0.0.1:{sock.getsockname()[1]}/app.git"
        started = time.monotonic()
        with pytest.raises(SourceError, match="did not complete"):
            detect_strategy(url, "0" * 40, cache_dir=tmp_path, timeout=1)
        assert time.monotonic() - started < 5
