"""The image registry adapter: reads push credentials and checks that they log in.

It never talks to Kubernetes: the caller reads the Secret and hands over its data.
"""

from __future__ import annotations

from kapsa.registry.credentials import RegistryCredentials, credentials_from_secret
from kapsa.registry.verify import Verification, verify_registry

__all__ = ["RegistryCredentials", "Verification", "credentials_from_secret", "verify_registry"]
