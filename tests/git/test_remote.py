"""Branch listing against a real git daemon: what a poll sees, and how it fails."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import pytest

from kapsa.errors import InvalidSpecError, ListingTooLargeError, SourceError
from kapsa.git.remote import GitCredentials, credentials_from_secret_data, head_of, list_branches
from kapsa.git.urls import validate_url
from kapsa.sandbox.gitserver import GitServer


def test_a_new_repository_lists_its_branch(git_server: GitServer, repo_name: str) -> None:
    commit = git_server.create_repo(repo_name, files={"app.py": "print('hi')\n"})
    assert list_branches(git_server.url_for(repo_name)) == {"main": commit}


def test_created_committed_and_deleted_branches_are_seen(
    git_server: GitServer, repo_name: str
) -> None:
    main = git_server.create_repo(repo_name, files={"app.py": "v1\n"})
    url = git_server.url_for(repo_name)

    git_server.create_branch(repo_name, "feature/new-api")
    feature = git_server.commit(repo_name, branch="feature/new-api", files={"api.py": "x\n"})
    assert list_branches(url) == {"main": main, "feature/new-api": feature}

    newer_main = git_server.commit(repo_name, branch="main", files={"app.py": "v2\n"})
    assert list_branches(url)["main"] == newer_main

    git_server.delete_branch(repo_name, "feature/new-api")
    assert list_branches(url) == {"main": newer_main}


def test_head_of_one_branch_matches_its_exact_name(git_server: GitServer, repo_name: str) -> None:
    main = git_server.create_repo(repo_name, files={"a": "1\n"})
    git_server.create_branch(repo_name, "team/main")
    other = git_server.commit(repo_name, branch="team/main", files={"b": "2\n"})
    url = git_server.url_for(repo_name)
    assert head_of(url, "main") == main
    assert head_of(url, "team/main") == other
    assert head_of(url, "absent") is None


def test_a_missing_repository_is_a_source_error(git_server: GitServer) -> None:
    with pytest.raises(SourceError, match="no such repository"):
        list_branches(git_server.url_for("never-created"))


def test_a_stopped_server_fails_fast(tmp_path: Path) -> None:
    with GitServer(tmp_path) as server:
        server.create_repo("app", files={"a": "1\n"})
        url = server.url_for("app")
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"unable to connect|Connection refused"):
        list_branches(url, timeout=10)
    assert time.monotonic() - started < 5


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_a_server_that_never_answers_times_out(silent_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="no answer within 1s"):
        list_branches(f"git://127.0.0.1:{silent_port}/app.git", timeout=1)
    assert time.monotonic() - started < 5


def test_credentials_never_appear_in_errors(git_server: GitServer) -> None:
    # git's own message repeats the path, which here contains the password.
    password = "s3cret-pass-phrase"
    credentials = GitCredentials(username="alice-the-user", password=password)
    with pytest.raises(SourceError) as caught:
        list_branches(git_server.url_for(password), credentials=credentials)
    assert password not in str(caught.value)
    assert "***" in str(caught.value)
    assert password not in repr(credentials)


def test_credentials_come_from_basic_auth_and_ssh_auth_secrets() -> None:
    basic = credentials_from_secret_data({"username": b"alice", "password": b"pw"})
    assert (basic.username, basic.password, basic.ssh_private_key) == ("alice", "pw", None)
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    ssh = credentials_from_secret_data({"ssh-privatekey": key.encode()})
    assert (ssh.username, ssh.password, ssh.ssh_private_key) == (None, None, key)


@pytest.mark.parametrize(
    "data",
    [{}, {"username": b"alice"}, {"token": b"x"}, {"password": b"\xff\xfe"}],
)
def test_a_secret_of_another_shape_is_a_spec_error(data: dict[str, bytes]) -> None:
    with pytest.raises(InvalidSpecError):
        credentials_from_secret_data(data)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 404 to everything and remembers each path asked for."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_git_does_not_follow_a_redirect_away_from_the_checked_host() -> None:
    """An allowed host answering 302 to another address (here another local server standing
    in for the cluster's API) must not get git, or its credentials, there."""
    _Recorder.seen = []
    with _serving(_Recorder) as target:

        class Redirect(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{target}{self.path}")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        with _serving(Redirect) as allowed:
            url = validate_url(
                f"http://127.0.0.1:{allowed}/org/x.git",
                allow_insecure=True,
                allow_private_hosts=True,
            )
            with pytest.raises(SourceError) as caught:
                list_branches(url, credentials=GitCredentials(username="u", password="pw-1"))
    assert _Recorder.seen == []
    assert "302" in str(caught.value)
    assert str(target) not in str(caught.value)


def test_a_listing_with_more_branches_than_the_cap_is_refused_not_buffered(
    git_server: GitServer, repo_name: str
) -> None:
    """A remote advertising a million refs used to cost the operator its whole output in
    memory; now the listing stops at the cap and says why."""
    git_server.create_repo(repo_name, files={"a": "1\n"})
    for index in range(30):
        git_server.create_branch(repo_name, f"many/{index:02d}")
    url = git_server.url_for(repo_name)
    assert len(list_branches(url, max_refs=31)) == 31
    with pytest.raises(ListingTooLargeError, match="more than 10 branches"):
        list_branches(url, max_refs=10)
    with pytest.raises(ListingTooLargeError, match="more than 1 KiB"):
        list_branches(url, max_bytes=1024)
