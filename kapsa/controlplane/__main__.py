"""`python -m kapsa.controlplane`: make sure the control-plane binaries exist, print their folder.

The test and sandbox scripts call it before anything else, so the one slow build happens up
front with its progress on screen, rather than inside a pytest fixture that shows nothing.
"""

from __future__ import annotations

import sys

from kapsa.controlplane.assets import find_or_build_assets
from kapsa.errors import ControlPlaneError


def main() -> int:
    try:
        assets = find_or_build_assets()
    except ControlPlaneError as exc:
        print(f"kapsa control plane: {exc}", file=sys.stderr)
        return 1
    print(assets.kube_apiserver.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
