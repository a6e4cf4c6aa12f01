"""The names Kapsa derives from branches and commits: hosts, object names, image tags.

A branch becomes a *slug*, one DNS label (RFC 1035: `[a-z0-9-]`, starting with a letter, ending
alphanumeric) used in `<slug>.<project>.<baseDomain>`, in object names like `<project>-<slug>` and
in image tags. Users rely on two things: readable names for ordinary branches, and two branches
never sharing a host. A plain character mapping cannot give both (`feature/new-api` and
`feature-new-api` map to the same text), so the rule is:

* A branch keeps its *plain* slug, `/` read as `-`, when the plain slug can only have come from
  that one branch: lowercase words of `[a-z0-9]` joined by `-`, the first word starting with a
  letter, where a conventional kind prefix (`feature/`, `fix/`, ... see `KIND_PREFIXES`) is
  written with `/` and every other separator is `-`. So `main`, `my-feature`, `feature/new-api`
  and `fix/login-form` are plain.
* Every other branch (`Feature/X`, `release/1.2`, `feature-new-api`, `my/feature`, `123`, a
  name too long for the label, or a plain slug that happens to end like a hash) gets the lossy
  mapping plus `-` and eight hex digits of the branch's SHA-256, after truncation. Plain slugs
  never end in `-<8 hex>`, so a hashed slug never equals a plain one, and two different branches
  share a slug only if their SHA-256 digests share 32 bits and their readable part is the same.

`slug` returns None when a branch has no letter or digit at all: there is nothing to show a
user, and the caller skips the branch with an event instead of inventing a name.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from kapsa.errors import InvalidSpecError

#: Leaves room in `<slug>.<project>.<baseDomain>` and `<project>-<slug>` (63-character names).
DEFAULT_MAX_LEN = 40
#: Hash, dash and a readable part of a few characters must fit.
MIN_MAX_LEN = 16
#: A DNS label's hard limit.
MAX_LABEL_LEN = 63
HASH_LEN = 8
SHORT_SHA_LEN = 7
#: Branch prefixes conventionally written `kind/name`; other branches read `/` as ambiguous.
KIND_PREFIXES = frozenset(
    {
        "feature",
        "feat",
        "fix",
        "bugfix",
        "hotfix",
        "release",
        "chore",
        "docs",
        "refactor",
        "test",
        "ci",
        "build",
        "perf",
        "style",
        "experiment",
        "preview",
    }
)

LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PLAIN_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-/][a-z0-9]+)*$")
_LOOKS_HASHED_RE = re.compile(rf"-[0-9a-f]{{{HASH_LEN}}}$")
_INVALID_RUN_RE = re.compile(r"[^a-z0-9]+")
_HEX_RE = re.compile(r"^[0-9a-f]{7,64}$")
_DOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_max_len(max_len: int) -> None:
    if not MIN_MAX_LEN <= max_len <= MAX_LABEL_LEN:
        raise ValueError(f"max_len must be between {MIN_MAX_LEN} and {MAX_LABEL_LEN}")


def _branch_hash(branch: str) -> str:
    # Git ref names are bytes; surrogatepass keeps undecodable names hashable and distinct.
    digest = hashlib.sha256(branch.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:HASH_LEN]


def _is_plain(branch: str) -> bool:
    """True when `branch` is the one canonical spelling of its plain slug."""
    if not _PLAIN_RE.fullmatch(branch) or _LOOKS_HASHED_RE.search(branch):
        return False
    words = re.split(r"[-/]", branch)
    separators = re.findall(r"[-/]", branch)
    if not separators:
        return True
    first = "/" if words[0] in KIND_PREFIXES else "-"
    return separators == [first] + ["-"] * (len(separators) - 1)


def _readable(branch: str) -> str:
    """The lossy mapping: ASCII-folded, lowercase, runs of anything else become one dash."""
    folded = unicodedata.normalize("NFKD", branch).encode("ascii", "ignore").decode("ascii")
    return _INVALID_RUN_RE.sub("-", folded.lower()).strip("-")


def _hashed_slug(branch: str, *, max_len: int) -> str | None:
    readable = _readable(branch)
    if not readable:
        return None
    if not readable[0].isalpha():
        readable = f"b-{readable}"
    room = max_len - HASH_LEN - 1
    return f"{readable[:room].rstrip('-')}-{_branch_hash(branch)}"


def slug(branch: str, *, max_len: int = DEFAULT_MAX_LEN) -> str | None:
    """The DNS label for `branch`, or None when the branch has no letter or digit to show."""
    _check_max_len(max_len)
    if len(branch) <= max_len and _is_plain(branch):
        return branch.replace("/", "-")
    return _hashed_slug(branch, max_len=max_len)


def preview_slug(
    branch: str, *, reserved: set[str] | frozenset[str], max_len: int = DEFAULT_MAX_LEN
) -> str | None:
    """The slug for a preview of `branch`, never one of the `reserved` standard environments.

    A branch named `production` must not take `production.<project>.<baseDomain>`, so a plain
    slug that is reserved gets the hash suffix. None when no slug is possible (see `slug`).
    """
    plain = slug(branch, max_len=max_len)
    if plain is None or plain not in reserved:
        return plain
    hashed = _hashed_slug(branch, max_len=max_len)
    # Hashed slugs end in 8 hex digits, which no environment name plausibly does; refuse if one
    # does rather than hand out a host that is already taken.
    return None if hashed in reserved else hashed


def _host(*, label: str, project: str, base_domain: str) -> str:
    host = f"{label}.{project}.{base_domain.rstrip('.')}".lower()
    labels = host.split(".")
    if len(host) > 253 or any(len(part) > MAX_LABEL_LEN for part in labels):
        raise InvalidSpecError(f"{host!r} is too long for a host name (labels <= 63, total <= 253)")
    if not _DOMAIN_RE.fullmatch(host):
        raise InvalidSpecError(f"{host!r} is not a valid host name")
    return host


def environment_host(*, environment: str, project: str, base_domain: str) -> str:
    """`<environment>.<project>.<baseDomain>`: where a standard environment is served."""
    return _host(label=environment, project=project, base_domain=base_domain)


def preview_host(*, branch_slug: str, project: str, base_domain: str) -> str:
    """`<branch-slug>.<project>.<baseDomain>`: where a branch preview is served."""
    return _host(label=branch_slug, project=project, base_domain=base_domain)


def short_sha(commit: str) -> str:
    """The seven-character commit prefix people recognise from `git log --oneline`."""
    commit = commit.lower()
    if not _HEX_RE.fullmatch(commit):
        raise ValueError(f"not a commit id: {commit!r}")
    return commit[:SHORT_SHA_LEN]


def image_tag(*, server: str, repository: str, commit: str, branch_slug: str | None = None) -> str:
    """`<server>/<repository>:<short-sha>`, or `...:<branch-slug>-<short-sha>` for previews.

    The tag is for people reading a registry; Deployments run the digest, so a tag that is
    pushed twice changes nothing that runs.
    """
    tag = short_sha(commit)
    if branch_slug is not None:
        tag = f"{branch_slug}-{tag}"
    return f"{server.rstrip('/')}/{repository.strip('/')}:{tag}"
