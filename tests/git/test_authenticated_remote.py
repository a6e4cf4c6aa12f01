"""Branch listing against a private repository: a real smart-HTTP git host that wants a password.

Kapsa hands the password of a Project's basic-auth Secret to git through an askpass script; these
tests check it against `git http-backend` behind HTTP Basic auth, as a private GitLab or Gitea
answers: the right password lists the branches, a wrong or missing one fails at once (never a
prompt waiting for a terminal) and no error repeats the password.
"""

from __future__ import annotations

import base64
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kapsa.errors import SourceError
from kapsa.git.credentials import GitCredentials, credentials_from_secret_data
from kapsa.git.remote import head_of, list_branches
from kapsa.git.strategy import detect_strategy
from kapsa.git.urls import validate_url
from kapsa.sandbox.githttp import GitHttpServer
from kapsa.sandbox.gitserver import GitServer

USERNAME = "kapsa-reader"
#: Characters a shell or a URL would mangle: the askpass script must pass them through intact.
PASSWORD = f"p@ss:w0rd $HOME 'q' \"{secrets.token_urlsafe(12)}\" %20&"
#: A failed listing must come back at once, not after the listing's deadline.
QUICK = 10.0


@pytest.fixture(scope="module")
def git_http(git_server: GitServer) -> Iterator[GitHttpServer]:
    with GitHttpServer(
        repos_dir=git_server.repos_dir, username=USERNAME, password=PASSWORD
    ) as server:
        yield server


def _right() -> GitCredentials:
    return GitCredentials(username=USERNAME, password=PASSWORD)


def _listing_error(url: str, credentials: GitCredentials | None) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        list_branches(url, credentials=credentials, timeout=60)
    return str(caught.value), time.monotonic() - started


def test_the_server_challenges_requests_without_the_password(
    git_server: GitServer, git_http: GitHttpServer, repo_name: str
) -> None:
    git_server.create_repo(repo_name, files={"app.py": "print('hi')\n"})
    refs = git_http.url_for(repo_name) + "/info/refs?service=git-upload-pack"

    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(refs, timeout=10)
    assert anonymous.value.code == 401
    assert anonymous.value.headers["WWW-Authenticate"] == 'Basic realm="kapsa"'

    wrong = base64.b64encode(f"{USERNAME}:not-it".encode()).decode()
    request = urllib.request.Request(refs, headers={"Authorization": f"Basic {wrong}"})
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(request, timeout=10)
    assert denied.value.code == 401

    right = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(refs, headers={"Authorization": f"Basic {right}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
        assert b"# service=git-upload-pack" in answer.read()


def test_the_right_password_lists_every_branch(
    git_server: GitServer, git_http: GitHttpServer, repo_name: str
) -> None:
    main = git_server.create_repo(repo_name, files={"app.py": "v1\n"})
    git_server.create_branch(repo_name, "feature/login")
    feature = git_server.commit(repo_name, branch="feature/login", files={"login.py": "x\n"})
    url = validate_url(git_http.url_for(repo_name), allow_insecure=True, allow_private_hosts=True)

    assert list_branches(url, credentials=_right()) == {"main": main, "feature/login": feature}
    assert head_of(url, "feature/login", credentials=_right()) == feature

    newer = git_server.commit(repo_name, branch="main", files={"app.py": "v2\n"})
    assert list_branches(url, credentials=_right())["main"] == newer
    # git asked without credentials first, was challenged, then sent the password.
    statuses = [status for _, path, status in git_http.requests() if repo_name in path]
    assert 401 in statuses
    assert 200 in statuses


def test_a_wrong_password_fails_at_once_without_repeating_it(
    git_server: GitServer, git_http: GitHttpServer, repo_name: str
) -> None:
    git_server.create_repo(repo_name, files={"app.py": "v1\n"})
    url = git_http.url_for(repo_name)
    wrong_password = "wrong-" + secrets.token_urlsafe(12)

    message, elapsed = _listing_error(
        url, GitCredentials(username=USERNAME, password=wrong_password)
    )

    assert elapsed < QUICK
    assert "Authentication failed" in message
    assert url in message
    assert wrong_password not in message
    assert PASSWORD not in message


def test_the_right_password_under_a_wrong_username_is_not_repeated(
    git_server: GitServer, git_http: GitHttpServer, repo_name: str
) -> None:
    git_server.create_repo(repo_name, files={"app.py": "v1\n"})

    message, elapsed = _listing_error(
        git_http.url_for(repo_name), GitCredentials(username="someone-else", password=PASSWORD)
    )

    assert elapsed < QUICK
    assert "Authentication failed" in message
    assert PASSWORD not in message
    assert "someone-else" not in message


def test_no_credentials_fail_at_once_instead_of_prompting(
    git_server: GitServer, git_http: GitHttpServer, repo_name: str
) -> None:
    git_server.create_repo(repo_name, files={"app.py": "v1\n"})
    url = git_http.url_for(repo_name)

    message, elapsed = _listing_error(url, None)

    assert elapsed < QUICK
    assert "terminal prompts disabled" in message
    assert PASSWORD not in message


def test_credentials_from_a_basic_auth_secret_list_the_branches(
    git_server: GitServer, git_http: GitHttpServer, repo_name: str
) -> None:
    main = git_server.create_repo(repo_name, files={"app.py": "v1\n"})
    # What a kubernetes.io/basic-auth Secret's data decodes to.
    data = {"username": USERNAME.encode(), "password": PASSWORD.encode()}

    credentials = credentials_from_secret_data(data)

    assert list_branches(git_http.url_for(repo_name), credentials=credentials) == {"main": main}
    assert PASSWORD not in repr(credentials)


def test_build_detection_reads_a_private_commit_only_with_the_credentials(
    git_server: GitServer, git_http: GitHttpServer, repo_name: str, tmp_path: Path
) -> None:
    commit = git_server.create_repo(
        repo_name, files={"Dockerfile": "FROM scratch\n", "app.py": "v1\n"}
    )
    url = git_http.url_for(repo_name)

    with pytest.raises(SourceError) as anonymous:
        detect_strategy(url, commit, branch="main", cache_dir=tmp_path / "anonymous", timeout=30)
    assert "terminal prompts disabled" in str(anonymous.value)

    strategy = detect_strategy(
        url, commit, branch="main", credentials=_right(), cache_dir=tmp_path / "cache", timeout=30
    )
    assert strategy == "dockerfile"
