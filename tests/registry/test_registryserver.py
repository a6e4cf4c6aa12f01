"""The sandbox registry holds the images other tests and the local demo deploy by digest."""

from __future__ import annotations

import socket
import ssl

from kapsa.sandbox.registryserver import RegistryServer


def test_put_image_stores_a_manifest_by_tag_and_digest(registry_server: RegistryServer) -> None:
    digest = registry_server.put_image(repository="sandbox/put-image", tag="abc1234")
    assert digest.startswith("sha256:")
    assert registry_server.has_manifest("sandbox/put-image", "abc1234")
    assert registry_server.has_manifest("sandbox/put-image", digest)
    assert not registry_server.has_manifest("sandbox/put-image", "never-pushed")


def test_each_tag_gets_its_own_digest(tls_registry_server: RegistryServer) -> None:
    first = tls_registry_server.put_image(repository="sandbox/digests", tag="one")
    second = tls_registry_server.put_image(repository="sandbox/digests", tag="two")
    assert first != second
    assert tls_registry_server.has_manifest("sandbox/digests", first)
    assert tls_registry_server.has_manifest("sandbox/digests", second)


def test_tls_certificate_passes_strict_verification(tls_registry_server: RegistryServer) -> None:
    """Python 3.13 verifies strictly by default; the sandbox must work there too."""
    assert tls_registry_server.ca_bundle is not None
    context = ssl.create_default_context(cafile=tls_registry_server.ca_bundle)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    with (
        socket.create_connection(("127.0.0.1", tls_registry_server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() is not None
