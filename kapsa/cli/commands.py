"""Imports every sub-command module so that each registers itself on the app."""
from kapsa.cli import crds  # noqa: F401
from kapsa.cli import diagram  # noqa: F401
from kapsa.cli import history  # noqa: F401
from kapsa.cli import operator  # noqa: F401
