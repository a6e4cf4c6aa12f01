"""Names derived from branches: valid DNS labels, readable where possible, never shared."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapsa.api.naming import (
    environment_host,
    image_tag,
    preview_host,
    preview_slug,
    short_sha,
    slug,
)
from kapsa.errors import InvalidSpecError

LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# Branch-like names: the characters people use, plus unicode and very long names.
branch_chars = st.sampled_from("abcxyz019-/_.ABC") | st.characters(codec="utf-8")
branches = st.text(branch_chars, min_size=1, max_size=250) | st.from_regex(
    r"\A[a-z][a-z0-9]{0,8}([-/][a-z0-9]{1,8}){0,30}\Z"
)
max_lens = st.integers(min_value=16, max_value=63)


@given(branch=branches, max_len=max_lens)
def test_a_slug_is_none_or_a_dns_label_within_the_limit(branch: str, max_len: int) -> None:
    result = slug(branch, max_len=max_len)
    if result is None:
        assert not re.search(r"[A-Za-z0-9]", branch)
    else:
        assert LABEL.fullmatch(result), result
        assert len(result) <= max_len


@given(branch=branches)
def test_a_slug_is_stable(branch: str) -> None:
    assert slug(branch) == slug(branch) == slug(str(branch))


@settings(max_examples=60)
@given(names=st.lists(branches, min_size=2, max_size=30, unique=True))
def test_distinct_branches_get_distinct_slugs(names: list[str]) -> None:
    made = [s for s in (slug(name) for name in names) if s is not None]
    assert len(set(made)) == len(made)


def test_a_large_set_of_similar_branches_gets_distinct_slugs() -> None:
    """Every spelling of the same words (the cases a plain mapping would merge), long ones too."""
    words = ["feature", "fix", "my", "new", "api", "1", "x", "Api"]
    separators = ["/", "-", "_", ".", "--", "//", "-/"]
    names = {
        prefix + first + sep1 + second + sep2 + third
        for prefix in ("", "a" * 45 + "/")
        for first in words
        for second in words
        for third in words
        for sep1 in separators
        for sep2 in separators
    }
    assert len(names) > 50_000
    slugs = [slug(name) for name in names]
    assert None not in slugs
    assert len(set(slugs)) == len(names)


def test_distinct_branches_of_the_same_shape_get_distinct_slugs() -> None:
    shapes = [
        "feature/new-api",
        "feature-new-api",
        "feature/new/api",
        "feature-new/api",
        "Feature/new-api",
        "feature_new_api",
        "feature.new.api",
        "my-feature",
        "my/feature",
        "123",
        "b-123",
        "b/123",
    ]
    assert len({slug(name) for name in shapes}) == len(shapes)


def test_long_branches_sharing_a_prefix_get_distinct_slugs() -> None:
    prefix = "feature/" + "a" * 100
    first, second = slug(prefix + "-one"), slug(prefix + "-two")
    assert first is not None
    assert second is not None
    assert first != second
    assert len(first) <= 40


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("feature/new-api", "feature-new-api"),
        ("fix/login-form", "fix-login-form"),
        ("main", "main"),
        ("my-feature", "my-feature"),
    ],
)
def test_ordinary_branches_keep_readable_slugs(branch: str, expected: str) -> None:
    assert slug(branch) == expected


@pytest.mark.parametrize(
    ("branch", "readable"),
    [
        ("Feature/New-API", "feature-new-api-"),
        ("release/1.2", "release-1-2-"),
        ("123-hotfix", "b-123-hotfix-"),
        ("café", "cafe-"),
    ],
)
def test_other_branches_keep_a_readable_part_and_a_hash(branch: str, readable: str) -> None:
    result = slug(branch)
    assert result is not None
    assert result.startswith(readable)
    assert re.fullmatch(r"[0-9a-f]{8}", result.removeprefix(readable))


@pytest.mark.parametrize("branch", ["", "///", "🚀", "日本語", "--"])
def test_branches_without_letters_or_digits_get_no_slug(branch: str) -> None:
    assert slug(branch) is None


@given(branch=branches, reserved=st.sets(st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z"), max_size=5))
def test_a_preview_never_takes_a_reserved_name(branch: str, reserved: set[str]) -> None:
    result = preview_slug(branch, reserved=reserved | {"production", "staging"})
    assert result not in reserved | {"production", "staging"}
    if result is not None:
        assert LABEL.fullmatch(result)


def test_a_branch_named_like_an_environment_gets_another_host() -> None:
    result = preview_slug("production", reserved={"production", "staging"})
    assert result is not None
    assert result.startswith("production-")
    assert preview_slug("feature/x", reserved={"production"}) == "feature-x"


def test_hosts_follow_the_contract() -> None:
    assert (
        environment_host(environment="production", project="shop", base_domain="apps.example.com")
        == "production.shop.apps.example.com"
    )
    assert (
        preview_host(branch_slug="feature-new-api", project="shop", base_domain="example.com.")
        == "feature-new-api.shop.example.com"
    )


def test_a_host_too_long_for_dns_is_refused() -> None:
    with pytest.raises(InvalidSpecError):
        preview_host(branch_slug="a" * 64, project="shop", base_domain="example.com")
    with pytest.raises(InvalidSpecError):
        environment_host(environment="prod", project="shop", base_domain="x" * 60 + ".com" * 50)


def test_image_tags_follow_the_contract() -> None:
    assert short_sha(COMMIT) == "0123456"
    assert (
        image_tag(server="registry.example.com", repository="team/shop", commit=COMMIT)
        == "registry.example.com/team/shop:0123456"
    )
    assert (
        image_tag(
            server="registry.example.com",
            repository="team/shop",
            commit=COMMIT,
            branch_slug="feature-new-api",
        )
        == "registry.example.com/team/shop:feature-new-api-0123456"
    )


def test_a_non_commit_makes_no_tag() -> None:
    with pytest.raises(ValueError, match="commit"):
        short_sha("main")
