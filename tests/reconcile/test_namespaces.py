"""Which names a Project may take as its namespace, with the platform admin's own rules."""

from __future__ import annotations

import pytest

from kapsa.reconcile.context import Settings
from kapsa.reconcile.namespaces import namespace_refusal

ADMIN = Settings(
    namespace="platform-kapsa",
    reserved_namespaces=frozenset({"monitoring"}),
    reserved_namespace_prefixes=("corp-",),
)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("kube-system", "belongs to the cluster"),
        ("default", "belongs to the cluster"),
        ("platform-kapsa", "belongs to the cluster or to Kapsa"),
        ("monitoring", "reserved namespace monitoring"),
        ("corp-billing", "'corp-'"),
        ("has.a.dot", "DNS label"),
        ("x" * 64, "DNS label"),
    ],
)
def test_reserved_and_invalid_names_are_refused_with_the_reason(name: str, reason: str) -> None:
    refusal = namespace_refusal(name, ADMIN)
    assert refusal is not None
    assert reason in refusal


def test_the_admins_prefixes_replace_the_default_ones() -> None:
    assert namespace_refusal("kube-tools", Settings()) is not None
    assert namespace_refusal("kube-tools", ADMIN) is None
    assert namespace_refusal("shop", ADMIN) is None
    assert namespace_refusal("shop", Settings()) is None
