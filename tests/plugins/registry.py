"""Real image registries for the suite: Debian's docker-registry on 127.0.0.1, one per session.

`registry_server` speaks plain HTTP (a Registry with `insecure: true`), `tls_registry_server`
HTTPS with a certificate from a throwaway CA at `.ca_bundle`. Both log in user `kapsa` with a
password made for the session (`.username`, `.password`). Tests push with `put_image`, which
returns a digest that really exists; they use repositories of their own rather than cleaning up.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from kapsa.sandbox.registryserver import RegistryServer


def _serve(factory: pytest.TempPathFactory, *, name: str, tls: bool) -> Iterator[RegistryServer]:
    server = RegistryServer(
        workdir=factory.mktemp(name),
        username="kapsa",
        password=secrets.token_urlsafe(18),
        tls=tls,
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    yield from _serve(tmp_path_factory, name="registry", tls=False)


@pytest.fixture(scope="session")
def tls_registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    yield from _serve(tmp_path_factory, name="tls-registry", tls=True)
