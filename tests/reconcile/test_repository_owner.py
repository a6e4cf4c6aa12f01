"""A repository, and everything under it, belongs to the first Project that named it."""

from __future__ import annotations

from typing import Any

from kapsa.reconcile.tenancy import repository_owner


def _project(name: str, repository: str, *, created: str, registry: str = "harbor") -> Any:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"build": {"registryRef": {"name": registry}, "repository": repository}},
    }


SHOP = _project("shop", "team-a/shop", created="2026-12-01T10:00:00Z")


def test_the_later_project_naming_the_same_repository_is_refused_the_first_keeps_it() -> None:
    thief = _project("thief", "team-a/shop", created="2026-12-02T10:00:00Z")
    projects = [SHOP, thief]
    assert repository_owner(thief, projects) == "shop"
    assert repository_owner(SHOP, projects) is None


def test_a_repository_nested_in_another_is_taken_too_either_way() -> None:
    below = _project("cache-thief", "team-a/shop/cache", created="2026-12-02T10:00:00Z")
    above = _project("parent", "team-a", created="2026-12-02T11:00:00Z")
    assert repository_owner(below, [SHOP, below]) == "shop"
    assert repository_owner(above, [SHOP, above]) == "shop"


def test_neighbours_and_other_registries_are_free() -> None:
    prefix = _project("shopping", "team-a/shopping", created="2026-12-02T10:00:00Z")
    elsewhere = _project("mirror", "team-a/shop", created="2026-12-02T10:00:00Z", registry="quay")
    assert repository_owner(prefix, [SHOP, prefix]) is None
    assert repository_owner(elsewhere, [SHOP, elsewhere]) is None


def test_same_second_goes_by_name_and_a_deleted_owner_lets_go() -> None:
    twin = _project("alpha", "team-a/shop", created=SHOP["metadata"]["creationTimestamp"])
    assert repository_owner(SHOP, [SHOP, twin]) == "alpha"
    assert repository_owner(twin, [SHOP, twin]) is None
    leaving = {
        **twin,
        "metadata": {**twin["metadata"], "deletionTimestamp": "2026-12-02T12:00:00Z"},
    }
    assert repository_owner(SHOP, [SHOP, leaving]) is None
