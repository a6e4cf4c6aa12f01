"""A real `git daemon` on 127.0.0.1 for the whole session: tests create their own repositories.

Each test names its repositories after itself (see `repo_name`), so tests sharing the server
never see each other's branches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from kapsa.sandbox.gitserver import GitServer


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("gitserver")) as server:
        yield server


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name unique to the running test."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:80]
