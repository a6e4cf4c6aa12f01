"""The image registry adapter: reads push credentials, checks that they log in, resolves digests.

It never talks to Kubernetes: the caller reads the Secret and hands over its data.
"""

from __future__ import annotations

from kapsa.registry.credentials import RegistryCredentials, credentials_from_secret
from kapsa.registry.digest import image_exists, resolve_digest
from kapsa.registry.verify import Verification, verify_registry

__all__ = [
    "RegistryCredentials",
    "Verification",
    "credentials_from_secret",
    "image_exists",
    "resolve_digest",
    "verify_registry",
]
