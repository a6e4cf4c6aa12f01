"""Imports every sub-command module so that each registers itself on the app."""

from kapsa.cli import (
    buildlogs,  # noqa: F401
    crds,  # noqa: F401
    diagram,  # noqa: F401
    history,  # noqa: F401
    operator,  # noqa: F401
    release,  # noqa: F401
    sandbox,  # noqa: F401
    status,  # noqa: F401
)
