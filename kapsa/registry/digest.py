"""Which manifest a tag names, and whether a digest still exists, asked of the registry itself.

Kapsa deploys images by digest, never by tag: a tag can move between the build and the rollout,
a digest cannot. This module turns `repository:tag` into that digest and confirms a digest is
still there before a rollout points at it. It logs in exactly as the Registry check does (the
shared `_Client` in `verify.py`), so the same address rules, TLS settings and credentials apply,
and a Bearer token is asked for with `repository:<name>:pull` scope only: reading a manifest
never needs push rights.
"""

from __future__ import annotations

import hashlib
import re

from kapsa.errors import InvalidSpecError, RegistryError, UnsafeURLError
from kapsa.registry.credentials import RegistryCredentials
from kapsa.registry.verify import HOST_NOT_ALLOWED, _Client, _VerdictError

#: Every manifest type Kapsa can deploy: a single-platform image (Docker or OCI) or a
#: multi-platform list. Without the list types a registry would have to pick one platform's
#: manifest, or answer with a converted one whose digest is not the one that was pushed.
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)

#: The distribution spec's grammar for repository names and references: they go into the URL
#: path and into the token scope, so nothing else (`..`, `?`, `:`, spaces) may ride along.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_REPOSITORY_MAX = 255


def resolve_digest(
    *,
    server: str,
    repository: str,
    reference: str,
    credentials: RegistryCredentials | None,
    insecure: bool = False,
    ca_bundle: str | None = None,
    timeout: float = 10.0,
    allow_private_hosts: bool = False,
) -> str | None:
    """The digest of the manifest `repository:reference` names on `server`; None if none does.

    `reference` is a tag or a digest. `credentials` None asks anonymously. Raises RegistryError
    when the registry cannot be reached, refuses the login or answers something else than the
    manifest or 404; UnsafeURLError when `server` (or the token service it names) is not an
    address this operator contacts; InvalidSpecError for a malformed repository or reference.
    No message carries the password.
    """
    _check_name(repository=repository, reference=reference)
    client = _Client(
        credentials=credentials,
        insecure=insecure,
        ca_bundle=ca_bundle,
        timeout=timeout,
        allow_private_hosts=allow_private_hosts,
    )
    try:
        url = f"{client.base_url(server)}/v2/{repository}/manifests/{reference}"
        accept = {"Accept": ", ".join(MANIFEST_TYPES)}
        scope = f"repository:{repository}:pull"
        answer, _ = client.authenticated("HEAD", url, headers=accept, scope=scope)
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise client.unexpected(url, answer)
        digest = answer.headers.get("Docker-Content-Digest", "")
        if not digest:
            # The header is optional in the spec and a few registries leave it off HEAD; the
            # digest is then the sha256 of the manifest bytes exactly as the registry serves them.
            fetched, _ = client.authenticated("GET", url, headers=accept, scope=scope)
            if fetched.status_code == 404:
                return None
            if fetched.status_code != 200:
                raise client.unexpected(url, fetched)
            digest = fetched.headers.get("Docker-Content-Digest", "") or (
                f"sha256:{hashlib.sha256(fetched.content).hexdigest()}"
            )
    except _VerdictError as failure:
        verification = failure.verification
        if verification.reason == HOST_NOT_ALLOWED:
            raise UnsafeURLError(verification.message) from None
        raise RegistryError(verification.message) from failure
    finally:
        client.close()
    if not _DIGEST.fullmatch(digest):
        raise RegistryError(
            f"{server} answered for {repository}:{reference} with a malformed digest"
        )
    return digest


def image_exists(
    *,
    server: str,
    repository: str,
    digest: str,
    credentials: RegistryCredentials | None,
    insecure: bool = False,
    ca_bundle: str | None = None,
    timeout: float = 10.0,
    allow_private_hosts: bool = False,
) -> bool:
    """Whether `repository@digest` is still on `server`: images get garbage-collected.

    Raises as `resolve_digest` does; a tag instead of a digest is an InvalidSpecError, because
    a tag that exists says nothing about which image a rollout would get.
    """
    if not _DIGEST.fullmatch(digest):
        raise InvalidSpecError(f"{digest!r} is not a digest such as sha256:<64 hex digits>")
    found = resolve_digest(
        server=server,
        repository=repository,
        reference=digest,
        credentials=credentials,
        insecure=insecure,
        ca_bundle=ca_bundle,
        timeout=timeout,
        allow_private_hosts=allow_private_hosts,
    )
    return found is not None


def _check_name(*, repository: str, reference: str) -> None:
    if len(repository) > _REPOSITORY_MAX or not _REPOSITORY.fullmatch(repository):
        raise InvalidSpecError(
            f"{repository!r} is not a repository name such as team/app "
            "(lower-case letters, digits, '.', '_', '-', separated by '/')"
        )
    if not (_TAG.fullmatch(reference) or _DIGEST.fullmatch(reference)):
        raise InvalidSpecError(
            f"{reference!r} is neither a tag (up to 128 of letters, digits, '_', '.', '-') "
            "nor a digest such as sha256:<64 hex digits>"
        )
