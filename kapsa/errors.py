"""Kapsa's own error tree.

Callers catch these by meaning (a bad spec, an unreachable source, a missing dependency) rather
than by the library that happened to raise underneath, so every adapter translates its library's
errors at its boundary.
"""

from __future__ import annotations


class KapsaError(Exception):
    """The root of every error Kapsa raises on purpose."""


class InvalidSpecError(KapsaError):
    """User input that can never work as written; retrying does not help."""


class SourceError(KapsaError):
    """The Git repository could not be read (down, timed out, refused credentials)."""


class ListingTooLargeError(SourceError):
    """A repository advertised more branches or bytes than Kapsa reads in one listing."""


class HostKeyUnknownError(SourceError):
    """An ssh repository whose host key nobody pinned: Kapsa does not connect to it."""


class UnsafeURLError(InvalidSpecError):
    """A URL Kapsa refuses to hand to git or an HTTP client."""


class RegistryError(KapsaError):
    """The image registry could not be reached or refused the credentials."""


class LedgerError(KapsaError):
    """The audit ledger could not be written or read."""


class ControlPlaneError(KapsaError):
    """The local control plane could not be built, started or stopped."""


class ConflictError(KapsaError):
    """A write lost a race (resourceVersion precondition); re-read and try again."""


class InvalidSecretError(RegistryError):
    """A credentials Secret Kapsa cannot read; its message names what is missing, never a value."""


class BuildError(KapsaError):
    """A build could not produce an image; the message is what the user sees as the reason."""
